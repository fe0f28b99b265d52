"""Leave-one-method-out: ``python -m research lomo CONFIG [--out DIR] [--epochs N] [--steps N]``.

How does the training recipe do on a manipulation it never trained on? For FaceForensics++'s four methods
(Deepfakes, Face2Face, FaceSwap, NeuralTextures) this trains one run per FOLD into ``<out>/<fold>/``:

* fold ``none`` (the reference): the config as given;
* fold ``M`` for each method M: the same config with ``data.exclude_methods = [M]``: the fake files of M are
  dropped from the TRAIN split only (``training.train.exclude_train_methods``); validation and test keep them.

Every fold has the same fixed budget (``--epochs`` / ``--steps`` override ``train.epochs`` /
``train.steps_per_epoch``) and ``train.early_stopping_patience = 0`` (no early stop). ``train`` still keeps its
best epoch by validation AUC as ``<fold>/model``, and validation contains the held-out method, so that model is
chosen partly ON the held-out method: the fold is scored with its LAST epoch instead (``<fold>/model`` when the
best epoch is the last one, otherwise ``<fold>/model_last``, rebuilt from the last epoch's backup weights). The
derived configs are written to ``<out>/configs/<fold>.toml``. Folds are resumable (``train`` resumes an interrupted
run) and a finished fold is not trained again (whatever budget it was trained with: ``epochs``/``steps`` columns).

Scoring: every crop of the validation split (``--splits``; default ``val``) of the config's ``data.val_datasets``
(all datasets when empty), splits exactly as ``train`` computes them, read from the prepared folders
(``training.shards.open_crop``: the stored crops follow the engine's crop contract) and scored by
``Detector.score_crops`` (raw network P(fake); calibration plays no part in AUC). Scores are cached per fold in
``<fold>/lomo_scores.csv``.

Metrics, for each fold and each method E of the four:

* crop AUC: real crops (``label`` 0 of real files, ``file_label`` 0) against the fake crops of E (``method`` E,
  ``label`` 1);
* file AUC: real files against the fake files of E, a file's score being the MEAN of its crop scores.

95 % intervals: percentile bootstrap (``n_boot`` draws, seeded) resampling the identity GROUPS of the scored
table with replacement; the same draws serve every fold and method, so the held-out-minus-reference difference
(``delta``) and the means over methods get paired intervals. A draw lacking a class for a slice is skipped for
it; an interval needs at least max(20, n_boot / 4) usable draws (else empty).

Output: ``<out>/lomo.csv`` (``lomo_<splits>.csv`` for other splits), one row per fold and method, and a markdown
table (method x {trained on all, held out}) printed by the CLI.
"""
from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from model import metrics as model_metrics  # (lomo.metrics is this module's own function)
from training import config as config_mod

log = logging.getLogger(__name__)
FFPP_METHODS = ("Deepfakes", "Face2Face", "FaceSwap", "NeuralTextures")
REFERENCE = "none"
SCORES = "lomo_scores.csv"
BOOTSTRAP = model_metrics.BOOTSTRAP


# --------------------------------------------------------------------------- configs
def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        if isinstance(v, float) and not np.isfinite(v):
            raise config_mod.ConfigError(f"cannot write {v} to TOML")
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)  # a TOML basic string (same escapes)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise config_mod.ConfigError(f"cannot write {type(v).__name__} to TOML")


def to_toml(d: dict) -> str:
    """A config dict (scalars, lists, one level of tables) as TOML; None values are left out (their default)."""
    lines = [f"{k} = {_toml_value(v)}" for k, v in d.items() if v is not None and not isinstance(v, dict)]
    for k, v in d.items():
        if isinstance(v, dict):
            lines += ["", f"[{k}]"] + [f"{kk} = {_toml_value(vv)}" for kk, vv in v.items() if vv is not None]
    return "\n".join(lines) + "\n"


def fold_config(base: dict, fold: str, epochs: int | None = None, steps: int | None = None) -> dict:
    """The config dict of one fold: ``base`` with exclude_methods [fold] (none for the reference), the budget
    overridden where given and no early stopping."""
    d = json.loads(json.dumps(base))  # deep copy
    d["name"] = f"{d.get('name', 'experiment')}-lomo-{fold}"
    d["description"] = (f"leave-one-method-out fold {fold}: " + ("all methods trained" if fold == REFERENCE else
                        f"{fold} fakes dropped from the train split")
                        + (f" ({base['description']})" if base.get("description") else ""))
    d.setdefault("data", {})["exclude_methods"] = [] if fold == REFERENCE else [fold]
    tr = d.setdefault("train", {})
    if epochs is not None:
        tr["epochs"] = int(epochs)
    if steps is not None:
        tr["steps_per_epoch"] = int(steps)
    tr["early_stopping_patience"] = 0
    config_mod.from_dict(d)  # validate
    return d


# --------------------------------------------------------------------------- folds
def fold_finished(run: Path) -> bool:
    """A run folder whose model exists and whose history holds all the epochs its own config asked for."""
    cj, hist = run / "config.json", run / "history.csv"
    if not (cj.is_file() and hist.is_file() and (run / "model" / "detector.keras").is_file()):
        return False
    return len(pd.read_csv(hist)) >= int(json.loads(cj.read_text())["train"]["epochs"])


def scoring_model(run: Path) -> tuple[Path, int, int]:
    """(model folder, its epoch, best epoch) of a finished fold: its LAST epoch's weights (see module doc)."""
    from model.network import ModelCard, save_detector
    from training.train import HISTORY, build_model

    last = len(pd.read_csv(run / HISTORY))
    best = int(json.loads((run / "checkpoints" / "best.json").read_text())["epoch"])
    if best == last:
        return run / "model", last, best
    out = run / "model_last"
    card_f = out / "model_card.json"
    if card_f.is_file() and json.loads(card_f.read_text()).get("metrics", {}).get("epoch") == last:
        return out, last, best
    backup = run / "checkpoints" / "backup"
    meta = json.loads((backup / "training_metadata.json").read_text())
    if int(meta["epoch"]) != last:
        raise ValueError(f"{backup} holds epoch {meta['epoch']}, history.csv {last} epochs: cannot rebuild the last epoch")
    cfg = config_mod.from_dict({k: v for k, v in json.loads((run / "config.json").read_text()).items() if k != "crop_spec"})
    model = build_model(cfg, "float32")
    model.load_weights(backup / "latest.weights.h5")
    card = ModelCard.from_dict(json.loads((run / "model" / "model_card.json").read_text()))
    card.metrics = {"epoch": last, "best_epoch": best}
    card.notes = f"LAST epoch ({last}) of a leave-one-method-out fold, for scoring without model selection"
    save_detector(model, card, out)
    return out, last, best


def scored_table(cfg: config_mod.Config, splits: Sequence[str]) -> pd.DataFrame:
    """The crops to score: ``splits`` of the validation datasets, splits as ``train`` computes them."""
    from training.train import load_table

    df = load_table(cfg)
    if cfg.data.val_datasets:
        df = df[df["dataset"].isin(cfg.data.val_datasets)]
    df = df[df["split"].isin(list(splits))].copy()
    if "file_label" not in df:
        df["file_label"] = df.groupby("path")["label"].transform("max")
    df["file_label"] = df["file_label"].astype(int)
    if df.empty:
        raise ValueError(f"no {'/'.join(splits)} crops in {cfg.data.val_datasets or 'the prepared folders'}")
    return df.reset_index(drop=True)


def score_fold(run: Path, table: pd.DataFrame, batch: int = 64, progress: bool = True) -> tuple[pd.DataFrame, dict]:
    """Raw P(fake) of every crop of ``table`` by the fold's scoring model; cached in ``<run>/lomo_scores.csv``."""
    from model.api import Detector
    from training.shards import open_crop

    model_dir, epoch, best = scoring_model(run)
    info = {"scored_model": model_dir.name, "scored_epoch": epoch, "best_epoch": best}
    stamp = (model_dir / "detector.keras").stat()
    key = f"{model_dir.name}:{stamp.st_size}:{stamp.st_mtime_ns}"
    cache_f = run / SCORES
    cached: dict[str, float] = {}
    if cache_f.is_file():
        c = pd.read_csv(cache_f, keep_default_na=False)
        if len(c) and (c["model_key"] == key).all():
            cached = dict(zip(c["file"], c["score"].astype(float)))
    todo = [f for f in dict.fromkeys(table["file"]) if f not in cached]
    if todo:
        det = Detector.load(model_dir)
        size = det.input_size
        t0 = time.time()
        for i in range(0, len(todo), batch):
            chunk = todo[i:i + batch]
            imgs = [open_crop(f) for f in chunk]
            for f, im in zip(chunk, imgs):
                if im.shape[:2] != (size, size):
                    raise ValueError(f"{f} is {im.shape[1]}x{im.shape[0]}, not {size} px: the crop contract was not kept")
            cached.update(zip(chunk, det.score_crops(np.stack(imgs), batch_size=batch).astype(float)))
            if progress:
                print(f"  scored {min(i + batch, len(todo))}/{len(todo)} crops ({time.time() - t0:.0f} s)",
                      file=sys.stderr, flush=True)
        pd.DataFrame({"file": list(cached), "score": list(cached.values()), "model_key": key}).to_csv(cache_f, index=False)
    out = table.copy()
    out["score"] = out["file"].map(cached).astype(float)
    return out, info


# --------------------------------------------------------------------------- metrics
def _slices(scores: pd.DataFrame, method: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(crop slice, file slice) of one method against the real files: label, score, group."""
    real = (scores["file_label"] == 0) & (scores["label"] == 0)
    fake = (scores["method"] == method) & (scores["label"] == 1)
    crops = scores.loc[real | fake, ["file", "path", "group", "label", "score"]]
    files = scores[(scores["file_label"] == 0) | ((scores["method"] == method) & (scores["file_label"] == 1))]
    files = (files.groupby("path").agg(label=("file_label", "first"), group=("group", "first"), score=("score", "mean"))
             .reset_index())
    return crops.reset_index(drop=True), files


def _ci(draws: list[float], n_boot: int) -> tuple[float | None, float | None]:
    """``model.metrics.interval`` as a (lo, hi) pair, (None, None) when there is no interval."""
    ci = model_metrics.interval(draws, n_boot, digits=4)
    return (ci[0], ci[1]) if ci else (None, None)


def _r(v) -> float | None:
    return None if v is None or not np.isfinite(v) else round(float(v), 4)  # nan (no AUC) -> None


def metrics(scores: dict[str, pd.DataFrame], methods: Sequence[str], n_boot: int = BOOTSTRAP,
            seed: int = 0) -> tuple[pd.DataFrame, dict]:
    """Rows (fold, method) with crop/file AUC and group-bootstrap intervals; and the summary of means and deltas.

    ``scores``: fold -> scored table (same crops in every fold)."""
    folds = list(scores)
    base = scores[folds[0]]
    groups = np.array(sorted(base["group"].astype(str).unique()))
    sl = {(f, m): _slices(scores[f], m) for f in folds for m in methods}

    gi = {g: i for i, g in enumerate(groups)}
    arrays = {}
    for (f, m), (c, fl) in sl.items():
        for lv, d in (("crop", c), ("file", fl)):
            arrays[(f, m, lv)] = (d["label"].to_numpy(int), d["score"].to_numpy(float),
                                  d["group"].astype(str).map(gi).to_numpy(int))

    def point(f, m, level, weight=None):
        y, p, g = arrays[(f, m, level)]
        if weight is not None:  # a bootstrap draw: every crop repeated as often as its group was drawn
            idx = model_metrics.resample(weight, g)
            y, p = y[idx], p[idx]
        a = model_metrics.auc(y, p)
        return np.nan if a is None else a

    keys = [(f, m, lv) for f in folds for m in methods for lv in ("crop", "file")]
    draws = {k: [] for k in keys}
    for weight in model_metrics.group_draws(len(groups), n_boot, seed):  # one draw of the groups serves every slice
        for k in keys:
            draws[k].append(point(*k, weight=weight))
    draws = {k: np.array(v, float) for k, v in draws.items()}

    rows = []
    for f in folds:
        for m in methods:
            c, fl = sl[(f, m)]
            lo, hi = _ci(list(draws[(f, m, "crop")]), n_boot)
            flo, fhi = _ci(list(draws[(f, m, "file")]), n_boot)
            rows.append({"fold": f, "method": m, "held_out": f == m,
                         "n_real": int((c["label"] == 0).sum()), "n_fake": int((c["label"] == 1).sum()),
                         "n_groups": int(c["group"].nunique()),
                         "n_real_files": int((fl["label"] == 0).sum()), "n_fake_files": int((fl["label"] == 1).sum()),
                         "n_fake_groups": int(c.loc[c["label"] == 1, "group"].nunique()),
                         "crop_auc": _r(point(f, m, "crop")), "crop_auc_ci_lo": lo, "crop_auc_ci_hi": hi,
                         "file_auc": _r(point(f, m, "file")), "file_auc_ci_lo": flo, "file_auc_ci_hi": fhi})
    df = pd.DataFrame(rows)

    # paired: held out (fold m) minus reference (fold none), per method and the mean over methods
    summary: dict = {"n_boot": n_boot, "n_groups": int(len(groups)), "methods": list(methods)}
    if REFERENCE in folds:
        held = [m for m in methods if m in folds]
        for lv in ("crop", "file"):
            for m in held:
                d = draws[(m, m, lv)] - draws[(REFERENCE, m, lv)]
                summary[f"delta_{lv}_{m}"] = {"point": _r(point(m, m, lv) - point(REFERENCE, m, lv)),
                                              "ci": list(_ci(list(d), n_boot))}
            if held:
                ref = np.array([draws[(REFERENCE, m, lv)] for m in held])
                ho = np.array([draws[(m, m, lv)] for m in held])
                ok = np.isfinite(ref).all(0) & np.isfinite(ho).all(0)
                summary[f"mean_{lv}"] = {
                    "reference": _r(np.mean([point(REFERENCE, m, lv) for m in held])),
                    "reference_ci": list(_ci(list(ref.mean(0)[ok]), n_boot)),
                    "held_out": _r(np.mean([point(m, m, lv) for m in held])),
                    "held_out_ci": list(_ci(list(ho.mean(0)[ok]), n_boot)),
                    "delta_ci": list(_ci(list((ho - ref).mean(0)[ok]), n_boot))}
    return df, summary


# --------------------------------------------------------------------------- report
def _fmt(v, lo=None, hi=None) -> str:
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "n/a"
    s = f"{v:.3f}"
    if lo is not None and hi is not None and np.isfinite(lo) and np.isfinite(hi):
        s += f" [{lo:.3f}, {hi:.3f}]"
    return s


def format_table(df: pd.DataFrame, summary: dict | None = None, level: str = "crop") -> str:
    """Markdown: one row per method, AUC [95 % CI] trained on all (fold none) vs held out, and the means."""
    rows = ["| method | n real / fake (groups) | " + f"{level} AUC, trained on all | {level} AUC, held out | delta |",
            "|---|---|---|---|---|"]
    ref_v, ho_v = [], []
    for m in dict.fromkeys(df["method"]):
        r = df[(df["fold"] == REFERENCE) & (df["method"] == m)]
        h = df[(df["fold"] == m) & (df["method"] == m)]
        n = (r if len(r) else h).iloc[0] if len(r) or len(h) else None
        if n is None:
            continue
        unit = "" if level == "crop" else "_files"
        counts = f"{n[f'n_real{unit}']} / {n[f'n_fake{unit}']} ({n['n_groups']})"
        rv = r.iloc[0] if len(r) else None
        hv = h.iloc[0] if len(h) else None
        cell = lambda x: "n/a" if x is None else _fmt(x[f"{level}_auc"], x[f"{level}_auc_ci_lo"], x[f"{level}_auc_ci_hi"])
        delta = "n/a"
        if summary and f"delta_{level}_{m}" in summary:
            d = summary[f"delta_{level}_{m}"]
            delta = _fmt(d["point"], *(d["ci"] if d["ci"][0] is not None else (None, None)))
            delta = ("+" if d["point"] is not None and d["point"] >= 0 else "") + delta
        rows.append(f"| {m} | {counts} | {cell(rv)} | {cell(hv)} | {delta} |")
        if rv is not None:
            ref_v.append(rv[f"{level}_auc"])
        if hv is not None:
            ho_v.append(hv[f"{level}_auc"])
    mean = (summary or {}).get(f"mean_{level}")
    if mean:
        ci = lambda k: mean[k] if mean[k][0] is not None else (None, None)
        d = (mean["held_out"] - mean["reference"]) if None not in (mean["held_out"], mean["reference"]) else None
        rows.append(f"| **mean** | | {_fmt(mean['reference'], *ci('reference_ci'))} | "
                    f"{_fmt(mean['held_out'], *ci('held_out_ci'))} | {'+' if d is not None and d >= 0 else ''}{_fmt(d, *ci('delta_ci'))} |")
    elif ref_v or ho_v:
        fin = lambda v: [x for x in v if x is not None and np.isfinite(x)]
        rows.append(f"| **mean** | | {_fmt(np.mean(fin(ref_v)) if fin(ref_v) else None)} | "
                    f"{_fmt(np.mean(fin(ho_v)) if fin(ho_v) else None)} | |")
    return "\n".join(rows)


# --------------------------------------------------------------------------- main entry
def lomo(config_path: str | Path, out_dir: str | Path, methods: Sequence[str] = FFPP_METHODS,
         epochs: int | None = None, steps: int | None = None, splits: Sequence[str] = ("val",),
         n_boot: int = BOOTSTRAP, progress: bool = True) -> dict:
    """Train the reference fold and one fold per held-out method, score, write ``<out>/lomo.csv``.

    Returns {"csv", "table" (crop level markdown), "file_table", "summary", "folds" (fold -> info), "rows"}."""
    import tomllib

    from training import train as train_mod

    methods = list(dict.fromkeys(methods))
    if not methods or not all(isinstance(m, str) and m for m in methods):
        raise ValueError("methods: give at least one method name")
    bad = sorted(set(splits) - {"val", "test"})
    if bad or not splits:
        raise ValueError(f"splits must be val and/or test, not {', '.join(bad) or 'none'}")
    config_path = Path(config_path)
    try:
        base = tomllib.loads(config_path.read_text())
    except FileNotFoundError:
        raise config_mod.ConfigError(f"config file not found: {config_path}") from None
    out = Path(out_dir)
    (out / "configs").mkdir(parents=True, exist_ok=True)
    folds = [REFERENCE] + methods
    table = None
    scores, info = {}, {}
    for fold in folds:
        d = fold_config(base, fold, epochs, steps)
        cfg_f = out / "configs" / f"{fold}.toml"
        cfg_f.write_text(f"# derived by `python -m research lomo` from {config_path}\n" + to_toml(d))
        run = out / fold
        t0 = time.time()
        was_done = fold_finished(run)
        if was_done:
            done = json.loads((run / "config.json").read_text())["train"]
            if progress:
                note = "" if (done["epochs"], done["steps_per_epoch"]) == (d["train"].get("epochs", done["epochs"]),
                                                                         d["train"].get("steps_per_epoch", done["steps_per_epoch"])) \
                    else f" (trained with {done['epochs']} epochs x {done['steps_per_epoch']} steps; kept)"
                print(f"fold {fold}: finished already{note}", file=sys.stderr, flush=True)
        else:
            if progress:
                print(f"fold {fold}: training -> {run}", file=sys.stderr, flush=True)
            train_mod.train(cfg_f, run_dir=run)
        t_train = time.time() - t0
        cfg = config_mod.from_dict({k: v for k, v in json.loads((run / "config.json").read_text()).items()
                                    if k != "crop_spec"})
        if table is None:
            table = scored_table(cfg, splits)  # validation/test crops are the same in every fold
        t1 = time.time()
        scores[fold], fi = score_fold(run, table, progress=progress)
        hist = pd.read_csv(run / train_mod.HISTORY)
        fi.update(epochs=int(cfg.train.epochs), steps=int(cfg.train.steps_per_epoch),
                  train_minutes=round(float(hist["epoch_minutes"].sum()), 2) if "epoch_minutes" in hist else None,
                  score_seconds=round(time.time() - t1, 1), trained_now=not was_done,
                  train_wall_minutes=round(t_train / 60, 2))
        info[fold] = fi
        if progress:
            print(f"fold {fold}: {fi}", file=sys.stderr, flush=True)

    df, summary = metrics(scores, methods, n_boot=n_boot)
    for col in ("epochs", "steps", "scored_epoch", "best_epoch", "train_minutes"):
        df[col] = df["fold"].map({f: info[f][col] for f in info})
    df.insert(3, "splits", "+".join(splits))
    name = "lomo.csv" if list(splits) == ["val"] else f"lomo_{'_'.join(splits)}.csv"
    df.to_csv(out / name, index=False)
    (out / name.replace(".csv", "_summary.json")).write_text(json.dumps({"summary": summary, "folds": info}, indent=2))
    return {"csv": out / name, "table": format_table(df, summary, "crop"), "file_table": format_table(df, summary, "file"),
            "summary": summary, "folds": info, "rows": df}

