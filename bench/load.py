"""Load benchmark: N headless Chromium sessions at once against one ``streamlit run``.

    python -m bench.load [--sessions 4] [--bomb] [--max-analyses N] [--clip PATH] [--photo PATH]

Each session opens the Detect page, uploads a photo (the public-domain astronaut, 512 px JPEG) and waits for the
verdict, then uploads a 720p clip (10 s, 30 fps, generated like bench/video.py) and waits for its verdict.
All sessions start together. ``--bomb`` adds one session that uploads the issue's 8K file (200 KB of H.264 that
decodes to 7680x4320 frames): it must get a clear error, not take the server down.

Memory is sampled every 0.2 s as the resident set of the server process plus its children (the decoder
processes), and the server's own peak (VmHWM) is read at the end. Prints per-session times, p50/p95 time to
verdict, errors, and the final line ``errors: E, p95_s: X, peak_mb: M`` (M = peak of server + children).
Not a test: timings on a shared machine are noisy; targets (issue 9): 0 errors at 4 sessions, peak <= 1.2 GB
with the default analysis limit, the 8K file a clear error with peak <= 1.5 GB.
"""
from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from dashboard.launch import CHROMIUM, serve

REPO = Path(__file__).resolve().parent.parent
BOMB_ERROR = "over the 3840x2160 limit"


# --------------------------------------------------------------------------- inputs
def make_inputs(folder: Path, bomb: bool) -> dict[str, Path]:
    import cv2
    from skimage import data

    spec = importlib.util.spec_from_file_location("bench_video", REPO / "bench" / "video.py")
    bv = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bv)
    out = {"clip": bv.make_clip(folder / "clip720p.mp4", seconds=10.0, fps=30, size=(1280, 720))}
    photo = folder / "astronaut.jpg"
    cv2.imwrite(str(photo), data.astronaut()[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 92])
    out["photo"] = photo
    if bomb:
        import imageio_ffmpeg

        out["bomb"] = folder / "bomb.mp4"
        subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error", "-f", "lavfi", "-i",
                        "color=c=gray:s=7680x4320:d=10:r=30", "-c:v", "libx264", "-preset", "ultrafast", "-crf", "40",
                        str(out["bomb"])], check=True)
    return out


# --------------------------------------------------------------------------- server and memory
def _children(pid: int) -> list[int]:
    kids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text()
            except OSError:
                continue
            if int(stat[stat.rindex(")") + 2:].split()[1]) == pid:
                kids.append(int(d.name))
    return kids


def _status_kb(pid: int, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


class MemorySampler(threading.Thread):
    """Peak resident memory of a process plus all its descendants, sampled."""

    def __init__(self, pid: int, every_s: float = 0.2):
        super().__init__(daemon=True)
        self.pid, self.every_s = pid, every_s
        self.peak_kb = self.peak_server_kb = self.peak_children_kb = 0
        self.max_children = 0
        self._halt = threading.Event()

    def run(self):
        while not self._halt.is_set():
            todo, tree = [self.pid], []
            while todo:
                p = todo.pop()
                tree.append(p)
                todo.extend(_children(p))
            server = _status_kb(self.pid, "VmRSS")
            kids = sum(_status_kb(p, "VmRSS") for p in tree[1:])
            self.peak_kb = max(self.peak_kb, server + kids)
            self.peak_server_kb = max(self.peak_server_kb, server)
            self.peak_children_kb = max(self.peak_children_kb, kids)
            self.max_children = max(self.max_children, len(tree) - 1)
            self._halt.wait(self.every_s)

    def stop(self):
        self._halt.set()
        self.join(5)


# --------------------------------------------------------------------------- sessions
async def _idle(page, timeout_ms: int) -> None:
    await page.wait_for_selector("[data-testid='stApp'] h1", timeout=timeout_ms)
    await page.wait_for_timeout(500)
    await page.get_by_role("button", name="Stop").wait_for(state="hidden", timeout=timeout_ms)


async def _upload(page, file: Path, done_text: str, timeout_ms: int) -> tuple[float, str]:
    """Upload ``file``; seconds until ``done_text`` or an error alert shows, and that alert's text ('' if none)."""
    t0 = time.perf_counter()
    await page.set_input_files("[data-testid='stFileUploaderDropzoneInput']", str(file))
    done = page.get_by_text(done_text, exact=True).or_(page.get_by_text("Could not analyse")).first
    await done.wait_for(timeout=timeout_ms)
    dt = time.perf_counter() - t0
    await _idle(page, timeout_ms)
    errors = await page.locator("[data-testid='stAlertContentError']").all_inner_texts()
    exc = await page.locator("[data-testid='stException']").count()
    return dt, " | ".join(errors) + (" | exception shown" if exc else "")


async def session(browser, url: str, i: int, inputs: dict[str, Path], timeout_ms: int, bomb: bool) -> dict:
    ctx = await browser.new_context(viewport={"width": 1280, "height": 900})
    page = await ctx.new_page()
    out = {"session": i, "times": [], "errors": [], "bomb": bomb}
    try:
        await page.goto(url)
        await _idle(page, timeout_ms)
        if bomb:
            dt, err = await _upload(page, inputs["bomb"], "Score P(fake)", timeout_ms)
            out["times"].append(("bomb", dt))
            if BOMB_ERROR not in err:
                out["errors"].append(f"8K file: expected a clear error, got {err!r}")
            out["bomb_message"] = err
        else:
            for what, label in (("photo", "Faces"), ("clip", "Face tracks")):
                dt, err = await _upload(page, inputs[what], label, timeout_ms)
                out["times"].append((what, dt))
                if err:
                    out["errors"].append(f"{what}: {err}")
    except Exception as e:  # a timeout or a crash of the page is one error of this session
        out["errors"].append(f"{type(e).__name__}: {str(e).splitlines()[0]}")
    finally:
        await ctx.close()
    return out


async def run_sessions(url: str, n: int, inputs: dict[str, Path], timeout_ms: int) -> list[dict]:
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        try:
            jobs = [session(browser, url, i, inputs, timeout_ms, False) for i in range(n)]
            if "bomb" in inputs:
                jobs.append(session(browser, url, n, inputs, timeout_ms, True))
            return await asyncio.gather(*jobs)
        finally:
            await browser.close()


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    v = sorted(values)
    k = (len(v) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (k - lo)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sessions", type=int, default=4)
    ap.add_argument("--bomb", action="store_true", help="add a session uploading the 8K H.264 file")
    ap.add_argument("--max-analyses", type=int, help="DEEPFAKE_MAX_ANALYSES for the server (default: the app's)")
    ap.add_argument("--clip", help="720p clip to upload (default: generated)")
    ap.add_argument("--photo", help="photo to upload (default: the astronaut)")
    ap.add_argument("--timeout", type=float, default=600, help="seconds a session may wait for one verdict")
    a = ap.parse_args()
    if not Path(CHROMIUM).exists():
        print(f"error: {CHROMIUM} not found (set CHROMIUM)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        inputs = make_inputs(Path(tmp), a.bomb)
        if a.clip:
            inputs["clip"] = Path(a.clip)
        if a.photo:
            inputs["photo"] = Path(a.photo)
        env = {"DEEPFAKE_DATA": str(Path(tmp) / "no_data"), "DEEPFAKE_CACHE": str(Path(tmp) / "cache")}
        if a.max_analyses:
            env["DEEPFAKE_MAX_ANALYSES"] = str(a.max_analyses)
        with serve(env) as server:
            sampler = MemorySampler(server.proc.pid)
            sampler.start()
            try:
                idle_kb = _status_kb(server.proc.pid, "VmRSS")
                t0 = time.perf_counter()
                results = asyncio.run(run_sessions(server.url, a.sessions, inputs, int(a.timeout * 1000)))
                wall = time.perf_counter() - t0
                alive = server.proc.poll() is None
                hwm_kb = _status_kb(server.proc.pid, "VmHWM")
            finally:
                sampler.stop()
    load = os.getloadavg()
    print(f"sessions: {a.sessions}{' + 1 uploading the 8K file' if a.bomb else ''}; analyses at once: "
          f"{a.max_analyses or os.environ.get('DEEPFAKE_MAX_ANALYSES') or 'default'}; cpus: {os.cpu_count()}; "
          f"load average after: {load[0]:.1f}")
    times = []
    errors = 0
    for r in results:
        desc = ", ".join(f"{w} {t:.1f}s" for w, t in r["times"])
        print(f"  session {r['session']}{' (8K file)' if r['bomb'] else ''}: {desc or 'no verdict'}"
              + (f"; ERRORS: {r['errors']}" if r["errors"] else "")
              + (f"; message: {r.get('bomb_message')!r}" if r["bomb"] else ""))
        times += [t for w, t in r["times"] if w != "bomb"]
        errors += len(r["errors"])
    if not alive:
        errors += 1
        print("  the server process died")
    print(f"time to verdict: p50 {percentile(times, 0.5):.1f}s, p95 {percentile(times, 0.95):.1f}s, "
          f"max {max(times, default=float('nan')):.1f}s over {len(times)} uploads; wall {wall:.1f}s")
    print(f"memory: server idle after start {idle_kb / 1024:.0f} MB; server peak (VmHWM) {hwm_kb / 1024:.0f} MB; "
          f"decoder children peak {sampler.peak_children_kb / 1024:.0f} MB (up to {sampler.max_children} at once); "
          f"server + children peak {sampler.peak_kb / 1024:.0f} MB (sampled every 0.2 s)")
    print(f"errors: {errors}, p95_s: {percentile(times, 0.95):.1f}, peak_mb: {max(sampler.peak_kb, hwm_kb) / 1024:.0f}")
    return 0 if errors == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
