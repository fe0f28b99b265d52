"""The Streamlit app driven headlessly with AppTest (default_timeout=60: TensorFlow's import is slow)."""
from __future__ import annotations

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from tests.conftest import REPO

PAGES = ["pages/detect.py", "pages/dataset.py", "pages/training.py", "pages/evaluation.py",
         "pages/misclassified.py", "pages/own_test_set.py", "pages/about.py"]


@pytest.fixture()
def app_env(monkeypatch, tiny_run, tiny_model_dir, prepared):
    monkeypatch.setenv("DEEPFAKE_RUNS", str(tiny_run.parent))
    monkeypatch.setenv("DEEPFAKE_MODEL", str(tiny_model_dir))
    monkeypatch.setenv("DEEPFAKE_DATA", str(prepared[0].parent))
    monkeypatch.chdir(REPO)


def _app() -> AppTest:
    at = AppTest.from_file(str(REPO / "streamlit_app.py"), default_timeout=60)
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
def test_detect_bad_upload_shows_error(app_env, name, data, msg):
    import tempfile
    from pathlib import Path

    at = _app()
    at.file_uploader[0].set_value((name, data, "application/octet-stream")).run()
    assert not at.exception
    errors = " ".join(e.value for e in at.error)
    assert msg in errors and "Traceback" not in errors
    assert not list(Path(tempfile.gettempdir()).glob("dfd_upload_*")), "uploaded file left on disk"


def test_detect_bundled_sample(app_env):
    at = _app()
    at.radio[0].set_value("Bundled sample").run()
    assert not at.exception
    assert 0 <= float(_metric(at, "Score P(fake)")) <= 1


# The Evaluation and Misclassifications screens are tested on schema-2 evaluation folders in test_evaluation.py.


def test_dataset_explorer_refuses_paths_outside_root(app_env):
    at = _app()
    at.switch_page("pages/dataset.py").run()
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
    assert 0 <= float(_metric(at, "Score P(fake)")) <= 1
    assert _metric(at, "Face tracks") == "1"
    assert at.get("plotly_chart"), "no per-track timeline"
    assert any("face track" in str(df.value.columns.tolist()) for df in at.dataframe)
