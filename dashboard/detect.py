"""Detect screen building blocks: analyse an upload or sample, then render the result."""
from __future__ import annotations

import csv
import dataclasses
import io
import time
from pathlib import Path

import streamlit as st

from dashboard import charts, overlays
from model import registry, results
from model.api import Result
from model.media import IMAGE_EXTS, VIDEO_EXTS
from model.video import DEFAULT_STRATEGY, STRATEGIES, downscale

UPLOAD_TYPES = sorted(e.lstrip(".") for e in IMAGE_EXTS | VIDEO_EXTS)
SCORE_NOTE = ("score = P(fake) in [0, 1]: a detector's calibrated probability that a face is manipulated, from 0 "
              "(real) to 1 (fake).")
VERDICT_WORDS = {"fake": "Likely FAKE", "real": "Likely REAL"}
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


def thresholds_default(det) -> dict[str, float]:
    """Every detector's own operating threshold, exactly (a rounded slider value would change verdicts near it)."""
    return {s.key: s.threshold for s in det.scorers}


def verdict_rule_words() -> str:
    """``registry.VERDICT_RULE`` as a sentence for people."""
    rule = registry.VERDICT_RULE.removeprefix("combined verdict: ")
    return f"Combined verdict: {rule[:1].upper()}{rule[1:]}."


def file_verdicts(det, res: Result, thresholds: dict[str, float] | None = None) -> tuple[dict[str, dict], str]:
    """Per detector {score, label, threshold} of the file at ``thresholds`` (default: each detector's own), and
    the combined verdict of those labels (``registry.combine``)."""
    thresholds = thresholds or {}
    per = {}
    for s in det.scorers:
        d = res.detectors.get(s.key) or {}
        thr = thresholds.get(s.key, s.threshold)
        score = d.get("score")
        per[s.key] = {"score": score, "label": s.label_for(score, thr), "threshold": thr}
    return per, registry.combine(v["label"] for v in per.values())


def detector_line(s) -> str:
    """One plain-language line: what a detector detects and what it looks for (its model card)."""
    return f"Detects {s.detects}." + (f" Looks for: {s.looks_for}" if s.looks_for else "")


def verdict(det, res: Result, thresholds: dict[str, float] | float | None = None) -> None:
    """File level: the combined verdict (with its rule in words) and every detector's score and verdict at its
    own threshold, side by side."""
    if isinstance(thresholds, (int, float)):
        thresholds = {det.default.key: float(thresholds)}
    if res.error:
        st.error(f"Could not analyse **{res.path}**: {res.error}")
        return
    if res.note:
        st.info(f"Note: {res.note}.")
    if res.score is None:
        st.warning("No face found: nothing to score. Try a sharper or larger, front-facing face.")
        return
    per, combined = file_verdicts(det, res, thresholds)
    what = "face track" if res.kind == "video" else "face"
    several = len(det.scorers) > 1
    c = st.columns(3)
    c[0].metric("Verdict", VERDICT_WORDS.get(combined, "No verdict"),
                help=verdict_rule_words() if several else None)
    if not several:
        c[1].metric("Score P(fake)", f"{res.score:.3f}", help=SCORE_NOTE)
    c[2].metric(f"{what.capitalize()}s", res.faces)
    if several:
        cols = st.columns(len(det.scorers))
        for col, s in zip(cols, det.scorers):
            v = per[s.key]
            col.markdown(f"**{s.key}**")
            col.metric(f"P(fake) · {s.key}", "—" if v["score"] is None else f"{v['score']:.3f}", help=SCORE_NOTE)
            col.metric(f"Verdict · {s.key}", VERDICT_WORDS.get(v["label"], "No verdict"))
            col.caption(f"threshold {v['threshold']:.3f}. {detector_line(s)}")
        st.caption(verdict_rule_words())
    untrained = [s.key for s in det.scorers if not s.trained]
    if untrained:
        st.warning(f"Untrained ({', '.join(untrained)}): random-weight outputs, not a verdict.")
    if len(untrained) < len(det.scorers):
        how = ("the file's score is the highest face score" if res.kind == "image" else
               f"video score = {'max over faces per frame, mean over frames' if res.strategy == 'max_mean' else res.strategy}")
        thr = ", ".join(f"{k} {v['threshold']:.3f}" for k, v in per.items()) if several else \
            f"{per[det.default.key]['threshold']:.3f}"
        st.caption(f"{SCORE_NOTE} Label 'fake' when score ≥ threshold ({thr}); {how}. "
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


def track_rows(det, res: Result, thresholds: dict[str, float] | None = None) -> list[dict]:
    """One row per face track: its frame count and every detector's aggregated score and label (at
    ``thresholds``, default each detector's own)."""
    thresholds = thresholds or {}
    several = len(det.scorers) > 1
    rows = []
    for t in res.tracks:
        r = {"face track": t.id + 1, "frames": len(t.frames)}
        for s in det.scorers:
            d = t.detectors.get(s.key) or ({"score": t.score} if s is det.default else {})
            score = d.get("score")
            label = s.label_for(score, thresholds.get(s.key, s.threshold))
            if several:
                r[f"P(fake) · {s.key}"] = None if score is None else round(float(score), 4)
                r[f"label · {s.key}"] = label
            else:
                r["score P(fake)"] = None if score is None else round(float(score), 4)
                r["label"] = label
        if several:
            r["combined"] = registry.combine(v for k, v in r.items() if k.startswith("label · "))
        rows.append(r)
    return rows


def face_scores(det, f, thresholds: dict[str, float] | None = None) -> dict[str, dict]:
    """Per detector {score, label, threshold} of one face (FaceResult.detectors; the default detector's score
    when a result predates several detectors)."""
    thresholds = thresholds or {}
    out = {}
    for s in det.scorers:
        d = f.detectors.get(s.key) or ({"score": f.score} if s is det.default else {})
        thr = thresholds.get(s.key, s.threshold)
        out[s.key] = {"score": d.get("score"), "label": s.label_for(d.get("score"), thr), "threshold": thr}
    return out


def cam_key(det, face_index: int, key: str) -> str:
    """The explanation cache key of one face and detector (the default detector's: ``cam_<i>``)."""
    return f"cam_{face_index}" if key == det.default.key else f"cam_{face_index}_{key}"


def faces_view(det, res: Result, thresholds: dict[str, float] | float | None = None) -> None:
    if isinstance(thresholds, (int, float)):
        thresholds = {det.default.key: float(thresholds)}
    thresholds = thresholds or {}
    threshold = thresholds.get(det.default.key, det.threshold)
    several = len(det.scorers) > 1
    if res.image is not None and (res.all_faces or res.kind == "image"):
        faces = res.face_results if res.kind == "image" else next(  # res.image's frame, as the engine says
            (fr.faces for fr in res.frames if fr.index == res.image_frame), [])
        cap = "boxes: red = fake, green = real at the current threshold" + (
            f" of the {det.default.key} detector" if several else "") + (
            "; the frame with the highest-scoring face" if res.kind == "video" else "")
        scale = res.image.shape[1] / max(res.width, 1)  # the kept image is downscaled (``compact``)
        if abs(scale - 1.0) > 1e-6:
            faces = [dataclasses.replace(f, box=[round(v * scale) for v in f.box]) for f in faces]
        st.image(overlays.draw_faces(res.image, faces, threshold), caption=cap, width=720)
    if res.kind == "video" and res.tracks:
        st.plotly_chart(charts.timeline(res.frames, res.tracks, threshold), width="stretch")
        st.dataframe(track_rows(det, res, thresholds), hide_index=True)
    faces = _representative_faces(res)
    if not faces:
        return
    st.subheader("Per face")
    st.caption(f"{SCORE_NOTE} One column per detector: its score, its verdict at its own threshold and, on "
               "request, its heat map.")
    for i, f in enumerate(faces):
        per = face_scores(det, f, thresholds)
        c = st.columns([1] + [2] * len(det.scorers))
        c[0].image(f.crop, caption=f"face {i + 1}" + (f" (track {f.track + 1}, frame {f.frame})" if f.track is not None else ""),
                   width=160)
        c[0].caption(f"face-finder confidence {f.confidence:.3f}, box {f.box}")
        show = c[0].toggle("Explain (heat map)", key=f"cam_{i}", help="Which regions pushed each detector's score "
                           "towards 'fake'")
        for col, s in zip(c[1:], det.scorers):
            v = per[s.key]
            score = "—" if v["score"] is None else f"{v['score']:.3f}"
            col.markdown(f"**{s.key}**: P(fake) = **{score}** → {v['label']} (threshold {v['threshold']:.3f})")
            col.caption(detector_line(s))
            if show and f.crop is not None:
                from dashboard import explain_ui

                if s.cut() != det.default.cut():
                    col.caption(f"Explained on the face as cut for {det.default.key} (resized to {s.input_size} px).")
                explain_ui.face_explanation(s, f.crop, cam_key(det, i, s.key), image_col=col, info_col=col)


# --------------------------------------------------------------------------- re-test after re-compression
RETEST_KEY = "detect_retest"
RETEST_DEFAULT_LEVEL = 3
RETEST_NOTE = ("Re-compression is what a file goes through when it is shared (messaging apps, social networks). The "
               "file is re-compressed on this server and analysed again exactly as an upload; a verdict that "
               "changes is fragile, one that stays is stable.")


def retest_perturbation(kind: str) -> str:
    """The re-compression a file of ``kind`` gets: JPEG for images, H.264 re-encoding for videos."""
    return "h264" if kind == "video" else "jpeg"


def retest_file(det, name: str, data: bytes, kind: str, level: int = RETEST_DEFAULT_LEVEL,
                frames: int | None = None, strategy: str = DEFAULT_STRATEGY, progress=None) -> Result:
    """Analyse ``data`` again after re-compression at ``level`` through the same engine path as an upload.
    Images: decoded (limited child process), JPEG-compressed (``perturb.apply``), encoded losslessly as PNG
    (``perturb.image_bytes``) and analysed from memory. Videos: written to a private temporary folder, re-encoded
    there with H.264 (``perturb.reencode_video``) and analysed; the folder is removed afterwards, also on error.
    The decoding / re-encoding holds one of the analysis slots, as an analysis does. Raises
    ``perturb.PerturbError`` (e.g. ffmpeg failed) or ``media.MediaError`` (unreadable input); other input problems
    come back in ``result.error``."""
    from model import isolation, limits, perturb, uploads

    stem = Path(name).stem or "upload"
    on_wait = (lambda ahead: progress(0.0, f"waiting for a free analysis slot ({ahead} ahead of you)")) \
        if progress else None
    pert = retest_perturbation(kind)
    if kind == "image":
        with limits.analysis_slot(on_wait):
            png = perturb.image_bytes(perturb.apply(isolation.load_image(data), pert, level))
        return det.analyze(png, frames=frames, strategy=strategy, progress=progress,
                           display_name=f"{stem}.{pert}{level}.png")
    with uploads.spooled(data, name) as src:  # a private folder, removed on leaving (also on error)
        if progress:
            progress(0.0, f"re-encoding: {perturb.describe(pert, level)}")
        with limits.analysis_slot(on_wait):
            out = perturb.reencode_video(src, level, src.parent)
        return det.analyze(out, frames=frames, strategy=strategy, progress=progress,
                           display_name=f"{stem}.{pert}{level}.mp4")


def retest_rows(det, before: Result, after: Result, thresholds: dict[str, float] | None = None
                ) -> tuple[list[dict], str, str]:
    """Per detector: score and verdict before and after re-compression and whether the verdict changed
    ("fragile") or not ("stable"); plus the combined verdict before and after."""
    b, cb = file_verdicts(det, before, thresholds)
    a, ca = file_verdicts(det, after, thresholds)
    fmt = lambda v: None if v is None else round(float(v), 4)  # noqa: E731
    rows = [{"detector": k, "P(fake) before": fmt(b[k]["score"]), "verdict before": b[k]["label"],
             "P(fake) after": fmt(a[k]["score"]), "verdict after": a[k]["label"],
             "verdict": "stable" if b[k]["label"] == a[k]["label"] else "fragile"} for k in b]
    if len(rows) > 1:
        rows.append({"detector": "combined", "P(fake) before": None, "verdict before": cb, "P(fake) after": None,
                     "verdict after": ca, "verdict": "stable" if cb == ca else "fragile"})
    return rows, cb, ca


def _one_line(e: Exception) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]


def retest(det, res: Result, key: str, name: str, data: bytes, frames: int | None, strategy: str,
           thresholds: dict[str, float] | None = None) -> None:
    """The "Re-test this file after re-compression" control and its before/after table."""
    from model import perturb
    from model.media import MediaError

    st.subheader("Re-test this file after re-compression")
    pert = retest_perturbation(res.kind)
    level = st.select_slider("Re-compression level", options=list(perturb.LEVELS), value=RETEST_DEFAULT_LEVEL,
                             key="retest_level", format_func=lambda lv: f"{lv}: {perturb.describe(pert, lv)}",
                             help="1 = light, 5 = heavy")
    st.caption(RETEST_NOTE)
    rkey = f"{key}:{pert}:{level}"
    store = st.session_state.setdefault(RETEST_KEY, {})
    if st.button(f"Re-test after {perturb.describe(pert, level)}", key="retest_run"):
        bar = st.progress(0.0, text="Re-compressing…")

        def progress(f: float, m: str) -> None:
            bar.progress(min(max(f, 0.0), 1.0), text=m[:1].upper() + m[1:])

        try:
            after = retest_file(det, name, data, res.kind, level, frames, strategy, progress)
            out = compact(after) if not after.error else after.error
        except (perturb.PerturbError, MediaError, OSError) as e:
            out = _one_line(e)
        finally:
            bar.empty()
        store.clear()  # one re-test kept per session
        store[rkey] = out
    after = store.get(rkey)
    if after is None:
        return
    if isinstance(after, str):
        st.error(f"Could not re-test **{md_escape(name)}**: {md_escape(after)}")
        return
    rows, cb, ca = retest_rows(det, res, after, thresholds)
    st.dataframe(rows, hide_index=True)
    what = perturb.describe(pert, level)
    if cb == ca:
        st.success(f"Stable: the verdict stays **{cb}** after {what}.")
    else:
        st.warning(f"Fragile: the verdict changes from **{cb}** to **{ca}** after {what}.")
    st.caption(f"{SCORE_NOTE} Verdicts at the thresholds in use.")


def _representative_faces(res: Result, limit: int = MAX_SHOWN_FACES):
    """Image: every face. Video: the face of each track whose crop the engine kept (one per track: its highest RAW
    score)."""
    if res.kind == "image":
        return res.face_results[:limit]
    best = {f.track: f for f in res.all_faces if f.crop is not None}
    return [best[k] for k in sorted(best)][:limit]


def downloads(res: Result) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=res.csv_columns(), lineterminator="\n")
    w.writeheader()
    w.writerow(res.csv_row())
    stem = Path(res.path).stem or "result"
    c1, c2 = st.columns(2)
    c1.download_button("Download JSON", res.to_json(indent=2), file_name=f"{stem}_deepfake.json", mime="application/json")
    c2.download_button("Download CSV", buf.getvalue(), file_name=f"{stem}_deepfake.csv", mime="text/csv")


def model_card(det) -> None:
    for s in det.scorers:
        card = s.card
        st.markdown(f"**{s.key}** — {card.backbone}, {s.input_size} px faces, threshold {card.threshold:.3f}, "
                    f"{'trained' if card.trained else '**untrained**'}  \nTrained on: {card.trained_on}  \n"
                    f"{detector_line(s)}")
        if card.metrics:
            st.json(card.metrics, expanded=False)
