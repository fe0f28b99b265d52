"""Robustness evaluation: the perturbations of ``model.perturb`` and ``python -m training robustness RUN`` on a tiny
run folder (a random 64 px model, a few generated face images and two short videos, no training)."""
from __future__ import annotations

import json
import shutil

import cv2
import numpy as np
import pandas as pd
import pytest

from model import perturb
from tests.conftest import face_frames, write_video
from training import robustness

PERSONS = [f"p{i}" for i in range(6)]  # p0: validation; p1-p5: test


# --------------------------------------------------------------------------- perturbations
@pytest.fixture(scope="module")
def img(astronaut):
    return np.ascontiguousarray(cv2.resize(astronaut, (160, 120)))


def _diff(a, b) -> float:
    return float(np.abs(a.astype(float) - b.astype(float)).mean())


@pytest.mark.parametrize("name", perturb.IMAGE_PERTURBATIONS)
def test_every_level_keeps_shape_and_dtype_and_changes_the_image(img, name):
    for level in perturb.LEVELS:
        out = perturb.apply(img, name, level, seed=3)
        assert out.shape == img.shape and out.dtype == np.uint8
        assert _diff(out, img) > 0, (name, level)
    assert np.array_equal(perturb.apply(img, name, 0), img)


@pytest.mark.parametrize("name", ["jpeg", "resize", "blur", "noise", "saturation", "brightness_contrast"])
def test_stronger_levels_change_the_image_more(img, name):
    d = [_diff(perturb.apply(img, name, lv, seed=1), img) for lv in perturb.LEVELS]
    assert d[0] < d[2] < d[4], (name, d)


def test_noise_is_seeded(img):
    a, b = perturb.apply(img, "noise", 3, seed=7), perturb.apply(img, "noise", 3, seed=7)
    assert np.array_equal(a, b) and not np.array_equal(a, perturb.apply(img, "noise", 3, seed=8))
    assert robustness.file_seed(0, "x/a.png") == robustness.file_seed(0, "y/a.png") != robustness.file_seed(1, "a.png")


def test_bad_names_and_levels_are_rejected(img):
    with pytest.raises(perturb.PerturbError, match="unknown perturbation"):
        perturb.apply(img, "sepia", 2)
    for lv in (6, -1, 2.5):
        with pytest.raises(perturb.PerturbError, match="1-5"):
            perturb.apply(img, "jpeg", lv)
    with pytest.raises(perturb.PerturbError, match="videos"):
        perturb.apply(img, "h264", 2)
    for text in ("0-3", "2-9", "a", ""):
        with pytest.raises(perturb.PerturbError):
            perturb.parse_levels(text)
    assert perturb.parse_levels("1,3-4") == [1, 3, 4]
    assert robustness.parse_perturbations("noise, jpeg") == ["jpeg", "noise"]  # perturb.ALL order
    assert robustness.parse_perturbations(None) == list(perturb.ALL)
    with pytest.raises(perturb.PerturbError, match="sepia"):
        robustness.parse_perturbations("jpeg,sepia")


def test_h264_reencode_is_decodable_and_removed_by_the_caller_path(tmp_path, astronaut, tiny_detector, monkeypatch):
    import tempfile

    from model import isolation
    from model.media import MediaError

    src = write_video(tmp_path / "v.mp4", face_frames(astronaut, n=6))
    (tmp_path / "enc").mkdir()
    out = perturb.reencode_video(src, 5, tmp_path / "enc")
    cap = cv2.VideoCapture(str(out))
    ok, frame = cap.read()
    cap.release()
    assert ok and frame.shape == (240, 320, 3) and out.suffix == ".mp4" and "crf40" in out.name
    assert out.stat().st_size < src.stat().st_size  # CRF 40 of a small clip: fewer bytes than the source
    with pytest.raises(perturb.PerturbError, match="failed"):
        perturb.reencode_video(tmp_path / "missing.mp4", 1, tmp_path / "enc")
    # the command's video path: re-encoded into a temporary folder, analysed, folder removed (also on failure)
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    f = {"path": str(src), "rel": "v.mp4", "dataset": "x", "media": "video", "group": "x:0", "label": 1}
    rows = robustness._video_rows(tiny_detector, f, [("none", 0), ("h264", 3)], 0, isolation, MediaError)
    assert [r["level"] for r in rows] == [0, 3] and all(r["raw_score"] != "" for r in rows), rows
    bad = robustness._video_rows(tiny_detector, {**f, "path": str(tmp_path / "missing.mp4")}, [("h264", 1)], 0,
                                 isolation, MediaError)
    assert "failed" in bad[0]["error"] and bad[0]["raw_score"] == ""
    assert list(tmp.iterdir()) == []


# --------------------------------------------------------------------------- a tiny run
def _image(astronaut, i: int, fake: bool, k: int) -> np.ndarray:
    f = face_frames(np.clip(astronaut * (0.8 + 0.05 * i) + 4 * k, 0, 255).astype(np.uint8), n=3)[k]
    if fake:
        f = f.copy()
        f[40:200] = np.clip(cv2.GaussianBlur(f[40:200], (9, 9), 4).astype(int) + [30, -10, -10], 0, 255)
    return f


@pytest.fixture(scope="module")
def tiny_robust_run(tmp_path_factory, astronaut, tiny_model_dir):
    """A run folder the robustness command accepts: config.json, the tiny model, a prepared folder holding only its
    source index (1 image per person and label; videos of p1 and p2)."""
    from training import datasets

    root = tmp_path_factory.mktemp("robust")
    data = root / "data"
    for i, p in enumerate(PERSONS):
        for sub, fake in (("real", False), ("fake", True)):
            d = data / sub / p
            d.mkdir(parents=True)
            for k in range(1):
                cv2.imwrite(str(d / f"{p}_{k}.png"), _image(astronaut, i, fake, k)[..., ::-1])
            if p in ("p1", "p2"):
                write_video(d / f"{p}.mp4", [_image(astronaut, i, fake, k % 3) for k in range(8)])
    prepared = root / "prepared"
    prepared.mkdir()
    datasets.index_dataset("folder", data).to_csv(prepared / "source_index.csv", index=False)
    run = root / "run"
    run.mkdir()
    shutil.copytree(tiny_model_dir, run / "model")
    (run / "config.json").write_text(json.dumps({
        "name": "tiny-robust", "seed": 1, "model": {"backbone": "efficientnet_b0", "input_size": 64},
        "data": {"prepared": [str(prepared)], "val_groups": ["folder:p0"],
                 "test_groups": [f"folder:{p}" for p in PERSONS[1:]]}}))
    return run


@pytest.fixture(scope="module")
def robust_result(tiny_robust_run):
    table, text = robustness.robustness_run(tiny_robust_run, "jpeg,noise,h264", "1,3", n_boot=200, progress=False)
    return tiny_robust_run, table, text


def test_command_writes_rows_intervals_and_scores(robust_result):
    run, table, text = robust_result
    ev = run / "evaluation"
    t = pd.read_csv(ev / robustness.RESULT_CSV)
    assert list(t.columns) == robustness.RESULT_COLS
    assert list(zip(t["perturbation"], t["level"])) == [(p, lv) for p in ("jpeg", "noise", "h264") for lv in (0, 1, 3)]
    assert set(t.loc[t["perturbation"] == "h264", "media"]) == {"video"}
    assert set(t.loc[t["perturbation"] != "h264", "media"]) == {"image"}
    # 5 test persons x 2 labels x 1 image; 2 persons x 2 labels x 1 video
    scored = t["n_files"] + t["n_unscored"]
    assert (scored[t["media"] == "image"] == 10).all() and (scored[t["media"] == "video"] == 4).all()
    assert (t.loc[t["media"] == "image", "n_groups"] <= 5).all() and (t["n_files"] > 0).all()
    assert t.loc[t["level"] == 0, "parameter"].eq("clean (untouched)").all()
    assert t.loc[(t["perturbation"] == "jpeg") & (t["level"] == 3), "parameter"].item() == "JPEG quality 50"
    ok = t.dropna(subset=["auc_ci_lo"])
    assert len(ok) >= 6 and ((ok["auc_ci_lo"] <= ok["auc"] + 1e-9) & (ok["auc"] <= ok["auc_ci_hi"] + 1e-9)).all()
    assert t["false_alarm_rate_ci_lo"].notna().any() and t["detection_rate_ci_hi"].notna().any()
    assert (t.loc[t["level"] == 0, "auc_drop"] == 0).all()
    # the drop is the clean AUC minus the row's AUC, same perturbation's clean row
    for p, g in t.groupby("perturbation"):
        clean = g.loc[g["level"] == 0, "auc"].item()
        assert np.allclose(g["auc_drop"], clean - g["auc"], atol=2e-4), p
    assert set(t.loc[t["level"] == 3, "target"]) <= {"PASS", "MISS"} and t.loc[t["level"] == 1, "target"].isna().all()
    # the scores cache: one row per file per condition of its media, scores reproduce the table
    s = pd.read_csv(ev / robustness.SCORES_CSV, keep_default_na=False)
    assert len(s) == 10 * 5 + 4 * 3 and not s.duplicated(["path", "perturbation", "level"]).any()
    assert set(s.loc[s["media"] == "video", "perturbation"]) == {"none", "h264"}
    settings = json.loads((ev / robustness.SETTINGS_JSON).read_text())
    assert settings["perturbations"] == ["jpeg", "noise", "h264"] and settings["levels"] == [1, 3]
    assert settings["n_videos"] == 4 and any("h264 only" in n for n in settings["notes"])
    assert "target: AUC drop <= 0.05 at level 3" in text and ("PASS" in text or "MISS" in text)
    assert not list(run.glob("**/*.tmp"))


def test_jpeg_rows_reproduce_from_the_stored_scores(robust_result):
    from model import metrics
    from model.api import Detector

    run, table, _ = robust_result
    det = Detector.load(run / "model")
    s = pd.read_csv(run / "evaluation" / robustness.SCORES_CSV)
    c = s[(s["perturbation"] == "jpeg") & (s["level"] == 3)].dropna(subset=["raw_score"])
    score = det.calibrate(c["raw_score"].to_numpy(float))
    row = table[(table["perturbation"] == "jpeg") & (table["level"] == 3)].iloc[0]
    assert row["auc"] == pytest.approx(metrics.auc(c["label"], score), abs=1e-4)
    assert row["false_alarm_rate"] == pytest.approx(metrics.false_alarm_rate(c["label"], score, det.threshold), abs=1e-4)


def test_resumes_from_the_cache(robust_result, monkeypatch):
    run, table, _ = robust_result
    cache = run / "evaluation" / robustness.SCORES_CSV
    lines = cache.read_text().splitlines(keepends=True)
    # a kill mid-write: the last 3 rows gone and the one before cut in half
    cache.write_text("".join(lines[:-4]) + lines[-4][: len(lines[-4]) // 2])
    calls = []
    from model.api import Detector

    real_array, real_analyze = Detector.analyze_array, Detector.analyze
    monkeypatch.setattr(Detector, "analyze_array", lambda self, *a, **k: calls.append(1) or real_array(self, *a, **k))
    monkeypatch.setattr(Detector, "analyze", lambda self, *a, **k: calls.append(1) or real_analyze(self, *a, **k))
    again, _ = robustness.robustness_run(run, "jpeg,noise,h264", "1,3", n_boot=200, progress=False)
    assert len(calls) == 4  # only the lost and the cut rows were analysed again
    pd.testing.assert_frame_equal(again, table)
    assert len(robustness.read_cache(cache)) == 10 * 5 + 4 * 3  # the cut line is skipped, its row written anew
    assert len(cache.read_text().splitlines()) == 1 + 10 * 5 + 4 * 3 + 1
    # a subset of the conditions needs no analysis at all
    calls.clear()
    sub, _ = robustness.robustness_run(run, "noise", "3", n_boot=200, progress=False)
    assert calls == [] and list(zip(sub["perturbation"], sub["level"])) == [("noise", 0), ("noise", 3)]


def test_max_files_is_a_label_stratified_seeded_subsample(tiny_robust_run):
    from training import config as config_mod
    from training.train import split_index

    cfg = config_mod.from_dict(json.loads((tiny_robust_run / "config.json").read_text()))
    index = split_index(cfg)
    a = robustness.choose_files(tiny_robust_run, cfg, index, max_files=8, seed=0)
    b = robustness.choose_files(tiny_robust_run, cfg, index, max_files=8, seed=0)
    c = robustness.choose_files(tiny_robust_run, cfg, index, max_files=8, seed=5)
    assert a.equals(b) and not a["path"].equals(c["path"])
    assert len(a) == 8 and a["label"].value_counts().to_dict() == {0: 4, 1: 4}
    assert set(a["dataset"]) == {"folder"} and set(a["group"]) <= {f"folder:{p}" for p in PERSONS[1:]}


@pytest.mark.parametrize("args, msg", [
    (["--perturbations", "jpeg,sepia"], "unknown perturbation sepia"),
    (["--levels", "0-7"], "levels must lie in 1-5"),
    (["--levels", "x"], "levels must look like"),
    (["--datasets", "nope"], "no test files of nope"),
])
def test_bad_arguments_one_line_exit_2(tiny_robust_run, capsys, args, msg):
    from training import cli

    assert cli.main(["robustness", str(tiny_robust_run), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert msg in err and len(err.splitlines()) == 1


def test_missing_run_one_line_exit_2(tmp_path, capsys):
    from training import cli

    assert cli.main(["robustness", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err.strip()
    assert "not a run folder" in err and len(err.splitlines()) == 1


def test_reevaluation_keeps_robustness_of_the_same_model_and_operating_point(robust_result, tmp_path):
    from training.evaluate import _model_key, _publish

    run, _, _ = robust_result
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    (copy / "evaluation" / "metrics.json").write_text(json.dumps({"model_key": _model_key(copy)}))
    fresh = copy / "evaluation.tmp"
    fresh.mkdir()
    _publish(copy, fresh, _model_key(copy))
    assert (copy / "evaluation" / robustness.RESULT_CSV).is_file()
    kept = json.loads((copy / "evaluation" / robustness.SETTINGS_JSON).read_text())
    same_point = {"threshold": kept["threshold"], "calibration": kept["calibration"]}
    fresh.mkdir()
    _publish(copy, fresh, _model_key(copy), same_point)
    assert (copy / "evaluation" / robustness.RESULT_CSV).is_file()
    fresh.mkdir()  # recalibrated (same weights, another threshold): its rates are stale
    _publish(copy, fresh, _model_key(copy), {**same_point, "threshold": kept["threshold"] + 0.1})
    assert not (copy / "evaluation" / robustness.RESULT_CSV).exists()
    shutil.copytree(run / "evaluation", copy / "evaluation", dirs_exist_ok=True)
    fresh.mkdir()
    _publish(copy, fresh, "another-model")
    assert not (copy / "evaluation" / robustness.RESULT_CSV).exists()


def test_h264_reencode_of_an_odd_sized_video(tmp_path, astronaut):
    """libx264's yuv420p needs even sides: an odd-sized video is re-encoded one row/column smaller, not refused."""
    src = write_video(tmp_path / "odd.mp4", face_frames(astronaut, n=4, size=(321, 241)))
    out = perturb.reencode_video(src, 3, tmp_path)
    cap = cv2.VideoCapture(str(out))
    ok, frame = cap.read()
    cap.release()
    assert ok and frame.shape == (240, 320, 3)


def test_untouched_files_come_from_evaluates_cache(tiny_robust_run, tmp_path, monkeypatch):
    """Level 0 is what ``evaluate`` already analysed (analysis/test.jsonl of this model and contract): taken from
    there, not analysed again; the same scores as analysing them."""
    from model.api import Detector
    from training import evaluate

    run = tmp_path / "run"
    shutil.copytree(tiny_robust_run, run, ignore=shutil.ignore_patterns("evaluation", "analysis"))
    cfg, det, index = evaluate._load_run(run)
    files = robustness.choose_files(run, cfg, index)
    evaluate.analyse_split(run, det, files, "test", progress=False)
    calls = []
    for name in ("analyze", "analyze_array"):
        real = getattr(Detector, name)
        monkeypatch.setattr(Detector, name, lambda self, *a, _r=real, **k: calls.append(a[-1]) or _r(self, *a, **k))
    scores = robustness.analyse(run, det, files, ["jpeg"], [1], seed=0, progress=False)
    assert len(calls) == (files["media"] == "image").sum()  # level 1 only: level 0 from evaluate's cache
    cached = evaluate.cached_analyses(run, det, "test")
    clean = scores[scores["level"] == 0]
    assert len(clean) == len(calls)
    for r in clean.itertuples():
        want = cached[next(p for p in cached if evaluate._rel(p) == r.path)]["raw_score"]
        assert (pd.isna(r.raw_score) and want is None) or abs(r.raw_score - want) < 1e-6
