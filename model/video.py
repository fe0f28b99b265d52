"""Video frame sampling, face tracks across frames, and video-level score aggregation.

Aggregation strategies (all scores are P(fake)):

* ``max_mean`` (default): per sampled frame take the max over its faces (one fake face makes the frame
  fake), then the mean over frames that have a face.
* ``mean``: mean over every face in every frame.
* ``confident``: the DFDC winner's (Seferbekov) "confident strategy" over all face scores ``p`` of the video:
  if more than ``n/2.5`` and more than 11 scores exceed 0.8 -> mean of those; else if more than 90 % of the
  scores are below 0.2 -> mean of those; else the plain mean.
"""
from __future__ import annotations

import dataclasses
from typing import Iterator, Sequence

import cv2
import numpy as np

from model.media import MediaError, check_file

STRATEGIES = ("max_mean", "mean", "confident")


# --------------------------------------------------------------------------- sampling and decoding
def sample_indices(frame_count: int, n: int) -> list[int]:
    """``n`` frame indices spread uniformly over ``frame_count`` (centre of n equal segments)."""
    if frame_count <= 0 or n <= 0:
        return []
    if n >= frame_count:
        return list(range(frame_count))
    return sorted({int((i + 0.5) * frame_count / n) for i in range(n)})


@dataclasses.dataclass
class VideoInfo:
    frame_count: int
    fps: float
    width: int
    height: int
    rotation: int

    @property
    def duration_s(self) -> float:
        return self.frame_count / self.fps if self.fps > 0 else 0.0


def _rotate(frame: np.ndarray, rotation: int) -> np.ndarray:
    r = rotation % 360
    if r == 90:
        return cv2.rotate(frame, cv2.ROTATE_90_CLOCKWISE)
    if r == 180:
        return cv2.rotate(frame, cv2.ROTATE_180)
    if r == 270:
        return cv2.rotate(frame, cv2.ROTATE_90_COUNTERCLOCKWISE)
    return frame


def open_video(path) -> tuple[cv2.VideoCapture, VideoInfo]:
    p = check_file(path)
    cap = cv2.VideoCapture(str(p))
    if not cap.isOpened():
        cap.release()
        raise MediaError("not a readable video (unknown or corrupt container)")
    # We rotate ourselves from the metadata so behaviour does not depend on the OpenCV build.
    cap.set(cv2.CAP_PROP_ORIENTATION_AUTO, 0)
    rot = int(cap.get(cv2.CAP_PROP_ORIENTATION_META) or 0)
    info = VideoInfo(
        frame_count=int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0),
        fps=float(cap.get(cv2.CAP_PROP_FPS) or 0.0),
        width=int(cap.get(cv2.CAP_PROP_FRAME_WIDTH) or 0),
        height=int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT) or 0),
        rotation=rot % 360,
    )
    if info.frame_count <= 0 or info.width <= 0:
        cap.release()
        raise MediaError("video has no decodable frames")
    return cap, info


def downscale(frame: np.ndarray, max_side: int | None) -> np.ndarray:
    """Shrink a frame so its longer side is at most ``max_side`` (INTER_AREA); smaller frames are kept."""
    if not max_side:
        return frame
    h, w = frame.shape[:2]
    s = max_side / max(h, w)
    if s >= 1.0:
        return frame
    return cv2.resize(frame, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)


def read_frame(path, index: int, max_side: int | None = None) -> np.ndarray | None:
    """One decoded frame (RGB, rotation applied, downscaled like ``read_frames``), or None."""
    _, got = read_frames(path, indices=[int(index)], max_side=max_side, max_duration_s=None)
    return got[0][1] if got and got[0][0] == int(index) else None


def read_frames(path, n: int = 32, max_duration_s: float | None = 600.0,
                max_frames: int = 300, max_side: int | None = None,
                indices: list[int] | None = None) -> tuple[VideoInfo, list[tuple[int, np.ndarray]]]:
    """Decode ``n`` frames sampled uniformly (RGB, rotation applied) -> (info, [(index, frame)]).

    Only the first ``max_duration_s`` seconds are considered; ``n`` is capped at ``max_frames``.
    Close targets are reached by grabbing forward (cheap), distant ones by seeking. Frames that fail to
    decode (truncated files) are skipped; no decodable frame at all raises MediaError.
    """
    cap, info = open_video(path)
    try:
        count = info.frame_count
        if max_duration_s and info.fps > 0:
            count = min(count, max(1, int(max_duration_s * info.fps)))
        wanted = sorted(set(indices)) if indices is not None else sample_indices(count, min(n, max_frames))
        out: list[tuple[int, np.ndarray]] = []
        pos = 0
        for idx in wanted:
            if idx - pos > 24 or idx < pos:
                cap.set(cv2.CAP_PROP_POS_FRAMES, idx)
                pos = idx
            ok = True
            while pos < idx and ok:
                ok = cap.grab()
                pos += 1
            if not ok:
                break
            ok, frame = cap.read()
            pos += 1
            if not ok or frame is None:
                continue
            out.append((idx, downscale(_rotate(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB), info.rotation), max_side)))
        if not out:
            raise MediaError("could not decode any frame (truncated or corrupt video)")
        return info, out
    finally:
        cap.release()


# --------------------------------------------------------------------------- tracks
def iou(a: Sequence[float], b: Sequence[float]) -> float:
    """IoU of two (x, y, w, h) boxes."""
    ax1, ay1, bx1, by1 = a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]
    iw = max(0.0, min(ax1, bx1) - max(a[0], b[0]))
    ih = max(0.0, min(ay1, by1) - max(a[1], b[1]))
    inter = iw * ih
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def link_tracks(frames_boxes: Sequence[Sequence[Sequence[float]]], min_iou: float = 0.2) -> list[list[int]]:
    """Greedy IoU linking: for each frame, a track id per box (same order as the boxes).

    A box joins the track whose latest box overlaps it most (IoU >= ``min_iou``); each track takes at most
    one box per frame; unmatched boxes start new tracks. Track ids are 0, 1, 2... in order of appearance.
    """
    last: dict[int, Sequence[float]] = {}
    next_id = 0
    out: list[list[int]] = []
    for boxes in frames_boxes:
        pairs = sorted(((iou(b, tb), bi, tid) for bi, b in enumerate(boxes) for tid, tb in last.items()), reverse=True)
        ids = [-1] * len(boxes)
        used = set()
        for v, bi, tid in pairs:
            if v < min_iou:
                break
            if ids[bi] == -1 and tid not in used:
                ids[bi] = tid
                used.add(tid)
        for bi in range(len(boxes)):
            if ids[bi] == -1:
                ids[bi] = next_id
                next_id += 1
            last[ids[bi]] = boxes[bi]
        out.append(ids)
    return out


# --------------------------------------------------------------------------- aggregation
def confident_strategy(scores: Sequence[float], t: float = 0.8) -> float:
    p = np.asarray(scores, dtype=np.float64)
    n = len(p)
    fakes = int(np.count_nonzero(p > t))
    if fakes > n // 2.5 and fakes > 11:
        return float(np.mean(p[p > t]))
    if np.count_nonzero(p < 0.2) > 0.9 * n:
        return float(np.mean(p[p < 0.2]))
    return float(np.mean(p))


def aggregate(frame_scores: Sequence[Sequence[float]], strategy: str = "max_mean") -> float | None:
    """Video score from per-frame lists of face scores; None when no frame has a face."""
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; choose one of {STRATEGIES}")
    frames = [list(s) for s in frame_scores if len(s)]
    if not frames:
        return None
    if strategy == "max_mean":
        return float(np.mean([max(s) for s in frames]))
    flat = [v for s in frames for v in s]
    if strategy == "mean":
        return float(np.mean(flat))
    return confident_strategy(flat)


def iter_batches(items: list, size: int) -> Iterator[list]:
    for i in range(0, len(items), size):
        yield items[i:i + size]
