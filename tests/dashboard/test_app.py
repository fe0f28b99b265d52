"""The Streamlit app driven headlessly with AppTest (default_timeout=60: TensorFlow's import is slow)."""
from __future__ import annotations

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from tests.conftest import REPO

PAGES = ["app_pages/detect.py", "app_pages/dataset.py", "app_pages/training.py", "app_pages/evaluation.py",
         "app_pages/misclassified.py", "app_pages/own_test_set.py", "app_pages/about.py"]


@pytest.fixture(scope="session")
def sample_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


@pytest.fixture()
def app_env(monkeypatch, tiny_run, tiny_model_dir, prepared, sample_cache):
    monkeypatch.setenv("DEEPFAKE_CACHE", str(sample_cache))
    monkeypatch.setenv("DEEPFAKE_RUNS", str(tiny_run.parent))
    monkeypatch.setenv("DEEPFAKE_MODEL", str(tiny_model_dir))
    monkeypatch.setenv("DEEPFAKE_DATA", str(prepared[0].parent))
    monkeypatch.chdir(REPO)


def _app() -> AppTest:
    at = AppTest.from_file(str(REPO / "app_main.py"), default_timeout=60)
    at.run()
    return at


@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders(app_env, page):
    at = _app()
    at.switch_page(page).run()
    assert not at.exception, at.exception
    assert at.title, "page has no title"


def test_every_page_renders_on_a_fresh_clone(monkeypatch, tmp_path):
    """No dataset, the repository's own runs/ and model: every page still renders without an exception."""
    monkeypatch.setenv("DEEPFAKE_DATA", str(tmp_path / "no_data"))
    monkeypatch.chdir(REPO)
    at = _app()
    for page in PAGES[1:]:
        at.switch_page(page).run()
        assert not at.exception, (page, at.exception)


@pytest.mark.parametrize("page", ["app_pages/detect.py", "app_pages/about.py", "app_pages/own_test_set.py"])
def test_missing_model_is_one_error_not_an_untrained_network(monkeypatch, tmp_path, page):
    monkeypatch.setenv("DEEPFAKE_MODEL", str(tmp_path / "gone"))
    monkeypatch.setenv("DEEPFAKE_DATA", str(tmp_path / "no_data"))
    monkeypatch.chdir(REPO)
    at = _app()
    at.switch_page(page).run()
    assert not at.exception, at.exception
    assert len(at.error) == 1 and "no detector.keras in" in at.error[0].value, [e.value for e in at.error]
    assert not at.file_uploader and not at.metric


def _metric(at, label):
    return next(m.value for m in at.metric if m.label == label)


def test_detect_upload_image_shows_score(app_env, astronaut_png):
    at = _app()
    at.file_uploader[0].set_value(("astronaut.png", astronaut_png.read_bytes(), "image/png")).run()
    assert not at.exception
    score = float(_metric(at, "Score P(fake)"))
    assert 0 <= score <= 1
    assert _metric(at, "Verdict") in ("Likely FAKE", "Likely REAL")
    assert _metric(at, "Faces") == "1"
    # moving the threshold relabels without re-analysing; the score stays the same
    at.toggle(key="custom_threshold").set_value(True).run()
    at.slider[0].set_value(0.0 if score > 0.0 else 1.0).run()
    assert float(_metric(at, "Score P(fake)")) == score
    assert _metric(at, "Verdict") == ("Likely FAKE" if score > 0.0 else "Likely REAL")
    # Grad-CAM on demand
    at.toggle(key="cam_0").set_value(True).run()
    assert not at.exception
    heat = at.session_state["gradcam"][("cam_0", "gradcam")].explanation.overlay
    assert heat.shape[2] == 3 and heat.dtype == np.uint8


@pytest.mark.parametrize("name,data,msg", [
    ("clip.mp4", b"this is text, not a video" * 10, "not a readable video"),
    ("empty.png", b"", "empty file"),
    ("broken.jpg", b"\xff\xd8\xff\xe0" + b"\x00" * 50, "not a readable image"),
])
def test_detect_bad_upload_shows_error(app_env, name, data, msg, tmp_path, monkeypatch):
    monkeypatch.setenv("DEEPFAKE_UPLOAD_DIR", str(tmp_path))
    at = _app()
    at.file_uploader[0].set_value((name, data, "application/octet-stream")).run()
    assert not at.exception
    errors = " ".join(e.value for e in at.error)
    assert msg in errors and "Traceback" not in errors
    assert not list(tmp_path.iterdir()), "uploaded file left on disk"


def test_detect_8k_video_is_refused_with_a_clear_error(app_env, tmp_path, monkeypatch):
    from tests import media_fixtures

    bomb = media_fixtures.gray_h264(tmp_path / "bomb.mp4")
    up = tmp_path / "uploads"
    up.mkdir()
    monkeypatch.setenv("DEEPFAKE_UPLOAD_DIR", str(up))
    at = _app()
    at.file_uploader[0].set_value(("bomb.mp4", bomb.read_bytes(), "video/mp4")).run()
    assert not at.exception
    errors = " ".join(e.value for e in at.error)
    assert "video frames are 7680x4320, over the 3840x2160 limit (refused before decoding)" in errors
    assert not list(up.iterdir())


def test_detect_waits_for_a_free_slot_and_says_so(app_env, astronaut_png):
    """Another analysis holds the only slot for 3 s: this one waits, then shows its result and the wait."""
    import threading

    from model import limits

    at = _app()
    held = threading.Event()

    def other_user():
        with limits.analysis_slot():
            held.set()
            threading.Event().wait(3.0)

    t = threading.Thread(target=other_user)
    t.start()
    held.wait(10)
    at.file_uploader[0].set_value(("astronaut.png", astronaut_png.read_bytes(), "image/png")).run()
    t.join()
    assert not at.exception
    assert 0 <= float(_metric(at, "Score P(fake)")) <= 1
    assert any(c.value.startswith("Waited ") and "free analysis slot" in c.value for c in at.caption)


def test_detect_session_keeps_downscaled_images_only(app_env, astronaut, tmp_path):
    """A 2560 px photo: the session keeps a 1280 px copy, the boxes are drawn scaled, Grad-CAM still works."""
    import cv2

    big = cv2.resize(astronaut, (2560, 2560), interpolation=cv2.INTER_CUBIC)
    ok, png = cv2.imencode(".png", big[..., ::-1])
    at = _app()
    at.file_uploader[0].set_value(("big.png", png.tobytes(), "image/png")).run()
    assert not at.exception
    (res, _), = at.session_state["detect_results"].values()
    assert res.image.shape == (1280, 1280, 3) and (res.width, res.height) == (2560, 2560)
    assert res.faces >= 1 and res.face_results[0].box[2] > 200  # boxes stay in the analysed image's pixels
    at.toggle(key="cam_0").set_value(True).run()
    assert not at.exception
    assert at.session_state["gradcam"][("cam_0", "gradcam")].explanation.overlay.dtype == np.uint8


def test_detect_over_long_video_says_so(app_env, monkeypatch):
    from dashboard.samples import SAMPLES
    from model import limits

    monkeypatch.setattr(limits, "_CURRENT", limits.Limits(max_video_s=1.0))
    video = next(k for k, v in SAMPLES.items() if v.endswith(".mp4"))
    at = _app()
    at.radio[0].set_value("Bundled sample").run()
    at.selectbox[0].set_value(video).run()
    assert not at.exception
    notes = " ".join(i.value for i in at.info)
    assert "first 1 s of 4 s analysed" in notes
    (res, _), = at.session_state["detect_results"].values()
    assert res.note.startswith("first 1 s") and max(fr.index for fr in res.frames) < 10


def test_detect_bundled_sample(app_env):
    at = _app()
    at.radio[0].set_value("Bundled sample").run()
    assert not at.exception
    assert 0 <= float(_metric(at, "Score P(fake)")) <= 1


# The Evaluation and Misclassifications screens are tested on schema-2 evaluation folders in test_evaluation.py.


def test_dataset_explorer_refuses_paths_outside_root(app_env):
    at = _app()
    at.switch_page("app_pages/dataset.py").run()
    at.text_input[0].set_value("/etc").run()
    assert not at.exception
    assert any("Refused" in e.value for e in at.error)


def test_detect_bundled_video_sample_shows_timeline(app_env):
    from dashboard.samples import SAMPLES

    video = next(k for k, v in SAMPLES.items() if v.endswith(".mp4"))
    at = _app()
    at.radio[0].set_value("Bundled sample").run()
    at.selectbox[0].set_value(video).run()
    assert not at.exception
    frames = next(s for s in at.slider if s.label.startswith("Frames sampled"))
    assert frames.value == 4, "the frames default is the model's crop contract (the tiny model's: 4)"
    frames.set_value(32).run()  # 4 s of a moving face: 32 frames are close enough to link into one track
    assert not at.exception
    assert 0 <= float(_metric(at, "Score P(fake)")) <= 1
    assert _metric(at, "Face tracks") == "1"
    assert at.get("plotly_chart"), "no per-track timeline"
    assert any("face track" in str(df.value.columns.tolist()) for df in at.dataframe)


@pytest.mark.parametrize("page", ["app_pages/detect.py", "app_pages/own_test_set.py"])
def test_bad_limit_variable_is_one_error_not_a_traceback(monkeypatch, tiny_model_dir, page):
    from model import limits

    monkeypatch.setenv("DEEPFAKE_MODEL", str(tiny_model_dir))
    monkeypatch.setenv("DEEPFAKE_MAX_FRAME", "bogus")
    monkeypatch.setattr(limits, "_CURRENT", None)  # read the environment again, as a fresh server does
    monkeypatch.chdir(REPO)
    at = _app()
    if page != PAGES[0]:
        at.switch_page(page).run()
    assert not at.exception, at.exception
    [err] = [e.value for e in at.error]
    assert "bad value for DEEPFAKE_MAX_FRAME: 'bogus' (allowed: a frame size WxH such as 3840x2160" in err
    assert "\n" not in err and not at.file_uploader


def test_detect_shows_content_credentials_beside_the_score(app_env, astronaut):
    """A JPEG signed at test time (untrusted signer, says AI-generated): the line under the verdict and the details
    expander; the score is the unsigned file's."""
    pytest.importorskip("c2pa")
    from tests import c2pa_fixtures as cf

    plain = cf.jpeg(astronaut)
    signed = cf.sign(plain, cf.make_signing())
    at = _app()
    at.file_uploader[0].set_value(("plain.jpg", plain, "image/jpeg")).run()
    assert not at.exception
    plain_score = _metric(at, "Score P(fake)")
    assert "Content credentials: none" in [m.value for m in at.markdown]
    at.file_uploader[0].set_value(("signed.jpg", signed, "image/jpeg")).run()
    assert not at.exception
    assert _metric(at, "Score P(fake)") == plain_score
    lines = [m.value for m in at.markdown if m.value.startswith("Content credentials:")]
    assert lines == [f"Content credentials: signed by {cf.SIGNER_ORG} (signer not on a trust list), says AI-generated"]
    exp = next(e for e in at.expander if e.label == "Content credentials and camera metadata")
    details = " ".join(m.value for m in exp.markdown)
    assert f"**Signer:** {cf.SIGNER_ORG} (certificate name: {cf.SIGNER_CN})" in details
    assert "**Actions:** c2pa.created" in details and "trainedAlgorithmicMedia" in details
    assert "**Validation:** intact but untrusted signer" in details
    assert any("not whether the content is true" in c.value for c in exp.caption)
