"""End to end in real headless Chromium: start `streamlit run`, upload an image, see the verdict."""
from __future__ import annotations

from pathlib import Path

import pytest

from dashboard.launch import CHROMIUM, serve

pytest.importorskip("playwright", reason="playwright not installed (requirements-dev.txt)")
from scripts.screenshots import browser, upload, upload_and_read_verdict, wait_idle  # noqa: E402

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} not installed (apt-get install chromium)")]


def test_upload_image_and_see_verdict(tiny_model_dir, astronaut_png, tmp_path):
    with serve({"DEEPFAKE_MODEL": str(tiny_model_dir), "DEEPFAKE_DATA": str(tmp_path)}) as server, browser() as b:
        page = b.new_page(viewport={"width": 1280, "height": 900})
        verdict = upload_and_read_verdict(page, server.url, astronaut_png, timeout_ms=300_000)
        assert "Likely FAKE" in verdict or "Likely REAL" in verdict
        text = page.locator("[data-testid='stMetric']").all_inner_texts()
        score = next(t for t in text if "Score P(fake)" in t).split("\n")[-1]
        assert 0.0 <= float(score) <= 1.0
        assert "Traceback" not in page.content()


def test_8k_upload_gets_a_clear_error_and_the_server_keeps_serving(tiny_model_dir, astronaut_png, tmp_path):
    from tests import media_fixtures

    bomb = media_fixtures.gray_h264(tmp_path / "bomb.mp4")
    with serve({"DEEPFAKE_MODEL": str(tiny_model_dir), "DEEPFAKE_DATA": str(tmp_path),
                "DEEPFAKE_CACHE": str(tmp_path / "cache")}) as server, browser() as b:
        page = b.new_page(viewport={"width": 1280, "height": 900})
        page.goto(server.url)
        upload(page, bomb, timeout_ms=300_000)  # the first page load (detector + MTCNN) can be slow
        page.get_by_text("Could not analyse").wait_for(timeout=180_000)
        alert = page.locator("[data-testid='stAlertContentError']").first.inner_text()
        assert "video frames are 7680x4320, over the 3840x2160 limit" in alert
        # the same server still analyses the next upload, in another session
        other = b.new_page(viewport={"width": 1280, "height": 900})
        verdict = upload_and_read_verdict(other, server.url, astronaut_png)
        assert "Likely FAKE" in verdict or "Likely REAL" in verdict


def test_deep_link_on_a_fresh_server_gets_the_app_navigation(tiny_model_dir, tmp_path):
    # the first visitor of a new server opens /evaluation directly: the screen must run inside app_main.py (served by streamlit_app.py)
    # (its st.navigation titles and wide layout), not as a legacy pages/ script on its own
    with serve({"DEEPFAKE_MODEL": str(tiny_model_dir), "DEEPFAKE_DATA": str(tmp_path)}) as server, browser() as b:
        page = b.new_page(viewport={"width": 1280, "height": 900})
        page.goto(f"{server.url}/evaluation")
        wait_idle(page, timeout_ms=300_000)
        nav = page.locator("[data-testid='stSidebarNav']").inner_text()
        assert "Detect" in nav and "About / model card" in nav, nav
        assert "streamlit app" not in nav.lower()
        assert page.locator("[data-testid='stApp'] h1").first.inner_text().strip() == "Evaluation"
        assert "Traceback" not in page.content()
