"""prepare -> train -> evaluate end to end at tiny scale (64 px, 2 epochs, 4 frames) on a generated layout."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pandas as pd
import pytest

from pathlib import Path

from tests.conftest import REPO, tiny_config


def test_prepare_output_and_corrupt_video_logged(prepared):
    out, crops = prepared
    assert set(crops["label"]) == {0, 1}
    assert crops.groupby("video").size().max() <= 4
    assert all((out / c).is_file() for c in crops["crop"])
    img = cv2.imread(str(out / crops["crop"].iloc[0]))
    assert img.shape == (64, 64, 3)
    kps = json.loads(crops["kps"].iloc[0])
    assert len(kps) == 10 and all(0 <= v <= 64 for v in kps)
    errs = pd.read_csv(out / "errors.csv")
    assert len(errs) == 1 and "corrupt" in errs["video"].iloc[0]
    assert not list(out.rglob("*.tmp"))


def test_prepare_is_resumable(prepared, layout):
    from training import datasets, prepare

    out, crops = prepared
    before = {p: p.stat().st_mtime_ns for p in (out / "items").glob("*.json")}
    victim = sorted(before)[0]
    victim.unlink()  # as if killed while this item was in flight
    from model.crops import CropSpec

    again = prepare.prepare(datasets.index_dataset("folder", layout), out, spec=CropSpec(size=64, frames=4), progress=False)
    after = {p: p.stat().st_mtime_ns for p in (out / "items").glob("*.json")}
    assert len(again) == len(crops)
    assert victim in after and all(after[p] == t for p, t in before.items() if p != victim)
    with pytest.raises(ValueError, match="prepared with"):
        prepare.prepare(datasets.index_dataset("folder", layout), out, spec=CropSpec(size=96, frames=4), progress=False)


def test_train_evaluate_end_to_end_and_resume(prepared, tmp_path, monkeypatch):
    import keras

    from training import evaluate, train

    out, _ = prepared
    cfg = tiny_config(tmp_path, out)
    run = tmp_path / "run"

    # first attempt is "killed" after epoch 1
    real_cbs = train._callbacks

    class Kill(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 1:
                raise KeyboardInterrupt("simulated kill")

    monkeypatch.setattr(train, "_callbacks", lambda *a, **k: real_cbs(*a, **k) + [Kill()])
    with pytest.raises(KeyboardInterrupt):
        train.train(cfg, run_dir=run)
    assert len(pd.read_csv(run / "history.csv")) == 1
    assert not (run / "model" / "detector.keras").exists()  # nothing half-written looks complete
    monkeypatch.setattr(train, "_callbacks", real_cbs)
    train.train(cfg, run_dir=run)  # resumes at epoch 2
    hist = pd.read_csv(run / "history.csv")
    assert list(hist["epoch"]) == [0, 1]
    assert {"loss", "auc", "accuracy", "val_loss", "val_auc", "val_accuracy"} <= set(hist.columns)
    card = json.loads((run / "model" / "model_card.json").read_text())
    assert card["trained"] and card["input_size"] == 64
    assert card["crop_spec"]["size"] == 64 and card["crop_spec"]["frames"] == 4  # the contract travels with the model
    assert json.loads((run / "config.json").read_text())["crop_spec"] == card["crop_spec"]

    # calibration + operating point on the validation FILES, analysed through the engine
    r = evaluate.calibrate_run(run, policy="fpr", target_fpr=0.5, progress=False)
    from model.api import Detector

    det = Detector.load(run / "model")
    assert det.threshold == pytest.approx(r["threshold"], abs=1e-5)
    assert det.calibration.method in ("none", "platt", "isotonic") and r["n_val_files"] == 4  # p1, p2: real + fake
    val = [l for l in (run / "analysis" / "val.jsonl").read_text().splitlines()[1:]]
    raw = {json.loads(l)["path"]: json.loads(l)["raw_score"] for l in val}
    for path, rs in raw.items():  # the cache holds exactly what the engine gives
        res = det.analyze(path)
        assert res.raw_score == pytest.approx(rs, abs=1e-5)
        assert res.score == pytest.approx(det.calibrate(rs), abs=1e-6)
    with pytest.raises(ValueError):
        evaluate.calibrate_run(run, policy="median", progress=False)

    summary = evaluate.evaluate_run(run, n_boot=50, progress=False)
    assert "file AUC" in summary
    ev = run / "evaluation"
    m = json.loads((ev / "metrics.json").read_text())
    pred = pd.read_csv(ev / "predictions.csv")
    faces = pd.read_csv(ev / "face_predictions.csv")
    assert set(pred["group"]) == {"folder:p3"}  # only the held-out identity group is evaluated
    assert len(pred) == 2 and m["n_files"] == 2 and m["schema"] == 2
    head = m["headline"]
    assert head["level"] == "file" and head["n"] == 2 and head["tn"] + head["fp"] + head["fn"] + head["tp"] == 2
    from sklearn.metrics import roc_auc_score

    assert head["auc"] == pytest.approx(roc_auc_score(pred["label"], pred["score"]), abs=1e-4)
    assert pred["score"].to_numpy() == pytest.approx(det.calibrate(pred["raw_score"].to_numpy()), abs=1e-5)
    # the file score is the engine's: analysing the file again gives the same number
    res = det.analyze((REPO / pred["path"].iloc[0]).resolve())
    assert res.score == pytest.approx(pred["score"].iloc[0], abs=1e-5)
    assert len(faces) >= 2 and set(faces["path"]) == set(pred["path"])
    for f in ("roc_file.csv", "pr_file.csv", "reliability.csv", "score_by_source.csv"):
        assert (ev / f).is_file()
    rel = pd.read_csv(ev / "reliability.csv")
    assert set(rel["stage"]) == {"raw", "calibrated"} and set(rel["split"]) == {"val", "test"}
    card = json.loads((run / "model" / "model_card.json").read_text())
    assert card["metrics"]["headline"]["auc"] == head["auc"]
    assert not list((run / "model").glob("*.tmp")) and not (run / "evaluation.tmp").exists()  # atomic writes
    # the columns the dashboard reads
    assert list(pred.columns)[:len(evaluate.FILE_COLS)] == evaluate.FILE_COLS
    assert list(faces.columns) == evaluate.FACE_COLS
    assert list(rel.columns) == ["level", "stage", "split", "bin", "mean_score", "fraction_fake", "count"]
    assert list(pd.read_csv(ev / "score_by_source.csv").columns) == ["dataset", "media", "label", "n", "p10", "p25",
                                                                     "p50", "p75", "p90"]
    assert list(pd.read_csv(ev / "roc_file.csv").columns) == ["fpr", "tpr", "threshold"]
    assert {f"{k}_ci" for k in ("auc", "ap", "eer", "log_loss", "brier", "ece", "false_alarm_rate",
                                "detection_rate")} <= set(head)


def test_unknown_config_key_rejected(tmp_path, prepared):
    from training import config

    p = tiny_config(tmp_path, prepared[0])
    p.write_text(p.read_text() + "learning_rat = 0.1\n")
    with pytest.raises(config.ConfigError, match="unknown key.*learning_rat"):
        config.load(p)
    p.write_text('name = "x"\nbogus = 1\n')
    with pytest.raises(config.ConfigError, match="bogus"):
        config.load(p)


def test_train_cli_reports_config_errors(tmp_path, capsys):
    from training.cli import main

    p = tmp_path / "bad.toml"
    p.write_text('name = "x"\n[model]\nbackbone = "vgg"\n')
    assert main(["train", str(p)]) == 2
    assert "backbone" in capsys.readouterr().err


def test_train_stream_is_label_balanced_and_deterministic(prepared, tmp_path):
    from training import config, train

    cfg = config.load(tiny_config(tmp_path, prepared[0]))
    df = train.load_table(cfg)

    def labels(seed):
        ds = train.build_train_dataset(df, cfg, seed)
        return np.concatenate([y.numpy() for _, y in ds.take(40)])

    a = labels(1)
    assert 0.4 < a.mean() < 0.6  # half real, half fake (dataset fakes + self-blended)
    np.testing.assert_array_equal(a, labels(1))  # same seed, same stream
    x, _ = next(iter(train.build_train_dataset(df, cfg, 1)))
    assert x.shape == (8, 64, 64, 3) and float(x.numpy().max()) <= 255.0


def test_real_only_dataset_gets_self_blended_fakes_even_without_sbi_weight(prepared, tmp_path):
    # sbi_weight sets the own-fakes : self-blended ratio where a dataset HAS fakes; a real-only set (photos, DFD
    # actors) must still get self-blended fakes of its own faces, or it teaches "this source is real"
    from training import config, train

    cfg = config.load(tiny_config(tmp_path, prepared[0]))
    cfg.data.fake_weight, cfg.data.sbi_weight = 0.5, 0.0
    df = train.load_table(cfg)
    reals_only = df[df["label"] == 0]
    y = np.concatenate([b.numpy() for _, b in train.build_train_dataset(reals_only, cfg, 1).take(40)])
    assert 0.4 < y.mean() < 0.6
    # where the dataset has fakes, sbi_weight 0 means its own fakes only (none self-blended): the stream still
    # holds both labels
    y2 = np.concatenate([b.numpy() for _, b in train.build_train_dataset(df, cfg, 1).take(40)])
    assert 0.4 < y2.mean() < 0.6


def test_keypoints_follow_the_model_input_size():
    from training.train import kps_array

    df = pd.DataFrame({"kps": [json.dumps([64.0, 32.0] * 5), ""], "crop_size": [128, 128]})
    k = kps_array(df, 64)
    assert k.shape == (2, 10)
    np.testing.assert_allclose(k[0], [32.0, 16.0] * 5)
    assert not k[1].any()  # missing keypoints stay zero (self-blending then uses a canonical layout)


def test_reevaluation_keeps_explain_eval_of_the_same_model_only(tiny_run, tmp_path):
    import json
    import shutil

    from training import evaluate

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    ev = run / "evaluation"
    (ev / "explain_eval.json").write_text('{"schema": 1, "methods": []}')
    (run / "evaluation.tmp").mkdir()
    (run / "evaluation.tmp" / "stale.csv").write_text("left by an interrupted evaluation\n")
    evaluate.evaluate_run(run, n_boot=20, progress=False)
    assert (ev / "explain_eval.json").is_file(), "same model: the costly explain-eval results are kept"
    assert not (ev / "stale.csv").exists(), "an interrupted evaluation's files must not be published"
    m = json.loads((ev / "metrics.json").read_text())
    m["model_key"] = "another model"
    (ev / "metrics.json").write_text(json.dumps(m))
    evaluate.evaluate_run(run, n_boot=20, progress=False)
    assert not (ev / "explain_eval.json").exists(), "another model's explanations must not survive"
