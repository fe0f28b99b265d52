"""Benchmark: memory of ``python -m model predict`` on a folder of many small images stays flat.

    python -m bench.cli_memory [--count 10000] [--format csv|jsonl] [--no-isolation]

Generates ``--count`` small JPEGs (64-192 px; two in three show the public-domain astronaut's face at varied
sizes and brightness, one in three is a face-free texture) in a temporary folder, runs the CLI on the folder
with ``--output``, and samples every 0.5 s the resident memory of the CLI process plus its decoder child and
how many rows the output already holds (rows are written as each file finishes). Prints the memory at 10 %,
50 % and 100 % of the files, the peak, and the final line ``files: N, peak_mb: M, growth_mb: G`` where G is
the resident memory at the end minus at 10 % of the files (flat = close to 0). Not a test.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def make_folder(folder: Path, count: int) -> None:
    import cv2
    import numpy as np
    from skimage import data

    face = data.astronaut()[0:330, 90:360]
    rng = np.random.default_rng(0)
    for i in range(count):
        side = int(rng.integers(64, 193))
        if i % 3 == 2:
            img = cv2.resize(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8), (side, side), interpolation=cv2.INTER_CUBIC)
        else:
            img = cv2.resize(face, (side, int(side * 1.2)), interpolation=cv2.INTER_AREA)
            img = np.clip(img.astype(np.float32) * rng.uniform(0.7, 1.2), 0, 255).astype(np.uint8)
        sub = folder / f"{i // 1000:02d}"
        sub.mkdir(exist_ok=True)
        cv2.imwrite(str(sub / f"img{i:05d}.jpg"), img[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 85])


def tree_rss_kb(pid: int) -> int:
    total, todo = 0, [pid]
    procs = [d for d in Path("/proc").iterdir() if d.name.isdigit()]
    parents = {}
    for d in procs:
        try:
            st = (d / "stat").read_text()
            parents.setdefault(int(st[st.rindex(")") + 2:].split()[1]), []).append(int(d.name))
        except OSError:
            continue
    while todo:
        p = todo.pop()
        todo.extend(parents.get(p, []))
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=10_000)
    ap.add_argument("--format", choices=("csv", "jsonl"), default="csv")
    ap.add_argument("--no-isolation", action="store_true")
    ap.add_argument("--model", help="model folder (default: the bundled sample model)")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "images"
        folder.mkdir()
        t0 = time.perf_counter()
        make_folder(folder, a.count)
        print(f"generated {a.count} images in {time.perf_counter() - t0:.0f}s", file=sys.stderr)
        out = Path(tmp) / f"out.{a.format}"
        cmd = [sys.executable, "-m", "model", "predict", str(folder), "--output", str(out), "--format", a.format,
               "--quiet"] + (["--no-isolation"] if a.no_isolation else []) + (["--model", a.model] if a.model else [])
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=REPO, stderr=subprocess.PIPE, text=True)
        samples = []  # (seconds, rows written, rss kB)
        while proc.poll() is None:
            try:
                with open(out, "rb") as f:
                    rows = sum(1 for _ in f) - (1 if a.format == "csv" else 0)
            except OSError:
                rows = 0
            samples.append((time.perf_counter() - t0, max(rows, 0), tree_rss_kb(proc.pid)))
            time.sleep(0.5)
        err = proc.stderr.read()
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            print(err[-2000:], file=sys.stderr)
            return 1
        with open(out, "rb") as f:
            rows = sum(1 for _ in f) - (1 if a.format == "csv" else 0)
    samples = [s for s in samples if s[2] > 0]

    def at(frac: float) -> float:
        want = frac * a.count
        cands = [s for s in samples if s[1] >= want]
        return (cands[0] if cands else samples[-1])[2] / 1024

    peak = max(s[2] for s in samples) / 1024
    print(f"{rows} rows in {wall:.0f}s ({rows / wall:.1f} files/s); isolation {'off' if a.no_isolation else 'on'}")
    print(f"resident memory (CLI + decoder child): at 10 % {at(0.1):.0f} MB, at 50 % {at(0.5):.0f} MB, "
          f"at 100 % {at(1.0):.0f} MB; peak {peak:.0f} MB")
    print(f"files: {rows}, peak_mb: {peak:.0f}, growth_mb: {at(1.0) - at(0.1):.0f}")
    return 0 if rows == a.count else 1


if __name__ == "__main__":
    sys.exit(main())
