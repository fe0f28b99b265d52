"""Benchmark: our video pipeline vs the original project's way, side by side on the same clip.

    python -m bench.video [--clip PATH] [--real-clip PATH|none] [--frames 32] [--model DIR] [--keyframe-every K]

Without --clip it writes a 10 s 1280x720 30 fps clip of a public-domain portrait (skimage astronaut) moving
over a textured background. Prints our seconds per stage (decode, face detection, classification), then the
original-style pipeline (sequential decode keeping evenly spaced frames -- the original kept one per second --,
MTCNN rebuilt for every kept frame, ``model.predict`` per face) on the same number of frames, and finally
``ratio: X`` = original-style seconds / ours. When ``../shared/data/ffpp_mini`` is beside the checkout, the first
FF++ c23 original clip is compared the same way (``--real-clip``); one ``ratio (clip): X`` line per clip, then
``ratio: X`` for the first. Not a test: timings on a shared machine are noisy.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import cv2  # noqa: E402
import numpy as np  # noqa: E402


def make_clip(path: Path, seconds: float = 10.0, fps: int = 30, size=(1280, 720)) -> Path:
    from skimage import data

    w, h = size
    face = cv2.resize(data.astronaut()[0:330, 90:360], (300, 366))
    rng = np.random.default_rng(0)
    bg = cv2.resize(rng.integers(40, 200, (h // 20, w // 20, 3), dtype=np.uint8), (w, h), interpolation=cv2.INTER_CUBIC)
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    n = int(seconds * fps)
    for i in range(n):
        f = bg.copy()
        x = int(200 + 600 * i / n)
        y = int(150 + 60 * np.sin(i / 15))
        f[y:y + 366, x:x + 300] = face
        vw.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    vw.release()
    return path


def original_style(model, clip: Path, n_frames: int, size: int, margin: float = 0.3) -> dict:
    """The original scripts: read every frame, keep evenly spaced ones, new MTCNN per kept frame, predict per face."""
    from mtcnn import MTCNN

    t = {"decode_s": 0.0, "detect_s": 0.0, "classify_s": 0.0}
    t0 = time.perf_counter()
    cap = cv2.VideoCapture(str(clip))
    count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    step = max(1, count // n_frames)
    kept, i = [], 0
    while len(kept) < n_frames:
        ok, frame = cap.read()
        if not ok:
            break
        if i % step == 0:
            kept.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
        i += 1
    cap.release()
    t["decode_s"] = time.perf_counter() - t0
    faces = 0
    for frame in kept:
        t0 = time.perf_counter()
        det = MTCNN()  # rebuilt for every frame, as the original did
        found = det.detect_faces(frame)
        t["detect_s"] += time.perf_counter() - t0
        t0 = time.perf_counter()
        for r in found:
            x, y, w, h = r["box"]
            m = int(max(w, h) * margin / 2)
            crop = frame[max(0, y - m):y + h + m, max(0, x - m):x + w + m]
            crop = cv2.resize(crop, (size, size)).astype("float32")
            model.predict(crop[None], verbose=0)
            faces += 1
        t["classify_s"] += time.perf_counter() - t0
    t["frames"] = len(kept)
    t["faces"] = faces
    return t


REAL_CLIPS = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "ffpp_mini" / "original_sequences" \
    / "youtube" / "c23" / "videos"


def compare(det, clip: Path, n_frames: int, label: str) -> float:
    """Ours vs the original style on one clip, per stage; returns original-style seconds / ours."""
    cap = cv2.VideoCapture(str(clip))
    print(f"\n[{label}] clip: {clip.name} {int(cap.get(3))}x{int(cap.get(4))} {int(cap.get(7))} frames "
          f"@ {cap.get(5):.0f} fps; model {det.card.backbone} {det.input_size}px; {n_frames} frames")
    cap.release()
    t0 = time.perf_counter()
    res = det.analyze_video(clip, frames=n_frames)
    ours = time.perf_counter() - t0
    tm = res.timings
    print(f"ours:     decode {tm['decode_s']:.2f}s  detect {tm['detect_s']:.2f}s  classify {tm['classify_s']:.2f}s  "
          f"total {ours:.2f}s  ({len(res.frames)} frames, {sum(len(f.faces) for f in res.frames)} faces, "
          f"{len(res.tracks)} tracks)")
    t0 = time.perf_counter()
    o = original_style(det.model, clip, n_frames, det.input_size)
    orig = time.perf_counter() - t0
    print(f"original: decode {o['decode_s']:.2f}s  detect {o['detect_s']:.2f}s  classify {o['classify_s']:.2f}s  "
          f"total {orig:.2f}s  ({o['frames']} frames, {o['faces']} faces)")
    print(f"per kept frame: ours {ours / max(len(res.frames), 1):.3f}s, original {orig / max(o['frames'], 1):.3f}s")
    return orig / ours


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clip")
    ap.add_argument("--real-clip", help=f"a real clip compared as well (default: the first of {REAL_CLIPS} when "
                                        "that folder exists; 'none' to skip)")
    ap.add_argument("--frames", type=int, default=32)
    ap.add_argument("--model", help="model folder (default: bundled sample model, else an untrained B0 at 128 px)")
    ap.add_argument("--keyframe-every", type=int, default=None,
                    help="override the card's video_keyframe_every (MTCNN on the whole of every k-th frame of each group "
                         "of 8, in windows around the faces between)")
    a = ap.parse_args()
    from model.api import Detector, default_model_dir

    d = Path(a.model) if a.model else default_model_dir()
    det = Detector.load(d) if (d / "detector.keras").is_file() else Detector.untrained()
    if a.keyframe_every:
        det.spec = det.spec.replace(video_keyframe_every=a.keyframe_every)
    print(f"face finding: MTCNN on the whole of every {det.spec.video_keyframe_every}. sampled frame of each group of 8 "
          "(and its last), in windows around the faces between")
    if a.real_clip and a.real_clip != "none":
        real = Path(a.real_clip)
    else:
        found = sorted(REAL_CLIPS.glob("*.mp4")) if REAL_CLIPS.is_dir() and a.real_clip != "none" else []
        real = found[0] if found else None
    ratios = {}
    with tempfile.TemporaryDirectory() as tmp:
        clip = Path(a.clip) if a.clip else make_clip(Path(tmp) / "clip.mp4")
        t0 = time.perf_counter()
        det.warm_up()  # graph tracing, MTCNN weights: once per process, the app does it at start
        det.analyze_video(clip, frames=4)
        print(f"warm-up: {time.perf_counter() - t0:.2f}s")
        ratios["generated" if not a.clip else clip.name] = compare(det, clip, a.frames, "generated" if not a.clip else "clip")
        if real is not None:
            ratios[f"real {real.name}"] = compare(det, real, a.frames, "real")
        else:
            print(f"\n(no real clip: {REAL_CLIPS} not present)")
    print()
    for name, r in ratios.items():
        print(f"ratio ({name}): {r:.2f}")
    print(f"ratio: {next(iter(ratios.values())):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
