"""The v3 tables of docs/results.md, read from evaluated run folders (no number typed by hand).

    python -m research.v3_tables runs/sample [--lodo runs/lodo-no-dfdc runs/lodo-no-ffpp]

Per dataset (DFDC, FF++, DFD, FF++ and DFD pooled): file AUC, ECE, false alarms and detections at the run's
threshold, each with a 95 % bootstrap over identity groups (``model.metrics.bootstrap``); held-out real photo
sources: false alarms by source (resampled by person where the set knows people: LFW) and by UTKFace gender/race;
the per-source score distribution; and the leave-one-dataset-out table.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from model import metrics

GENDERS = {0: "male", 1: "female"}
RACES = {0: "White", 1: "Black", 2: "Asian", 3: "Indian", 4: "Other"}


def _fmt(v, ci, pct=False) -> str:
    if v is None:
        return "—"
    f = (lambda x: f"{100 * x:.1f} %") if pct else (lambda x: f"{x:.3f}")
    return f"{f(v)} [{f(ci[0])}, {f(ci[1])}]" if ci else f(v)


def file_table(run: Path) -> pd.DataFrame:
    p = pd.read_csv(run / "evaluation" / "predictions.csv", keep_default_na=False,
                    dtype={"group": str, "compression": str})
    p = p[p["score"].astype(str) != ""]
    p["score"] = p["score"].astype(float)
    p["raw_score"] = p["raw_score"].astype(float)
    return p


def dataset_rows(p: pd.DataFrame, thr: float, sets: dict[str, list[str]], score: str = "score") -> list[str]:
    rows = ["| test set | files (real / fake, groups) | file AUC [95 % CI] | ECE [95 % CI] | false alarms at the "
            "threshold [95 % CI] | detections [95 % CI] |", "|---|---|---|---|---|---|"]
    for name, ds in sets.items():
        d = p[p["dataset"].isin(ds)]
        if d.empty or d["label"].nunique() < 2:
            continue
        y, s, g = d["label"].to_numpy(int), d[score].to_numpy(float), d["group"].to_numpy()
        a = metrics.auc(y, s)
        a_ci = metrics.bootstrap(metrics.auc, y, s, g)
        e = metrics.ece(y, s)
        e_ci = metrics.bootstrap(metrics.ece, y, s, g)
        fa = metrics.false_alarm_rate(y, s, thr)
        fa_ci = metrics.bootstrap(lambda a_, b_: metrics.false_alarm_rate(a_, b_, thr), y, s, g)
        dr = metrics.detection_rate(y, s, thr)
        dr_ci = metrics.bootstrap(lambda a_, b_: metrics.detection_rate(a_, b_, thr), y, s, g)
        rows.append(f"| {name} | {len(d)} ({int((y == 0).sum())} / {int((y == 1).sum())}, {len(set(g))}) | "
                    f"{_fmt(a, a_ci)} | {_fmt(e, e_ci)} | {_fmt(fa, fa_ci, True)} | {_fmt(dr, dr_ci, True)} |")
    return rows


def photo_rows(p: pd.DataFrame, thr: float) -> list[str]:
    reals = p[(p["label"] == 0) & p["dataset"].isin(["lfw", "utkface", "ffhq"])]
    rows = ["| held-out real photos | n (people) | false alarms at the threshold [95 % CI] | score p10 / p50 / p90 |",
            "|---|---|---|---|"]
    parts = [(f"source: {ds}", reals[reals["dataset"] == ds]) for ds in ("lfw", "utkface", "ffhq")]
    if "gender" in reals:
        utk = reals[reals["dataset"] == "utkface"]
        parts += [(f"UTKFace gender: {n}", utk[pd.to_numeric(utk["gender"], errors="coerce") == c]) for c, n in GENDERS.items()]
        parts += [(f"UTKFace race: {n}", utk[pd.to_numeric(utk["race"], errors="coerce") == c]) for c, n in RACES.items()]
    for name, d in parts:
        if d.empty:
            continue
        s, g = d["score"].to_numpy(float), d["group"].to_numpy()
        y = np.zeros(len(s), int)
        fa = metrics.false_alarm_rate(y, s, thr)
        ci = metrics.bootstrap(lambda a_, b_: metrics.false_alarm_rate(a_, b_, thr), y, s, g)
        q = np.percentile(s, [10, 50, 90])
        rows.append(f"| {name} | {len(d)} ({len(set(g))}) | {_fmt(fa, ci, True)} | {q[0]:.3f} / {q[1]:.3f} / {q[2]:.3f} |")
    return rows


def source_rows(p: pd.DataFrame) -> list[str]:
    rows = ["| source | label | n | score p10 / p50 / p90 |", "|---|---|---|---|"]
    for (ds, lab), d in p.groupby(["dataset", "label"]):
        q = np.percentile(d["score"].astype(float), [10, 50, 90])
        rows.append(f"| {ds} | {'fake' if lab else 'real'} | {len(d)} | {q[0]:.3f} / {q[1]:.3f} / {q[2]:.3f} |")
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m research.v3_tables")
    ap.add_argument("run")
    ap.add_argument("--lodo", nargs="*", default=[], help="leave-one-dataset-out run folders")
    a = ap.parse_args(argv)
    run = Path(a.run)
    m = json.loads((run / "evaluation" / "metrics.json").read_text())
    thr = float(m["threshold"])
    p = file_table(run)
    sets = {"DFDC (face crops)": ["dfdc"], "FF++ (videos)": ["ffpp"], "Google DFD (videos)": ["dfd"],
            "FF++ and DFD (videos)": ["ffpp", "dfd"]}
    print(f"threshold {thr:.4f} ({m.get('threshold_policy')}); calibration {m['calibration'].get('method')}\n")
    print("\n".join(dataset_rows(p, thr, sets)))
    print()
    print("\n".join(photo_rows(p, thr)))
    print()
    print("\n".join(source_rows(p)))
    for lr in a.lodo:
        lr = Path(lr)
        lm = json.loads((lr / "evaluation" / "metrics.json").read_text())
        lp = file_table(lr)
        print(f"\n{lr.name}: threshold {float(lm['threshold']):.4f}; raw scores (no calibration fitted)")
        print("\n".join(dataset_rows(lp, float(lm["threshold"]), sets, score="raw_score")))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
