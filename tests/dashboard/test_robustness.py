"""Robustness curves on the Evaluation page (RUN/evaluation/robustness.csv of `python -m training robustness`)."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from dashboard import charts, runs
from tests.conftest import REPO
from tests.evaldata import write_v2_run
from training.robustness import RESULT_COLS


def write_robustness(run, seed: int = 0) -> pd.DataFrame:
    """A robustness.csv in the command's columns: AUC falling with the level, intervals around every value."""
    rng = np.random.default_rng(seed)
    rows = []
    for pert, media in (("jpeg", "image"), ("blur", "image"), ("h264", "video")):
        clean = round(0.9 - 0.05 * seed, 4)
        for lv in range(6):
            auc = round(clean - 0.03 * lv * (1 + rng.random()), 4)
            tpr, fpr = round(0.8 - 0.05 * lv, 4), round(0.1 + 0.02 * lv, 4)
            rows.append({"perturbation": pert, "media": media, "level": lv,
                         "parameter": "clean (untouched)" if lv == 0 else f"{pert} level {lv}", "n_files": 40,
                         "n_real": 20, "n_fake": 20, "n_groups": 12, "n_unscored": 0,
                         "auc": auc, "auc_ci_lo": round(auc - 0.06, 4), "auc_ci_hi": round(auc + 0.04, 4),
                         "detection_rate": tpr, "detection_rate_ci_lo": tpr - 0.1, "detection_rate_ci_hi": tpr + 0.1,
                         "false_alarm_rate": fpr, "false_alarm_rate_ci_lo": max(0, fpr - 0.05),
                         "false_alarm_rate_ci_hi": fpr + 0.05, "auc_drop": round(clean - auc, 4),
                         "auc_drop_ci_lo": None, "auc_drop_ci_hi": None,
                         "target": ("PASS" if clean - auc <= {3: 0.05, 5: 0.1}[lv] else "MISS") if lv in (3, 5) else ""})
    t = pd.DataFrame(rows, columns=RESULT_COLS)
    t.to_csv(run / "evaluation" / runs.ROBUSTNESS_CSV, index=False)
    return t


@pytest.fixture(scope="module")
def robust_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs_robust")
    write_robustness(write_v2_run(root, "alpha", seed=0))
    write_robustness(write_v2_run(root, "beta", seed=1), seed=1)
    write_v2_run(root, "gamma", seed=2)
    return root


def test_tables_and_figure(robust_root):
    long, missing = runs.robustness_long(runs.list_runs(robust_root))
    assert missing == ["gamma"] and set(long["run"]) == {"alpha", "beta"} and len(long) == 2 * 3 * 6
    fig = charts.robustness(long, "auc", "AUC")
    assert len(fig.data) == 6  # 2 runs x 3 perturbations
    tr = next(t for t in fig.data if t.name == "blur · beta")
    d = long[(long["run"] == "beta") & (long["perturbation"] == "blur")].sort_values("level")
    assert list(tr.x) == list(range(6)) and np.allclose(tr.y, d["auc"])
    assert np.allclose(tr.error_y.array, d["auc_ci_hi"] - d["auc"]) and np.allclose(tr.error_y.arrayminus, 0.06)
    # one dash per run, one colour per perturbation
    alpha_blur = next(t for t in fig.data if t.name == "blur · alpha")
    assert tr.line.dash != alpha_blur.line.dash and tr.line.color == alpha_blur.line.color
    assert next(t for t in fig.data if t.name == "jpeg · beta").line.color != tr.line.color
    one = charts.robustness(long[long["run"] == "alpha"], "false_alarm_rate")
    assert {t.name for t in one.data} == {"jpeg", "blur", "h264"}


def _arr(v) -> np.ndarray:
    """A plotly JSON array: a list, or a typed array ({"dtype", "bdata"} base64) as plotly 6+ writes numpy data."""
    if isinstance(v, dict) and "bdata" in v:
        import base64

        return np.frombuffer(base64.b64decode(v["bdata"]), dtype=np.dtype(v["dtype"]))
    return np.asarray(v, float)


def _robust_fig(at) -> dict:
    figs = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    return next(f for f in figs if f["layout"].get("xaxis", {}).get("title", {}).get("text", "").startswith(
        "perturbation level"))


def test_evaluation_page_draws_robustness_curves(monkeypatch, robust_root):
    monkeypatch.setenv("DEEPFAKE_RUNS", str(robust_root))
    monkeypatch.chdir(REPO)
    at = AppTest.from_file(str(REPO / "app_pages" / "evaluation.py"), default_timeout=60)
    at.run()
    assert not at.exception, at.exception
    assert at.multiselect(key="robust_runs").value == ["alpha"]  # the run shown in detail
    fig = _robust_fig(at)
    assert sorted(t["name"] for t in fig["data"]) == ["blur", "h264", "jpeg"]
    alpha = runs.robustness_table(robust_root / "alpha")
    jpeg = next(t for t in fig["data"] if t["name"] == "jpeg")
    assert np.allclose(_arr(jpeg["y"]), alpha[alpha["perturbation"] == "jpeg"].sort_values("level")["auc"])
    caps = " ".join(c.value for c in at.caption)
    assert "No robustness curves for: gamma" in caps and "python -m training robustness RUN" in caps
    # another metric, two runs compared
    at.radio(key="robust_metric").set_value("false-alarm rate").run()
    at.multiselect(key="robust_runs").set_value(["alpha", "beta"]).run()
    assert not at.exception, at.exception
    fig = _robust_fig(at)
    assert len(fig["data"]) == 6 and fig["layout"]["yaxis"]["title"]["text"] == "false-alarm rate"
    beta = runs.robustness_table(robust_root / "beta")
    h = next(t for t in fig["data"] if t["name"] == "h264 · beta")
    assert np.allclose(_arr(h["y"]), beta[beta["perturbation"] == "h264"].sort_values("level")["false_alarm_rate"])


def test_page_without_robustness_says_how_to_measure(monkeypatch, tmp_path):
    write_v2_run(tmp_path, "solo")
    monkeypatch.setenv("DEEPFAKE_RUNS", str(tmp_path))
    monkeypatch.chdir(REPO)
    at = AppTest.from_file(str(REPO / "app_pages" / "evaluation.py"), default_timeout=60)
    at.run()
    assert not at.exception, at.exception
    assert any("python -m training robustness RUN --max-files" in i.value for i in at.info)
