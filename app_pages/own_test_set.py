import streamlit as st

from dashboard import detect, loaders, own_test_set, settings

st.title("Your test set")
st.markdown("Score your own labelled files: a **zip** (or, on a local install, a **folder**) with a `real/` and a "
            "`fake/` subfolder of images and videos, at any depth. The app runs the engine over every file and "
            "shows ROC, precision-recall, the confusion matrix at the threshold and every file's score.")
st.caption(own_test_set.caps_note())
if problem := settings.limits_problem():
    st.error(problem)
    st.stop()
det = loaders.detector()
st.caption(f"Model: {det.describe()}")

src = st.radio("Test set", ["Upload a zip", "A folder on this machine"], horizontal=True, key="own_src")
c1, c2 = st.columns(2)
frames = detect.frames_slider(c1, det, key="own_frames")
strategy = detect.strategy_select(c2, key="own_strategy")
source = key = None
if src == "Upload a zip":
    up = st.file_uploader("Zip with real/ and fake/", type=["zip"], key="own_zip")
    if up is not None:
        data = up.getvalue()
        source, key = up, own_test_set.source_key(up.name, data, frames, strategy, det.name)
else:
    typed = st.text_input("Folder (under the data or runs folder)", key="own_folder",
                          help=f"allowed roots: {', '.join(str(r) for r in settings.allowed_roots())}")
    if typed:
        try:
            folder = own_test_set.resolve_folder(typed)
            source, key = folder, own_test_set.source_key(str(folder), str(folder), frames, strategy, det.name)
        except settings.PathNotAllowed as e:
            st.error(f"Refused: {e}")

if source is not None and st.button("Score the test set", type="primary", key="own_run"):
    st.session_state.pop(own_test_set.STATE, None)
    own_test_set.run_test_set(det, source, key, frames, strategy)
state = st.session_state.get(own_test_set.STATE)
if state:
    own_test_set.show_results(det, state)
elif source is None:
    st.info("Upload a zip or name a folder to start.")
