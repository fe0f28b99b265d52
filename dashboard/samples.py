"""Bundled samples the project makes itself from public-domain images shipped in scikit-image's wheel
(``skimage.data``): nothing from any dataset. Generated once into a private cache folder (0700, this user's;
``settings.cache_root()``), each file written under a unique temporary name and renamed into place, so
concurrent sessions never see a half-written sample and no other local user can plant one."""
from __future__ import annotations

import os
import tempfile
import threading
from pathlib import Path

import cv2
import numpy as np

SAMPLES = {
    "Astronaut (public-domain photo, real)": "astronaut.jpg",
    "Astronaut, self-blended (synthetic fake made by this project)": "astronaut_selfblend.jpg",
    "Astronaut, short video (synthetic, 4 s)": "astronaut_clip.mp4",
    "Cat (no human face)": "chelsea.jpg",
}


_DIRS: dict[Path, Path] = {}
_LOCK = threading.Lock()


def sample_dir() -> Path:
    """The private folder samples live in (checked once per process and cache root; see
    ``uploads.private_dir``: a folder another user could write to is not used)."""
    from dashboard.settings import cache_root
    from model.uploads import private_dir

    root = cache_root() / "samples"
    with _LOCK:
        d = _DIRS.get(root)
        if d is None or not d.is_dir():
            d = _DIRS[root] = private_dir(root)
        return d


def _write_jpg(path: Path, rgb: np.ndarray) -> None:
    from model.uploads import write_atomic

    ok, buf = cv2.imencode(".jpg", rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 92])
    if not ok:
        raise RuntimeError(f"could not encode {path.name}")
    write_atomic(path, buf.tobytes())


def _selfblend(img: np.ndarray) -> np.ndarray:
    """Apply the training pipeline's self-blending to the astronaut's face, at full resolution."""
    from model.faces import FaceExtractor
    from training.sbi import self_blend

    f = FaceExtractor(crop_size=256).detect(img)[0]
    x0, y0, x1, y1 = f.crop_box
    kps = np.array([f.keypoints[k] for k in ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")]) - (x0, y0)
    out = img.copy()
    region = out[max(0, y0):y1, max(0, x0):x1]
    fake, _ = self_blend(region, kps, np.random.default_rng(3))
    out[max(0, y0):y1, max(0, x0):x1] = fake
    return out


def _clip(path: Path, img: np.ndarray) -> None:
    h, w = 360, 640
    face = cv2.resize(img[0:330, 90:360], (200, 244))
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".mp4", dir=path.parent)  # unique, 0600
    os.close(fd)
    try:
        vw = cv2.VideoWriter(tmp, cv2.VideoWriter_fourcc(*"mp4v"), 10, (w, h))
        for i in range(40):
            f = np.full((h, w, 3), (70, 90, 110), np.uint8)
            x = 60 + i * 8
            f[60:304, x:x + 200] = face
            vw.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
        vw.release()
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def get_sample(name: str) -> Path:
    """Path of a bundled sample, generating it on first use."""
    from skimage import data

    fn = SAMPLES[name]
    p = sample_dir() / fn
    if p.is_file() and p.stat().st_size > 0:
        return p
    if fn == "astronaut.jpg":
        _write_jpg(p, data.astronaut())
    elif fn == "astronaut_selfblend.jpg":
        _write_jpg(p, _selfblend(data.astronaut()))
    elif fn == "astronaut_clip.mp4":
        _clip(p, data.astronaut())
    elif fn == "chelsea.jpg":
        _write_jpg(p, data.chelsea())
    return p
