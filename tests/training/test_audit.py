"""The false-alarm audit on held-out real photos: per set and per group, never pooled across photo sets."""
import numpy as np
import pandas as pd

from training.evaluate import audit


def test_audit_rows_per_set_and_group_never_pooled():
    rng = np.random.default_rng(0)
    utk = pd.DataFrame({"dataset": "utkface", "label": 0, "score": rng.uniform(0.4, 0.9, 200),
                        "gender": rng.integers(0, 2, 200), "race": rng.integers(0, 5, 200)})
    lfw = pd.DataFrame({"dataset": "lfw", "label": 0, "score": rng.uniform(0.0, 0.3, 100)})
    video = pd.DataFrame({"dataset": "ffpp", "label": [0, 1], "score": [0.9, 0.9]})  # not a photo set
    ft = pd.concat([utk, lfw, video], ignore_index=True)
    a = audit(ft, thr=0.6, n_boot=200)
    assert "all" not in set(a["attribute"]), "photo sets must not be pooled"
    by = a.set_index(["attribute", "group"])
    assert by.loc[("dataset", "lfw"), "n"] == 100 and by.loc[("dataset", "lfw"), "false_alarms"] == 0
    assert by.loc[("dataset", "lfw"), "score_p99"] < 0.6  # the percentiles show how far below the threshold
    utk_fa = int((utk["score"] >= 0.6).sum())
    assert by.loc[("dataset", "utkface"), "false_alarms"] == utk_fa
    assert by.loc[("gender", "male"), "n"] + by.loc[("gender", "female"), "n"] == len(utk)
    lo, hi = by.loc[("dataset", "utkface"), ["false_alarm_rate_ci_lo", "false_alarm_rate_ci_hi"]]
    assert lo <= utk_fa / len(utk) <= hi


def test_audit_intervals_resample_people_not_photos():
    """LFW holds many photos per person: the interval resamples the person (``group``), so a false alarm that
    sticks to two people of five is uncertain, however many photos they have. UTKFace files are their own group."""
    person = np.repeat(np.arange(5), 40)
    lfw = pd.DataFrame({"dataset": "lfw", "label": 0, "group": [f"lfw:p{k}" for k in person],
                        "score": np.where(person < 2, 0.9, 0.1)})
    rng = np.random.default_rng(1)
    utk = pd.DataFrame({"dataset": "utkface", "label": 0, "group": [f"utk:{i}" for i in range(200)],
                        "score": np.where(np.arange(200) < 80, 0.9, 0.1), "gender": rng.integers(0, 2, 200),
                        "race": rng.integers(0, 5, 200)})
    by = audit(pd.concat([lfw, utk], ignore_index=True), thr=0.5, n_boot=400).set_index(["attribute", "group"])
    width = lambda k: by.loc[k, "false_alarm_rate_ci_hi"] - by.loc[k, "false_alarm_rate_ci_lo"]  # noqa: E731
    assert by.loc[("dataset", "lfw"), "false_alarm_rate"] == by.loc[("dataset", "utkface"), "false_alarm_rate"] == 0.4
    # by photo, 200 photos would give about +-0.07 (width ~0.14); by person, 5 people give most of [0, 0.8]
    assert width(("dataset", "lfw")) > 0.5
    assert 0.08 < width(("dataset", "utkface")) < 0.2  # 200 independent files
    lo, hi = by.loc[("dataset", "lfw"), ["false_alarm_rate_ci_lo", "false_alarm_rate_ci_hi"]]
    assert lo <= 0.4 <= hi
