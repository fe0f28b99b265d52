"""Everyday degradations at five levels: the one definition the robustness evaluation, the Detect page's
"re-test after re-compression" and the training augmentation share.

Modelled on DeeperForensics-1.0's perturbation protocol (seven distortions at five rising levels): JPEG
re-compression, downscale-then-upscale, Gaussian blur, Gaussian noise, brightness/contrast change and colour
saturation for images and frames; H.264 re-encoding at rising CRF for videos (``reencode_video``, ffmpeg from the
``imageio-ffmpeg`` wheel or the system). Level 0 is the untouched input. Every function is pure: RGB uint8 in,
RGB uint8 out, the same shape; the noise is seeded.

    out = perturb.apply(image, "jpeg", 3)          # JPEG quality 50
    perturb.describe("blur", 3)                    # 'Gaussian blur sigma 2.0 px (per 720 px)'
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

LEVELS = (1, 2, 3, 4, 5)
# per perturbation: the parameter at levels 1..5 (level 0 = untouched)
PARAMS: dict[str, tuple[float, ...]] = {
    "jpeg": (90, 70, 50, 30, 15),  # JPEG quality
    "resize": (0.75, 0.5, 0.35, 0.25, 0.18),  # downscale factor, then back up to the original size
    "blur": (0.5, 1.0, 2.0, 3.0, 4.0),  # Gaussian sigma in pixels per 720 px of the short side
    "noise": (2.0, 4.0, 8.0, 12.0, 20.0),  # Gaussian noise standard deviation in grey levels (0-255)
    "brightness_contrast": (0.9, 0.8, 0.65, 0.5, 0.35),  # contrast factor; brightness shifts by (1 - f) * 60
    "saturation": (0.8, 0.6, 0.4, 0.2, 0.0),  # chroma factor (0 = grey)
    "h264": (23, 28, 32, 36, 40),  # H.264 CRF (videos only)
}
IMAGE_PERTURBATIONS = ("jpeg", "resize", "blur", "noise", "brightness_contrast", "saturation")
VIDEO_ONLY = ("h264",)
ALL = IMAGE_PERTURBATIONS + VIDEO_ONLY
_UNITS = {"jpeg": "JPEG quality {:g}", "resize": "downscale to {:g}x and back", "blur": "Gaussian blur sigma {:g} px "
          "(per 720 px)", "noise": "Gaussian noise sd {:g}", "brightness_contrast": "contrast x{:g}, brightness "
          "shifted", "saturation": "saturation x{:g}", "h264": "H.264 re-encode CRF {:g}"}


class PerturbError(ValueError):
    """Unknown perturbation or level; the message is one line."""


def check(name: str, level: int) -> float:
    """The parameter of ``name`` at ``level`` (1-5), or PerturbError."""
    if name not in PARAMS:
        raise PerturbError(f"unknown perturbation {name!r}; choose from {', '.join(ALL)}")
    if int(level) != level or not 1 <= level <= 5:
        raise PerturbError(f"perturbation level must be 1-5 (got {level!r})")
    return PARAMS[name][int(level) - 1]


def describe(name: str, level: int) -> str:
    return _UNITS[name].format(check(name, level))


def parse_levels(text: str) -> list[int]:
    """``"1-5"``, ``"3"`` or ``"1,3,5"`` -> sorted levels; PerturbError on anything else."""
    out: set[int] = set()
    try:
        for part in str(text).split(","):
            a, _, b = part.strip().partition("-")
            lo, hi = int(a), int(b or a)
            out.update(range(lo, hi + 1))
    except ValueError:
        raise PerturbError(f"levels must look like 1-5, 3 or 1,3,5 (got {text!r})") from None
    if not out or min(out) < 1 or max(out) > 5:
        raise PerturbError(f"levels must lie in 1-5 (got {text!r})")
    return sorted(out)


def jpeg(img: np.ndarray, quality: float) -> np.ndarray:
    import cv2

    ok, buf = cv2.imencode(".jpg", img[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise PerturbError("JPEG encoding failed")
    return np.ascontiguousarray(cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1])


def resize(img: np.ndarray, factor: float) -> np.ndarray:
    import cv2

    h, w = img.shape[:2]
    small = cv2.resize(img, (max(1, round(w * factor)), max(1, round(h * factor))), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def blur(img: np.ndarray, sigma_per_720: float) -> np.ndarray:
    import cv2

    sigma = max(0.3, sigma_per_720 * min(img.shape[:2]) / 720.0)
    return cv2.GaussianBlur(img, (0, 0), sigmaX=sigma, sigmaY=sigma)


def noise(img: np.ndarray, sd: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(img.astype(np.float32) + rng.normal(0.0, sd, img.shape), 0, 255).astype(np.uint8)


def brightness_contrast(img: np.ndarray, factor: float) -> np.ndarray:
    x = img.astype(np.float32)
    mean = x.mean()
    return np.clip((x - mean) * factor + mean + (1.0 - factor) * 60.0, 0, 255).astype(np.uint8)


def saturation(img: np.ndarray, factor: float) -> np.ndarray:
    x = img.astype(np.float32)
    grey = x @ np.array([0.299, 0.587, 0.114], np.float32)
    return np.clip(grey[..., None] + (x - grey[..., None]) * factor, 0, 255).astype(np.uint8)


_FUNCS = {"jpeg": jpeg, "resize": resize, "blur": blur, "brightness_contrast": brightness_contrast,
          "saturation": saturation}


def apply(img: np.ndarray, name: str, level: int, seed: int = 0) -> np.ndarray:
    """``img`` (H x W x 3 RGB uint8) under perturbation ``name`` at ``level`` (0: a copy of ``img``)."""
    if level == 0:
        return img.copy()
    p = check(name, level)
    if name in VIDEO_ONLY:
        raise PerturbError(f"{name} applies to videos (reencode_video), not to single images")
    img = np.ascontiguousarray(img, dtype=np.uint8)
    return noise(img, p, seed) if name == "noise" else _FUNCS[name](img, p)


def random_augment(img: np.ndarray, names: tuple[str, ...] | list[str], max_level: int, rng: np.random.Generator
                   ) -> np.ndarray:
    """One perturbation drawn from ``names`` at a level drawn from 1..``max_level`` (training augmentation)."""
    name = names[int(rng.integers(len(names)))]
    return apply(img, name, int(rng.integers(1, max_level + 1)), seed=int(rng.integers(2**31)))


def image_bytes(img: np.ndarray, fmt: str = ".png") -> bytes:
    """Encode an RGB uint8 array (lossless PNG by default, so a perturbation is the only change)."""
    import cv2

    ok, buf = cv2.imencode(fmt, img[..., ::-1])
    if not ok:
        raise PerturbError(f"could not encode image as {fmt}")
    return buf.tobytes()


def ffmpeg_exe() -> str:
    """ffmpeg from the imageio-ffmpeg wheel, else the system's; PerturbError when neither exists."""
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError):
        exe = shutil.which("ffmpeg")
        if exe:
            return exe
    raise PerturbError("H.264 re-encoding needs ffmpeg: pip install imageio-ffmpeg, or install ffmpeg")


def reencode_video(src: str | os.PathLike, level: int, out_dir: str | os.PathLike | None = None,
                   timeout_s: float = 600.0) -> Path:
    """``src`` re-encoded with libx264 at the level's CRF (audio dropped) into a new .mp4 in ``out_dir`` (default a
    temporary folder); the caller removes it. PerturbError with ffmpeg's last line when encoding fails."""
    crf = check("h264", level)
    out_dir = Path(out_dir or tempfile.mkdtemp(prefix="deepfake-h264-"))
    out = out_dir / f"{Path(src).stem}.crf{int(crf)}.mp4"
    cmd = [ffmpeg_exe(), "-nostdin", "-y", "-loglevel", "error", "-i", str(src), "-an", "-c:v", "libx264",
           "-preset", "veryfast", "-crf", str(int(crf)),
           # libx264's yuv420p needs even sides: an odd-sized video loses its last row/column
           "-vf", "scale=trunc(iw/2)*2:trunc(ih/2)*2", "-pix_fmt", "yuv420p", str(out)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        out.unlink(missing_ok=True)
        raise PerturbError(f"H.264 re-encode of {Path(src).name} took longer than {timeout_s:.0f} s") from None
    if proc.returncode != 0 or not out.is_file():
        out.unlink(missing_ok=True)
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise PerturbError(f"H.264 re-encode of {Path(src).name} failed: {last}")
    return out
