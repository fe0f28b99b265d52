"""Leave-one-method-out: exclusion of a method's fakes from the train split, and ``lomo`` end to end (tiny)."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from tests.conftest import _fake, person_layout, tiny_config

METHODS = ("MethA", "MethB")


def _fake_b(frame: np.ndarray) -> np.ndarray:
    """A second crude 'manipulation': the face region darkened and sharpened."""
    import cv2

    f = frame.copy()
    region = f[40:200].astype(np.float32)
    sharp = cv2.addWeighted(region, 1.6, cv2.GaussianBlur(region, (0, 0), 3), -0.6, 0) * 0.8
    f[40:200] = np.clip(sharp, 0, 255).astype(np.uint8)
    return f


@pytest.fixture(scope="module")
def two_methods(tmp_path_factory, astronaut):
    """A folder dataset of 4 identities, each with a real video and one fake video per method (MethA, MethB)."""
    from model.crops import CropSpec
    from training import datasets, prepare

    root = person_layout(tmp_path_factory.mktemp("lomo_layout"), astronaut, 8, {"a": _fake, "b": _fake_b})
    df = datasets.index_dataset("folder", root)
    df.loc[df["path"].str.endswith("_a.mp4"), "method"] = "MethA"
    df.loc[df["path"].str.endswith("_b.mp4"), "method"] = "MethB"
    out = tmp_path_factory.mktemp("lomo_prep") / "p"
    crops = prepare.prepare(df, out, spec=CropSpec(size=64, frames=4), progress=False)
    assert set(crops.loc[crops["file_label"] == 1, "method"]) == set(METHODS)
    return out, crops


def _cfg(tmp_path, prepared_dir, exclude=None):
    from training import config

    p = tiny_config(tmp_path, prepared_dir, epochs=1, steps_per_epoch=2)
    if exclude is not None:
        p.write_text(p.read_text().replace("[train]", f"exclude_methods = {json.dumps(exclude)}\n[train]"))
    return config.load(p)


def test_exclude_methods_drops_only_that_methods_train_fakes(two_methods, tmp_path):
    from training import train

    out, _ = two_methods
    full = train.load_table(_cfg(tmp_path, out))
    cut = train.load_table(_cfg(tmp_path, out, ["MethB"]))
    is_b_fake = (full["method"] == "MethB") & (full["file_label"] == 1)
    expected = full[~(is_b_fake & (full["split"] == "train"))]
    assert (is_b_fake & (full["split"] == "train")).sum() > 0  # there was something to drop
    assert sorted(cut["file"]) == sorted(expected["file"])
    tr = cut[cut["split"] == "train"]
    assert not ((tr["method"] == "MethB") & (tr["file_label"] == 1)).any()
    assert ((tr["method"] == "MethA") & (tr["label"] == 1)).sum() == \
        ((full["split"] == "train") & (full["method"] == "MethA") & (full["label"] == 1)).sum()
    for split in ("val", "test"):  # validation and test untouched
        assert sorted(cut.loc[cut["split"] == split, "file"]) == sorted(full.loc[full["split"] == split, "file"])
    assert ((cut["split"] == "val") & is_b_fake.reindex(cut.index, fill_value=False)).any() or \
        ((cut["split"] == "val") & (cut["method"] == "MethB") & (cut["label"] == 1)).any()


def test_exclude_methods_validation(two_methods, tmp_path):
    from training import config, train

    out, _ = two_methods
    with pytest.raises(config.ConfigError, match="no fake crops of MethC"):
        train.load_table(_cfg(tmp_path, out, ["MethC"]))  # a typo is an error, not a silent no-op
    with pytest.raises(config.ConfigError, match="exclude_methods"):
        _cfg(tmp_path, out, [1])
    with pytest.raises(config.ConfigError, match="exclude_methods"):
        _cfg(tmp_path, out, "MethA")


def test_old_run_without_new_config_key_still_resumes(two_methods, tmp_path):
    from training import train

    cfg = _cfg(tmp_path, two_methods[0])
    saved = cfg.to_dict()
    del saved["data"]["exclude_methods"]  # a config.json written before the key existed
    assert train._same_experiment({**saved, "crop_spec": {}}, cfg)
    saved["train"]["epochs"] = 5
    assert not train._same_experiment(saved, cfg)


def test_fold_config_and_toml_roundtrip(tmp_path, two_methods):
    import tomllib

    from research import lomo
    from training import config

    base = tomllib.loads(tiny_config(tmp_path, two_methods[0]).read_text())
    d = lomo.fold_config(base, "MethA", epochs=3, steps=7)
    cfg = config.from_dict(tomllib.loads(lomo.to_toml(d)))
    assert cfg.data.exclude_methods == ["MethA"] and cfg.train.epochs == 3 and cfg.train.steps_per_epoch == 7
    assert cfg.train.early_stopping_patience == 0 and cfg.name == "tiny-lomo-MethA"
    assert cfg.data.val_groups == base["data"]["val_groups"] and cfg.train.learning_rate == base["train"]["learning_rate"]
    ref = lomo.fold_config(base, lomo.REFERENCE)
    assert ref["data"]["exclude_methods"] == [] and ref["train"]["epochs"] == base["train"]["epochs"]


def test_group_bootstrap_metrics_by_hand():
    from sklearn.metrics import roc_auc_score

    from research import lomo

    rng = np.random.default_rng(0)
    rows = []
    for g in range(6):
        for m, lab in (("real", 0), ("MethA", 1), ("MethB", 1)):
            for k in range(5):
                rows.append(dict(file=f"{g}{m}{k}", path=f"{g}{m}", group=f"g{g}", method=m, label=lab, file_label=lab,
                                 score=float(rng.random() * 0.5 + (0.4 if m == "MethA" else 0.1 if m == "MethB" else 0))))
    s = pd.DataFrame(rows)
    df, summ = lomo.metrics({"none": s, "MethA": s.assign(score=s["score"][::-1].to_numpy())}, METHODS, n_boot=200)
    r = df[(df.fold == "none") & (df.method == "MethA")].iloc[0]
    sub = s[s.method.isin(["real", "MethA"])]
    assert r["crop_auc"] == pytest.approx(roc_auc_score(sub["label"], sub["score"]), abs=1e-4)
    f = sub.groupby("path").agg(y=("label", "first"), p=("score", "mean"))
    assert r["file_auc"] == pytest.approx(roc_auc_score(f["y"], f["p"]), abs=1e-4)
    assert r["n_real"] == 30 and r["n_fake"] == 30 and r["n_groups"] == 6 and r["n_fake_files"] == 6
    assert r["crop_auc_ci_lo"] <= r["crop_auc"] <= r["crop_auc_ci_hi"]
    assert list(df.loc[df.held_out, "fold"]) == ["MethA"]
    assert summ["delta_crop_MethA"]["point"] == pytest.approx(
        df[(df.fold == "MethA") & (df.method == "MethA")].crop_auc.iloc[0] - r["crop_auc"], abs=2e-4)
    assert "MethB" in lomo.format_table(df, summ) and "**mean**" in lomo.format_table(df, summ)


@pytest.mark.slow  # three tiny trainings: ~2-3 min on 2 shared cores
def test_lomo_end_to_end(two_methods, tmp_path, capsys):
    from research import lomo
    from research.cli import main
    from training import train

    out, _ = two_methods
    cfg_p = tiny_config(tmp_path, out, epochs=1, steps_per_epoch=2)
    res_dir = tmp_path / "lomo"
    assert main(["lomo", str(cfg_p), "--out", str(res_dir), "--epochs", "2", "--steps", "2",
                 "--methods", *METHODS, "--bootstrap", "50"]) == 0
    printed = capsys.readouterr().out
    assert "| MethA |" in printed and "held out" in printed
    df = pd.read_csv(res_dir / "lomo.csv")
    assert set(df["fold"]) == {"none", *METHODS} and len(df) == 3 * len(METHODS)
    held = df[df["held_out"]]
    assert len(held) == len(METHODS) and (held["fold"] == held["method"]).all()
    assert not df.loc[df["fold"] == "none", "held_out"].any()
    for fold in ("none", *METHODS):
        cfg = json.loads((res_dir / fold / "config.json").read_text())
        assert cfg["data"]["exclude_methods"] == ([] if fold == "none" else [fold])
        assert cfg["train"]["epochs"] == 2 and cfg["train"]["early_stopping_patience"] == 0
        assert (res_dir / fold / "model" / "detector.keras").is_file()
    # counts derived from the validation data
    from training import config

    table = train.load_table(config.load(cfg_p))
    val = table[table["split"] == "val"]
    for m in METHODS:
        for _, r in df[df["method"] == m].iterrows():
            assert r["n_real"] == ((val["file_label"] == 0) & (val["label"] == 0)).sum()
            assert r["n_fake"] == ((val["method"] == m) & (val["label"] == 1)).sum()
            assert r["n_groups"] == val[(val["file_label"] == 0) | (val["method"] == m)]["group"].nunique()
            assert r["n_fake_files"] == val.loc[(val["method"] == m) & (val["file_label"] == 1), "path"].nunique()
            assert 0.0 <= r["crop_auc"] <= 1.0 and 0.0 <= r["file_auc"] <= 1.0
    # every fold is scored with its LAST epoch, whichever epoch validation liked best
    assert (df["scored_epoch"] == 2).all()
    from model.api import Detector
    from training.shards import open_crop

    for fold in ("none", *METHODS):
        best = json.loads((res_dir / fold / "checkpoints" / "best.json").read_text())["epoch"]
        scored = res_dir / fold / ("model" if best == 2 else "model_last")
        assert (df.loc[df["fold"] == fold, "best_epoch"] == best).all()
        sc = pd.read_csv(res_dir / fold / lomo.SCORES)
        det = Detector.load(scored)
        assert det.score_crops(np.stack([open_crop(f) for f in sc["file"][:4]])) == \
            pytest.approx(sc["score"][:4].to_numpy(), abs=1e-5)  # the detector's scores on the stored crops
    # the last-epoch model rebuilt from the backup weights is the epoch-2 model
    run = res_dir / "MethA"
    best_f = run / "checkpoints" / "best.json"
    info = json.loads(best_f.read_text())
    if info["epoch"] == 2:  # best = last: rebuild anyway by pretending epoch 1 was best; weights must equal model/
        best_f.write_text(json.dumps({**info, "epoch": 1}))
        d, e, b = lomo.scoring_model(run)
        assert (d.name, e, b) == ("model_last", 2, 1)
        for w1, w2 in zip(Detector.load(d).model.get_weights(), Detector.load(run / "model").model.get_weights()):
            np.testing.assert_allclose(w1, w2, atol=1e-6)
        best_f.write_text(json.dumps(info))
        import shutil

        shutil.rmtree(run / "model_last")
    else:  # best = epoch 1: model/ is epoch 1, model_last/ epoch 2: different weights
        ws = zip(Detector.load(run / "model_last").model.get_weights(), Detector.load(run / "model").model.get_weights())
        assert any(not np.allclose(a, b) for a, b in ws)
    # a second call trains nothing and gives the same table
    stamp = (res_dir / "none" / "model" / "detector.keras").stat().st_mtime_ns
    r2 = lomo.lomo(cfg_p, res_dir, methods=METHODS, epochs=2, steps=2, n_boot=50, progress=False)
    assert (res_dir / "none" / "model" / "detector.keras").stat().st_mtime_ns == stamp
    assert not any(i["trained_now"] for i in r2["folds"].values())
    pd.testing.assert_frame_equal(pd.read_csv(res_dir / "lomo.csv"), df)
