"""One TOML config file per experiment, checked against ONE schema (the pydantic models below).

Every key has a type, a range or set of allowed values and a one-sentence meaning (``Field(description=...)``);
the README's configuration reference is generated from them (``reference_markdown``, ``python -m training
config-reference``). Unknown keys, wrong types (``epochs = "10"``, ``prepared = "data/x"``) and out-of-range
values are errors; a :class:`ConfigError` is ONE line that starts with the key, e.g.
``train.epochs: must be an integer >= 1 (got '10')``.

Example (``configs/sample.toml``, trimmed)::

    name = "sample-lite0"
    seed = 0
    [model]
    backbone = "efficientnet_lite0"
    input_size = 128
    weights = "weights/efficientnet_lite0_imagenet.weights.npz"
    [data]
    prepared = ["data/prepared/ffpp_mini", "data/prepared/lfw"]
    val_groups = ["ffpp:672", "ffpp:252"]
    test_groups = ["ffpp:585", "ffpp:866"]
    [train]
    epochs = 8

The face margin is NOT a config key: it is part of the face-crop contract the prepared folders were cut with
(``prepare --margin``, stored in their ``prepare.json``). Run folders written by older versions hold it in their
``config.json`` as ``model.face_margin``; :func:`from_dict` drops such :data:`LEGACY_KEYS`, :func:`load` (TOML
files) rejects them.
"""
from __future__ import annotations

import importlib
import json
import tomllib
import types
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import annotated_types as at
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from model.perturb import IMAGE_PERTURBATIONS  # the image degradations, defined once (numpy only)


class ConfigError(ValueError):
    """A config that does not fit the schema or whose keys contradict each other; the message is one line that
    names the key."""


_STRICT = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, validate_assignment=True)
_Name = Annotated[str, Field(min_length=1)]
_PositiveInt = Annotated[int, Field(ge=1)]
_Quality = Annotated[int, Field(ge=0, le=100)]


class ModelCfg(BaseModel):
    model_config = _STRICT

    backbone: str = Field(
        "efficientnet_b0", json_schema_extra={"choices_from": "model.network.BACKBONES"},
        description="Feature extractor of the detector.")
    input_size: int = Field(
        128, ge=32, description="Side in pixels of the square face crop the network sees; must be the crop size "
                                "the prepared folders were cut at.")
    weights: str | None = Field(
        None,
        description='Starting weights: omitted or "" = random initialisation, "imagenet" (keras.applications '
                    "backbones), or the path of converted EfficientNet-Lite weights (`convert-lite`).")
    dropout: float = Field(0.3, ge=0, lt=1, description="Dropout rate before each dense layer of the head.")
    dense_units: list[_PositiveInt] = Field(
        default_factory=lambda: [512, 128], min_length=2, max_length=2,
        description="Widths of the head's two dense layers: exactly two positive integers, e.g. [512, 128].")

    @field_validator("backbone")
    @classmethod
    def _known_backbone(cls, v: str) -> str:
        names = _choices_from("model.network.BACKBONES")
        if v not in names:
            raise ValueError(f"must be one of {', '.join(names)}")
        return v


class DataCfg(BaseModel):
    model_config = _STRICT

    prepared: list[_Name] = Field(
        min_length=1,
        description="Prepared folders (`python -m training prepare`) to train on, relative to the repository or "
                    "absolute; they must share one face-crop contract (frames per video aside).")
    val_groups: list[_Name] = Field(
        default_factory=list,
        description="Identity groups (`dataset:group`) put in validation; a dataset named here or in test_groups "
                    "puts its other groups in train.")
    test_groups: list[_Name] = Field(
        default_factory=list, description="Identity groups (`dataset:group`) put in test (never trained on).")
    val_fraction: float = Field(
        0.15, ge=0, lt=1,
        description="Share of a dataset's items hashed (seeded) into validation where no official or explicit "
                    "split decides.")
    test_fraction: float = Field(
        0.2, ge=0, lt=1,
        description="Share of a dataset's items hashed (seeded) into test where no official or explicit split "
                    "decides.")
    real_weight: float = Field(
        0.5, ge=0,
        description="Per dataset, real faces are real_weight / (real + fake + sbi weights) of its training "
                    "samples.")
    fake_weight: float = Field(
        0.25, ge=0,
        description="Per dataset with fakes of its own, the fake share is split own fakes : self-blended fakes "
                    "as fake_weight : sbi_weight.")
    sbi_weight: float = Field(
        0.25, ge=0,
        description="Weight of self-blended fakes in that split; a real-only dataset's fakes are all "
                    "self-blended, even with sbi_weight = 0.")
    max_val_per_dataset: int = Field(
        400, ge=0, description="Validation crops kept per dataset and label, a seeded sample (0: all).")
    val_datasets: list[_Name] = Field(
        default_factory=list,
        description="Datasets whose validation crops choose the best epoch (empty: all datasets).")
    exclude_methods: list[_Name] = Field(
        default_factory=list,
        description="Manipulation methods (crops.csv `method`) whose fakes are dropped from the train split "
                    "only: leave-one-method-out.")
    holdout_methods: list[_Name] = Field(
        default_factory=list,
        description="Fake methods (e.g. generators) kept out of training AND validation, so neither model selection "
                    "nor calibration sees them; the test split keeps them: leave-one-generator-out.")
    exclude_datasets: list[_Name] = Field(
        default_factory=list,
        description="Datasets dropped from the train split only (validation and test keep them): "
                    "leave-one-dataset-out; not allowed in val_datasets.")


class AugmentCfg(BaseModel):
    model_config = _STRICT

    flip: bool = Field(True, description="Random horizontal flip.")
    brightness: float = Field(
        0.1, ge=0, le=1, description="Largest random brightness shift, as a fraction of 255 (0: off).")
    contrast: float = Field(
        0.15, ge=0, lt=1, description="Random contrast factor drawn from [1 - contrast, 1 + contrast] (0: off).")
    jpeg_quality: list[_Quality] = Field(
        default_factory=lambda: [40, 100], min_length=2, max_length=2,
        description="JPEG re-compression quality range [low, high], low < high.")
    jpeg_prob: float = Field(0.5, ge=0, le=1, description="Probability that a crop is JPEG re-compressed.")
    perturb_prob: float = Field(
        0.0, ge=0, le=1,
        description="Probability that a crop gets one everyday degradation (``model.perturb``: the robustness "
                    "evaluation's own definitions) before the other augmentations (0: off).")
    perturb_max_level: int = Field(
        3, ge=1, le=5, description="Strength: the degradation's level is drawn from 1..perturb_max_level.")
    perturbations: list[Literal[IMAGE_PERTURBATIONS]] = Field(
        default_factory=lambda: list(IMAGE_PERTURBATIONS),
        min_length=1, description="Degradations drawn from (uniformly) when perturb_prob > 0.")


class TrainCfg(BaseModel):
    model_config = _STRICT

    batch_size: int = Field(
        32, ge=1,
        description="Crops per batch PER REPLICA (GPU or Ray worker); the global batch is batch_size x replicas.")
    epochs: int = Field(10, ge=1, description="Number of epochs.")
    steps_per_epoch: int = Field(100, ge=1, description="Batches per epoch (the training stream is infinite).")
    optimizer: Literal["adam", "adamw", "sgd"] = Field(
        "adamw", description="Optimizer (sgd: momentum 0.9, Nesterov).")
    learning_rate: float = Field(
        1e-3, gt=0, description="Peak learning rate for ONE replica's batch (N replicas run at N x this rate).")
    weight_decay: float = Field(1e-4, ge=0, description="Decoupled weight decay (adamw only).")
    schedule: Literal["cosine", "constant"] = Field(
        "cosine", description="cosine: warm-up, then cosine decay to 1 % of the peak; constant: the peak rate.")
    warmup_epochs: float = Field(
        0.5, ge=0, description="Epochs of linear warm-up from 10 % of the peak rate (cosine schedule only).")
    early_stopping_patience: int = Field(
        4, ge=0, description="Stop after this many epochs without a validation AUC gain (0: never).")
    label_smoothing: float = Field(0.0, ge=0, lt=1, description="Label smoothing of the binary cross-entropy.")


class Config(BaseModel):
    model_config = _STRICT

    name: str = Field(
        "experiment", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
        json_schema_extra={"expect": "a name of letters, digits, '.', '_' and '-'"},
        description="Run name: the run folder is `runs/<name>`.")
    seed: int = Field(0, ge=0, description="Seed of the splits, the sample streams, augmentation and initialisation.")
    description: str = Field("", description="Free text shown with the run.")
    detects: str = Field(
        "", description="What the detector detects, in a few plain words (model card; shown beside its score), "
                        "e.g. 'entirely generated faces'.")
    looks_for: str = Field("", description="One plain-language line on what the detector looks for (model card).")
    model: ModelCfg = Field(default_factory=ModelCfg, description="The network.")
    data: DataCfg = Field(description="Prepared data, splits and sample weights.")
    augment: AugmentCfg = Field(default_factory=AugmentCfg, description="Training-time augmentation.")
    train: TrainCfg = Field(default_factory=TrainCfg, description="Optimisation.")

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (what a run's config.json stores, ``from_dict`` reads back)."""
        return self.model_dump()


SECTIONS: dict[str, type[BaseModel]] = {"model": ModelCfg, "data": DataCfg, "augment": AugmentCfg,
                                        "train": TrainCfg}
# Keys written by older versions into run folders' config.json: (section, key) -> why it went. ``from_dict``
# drops them (old runs still load, resume and evaluate); ``load`` rejects them in a TOML file.
LEGACY_KEYS: dict[tuple[str, str], str] = {
    ("model", "face_margin"): "the face margin comes from the prepared folders (`prepare --margin`, stored in "
                              "their prepare.json); remove the key",
}


# --------------------------------------------------------------------------- reading
def from_dict(d: dict[str, Any]) -> Config:
    """A checked Config from a dict: a TOML file's (``load``), one made in code, or a run's config.json as
    ``to_dict`` wrote it (any ``LEGACY_KEYS`` in it are dropped)."""
    if not isinstance(d, dict):
        raise ConfigError(f"a config is a table of keys, not {type(d).__name__}")
    d = _without_legacy(d)
    try:
        cfg = Config.model_validate(d)
    except ValidationError as e:
        raise ConfigError(_one_line(e, d)) from None
    validate(cfg)
    return cfg


def load(path: str | Path) -> Config:
    """The checked Config of a TOML file."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file not found: {p}")
    try:
        d = tomllib.loads(p.read_text())
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{p}: invalid TOML: {e}") from None
    for (section, key), why in LEGACY_KEYS.items():
        if isinstance(d.get(section), dict) and key in d[section]:
            raise ConfigError(f"{section}.{key}: no longer a config key: {why}")
    return from_dict(d)


def validate(cfg: Config) -> None:
    """The checks that involve more than one key (each key's own type and range are the schema's)."""
    dc = cfg.data
    if dc.real_weight + dc.fake_weight + dc.sbi_weight <= 0:
        raise ConfigError("data.real_weight, fake_weight, sbi_weight: must not all be 0")
    if dc.val_fraction + dc.test_fraction >= 1:
        raise ConfigError(f"data.val_fraction + data.test_fraction: must be < 1 (got {dc.val_fraction} + "
                          f"{dc.test_fraction}), or nothing is left to train on")
    both = sorted(set(dc.val_groups) & set(dc.test_groups))
    if both:
        raise ConfigError(f"data.val_groups, data.test_groups: a group cannot be in both (got {', '.join(both)})")
    held_out = sorted(set(dc.exclude_datasets) & set(dc.val_datasets))
    if held_out:
        raise ConfigError(f"data.exclude_datasets: must not be in data.val_datasets (got {', '.join(held_out)}): the "
                          "held-out dataset would choose the model and fit its calibration")
    low, high = cfg.augment.jpeg_quality
    if low >= high:
        raise ConfigError(f"augment.jpeg_quality: must be [low, high] with low < high (got {[low, high]})")


def _without_legacy(d: dict[str, Any]) -> dict[str, Any]:
    out = dict(d)
    for (section, key) in LEGACY_KEYS:
        if isinstance(out.get(section), dict) and key in out[section]:
            out[section] = {k: v for k, v in out[section].items() if k != key}
    return out


# --------------------------------------------------------------------------- one-line errors
def _one_line(e: ValidationError, d: dict[str, Any]) -> str:
    """The first error (in schema order) as one line starting with its key; the other wrong keys are named."""
    errs = e.errors()
    line = _error_line(errs[0], d)
    more = sorted({_key_of(err) for err in errs[1:]} - {_key_of(errs[0])})
    return line + (f" (also wrong: {', '.join(more)})" if more else "")


def _key_of(err) -> str:
    return ".".join(str(p) for p in err["loc"][:2])


def _error_line(err: dict[str, Any], d: dict[str, Any]) -> str:
    loc = [str(p) for p in err["loc"]]
    in_section = loc[0] in SECTIONS and len(loc) > 1
    model, name = (SECTIONS[loc[0]], loc[1]) if in_section else (Config, loc[0])
    key = ".".join(loc[:2]) if in_section else loc[0]
    if err["type"] == "extra_forbidden":
        where = f"[{loc[0]}]" if in_section else "the top level"
        return f"unknown key {key}; allowed in {where}: {', '.join(model.model_fields)}"
    if not in_section and name in SECTIONS:
        section = SECTIONS[name]
        if err["type"] == "missing":
            need = [k for k, f in section.model_fields.items() if f.is_required()]
            return f"[{name}]: missing (it needs {', '.join(need)})"
        return f"{name}: must be a table ([{name}] with its keys) (got {_short(d.get(name))})"
    field = model.model_fields[name]
    if err["type"] == "missing":
        return f"{key}: missing; must be {expectation(field)}"
    got = _short((d.get(loc[0]) or {}).get(name) if in_section else d.get(name))
    if err["type"] == "value_error":  # a field validator's own words
        return f"{key}: {str(err['ctx']['error'])} (got {got})"
    return f"{key}: must be {expectation(field)} (got {got})"


def _short(v: Any, limit: int = 80) -> str:
    s = repr(v)
    return s if len(s) <= limit else s[:limit - 3] + "..."


# --------------------------------------------------------------------------- schema -> words
_WORDS = {1: "one", 2: "two", 3: "three"}


def _choices_from(dotted: str) -> tuple[str, ...]:
    module, _, attr = dotted.rpartition(".")
    return tuple(getattr(importlib.import_module(module), attr))


def _bounds(metadata) -> str:
    lo = next(((m.ge, "[") for m in metadata if isinstance(m, at.Ge)), None) or \
        next(((m.gt, "(") for m in metadata if isinstance(m, at.Gt)), None)
    hi = next(((m.le, "]") for m in metadata if isinstance(m, at.Le)), None) or \
        next(((m.lt, ")") for m in metadata if isinstance(m, at.Lt)), None)
    if lo and hi:
        return f" in {lo[1]}{lo[0]:g}, {hi[0]:g}{hi[1]}"
    if lo:
        return f" {'>=' if lo[1] == '[' else '>'} {lo[0]:g}"
    if hi:
        return f" {'<=' if hi[1] == ']' else '<'} {hi[0]:g}"
    return ""


def _scalar(tp, metadata, plural: bool = False) -> str:
    if get_origin(tp) is Annotated:
        inner, *extra = get_args(tp)
        meta = [m for x in extra for m in (getattr(x, "metadata", None) or [x])]
        return _scalar(inner, list(metadata) + meta, plural)
    s = "s" if plural else ""
    if get_origin(tp) is Literal:
        return "one of " + ", ".join(str(v) for v in get_args(tp))
    if tp is bool:
        return "true or false"
    if tp is int:
        return ("integers" if plural else "an integer") + _bounds(metadata)
    if tp is float:
        return ("numbers" if plural else "a number") + _bounds(metadata)
    if tp is str:
        nonempty = any(isinstance(m, at.MinLen) and m.min_length >= 1 for m in metadata)
        return ("non-empty " if nonempty else "") + ("string" + s if plural or nonempty else "a string")
    raise TypeError(f"no words for {tp!r}")  # a new kind of key: teach expectation() its words


def expectation(field) -> str:
    """What a key must be, in words ("an integer >= 1", "a list of exactly two integers >= 1", ...): the
    schema's type and range, used by the error messages and the reference table."""
    extra = field.json_schema_extra or {}
    if "expect" in extra:
        return extra["expect"]
    if "choices_from" in extra:
        return "one of " + ", ".join(_choices_from(extra["choices_from"]))
    tp, meta = field.annotation, list(field.metadata)
    if get_origin(tp) in (Union, types.UnionType) and type(None) in get_args(tp):
        (inner,) = [a for a in get_args(tp) if a is not type(None)]
        text = _scalar(inner, meta)
        return ("a non-empty string" if text == "non-empty string" else text) + " (or omitted)"
    if get_origin(tp) is list:
        (item,) = get_args(tp)
        lo = next((m.min_length for m in meta if isinstance(m, at.MinLen)), 0)
        hi = next((m.max_length for m in meta if isinstance(m, at.MaxLen)), None)
        items = _scalar(item, [], plural=True)
        if hi is not None and lo == hi:
            return f"a list of exactly {_WORDS.get(lo, lo)} {items}"
        if lo:
            return f"a list of {lo} or more {items}" if lo > 1 else f"a list of one or more {items}"
        return f"a list of {items}"
    text = _scalar(tp, meta)
    return "a non-empty string" if text == "non-empty string" else text


# --------------------------------------------------------------------------- reference
REFERENCE_START = "<!-- config-reference:start -->"
REFERENCE_END = "<!-- config-reference:end -->"


def _toml(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml(x) for x in v) + "]"
    return repr(v)


def _cell(s: str) -> str:
    return s.replace("|", "\\|").replace("\n", " ")


def _rows(model: type[BaseModel], section: str):
    for key, field in model.model_fields.items():
        if key in SECTIONS and model is Config:
            continue
        value = None if field.is_required() else field.get_default(call_default_factory=True)
        default = "required" if field.is_required() else "omitted" if value is None else f"`{_toml(value)}`"
        typ = expectation(field).removeprefix("an ").removeprefix("a ")
        yield f"| {section} | `{key}` | {_cell(typ)} | {default} | {_cell(field.description or '')} |"


def reference_markdown() -> str:
    """The configuration reference as a Markdown table (section, key, type, default, meaning), from the schema."""
    lines = ["| section | key | type | default | meaning |", "|---|---|---|---|---|"]
    lines += _rows(Config, "(top)")
    for name, model in SECTIONS.items():
        lines += _rows(model, f"`[{name}]`")
    return "\n".join(lines) + "\n"


def readme_reference(text: str) -> str:
    """The part of a README between the config-reference markers (ConfigError when they are missing)."""
    start, end = text.find(REFERENCE_START), text.find(REFERENCE_END)
    if start < 0 or end < start:
        raise ConfigError(f"README has no {REFERENCE_START} ... {REFERENCE_END} section")
    return text[start + len(REFERENCE_START):end].strip("\n") + "\n"


def with_reference(text: str) -> str:
    """``text`` (a README) with the generated reference put between its markers."""
    readme_reference(text)  # the markers must be there
    start, end = text.index(REFERENCE_START) + len(REFERENCE_START), text.index(REFERENCE_END)
    return text[:start] + "\n" + reference_markdown() + text[end:]
