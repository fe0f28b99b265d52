"""Detect screen building blocks: analyse an upload or sample, then render the result."""
from __future__ import annotations

import csv
import dataclasses
import io
import time
from pathlib import Path

import streamlit as st

from dashboard import charts, overlays
from model.api import CSV_COLUMNS, Result
from model.media import IMAGE_EXTS, VIDEO_EXTS
from model.video import DEFAULT_STRATEGY, STRATEGIES, downscale

UPLOAD_TYPES = sorted(e.lstrip(".") for e in IMAGE_EXTS | VIDEO_EXTS)
SCORE_NOTE = "Score = P(fake), the model's probability that a face is manipulated, from 0 (real) to 1 (fake)."
DISPLAY_SIDE = 1280  # what a session keeps of the image / key frame (longer side, pixels)
MAX_SHOWN_FACES = 12


def analyze_upload(det, name: str, data: bytes, frames: int | None = None, strategy: str = DEFAULT_STRATEGY,
                   progress=None) -> Result:
    """Analyse uploaded bytes. The type comes from the content; images are decoded from memory, videos pass
    through a private temp folder that is always removed (``model.uploads``); decoding runs in a limited
    child process and waits for one of the server's analysis slots (``model.limits``). ``frames`` defaults to the
    model card's crop contract, as everywhere."""
    safe_name = Path(name).name or "upload"
    return det.analyze(data, frames=frames, strategy=strategy, progress=progress, display_name=safe_name)


def frames_slider(col, det, **kw) -> int:
    """Frames per video, starting at the model card's crop contract (what its threshold was fitted with)."""
    return col.slider("Frames sampled per video", 4, 64, int(det.spec.frames), 4,
                      help=f"The model was evaluated with {det.spec.frames} frames per video (its crop contract).",
                      **kw)


def strategy_select(col, **kw) -> str:
    """Video aggregation, starting at the engine's default (``model.video.DEFAULT_STRATEGY``)."""
    return col.selectbox("Video aggregation", list(STRATEGIES), index=STRATEGIES.index(DEFAULT_STRATEGY),
                         help="max_mean: max over faces in a frame, mean over frames. confident: the DFDC winner's "
                              "strategy (mean of confident fakes if many, else of confident reals, else all).", **kw)


def compact(res: Result, max_side: int = DISPLAY_SIDE) -> Result:
    """What a session keeps of a result: the image or key frame downscaled to ``max_side`` (boxes are scaled
    when drawn) and the crops of the faces shown (Grad-CAM needs them) only."""
    if res.image is not None:
        res.image = downscale(res.image, max_side)
    shown = {id(f) for f in _representative_faces(res)}
    for f in res.all_faces:
        if id(f) not in shown:
            f.crop = None
    return res


def run_analysis(det, key: str, name: str, data: bytes, frames: int | None, strategy: str) -> Result:
    """Analyse once per (file, settings); the compacted result lives in session state so widgets don't redo it.
    While the server's analysis slots are busy the progress bar says so, and the result says how long it
    waited."""
    cache = st.session_state.setdefault("detect_results", {})
    if key not in cache:
        bar = st.progress(0.0, text="Analysing…")
        waiting_since = []

        def progress(f: float, m: str) -> None:
            if m.startswith("waiting") and not waiting_since:
                waiting_since.append(time.monotonic())
            bar.progress(min(max(f, 0.0), 1.0), text=m[:1].upper() + m[1:] + ("…" if m.startswith("waiting") else ""))

        res = analyze_upload(det, name, data, frames, strategy, progress=progress)
        bar.empty()
        cache.clear()  # keep one result: memory stays small
        st.session_state.pop("gradcam", None)
        cache[key] = (compact(res), time.monotonic() - waiting_since[0] if waiting_since else 0.0)
    res, waited = cache[key]
    if waited >= 0.5:
        st.caption(f"Waited {waited:.0f} s for a free analysis slot: this server runs a limited number of "
                   "analyses at once.")
    return res


def verdict(det, res: Result, threshold: float) -> None:
    if res.error:
        st.error(f"Could not analyse **{res.path}**: {res.error}")
        return
    if res.note:
        st.info(f"Note: {res.note}.")
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


CREDENTIALS_NOTE = ("Content credentials (C2PA) are signed statements that cameras, editors and AI generators embed "
                    "in a file about who made it and how. They say who signed and what the signer claims, not "
                    "whether the content is true, and they never change the score. Most files carry none, and any "
                    "re-save or screenshot strips them, so 'none' is no evidence either way.")
STATE_WORDS = {
    "valid": "valid: signature and content intact, and the signer is on this server's trust list",
    "untrusted": "intact but untrusted signer: signature and content check out, but the signing certificate is on "
                 "no trust list configured on this server (none is by default), so the signer's name is what its "
                 "own certificate claims, vouched for by no one",
    "invalid": "invalid: the file or its manifest was changed after signing, or the signature does not verify",
    "none": "none: the file carries no content credentials",
    "error": "could not be read",
}
_MD_SPECIAL = str.maketrans({c: "\\" + c for c in "\\`*_[]<>#|~$"})


def md_escape(text: str) -> str:
    """Text from an untrusted file, shown literally in Markdown (no links, emphasis or HTML)."""
    return str(text).translate(_MD_SPECIAL)


def credential_details(prov: dict) -> list[tuple[str, str]]:
    """(field, value) rows of a provenance dict (``Result.provenance``) for the details expander; empty fields
    are left out."""
    signer = prov.get("signer", "")
    if prov.get("signer_cn") and prov.get("signer_cn") != signer:
        signer = f"{signer} (certificate name: {prov['signer_cn']})" if signer else prov["signer_cn"]
    dst = prov.get("digital_source_type", "")
    source = f"{prov.get('source_type', '')} ({dst})" if dst and prov.get("source_type") else dst
    codes = ", ".join(prov.get("validation_codes") or [])
    rows = [("Signer", signer), ("Signed at", prov.get("signed_at", "")),
            ("Generator", prov.get("claim_generator", "")), ("Actions", ", ".join(prov.get("actions") or [])),
            ("Digital source type", source), ("Ingredients", "; ".join(prov.get("ingredients") or [])),
            ("Validation", STATE_WORDS.get(prov.get("state", ""), "") + (f" ({codes})" if codes else "")),
            ("EXIF camera", " ".join(p for p in (prov.get("camera_make", ""), prov.get("camera_model", "")) if p)),
            ("EXIF software", prov.get("software", "")), ("EXIF", prov.get("exif_error", ""))]
    return [(k, v) for k, v in rows if v]


def credentials(res: Result) -> None:
    """The "Content credentials: ..." line under the verdict, and an expander with what the credentials say."""
    prov = res.provenance
    if not prov:
        return
    st.markdown(md_escape(prov.get("summary") or "Content credentials: none"))
    with st.expander("Content credentials and camera metadata"):
        for field, value in credential_details(prov):
            st.markdown(f"**{field}:** {md_escape(value)}")
        st.caption(CREDENTIALS_NOTE + " EXIF camera and software tags are plain, unsigned metadata: anyone can "
                   "edit them.")


def faces_view(det, res: Result, threshold: float) -> None:
    if res.image is not None and (res.all_faces or res.kind == "image"):
        faces = res.face_results if res.kind == "image" else max(
            res.frames, key=lambda fr: max((f.score for f in fr.faces), default=-1.0)).faces  # res.image's frame
        cap = "boxes: red = fake, green = real at the current threshold" + (
            "; the frame with the highest-scoring face" if res.kind == "video" else "")
        scale = res.image.shape[1] / max(res.width, 1)  # the kept image is downscaled (``compact``)
        if abs(scale - 1.0) > 1e-6:
            faces = [dataclasses.replace(f, box=[round(v * scale) for v in f.box]) for f in faces]
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


def _representative_faces(res: Result, limit: int = MAX_SHOWN_FACES):
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

