"""Safe loading of user media: images (EXIF, greyscale, RGBA, 16-bit, decompression bombs) and
video kind detection. Every failure raises :class:`MediaError` with a one-line, user-facing reason."""
from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif"}
VIDEO_EXTS = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv"}
MAX_PIXELS = 40_000_000  # 40 MP: larger images are refused before decoding (decompression bombs)
MAX_FILE_BYTES = 2 * 1024**3


class MediaError(ValueError):
    """A user-facing problem with an input file (message is one line, no traceback needed)."""


def kind_of(path: str | os.PathLike) -> str:
    """'image', 'video' or raise MediaError for an unsupported extension."""
    ext = Path(path).suffix.lower()
    if ext in IMAGE_EXTS:
        return "image"
    if ext in VIDEO_EXTS:
        return "video"
    raise MediaError(f"unsupported file type {ext or '(no extension)'}; images: "
                     f"{', '.join(sorted(IMAGE_EXTS))}; videos: {', '.join(sorted(VIDEO_EXTS))}")


def check_file(path: str | os.PathLike) -> Path:
    p = Path(path)
    if not p.exists():
        raise MediaError(f"file not found: {p}")
    if not p.is_file():
        raise MediaError(f"not a regular file: {p}")
    size = p.stat().st_size
    if size == 0:
        raise MediaError("empty file (0 bytes)")
    if size > MAX_FILE_BYTES:
        raise MediaError(f"file too large ({size / 1e9:.1f} GB; limit {MAX_FILE_BYTES / 1e9:.0f} GB)")
    return p


def to_rgb8(img: Image.Image) -> np.ndarray:
    """Any PIL image (L, LA, P, RGBA, I;16, I, F, CMYK...) -> HxWx3 uint8 RGB."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        a = np.asarray(img, dtype=np.float64)
        if img.mode.startswith("I;16"):
            a = a / 257.0
        elif a.max() > 255:
            lo, hi = float(a.min()), float(a.max())
            a = (a - lo) * (255.0 / max(hi - lo, 1e-9))
        g = np.clip(a, 0, 255).round().astype(np.uint8)
        return np.repeat(g[..., None], 3, axis=2)
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(bg, rgba).convert("RGB"))
    return np.asarray(img.convert("RGB"))


def load_image(source: str | os.PathLike | bytes, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Decode an image file or bytes into HxWx3 uint8 RGB, EXIF orientation applied."""
    if isinstance(source, (bytes, bytearray)):
        if not source:
            raise MediaError("empty file (0 bytes)")
        fp = io.BytesIO(source)
    else:
        fp = check_file(source)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(fp) as img:
                w, h = img.size
                if w * h > max_pixels:
                    raise MediaError(f"image too large: {w}x{h} = {w * h / 1e6:.0f} MP (limit {max_pixels / 1e6:.0f} MP)")
                img.load()
                img = ImageOps.exif_transpose(img) or img
                arr = to_rgb8(img)
    except MediaError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise MediaError(f"image too large (decompression bomb protection): {e}") from None
    except UnidentifiedImageError:
        raise MediaError("not a readable image (unknown or corrupt format)") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise MediaError(f"corrupt or truncated image: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    if arr.ndim != 3 or arr.shape[0] < 8 or arr.shape[1] < 8:
        raise MediaError(f"image too small: {arr.shape[1]}x{arr.shape[0]}")
    return np.ascontiguousarray(arr)
