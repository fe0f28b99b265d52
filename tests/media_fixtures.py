"""Small hostile or unusual media generated at test time with FFmpeg (imageio-ffmpeg's binary)."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest


def ffmpeg_exe() -> str:
    ff = pytest.importorskip("imageio_ffmpeg", reason="imageio-ffmpeg not installed (requirements-dev.txt)")
    return ff.get_ffmpeg_exe()


def ffmpeg(*args: str) -> None:
    subprocess.run([ffmpeg_exe(), "-y", "-loglevel", "error", *args], check=True, timeout=120)


def gray_h264(path: Path, size: str = "7680x4320", seconds: float = 0.4, fps: int = 5) -> Path:
    """A tiny H.264 file of huge frames (the issue's 8K 'bomb', shortened): ~100 KB that decode to 50 MB each."""
    ffmpeg("-f", "lavfi", "-i", f"color=c=gray:s={size}:d={seconds}:r={fps}", "-c:v", "libx264", "-preset",
           "ultrafast", "-crf", "40", str(path))
    return path


def live_webm(src: Path, path: Path) -> Path:
    """``src`` re-encoded to WebM as browsers record it (``-live 1``: no duration, no cues, no frame count)."""
    ffmpeg("-i", str(src), "-c:v", "libvpx", "-b:v", "400k", "-f", "webm", "-live", "1", str(path))
    return path


def testsrc(path: Path, size: str, seconds: float, fps: int = 10, codec: str = "libx264") -> Path:
    ffmpeg("-f", "lavfi", "-i", f"testsrc=s={size}:d={seconds}:r={fps}", "-c:v", codec, "-pix_fmt", "yuv420p",
           str(path))
    return path


def faststart(src: Path, path: Path) -> Path:
    """``src`` with its index (moov) moved to the front, so a cut-short copy still decodes its first frames."""
    ffmpeg("-i", str(src), "-c", "copy", "-movflags", "+faststart", str(path))
    return path
