"""Benchmark: memory of the training input pipeline on a synthetic 1 M-crop sharded index, and split assignment
on a synthetic 119 k-video DFDC index.

    python -m bench.train_index [--crops 1000000] [--crops-per-video 32] [--videos 119000]

Writes a sharded prepared folder whose ``crops.csv`` has ``--crops`` rows (``--crops-per-video`` crops per video,
64 videos per shard; the shard files themselves are two small real shards, so the pipeline can be iterated),
then measures in THIS process the resident memory (RSS) added by
  1. ``load_table`` (crops.csv + source index + splits computed at training time), and
  2. ``build_train_dataset`` (the tf.data graph: shard names + a per-video split table, no per-crop constants)
     plus pulling 20 batches through it,
and times ``assign_splits`` on 119 k DFDC videos in 50 parts. Prints ``pipeline MB: X`` (target < 500; the
pipeline alone, i.e. step 2) and the table's memory. Not a test.
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


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def synthetic(folder: Path, n: int, per_video: int, size: int = 64) -> Path:
    import cv2
    import numpy as np
    import pandas as pd

    from model.crops import CropSpec
    from training import prepare, shards

    spec = CropSpec(size=size)
    shards.write_bytes(folder, "prepare.json", json.dumps({"crop_spec": spec.to_dict(), "version": 2,
                                                          "format": "shards"}).encode())
    nv = n // per_video
    vids = np.arange(nv)
    label = (vids % 5 != 0).astype(int)
    part = vids % 50
    paths = np.char.add(np.char.add(np.char.add("/d/dfdc_train_part_", part.astype(str)), "/"), vids.astype(str))
    paths = np.char.add(paths, ".mp4")
    idx = pd.DataFrame({"path": paths, "dataset": "dfdc", "media": "video", "label": label, "method": "",
                        "compression": "", "group": np.char.add("dfdc:part", part.astype(str)), "ids": "",
                        "original": "", "split": ""})
    idx.to_csv(folder / "source_index.csv", index=False)
    # two real shards; every crop reference points into one of them (the pipeline only needs the files to exist)
    rng = np.random.default_rng(0)
    offs = {}
    for k in range(2):
        recs = []
        for j in range(64):
            v = k * 64 + j
            png = cv2.imencode(".png", rng.integers(0, 255, (size, size, 3), dtype=np.uint8))[1].tobytes()
            recs.append((png, {"label": int(label[v]), "file_label": int(label[v]), "frame": 0, "face": 0, "track": 0,
                               "kps": [20.0] * 10, "video": f"v{v}", "dataset": "dfdc", "path": paths[v]}))
        blob, o = shards.write_shard(recs)
        shards.write_bytes(folder, f"shards/dfdc-{k:05d}.tfrecord", blob)
        offs[k] = o
    crop_v = np.repeat(vids, per_video)[:n]
    shard_no = (crop_v // 64) % 2
    crop = [f"shards/dfdc-{s:05d}.tfrecord@{offs[s][v % 64]}" for s, v in zip(shard_no, crop_v)]
    df = pd.DataFrame({c: "" for c in prepare.CROP_COLUMNS}, index=range(n))
    df["crop"] = crop
    df["path"] = paths[crop_v]
    df["video"] = np.char.add("v", crop_v.astype(str))
    df["dataset"] = "dfdc"
    df["media"] = "video"
    df["label"] = label[crop_v]
    df["file_label"] = label[crop_v]
    df["group"] = idx["group"].to_numpy()[crop_v]
    df["frame"] = 0
    df["kps"] = "[" + ",".join(["20.0"] * 10) + "]"
    df.to_csv(folder / "crops.csv", index=False)
    return folder


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--crops", type=int, default=1_000_000)
    ap.add_argument("--crops-per-video", type=int, default=32)
    ap.add_argument("--videos", type=int, default=119_000)
    a = ap.parse_args()
    import numpy as np
    import pandas as pd
    import tensorflow as tf  # noqa: F401 - imported before the baseline

    from training import config as config_mod
    from training import train
    from training.datasets import assign_splits

    with tempfile.TemporaryDirectory() as td:
        folder = synthetic(Path(td) / "prep", a.crops, a.crops_per_video)
        cfg = config_mod.from_dict({"name": "bench", "model": {"input_size": 64},
                                    "data": {"prepared": [str(folder)]}, "train": {"batch_size": 32}})
        import gc

        for _ in tf.data.Dataset.range(4).map(lambda x: x + 1).batch(2):  # TF runtime start-up, not the pipeline
            pass
        gc.collect()
        base = rss_mb()
        t0 = time.perf_counter()
        df = train.load_table(cfg)
        t_table = time.perf_counter() - t0
        table_mb = rss_mb() - base
        frame_mb = df.memory_usage(deep=True).sum() / 2**20
        mid = rss_mb()
        t0 = time.perf_counter()
        ds = train.build_train_dataset(df, cfg, seed=0)
        for _ in ds.take(20):
            pass
        t_pipe = time.perf_counter() - t0
        pipe_mb = rss_mb() - mid
        print(f"crops: {len(df)} in the train/val/test table ({a.crops} in crops.csv), videos: {df['video'].nunique()}")
        print(f"load_table: {t_table:.1f} s, +{table_mb:.0f} MB RSS (DataFrame deep size {frame_mb:.0f} MB)")
        print(f"build_train_dataset + 20 batches: {t_pipe:.1f} s, +{pipe_mb:.0f} MB RSS")
    n = a.videos
    rng = np.random.default_rng(0)
    p = rng.integers(0, 50, n)
    idx = pd.DataFrame({"path": [f"/d/dfdc_train_part_{q}/{i}.mp4" for i, q in zip(range(n), p)], "dataset": "dfdc",
                        "media": "video", "label": (np.arange(n) % 6 != 0).astype(int),
                        "group": [f"dfdc:dfdc_train_part_{q}" for q in p], "ids": "", "split": ""})
    t0 = time.perf_counter()
    assign_splits(idx, val=0.15, test=0.2, seed=0)
    print(f"assign_splits on {n} DFDC videos: {time.perf_counter() - t0:.2f} s")
    print(f"table MB: {table_mb:.0f}")
    print(f"pipeline MB: {pipe_mb:.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
