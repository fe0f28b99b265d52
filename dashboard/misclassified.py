"""Misclassifications screen: stored mistakes, their faces re-cut from the source files, explained on demand."""
from __future__ import annotations

from typing import Callable

import pandas as pd
import streamlit as st

from dashboard import explain_ui
from model import explain

BOX = ("x", "y", "w", "h")


def face_row(row: pd.Series, faces: pd.DataFrame | None, level: str) -> pd.Series | None:
    """The face to show for a mistake: the row itself (face level) or the file's highest-scoring face."""
    if level == "face":
        return row
    if faces is None or faces.empty:
        return None
    f = faces[faces["path"] == row["path"]]
    return None if f.empty else f.loc[f["score"].idxmax()]


def table(worst: pd.DataFrame, level: str) -> pd.DataFrame:
    cols = ["score", "label", "dataset", "method", "compression", "group", "path"]
    cols += ["frame", "track", "face"] if level == "face" else ["kind", "faces"]
    return worst[[c for c in cols if c in worst]]


def gallery(worst: pd.DataFrame, faces: pd.DataFrame | None, get_detector: Callable, level: str, key: str = "mis",
            columns: int = 4) -> None:
    """Re-cut faces of the worst mistakes in a grid; each can be explained with any method."""
    det = get_detector() if explain.recut_available() else None
    if det is None or not explain.recut_available(det):
        st.info(f"Face crops not available: {explain.RECUT_MISSING}. Showing the table only.")
        return
    shown, missing = [], 0
    for i, r in worst.iterrows():
        fr = face_row(r, faces, level)
        crop = None
        if fr is not None and all(k in fr for k in BOX):
            crop = explain.recut_face(det, fr["path"], int(fr.get("frame", 0) or 0), [fr[k] for k in BOX])
        if crop is None:
            missing += 1
            continue
        shown.append((i, r, crop))
    if missing:
        st.info(f"{missing} of {len(worst)} faces are not on this machine (datasets are research-only and not "
                "shipped): they are in the table only.")
    cols = st.columns(columns)
    for k, (i, r, crop) in enumerate(shown):
        with cols[k % columns]:
            st.image(crop, caption=f"P(fake) {r['score']:.3f} · {r.get('method', '')} · {r.get('dataset', '')}",
                     width="stretch")
            if st.toggle("Explain", key=f"mis_cam_{level}_{i}"):
                explain_ui.face_explanation(det, crop, f"{key}_{level}_{i}", width=200)
