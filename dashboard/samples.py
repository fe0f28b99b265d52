"""Bundled samples the project makes itself from public-domain images shipped in scikit-image's wheel
(``skimage.data``): nothing from any dataset. Written once into a cache folder."""
from __future__ import annotations

import tempfile
from pathlib import Path

import cv2
import numpy as np

SAMPLES = {
    "Astronaut (public-domain photo, real)": "astronaut.jpg",
    "Astronaut, self-blended (synthetic fake made by this project)": "astronaut_selfblend.jpg",
    "Astronaut, short video (synthetic, 4 s)": "astronaut_clip.mp4",
    "Cat (no human face)": "chelsea.jpg",
}


def sample_dir() -> Path:
    d = Path(tempfile.gettempdir()) / "deepfake_detect_samples"
    d.mkdir(parents=True, exist_ok=True)
    return d


def _write_jpg(path: Path, rgb: np.ndarray) -> None:
    tmp = path.with_name(path.stem + ".tmp" + path.suffix)
    cv2.imwrite(str(tmp), rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 92])
    tmp.replace(path)


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
    tmp = path.with_name(path.stem + ".tmp.mp4")
    vw = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), 10, (w, h))
    for i in range(40):
        f = np.full((h, w, 3), (70, 90, 110), np.uint8)
        x = 60 + i * 8
        f[60:304, x:x + 200] = face
        vw.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    vw.release()
    tmp.replace(path)


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
