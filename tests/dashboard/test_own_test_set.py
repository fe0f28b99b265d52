"""'Your test set' page (AppTest) and the explanation widget on the Detect page."""
from __future__ import annotations

import io
import re
import tempfile
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from tests.conftest import REPO


def _png(img):
    return cv2.imencode(".png", img[..., ::-1])[1].tobytes()


@pytest.fixture(scope="module")
def zip_bytes(astronaut):
    face = astronaut[:300, 80:380]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("set/real/a.png", _png(face))
        z.writestr("set/real/b.png", _png(np.clip(face.astype(int) + 25, 0, 255).astype(np.uint8)))
        z.writestr("set/fake/c.png", _png(cv2.GaussianBlur(face, (9, 9), 3)))
        z.writestr("set/fake/d.png", _png(face[:, ::-1].copy()))
        z.writestr("set/fake/broken.jpg", b"\xff\xd8\xff" + b"\x00" * 30)
        z.writestr("../escape.png", _png(face))
    return buf.getvalue()


@pytest.fixture()
def app(monkeypatch, tiny_model_dir, tmp_path):
    monkeypatch.setenv("DEEPFAKE_MODEL", str(tiny_model_dir))
    monkeypatch.setenv("DEEPFAKE_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("DEEPFAKE_RUNS", str(tmp_path / "runs"))
    monkeypatch.chdir(REPO)
    at = AppTest.from_file(str(REPO / "app_main.py"), default_timeout=60)
    at.run()
    at.switch_page("app_pages/own_test_set.py").run()
    assert not at.exception, at.exception
    return at


def _counts(at):
    md = next(m.value for m in at.markdown if m.value.startswith("TN "))
    return [int(x) for x in re.findall(r"\*\*(\d+)\*\*", md)]


def test_upload_zip_scores_and_lists_bad_members(app, zip_bytes):
    at = app
    before = set(Path(tempfile.gettempdir()).glob("dfd_testset_*"))
    at.file_uploader(key="own_zip").set_value(("set.zip", zip_bytes, "application/zip")).run()
    at.button(key="own_run").click().run()
    assert not at.exception, at.exception
    assert set(Path(tempfile.gettempdir()).glob("dfd_testset_*")) == before, "unpacked files left behind"
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Files scored"] == "4 / 5"
    assert metrics["AUC"] != "—" and 0 <= float(metrics["AUC"]) <= 1
    skipped = next(df.value for df in at.dataframe if "error" in df.value.columns)
    reasons = dict(zip(skipped["name"], skipped["error"]))
    assert "path trick" in reasons["../escape.png"] and "not a readable image" in reasons["set/fake/broken.jpg"]
    per_file = next(df.value for df in at.dataframe if "verdict" in df.value.columns)
    assert len(per_file) == 4
    # the confusion matrix follows the threshold without re-scoring
    scores, labels = per_file["score"].to_numpy(float), per_file["label"].to_numpy()
    for thr in (0.0, 1.0):
        at.slider(key="own_threshold").set_value(thr).run()
        pred = scores >= thr
        exp = [int(((~pred) & (labels == "real")).sum()), int((pred & (labels == "real")).sum()),
               int(((~pred) & (labels == "fake")).sum()), int((pred & (labels == "fake")).sum())]
        assert _counts(at) == exp
    assert at.get("download_button"), "no CSV download"


def test_not_a_zip_is_one_clear_error(app):
    at = app
    at.file_uploader(key="own_zip").set_value(("set.zip", b"this is not a zip", "application/zip")).run()
    at.button(key="own_run").click().run()
    assert not at.exception
    errors = " ".join(e.value for e in at.error)
    assert "not a readable zip file" in errors and "Traceback" not in errors


def test_folder_outside_the_allowed_roots_is_refused(app):
    at = app
    at.radio(key="own_src").set_value("A folder on this machine").run()
    at.text_input(key="own_folder").set_value("/etc").run()
    assert not at.exception
    assert any("Refused" in e.value for e in at.error)


def test_detect_page_explanation_method_picker(monkeypatch, tiny_model_dir, astronaut_png):
    monkeypatch.setenv("DEEPFAKE_MODEL", str(tiny_model_dir))
    monkeypatch.chdir(REPO)
    at = AppTest.from_file(str(REPO / "app_main.py"), default_timeout=60)
    at.run()
    at.file_uploader[0].set_value(("astronaut.png", astronaut_png.read_bytes(), "image/png")).run()
    at.toggle(key="cam_0").set_value(True).run()
    assert not at.exception, at.exception
    assert at.selectbox(key="cam_0_method").value == "gradcam"
    at.selectbox(key="cam_0_method").set_value("layercam").run()
    assert not at.exception, at.exception
    cache = at.session_state["gradcam"]
    fa = cache[("cam_0", "layercam")]
    assert fa.explanation.method == "layercam" and fa.baseline.method == "random"
    caps = " ".join(c.value for c in at.caption)
    assert "Layer-CAM: **" in caps and " s** for this face" in caps
    assert f"Deletion area **{fa.curve.area:.3f}**" in caps
    assert at.get("plotly_chart"), "no deletion plot"
