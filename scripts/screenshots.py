"""Serve the app with Streamlit and drive it with real headless Chromium (Playwright).

    python scripts/screenshots.py            # writes docs/screenshots/<page>.png for the README

The server is started by ``dashboard.launch.serve``; the browser helpers here (``browser``, ``wait_idle``,
``upload``) are used by the end-to-end browser test too. Screenshots are taken with
DEEPFAKE_DATA pointing at an empty folder, so no dataset image (research-only material) can appear.
"""
from __future__ import annotations

import contextlib
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from dashboard.launch import CHROMIUM, serve  # noqa: E402

UPLOADER = "[data-testid='stFileUploaderDropzoneInput']"
PAGES = {"detect": "", "dataset": "dataset", "training": "training", "evaluation": "evaluation",
         "misclassified": "misclassified", "own_test_set": "own_test_set", "about": "about"}


@contextlib.contextmanager
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        try:
            yield b
        finally:
            b.close()


def wait_idle(page, timeout_ms: int = 180_000) -> None:
    """Wait until the page has a title and Streamlit has finished running the script (no Stop button)."""
    page.wait_for_selector("[data-testid='stApp'] h1", timeout=timeout_ms)
    page.wait_for_timeout(1000)
    page.get_by_role("button", name="Stop").wait_for(state="hidden", timeout=timeout_ms)
    page.wait_for_timeout(1500)


def upload(page, file: Path, timeout_ms: int = 180_000) -> None:
    """Put ``file`` into the page's uploader, waiting up to ``timeout_ms`` for it: on a fresh server it appears
    only once the detector and MTCNN have loaded, often later than Playwright's default 30 s on a busy machine."""
    page.wait_for_selector(UPLOADER, state="attached", timeout=timeout_ms)
    page.set_input_files(UPLOADER, str(file), timeout=timeout_ms)


def upload_and_read_verdict(page, url: str, file: Path, timeout_ms: int = 180_000) -> str:
    page.goto(url)
    wait_idle(page, timeout_ms)
    upload(page, file, timeout_ms)
    page.get_by_text("Score P(fake)").wait_for(timeout=timeout_ms)
    wait_idle(page, timeout_ms)
    return page.locator("[data-testid='stMetric']").first.inner_text()


def demo_test_set(folder: Path) -> Path:
    """A small zip for the 'Your test set' screenshot, made from the bundled (public-domain) samples only."""
    import zipfile

    from dashboard.samples import SAMPLES, get_sample

    files = {k: get_sample(k) for k in SAMPLES}
    real, blend, clip, cat = (files[k] for k in SAMPLES)
    z = folder / "my_test_set.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.write(real, "my_test_set/real/astronaut.jpg")
        zf.write(cat, "my_test_set/real/cat.jpg")
        zf.write(blend, "my_test_set/fake/astronaut_selfblend.jpg")
        zf.write(clip, "my_test_set/fake/astronaut_clip.mp4")
        zf.writestr("my_test_set/fake/notes.txt", "not media")
        zf.writestr("../outside.jpg", real.read_bytes())
    return z


def main() -> int:
    import argparse

    ap = argparse.ArgumentParser(description="write docs/screenshots/<page>.png")
    ap.add_argument("--only", nargs="+", choices=list(PAGES), help="only these pages")
    only = set(ap.parse_args().only or PAGES)
    out = REPO / "docs" / "screenshots"
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as empty, serve({"DEEPFAKE_DATA": empty}) as server, browser() as b:
        url = server.url
        page = b.new_page(viewport={"width": 1400, "height": 2200})
        from dashboard.samples import SAMPLES, get_sample

        if "detect" in only:
            sample = get_sample(list(SAMPLES)[0])
            upload_and_read_verdict(page, url, sample)
            page.get_by_text("Explain (heat map)").first.click()
            wait_idle(page)
            page.screenshot(path=str(out / "detect.png"), full_page=True)
        for name, slug in PAGES.items():
            if name == "detect" or name not in only:
                continue
            page.goto(f"{url}/{slug}")
            wait_idle(page)
            if name == "own_test_set":
                upload(page, demo_test_set(Path(empty)))
                wait_idle(page)
                page.get_by_role("button", name="Score the test set").click()
                page.get_by_text("Files scored", exact=True).wait_for(timeout=300_000)
                wait_idle(page)
            page.screenshot(path=str(out / f"{name}.png"), full_page=True)
            print(f"wrote {out / name}.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
