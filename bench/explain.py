"""Benchmark: cost per face and deletion-curve faithfulness of every explanation method, side by side.

    python -m bench.explain [--model DIR] [--faces 12] [--run RUN | --media FILE ...] [--methods gradcam scorecam ...]

Faces: with --run, test-fake faces of that run's evaluation (schema 2), cut again from the source files; with
--media, the highest-scoring face of one frame of each image/video given (e.g. fake videos); otherwise variants of
the public-domain skimage astronaut (a real photo: flips, crops, brightness). Each method runs once on the first face
before timing (graph building is not a per-face cost). Prints one row per method: seconds per face, ratio to the
fast compiled Grad-CAM, mean deletion area (lower = more faithful) and its paired difference to a random map.
Not a test: timings on a shared machine are noisy.
"""
from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import cv2  # noqa: E402
import numpy as np  # noqa: E402


def astronaut_faces(det, n: int) -> list[np.ndarray]:
    from skimage import data

    img = data.astronaut()
    out = []
    for i in range(n):
        v = img[:, ::-1] if i % 2 else img
        s = 1.0 + 0.1 * (i // 2 % 3)
        v = np.clip(v.astype(np.float32) * (0.8 + 0.05 * (i % 5)), 0, 255).astype(np.uint8)
        v = cv2.resize(v, None, fx=s, fy=s)
        faces = det.analyze_array(np.ascontiguousarray(v)).face_results
        if faces:
            out.append(faces[0].crop)
    return out


def run_faces(det, run: str, n: int) -> list[np.ndarray]:
    from pathlib import Path

    from model import explain
    from training.explain_eval import test_fakes

    crops = []
    for _, r in test_fakes(Path(run), n * 2).iterrows():
        c = explain.recut_face(det, r["path"], int(r["frame"] or 0), [r[k] for k in ("x", "y", "w", "h")])
        if c is not None:
            crops.append(c)
        if len(crops) == n:
            break
    return crops


def media_faces(det, files: list[str], n: int) -> list[np.ndarray]:
    crops = []
    for f in files:
        res = det.analyze(f, frames=1)
        faces = sorted(res.all_faces, key=lambda x: -x.score)
        if faces and faces[0].crop is not None:
            crops.append(faces[0].crop)
        if len(crops) == n:
            break
    return crops


def main() -> int:
    from model import explain
    from model.api import Detector, default_model_dir

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="model folder (default: the bundled sample model)")
    ap.add_argument("--run", help="use this run's test-fake faces (needs its sources on this machine)")
    ap.add_argument("--media", nargs="+", help="images or videos to take one face each from")
    ap.add_argument("--faces", type=int, default=12)
    ap.add_argument("--steps", type=int, default=16)
    ap.add_argument("--methods", nargs="+", default=list(explain.METHODS), choices=list(explain.METHODS))
    a = ap.parse_args()
    det = Detector.load(a.model or (f"{a.run}/model" if a.run else default_model_dir()))
    if a.run:
        crops, what = run_faces(det, a.run, a.faces), f"test fakes of {a.run}"
    elif a.media:
        crops, what = media_faces(det, a.media, a.faces), "one face per given file"
    else:
        crops, what = astronaut_faces(det, a.faces), "astronaut variants (a real photo)"
    if not crops:
        print("no faces", file=sys.stderr)
        return 1
    print(f"{det.describe()}\n{len(crops)} faces ({what}), "
          f"{a.steps} deletion steps, mean fill, target fake")
    rows = explain.evaluate_methods(det, crops, a.methods, steps=a.steps)
    summ = {r["method"]: r for r in explain.summarize(rows)}
    base = summ.get("gradcam", {}).get("seconds_per_face")
    print(f"{'method':<24}{'s/face':>9}{'x gradcam':>11}{'deletion area [95% CI]':>30}{'minus random':>14}")
    for m, r in summ.items():
        ratio = f"{r['seconds_per_face'] / base:.1f}" if base and m != "random" else ""
        lo, hi = r["deletion_area_ci"]
        mr = "" if r["minus_random"] is None else f"{r['minus_random']:+.3f}"
        print(f"{r['label']:<24}{r['seconds_per_face']:>9.3f}{ratio:>11}"
              f"{r['deletion_area']:>12.3f} [{lo:.3f}, {hi:.3f}]{mr:>14}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
