"""Every detection metric of the project, written once: small pure functions on labels and scores.

Convention: ``score`` = P(fake) in [0, 1], ``label`` 1 = fake, 0 = real; a file is flagged fake when
``score >= threshold`` (the engine's rule, ``model.api.Detector.label_for``).

Ranking metrics (``auc``, ``average_precision``, ``eer``) need both classes and return None otherwise.
Calibration metrics (``ece``, ``brier``, ``log_loss``) are nan on empty input. Point metrics at a threshold:
``confusion``, ``false_alarm_rate`` (reals flagged; None without reals), ``detection_rate`` (fakes flagged;
None without fakes), ``accuracy``; ``point_metrics`` gives the eight metrics that carry an interval
(``POINT_METRICS``).

Intervals: ``bootstrap`` resamples IDENTITY GROUPS with replacement (a person's files move together, so several
photos or videos of one person do not count as independent evidence), recomputes a metric (or a dict of
metrics) on every draw and returns the 95 % percentile interval. Without groups every item is its own group
(item resampling). The draws are seeded and the same for every caller (``group_draws``), so two metrics
bootstrapped with one seed on one group set see the same resamples.

This module imports numpy and scikit-learn only (no training code, no Streamlit).
"""
from __future__ import annotations

from typing import Any, Callable, Iterator, Sequence

import numpy as np

BOOTSTRAP = 1000  # default number of bootstrap draws
MIN_DRAWS = 20  # an interval needs at least max(MIN_DRAWS, n / 4) draws where the metric is defined
LEVEL = 0.95
LOG_EPS = 1e-7  # scores are clipped to [eps, 1 - eps] inside log_loss only
POINT_METRICS = ("auc", "ap", "eer", "log_loss", "brier", "ece", "false_alarm_rate", "detection_rate")


def _arrays(y, p) -> tuple[np.ndarray, np.ndarray]:
    y, p = np.asarray(y, int).ravel(), np.asarray(p, np.float64).ravel()
    if len(y) != len(p):
        raise ValueError(f"{len(y)} labels but {len(p)} scores")
    return y, p


def _two_classes(y: np.ndarray) -> bool:
    return bool((y == 1).any() and (y == 0).any())


# --------------------------------------------------------------------------- ranking
def auc(y, p) -> float | None:
    """ROC AUC by the Mann-Whitney rank statistic (ties count half); None unless both classes are present."""
    from scipy.stats import rankdata

    y, p = _arrays(y, p)
    n1 = int((y == 1).sum())
    n0 = len(y) - n1
    if n1 == 0 or n0 == 0:
        return None
    r = rankdata(p)
    return float((r[y == 1].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def average_precision(y, p) -> float | None:
    """Average precision (area under the precision-recall curve, step rule of scikit-learn); None unless both
    classes are present."""
    from sklearn.metrics import average_precision_score

    y, p = _arrays(y, p)
    return float(average_precision_score(y, p)) if _two_classes(y) else None


def eer(y, p) -> float | None:
    """Equal error rate: on the ROC curve, the point where the miss rate (1 - TPR) and the false-alarm rate
    (FPR) are closest; their mean there. Every threshold is a candidate (no ROC points dropped: dropping the
    collinear ones can drop the crossing itself). None unless both classes are present."""
    from sklearn.metrics import roc_curve

    y, p = _arrays(y, p)
    if not _two_classes(y):
        return None
    fpr, tpr, _ = roc_curve(y, p, drop_intermediate=False)
    fnr = 1 - tpr
    i = int(np.nanargmin(np.abs(fnr - fpr)))
    return float((fpr[i] + fnr[i]) / 2)


# --------------------------------------------------------------------------- calibration
def calibration_bins(y, p, bins: int = 10) -> dict[str, np.ndarray]:
    """The occupied bins of ``bins`` equal-width score bins on [0, 1] (a score of 1 falls in the last bin):
    {"bin", "mean_score", "fraction_fake", "count"}, one entry per occupied bin, in bin order."""
    y, p = _arrays(y, p)
    idx = np.minimum((p * bins).astype(int), bins - 1)
    occupied = np.unique(idx)
    return {"bin": occupied,
            "mean_score": np.array([p[idx == b].mean() for b in occupied], np.float64),
            "fraction_fake": np.array([y[idx == b].mean() for b in occupied], np.float64),
            "count": np.array([(idx == b).sum() for b in occupied], int)}


def ece(y, p, bins: int = 10) -> float:
    """Expected calibration error: the bin-size-weighted |mean score - fraction fake| over ``bins`` equal-width
    bins (``calibration_bins``); nan on empty input."""
    b = calibration_bins(y, p, bins)
    n = int(b["count"].sum())
    if n == 0:
        return float("nan")
    return float(np.sum(b["count"] * np.abs(b["mean_score"] - b["fraction_fake"])) / n)


def brier(y, p) -> float:
    """Brier score: mean squared difference between P(fake) and the label; nan on empty input."""
    y, p = _arrays(y, p)
    return float(np.mean((p - y) ** 2)) if len(y) else float("nan")


def log_loss(y, p, eps: float = LOG_EPS) -> float:
    """Mean negative log-likelihood of the labels, scores clipped to [eps, 1 - eps]; nan on empty input."""
    y, p = _arrays(y, p)
    if not len(y):
        return float("nan")
    p = np.clip(p, eps, 1 - eps)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


# --------------------------------------------------------------------------- at a threshold
def confusion(y, p, threshold: float) -> dict[str, int]:
    """{"tn", "fp", "fn", "tp"}: a score >= threshold is flagged fake."""
    y, p = _arrays(y, p)
    pred = p >= threshold
    return {"tn": int((~pred & (y == 0)).sum()), "fp": int((pred & (y == 0)).sum()),
            "fn": int((~pred & (y == 1)).sum()), "tp": int((pred & (y == 1)).sum())}


def false_alarm_rate(y, p, threshold: float) -> float | None:
    """Share of real items (label 0) flagged fake; None without reals."""
    y, p = _arrays(y, p)
    reals = y == 0
    return float((p[reals] >= threshold).mean()) if reals.any() else None


def detection_rate(y, p, threshold: float) -> float | None:
    """Share of fake items (label 1) flagged fake; None without fakes."""
    y, p = _arrays(y, p)
    fakes = y == 1
    return float((p[fakes] >= threshold).mean()) if fakes.any() else None


def accuracy(y, p, threshold: float) -> float | None:
    """Share of items whose flag (score >= threshold) matches the label; None on empty input."""
    y, p = _arrays(y, p)
    return float(((p >= threshold) == (y == 1)).mean()) if len(y) else None


def point_metrics(y, p, threshold: float) -> dict[str, float | None]:
    """The metrics that carry an interval (``POINT_METRICS``), at ``threshold`` where one is needed."""
    return {"auc": auc(y, p), "ap": average_precision(y, p), "eer": eer(y, p), "log_loss": log_loss(y, p),
            "brier": brier(y, p), "ece": ece(y, p), "false_alarm_rate": false_alarm_rate(y, p, threshold),
            "detection_rate": detection_rate(y, p, threshold)}


# --------------------------------------------------------------------------- bootstrap over identity groups
def group_codes(groups: Sequence | None, n_items: int) -> np.ndarray:
    """Integer code per item of its group (codes follow the sorted group names, compared as strings);
    ``groups`` None: every item is its own group."""
    if groups is None:
        return np.arange(n_items)
    g = np.asarray(groups).astype(str).ravel()
    if len(g) != n_items:
        raise ValueError(f"{len(g)} group names for {n_items} items")
    return np.unique(g, return_inverse=True)[1].ravel()


def group_draws(n_groups: int, n: int = BOOTSTRAP, seed: int = 0) -> Iterator[np.ndarray]:
    """``n`` bootstrap draws over ``n_groups`` groups, each as counts (how often each group was drawn; the counts
    sum to ``n_groups``). No draws with fewer than two groups: there is nothing to resample."""
    if n_groups < 2:
        return
    rng = np.random.default_rng(seed)
    for _ in range(n):
        yield np.bincount(rng.integers(0, n_groups, n_groups), minlength=n_groups)


def resample(counts: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """Item indices of one draw: every item repeated as often as its group (``codes``) was drawn (``counts``)."""
    return np.repeat(np.arange(len(codes)), np.asarray(counts)[codes])


def interval(values: Sequence[float | None], n: int, level: float = LEVEL,
             digits: int | None = None) -> list[float] | None:
    """Percentile interval of bootstrap values (None and non-finite values, where the metric was undefined on
    a draw, are dropped); None when fewer than max(MIN_DRAWS, n / 4) of the ``n`` draws remain."""
    v = np.array([x for x in values if x is not None and np.isfinite(x)], np.float64)
    if len(v) < max(MIN_DRAWS, n // 4):
        return None
    tail = (1 - level) / 2 * 100
    lo, hi = float(np.percentile(v, tail)), float(np.percentile(v, 100 - tail))
    return [round(lo, digits), round(hi, digits)] if digits is not None else [lo, hi]


def bootstrap(metric: Callable[[np.ndarray, np.ndarray], Any], y, p, groups: Sequence | None = None,
              n: int = BOOTSTRAP, seed: int = 0, level: float = LEVEL, digits: int | None = None):
    """95 % percentile interval of ``metric(y, p)`` resampling identity GROUPS with replacement.

    ``metric`` returns a number (or None where undefined, e.g. AUC on a draw lacking a class) or a dict of them;
    the result is ``[lo, hi]`` or None for a number, {name: [lo, hi] or None} for a dict. A draw where the
    metric is None (or not finite) is skipped for it; an interval needs max(MIN_DRAWS, n / 4) usable draws.
    ``groups`` None (a dataset without a group column): each item is its own group -- item resampling, which
    gives too narrow intervals wherever items of one identity are correlated. One group: no interval (None).
    Seeded: the same ``seed``, groups and ``n`` give the same draws (``group_draws``)."""
    y, p = _arrays(y, p)
    codes = group_codes(groups, len(y))
    n_groups = int(codes.max()) + 1 if len(codes) else 0
    values: list = [metric(y[idx], p[idx]) for idx in (resample(c, codes) for c in group_draws(n_groups, n, seed))]
    full = metric(y, p) if not values else values[0]
    if isinstance(full, dict):
        return {k: interval([v[k] for v in values], n, level, digits) for k in full}
    return interval(values, n, level, digits)
