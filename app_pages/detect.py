import hashlib

import streamlit as st

from dashboard import detect, loaders, samples, settings

st.title("Detect deepfakes")
if problem := settings.limits_problem():
    st.error(problem)
    st.stop()
det = loaders.detector()
st.caption(detect.SCORE_NOTE)
with st.expander("Detectors in use: " + ", ".join(
        f"{s.key} ({s.card.backbone}, {'trained' if s.trained else 'UNTRAINED'})" for s in det.scorers)):
    detect.model_card(det)

source = st.radio("Input", ["Upload a file", "Bundled sample"], horizontal=True)
name = data = file_id = None
if source == "Upload a file":
    st.markdown(f"Upload an image or a video — **up to {settings.max_upload_mb()} MB**. "
                f"Images: jpg, png, webp, bmp, tiff, gif. Videos: mp4, mov, avi, mkv, webm. "
                f"{settings.limits_note()} Files are analysed on this server and deleted right after.")
    up = st.file_uploader("Image or video", type=detect.UPLOAD_TYPES, key="upload")
    if up is not None:
        name, data, file_id = up.name, up.getvalue(), getattr(up, "file_id", None)
else:
    choice = st.selectbox("Sample (made by this project from public-domain images)", list(samples.SAMPLES))
    p = samples.get_sample(choice)
    name, data = p.name, p.read_bytes()

c1, c2, c3 = st.columns(3)
# each detector's own operating threshold, exactly (a rounded slider value would change verdicts near it)
thresholds = detect.thresholds_default(det)
if c1.toggle("Custom threshold", key="custom_threshold", help="Each detector's threshold: " + "; ".join(
        f"{s.key} {s.threshold:.4f} ({s.card.threshold_policy or 'set on validation'})" for s in det.scorers)
        + ". Change it to trade false alarms for detections."):
    for s in det.scorers:
        label = "Threshold (score ≥ threshold → fake)" + (f" · {s.key}" if len(det.scorers) > 1 else "")
        thresholds[s.key] = c1.slider(label, 0.0, 1.0, float(round(s.threshold, 3)), 0.001, format="%.3f",
                                      key=f"threshold_{s.key}")
frames = detect.frames_slider(c2, det)
strategy = detect.strategy_select(c3)

if data is not None:
    if len(data) == 0:
        st.error(f"Could not analyse **{name}**: empty file (0 bytes)")
    else:
        key = f"{name}:{len(data)}:{file_id or hashlib.sha1(data).hexdigest()}:{frames}:{strategy}"
        res = detect.run_analysis(det, key, name, data, frames, strategy)
        detect.verdict(det, res, thresholds)
        detect.credentials(res)
        if not res.error:
            detect.faces_view(det, res, thresholds)
            detect.retest(det, res, key, name, data, frames, strategy, thresholds)
            detect.downloads(res)
else:
    st.info("Upload a file or pick a bundled sample to start.")
