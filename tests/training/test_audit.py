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
