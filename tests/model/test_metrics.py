"""model.metrics: every metric against scikit-learn or a hand case; the group bootstrap against a by-hand loop."""
import numpy as np
import pytest
from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score

from model import metrics


def _random(seed: int, n: int = 300, tied: bool = False):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    p = np.clip(rng.normal(0.35 + 0.3 * y, 0.2), 0.01, 0.99)
    if tied:  # few distinct scores: many ties within and across classes
        p = np.round(p, 1).clip(0.05, 0.95)
    return y, p


@pytest.mark.parametrize("tied", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_metrics_equal_scikit_learn(seed, tied):
    y, p = _random(seed, tied=tied)
    if tied:
        assert len(np.unique(p)) < 12
    assert metrics.auc(y, p) == pytest.approx(roc_auc_score(y, p), abs=1e-12)
    assert metrics.average_precision(y, p) == pytest.approx(average_precision_score(y, p), abs=1e-12)
    assert metrics.brier(y, p) == pytest.approx(brier_score_loss(y, p), abs=1e-12)
    assert metrics.log_loss(y, p) == pytest.approx(log_loss(y, p), abs=1e-12)


def test_auc_hand_case_with_ties():
    # pairs (fake, real): (0.5, 0.1) win, (0.5, 0.5) tie, (0.9, 0.1) win, (0.9, 0.5) win -> 3.5 / 4
    assert metrics.auc([0, 0, 1, 1], [0.1, 0.5, 0.5, 0.9]) == pytest.approx(0.875)


def test_eer_hand_case():
    # reals 0.1 0.2 0.3 0.8, fakes 0.4 0.6 0.7 0.9: at threshold 0.6 one real of four is flagged and one fake of
    # four missed -> equal error rate 1/4
    y = [0, 0, 0, 0, 1, 1, 1, 1]
    p = [0.1, 0.2, 0.3, 0.8, 0.4, 0.6, 0.7, 0.9]
    assert metrics.eer(y, p) == pytest.approx(0.25)
    assert metrics.eer([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]) == 0.0


def test_ece_hand_case():
    # bin 0: score 0.05, fraction fake 0 -> 0.05 x 1; bin 1: 0.15 vs 0.5 -> 0.35 x 2; bin 9: 0.95 vs 1 -> 0.05 x 1
    y, p = [0, 0, 1, 1], [0.05, 0.15, 0.15, 0.95]
    assert metrics.ece(y, p) == pytest.approx((0.05 + 0.7 + 0.05) / 4)
    b = metrics.calibration_bins(y, p)
    assert b["bin"].tolist() == [0, 1, 9] and b["count"].tolist() == [1, 2, 1]
    assert metrics.ece([1], [1.0]) == 0.0  # a score of 1 falls in the last bin
    assert np.isnan(metrics.ece([], []))


def test_one_class_and_point_metrics():
    assert metrics.auc([0, 0], [0.1, 0.2]) is None
    assert metrics.average_precision([1, 1], [0.1, 0.2]) is None and metrics.eer([1], [0.3]) is None
    y, p = np.array([0, 0, 0, 1, 1]), np.array([0.2, 0.6, 0.7, 0.5, 0.9])
    assert metrics.confusion(y, p, 0.6) == {"tn": 1, "fp": 2, "fn": 1, "tp": 1}  # 0.6 >= 0.6 is flagged
    assert metrics.false_alarm_rate(y, p, 0.6) == pytest.approx(2 / 3)
    assert metrics.detection_rate(y, p, 0.6) == pytest.approx(0.5)
    assert metrics.accuracy(y, p, 0.6) == pytest.approx(2 / 5)
    assert metrics.false_alarm_rate([1], [0.9], 0.5) is None and metrics.detection_rate([0], [0.9], 0.5) is None
    pm = metrics.point_metrics(y, p, 0.6)
    assert tuple(pm) == metrics.POINT_METRICS and pm["auc"] == pytest.approx(roc_auc_score(y, p))
    with pytest.raises(ValueError):
        metrics.auc([0, 1], [0.5])


def _by_hand(metric, y, p, groups, n, seed):
    """The textbook loop: draw len(groups) groups with replacement, concatenate their members, 2.5/97.5 %."""
    ug = np.unique(np.asarray(groups).astype(str))
    members = [np.flatnonzero(np.asarray(groups).astype(str) == g) for g in ug]
    rng = np.random.default_rng(seed)
    vals = []
    for _ in range(n):
        idx = np.concatenate([members[k] for k in rng.integers(0, len(ug), len(ug))])
        v = metric(y[idx], p[idx])
        if v is not None:
            vals.append(v)
    return [np.percentile(vals, 2.5), np.percentile(vals, 97.5)]


def test_group_bootstrap_equals_the_by_hand_loop():
    y, p = _random(3, n=120)
    groups = np.array([f"person{i % 17}" for i in range(len(y))])
    got = metrics.bootstrap(metrics.auc, y, p, groups, n=300, seed=7)
    assert got == pytest.approx(_by_hand(metrics.auc, y, p, groups, 300, 7), abs=1e-12)
    assert metrics.bootstrap(metrics.auc, y, p, groups, n=300, seed=7) == got  # seeded
    assert metrics.bootstrap(metrics.auc, y, p, groups, n=300, seed=8) != got
    fa = lambda yy, pp: metrics.false_alarm_rate(yy, pp, 0.5)  # noqa: E731
    assert metrics.bootstrap(fa, y, p, groups, n=300, seed=7) == pytest.approx(_by_hand(fa, y, p, groups, 300, 7))
    # a dict of metrics: every entry is the interval the metric gets alone (the same draws)
    d = metrics.bootstrap(lambda yy, pp: metrics.point_metrics(yy, pp, 0.5), y, p, groups, n=300, seed=7)
    assert set(d) == set(metrics.POINT_METRICS) and d["auc"] == got
    assert d["ece"] == pytest.approx(metrics.bootstrap(metrics.ece, y, p, groups, n=300, seed=7))


def test_bootstrap_resamples_groups_not_items():
    # 10 people with 30 photos each; a person's photos are all flagged or all not (4 of 10 people flagged):
    # resampling people gives a binomial-like interval over 10 units, resampling photos one over 300
    y = np.zeros(300, int)
    groups = np.repeat(np.arange(10), 30)
    p = np.where(groups < 4, 0.9, 0.1)
    fa = lambda yy, pp: metrics.false_alarm_rate(yy, pp, 0.5)  # noqa: E731
    by_group = metrics.bootstrap(fa, y, p, groups, n=500)
    by_item = metrics.bootstrap(fa, y, p, None, n=500)
    assert by_group[0] <= 0.4 <= by_group[1] and by_item[0] <= 0.4 <= by_item[1]
    w_group, w_item = by_group[1] - by_group[0], by_item[1] - by_item[0]
    assert w_group > 0.45 and w_item < 0.15 and w_group > 3 * w_item


def test_bootstrap_undefined_draws_and_degenerate_cases():
    # 3 groups, only one holds fakes: most draws lack a class -> too few usable draws for an AUC interval
    y = np.array([0, 0, 0, 0, 1, 1])
    p = np.array([0.1, 0.2, 0.3, 0.4, 0.8, 0.9])
    groups = np.array(["a", "a", "b", "b", "c", "c"])
    assert metrics.bootstrap(metrics.auc, y, p, groups, n=40) is not None  # 1 - (2/3)^3 = 70 % of draws hold fakes
    assert metrics.bootstrap(metrics.auc, y[:4], p[:4], groups[:4], n=40) is None  # no fakes at all
    assert metrics.bootstrap(metrics.brier, y, p, ["one"] * 6) is None  # one group: nothing to resample
    d = metrics.bootstrap(lambda yy, pp: metrics.point_metrics(yy, pp, 0.5), y, p, ["one"] * 6)
    assert d == {k: None for k in metrics.POINT_METRICS}
    assert metrics.interval([0.1] * 19, n=19) is None and metrics.interval([0.1] * 20, n=20) == [0.1, 0.1]
    assert metrics.interval([0.1] * 100 + [None] * 304, n=404) is None  # fewer than n / 4 usable
    assert metrics.interval([0.123456] * 30, n=30, digits=3) == [0.123, 0.123]
    with pytest.raises(ValueError):
        metrics.bootstrap(metrics.auc, y, p, groups[:3])


def test_group_draws_sum_to_the_number_of_groups():
    draws = list(metrics.group_draws(7, n=5, seed=1))
    assert len(draws) == 5 and all(d.sum() == 7 and len(d) == 7 for d in draws)
    assert list(metrics.group_draws(1, n=5)) == []
    idx = metrics.resample(np.array([2, 0, 1]), np.array([0, 0, 1, 2]))
    assert idx.tolist() == [0, 0, 1, 1, 3]
