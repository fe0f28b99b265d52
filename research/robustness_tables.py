"""Robustness tables for docs/results.md from runs' ``evaluation/robustness.csv`` (``training robustness``).

    python -m research.robustness_tables runs/sample runs/gan-noaug runs/gan

Per run: AUC [95 % CI] per perturbation (rows) and level (columns; 0 = clean, the same files), then the AUC drop at
levels 3 and 5 against issue 17's limits (0.05 / 0.10) with its paired interval.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from training.robustness import TARGETS


def _ci(v, lo, hi) -> str:
    if pd.isna(v):
        return "—"
    return f"{v:.3f} [{lo:.3f}, {hi:.3f}]" if not (pd.isna(lo) or pd.isna(hi)) else f"{v:.3f}"


def run_table(run: Path) -> str:
    d = pd.read_csv(run / "evaluation" / "robustness.csv")
    levels = sorted(d["level"].unique())
    n = d[d["level"] == 0]["n_files"].max()
    lines = [f"**{run.name}** ({int(n)} test files; AUC [95 % CI] by level; drop = clean − perturbed, paired)", "",
             "| perturbation | " + " | ".join(f"level {lv}" for lv in levels) + " | drop at 3 | drop at 5 |",
             "|---|" + "---:|" * (len(levels) + 2)]
    for p, g in d.groupby("perturbation", sort=False):
        g = g.set_index("level")
        cells = [_ci(g.at[lv, "auc"], g.at[lv, "auc_ci_lo"], g.at[lv, "auc_ci_hi"]) if lv in g.index else "—"
                 for lv in levels]
        drops = []
        for lv in TARGETS:
            if lv in g.index and not pd.isna(g.at[lv, "auc_drop"]):
                ok = "met" if g.at[lv, "target"] == "PASS" else "**missed**"  # judged by ``training robustness``
                drops.append(f"{_ci(g.at[lv, 'auc_drop'], g.at[lv, 'auc_drop_ci_lo'], g.at[lv, 'auc_drop_ci_hi'])} "
                             f"({ok})")
            else:
                drops.append("—")
        lines.append(f"| {p} ({g['media'].iloc[0]}) | " + " | ".join(cells) + " | " + " | ".join(drops) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m research.robustness_tables", description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+")
    a = ap.parse_args(argv)
    for r in a.runs:
        f = Path(r) / "evaluation" / "robustness.csv"
        print(run_table(Path(r)) if f.is_file() else f"{r}: no robustness.csv (python -m training robustness {r})")
        print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
