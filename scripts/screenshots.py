"""Serve the app with Streamlit and drive it with real headless Chromium (Playwright).

    python scripts/screenshots.py            # writes docs/screenshots/<page>.png for the README

Used by the end-to-end browser test too (``serve`` and ``browser``). Screenshots are taken with
DEEPFAKE_DATA pointing at an empty folder, so no dataset image (research-only material) can appear.
"""
from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
PAGES = {"detect": "", "dataset": "dataset", "training": "training", "evaluation": "evaluation",
         "misclassified": "misclassified", "own_test_set": "own_test_set", "about": "about"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serve(env: dict[str, str] | None = None, timeout: float = 120.0):
    """Run ``streamlit run streamlit_app.py`` on a free local port; yields the base URL."""
    port = free_port()
    e = {**os.environ, **(env or {})}
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "streamlit_app.py", "--server.port", str(port),
                             "--server.address", "127.0.0.1", "--server.headless", "true",
                             "--browser.gatherUsageStats", "false"], cwd=REPO, env=e, stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    try:
        t0 = time.time()
        while True:
            try:
                if urllib.request.urlopen(url + "/_stcore/health", timeout=2).read().strip() == b"ok":
                    break
            except OSError:
                pass
            if proc.poll() is not None or time.time() - t0 > timeout:
                log.seek(0)
                raise RuntimeError(f"streamlit did not start: {log.read().decode(errors='replace')[-2000:]}")
            time.sleep(0.5)
        yield url
        try:
            hwm = next(line for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines() if line.startswith("VmHWM"))
            print(f"streamlit server peak memory: {hwm.split(':')[1].strip()}", file=sys.stderr)
        except (OSError, StopIteration):
            pass
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


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


def upload_and_read_verdict(page, url: str, file: Path, timeout_ms: int = 180_000) -> str:
    page.goto(url)
    wait_idle(page, timeout_ms)
    page.set_input_files("[data-testid='stFileUploaderDropzoneInput']", str(file))
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
    with tempfile.TemporaryDirectory() as empty, serve({"DEEPFAKE_DATA": empty}) as url, browser() as b:
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
                page.set_input_files("[data-testid='stFileUploaderDropzoneInput']", str(demo_test_set(Path(empty))))
                wait_idle(page)
                page.get_by_role("button", name="Score the test set").click()
                page.get_by_text("Files scored", exact=True).wait_for(timeout=300_000)
                wait_idle(page)
            page.screenshot(path=str(out / f"{name}.png"), full_page=True)
            print(f"wrote {out / name}.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
