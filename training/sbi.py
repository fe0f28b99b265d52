"""Self-blended images (Shiohara & Yamasaki, CVPR 2022), adapted to MTCNN's 5 keypoints.

A real face is blended into itself: a colour-, blur- and scale-jittered copy (the "source") is pasted onto
the original (the "target") through a deformed, blurred face mask. The result has blending boundaries and
colour mismatch -- the generic traces of face manipulation -- but no identity change, so a detector trained
on it learns artefacts instead of identities.

SBI builds its mask from 81 dlib landmarks; with 5 keypoints we extrapolate a face hull: forehead above the
eyes, cheeks outside them, chin below the mouth.
"""
from __future__ import annotations

import cv2
import numpy as np


def face_hull(kps: np.ndarray) -> np.ndarray:
    """(5, 2) keypoints (left eye, right eye, nose, mouth left, mouth right) -> hull points (N, 2)."""
    le, re, nose, ml, mr = [np.asarray(p, np.float32) for p in kps]
    eye_c, mouth_c = (le + re) / 2, (ml + mr) / 2
    down = mouth_c - eye_c
    dv = float(np.linalg.norm(down)) or 1.0
    down = down / dv
    right = re - le
    dh = float(np.linalg.norm(right)) or 1.0
    right = right / dh
    pts = [
        le - right * 0.55 * dh - down * 0.55 * dv, re + right * 0.55 * dh - down * 0.55 * dv,  # brows/forehead
        eye_c - down * 0.8 * dv,  # forehead centre
        le - right * 0.75 * dh + down * 0.3 * dv, re + right * 0.75 * dh + down * 0.3 * dv,  # cheeks
        ml - right * 0.45 * dh + down * 0.45 * dv, mr + right * 0.45 * dh + down * 0.45 * dv,  # jaw
        mouth_c + down * 0.95 * dv,  # chin
        nose,
    ]
    return cv2.convexHull(np.array(pts, np.float32)).reshape(-1, 2)


def blend_mask(shape: tuple[int, int], kps: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A deformed, blurred [0, 1] mask over the face hull."""
    h, w = shape
    hull = face_hull(kps)
    # random deformation: jitter hull points and scale the hull around its centre
    c = hull.mean(0)
    hull = c + (hull - c) * rng.uniform(0.85, 1.1) + rng.normal(0, 0.025 * w, hull.shape)
    m = np.zeros((h, w), np.float32)
    cv2.fillConvexPoly(m, np.round(hull).astype(np.int32), 1.0)
    k = int(rng.integers(1, max(2, w // 16))) * 2 + 1
    if rng.random() < 0.5:
        m = cv2.erode(m, np.ones((k, k), np.uint8))
    else:
        m = cv2.dilate(m, np.ones((k, k), np.uint8))
    bk = int(rng.integers(max(1, w // 32), max(2, w // 8))) * 2 + 1
    m = cv2.GaussianBlur(m, (bk, bk), 0)
    m = m / max(float(m.max()), 1e-6)
    return m * float(rng.choice([0.25, 0.5, 0.75, 1.0, 1.0, 1.0]))


def _jitter_source(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    x = img.astype(np.float32)
    # colour: per-channel shift, brightness/contrast, saturation
    x = x + rng.uniform(-10, 10, 3)
    mean = x.mean()
    x = (x - mean) * rng.uniform(0.9, 1.1) + mean + rng.uniform(-8, 8)
    x = np.clip(x, 0, 255).astype(np.uint8)
    hsv = cv2.cvtColor(x, cv2.COLOR_RGB2HSV).astype(np.float32)
    hsv[..., 1] = np.clip(hsv[..., 1] * rng.uniform(0.85, 1.15), 0, 255)
    hsv[..., 0] = (hsv[..., 0] + rng.uniform(-3, 3)) % 180
    x = cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB)
    r = rng.random()
    if r < 0.3:
        x = cv2.GaussianBlur(x, (3, 3), rng.uniform(0.3, 1.2))
    elif r < 0.5:
        blur = cv2.GaussianBlur(x, (0, 0), 1.0)
        x = cv2.addWeighted(x, 1.5, blur, -0.5, 0)
    # scale and small shift
    h, w = x.shape[:2]
    s = rng.uniform(0.93, 1.07)
    M = np.float32([[s, 0, (1 - s) * w / 2 + rng.uniform(-0.03, 0.03) * w],
                    [0, s, (1 - s) * h / 2 + rng.uniform(-0.03, 0.03) * h]])
    return cv2.warpAffine(x, M, (w, h), borderMode=cv2.BORDER_REFLECT)


def self_blend(img: np.ndarray, kps: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Return (self-blended fake uint8, mask [0, 1]) for an RGB face crop and its 5 keypoints."""
    kps = np.asarray(kps, np.float32).reshape(5, 2)
    if not np.isfinite(kps).all() or np.abs(kps).sum() == 0:
        # no keypoints: use a canonical face layout of an aligned crop
        h, w = img.shape[:2]
        kps = np.array([[0.36, 0.42], [0.64, 0.42], [0.5, 0.55], [0.39, 0.68], [0.61, 0.68]], np.float32) * [w, h]
    src = _jitter_source(img, rng)
    mask = blend_mask(img.shape[:2], kps, rng)
    out = mask[..., None] * src.astype(np.float32) + (1 - mask[..., None]) * img.astype(np.float32)
    return np.clip(out, 0, 255).astype(np.uint8), mask


def contact_sheet(images: list[np.ndarray], kps: list[np.ndarray], seed: int = 0, n: int = 8) -> np.ndarray:
    """Rows of (real | mask | self-blended) for up to n faces, as one RGB image."""
    rng = np.random.default_rng(seed)
    rows = []
    for img, k in list(zip(images, kps))[:n]:
        fake, mask = self_blend(img, k, rng)
        m = np.repeat((mask * 255).astype(np.uint8)[..., None], 3, axis=2)
        rows.append(np.concatenate([img, m, fake], axis=1))
    return np.concatenate(rows, axis=0) if rows else np.zeros((1, 1, 3), np.uint8)
