"""Reusable explanation widget: pick a method for a face, see its map, its cost and its deletion curve.

    explain_ui.face_explanation(det, crop, key="cam_0", image_col=c2, info_col=c3)

Results are kept in ``st.session_state["gradcam"]`` (the Detect page clears that key on a new analysis), at most
``MAX_CACHED`` per session.
"""
from __future__ import annotations

import streamlit as st

from dashboard import charts
from model import explain

CACHE_KEY = "gradcam"
MAX_CACHED = 24
DELETION_NOTE = ("Deletion curve: the most salient pixels are replaced by the face's mean colour, step by step, and "
                 "the face is rescored (network P(fake), before calibration). Lower area = the map points at what the "
                 "score depends on; dotted = a random map, the baseline.")


def method_picker(key: str, container=None, label: str = "Explanation method") -> str:
    """A select box over every method of ``model.explain`` (default: the fast Grad-CAM)."""
    c = container or st
    return c.selectbox(label, list(explain.METHODS), key=key, format_func=explain.method_label,
                       help="; ".join(f"{m.label}: {m.description}" for m in explain.METHODS.values()))


def _cache() -> dict:
    cache = st.session_state.setdefault(CACHE_KEY, {})
    while len(cache) > MAX_CACHED:
        cache.pop(next(iter(cache)))
    return cache


def faithfulness(det, crop, key: str, method: str) -> explain.Faithfulness:
    """Map + deletion curve + random baseline for one face, computed once per (key, method) and session."""
    cache = _cache()
    k = (key, method)
    if k not in cache:
        cache[k] = explain.faithfulness(det, crop, method)
    return cache[k]


def face_explanation(det, crop, key: str, image_col=None, info_col=None, width: int = 160) -> explain.Faithfulness | None:
    """Method selector + map (in ``image_col``) + cost and a small deletion plot (in ``info_col``)."""
    image_col, info_col = image_col or st, info_col or st
    method = method_picker(f"{key}_method", info_col)
    try:
        with st.spinner(f"{explain.method_label(method)}…"):
            fa = faithfulness(det, crop, key, method)
    except (RuntimeError, ValueError) as e:
        info_col.error(f"Could not compute {explain.method_label(method)}: {str(e).splitlines()[0]}")
        return None
    ex = fa.explanation
    image_col.image(ex.overlay, caption=f"{explain.method_label(method)} (red = towards fake)", width=width)
    info_col.caption(f"{explain.method_label(method)}: **{ex.seconds:.2f} s** for this face"
                     + (" (includes building the method: the next face is faster)" if ex.first_call else "")
                     + f". Deletion area **{fa.curve.area:.3f}** vs random map {fa.baseline.area:.3f}.")
    info_col.plotly_chart(charts.deletion([fa.curve, fa.baseline], height=200), width="stretch",
                          key=f"{key}_deletion_{method}", config={"displayModeBar": False})
    info_col.caption(DELETION_NOTE)
    return fa
