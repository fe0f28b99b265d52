"""Calibration of P(fake): the one place that maps the network's raw score to a calibrated probability.

A model card stores its calibration as plain numbers (no pickle)::

    {"method": "platt", "a": 1.7, "b": -0.4, ...}          p = sigmoid(a * logit(raw) + b)
    {"method": "isotonic", "x": [...], "y": [...], ...}    p = piecewise-linear interpolation of (x, y)
    {"method": "none"}                                      p = raw

It is fitted at the level where the verdict is made -- the FILE score (an image's max over faces, a video's
aggregate) -- on the validation identity groups, and applied by the engine to file, track and face scores.
Fitting uses scikit-learn; applying needs only NumPy.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import numpy as np

from model import metrics

EPS = 1e-6
METHODS = ("none", "platt", "isotonic")


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, np.float64), EPS, 1 - EPS)
    return np.log(p / (1 - p))


@dataclasses.dataclass
class Calibration:
    method: str = "none"
    a: float = 1.0
    b: float = 0.0
    x: list[float] = dataclasses.field(default_factory=list)
    y: list[float] = dataclasses.field(default_factory=list)
    fitted_on: str = ""  # what it was fitted on (split, level, n)
    selection: dict[str, Any] = dataclasses.field(default_factory=dict)  # validation log-loss per method

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"unknown calibration method {self.method!r}; choose one of {METHODS}")
        if self.method == "isotonic" and (len(self.x) < 2 or len(self.x) != len(self.y)):
            raise ValueError("isotonic calibration needs matching x and y knots (at least 2)")

    def apply(self, p):
        """Calibrated P(fake) for raw scores (scalar in -> float out; array in -> array out)."""
        scalar = np.ndim(p) == 0
        if p is None:
            return None
        arr = np.asarray(p, np.float64)
        if self.method == "platt":
            out = 1.0 / (1.0 + np.exp(-(self.a * _logit(arr) + self.b)))
        elif self.method == "isotonic":
            out = np.interp(arr, np.asarray(self.x), np.asarray(self.y))
        else:
            out = arr
        out = np.clip(out, 0.0, 1.0)
        return float(out) if scalar else out

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        if self.method != "isotonic":
            d.pop("x"), d.pop("y")
        if self.method != "platt":
            d.pop("a"), d.pop("b")
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> "Calibration":
        if not d:
            return cls()
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


def _fit_platt(y, p) -> Calibration:
    from sklearn.linear_model import LogisticRegression

    lr = LogisticRegression(C=1e4)  # (almost) unregularised Platt scaling on the logit of the raw score
    lr.fit(_logit(p)[:, None], np.asarray(y, int))
    return Calibration("platt", a=float(lr.coef_[0, 0]), b=float(lr.intercept_[0]))


def _fit_isotonic(y, p) -> Calibration:
    from sklearn.isotonic import IsotonicRegression

    iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip")
    iso.fit(np.asarray(p, np.float64), np.asarray(y, np.float64))
    x, yy = iso.X_thresholds_, iso.y_thresholds_
    if len(x) < 2:  # a constant fit: keep two knots so apply() is defined
        x, yy = np.array([0.0, 1.0]), np.array([float(yy[0])] * 2)
    # shrink towards the prior: never exactly 0 or 1 (a 0/1 probability is never honest on small data)
    yy = np.clip(yy, 0.005, 0.995)
    return Calibration("isotonic", x=[round(float(v), 6) for v in x], y=[round(float(v), 6) for v in yy])


FITTERS = {"platt": _fit_platt, "isotonic": _fit_isotonic}


def fit(y: Sequence[int], raw: Sequence[float], groups: Sequence[str] | None = None, methods=("platt", "isotonic"),
        folds: int = 5, seed: int = 0, fitted_on: str = "") -> Calibration:
    """Fit each method, choose by cross-validated log-loss over identity groups (an in-sample isotonic fit
    always looks best), refit the winner on everything. ``none`` competes too (the raw scores)."""
    y = np.asarray(y, int)
    raw = np.asarray(raw, np.float64)
    if len(np.unique(y)) < 2:
        raise ValueError("calibration needs real and fake files in the validation split")
    g = np.asarray(groups if groups is not None else np.arange(len(y)).astype(str)).astype(str)
    if len(np.unique(g)) < 2:  # one identity group: cross-validate by file instead
        g = np.arange(len(y)).astype(str)
    ug = np.unique(g)
    rng = np.random.default_rng(seed)
    fold_of = dict(zip(rng.permutation(ug), np.arange(len(ug)) % max(2, min(folds, len(ug)))))
    fid = np.array([fold_of[v] for v in g])
    cv: dict[str, float] = {"none": metrics.log_loss(y, raw, eps=EPS)}
    for m in methods:
        pred = np.full(len(y), np.nan)
        for k in np.unique(fid):
            tr, te = fid != k, fid == k
            if len(np.unique(y[tr])) < 2:
                pred[te] = y[tr].mean() if tr.any() else 0.5
                continue
            pred[te] = FITTERS[m](y[tr], raw[tr]).apply(raw[te])
        cv[m] = metrics.log_loss(y, pred, eps=EPS)
    best = min(cv, key=cv.get)
    cal = FITTERS[best](y, raw) if best != "none" else Calibration()
    cal.fitted_on = fitted_on
    cal.selection = {"cv_log_loss": {k: round(v, 5) for k, v in cv.items()}, "chosen": best,
                     "folds_by_group": int(len(np.unique(fid))), "n": int(len(y))}
    return cal
