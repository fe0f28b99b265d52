"""End to end in real headless Chromium: start `streamlit run`, upload an image, see the verdict."""
from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("playwright", reason="playwright not installed (requirements-dev.txt)")
from scripts.screenshots import CHROMIUM, browser, serve, upload_and_read_verdict  # noqa: E402

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} not installed (apt-get install chromium)")]


def test_upload_image_and_see_verdict(tiny_model_dir, astronaut_png, tmp_path):
    with serve({"DEEPFAKE_MODEL": str(tiny_model_dir), "DEEPFAKE_DATA": str(tmp_path)}) as url, browser() as b:
        page = b.new_page(viewport={"width": 1280, "height": 900})
        verdict = upload_and_read_verdict(page, url, astronaut_png)
        assert "Likely FAKE" in verdict or "Likely REAL" in verdict
        text = page.locator("[data-testid='stMetric']").all_inner_texts()
        score = next(t for t in text if "Score P(fake)" in t).split("\n")[-1]
        assert 0.0 <= float(score) <= 1.0
        assert "Traceback" not in page.content()
