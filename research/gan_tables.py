"""The generated-face tables of docs/results.md, read from evaluated run folders (no number typed by hand).

    python -m research.gan_tables [--gan runs/gan] [--logo runs/logo-stylegan2 runs/logo-sd21 runs/logo-other_gan]
                                  [--combined runs/gan/analysis/combined_verdict.json]

1. Leave-one-generator-out: for each fold, file AUC of the held-out generator's test fakes against the test reals of
   the generated-face set (FFHQ), beside the in-domain run's AUC on the same generator; 95 % bootstrap intervals
   (files are their own groups) from ``training evaluate``'s method slices.
2. The in-domain run per generator and pooled, and its false alarms on held-out real photos (LFW test people,
   UTKFace audit) at its threshold.
3. Residual cues: each generator's mean calibrated score, clean and after each JPEG / resize round trip level,
   from the robustness scores (``training robustness``) when present.
4. Several detectors: false alarms and detections of the face-swap detector alone and of the combined verdict
   (``research.detectors``).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from model import registry
from dashboard.runs import find_slice
from research.v3_tables import _fmt

GENERATORS = ("stylegan2", "sd21", "other_gan")
NAMES = {"stylegan2": "StyleGAN2", "sd21": "Stable Diffusion 2.1", "other_gan": "other GAN"}


def _metrics(run: Path) -> dict:
    return json.loads((run / "evaluation" / "metrics.json").read_text())


def logo_table(gan: Path, logo: list[Path]) -> str:
    full = _metrics(gan)
    lines = ["| held-out generator | AUC, never seen (LOGO) | AUC, trained on all three | test fakes / reals |",
             "|---|---:|---:|---:|"]
    for run in logo:
        cfg = json.loads((run / "config.json").read_text())
        (g,) = cfg["data"]["holdout_methods"]
        s, a = find_slice(_metrics(run), "file", "gan_faces", g), find_slice(full, "file", "gan_faces", g)
        lines.append(f"| {NAMES.get(g, g)} | {_fmt(s['auc'], s['auc_ci'])} | {_fmt(a['auc'], a['auc_ci'])} | "
                     f"{s['n_fake']} / {s['n_real']} |")
    return "\n".join(lines)


def in_domain_table(gan: Path) -> str:
    m = _metrics(gan)
    lines = [f"Threshold {m['threshold']:.3f} ({m.get('threshold_policy', '')}).", "",
             "| slice | n | AUC | detections | false alarms |", "|---|---:|---:|---:|---:|"]
    for method in ("all", *GENERATORS):
        s = find_slice(m, "file", "gan_faces", method)
        if s:
            lines.append(f"| generated faces: {NAMES.get(method, method)} | {s['n']} | {_fmt(s['auc'], s['auc_ci'])} | "
                         f"{_fmt(s['detection_rate'], s['detection_rate_ci'], True)} | "
                         f"{_fmt(s['false_alarm_rate'], s['false_alarm_rate_ci'], True)} |")
    for s in m["slices"] + m.get("photo_sets", []):
        if s["level"] == "file" and s["n_fake"] == 0 and s["method"] in ("all", "real") and s["compression"] == "all" \
                and s["dataset"] != "gan_faces":
            lines.append(f"| real photos: {s['dataset']} (held out) | {s['n']} | — | — | "
                         f"{_fmt(s['false_alarm_rate'], s['false_alarm_rate_ci'], True)} |")
    return "\n".join(lines)


def cue_table(gan: Path) -> str | None:
    """Mean calibrated score per source (FFHQ reals, each generator) clean and after JPEG / resize round trips,
    from ``training robustness``'s per-file raw scores and the run's calibration."""
    f = gan / "evaluation" / "robustness_scores.csv"
    if not f.is_file():
        return None
    from model.network import ModelCard

    card = ModelCard.from_dict(json.loads((gan / "model" / "model_card.json").read_text()))
    sc = pd.read_csv(f, keep_default_na=False)
    sc = sc[(sc["dataset"] == "gan_faces") & (sc["raw_score"].astype(str) != "")]
    sc = sc[sc["perturbation"].isin(["jpeg", "resize"]) | (sc["level"].astype(int) == 0)].copy()
    sc["source"] = [Path(p).parent.name if int(lab) == 1 else "real" for p, lab in zip(sc["path"], sc["label"])]
    sc["score"] = card.calibrator().apply(sc["raw_score"].astype(float).to_numpy())
    sc["condition"] = [("clean" if int(lv) == 0 else f"{p} level {int(lv)}") for p, lv in
                       zip(sc["perturbation"], sc["level"])]
    sc = sc.drop_duplicates(["path", "condition"])
    t = sc.groupby(["condition", "source"])["score"].mean().unstack("source")
    order = ["clean"] + sorted(c for c in t.index if c != "clean")
    t = t.loc[order, [c for c in ("real", *GENERATORS) if c in t.columns]]
    n = sc[sc["condition"] == "clean"].groupby("source").size()
    lines = ["| condition | " + " | ".join(f"{NAMES.get(c, 'real (FFHQ)')} (n={n.get(c, 0)})" for c in t.columns)
             + " |", "|---|" + "---:|" * len(t.columns)]
    for cond, r in t.iterrows():
        lines.append(f"| {cond} | " + " | ".join(f"{v:.3f}" for v in r) + " |")
    return "\n".join(lines)


def combined_table(path: Path) -> str | None:
    if not path.is_file():
        return None
    from research.detectors import table

    d = json.loads(path.read_text())
    return f"Rule: {d['rule']}.\n\n" + table(d["rows"], d["detectors"])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m research.gan_tables", description=__doc__.splitlines()[0])
    ap.add_argument("--gan", default="runs/gan")
    ap.add_argument("--logo", nargs="*", default=[f"runs/logo-{g}" for g in GENERATORS])
    ap.add_argument("--combined", default=str(registry.COMBINED_COST))
    a = ap.parse_args(argv)
    gan = Path(a.gan)
    print("### Leave-one-generator-out (test split, engine-run)\n")
    print(logo_table(gan, [Path(p) for p in a.logo]))
    print("\n### The generated-face detector in domain, and on held-out real photos\n")
    print(in_domain_table(gan))
    cues = cue_table(gan)
    if cues:
        print("\n### Residual cues: mean calibrated score per source after JPEG / resize round trips\n")
        print(cues)
    comb = combined_table(Path(a.combined))
    if comb:
        print("\n### Face-swap detector alone vs the combined verdict\n")
        print(comb)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
