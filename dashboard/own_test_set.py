"""'Your test set' screen: score a zip (or a local folder) of real/ and fake/ files with the engine."""
from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import streamlit as st

from dashboard import charts, settings
from model import testset

MAX_FILES = 500
MAX_MB = 2000
STATE = "own_testset"


def caps_note() -> str:
    return (f"At most **{MAX_FILES} files** and **{MAX_MB:,} MB unpacked** per zip (upload limit "
            f"{settings.max_upload_mb()} MB). Members with path tricks (`../`, absolute paths, links), wrong types, "
            "corrupt media or no face are listed and skipped, never fatal. The zip is unpacked into a private "
            "temporary folder that is deleted right after scoring.")


def resolve_folder(user_path: str):
    """A folder typed by the user, only under the allowed roots (data and runs folders)."""
    p = settings.resolve_any(user_path.strip())
    if not p.is_dir():
        raise settings.PathNotAllowed(f"not a folder: {user_path}")
    return p


def run_test_set(det, source, key: str, frames: int | None = None, strategy: str | None = None) -> dict | None:
    """Open, score and clean up; the per-file table (no images) is kept in session state under ``key``.
    ``frames`` and ``strategy`` default to the engine's (``testset.score``)."""
    state = st.session_state.get(STATE)
    if state and state.get("key") == key:
        return state
    bar = st.progress(0.0, text="Reading the test set…")

    def prog(phase, weight, start):
        return lambda done, total, msg: bar.progress(min(1.0, start + weight * done / max(total, 1)), text=f"{phase}: {msg}")

    try:
        ts = testset.open_test_set(source, max_files=MAX_FILES, max_bytes=MAX_MB * 1_000_000,
                                   progress=prog("unpacking", 0.1, 0.0))
    except testset.TestSetError as e:
        bar.empty()
        st.error(f"Cannot use this test set: {e}")
        return None
    with ts:
        table = testset.score(det, ts, frames=frames, strategy=strategy, progress=prog("scoring", 0.9, 0.1))
        name = ts.source
    bar.empty()
    state = {"key": key, "table": table, "name": name, "model": det.name}
    st.session_state[STATE] = state
    return state


def source_key(name: str, data_or_path, frames: int | None, strategy: str | None, model: str) -> str:
    h = hashlib.sha1(data_or_path if isinstance(data_or_path, bytes) else str(data_or_path).encode()).hexdigest()
    return f"{name}:{h}:{frames}:{strategy}:{model}"


def show_results(det, state: dict) -> None:
    table: pd.DataFrame = state["table"]
    thr = st.slider("Threshold (calibrated P(fake) ≥ threshold → fake)", 0.0, 1.0, float(det.threshold), 0.000001,
                    format="%.4f", key="own_threshold")
    s = testset.summary(table, thr)
    c = st.columns(5)
    c[0].metric("AUC", "—" if s["auc"] is None else f"{s['auc']:.3f}",
                help="needs both real and fake files with a face")
    c[1].metric("AP", "—" if s["ap"] is None else f"{s['ap']:.3f}")
    c[2].metric("Files scored", f"{s['n_scored']} / {s['n_files']}")
    c[3].metric("Detection rate", "—" if s["detection_rate"] is None else f"{s['detection_rate']:.3f}")
    c[4].metric("False-alarm rate", "—" if s["false_alarm_rate"] is None else f"{s['false_alarm_rate']:.3f}")
    st.caption(f"{state['name']}: {s['n_real']} real and {s['n_fake']} fake files scored by {state['model']}; "
               f"{s['n_problems']} skipped (listed below). Score = P(fake) in [0, 1].")
    if s["roc"]:
        c1, c2 = st.columns(2)
        c1.plotly_chart(charts.roc({"your set": pd.DataFrame(s["roc"])}, {"your set": s["auc"]}), width="stretch",
                        key="own_roc")
        c2.plotly_chart(charts.pr({"your set": pd.DataFrame(s["pr"])}, {"your set": s["ap"]}), width="stretch",
                        key="own_pr")
    else:
        st.info("ROC and PR need scored files of both classes.")
    cm = np.array([[s["tn"], s["fp"]], [s["fn"], s["tp"]]])
    c1, c2 = st.columns(2)
    c1.plotly_chart(charts.confusion(cm, f"files at threshold {thr:.4f}"), width="stretch", key="own_cm")
    c2.markdown(f"TN **{s['tn']}** · FP **{s['fp']}** · FN **{s['fn']}** · TP **{s['tp']}**")
    ranked = testset.by_error(table)
    scored = ranked[ranked["score"].notna()].copy()
    scored["verdict"] = np.where(scored["score"] >= thr, "fake", "real")
    scored["mistake"] = scored["verdict"] != scored["label"]
    st.subheader("Per file, worst mistakes first")
    st.dataframe(scored[["name", "label", "verdict", "mistake", "score", "kind", "faces"]], hide_index=True,
                 column_config={"score": st.column_config.ProgressColumn("P(fake)", min_value=0.0, max_value=1.0,
                                                                         format="%.3f")})
    bad = table[table["error"].astype(bool)]
    if len(bad):
        st.subheader(f"Skipped ({len(bad)})")
        st.dataframe(bad[["name", "label", "error"]], hide_index=True)
    st.download_button("Download CSV (per file)", ranked.drop(columns=["error_size"]).to_csv(index=False),
                       file_name="test_set_scores.csv", mime="text/csv")
