"""Run selection shared by the Training, Evaluation and Misclassifications screens."""
from __future__ import annotations

from pathlib import Path

import streamlit as st

from dashboard import runs, settings


def run_picker(multi: bool = False, need_eval: bool = False):
    root = settings.runs_root()
    all_runs = [r for r in runs.list_runs(root) if not need_eval or (r / "evaluation" / "metrics.json").is_file()]
    if not all_runs:
        st.info(f"No {'evaluated ' if need_eval else ''}run folders under {root} (set `DEEPFAKE_RUNS`). "
                "Train with `python -m training train CONFIG`, then `python -m training evaluate RUN`.")
        return [] if multi else None
    names = [r.name for r in all_runs]
    default = "sample" if "sample" in names else names[0]
    if multi:
        chosen = st.multiselect("Runs", names, default=[default])
        return [root / n for n in chosen]
    return root / st.selectbox("Run", names, index=names.index(default))


def image_for(row, run: Path) -> Path | None:
    """The crop image of a prediction row, if it is on this machine under an allowed root."""
    try:
        p = settings.resolve_any(str(row["image"]))
    except settings.PathNotAllowed:
        return None
    return p if p.is_file() else None
