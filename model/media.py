"""Safe loading of user media: images (EXIF, greyscale, RGBA, 16-bit, decompression bombs) and file typing
from content (magic bytes), not the name. Every failure raises :class:`MediaError` with a one-line,
user-facing reason."""
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
PIL_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "TIFF", "GIF")  # no exotic decoders for untrusted input


class MediaError(ValueError):
    """A user-facing problem with an input file (message is one line, no traceback needed)."""


def kind_by_extension(name: str | os.PathLike) -> str | None:
    """'image' or 'video' from the file name's extension; None when it is neither."""
    ext = Path(str(name)).suffix.lower()
    return "image" if ext in IMAGE_EXTS else "video" if ext in VIDEO_EXTS else None


def kind_of(path: str | os.PathLike) -> str:
    """'image', 'video' or raise MediaError for an unsupported extension (name only; see ``content_kind``)."""
    kind = kind_by_extension(path)
    if kind is None:
        ext = Path(str(path)).suffix.lower()
        raise MediaError(f"unsupported file type {ext or '(no extension)'}; images: "
                         f"{', '.join(sorted(IMAGE_EXTS))}; videos: {', '.join(sorted(VIDEO_EXTS))}")
    return kind


# (offset, signature, kind, format): the formats we accept, recognised from their first bytes
_MAGIC = (
    (0, b"\xff\xd8\xff", "image", "JPEG"),
    (0, b"\x89PNG\r\n\x1a\n", "image", "PNG"),
    (0, b"GIF87a", "image", "GIF"),
    (0, b"GIF89a", "image", "GIF"),
    (0, b"BM", "image", "BMP"),
    (0, b"II*\x00", "image", "TIFF"),
    (0, b"MM\x00*", "image", "TIFF"),
    (0, b"\x1aE\xdf\xa3", "video", "Matroska/WebM"),
    (0, b"0&\xb2u\x8ef\xcf\x11", "video", "ASF/WMV"),
    (0, b"FLV\x01", "video", "FLV"),
    (0, b"\x00\x00\x01\xba", "video", "MPEG-PS"),
    (0, b"\x00\x00\x01\xb3", "video", "MPEG"),
)
_ISO_BOXES = (b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip", b"pnot")  # MP4 / MOV / M4V / 3GP
SNIFF_BYTES = 64


def sniff(head: bytes) -> tuple[str, str] | None:
    """(kind, format) of a file from its first bytes, or None when it is no format we accept."""
    h = bytes(head[:SNIFF_BYTES])
    if h[:4] == b"RIFF" and h[8:12] == b"WEBP":
        return "image", "WebP"
    if h[:4] == b"RIFF" and h[8:12] == b"AVI ":
        return "video", "AVI"
    if len(h) >= 8 and h[4:8] in _ISO_BOXES:
        if h[4:8] == b"ftyp" and h[8:12] in (b"avif", b"avis", b"heic", b"heix", b"mif1", b"msf1"):
            return None  # HEIF/AVIF stills: an ISO box container, but not a video we read
        return "video", "MP4/MOV"
    if len(h) >= 189 and h[0] == 0x47 and h[188] == 0x47:
        return "video", "MPEG-TS"
    for off, sig, kind, fmt in _MAGIC:
        if h[off:off + len(sig)] == sig:
            return kind, fmt
    return None


def content_kind(source: str | os.PathLike | bytes, name: str | None = None) -> str:
    """'image' or 'video' from the content's magic bytes, never the name. Raises MediaError for a missing,
    empty or oversized file and for content that is no image or video format we accept; the file name (its
    extension) only chooses the wording of that message."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) == 0:
            raise MediaError("empty file (0 bytes)")
        if len(source) > MAX_FILE_BYTES:
            raise MediaError(f"file too large ({len(source) / 1e9:.1f} GB; limit {MAX_FILE_BYTES / 1e9:.0f} GB)")
        head = bytes(source[:256])
    else:
        p = check_file(source)
        with open(p, "rb") as f:
            head = f.read(256)
        name = name or str(p)
    found = sniff(head)
    if found:
        return found[0]
    by_name = kind_by_extension(name or "")
    if by_name == "image":
        raise MediaError("not a readable image (unknown or corrupt format)")
    if by_name == "video":
        raise MediaError("not a readable video (unknown or corrupt container)")
    ext = Path(str(name or "")).suffix.lower()
    raise MediaError(f"unsupported file type {ext or '(no extension)'}: the content is no image or video format "
                     f"we read (images: JPEG, PNG, WebP, BMP, TIFF, GIF; videos: MP4/MOV, WebM/MKV, AVI, MPEG, "
                     f"WMV, FLV)")


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
    """Decode an image file or bytes (from memory, no temp file) into HxWx3 uint8 RGB, EXIF orientation applied.
    Formats are restricted to the ones ``sniff`` accepts."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        if not source:
            raise MediaError("empty file (0 bytes)")
        fp = io.BytesIO(source)
    else:
        fp = check_file(source)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(fp, formats=PIL_FORMATS) as img:
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
