"""Benchmark: one detector vs every bundled detector on the same images, side by side in one run.

    python -m bench.detectors [--repeats 15] [--images PATH ...]

Both engines are loaded and warmed up first; then each image is analysed alternately by the face-swap detector
alone and by all registry detectors (faces found and cut once, every detector scores them), so machine noise
falls on both. Prints the median seconds per image of each and ``ratio: X`` = all / one (target <= 1.3).
Default images: skimage's astronaut (one face) and a 2x2 grid of it (four faces) at 1280 px. Not a test.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402


def default_images() -> dict[str, np.ndarray]:
    import cv2
    from skimage import data

    a = data.astronaut()
    grid = cv2.resize(np.vstack([np.hstack([a, a[:, ::-1]]), np.hstack([a[:, ::-1], a])]), (1280, 1280))
    return {"astronaut 512 px, 1 face": a, "grid 1280 px, 4 faces": grid}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.detectors", description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--images", nargs="*", help="image files (default: skimage astronaut and a 4-face grid)")
    a = ap.parse_args(argv)
    from model import media, registry
    from model.api import Detector

    keys = [e.key for e in registry.available()]
    if len(keys) < 2:
        print(f"only {keys} bundled: nothing to compare (train runs/gan first: bash training/run_gan.sh)")
        return 2
    one, every = Detector.load(detectors=keys[0]), Detector.load(detectors=",".join(keys))
    one.warm_up()
    every.warm_up()
    images = ({p: media.load_image(p) for p in a.images} if a.images else default_images())
    ratios = []
    for name, img in images.items():
        one.analyze_array(img)
        every.analyze_array(img)  # first call per shape traced outside the timing
        t = {"one": [], "all": []}
        for _ in range(a.repeats):
            for k, det in (("one", one), ("all", every)):
                t0 = time.perf_counter()
                det.analyze_array(img)
                t[k].append(time.perf_counter() - t0)
        m1, m2 = statistics.median(t["one"]), statistics.median(t["all"])
        ratios.append(m2 / m1)
        print(f"{name}: {keys[0]} alone {m1:.3f} s, {' + '.join(keys)} {m2:.3f} s, ratio {m2 / m1:.2f}")
    print(f"ratio: {max(ratios):.2f} (worst image; target <= 1.3)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
