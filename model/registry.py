"""The registry of detectors, and the rule that combines their verdicts.

A detector is a run's model folder (``detector.keras`` + ``model_card.json``); its model card says what it detects
(``detects``, ``looks_for``), its face-crop contract, its calibration and threshold. The registry only names the
folders, in the order results list them (the first is the default: its score and label are a result's ``score`` /
``label``, the meaning those columns always had). Adding a detector is one ``Entry`` here.

    registry.available()                 # entries whose model folder exists (bundled with the code)
    registry.combine(["real", "fake"])   # 'fake' -- the combined verdict (VERDICT_RULE)
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Iterable, Sequence

_HERE = Path(__file__).resolve().parent
REPO_ROOT = _HERE.parent


@dataclasses.dataclass(frozen=True)
class Entry:
    key: str  # short name: CSV columns score_<key> / label_<key>, --detectors, result["detectors"][key]
    run: str  # the run folder in a source checkout (its model/ is the detector)
    package: str  # the folder name under model/ where a wheel ships the same two files

    @property
    def folder(self) -> Path:
        packaged = _HERE / self.package
        return packaged if (packaged / "detector.keras").is_file() else REPO_ROOT / self.run / "model"


REGISTRY: tuple[Entry, ...] = (
    Entry("faceswap", "runs/sample", "bundled"),
    Entry("generated", "runs/gan", "bundled_gan"),
)
DEFAULT = REGISTRY[0].key

VERDICT_RULE = ("combined verdict: fake when any selected detector labels the file fake (each at its own "
                "calibrated threshold); real when every detector labels it real; unknown otherwise (no face, or an "
                "untrained detector)")
# the measured cost and gain of VERDICT_RULE (``python -m research.detectors`` writes it, the About page and
# ``research.gan_tables`` read it); outside ``evaluation/``, which ``evaluate`` replaces
COMBINED_COST = REPO_ROOT / "runs" / "gan" / "analysis" / "combined_verdict.json"


class RegistryError(ValueError):
    """Unknown detector name or a detector whose model folder is missing; the message is one line."""


def keys() -> list[str]:
    return [e.key for e in REGISTRY]


def entry(key: str) -> Entry:
    for e in REGISTRY:
        if e.key == key:
            return e
    raise RegistryError(f"unknown detector {key!r}; choose from {', '.join(keys())}")


def available() -> list[Entry]:
    """The entries whose model folder exists here, in registry order."""
    return [e for e in REGISTRY if (e.folder / "detector.keras").is_file()]


def parse(text: str | Sequence[str] | None) -> list[str]:
    """``"faceswap,generated"`` / a list / ``"all"`` / None -> registry keys (None and "all": every available
    detector). RegistryError for an unknown or missing one."""
    if text is None or text == "all" or (not isinstance(text, str) and list(text) == ["all"]):
        found = [e.key for e in available()]
        if not found:
            raise RegistryError("no detector model found (runs/sample/model is missing)")
        return found
    names = [t.strip() for t in (text.split(",") if isinstance(text, str) else text) if t.strip()]
    if not names:
        raise RegistryError("--detectors: name at least one detector")
    out: list[str] = []
    for n in names:
        e = entry(n)
        if not (e.folder / "detector.keras").is_file():
            raise RegistryError(f"detector {n!r}: no detector.keras in {e.folder}")
        if n not in out:
            out.append(n)
    return out


def combine(labels: Iterable[str]) -> str:
    """The combined verdict of per-detector labels (VERDICT_RULE)."""
    labels = list(labels)
    if any(lab == "fake" for lab in labels):
        return "fake"
    if labels and all(lab == "real" for lab in labels):
        return "real"
    return "unknown"
