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
import logging
import time
from typing import Iterable, Iterator, Sequence

import cv2
import numpy as np

from model.media import MediaError, check_file

STRATEGIES = ("max_mean", "mean", "confident")
DEFAULT_STRATEGY = "max_mean"  # every entry point's default (CLI, API, app, calibration, evaluation)


# --------------------------------------------------------------------------- sampling and decoding
def sample_indices(frame_count: int, n: int) -> list[int]:
    """``n`` frame indices spread uniformly over ``frame_count`` (centre of n equal segments)."""
    if frame_count <= 0 or n <= 0:
        return []
    if n >= frame_count:
        return list(range(frame_count))
    return sorted({int((i + 0.5) * frame_count / n) for i in range(n)})


MAX_PLAUSIBLE_FRAMES = 10**8  # a larger (or negative) count is a container that does not know it


@dataclasses.dataclass
class VideoInfo:
    frame_count: int  # frames in the video (counted while decoding when the container does not say)
    fps: float
    width: int  # coded size, before rotation
    height: int
    rotation: int
    sequential: bool = False  # no usable frame count (browser-recorded WebM...): decoded front to back
    truncated: bool = False  # longer than the analysis limit: only the first ``analysed_s`` seconds were used
    analysed_s: float | None = None

    @property
    def duration_s(self) -> float:
        return self.frame_count / self.fps if self.fps > 0 else 0.0

    def note(self) -> str:
        """A one-line remark for the result when the video was cut, else ''."""
        if not self.truncated or self.analysed_s is None:
            return ""
        total = f" of {self.duration_s:.0f} s" if self.duration_s > self.analysed_s and not self.sequential else ""
        return f"first {self.analysed_s:.0f} s{total} analysed (video longer than the {self.analysed_s:.0f} s limit)"


def _rotate(frame: np.ndarray, rotation: int) -> np.ndarray:
    r = rotation % 360
    if r == 90:
        return cv2.rotate(frame, cv2.ROTATE_90_CLOCKWISE)
    if r == 180:
        return cv2.rotate(frame, cv2.ROTATE_180)
    if r == 270:
        return cv2.rotate(frame, cv2.ROTATE_90_COUNTERCLOCKWISE)
    return frame


def frame_size_error(width: int, height: int, max_frame: tuple[int, int]) -> str:
    return (f"video frames are {width}x{height}, over the {max_frame[0]}x{max_frame[1]} limit "
            f"(refused before decoding)")


DECODE_THREADS = 0  # FFmpeg decoding threads when a caller passes none (0: FFmpeg's default, one per core);
# a worker that owns one core of a shared machine (a Ray actor) sets 1, see ``limit_threads``


def limit_threads(n: int) -> None:
    """Make this process use about ``n`` cores: FFmpeg decoding, OpenCV and TensorFlow thread pools. For workers
    that share a machine (Ray actors reserving ``n`` CPUs): oversubscribed pools made two 1-CPU actors on two
    cores no faster than one process. TensorFlow's pools can only be set before its first op; if it is already
    running they are left as they are."""
    global DECODE_THREADS
    DECODE_THREADS = max(1, int(n))
    cv2.setNumThreads(DECODE_THREADS)
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(DECODE_THREADS)
        tf.config.threading.set_inter_op_parallelism_threads(DECODE_THREADS)
    except RuntimeError:  # TensorFlow already initialised in this process: its pools keep their size
        logging.getLogger(__name__).info("TensorFlow already running: its thread pools keep their size")


def open_video(path, max_frame: tuple[int, int] | None = None, threads: int = 0) -> tuple[cv2.VideoCapture, VideoInfo]:
    """Open with OpenCV's FFmpeg backend only and read the header. ``max_frame`` (W, H, either orientation):
    larger frames raise MediaError before any frame is decoded. ``threads``: FFmpeg decoding threads (0: its
    default, one per core; each thread holds frames of its own, so fewer threads use less memory)."""
    p = check_file(path)
    threads = threads or DECODE_THREADS
    params = [cv2.CAP_PROP_N_THREADS, int(threads)] if threads else []
    cap = cv2.VideoCapture(str(p), cv2.CAP_FFMPEG, params)
    if not cap.isOpened():
        cap.release()
        raise MediaError("not a readable video (unknown or corrupt container)")
    # We rotate ourselves from the metadata so behaviour does not depend on the OpenCV build.
    cap.set(cv2.CAP_PROP_ORIENTATION_AUTO, 0)
    rot = int(cap.get(cv2.CAP_PROP_ORIENTATION_META) or 0)
    raw_count = float(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
    if not 0 < fps < 1000:
        fps = 0.0
    sequential = not 0 < raw_count < MAX_PLAUSIBLE_FRAMES
    info = VideoInfo(frame_count=0 if sequential else int(raw_count), fps=fps,
                     width=int(cap.get(cv2.CAP_PROP_FRAME_WIDTH) or 0),
                     height=int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT) or 0), rotation=rot % 360, sequential=sequential)
    if info.width <= 0 or info.height <= 0:
        cap.release()
        raise MediaError("video has no decodable frames")
    if max_frame is not None:
        lo, hi = sorted(max_frame)
        if max(info.width, info.height) > hi or min(info.width, info.height) > lo:
            cap.release()
            raise MediaError(frame_size_error(info.width, info.height, max_frame))
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


GRAB_GAP = 24  # until seek and grab costs are measured: grab forward over gaps up to this many frames
RESERVOIR_BYTES = 192 * 1024 * 1024  # sequential sampling: above this, decode twice instead of keeping frames


class FrameSampler:
    """``n`` frames spread uniformly over the first ``max_duration_s`` seconds, as (index, HxWx3 uint8 RGB) with
    rotation applied, each downscaled to ``max_side`` right after it is decoded (no full-size frame is kept).

    ``indices`` asks for those frames instead. Containers that report a frame count are sampled by grabbing
    forward to close targets and seeking to distant ones; containers without one (browser-recorded WebM, live
    streams) are decoded front to back, keeping an evenly thinned reservoir of at most 2n downscaled frames
    (when those would exceed ``RESERVOIR_BYTES``, frames are counted in a first pass and the chosen ones
    decoded in a second). Frames that fail to decode (truncated files) are skipped. ``info`` is final once the iteration ends (frame count of sequential containers,
    whether the video was cut). Use as an iterator, once; ``close()`` (or ``with``) releases the decoder.
    """

    def __init__(self, path, n: int = 32, max_duration_s: float | None = 600.0, max_frames: int = 300,
                 max_side: int | None = None, max_frame: tuple[int, int] | None = None, threads: int = 0,
                 indices: Sequence[int] | None = None):
        self.path, self.threads = path, threads
        self.cap, self.info = open_video(path, max_frame=max_frame, threads=threads)
        self.n = max(0, min(int(n), int(max_frames)))
        self.max_duration_s = max_duration_s
        self.max_side = max_side
        self.decoded = 0
        self.indices = sorted({int(i) for i in indices if int(i) >= 0}) if indices is not None else None
        if self.indices is not None:
            self.info.sequential = False  # explicit frames: grab forward / seek to each
            self.wanted = self.indices
            self.planned = len(self.wanted)
        elif self.info.sequential:
            self.planned = self.n
        else:
            count = self.info.frame_count
            if max_duration_s and self.info.fps > 0:
                limit = max(1, int(max_duration_s * self.info.fps))
                if count > limit:
                    count = limit
                    self.info.truncated = True
                    self.info.analysed_s = float(max_duration_s)
            self.wanted = sample_indices(count, self.n)
            self.planned = len(self.wanted)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self) -> None:
        if self.cap is not None:
            self.cap.release()
            self.cap = None

    def _prep(self, bgr: np.ndarray) -> np.ndarray:
        # downscale first: colour conversion and rotation then touch the small frame only (the result is the
        # same: both are per-pixel permutations)
        return _rotate(cv2.cvtColor(downscale(bgr, self.max_side), cv2.COLOR_BGR2RGB), self.info.rotation)

    def __iter__(self) -> Iterator[tuple[int, np.ndarray]]:
        try:
            frames = self._sequential() if self.info.sequential else self._seek()
            for item in frames:
                self.decoded += 1
                yield item
            if self.decoded == 0:
                raise MediaError("could not decode any frame (truncated or corrupt video)")
        finally:
            self.close()

    def _seek(self) -> Iterator[tuple[int, np.ndarray]]:
        """Grab forward or seek, whichever the measured costs say is cheaper for each gap (the frames are the
        same either way; only the time differs). A seek decodes from the previous key frame, so its cost depends
        on the file's key-frame interval: about 100 frames' worth on FF++'s x264 clips (grabbing 30 frames was 3x
        faster than a seek there), a handful on phone videos. Until both costs are measured, gaps up to
        ``GRAB_GAP`` frames are grabbed and longer ones sought."""
        cap = self.cap
        pos = 0
        grab_s = seek_s = None  # running estimates: one grab (s/frame), one seek (s)
        for idx in self.wanted:
            gap = idx - pos
            if gap < 0:
                seek = True
            elif grab_s is None or seek_s is None:
                seek = gap > GRAB_GAP
            else:
                seek = gap * grab_s > seek_s
            if seek:
                t0 = time.perf_counter()
                cap.set(cv2.CAP_PROP_POS_FRAMES, idx)
                dt = time.perf_counter() - t0
                seek_s = dt if seek_s is None else 0.5 * (seek_s + dt)
                pos = idx
            ok = True
            if pos < idx:
                t0, start = time.perf_counter(), pos
                while pos < idx and ok:
                    ok = cap.grab()
                    pos += 1
                dt = (time.perf_counter() - t0) / max(1, pos - start)
                grab_s = dt if grab_s is None else 0.5 * (grab_s + dt)
            if not ok:
                break
            ok, frame = cap.read()
            pos += 1
            if not ok or frame is None:
                continue
            yield idx, self._prep(frame)

    def _sequential(self) -> Iterator[tuple[int, np.ndarray]]:
        cap, info = self.cap, self.info
        # frame limit from the fps when known; otherwise the decoder's timestamps decide (and a hard cap of
        # 120 frames per second of the limit keeps a stream without timestamps finite)
        fps_known = info.fps > 0
        limit = None
        if self.max_duration_s:
            limit = int(self.max_duration_s * (info.fps if fps_known else 120))
        keep = max(self.n, 1)
        stride, kept, idx, two_pass = 1, [], 0, False
        while True:
            if limit is not None and idx >= limit:
                info.truncated = cap.grab()
                break
            if not cap.grab():
                break
            if self.max_duration_s and not fps_known and cap.get(cv2.CAP_PROP_POS_MSEC) > 1000 * self.max_duration_s:
                info.truncated = True
                break
            if not two_pass and idx % stride == 0:
                ok, frame = cap.retrieve()
                if ok and frame is not None:
                    kept.append((idx, self._prep(frame)))
                    if 2 * keep * kept[-1][1].nbytes > RESERVOIR_BYTES:
                        two_pass, kept = True, []  # large frames: count now, decode the chosen ones later
                if len(kept) >= 2 * keep:
                    stride *= 2
                    kept = [k for k in kept if k[0] % stride == 0]
            idx += 1
        info.frame_count = idx
        if info.truncated:
            info.analysed_s = float(self.max_duration_s)
        if two_pass:
            self.close()
            yield from self._second_pass(sample_indices(idx, self.n))
            return
        chosen = sample_indices(len(kept), self.n)
        for i in chosen:
            yield kept[i]
            kept[i] = None  # release as we go

    def _second_pass(self, wanted: list[int]) -> Iterator[tuple[int, np.ndarray]]:
        self.cap, _ = open_video(self.path, threads=self.threads)
        targets = set(wanted)
        idx = 0
        while targets and idx <= wanted[-1]:
            if not self.cap.grab():
                break
            if idx in targets:
                ok, frame = self.cap.retrieve()
                if ok and frame is not None:
                    yield idx, self._prep(frame)
                targets.discard(idx)
            idx += 1


def read_frames(path, n: int = 32, max_duration_s: float | None = 600.0, max_frames: int = 300,
                max_side: int | None = None, indices: Sequence[int] | None = None,
                max_frame: tuple[int, int] | None = None) -> tuple[VideoInfo, list[tuple[int, np.ndarray]]]:
    """All sampled frames at once (see ``FrameSampler``) -> (info, [(index, frame)]). Keeps every frame in memory:
    for trusted files and small ``n`` (training); analysis of uploads streams through ``FrameSampler``."""
    sampler = FrameSampler(path, n=n, max_duration_s=max_duration_s, max_frames=max_frames, max_side=max_side,
                           max_frame=max_frame, indices=indices)
    out = list(sampler)
    return sampler.info, out


def read_frame(path, index: int, max_side: int | None = None) -> np.ndarray | None:
    """One decoded frame (RGB, rotation applied, downscaled like ``read_frames``), or None."""
    try:
        _, got = read_frames(path, indices=[int(index)], max_side=max_side, max_duration_s=None)
    except MediaError:
        return None
    return got[0][1] if got and got[0][0] == int(index) else None


# --------------------------------------------------------------------------- tracks
def iou(a: Sequence[float], b: Sequence[float]) -> float:
    """IoU of two (x, y, w, h) boxes."""
    ax1, ay1, bx1, by1 = a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]
    iw = max(0.0, min(ax1, bx1) - max(a[0], b[0]))
    ih = max(0.0, min(ay1, by1) - max(a[1], b[1]))
    inter = iw * ih
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


class TrackLinker:
    """Greedy IoU linking, one frame at a time: ``add(boxes)`` returns a track id per box (same order).

    A box joins the track whose latest box overlaps it most (IoU >= ``min_iou``); each track takes at most
    one box per frame; unmatched boxes start new tracks. Track ids are 0, 1, 2... in order of appearance.
    """

    def __init__(self, min_iou: float = 0.2):
        self.min_iou = min_iou
        self.last: dict[int, Sequence[float]] = {}
        self.next_id = 0

    def add(self, boxes: Sequence[Sequence[float]]) -> list[int]:
        pairs = sorted(((iou(b, tb), bi, tid) for bi, b in enumerate(boxes) for tid, tb in self.last.items()),
                       reverse=True)
        ids = [-1] * len(boxes)
        used = set()
        for v, bi, tid in pairs:
            if v < self.min_iou:
                break
            if ids[bi] == -1 and tid not in used:
                ids[bi] = tid
                used.add(tid)
        for bi in range(len(boxes)):
            if ids[bi] == -1:
                ids[bi] = self.next_id
                self.next_id += 1
            self.last[ids[bi]] = boxes[bi]
        return ids


def _same_face(a: Sequence[float], b: Sequence[float], max_shift: float) -> float | None:
    """How far apart two (x, y, w, h) boxes' centres are, in units of the larger box's longer side, when they may
    be one face (centres within ``max_shift``, longer sides within a factor 1.5); None otherwise."""
    sa, sb = max(a[2], a[3]), max(b[2], b[3])
    if min(sa, sb) <= 0 or max(sa, sb) > 1.5 * min(sa, sb):
        return None
    d = float(np.hypot(a[0] + a[2] / 2 - b[0] - b[2] / 2, a[1] + a[3] / 2 - b[1] - b[3] / 2)) / max(sa, sb)
    return d if d <= max_shift else None


def pair_boxes(a: Sequence[Sequence[float]], b: Sequence[Sequence[float]], max_shift: float = 1.0
               ) -> dict[int, int] | None:
    """Boxes ``a`` paired one to one with boxes ``b`` (greedy, nearest centres first, see ``_same_face``): {i: j}
    when every box of each has its pair, else None (a track lost, a face appearing, or nothing to pair)."""
    if not a or len(a) != len(b):
        return None
    dists = sorted((d, i, j) for i, ba in enumerate(a) for j, bb in enumerate(b)
                   if (d := _same_face(ba, bb, max_shift)) is not None)
    pairs: dict[int, int] = {}
    for _, i, j in dists:
        if i not in pairs and j not in pairs.values():
            pairs[i] = j
    return pairs if len(pairs) == len(a) else None


def track_pairs(a: Sequence, b: Sequence, max_shift: float = 1.0) -> dict[int, int] | None:
    """The faces of keyframe ``a`` paired with those of keyframe ``b`` (objects with ``box``; ``pair_boxes``)."""
    return pair_boxes([f.box for f in a], [f.box for f in b], max_shift)


def track_regions(a: Sequence, b: Sequence, pairs: dict[int, int], pad: float = 0.5,
                  sizes: tuple[float, float] = (0.8, 1.25)) -> list[tuple[float, ...]]:
    """Where to search the frames between keyframes ``a`` and ``b`` (faces with ``box``; ``pairs`` from
    ``track_pairs``): per pair, the union of its two boxes widened by ``pad`` x the longer side on every side,
    with the face sides expected there (``sizes`` x the smaller and the larger keyframe side): (x0, y0, x1, y1,
    smallest, largest) as ``FaceExtractor.detect_in`` takes them."""
    out = []
    for i, j in pairs.items():
        (ax, ay, aw, ah), (bx, by, bw, bh) = a[i].box, b[j].box
        sides = (max(aw, ah), max(bw, bh))
        p = pad * max(sides)
        out.append((min(ax, bx) - p, min(ay, by) - p, max(ax + aw, bx + bw) + p, max(ay + ah, by + bh) + p,
                    sizes[0] * min(sides), sizes[1] * max(sides)))
    return out


def expected_boxes(a: Sequence, b: Sequence, pairs: dict[int, int], t: float) -> list[tuple[float, ...]]:
    """Each pair's box at fraction ``t`` of the way from keyframe ``a`` to ``b`` (linear)."""
    return [tuple((1 - t) * float(x) + t * float(y) for x, y in zip(a[i].box, b[j].box)) for i, j in pairs.items()]


def faces_follow(faces: Sequence, expected: Sequence[Sequence[float]], max_shift: float = 0.5) -> bool:
    """True when ``faces`` (with ``box``) are as many as the ``expected`` boxes and pair one to one with them
    (centres within ``max_shift`` x the longer side, sides within a factor 1.5): the faces found around the
    tracks are the tracks' faces, nothing missing, nothing extra."""
    return len(faces) == len(expected) and (
        not faces or pair_boxes([f.box for f in faces], expected, max_shift) is not None)


KEYFRAME_GROUP = 8  # sampled frames are taken in consecutive groups of 8 for keyframe detection


def keyframe_positions(n: int, every: int) -> list[int]:
    """Positions in a group of ``n`` sampled frames where faces are detected: every ``every``-th and the last."""
    return sorted({*range(0, n, max(1, every)), n - 1}) if n else []


def link_tracks(frames_boxes: Sequence[Sequence[Sequence[float]]], min_iou: float = 0.2) -> list[list[int]]:
    """For each frame, a track id per box (see ``TrackLinker``)."""
    linker = TrackLinker(min_iou)
    return [linker.add(boxes) for boxes in frames_boxes]


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


def aggregate(frame_scores: Sequence[Sequence[float]], strategy: str = DEFAULT_STRATEGY) -> float | None:
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


def iter_batches(items: Iterable, size: int) -> Iterator[list]:
    """Consecutive lists of ``size`` items (the last may be shorter), from any iterable, lazily."""
    batch = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def timed(items: Iterable, timings: dict[str, float], key: str) -> Iterator:
    """Iterate ``items``, adding the time spent waiting for each one to ``timings[key]``."""
    it = iter(items)
    while True:
        t0 = time.perf_counter()
        try:
            item = next(it)
        except StopIteration:
            return
        finally:
            timings[key] += time.perf_counter() - t0
        yield item
