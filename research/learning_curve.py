"""Learning curve by number of training identities: ``python -m research learning-curve CONFIG``.

How does validation AUC grow with the number of training identity groups? Fine-tuning the detector once per
point is far too slow for a CPU, so this measures a cheap proxy: a LINEAR PROBE ON FROZEN FEATURES.

* Features: the configured backbone with its pretrained weights (``model.weights``; ImageNet for the Lite
  models), cut at the detector's global average pooling (``head_pool``): no head, no fine-tuning. Crops are read
  as RGB (``training.shards.open_crop``: cv2 for PNG crops) at the config's input size and fed as raw 0-255
  pixels, exactly as the detector is fed (the Lite graph normalises inside, layer ``lite_normalize``; the
  keras.applications EfficientNets rescale inside too). Features are cached in ``<out>/features_*.npz`` keyed
  by crop file, so a rerun only extracts the crops it has not seen.
* Data: the video datasets used for validation (``data.val_datasets``; all datasets when empty), splits exactly
  as ``train`` computes them (``training.train.load_table``). Training identities are the distinct ``group``
  values of their train-split rows. At most ``per_video`` crops per file (evenly spaced over frames) are used.
  No self-blended fakes and no augmentation: the probe sees the dataset's own labels only (per crop/track).
* For each n of identity-group counts, ``repeats`` distinct seeded draws of n train groups (draws whose crops
  lack one class, or repeat an earlier draw, are redrawn; with n = all groups there is one draw only): standardised features -> logistic regression
  (``C``, balanced class weights) -> P(fake) of every validation crop; crop AUC on crop labels, file AUC on the
  mean crop probability per file against the file's label.

Output: ``<out>/learning_curve.csv`` (one row per draw) and ``<out>/learning_curve.json`` (summary per n).
This is evidence about the data (does adding identities help a fixed representation?), not the detector's
own learning curve: fine-tuning can use more data differently.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from training import config as config_mod

log = logging.getLogger(__name__)
CSV = "learning_curve.csv"
JSON = "learning_curve.json"
METHOD = ("linear probe on frozen features: {backbone} ({weights}) global-average-pooled features, "
          "StandardScaler + LogisticRegression(C={C}, class_weight=balanced); no fine-tuning, no self-blended fakes")
Featurizer = Callable[[list[str]], np.ndarray]


# --------------------------------------------------------------------------- data
def select_per_video(df: pd.DataFrame, per_video: int) -> pd.DataFrame:
    """At most ``per_video`` crops of each file (``path``), evenly spaced over (frame, face); 0: all."""
    if per_video <= 0 or df.empty:
        return df
    keep = []
    for _, g in df.sort_values(["path", "frame", "face"]).groupby("path", sort=False):
        idx = np.unique(np.linspace(0, len(g) - 1, min(per_video, len(g))).round().astype(int))
        keep.extend(g.index[idx])
    return df.loc[sorted(keep)]


def probe_table(cfg: config_mod.Config, per_video: int) -> pd.DataFrame:
    """Train and val crops of the validation datasets (splits as training computes them), capped per file."""
    from training.train import load_table

    df = load_table(cfg)
    if cfg.data.val_datasets:
        df = df[df["dataset"].isin(cfg.data.val_datasets)]
    df = df[df["split"].isin(("train", "val"))]
    if df.empty:
        raise ValueError("no train/val crops in the validation datasets: check data.prepared and data.val_datasets")
    return select_per_video(df, per_video).reset_index(drop=True)


# --------------------------------------------------------------------------- features
def weights_tag(cfg: config_mod.Config) -> str:
    """Names the backbone weights in the cache file (a content hash of a weights file)."""
    w = cfg.model.weights
    if not w:
        return f"random{cfg.seed}"
    if w == "imagenet":
        return "imagenet"
    from training.train import resolve

    p = resolve(w)
    if not p.is_file():
        raise FileNotFoundError(f"{p} not found: run `python -m training convert-lite` first")
    h = hashlib.sha1()
    with open(p, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:10]


def backbone_featurizer(cfg: config_mod.Config, batch: int = 64, threads: int = 0) -> Featurizer:
    """files -> (N, D) float32 pooled backbone features (the detector's ``head_pool`` output, frozen)."""
    if threads > 0:
        from model.video import limit_threads

        limit_threads(threads)
    import keras

    from training.train import build_model, load_images, resolve

    weights = cfg.model.weights
    if weights and weights != "imagenet":
        weights = str(resolve(weights))
    keras.utils.set_random_seed(cfg.seed)
    det = build_model(cfg, "float32", weights=weights)
    feat = keras.Model(det.input, det.get_layer("head_pool").output)
    size = cfg.model.input_size

    def featurize(files: list[str]) -> np.ndarray:
        out = []
        t0 = time.time()
        for i in range(0, len(files), batch):
            x = load_images(files[i:i + batch], size).astype(np.float32)  # RGB 0-255, as the detector gets it
            out.append(np.asarray(feat(x, training=False), np.float32))
            done = min(i + batch, len(files))
            print(f"features {done}/{len(files)} ({done / max(time.time() - t0, 1e-9):.1f} crops/s)",
                  file=sys.stderr, flush=True)
        return np.concatenate(out) if out else np.zeros((0, int(feat.output.shape[-1])), np.float32)

    return featurize


def cached_features(files: Sequence[str], cache: Path, featurize: Featurizer) -> np.ndarray:
    """Features of ``files`` in order; those in the ``cache`` .npz are read, the rest computed and added."""
    files = [str(f) for f in files]
    known: dict[str, np.ndarray] = {}
    if cache.is_file():
        with np.load(cache, allow_pickle=False) as z:
            known = dict(zip(z["files"].tolist(), z["features"]))
    missing = sorted(set(files) - set(known))
    if missing:
        new = np.asarray(featurize(missing), np.float32)
        if new.shape[0] != len(missing):
            raise ValueError(f"featurizer returned {new.shape[0]} rows for {len(missing)} files")
        known.update(zip(missing, new))
        keys = sorted(known)
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_name(cache.name + ".tmp.npz")
        np.savez(tmp, files=np.array(keys), features=np.stack([known[k] for k in keys]))
        os.replace(tmp, cache)
    log.info("features: %d cached, %d extracted -> %s", len(files) - len(missing), len(missing), cache)
    return np.stack([known[f] for f in files]) if files else np.zeros((0, 0), np.float32)


# --------------------------------------------------------------------------- the curve
def default_ns(n_total: int) -> list[int]:
    """2, 4, 8, ... below ``n_total``, then ``n_total``."""
    ns, n = [], 2
    while n < n_total:
        ns.append(n)
        n *= 2
    return ns + [n_total] if n_total >= 1 else []


def _auc(y: np.ndarray, p: np.ndarray) -> float:
    """``model.metrics.auc``, nan (not None) without both classes: the curve's columns stay numeric."""
    from model.metrics import auc

    a = auc(y, p)
    return float("nan") if a is None else a


def fit_probe(x: np.ndarray, y: np.ndarray, C: float = 1.0, seed: int = 0):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    clf = make_pipeline(StandardScaler(), LogisticRegression(C=C, class_weight="balanced", max_iter=5000,
                                                             random_state=seed))
    return clf.fit(x, y)


def curve(table: pd.DataFrame, feats: np.ndarray, ns: Sequence[int] | None = None, repeats: int = 5,
          seed: int = 0, C: float = 1.0, max_draws: int = 1000) -> pd.DataFrame:
    """One row per (n groups, repeat): the probe trained on n sampled train groups, scored on the val split.

    ``table`` rows align with ``feats`` and need columns split, group, label (crop), path (file) and
    optionally file_label (the file's label; default: the max crop label of the file).
    """
    table = table.reset_index(drop=True)
    if len(table) != len(feats):
        raise ValueError(f"{len(table)} rows but {len(feats)} feature vectors")
    tr = table.index[table["split"] == "train"].to_numpy()
    va = table.index[table["split"] == "val"].to_numpy()
    if not len(va) or table.loc[va, "label"].nunique() < 2:
        raise ValueError("the validation split needs real and fake crops")
    groups = sorted(table.loc[tr, "group"].unique())
    if not groups:
        raise ValueError("no training groups")
    labels_of = {g: set(s) for g, s in table.loc[tr].groupby("group")["label"]}
    if set().union(*labels_of.values()) != {0, 1}:
        raise ValueError("the training groups need real and fake crops")
    ns = sorted({int(n) for n in (ns or default_ns(len(groups))) if 1 <= int(n) <= len(groups)})
    if not ns:
        raise ValueError(f"no usable n: there are {len(groups)} training groups")

    val = table.loc[va]
    y_val = val["label"].to_numpy(int)
    file_label = (val["file_label"] if "file_label" in val else val.groupby("path")["label"].transform("max"))
    files = val.assign(file_label=file_label.astype(int)).groupby("path")["file_label"].first()
    x_val = feats[va]
    tr_group = table.loc[tr, "group"].to_numpy()
    rows = []
    for n in ns:
        rng = np.random.default_rng([seed, n])
        seen: set[tuple[str, ...]] = set()
        for r in range(1 if n == len(groups) else repeats):
            for _ in range(max_draws):
                pick = sorted(rng.choice(groups, size=n, replace=False).tolist())
                if tuple(pick) not in seen and set().union(*(labels_of[g] for g in pick)) == {0, 1}:
                    break
            else:
                if seen:  # fewer distinct usable draws of n groups than repeats
                    break
                raise ValueError(f"no draw of {n} groups holds both classes in {max_draws} tries")
            seen.add(tuple(pick))
            idx = tr[np.isin(tr_group, pick)]
            y = table.loc[idx, "label"].to_numpy(int)
            clf = fit_probe(feats[idx], y, C=C, seed=seed)
            p = clf.predict_proba(x_val)[:, 1]
            per_file = pd.Series(p, index=val["path"].to_numpy()).groupby(level=0).mean()
            rows.append({"n_groups": n, "repeat": r, "n_crops": int(len(idx)),
                         "val_crop_auc": _auc(y_val, p),
                         "val_file_auc": _auc(files.loc[per_file.index].to_numpy(), per_file.to_numpy()),
                         "n_files": int(table.loc[idx, "path"].nunique()), "groups": ";".join(pick)})
    return pd.DataFrame(rows)


def summarize(rows: pd.DataFrame) -> list[dict]:
    out = []
    for n, g in rows.groupby("n_groups"):
        d = {"n_groups": int(n), "repeats": int(len(g)), "n_crops_mean": float(g["n_crops"].mean())}
        for m in ("val_file_auc", "val_crop_auc"):
            d[f"{m}_mean"], d[f"{m}_min"], d[f"{m}_max"] = (float(g[m].mean()), float(g[m].min()), float(g[m].max()))
        out.append(d)
    return out


def format_table(summary: list[dict]) -> str:
    lines = [f"{'groups':>6} {'draws':>5} {'crops':>7}   {'val file AUC mean [min-max]':<28} val crop AUC mean [min-max]"]
    for d in summary:
        lines.append(f"{d['n_groups']:>6} {d['repeats']:>5} {d['n_crops_mean']:>7.0f}   "
                     f"{d['val_file_auc_mean']:.3f} [{d['val_file_auc_min']:.3f}-{d['val_file_auc_max']:.3f}]        "
                     f"{d['val_crop_auc_mean']:.3f} [{d['val_crop_auc_min']:.3f}-{d['val_crop_auc_max']:.3f}]")
    return "\n".join(lines)


def run(config_path: str | Path, out: str | Path = "runs/_learning_curve", ns: Sequence[int] | None = None,
        repeats: int = 5, per_video: int = 8, C: float = 1.0, seed: int = 0, threads: int = 0,
        featurize: Featurizer | None = None, feature_tag: str | None = None) -> dict:
    """The whole learning curve; returns the summary written to ``<out>/learning_curve.json``.

    ``featurize`` (files -> features) replaces the backbone (tests); ``feature_tag`` then names its cache file.
    """
    from training.train import resolve

    t0 = time.time()
    cfg = config_mod.load(config_path)
    out = resolve(out)
    table = probe_table(cfg, per_video)
    tag = feature_tag or f"{cfg.model.backbone}_{cfg.model.input_size}_{weights_tag(cfg)}"
    cache = out / f"features_{tag}.npz"
    lazy: dict[str, Featurizer] = {}

    def extract(files: list[str]) -> np.ndarray:  # builds the backbone only when something is missing
        if "f" not in lazy:
            lazy["f"] = featurize or backbone_featurizer(cfg, threads=threads)
        return lazy["f"](files)

    t_feat = time.time()
    feats = cached_features(table["file"].tolist(), cache, extract)
    t_feat = time.time() - t_feat
    rows = curve(table, feats, ns=ns, repeats=repeats, seed=seed, C=C)
    out.mkdir(parents=True, exist_ok=True)
    rows.to_csv(out / CSV, index=False)
    val, tr = table[table["split"] == "val"], table[table["split"] == "train"]
    summary = {
        "method": METHOD.format(backbone=cfg.model.backbone, weights=cfg.model.weights or "random init", C=C),
        "config": str(config_path), "datasets": sorted(table["dataset"].unique()), "per_video": per_video,
        "repeats": repeats, "seed": seed, "C": C,
        "train_groups": sorted(tr["group"].unique()), "n_train_crops_all": int(len(tr)),
        "n_train_files_all": int(tr["path"].nunique()),
        "val_groups": sorted(val["group"].unique()), "n_val_crops": int(len(val)),
        "n_val_files": int(val["path"].nunique()),
        "n_val_files_fake": int(val.groupby("path")["file_label" if "file_label" in val else "label"].max().sum()),
        "out": str(out), "feature_cache": str(cache), "feature_seconds": round(t_feat, 1), "seconds": round(time.time() - t0, 1),
        "curve": summarize(rows),
    }
    (out / JSON).write_text(json.dumps(summary, indent=2) + "\n")
    return summary
