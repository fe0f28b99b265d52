"""Untrusted files are decoded in a child process with a memory limit and a wall-time limit, so that a malicious
or broken file costs one clear error, never the server.

    image = isolation.load_image(path_or_bytes)              # decoded in a child
    prov = isolation.read_provenance(path, mime, kind, trust, lim)  # C2PA credentials, read in a child
    with isolation.video_frames(path, n=32, max_side=1920) as frames:  # frames stream from the child, one at a time
        for index, rgb in frames: ...
        frames.info                                          # VideoInfo, final after the loop

The child (``python -m model.isolation``) imports only OpenCV, NumPy and Pillow (and c2pa-python at its first
provenance request), then limits its own address
space (RLIMIT_AS: its base after those imports + ``Limits.decode_mem_mb``), forbids core dumps and file writes,
and exits when its parent goes (EOF on its stdin). It stays alive between files (no start-up cost per file) and is replaced after a
crash, a timeout, a memory error or 200 files. The parent waits at most ``Limits.decode_timeout_s`` in total for
one file, then kills it. With ``Limits.isolate`` off the same code runs in-process (trusted files only).

Protocol on the child's stdin/stdout: one JSON line per message, raw uint8 pixels after "frame"/"image"
headers (and raw file bytes after an "image" request that carries ``size``).
"""
from __future__ import annotations

import atexit
import json
import os
import select
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

from model import limits as limits_mod
from model.media import MediaError

REPO_ROOT = Path(__file__).resolve().parent.parent
MAX_USES = 200  # files per child before it is replaced (bounds fragmentation)
IDLE_S = 600.0  # a child exits after this long without a request; the parent stops reusing it earlier
START_TIMEOUT_S = 60.0
FFMPEG_THREADS = 2
_MAX_LINE = 1 << 16


class DecoderGone(Exception):
    """The child died, timed out or broke the protocol (internal; surfaces as MediaError)."""


# =========================================================================== parent side
class _Worker:
    def __init__(self, mem_mb: int):
        env = dict(os.environ)
        env.update(MALLOC_ARENA_MAX="2", OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", OPENCV_LOG_LEVEL="ERROR",
                   PYTHONPATH=os.pathsep.join([str(REPO_ROOT)] + [p for p in [env.get("PYTHONPATH")] if p]))
        self.mem_mb = int(mem_mb)
        self.uses = 0
        self.last_used = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "model.isolation", "--mem-mb", str(self.mem_mb), "--idle-s", str(IDLE_S)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=str(REPO_ROOT), env=env,
            close_fds=True)
        self.fd = self.proc.stdout.fileno()
        self.buf = bytearray()
        self.budget = START_TIMEOUT_S
        try:
            ready = self.message()
            if ready.get("t") != "ready":
                raise DecoderGone("the decoder process did not start")
        except BaseException:
            self.kill()
            raise
        self.limit_mb = ready.get("limit_mb")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            pass
        for f in (self.proc.stdin, self.proc.stdout):
            try:
                f.close()
            except OSError:
                pass

    def death_reason(self) -> str:
        try:
            rc = self.proc.wait(2)
        except subprocess.TimeoutExpired:
            return "the decoder stopped answering"
        if rc is not None and rc < 0:
            import signal

            try:
                name = signal.Signals(-rc).name
            except ValueError:
                name = str(-rc)
            return (f"the decoder crashed on this file ({name}; over its {self.mem_mb} MB memory limit, or a "
                    f"corrupt file)")
        return f"the decoder stopped on this file (exit status {rc}; over its {self.mem_mb} MB memory limit?)"

    # ---- I/O with a wall-time budget (only the time spent waiting for the child counts)
    def send(self, header: dict, payload: bytes | memoryview | None = None) -> None:
        try:
            self.proc.stdin.write(json.dumps(header).encode() + b"\n")
            if payload is not None:
                self.proc.stdin.write(payload)
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError, ValueError):
            raise DecoderGone(self.death_reason()) from None

    def _fill(self) -> None:
        t0 = time.monotonic()
        ready, _, _ = select.select([self.fd], [], [], max(0.0, self.budget))
        self.budget -= time.monotonic() - t0
        if not ready:
            raise TimeoutError
        chunk = os.read(self.fd, 1 << 16)
        if not chunk:
            raise DecoderGone(self.death_reason())
        self.buf += chunk

    def message(self) -> dict:
        while True:
            nl = self.buf.find(b"\n")
            if nl >= 0:
                line = bytes(self.buf[:nl])
                del self.buf[:nl + 1]
                try:
                    msg = json.loads(line)
                except ValueError:
                    raise DecoderGone("the decoder sent garbage") from None
                if not isinstance(msg, dict):
                    raise DecoderGone("the decoder sent garbage")
                return msg
            if len(self.buf) > _MAX_LINE:
                raise DecoderGone("the decoder sent garbage")
            self._fill()

    def array(self, shape, max_side: int | None = None, max_pixels: int | None = None) -> np.ndarray:
        """Read an array the child announced, after checking its size against what was asked for."""
        try:
            h, w, c = (int(v) for v in shape)
        except (TypeError, ValueError):
            raise DecoderGone("the decoder sent garbage") from None
        if not (0 < h and 0 < w and c == 3 and (max_side is None or max(h, w) <= max_side)
                and (max_pixels is None or h * w <= max_pixels)):
            raise DecoderGone(f"the decoder sent an unexpected {w}x{h}x{c} array")
        arr = np.empty((h, w, c), np.uint8)
        view = memoryview(arr).cast("B")
        n = min(len(self.buf), len(view))
        view[:n] = self.buf[:n]
        del self.buf[:n]
        pos = n
        while pos < len(view):
            t0 = time.monotonic()
            ready, _, _ = select.select([self.fd], [], [], max(0.0, self.budget))
            self.budget -= time.monotonic() - t0
            if not ready:
                raise TimeoutError
            got = os.readv(self.fd, [view[pos:]])
            if got == 0:
                raise DecoderGone(self.death_reason())
            pos += got
        return arr


class _Pool:
    def __init__(self):
        self._lock = threading.Lock()
        self._idle: list[_Worker] = []
        self.started = 0  # children started by this process (for tests and benchmarks)

    def get(self, lim: limits_mod.Limits) -> _Worker:
        now = time.monotonic()
        with self._lock:
            while self._idle:
                w = self._idle.pop()
                if w.alive() and w.mem_mb == lim.decode_mem_mb and now - w.last_used < IDLE_S / 2:
                    return w
                w.kill()
        try:
            w = _Worker(lim.decode_mem_mb)
        except TimeoutError:
            raise MediaError("the decoder process did not start in time (server overloaded?)") from None
        except DecoderGone as e:
            raise MediaError(f"could not start the decoder process: {e}") from None
        with self._lock:
            self.started += 1
        return w

    def put(self, w: _Worker, lim: limits_mod.Limits) -> None:
        w.uses += 1
        w.last_used = time.monotonic()
        w.buf.clear()
        with self._lock:
            if w.alive() and w.uses < MAX_USES and len(self._idle) < lim.max_analyses:
                self._idle.append(w)
                return
        w.kill()

    def idle_pids(self) -> list[int]:
        with self._lock:
            return [w.pid for w in self._idle if w.alive()]

    def shutdown(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for w in idle:
            w.kill()


POOL = _Pool()
atexit.register(POOL.shutdown)


def _timeout_error(lim: limits_mod.Limits) -> MediaError:
    return MediaError(f"decoding took longer than the {lim.decode_timeout_s:g} s limit (stopped)")


def load_image(source: str | os.PathLike | bytes, lim: limits_mod.Limits | None = None) -> np.ndarray:
    """Decode an image (path or bytes) -> HxWx3 uint8 RGB (see ``media.load_image``), in a child process unless
    isolation is off. Raises MediaError with a one-line reason for anything wrong with the file or decoding."""
    from model import media

    lim = lim or limits_mod.current()
    if not lim.isolate:
        return media.load_image(source, max_pixels=lim.max_image_pixels)
    req = {"op": "image", "max_pixels": lim.max_image_pixels}
    payload = None
    if isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) == 0:
            raise MediaError("empty file (0 bytes)")
        if len(source) > media.MAX_FILE_BYTES:
            raise MediaError(f"file too large ({len(source) / 1e9:.1f} GB)")
        req["size"] = len(source)
        payload = memoryview(source)
    else:
        req["path"] = str(media.check_file(source).resolve())
    w = POOL.get(lim)
    ok = False
    try:
        w.budget = lim.decode_timeout_s
        w.send(req, payload)
        msg = w.message()
        if msg.get("t") == "error":
            ok = not msg.get("fatal")
            raise MediaError(str(msg.get("message", "could not decode the image")).splitlines()[0])
        if msg.get("t") != "image":
            raise DecoderGone("the decoder sent garbage")
        img = w.array(msg.get("shape"), max_pixels=lim.max_image_pixels)
        ok = not msg.get("retire")
        return img
    except TimeoutError:
        raise _timeout_error(lim) from None
    except DecoderGone as e:
        raise MediaError(str(e)) from None
    finally:
        if ok:
            POOL.put(w, lim)
        else:
            w.kill()


def read_provenance(source, mime: str | None, kind: str, trust: str | None, lim: limits_mod.Limits):
    """``provenance.read_local`` in a decoder child (memory limit; at most ``provenance.TIMEOUT_S`` seconds, or the
    decode limit when shorter), in this process when isolation is off. Never raises: a crash, a timeout or a
    garbled reply is a Provenance in state "error" with one line."""
    from model import media, provenance

    is_bytes = isinstance(source, (bytes, bytearray, memoryview))
    if not lim.isolate:
        return provenance.read_local(bytes(source) if is_bytes else None, None if is_bytes else str(source), mime,
                                     kind, trust)
    req = {"op": "provenance", "mime": mime, "kind": kind, "trust": trust}
    payload = None
    if is_bytes:
        req["size"] = len(source)
        payload = memoryview(source)
    else:
        req["path"] = str(media.check_file(source).resolve())
    limit_s = min(lim.decode_timeout_s, provenance.TIMEOUT_S)
    try:
        w = POOL.get(lim)
    except MediaError as e:
        return provenance.failed(str(e))
    ok = False
    try:
        w.budget = limit_s
        w.send(req, payload)
        msg = w.message()
        if msg.get("t") == "error":
            ok = not msg.get("fatal")
            return provenance.failed(str(msg.get("message", "the reader failed")))
        if msg.get("t") != "provenance":
            raise DecoderGone("the decoder sent garbage")
        ok = not msg.get("retire")
        return provenance.Provenance.from_dict(msg.get("data"))
    except TimeoutError:
        return provenance.failed(f"reading took longer than the {limit_s:g} s limit (stopped)")
    except DecoderGone as e:
        return provenance.failed(str(e))
    finally:
        if ok:
            POOL.put(w, lim)
        else:
            w.kill()


_INFO_FIELDS = ("frame_count", "fps", "width", "height", "rotation", "sequential", "truncated", "analysed_s")


def _video_info(msg: dict):
    from model import video

    try:
        return video.VideoInfo(**{k: msg[k] for k in _INFO_FIELDS})
    except (KeyError, TypeError):
        raise MediaError("the decoder sent garbage") from None


class RemoteFrames:
    """Frames streamed from a decoder child; same interface as ``video.FrameSampler``."""

    def __init__(self, path, n: int, max_duration_s: float | None, max_frames: int, max_side: int | None,
                 lim: limits_mod.Limits):
        from model import media

        self.lim = lim
        self.max_side = max_side
        self._done = False
        self._worker: _Worker | None = None
        req = {"op": "video", "path": str(media.check_file(path).resolve()), "n": int(n),
               "max_duration_s": max_duration_s, "max_frames": int(max_frames), "max_side": max_side,
               "max_frame": list(lim.max_frame), "threads": FFMPEG_THREADS}
        self._worker = POOL.get(lim)
        try:
            self._worker.budget = lim.decode_timeout_s
            self._worker.send(req)
            msg = self._expect()
            if msg.get("t") != "info":
                raise DecoderGone("the decoder sent garbage")
            self.info = _video_info(msg)
            self.planned = int(msg.get("planned", n))
        except BaseException:
            self.close()
            raise

    def _expect(self) -> dict:
        try:
            msg = self._worker.message()
        except TimeoutError:
            self.close()
            raise _timeout_error(self.lim) from None
        except DecoderGone as e:
            self.close()
            raise MediaError(str(e)) from None
        except KeyError:
            self.close()
            raise MediaError("the decoder sent garbage") from None
        if msg.get("t") == "error":
            self._done = not msg.get("fatal")
            self.close()
            raise MediaError(str(msg.get("message", "could not decode the video")).splitlines()[0])
        return msg

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __iter__(self):
        try:
            while True:
                msg = self._expect()
                if msg.get("t") == "frame":
                    try:
                        arr = self._worker.array(msg.get("shape"), max_side=self.max_side or max(self.lim.max_frame))
                    except TimeoutError:
                        raise _timeout_error(self.lim) from None
                    except DecoderGone as e:
                        raise MediaError(str(e)) from None
                    yield int(msg.get("index", -1)), arr
                elif msg.get("t") == "end":
                    self.info = _video_info(msg)
                    self._done = not msg.get("retire")
                    return
                else:
                    raise MediaError("the decoder sent garbage")
        finally:
            self.close()

    def close(self) -> None:
        w, self._worker = self._worker, None
        if w is None:
            return
        if self._done:  # the child finished its reply: reusable
            POOL.put(w, self.lim)
        else:  # stopped mid-stream, crashed or timed out: never reuse
            w.kill()


def video_frames(path, n: int = 32, max_duration_s: float | None = None, max_frames: int = 300,
                 max_side: int | None = None, lim: limits_mod.Limits | None = None):
    """Sampled frames of a video, each downscaled to ``max_side`` right after decoding (see
    ``video.FrameSampler``), decoded in a child process unless isolation is off. ``max_duration_s`` defaults to
    ``lim.max_video_s``. Raises MediaError (too large, unreadable, over the memory or time limit...)."""
    from model import video

    lim = lim or limits_mod.current()
    if max_duration_s is None:
        max_duration_s = lim.max_video_s
    if not lim.isolate:
        return video.FrameSampler(path, n=n, max_duration_s=max_duration_s, max_frames=max_frames,
                                  max_side=max_side, max_frame=lim.max_frame, threads=FFMPEG_THREADS)
    return RemoteFrames(path, n, max_duration_s, max_frames, max_side, lim)


# =========================================================================== child side
def _vm_bytes(field: str = "VmSize") -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise OSError(f"no {field}")


def _child(mem_mb: int, idle_s: float) -> int:
    import cv2  # noqa: F401  (loaded before the limit is measured)
    import PIL.Image  # noqa: F401

    from model import media, video

    cv2.setNumThreads(1)
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # stray prints from libraries must not corrupt the protocol
    inp = sys.stdin.buffer
    # No PR_SET_PDEATHSIG: it fires when the *thread* that started the child ends (a Streamlit script run),
    # not the process. A child whose parent died sees EOF on stdin (idle) or EPIPE on stdout (busy) and exits.
    info = {"t": "ready", "limit_mb": None}
    limit = None
    try:
        import resource

        limit = _vm_bytes() + mem_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))
        info["limit_mb"] = limit // (1024 * 1024)
    except (ImportError, OSError, ValueError) as e:  # not Linux: no limit, say so on stderr
        print(f"decoder: memory limit not set: {e}", file=sys.stderr)

    def send(header: dict, arr: np.ndarray | None = None) -> None:
        out.write(json.dumps(header).encode() + b"\n")
        if arr is not None:
            out.write(memoryview(np.ascontiguousarray(arr)).cast("B"))
        out.flush()

    def vinfo(i) -> dict:
        return {k: getattr(i, k) for k in _INFO_FIELDS}

    def near_limit() -> bool:  # the address space came within 32 MB of the limit at some point
        try:
            return limit is not None and _vm_bytes("VmPeak") > limit - 32 * 1024 * 1024
        except OSError:
            return False

    send(info)
    while True:
        ready, _, _ = select.select([inp], [], [], idle_s)
        if not ready:
            return 0
        line = inp.readline(_MAX_LINE)
        if not line:
            return 0
        try:
            req = json.loads(line)
            payload = inp.read(int(req["size"])) if req.get("size") else None
            if req["op"] == "image":
                img = media.load_image(payload if payload is not None else req["path"], max_pixels=req["max_pixels"])
                send({"t": "image", "shape": list(img.shape), "retire": near_limit()}, img)
                del img
            elif req["op"] == "video":
                sampler = video.FrameSampler(req["path"], n=req["n"], max_duration_s=req["max_duration_s"],
                                             max_frames=req["max_frames"], max_side=req["max_side"],
                                             max_frame=tuple(req["max_frame"]), threads=req["threads"])
                send({"t": "info", "planned": sampler.planned, **vinfo(sampler.info)})
                for idx, frame in sampler:
                    send({"t": "frame", "index": idx, "shape": list(frame.shape)}, frame)
                send({"t": "end", "retire": near_limit(), **vinfo(sampler.info)})
            elif req["op"] == "provenance":
                from model import provenance

                prov = provenance.read_local(payload, req.get("path"), req.get("mime"), req.get("kind", ""),
                                             req.get("trust"))
                send({"t": "provenance", "data": prov.to_dict(), "retire": near_limit()})
            else:
                send({"t": "error", "message": f"unknown request {req['op']!r}"})
            if near_limit():  # a later file must not inherit a fragmented, nearly full address space
                return 0
        except MediaError as e:
            msg = str(e).splitlines()[0] if str(e) else "unreadable file"
            if near_limit():  # FFmpeg reports failed allocations as undecodable frames
                send({"t": "error", "fatal": True, "message": f"could not decode the file within the decoder's "
                                                              f"{mem_mb} MB memory limit ({msg})"})
                return 3
            send({"t": "error", "message": msg})
        except MemoryError:
            send({"t": "error", "fatal": True,
                  "message": f"decoding this file needs more memory than the {mem_mb} MB limit"})
            return 3
        except BrokenPipeError:
            return 0
        except Exception as e:  # anything else a hostile file provokes: one line, and this child is replaced
            kind = "corrupt data" if type(e).__module__ == "cv2" else type(e).__name__
            send({"t": "error", "fatal": True, "message": f"could not decode the file ({kind})"})
            return 4


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(description="decoder child process (internal)")
    ap.add_argument("--mem-mb", type=int, required=True)
    ap.add_argument("--idle-s", type=float, default=IDLE_S)
    a = ap.parse_args(argv)
    return _child(a.mem_mb, a.idle_s)


if __name__ == "__main__":
    sys.exit(main())
