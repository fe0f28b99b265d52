"""Uploaded bytes on disk, privately and briefly, and private cache folders.

Videos must be on disk for FFmpeg; images never are (they are decoded from memory). Each video upload gets a
fresh folder ``dfd_upload_<pid>-<start>_XXXX`` (mode 0700, file 0600, created exclusively, no symlink
followed) in the temp folder (``DEEPFAKE_UPLOAD_DIR`` to change it), removed in ``finally``. A process killed
mid-analysis cannot clean up, so folders whose owning process is gone (pid and start time no longer match) or
older than 6 hours are swept at the next start.
"""
from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import stat
import tempfile
import threading
import time
from pathlib import Path
from typing import Iterator

from model import media

PREFIX = "dfd_upload_"
MAX_AGE_S = 6 * 3600
log = logging.getLogger(__name__)
_swept = False
_sweep_lock = threading.Lock()


def upload_root() -> Path:
    return Path(os.environ.get("DEEPFAKE_UPLOAD_DIR") or tempfile.gettempdir())


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (/proc/PID/stat field 22); None when unknown."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2:].split()[19]


def _owner_tag(pid: int | None = None) -> str:
    pid = os.getpid() if pid is None else pid
    return f"{pid}-{_start_time(pid) or 0}"


def _owner_alive(tag: str) -> bool:
    m = re.fullmatch(r"(\d+)-(\d+)", tag)
    if not m:
        return False
    pid = int(m.group(1))
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, another user's
    start = _start_time(pid)
    return start is None or start == m.group(2) or m.group(2) == "0"


def sweep_stale(root: Path | None = None, max_age_s: float = MAX_AGE_S) -> list[Path]:
    """Remove upload folders (ours: same user, real folders) left by processes that are gone, or too old."""
    root = Path(root) if root else upload_root()
    removed = []
    me = _owner_tag()
    try:
        entries = list(root.glob(PREFIX + "*"))
    except OSError:
        return removed
    for d in entries:
        try:
            st = d.lstat()
        except OSError:
            continue
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
            continue
        m = re.match(re.escape(PREFIX) + r"(\d+-\d+)_", d.name)
        tag = m.group(1) if m else ""
        if tag == me:
            continue
        if not _owner_alive(tag) or time.time() - st.st_mtime > max_age_s:
            try:
                shutil.rmtree(d)
                removed.append(d)
            except OSError as e:
                log.warning("could not remove stale upload folder %s: %s", d, e)
    return removed


def sweep_stale_once() -> list[Path]:
    """``sweep_stale`` once per process (at start)."""
    global _swept
    with _sweep_lock:
        if _swept:
            return []
        _swept = True
    return sweep_stale()


def safe_suffix(name: str) -> str:
    ext = Path(str(name)).suffix.lower()
    return ext if ext in media.IMAGE_EXTS | media.VIDEO_EXTS else ".bin"


@contextlib.contextmanager
def spooled(data: bytes | bytearray | memoryview, name: str = "upload") -> Iterator[Path]:
    """Write ``data`` into a fresh private folder; yield the file's path; remove the folder afterwards."""
    sweep_stale_once()
    d = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{_owner_tag()}_", dir=upload_root()))  # mode 0700
    try:
        p = d / f"upload{safe_suffix(name)}"
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        yield p
    finally:
        try:
            shutil.rmtree(d)
        except OSError as e:
            log.warning("could not remove upload folder %s: %s", d, e)


def private_dir(path: Path) -> Path:
    """Create ``path`` (and parents) with mode 0700 and check that it is a real folder owned by us that no one
    else can write to; otherwise (another user planted it, or it cannot be made) use a fresh private temp
    folder instead. Returns the folder to use."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            path.mkdir(mode=0o700)
        except FileExistsError:
            pass
        st = path.lstat()
        if stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid() and not st.st_mode & 0o022:
            return path
        log.warning("%s is not a private folder of this user; using a temporary one", path)
    except OSError as e:
        log.warning("cannot use %s (%s); using a temporary folder", path, e)
    return Path(tempfile.mkdtemp(prefix="dfd_cache_"))


def write_atomic(path: Path, data: bytes) -> Path:
    """Write ``path`` through a unique temporary file in the same folder and an atomic rename: readers see the
    old file or the whole new one, and two writers racing both succeed."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path
