"""Benchmark: prepare throughput (videos/s), one process vs local Ray with 2 workers, on the same ffpp_mini videos.

    python -m bench.prepare [--videos 16] [--frames 32] [--workers 2]

Both runs cut the same videos under the same CropSpec into fresh temporary folders: the single-process path
(``training.prepare.prepare``, workers=1, PNG crops, FFmpeg's and TensorFlow's default thread pools) and the Ray
Data pipeline (``training.prepare_ray``, actor pool of ``--workers`` one-CPU actors with one thread each,
TFRecord shards, one video per shard so both workers stay busy). Ray itself is started before timing (a cluster
is already up in real use). The single process is warmed first (TensorFlow and MTCNN built on one other video),
so its time is steady-state work. Two Ray ratios are printed: end to end (actor start-up -- TensorFlow + MTCNN
load in each actor -- included, what a short run sees) and, on the last line, ``ratio: X`` = steady-state rate
(shards finished after the first ``--workers`` ones, over the time they took) / single rate: what a long
preparation (thousands of videos) sees. Target >= 1.6 on a 2-core machine. Not a test. The numbers depend on the
machine's load: run it on an otherwise idle machine.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(Path(__file__).resolve().parent.parent.parent / "shared/data/ffpp_mini"))
    ap.add_argument("--videos", type=int, default=16)
    ap.add_argument("--frames", type=int, default=32, help="frames per video (32: the crop contract's default)")
    ap.add_argument("--workers", type=int, default=2)
    a = ap.parse_args()
    if not Path(a.data).is_dir():
        print(f"dataset not present: {a.data}", file=sys.stderr)
        return 2
    from model.batch import connect
    from model.crops import CropSpec
    from training import datasets, prepare, prepare_ray

    df = datasets.index_dataset("ffpp", a.data).sort_values("path").head(a.videos + 1).reset_index(drop=True)
    warm, df = df.tail(1), df.head(a.videos)
    spec = CropSpec(size=128, frames=a.frames)
    with tempfile.TemporaryDirectory() as td:
        prepare.prepare(warm, Path(td) / "warm", spec=spec, progress=False)
        t0 = time.perf_counter()
        single = prepare.prepare(df, Path(td) / "single", spec=spec, progress=False)
        t_single = time.perf_counter() - t0
        t0 = time.perf_counter()
        connect(num_cpus=a.workers)
        t_start = time.perf_counter() - t0
        done: list[float] = []
        t0 = time.perf_counter()
        ray_out = prepare_ray.prepare(df, str(Path(td) / "ray"), spec=spec, workers=a.workers, shard_items=1,
                                      progress=False, on_shard=lambda r: done.append(time.perf_counter() - t0))
        t_ray = time.perf_counter() - t0
    n = len(df)
    print(f"videos: {n}, frames/video: {a.frames}, cpus: {os.cpu_count()}, load avg: {os.getloadavg()[0]:.1f}")
    print(f"single process: {t_single:.1f} s, {n / t_single:.3f} videos/s, {t_single / n:.2f} s/video, {len(single)} crops")
    print(f"ray start (not timed below): {t_start:.1f} s")
    print(f"ray {a.workers} workers: {t_ray:.1f} s, {n / t_ray:.3f} videos/s, {len(ray_out)} crops "
          f"(first shard after {done[0]:.1f} s)")
    print(f"ratio with actor start-up: {t_single / t_ray:.2f}")
    if n <= a.workers:
        print(f"ratio: {t_single / t_ray:.2f} (end to end: --videos must exceed --workers for a steady state)")
        return 0
    k = a.workers
    steady = (n - k) / (done[-1] - done[k - 1])
    print(f"ray steady state: {steady:.3f} videos/s over the last {n - k} shards")
    print(f"ratio: {steady / (n / t_single):.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
