"""Training from shards, precision and LR rules, and multi-worker training on Ray Train (training.train_ray)."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from tests.conftest import tiny_config


@pytest.fixture(scope="module")
def sharded(prepared, tmp_path_factory):
    """The generated layout's PNG crops re-written as TFRecord shards (the layout prepare --engine ray writes)."""
    import cv2

    from training import prepare, shards

    src, crops = prepared
    out = tmp_path_factory.mktemp("sharded") / "s"
    meta = json.loads((src / "prepare.json").read_text())
    meta["format"] = "shards"
    shards.write_bytes(out, "prepare.json", json.dumps(meta).encode())
    shards.write_bytes(out, "source_index.csv", (src / "source_index.csv").read_bytes())
    recs = []
    for _, r in crops.iterrows():
        recs.append((cv2.imencode(".png", cv2.imread(str(src / r["crop"])))[1].tobytes(), r.to_dict()))
    half = len(recs) // 2
    idx = []
    for k, part in enumerate((recs[:half], recs[half:])):
        blob, offs = shards.write_shard(part)
        rel = f"shards/folder-{k:05d}.tfrecord"
        shards.write_bytes(out, rel, blob)
        for (_, r), o in zip(part, offs):
            idx.append({**r, "crop": f"{rel}@{o}"})
    pd.DataFrame(idx, columns=prepare.CROP_COLUMNS).to_csv(out / "crops.csv", index=False)
    return out


def test_train_dataset_from_shards(sharded, tmp_path):
    import tensorflow as tf

    from training import config as config_mod
    from training import train

    cfg = config_mod.load(tiny_config(tmp_path, sharded))
    df = train.load_table(cfg)
    assert df["file"].str.contains(r"\.tfrecord@").all()
    ds = train.build_train_dataset(df, cfg, seed=0, global_batch=6)
    x, y = next(iter(ds))
    assert x.shape == (6, 64, 64, 3) and x.dtype.name == "float32"
    assert float(x.numpy().max()) <= 255 and set(np.unique(y.numpy())) <= {0.0, 1.0}
    # no per-crop constant: the serialized graph names shard files, never a crop reference (shard@offset)
    g = ds._as_serialized_graph(external_state_policy=tf.data.experimental.ExternalStatePolicy.IGNORE).numpy()
    assert b"folder-00000.tfrecord" in g and b".tfrecord@" not in g
    v = train.val_dataset(df[df["split"] == "val"], 64, 4)
    n = sum(int(b[0].shape[0]) for b in v)
    assert n == int((df["split"] == "val").sum())


def test_precision_lr_rule_and_float32_copy(tmp_path, sharded):
    import keras

    from training import config as config_mod
    from training import train

    assert train.scaled_learning_rate(1e-3, 4) == pytest.approx(4e-3)
    assert train.scaled_learning_rate(1e-3, 1) == pytest.approx(1e-3)
    cfg = config_mod.load(tiny_config(tmp_path, sharded))
    before = keras.config.dtype_policy().name
    m = train.build_model(cfg, "mixed_float16")
    assert keras.config.dtype_policy().name == before  # the global policy is left alone
    assert any(layer.dtype_policy.compute_dtype == "float16" for layer in m.layers)
    f = train.float32_copy(m, cfg)
    assert all(layer.dtype_policy.compute_dtype == "float32" for layer in f.layers)
    x = np.random.default_rng(0).uniform(0, 255, (2, 64, 64, 3)).astype(np.float32)
    np.testing.assert_allclose(f(x).numpy(), m(x).numpy().astype(np.float32), atol=2e-2)


@pytest.mark.slow
def test_ray_train_two_workers_one_epoch_and_reload(sharded, tmp_path):
    from model.api import Detector
    from training import train_ray

    cfg = tiny_config(tmp_path, sharded, epochs=1, steps_per_epoch=2, batch_size=4)
    run = train_ray.train(cfg, workers=2, run_dir=tmp_path / "run")
    scaling = json.loads((run / "scaling.json").read_text())
    assert scaling["replicas"] == 2 and scaling["global_batch"] == 8 and scaling["learning_rate"] == pytest.approx(2e-3)
    hist = pd.read_csv(run / "history.csv")
    assert len(hist) == 1 and np.isfinite(hist["val_auc"]).all()
    det = Detector.load(run / "model")
    assert all(layer.dtype_policy.compute_dtype == "float32" for layer in det.model.layers)
    assert det.input_size == 64
    # resume: the finished run is recognised, nothing retrained
    mtime = (run / "model" / "detector.keras").stat().st_mtime_ns
    train_ray.train(cfg, workers=2, run_dir=tmp_path / "run")
    assert (run / "model" / "detector.keras").stat().st_mtime_ns == mtime
