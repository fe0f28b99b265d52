"""Explanation maps for one face crop, and how faithful each map is.

Every explanation goes through :func:`explain`::

    from model import explain
    ex = explain.explain(det, crop, method="gradcam++")    # Explanation: heat [0, 1] S x S, overlay, seconds
    cur = explain.deletion_curve(det, crop, ex.heat)       # DeletionCurve: fractions, scores, area

Methods (``METHODS``):

* ``gradcam``  -- the engine's compiled Grad-CAM (``model.gradcam`` via ``Detector.explain``; the default).
* ``gradcam++``, ``scorecam`` (Faster Score-CAM: the 10 most varying channels), ``layercam`` and
  ``smoothgrad`` (SmoothGrad saliency, its noisy copies in one batch) -- tf-keras-vis 0.8.7, which walks the detector's flat functional graph
  (raw pixels -> ... -> ``top_activation`` -> head -> ``logit`` -> sigmoid). Gradient methods take the
  gradient of the pre-sigmoid ``logit`` (+logit for target 'fake', -logit for 'real'). Score-CAM weighs the
  channels by P(target) through a fixed two-class head ``[-logit / 2, +logit / 2]``, whose softmax is exactly
  [P(real), P(fake)] (tf-keras-vis applies a softmax to the model output, which on our single sigmoid unit
  would always be 1).

Faithfulness (deletion, Petsiuk et al. 2018): remove the most salient pixels first, in ``steps`` equal steps,
replacing them by the face's mean colour (``fill="mean"``, the default) or by a strongly blurred copy
(``"blur"``; note that blur is itself a cue for deepfake detectors: blurring a region can raise P(fake)), and
rescore every step in one batch. The area under P(target) against the fraction removed is the deletion area:
lower = the map found what the score depends on. A random map (``random_map``) gives the baseline.
"""
from __future__ import annotations

import dataclasses
import functools
import threading
import time
import weakref
from typing import Any, Callable, Sequence

import cv2
import numpy as np

DEFAULT_METHOD = "gradcam"
RANDOM = "random"
TARGETS = ("fake", "real")
FILLS = ("blur", "mean")


@dataclasses.dataclass(frozen=True)
class MethodInfo:
    name: str
    label: str
    description: str


METHODS: dict[str, MethodInfo] = {m.name: m for m in (
    MethodInfo("gradcam", "Grad-CAM (fast)", "gradient-weighted last-conv activations; compiled, the default"),
    MethodInfo("gradcam++", "Grad-CAM++", "tf-keras-vis GradcamPlusPlus: higher-order gradient weights"),
    MethodInfo("scorecam", "Score-CAM (faster)", "tf-keras-vis Faster Score-CAM: channels weighted by the score of "
               "the face masked by each of the 10 most varying channels (no gradients)"),
    MethodInfo("layercam", "Layer-CAM", "tf-keras-vis Layercam: positive gradients weight each position"),
    MethodInfo("smoothgrad", "SmoothGrad", "tf-keras-vis Saliency averaged over 10 noisy copies (pixel-level)"),
)}
SCORECAM_MAX_N = 10
SMOOTH_SAMPLES = 10
SMOOTH_NOISE = 0.2


def method_label(name: str) -> str:
    return "random map (baseline)" if name == RANDOM else METHODS[name].label


def check_method(method: str) -> str:
    if method not in METHODS:
        raise ValueError(f"unknown explanation method {method!r}; choose one of: {', '.join(METHODS)}")
    return method


def _check_target(target: str) -> str:
    if target not in TARGETS:
        raise ValueError(f"target must be 'fake' or 'real', not {target!r}")
    return target


# --------------------------------------------------------------------------- results
@dataclasses.dataclass
class Explanation:
    method: str
    target: str
    heat: np.ndarray  # S x S float32 in [0, 1]
    overlay: np.ndarray  # S x S x 3 uint8
    seconds: float  # wall time of the map alone
    first_call: bool = False  # the first map of a method for a model also builds it (slower)


@dataclasses.dataclass
class DeletionCurve:
    method: str
    fill: str
    fractions: np.ndarray  # fraction of pixels removed, 0 .. 1
    scores: np.ndarray  # P(target) after each step
    area: float  # trapezoidal area under scores over fractions, in [0, 1]; lower = more faithful

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "fill": self.fill, "area": round(self.area, 6),
                "fractions": [round(float(f), 4) for f in self.fractions],
                "scores": [round(float(s), 6) for s in self.scores]}


# --------------------------------------------------------------------------- tf-keras-vis, built once per model
class _Visualizers:
    """tf-keras-vis objects for one detector network (built lazily, once; calls serialised by a lock:
    tf-keras-vis builds Keras models on every call)."""

    def __init__(self, model):
        self.model = model
        self.lock = threading.Lock()
        self._objs: dict[str, Any] = {}
        self.used: set[str] = set()

    def get(self, method: str):
        if method in self._objs:
            return self._objs[method]
        try:
            from tf_keras_vis.gradcam_plus_plus import GradcamPlusPlus
            from tf_keras_vis.layercam import Layercam
            from tf_keras_vis.saliency import Saliency
            from tf_keras_vis.scorecam import Scorecam
        except ImportError as e:  # pragma: no cover - tf-keras-vis is a runtime dependency
            raise RuntimeError(f"{method} needs tf-keras-vis==0.8.7 (pip install tf-keras-vis): {e}") from None
        import keras
        from keras import layers

        from model.network import LOGIT

        if method == "scorecam":
            two = layers.Dense(2, use_bias=False, name="explain_two_class")
            m = keras.Model(self.model.inputs, two(self.model.get_layer(LOGIT).output), name="explain_scorecam")
            two.set_weights([np.array([[-0.5, 0.5]], np.float32)])
            m.predict = functools.partial(m.predict, verbose=0)  # tf-keras-vis calls predict with a progress bar
            obj = Scorecam(m, clone=False)
        else:
            # The logit is the pre-sigmoid output: the same as tf-keras-vis' ReplaceToLinear, without a clone.
            lin = self._objs.get("_linear")
            if lin is None:
                lin = self._objs["_linear"] = keras.Model(self.model.inputs, self.model.get_layer(LOGIT).output,
                                                          name="explain_logit")
            obj = {"gradcam++": GradcamPlusPlus, "layercam": Layercam, "smoothgrad": Saliency}[method](lin, clone=False)
        self._objs[method] = obj
        return obj


# Keyed by the Detector (weakly): its visualizers go when it goes (the value holds the Keras model, not the detector).
_VIS: "weakref.WeakKeyDictionary[Any, _Visualizers]" = weakref.WeakKeyDictionary()
_VIS_LOCK = threading.Lock()


def _visualizers(det) -> _Visualizers:
    with _VIS_LOCK:
        v = _VIS.get(det)
        if v is None:
            v = _VIS[det] = _Visualizers(det.model)
        return v


def _tfkv_map(det, method: str, x: np.ndarray, target: str) -> np.ndarray:
    from tf_keras_vis.utils.scores import BinaryScore, CategoricalScore

    from model.network import LAST_CONV

    vis = _visualizers(det)
    with vis.lock:
        obj = vis.get(method)
        if method == "scorecam":
            out = obj(CategoricalScore(1 if target == "fake" else 0), x, penultimate_layer=LAST_CONV,
                      max_N=SCORECAM_MAX_N, batch_size=SCORECAM_MAX_N)
        elif method == "smoothgrad":
            # SmoothGrad exactly as tf-keras-vis' smooth_samples loop computes it (mean over noisy copies of
            # |d score / d pixel|, then max over colour channels), but with the copies in ONE batch (about 10x
            # faster on CPU) and seeded noise (the same face gives the same map).
            sigma = SMOOTH_NOISE * (float(x.max()) - float(x.min()))
            noisy = x + np.random.default_rng(0).normal(0.0, sigma, (SMOOTH_SAMPLES, *x.shape[1:])).astype(np.float32)
            grads = obj(BinaryScore([target == "fake"] * SMOOTH_SAMPLES), noisy, keepdims=True, normalize_map=False)
            return np.asarray(grads, np.float32).mean(axis=0).max(axis=-1)
        else:
            out = obj(BinaryScore(target == "fake"), x, penultimate_layer=LAST_CONV)
    return np.asarray(out, np.float32)[0]


# --------------------------------------------------------------------------- the one entry point
def prepare_crop(crop: np.ndarray, size: int) -> np.ndarray:
    """A face crop as the model sees it: size x size x 3 uint8 RGB."""
    c = np.asarray(crop)
    if c.ndim != 3 or c.shape[2] != 3:
        raise ValueError(f"a face crop must be H x W x 3 RGB, got shape {c.shape}")
    if c.shape[:2] != (size, size):
        c = cv2.resize(c, (size, size), interpolation=cv2.INTER_AREA if c.shape[0] > size else cv2.INTER_LINEAR)
    return np.clip(c, 0, 255).astype(np.uint8)


def _unit(heat: np.ndarray, size: int) -> np.ndarray:
    h = np.nan_to_num(np.asarray(heat, np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    if h.shape != (size, size):
        h = cv2.resize(h, (size, size), interpolation=cv2.INTER_CUBIC)
    h = h - min(float(h.min()), 0.0)  # negative values (interpolation ringing) -> 0 at the bottom
    m = float(h.max())
    return (h / m if m > 0 else h).astype(np.float32)


def explain(det, crop: np.ndarray, method: str = DEFAULT_METHOD, target: str = "fake") -> Explanation:
    """Explanation map of ``method`` for one face crop (any size; resized to the model's input).

    ``det`` is a :class:`model.api.Detector`. The heat map is S x S in [0, 1] (1 = most responsible for the
    ``target`` class's score); ``seconds`` is the measured cost of this map.
    """
    check_method(method)
    _check_target(target)
    size = det.input_size
    c = prepare_crop(crop, size)
    vis = _visualizers(det)
    first = method not in vis.used
    t0 = time.perf_counter()
    if method == "gradcam":
        heat = det.explain(c, target)[0]
    else:
        heat = _tfkv_map(det, method, c[None].astype(np.float32), target)
    heat = _unit(heat, size)
    seconds = time.perf_counter() - t0
    vis.used.add(method)
    from model.gradcam import overlay

    return Explanation(method=method, target=target, heat=heat, overlay=overlay(c, heat), seconds=seconds,
                       first_call=first)


# --------------------------------------------------------------------------- faithfulness
def random_map(size: int, seed: int = 0) -> np.ndarray:
    """The baseline 'explanation': i.i.d. uniform per pixel (seeded)."""
    return np.random.default_rng(seed).random((size, size), dtype=np.float32)


def _fill_image(c: np.ndarray, fill: str) -> np.ndarray:
    if fill == "blur":
        s = c.shape[0]
        return cv2.GaussianBlur(c, (0, 0), sigmaX=max(s / 12.0, 1.0), borderType=cv2.BORDER_REFLECT)
    if fill == "mean":
        return np.broadcast_to(c.reshape(-1, 3).mean(axis=0).round().astype(np.uint8), c.shape).copy()
    raise ValueError(f"fill must be one of {FILLS}, not {fill!r}")


def deletion_order(heat: np.ndarray, seed: int = 0) -> np.ndarray:
    """Flat pixel indices, most salient first; ties (e.g. the zeros of a ReLU'd CAM) in seeded random order."""
    h = np.asarray(heat, np.float32).ravel()
    tie = np.random.default_rng(seed).random(h.size)
    return np.lexsort((tie, -h))


def deletion_curve(det, crop: np.ndarray, heat: np.ndarray, steps: int = 16, fill: str = "mean",
                   target: str = "fake", method: str = "", seed: int = 0) -> DeletionCurve:
    """Rescore the face with the top 0, 1/steps, ..., all of the pixels of ``heat`` removed (one batch)."""
    _check_target(target)
    if steps < 1:
        raise ValueError("steps must be at least 1")
    size = det.input_size
    c = prepare_crop(crop, size)
    if np.asarray(heat).shape != (size, size):
        heat = _unit(heat, size)
    base = _fill_image(c, fill)
    order = deletion_order(heat, seed)
    fractions = np.linspace(0.0, 1.0, steps + 1)
    counts = np.round(fractions * order.size).astype(int)
    flat_c, flat_b = c.reshape(-1, 3), base.reshape(-1, 3)
    batch = np.empty((steps + 1, size, size, 3), np.uint8)
    for i, n in enumerate(counts):
        img = flat_c.copy()
        idx = order[:n]
        img[idx] = flat_b[idx]
        batch[i] = img.reshape(size, size, 3)
    p = det.score_crops(batch).astype(np.float64)
    scores = p if target == "fake" else 1.0 - p
    area = float(np.trapezoid(scores, fractions)) if hasattr(np, "trapezoid") else float(np.trapz(scores, fractions))
    return DeletionCurve(method=method, fill=fill, fractions=fractions, scores=scores, area=area)


@dataclasses.dataclass
class Faithfulness:
    explanation: Explanation
    curve: DeletionCurve
    baseline: DeletionCurve  # the same deletion with a random map

    @property
    def score(self) -> float:
        """P(target) of the intact face."""
        return float(self.curve.scores[0])


def faithfulness(det, crop: np.ndarray, method: str = DEFAULT_METHOD, target: str = "fake", steps: int = 16,
                 fill: str = "mean", seed: int = 0) -> Faithfulness:
    """Map + its deletion curve + the random-map baseline's curve for one face."""
    ex = explain(det, crop, method, target)
    cur = deletion_curve(det, crop, ex.heat, steps, fill, target, method=method, seed=seed)
    base = deletion_curve(det, crop, random_map(det.input_size, seed), steps, fill, target, method=RANDOM, seed=seed)
    return Faithfulness(ex, cur, base)


def evaluate_methods(det, crops: Sequence[np.ndarray], methods: Sequence[str], steps: int = 16, fill: str = "mean",
                     target: str = "fake", progress: Callable[[int, int, str], None] | None = None,
                     warmup: bool = True) -> list[dict[str, Any]]:
    """One row per (face, method) and per face for the random baseline: face, method, area, seconds, score.

    With ``warmup`` each method first runs once on the first face (not recorded) so that ``seconds`` is the
    steady per-face cost, not graph building.
    """
    methods = [check_method(m) for m in methods]
    rows: list[dict[str, Any]] = []
    if warmup and len(crops):
        for m in methods:
            explain(det, crops[0], m, target)
    total = len(crops) * (len(methods) + 1)
    done = 0
    for i, crop in enumerate(crops):
        c = prepare_crop(crop, det.input_size)
        for m in methods:
            ex = explain(det, c, m, target)
            cur = deletion_curve(det, c, ex.heat, steps, fill, target, method=m, seed=i)
            rows.append({"face": i, "method": m, "area": cur.area, "seconds": ex.seconds, "score": float(cur.scores[0])})
            done += 1
            if progress:
                progress(done, total, f"face {i + 1}/{len(crops)}: {m}")
        cur = deletion_curve(det, c, random_map(det.input_size, seed=i), steps, fill, target, method=RANDOM, seed=i)
        rows.append({"face": i, "method": RANDOM, "area": cur.area, "seconds": 0.0, "score": float(cur.scores[0])})
        done += 1
        if progress:
            progress(done, total, f"face {i + 1}/{len(crops)}: random baseline")
    return rows


def summarize(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per method: faces, mean deletion area (+ 95 % bootstrap interval over faces, ``model.metrics.bootstrap``
    with each face its own group; [None, None] below two faces), mean seconds per face, and the mean paired
    difference to the random map's area (negative = better than random)."""
    from model import metrics

    by: dict[str, dict[int, dict]] = {}
    for r in rows:
        by.setdefault(r["method"], {})[int(r["face"])] = r
    rnd = by.get(RANDOM, {})
    out = []
    for m in [*[k for k in by if k != RANDOM], *([RANDOM] if RANDOM in by else [])]:
        faces = sorted(by[m])
        areas = np.array([by[m][f]["area"] for f in faces], np.float64)
        ci = metrics.bootstrap(lambda _y, a: float(a.mean()), np.zeros(len(areas), int), areas, digits=6)
        diff = [by[m][f]["area"] - rnd[f]["area"] for f in faces if f in rnd]
        out.append({
            "method": m, "label": method_label(m), "faces": len(faces),
            "deletion_area": round(float(areas.mean()), 6),
            "deletion_area_ci": ci or [None, None],
            "minus_random": round(float(np.mean(diff)), 6) if diff and m != RANDOM else None,
            "seconds_per_face": round(float(np.mean([by[m][f]["seconds"] for f in faces])), 4),
            "mean_score": round(float(np.mean([by[m][f]["score"] for f in faces])), 6),
        })
    return out


# --------------------------------------------------------------------------- faces of stored predictions
class RecutUnavailable(RuntimeError):
    """This version of the engine cannot re-cut stored faces (no ``model.crops.crop_from_source``)."""


RECUT_MISSING = ("re-cutting stored faces needs model.crops.crop_from_source and the detector's crop contract "
                 "(det.spec), which this version does not have")


def recut_available(det=None) -> bool:
    try:
        from model import crops
    except ImportError:
        return False
    return hasattr(crops, "crop_from_source") and (det is None or getattr(det, "spec", None) is not None)


def source_path(path: str) -> "Path":
    """A stored prediction path (relative to the repository root, as evaluate writes it) on this machine."""
    from pathlib import Path

    from model.api import REPO_ROOT

    p = Path(str(path)).expanduser()
    return p if p.is_absolute() else REPO_ROOT / p


def recut_face(det, path: str, frame: int, box: Sequence[float]) -> np.ndarray | None:
    """The face of a stored prediction row, cut again from its source file by the detector's crop contract.
    None when the file is not on this machine; RecutUnavailable when the engine cannot re-cut at all."""
    if not recut_available(det):
        raise RecutUnavailable(RECUT_MISSING)
    from model.crops import crop_from_source

    return crop_from_source(source_path(path), int(frame), [float(v) for v in box], det.spec)
