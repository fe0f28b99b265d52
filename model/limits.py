"""Resource limits for analysing untrusted media, and the process-wide analysis slots.

Frames are downscaled right after decoding to the face-crop contract's ``decode_max_side`` (model/crops.py), so
training and inference see the same pixels. Every limit has a default that fits a small public host (2 cores, <= 2.7 GB) and can be changed with an
environment variable (read at first use) or, for the command line, a flag (``configure`` overrides both):

    DEEPFAKE_MAX_FRAME         largest video frame accepted, WxH in either orientation (default 3840x2160);
                               a larger video is refused from its header, before a frame is decoded
    DEEPFAKE_MAX_VIDEO_S       seconds of video analysed (default 600); longer videos say "first 600 s analysed"
    DEEPFAKE_MAX_IMAGE_MP      largest image accepted, in megapixels (default 40), refused before decoding
    DEEPFAKE_DECODE_MEM_MB     memory a decoder process may use for one file, on top of its own ~300 MB of
                               address space (default 768; enforced with RLIMIT_AS)
    DEEPFAKE_DECODE_TIMEOUT_S  wall time the decoder may take for one file (default 120)
    DEEPFAKE_ISOLATE           1 (default): decode files in a child process; 0: in this process (trusted files)
    DEEPFAKE_MAX_ANALYSES      analyses running at once in this process (default 1, for a 2-core host);
                               further requests wait for a free slot and are told so
"""
from __future__ import annotations

import collections
import contextlib
import dataclasses
import math
import os
import re
import sys
import threading
from typing import Callable, Iterator

ENV = {
    "max_frame": "DEEPFAKE_MAX_FRAME",
    "max_video_s": "DEEPFAKE_MAX_VIDEO_S",
    "max_image_mp": "DEEPFAKE_MAX_IMAGE_MP",
    "decode_mem_mb": "DEEPFAKE_DECODE_MEM_MB",
    "decode_timeout_s": "DEEPFAKE_DECODE_TIMEOUT_S",
    "isolate": "DEEPFAKE_ISOLATE",
    "max_analyses": "DEEPFAKE_MAX_ANALYSES",
}


def parse_size(text: str) -> tuple[int, int]:
    """'3840x2160' -> (3840, 2160); raises ValueError with a readable message."""
    m = re.fullmatch(r"\s*(\d+)\s*[xX×]\s*(\d+)\s*", str(text))
    if not m or int(m.group(1)) < 16 or int(m.group(2)) < 16:
        raise ValueError(f"frame size must look like 3840x2160, got {text!r}")
    return int(m.group(1)), int(m.group(2))


@dataclasses.dataclass(frozen=True)
class Limits:
    max_frame: tuple[int, int] = (3840, 2160)
    max_video_s: float = 600.0
    max_image_mp: float = 40.0
    decode_mem_mb: int = 768
    decode_timeout_s: float = 120.0
    isolate: bool = True
    max_analyses: int = 1

    def __post_init__(self):
        for f in ("max_video_s", "max_image_mp", "decode_mem_mb", "decode_timeout_s",
                  "max_analyses"):
            if not getattr(self, f) > 0:
                raise ValueError(f"limit {f} must be positive, got {getattr(self, f)!r}")

    @property
    def max_image_pixels(self) -> int:
        return int(self.max_image_mp * 1_000_000)

    def frame_allowed(self, width: int, height: int) -> bool:
        """Either orientation: a 2160x3840 portrait video passes a 3840x2160 limit."""
        lo, hi = sorted(self.max_frame)
        return max(width, height) <= hi and min(width, height) <= lo

    def replace(self, **changes) -> "Limits":
        """A copy with the given fields changed; ``None`` values are ignored (unset command-line flags)."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    def describe(self) -> str:
        return (f"frames up to {self.max_frame[0]}x{self.max_frame[1]}, first {self.max_video_s:g} s of video, "
                f"images up to {self.max_image_mp:g} MP, decoding in "
                f"{'a child process' if self.isolate else 'this process'} with {self.decode_mem_mb} MB and "
                f"{self.decode_timeout_s:g} s per file, {self.max_analyses} analysis(es) at once")

    @classmethod
    def from_env(cls, environ=None) -> "Limits":
        """The defaults, changed by the ``DEEPFAKE_*`` variables that are set. A bad value raises ValueError with
        one line naming the variable and what it allows."""
        env = os.environ if environ is None else environ
        kw = {}
        for field, var in ENV.items():
            v = env.get(var)
            if v is None or not v.strip():
                continue
            cast, allowed = _CASTS[field]
            try:
                kw[field] = cast(v)
            except ValueError:
                raise ValueError(f"bad value for {var}: {v.strip()!r} (allowed: {allowed})") from None
        return cls(**kw)


def _positive(kind: type) -> Callable[[str], float]:
    def cast(text: str):
        x = kind(text.strip())
        if not (math.isfinite(x) and x > 0):
            raise ValueError(text)
        return x
    return cast


def _switch(text: str) -> bool:
    t = text.strip().lower()
    if t in ("1", "true", "yes", "on"):
        return True
    if t in ("0", "false", "no", "off"):
        return False
    raise ValueError(text)


# field -> (parser of the environment value, what is allowed, in words)
_CASTS: dict[str, tuple[Callable[[str], object], str]] = {
    "max_frame": (parse_size, "a frame size WxH such as 3840x2160, each side at least 16"),
    "max_video_s": (_positive(float), "a number of seconds above 0, e.g. 600"),
    "max_image_mp": (_positive(float), "a number of megapixels above 0, e.g. 40"),
    "decode_mem_mb": (_positive(int), "a whole number of MB above 0, e.g. 768"),
    "decode_timeout_s": (_positive(float), "a number of seconds above 0, e.g. 120"),
    "isolate": (_switch, "1 or 0 (also true/false, yes/no, on/off)"),
    "max_analyses": (_positive(int), "a whole number above 0, e.g. 1"),
}


_LOCK = threading.Lock()
_CURRENT: Limits | None = None


def current() -> Limits:
    """The process-wide limits: ``configure``'d ones, else read from the environment once."""
    global _CURRENT
    with _LOCK:
        if _CURRENT is None:
            _CURRENT = Limits.from_env()
            SLOTS.resize(_CURRENT.max_analyses)
        return _CURRENT


def configure(limits: Limits | None = None, **changes) -> Limits:
    """Set the process-wide limits (``limits``, else the current ones with ``changes`` applied)."""
    global _CURRENT
    new = limits if limits is not None else dataclasses.replace(current(), **changes)
    with _LOCK:
        _CURRENT = new
        SLOTS.resize(new.max_analyses)
    return new


class Slots:
    """A first-come-first-served counting semaphore that can tell a waiter its place in the queue."""

    def __init__(self, n: int = 1):
        self._n = max(1, int(n))
        self._busy = 0
        self._queue: collections.deque = collections.deque()
        self._cond = threading.Condition()

    @property
    def size(self) -> int:
        return self._n

    @property
    def busy(self) -> int:
        return self._busy

    @property
    def waiting(self) -> int:
        return len(self._queue)

    def resize(self, n: int) -> None:
        with self._cond:
            self._n = max(1, int(n))
            self._cond.notify_all()

    @contextlib.contextmanager
    def slot(self, on_wait: Callable[[int], None] | None = None, poll_s: float = 0.5) -> Iterator[None]:
        """Hold one slot for the ``with`` block. While waiting, ``on_wait(ahead)`` is called (outside the lock)
        with the number of analyses ahead of this one (running or queued), whenever it changes; if it raises (a
        browser session stopped), the request leaves the queue and the exception propagates."""
        ticket = object()
        with self._cond:
            self._queue.append(ticket)
        told = None
        try:
            while True:
                with self._cond:
                    idx = self._queue.index(ticket)
                    if idx == 0 and self._busy < self._n:
                        self._queue.popleft()
                        self._busy += 1
                        self._cond.notify_all()
                        break
                    ahead = idx + self._busy  # queued before this one + running
                    if on_wait is None or ahead == told:
                        self._cond.wait(poll_s)
                        continue
                told = ahead
                on_wait(ahead)
        except BaseException:
            with self._cond:
                if ticket in self._queue:
                    self._queue.remove(ticket)
                self._cond.notify_all()
            raise
        try:
            yield
        finally:
            with self._cond:
                self._busy -= 1
                self._cond.notify_all()


SLOTS = Slots(1)


@contextlib.contextmanager
def analysis_slot(on_wait: Callable[[int], None] | None = None) -> Iterator[None]:
    """Hold one of the process-wide analysis slots (``DEEPFAKE_MAX_ANALYSES``); on leaving, the memory the
    analysis freed is given back (``release_free_memory``) before the next one starts."""
    current()  # sizes SLOTS from the environment on first use
    with SLOTS.slot(on_wait):
        try:
            yield
        finally:
            release_free_memory()


def release_free_memory() -> bool:
    """Give memory freed by the C allocator back to the system (glibc ``malloc_trim``; all arenas). A server runs
    each session's analysis in its own thread, hence in its own malloc arena, and an arena does not reuse what
    another freed: without this, the peak grows by ~190 MB with 4 sessions (bench/load.py). Takes milliseconds;
    a no-op off glibc. Returns True when memory was released."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        return bool(ctypes.CDLL("libc.so.6").malloc_trim(0))
    except (OSError, AttributeError):
        return False
