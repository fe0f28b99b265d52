"""Drawing on images: face boxes coloured by score (green real -> red fake)."""
from __future__ import annotations

import cv2
import numpy as np


def score_color(score: float | None) -> tuple[int, int, int]:
    """RGB colour for a P(fake): green (0) -> yellow (0.5) -> red (1); grey when unknown."""
    if score is None:
        return (160, 160, 160)
    s = float(np.clip(score, 0, 1))
    return (int(255 * min(1, 2 * s)), int(255 * min(1, 2 * (1 - s))), 0)


def draw_faces(image: np.ndarray, faces, threshold: float, show_label: bool = True, max_side: int = 1280) -> np.ndarray:
    """Copy of ``image`` (RGB) with each face's box (red: fake at ``threshold``, green: real) and 'n: score label'
    drawn; downscaled to max_side for display."""
    img = image.copy()
    scale = 1.0
    if max(img.shape[:2]) > max_side:
        scale = max_side / max(img.shape[:2])
        img = cv2.resize(img, (round(img.shape[1] * scale), round(img.shape[0] * scale)), interpolation=cv2.INTER_AREA)
    th = max(2, round(max(img.shape[:2]) / 300))
    for i, f in enumerate(faces):
        x, y, w, h = (int(round(v * scale)) for v in f.box)
        c = score_color(None if f.score is None else float(f.score >= threshold))
        cv2.rectangle(img, (x, y), (x + w, y + h), c, th)
        if show_label:
            text = f"{i + 1}: {f.score:.2f} {'fake' if f.score >= threshold else 'real'}"
            fs = max(0.4, th / 3)
            (tw, tht), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, fs, 1)
            y0 = max(tht + 4, y)
            cv2.rectangle(img, (x, y0 - tht - 4), (x + tw + 4, y0), c, -1)
            cv2.putText(img, text, (x + 2, y0 - 3), cv2.FONT_HERSHEY_SIMPLEX, fs, (0, 0, 0), 1, cv2.LINE_AA)
    return img
