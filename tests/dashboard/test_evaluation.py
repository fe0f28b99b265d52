"""Evaluation and Misclassifications screens on evaluation folders of schema 2 (and graceful schema 1)."""
from __future__ import annotations

import re

import numpy as np
import pytest
from sklearn.metrics import confusion_matrix, roc_auc_score
from streamlit.testing.v1 import AppTest

from dashboard import charts, runs
from tests.conftest import REPO
from tests.evaldata import write_v1_run, write_v2_run


@pytest.fixture(scope="module")
def runs_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs_v2")
    write_v2_run(root, "alpha", seed=0, threshold=0.5)
    write_v2_run(root, "beta", seed=1, threshold=0.6)
    write_v1_run(root, "old")
    return root


# --------------------------------------------------------------------------- pure functions
def test_schema_detection(runs_root):
    assert runs.schema(runs.evaluation(runs_root / "old")) == 1
    assert runs.schema(runs.evaluation(runs_root / "alpha")) == 2 and runs.is_current(runs.evaluation(runs_root / "alpha"))
    assert runs.schema(None) == 0 and not runs.is_current({"schema": 2})  # no slices: not usable


def test_fmt_ci():
    assert runs.fmt_ci(0.91234, [0.85, 0.95]) == "0.912 [0.850, 0.950]"
    assert runs.fmt_ci(0.5, None) == "0.500" and runs.fmt_ci(None, [0, 1]) == "—"
    assert runs.fmt_ci(0.5, [None, 0.7]) == "0.500"


def test_cross_dataset_table(runs_root):
    table, cells, old = runs.cross_dataset(runs.list_runs(runs_root), "file", "all")
    assert list(table.index) == ["alpha", "beta"] and old == ["old"]
    assert table.columns[0] == "video datasets"
    assert {"ffpp", "ffpp · Deepfakes", "ffpp · FaceSwap", "dfd", "dfd · Deepfakes"} <= set(table.columns)
    m = runs.evaluation(runs_root / "beta")
    s = runs.find_slice(m, "file", "ffpp", "FaceSwap", "all")
    assert table.loc["beta", "ffpp · FaceSwap"] == runs.fmt_ci(s["auc"], s["auc_ci"])
    assert cells[("beta", "ffpp · FaceSwap")] == ("file", "ffpp", "FaceSwap", "all")
    # compression columns: dfd has no c40 test files here
    t40, _, _ = runs.cross_dataset(runs.list_runs(runs_root), "face", "c40")
    assert "ffpp" in t40.columns and "dfd" not in t40.columns


def test_slice_rows_match_the_stored_slices(runs_root):
    """Per method = that method's fakes against the same dataset's reals; the stored counts and AUC agree."""
    run = runs_root / "alpha"
    m = runs.evaluation(run)
    for level in runs.LEVELS:
        pred = runs.eval_predictions(run, level)
        for s in m["slices"]:
            if s["level"] != level:
                continue
            rows = runs.slice_rows(pred, m, s["dataset"], s["method"], s["compression"])
            assert len(rows) == s["n"] and int((rows["label"] == 1).sum()) == s["n_fake"], runs.slice_key(s)
            if s["method"] != "all":
                assert set(rows.loc[rows["label"] == 1, "method"]) == {s["method"]}
            tn, fp, fn, tp = confusion_matrix(rows["label"], rows["score"] >= m["threshold"], labels=[0, 1]).ravel()
            assert [tn, fp, fn, tp] == [s["tn"], s["fp"], s["fn"], s["tp"]]
            assert round(roc_auc_score(rows["label"], rows["score"]), 4) == s["auc"]


def test_slice_curves_stored_for_headline_recomputed_otherwise(runs_root):
    run = runs_root / "alpha"
    m = runs.evaluation(run)
    pred = runs.eval_predictions(run, "file")
    roc, pr = runs.slice_curves(run, m, ("file", "video datasets", "all", "all"), pred)
    assert roc.equals(runs.curve(run, "roc", "file"))
    roc2, _ = runs.slice_curves(run, m, ("file", "ffpp", "Deepfakes", "c23"), pred)
    rows = runs.slice_rows(pred, m, "ffpp", "Deepfakes", "c23")
    auc = float(np.trapezoid(roc2["tpr"], roc2["fpr"]))
    assert auc == pytest.approx(roc_auc_score(rows["label"], rows["score"]))


def test_tables_of_the_other_files(runs_root):
    run = runs_root / "alpha"
    a = runs.audit_table(run)
    assert "false alarm rate [95 % CI]" in a.columns and a.iloc[0]["false alarm rate [95 % CI]"] == "0.125 [0.000, 0.375]"
    src = runs.score_by_source(run)
    assert set(src["label"]) == {"real", "fake"}
    rel = runs.reliability_table(run)
    fig = charts.reliability_stages(rel, "file", "test")
    assert [t.name for t in fig.data] == ["raw", "calibrated", "perfect"]
    fig = charts.score_distribution(src, 0.5)
    assert {t.name for t in fig.data} == {"real", "fake"}
    assert runs.reliability_table(runs_root / "old") is None and runs.audit_table(runs_root / "old") is None


# --------------------------------------------------------------------------- the screens
@pytest.fixture()
def app(monkeypatch, runs_root, tiny_model_dir):
    monkeypatch.setenv("DEEPFAKE_RUNS", str(runs_root))
    monkeypatch.setenv("DEEPFAKE_MODEL", str(tiny_model_dir))
    monkeypatch.chdir(REPO)
    at = AppTest.from_file(str(REPO / "app_main.py"), default_timeout=60)
    at.run()
    return at


def _counts(at):
    md = next(m.value for m in at.markdown if m.value.startswith("TN "))
    return [int(x) for x in re.findall(r"\*\*(\d+)\*\*", md)]


def test_evaluation_page_v2(app, runs_root):
    at = app
    at.switch_page("app_pages/evaluation.py").run()
    assert not at.exception, at.exception
    caps = " ".join(c.value for c in at.caption)
    assert "Not in the table (old evaluation format): old" in caps
    assert at.session_state["eval_run"] == "alpha"  # the first run; slice = the headline
    assert [at.selectbox(key=k).value for k in ("eval_level", "eval_dataset", "eval_method", "eval_comp")] == \
        ["file", "video datasets", "all", "all"]
    m = runs.evaluation(runs_root / "alpha")
    assert _counts(at) == [m["headline"][k] for k in ("tn", "fp", "fn", "tp")]
    assert next(x.value for x in at.metric if x.label == "AUC") == f"{m['headline']['auc']:.3f}"
    # reliability before/after, per-source distribution, ROC/PR, several runs' ROC
    assert len(at.get("plotly_chart")) >= 6
    assert any("false alarm rate [95 % CI]" in df.value.columns for df in at.dataframe)


def test_confusion_matrix_follows_threshold(app, runs_root):
    at = app
    at.switch_page("app_pages/evaluation.py").run()
    pred = runs.eval_predictions(runs_root / "alpha", "file")
    rows = runs.slice_rows(pred, runs.evaluation(runs_root / "alpha"), "video datasets")
    seen = []
    for thr in (0.0, 0.5, 1.0):
        at.slider(key="eval_threshold").set_value(thr).run()
        exp = confusion_matrix(rows["label"], (rows["score"] >= thr).astype(int), labels=[0, 1]).ravel().tolist()
        assert _counts(at) == exp
        seen.append(exp)
    assert seen[0] != seen[-1]


def test_clicking_a_cell_opens_that_slice_and_links_it(app, runs_root):
    at = app
    at.switch_page("app_pages/evaluation.py").run()
    at.session_state["xd_table"] = {"selection": {"rows": [], "columns": [], "cells": [(1, "ffpp · FaceSwap")]}}
    at.run()
    assert not at.exception
    assert at.session_state["eval_run"] == "beta"
    assert [at.selectbox(key=k).value for k in ("eval_level", "eval_dataset", "eval_method", "eval_comp")] == \
        ["file", "ffpp", "FaceSwap", "all"]
    qp = {k: (v[0] if isinstance(v, list) else v) for k, v in dict(at.query_params).items()}
    assert qp == {"run": "beta", "level": "file", "dataset": "ffpp", "method": "FaceSwap", "compression": "all"}
    s = runs.find_slice(runs.evaluation(runs_root / "beta"), "file", "ffpp", "FaceSwap", "all")
    assert _counts(at) == [s[k] for k in ("tn", "fp", "fn", "tp")]
    # choosing another slice by hand moves the link along
    at.selectbox(key="eval_method").set_value("Deepfakes").run()
    assert at.query_params["method"] in ("Deepfakes", ["Deepfakes"])


def test_query_params_preselect_a_slice(monkeypatch, runs_root, tiny_model_dir):
    monkeypatch.setenv("DEEPFAKE_RUNS", str(runs_root))
    monkeypatch.chdir(REPO)
    at = AppTest.from_file(str(REPO / "app_pages" / "evaluation.py"), default_timeout=60)
    at.query_params.update(run="beta", level="face", dataset="dfd", method="Deepfakes", compression="c23")
    at.run()
    assert not at.exception, at.exception
    assert at.selectbox(key="eval_run").value == "beta"
    assert [at.selectbox(key=k).value for k in ("eval_level", "eval_dataset", "eval_method", "eval_comp")] == \
        ["face", "dfd", "Deepfakes", "c23"]


def test_old_runs_are_asked_to_rerun(monkeypatch, tmp_path):
    write_v1_run(tmp_path, "sample")
    monkeypatch.setenv("DEEPFAKE_RUNS", str(tmp_path))
    monkeypatch.chdir(REPO)
    for page in ("evaluation.py", "misclassified.py"):
        at = AppTest.from_file(str(REPO / "app_pages" / page), default_timeout=60)
        at.run()
        assert not at.exception, at.exception
        assert any("re-run `python -m training evaluate" in w.value for w in at.warning), page


def test_explain_eval_table_on_the_evaluation_page(app, runs_root):
    import json

    ev = runs_root / "beta" / "evaluation" / runs.EXPLAIN_EVAL
    ev.write_text(json.dumps({"methods": [
        {"method": "gradcam", "label": "Grad-CAM (fast)", "faces": 5, "deletion_area": 0.41,
         "deletion_area_ci": [0.3, 0.5], "minus_random": -0.1, "seconds_per_face": 0.01},
        {"method": "random", "label": "random map (baseline)", "faces": 5, "deletion_area": 0.51,
         "deletion_area_ci": [0.4, 0.6], "minus_random": None, "seconds_per_face": 0.0}],
        "faces": 5, "steps": 16, "fill": "mean"}))
    try:
        at = app
        at.switch_page("app_pages/evaluation.py").run()
        at.selectbox(key="eval_run").set_value("beta").run()
        assert not at.exception
        t = next(df.value for df in at.dataframe if "deletion area [95 % CI]" in df.value.columns)
        assert t["deletion area [95 % CI]"].tolist() == ["0.410 [0.300, 0.500]", "0.510 [0.400, 0.600]"]
    finally:
        ev.unlink()


def test_misclassifications_page_v2(app, runs_root):
    at = app
    at.switch_page("app_pages/misclassified.py").run()
    assert not at.exception, at.exception
    at.slider(key="mis_threshold").set_value(0.0).run()  # every real face is now a false positive
    assert not at.exception
    table = at.dataframe[-1].value
    faces = runs.eval_predictions(runs_root / "alpha", "face")
    worst = faces[faces["label"] == 0].sort_values("score", ascending=False).head(12)
    assert table["score"].tolist() == pytest.approx(worst["score"].tolist())
    # the files of the fixture are not on this machine: a clear note, no image
    notes = " ".join(i.value for i in at.info)
    assert "not on this machine" in notes or "not available" in notes
    at.radio(key="mis_level").set_value("file").run()
    assert not at.exception and "kind" in at.dataframe[-1].value.columns


def test_misclassified_faces_recut_and_explained(monkeypatch, tiny_run, tiny_model_dir):
    """A run evaluated by the real pipeline, its sources on this machine: mistakes show their re-cut faces, and a
    face can be explained."""
    from model import explain

    assert explain.recut_available()
    monkeypatch.setenv("DEEPFAKE_RUNS", str(tiny_run.parent))
    monkeypatch.setenv("DEEPFAKE_MODEL", str(tiny_model_dir))
    monkeypatch.chdir(REPO)
    at = AppTest.from_file(str(REPO / "app_pages" / "misclassified.py"), default_timeout=60)
    at.run()
    assert not at.exception, at.exception
    at.slider(key="mis_threshold").set_value(0.0).run()  # every real face is a false positive
    assert not at.exception, at.exception
    imgs = [e for e in at.main if type(e).__name__ == "Image"]
    assert imgs, "no re-cut face shown"
    toggles = [t for t in at.toggle if t.key.startswith("mis_cam_face_")]
    toggles[0].set_value(True).run()
    assert not at.exception, at.exception
    assert any(k[1] == "gradcam" for k in at.session_state["gradcam"])
