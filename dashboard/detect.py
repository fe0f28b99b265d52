"""Detect screen building blocks: analyse an upload or sample, then render the result."""
from __future__ import annotations

import csv
import io
import tempfile
from pathlib import Path

import streamlit as st

from dashboard import charts, overlays
from model.api import CSV_COLUMNS, Result
from model.media import IMAGE_EXTS, VIDEO_EXTS

UPLOAD_TYPES = sorted(e.lstrip(".") for e in IMAGE_EXTS | VIDEO_EXTS)
SCORE_NOTE = "Score = P(fake), the model's probability that a face is manipulated, from 0 (real) to 1 (fake)."


def analyze_bytes(det, name: str, data: bytes, frames: int, strategy: str, progress=None) -> Result:
    """Analyse uploaded bytes. Videos go through a private temp folder that is always removed."""
    safe_name = Path(name).name or "upload"
    suffix = Path(safe_name).suffix.lower()
    with tempfile.TemporaryDirectory(prefix="dfd_upload_") as tmp:
        p = Path(tmp) / f"upload{suffix}"
        p.write_bytes(data)
        return det.analyze(p, frames=frames, strategy=strategy, progress=progress, display_name=safe_name)


def run_analysis(det, key: str, name: str, data: bytes, frames: int, strategy: str) -> Result:
    """Analyse once per (file, settings); the result lives in session state so widgets don't redo it."""
    cache = st.session_state.setdefault("detect_results", {})
    if key not in cache:
        bar = st.progress(0.0, text="Analysing…")
        res = analyze_bytes(det, name, data, frames, strategy,
                            progress=lambda f, m: bar.progress(min(max(f, 0.0), 1.0), text=m))
        bar.empty()
        cache.clear()  # keep one result: memory stays small
        cache[key] = res
        st.session_state.pop("gradcam", None)
    return cache[key]


def verdict(det, res: Result, threshold: float) -> None:
    if res.error:
        st.error(f"Could not analyse **{res.path}**: {res.error}")
        return
    if res.score is None:
        st.warning("No face found: nothing to score. Try a sharper or larger, front-facing face.")
        return
    label = det.label_for(res.score, threshold)
    what = "face track" if res.kind == "video" else "face"
    c1, c2, c3 = st.columns(3)
    c1.metric("Verdict", {"fake": "Likely FAKE", "real": "Likely REAL"}.get(label, "No verdict"))
    c2.metric("Score P(fake)", f"{res.score:.3f}", help=SCORE_NOTE)
    c3.metric(f"{what.capitalize()}s", res.faces)
    if not det.trained:
        st.warning("This model is **untrained**: the scores are random-weight outputs, not a verdict.")
    else:
        how = ("the file's score is the highest face score" if res.kind == "image" else
               f"video score = {'max over faces per frame, mean over frames' if res.strategy == 'max_mean' else res.strategy}")
        st.caption(f"{SCORE_NOTE} Label 'fake' when score ≥ threshold {threshold:.3f}; {how}. "
                   "A score is evidence, not proof.")


def faces_view(det, res: Result, threshold: float) -> None:
    if res.image is not None and (res.all_faces or res.kind == "image"):
        faces = res.face_results if res.kind == "image" else max(
            res.frames, key=lambda fr: max((f.score for f in fr.faces), default=-1.0)).faces  # res.image's frame
        cap = "boxes: red = fake, green = real at the current threshold" + (
            "; the frame with the highest-scoring face" if res.kind == "video" else "")
        st.image(overlays.draw_faces(res.image, faces, threshold), caption=cap, width=720)
    if res.kind == "video" and res.tracks:
        st.plotly_chart(charts.timeline(res.frames, res.tracks, threshold), width="stretch")
        st.dataframe([{"face track": t.id + 1, "frames": len(t.frames), "score P(fake)": round(t.score, 4),
                       "label": det.label_for(t.score, threshold)} for t in res.tracks], hide_index=True)
    faces = _representative_faces(res)
    if not faces:
        return
    st.subheader("Per face")
    for i, f in enumerate(faces):
        c1, c2, c3 = st.columns([1, 1, 2])
        c1.image(f.crop, caption=f"face {i + 1}" + (f" (track {f.track + 1}, frame {f.frame})" if f.track is not None else ""),
                 width=160)
        c3.markdown(f"**P(fake) = {f.score:.3f}** → {det.label_for(f.score, threshold)}  \n"
                    f"detector confidence {f.confidence:.3f}, box {f.box}")
        if c3.toggle("Explain (heat map)", key=f"cam_{i}", help="Which regions pushed the score towards 'fake'"):
            from dashboard import explain_ui

            explain_ui.face_explanation(det, f.crop, f"cam_{i}", image_col=c2, info_col=c3)


def _representative_faces(res: Result, limit: int = 12):
    """Image: every face. Video: the highest-scoring face of each track."""
    if res.kind == "image":
        return res.face_results[:limit]
    best = {}
    for f in res.all_faces:
        if f.track not in best or f.score > best[f.track].score:
            best[f.track] = f
    return [best[k] for k in sorted(best)][:limit]


def downloads(res: Result) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n")
    w.writeheader()
    w.writerow(res.csv_row())
    stem = Path(res.path).stem or "result"
    c1, c2 = st.columns(2)
    c1.download_button("Download JSON", res.to_json(indent=2), file_name=f"{stem}_deepfake.json", mime="application/json")
    c2.download_button("Download CSV", buf.getvalue(), file_name=f"{stem}_deepfake.csv", mime="text/csv")


def model_card(det) -> None:
    card = det.card
    st.markdown(f"**{card.backbone}**, {det.input_size} px faces, threshold {card.threshold:.3f}, "
                f"{'trained' if card.trained else '**untrained**'}  \nTrained on: {card.trained_on}")
    if card.metrics:
        st.json(card.metrics, expanded=False)

