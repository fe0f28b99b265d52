"""Benchmark: training images/s through the real tf.data input pipeline vs the same model fed in-memory tensors.

    python -m bench.train [--config configs/sample.toml] [--steps 30] [--batch 32]

Uses the config's prepared crops when they exist; otherwise writes a small synthetic prepared set (public-domain
skimage portraits, jittered) so it runs on a fresh clone. Prints both rates and ``ratio: X`` = pipeline / in-memory
(goal >= 0.9: the input pipeline must not starve the model). Not a test.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402


def synthetic_prepared(folder: Path, n: int = 256, size: int = 128) -> Path:
    import cv2
    import pandas as pd
    from skimage import data

    from model.faces import FaceExtractor

    base = data.astronaut()
    f = FaceExtractor(crop_size=size).detect(base)[0]
    x0, y0, x1, y1 = f.crop_box
    s = size / (x1 - x0)
    kps = [round((v[j] - (x0, y0)[j]) * s, 2) for v in f.keypoints.values() for j in (0, 1)]
    rng = np.random.default_rng(0)
    recs = []
    (folder / "crops").mkdir(parents=True, exist_ok=True)
    for i in range(n):
        img = np.clip(f.crop.astype(int) + rng.integers(-20, 20, 3), 0, 255).astype(np.uint8)
        p = folder / "crops" / f"{i}.png"
        cv2.imwrite(str(p), img[..., ::-1])
        label = i % 2
        recs.append(dict(crop=f"crops/{i}.png", path=f"synthetic/{i}", video=f"v{i // 8}", dataset="synthetic",
                         media="image", label=label, method="fake" if label else "real", compression="",
                         group=f"g{i // 8}", split="train", frame=0, face=0, confidence=1.0, kps=json.dumps(kps),
                         age=-1, gender=-1, race=-1))
    pd.DataFrame(recs).to_csv(folder / "crops.csv", index=False)
    return folder


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="configs/sample.toml")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--batch", type=int, default=32)
    a = ap.parse_args()
    import keras
    import tensorflow as tf

    from model.network import build_detector
    from training import config as cm
    from training import train as tr

    cfg = cm.load(a.config)
    cfg.train.batch_size = a.batch  # checked on assignment
    tmp = tempfile.TemporaryDirectory()
    if not all(tr.resolve(p).joinpath("crops.csv").is_file() for p in cfg.data.prepared):
        print("prepared data not found: using a synthetic prepared set")
        cfg.data = cfg.data.model_copy(update=dict(
            prepared=[str(synthetic_prepared(Path(tmp.name) / "p", size=cfg.model.input_size))], val_groups=[],
            test_groups=[]))
    df = tr.load_table(cfg)
    ds = tr.build_train_dataset(df, cfg, cfg.seed)
    # the same images, materialised in memory
    xs, ys = [], []
    for x, y in ds.take(a.steps):
        xs.append(x.numpy())
        ys.append(y.numpy())
    mem = tf.data.Dataset.from_tensor_slices((np.concatenate(xs), np.concatenate(ys))).batch(a.batch).cache().repeat()

    model = build_detector(cfg.model.backbone, cfg.model.input_size)
    model.compile(optimizer=keras.optimizers.Adam(1e-4), loss="binary_crossentropy")
    model.fit(mem, steps_per_epoch=3, epochs=1, verbose=0)  # warm-up (tracing)
    model.fit(ds, steps_per_epoch=3, epochs=1, verbose=0)
    res = {}
    for name, data in (("in-memory", mem), ("pipeline", ds), ("in-memory", mem), ("pipeline", ds)):
        t0 = time.perf_counter()
        model.fit(data, steps_per_epoch=a.steps, epochs=1, verbose=0)
        res.setdefault(name, []).append(a.steps * a.batch / (time.perf_counter() - t0))
    mem_rate, pipe_rate = max(res["in-memory"]), max(res["pipeline"])
    print(f"model {cfg.model.backbone} {cfg.model.input_size}px, batch {a.batch}, {a.steps} steps per measurement "
          f"(best of 2, interleaved)")
    print(f"in-memory tensors: {mem_rate:.1f} img/s")
    print(f"tf.data pipeline:  {pipe_rate:.1f} img/s")
    print(f"ratio: {pipe_rate / mem_rate:.2f}")
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
