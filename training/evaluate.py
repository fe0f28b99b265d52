"""Evaluation THROUGH THE ENGINE: ``python -m training calibrate RUN`` then ``python -m training evaluate RUN``.

Every validation / test file of the run's splits is analysed with ``Detector.analyze`` -- the same frames,
face detector, crop contract, aggregation and calibration as the CLI and the app -- so the stored numbers are
the numbers a user gets. Raw (uncalibrated) analyses are cached per split in ``RUN/analysis/<split>.jsonl``
(resumable; invalidated when the model file or crop contract changes), so recalibrating needs no re-analysis.

``calibrate`` fits the calibration of the FILE score on the validation files of the video datasets
(``model.calibration.fit``: Platt or isotonic, chosen by cross-validated log-loss over identity groups), then
chooses the operating threshold on the calibrated validation file scores by a recorded policy, and writes both
into the model card.

``evaluate`` writes ``RUN/evaluation/`` (schema 2):

    metrics.json        headline (file-level AUC on the video datasets' test groups), slices by level (file|face),
                        dataset, method and compression, photo sets apart; every metric (``model.metrics``) with a
                        95 % bootstrap interval resampled by identity group
    predictions.csv     file level: path, kind, dataset, method, compression, group, label, score, raw_score, faces, error
    face_predictions.csv  path, dataset, method, compression, group, label, frame, track, face, score, raw_score, x, y, w, h
    roc_{file,face}.csv, pr_{file,face}.csv   curves of the headline slice
    reliability.csv     level, stage (raw|calibrated), split (val|test), bin, mean_score, fraction_fake, count
    audit.csv           held-out real photos: false-alarm rate by gender and race with intervals (resampled by
                        person), score percentiles
    score_by_source.csv per-source score distribution (dataset, media, label)

The model card's metrics are rewritten atomically (the headline, face AUC and photo false-alarm rates).
Face-level labels are the file's label (a fake file's faces are fake): in FF++ every fake shows one face.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from model import metrics
from model.metrics import BOOTSTRAP, auc, ece, eer  # noqa: F401  (re-exported: importers of training.evaluate)
from training import config as config_mod
from training.datasets import PHOTO_SETS
from training.train import REPO_ROOT, split_index

GENDERS = {0: "male", 1: "female"}
RACES = {0: "White", 1: "Black", 2: "Asian", 3: "Indian", 4: "Other"}
SCHEMA = 2
POOLED = "video datasets"  # the headline slice: the validation video datasets pooled
FILE_COLS = ["path", "kind", "dataset", "method", "compression", "group", "label", "score", "raw_score", "faces", "error"]
FACE_COLS = ["path", "dataset", "method", "compression", "group", "label", "frame", "track", "face", "score",
             "raw_score", "x", "y", "w", "h"]


# --------------------------------------------------------------------------- metrics (model.metrics)
def slice_metrics(df: pd.DataFrame, thr: float, n_boot: int = BOOTSTRAP, **tags) -> dict:
    """One slice (columns label, score, group): counts, ``model.metrics.point_metrics`` at ``thr`` with their 95 %
    intervals over identity groups (``<metric>_ci``), accuracy and the confusion counts; ``tags`` lead the row."""
    y, p = df["label"].to_numpy(int), df["score"].to_numpy(float)
    d = {**tags, "n": int(len(df)), "n_real": int((y == 0).sum()), "n_fake": int((y == 1).sum()),
         "n_groups": int(df["group"].nunique())}
    d.update({k: (None if v is None else round(float(v), 4)) for k, v in metrics.point_metrics(y, p, thr).items()})
    ci = metrics.bootstrap(lambda yy, pp: metrics.point_metrics(yy, pp, thr), y, p, df["group"].to_numpy(), n=n_boot,
                           digits=4)
    d.update({f"{k}_ci": ci[k] for k in metrics.POINT_METRICS})
    acc = metrics.accuracy(y, p, thr)
    d.update(accuracy=None if acc is None else round(acc, 4), **metrics.confusion(y, p, thr))
    return d


def reliability(y, p, bins: int = 10) -> pd.DataFrame:
    """Reliability table: ``model.metrics.calibration_bins`` rounded (bin, mean_score, fraction_fake, count)."""
    b = metrics.calibration_bins(y, p, bins)
    return pd.DataFrame({"bin": b["bin"].astype(int), "mean_score": np.round(b["mean_score"], 5),
                         "fraction_fake": np.round(b["fraction_fake"], 5), "count": b["count"]},
                        columns=["bin", "mean_score", "fraction_fake", "count"])


# --------------------------------------------------------------------------- engine analysis (cached)
def _rel(p: str) -> str:
    """Paths as stored in outputs: relative to the repository root (works for any clone beside the data)."""
    try:
        return os.path.relpath(Path(p).resolve(), REPO_ROOT)
    except ValueError:
        return str(p)


def _model_key(run: Path) -> str:
    from model.network import MODEL_FILE

    h = hashlib.sha1()
    with open(run / "model" / MODEL_FILE, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def _analysis_key(run: Path, det) -> dict:
    return {"model": _model_key(run), "crop_spec": det.spec.to_dict(), "strategy": "max_mean"}


def cached_analyses(run: Path, det, split: str) -> dict[str, dict]:
    """The engine's analyses of ``split``'s files already in ``RUN/analysis/{split}.jsonl`` (``analyse_split``'s
    resumable cache), by index path; {} when the cache was made by another model or crop contract. A line cut by a
    kill is left out (analysed again)."""
    cache = run / "analysis" / f"{split}.jsonl"
    if not cache.is_file():
        return {}
    lines = cache.read_text().splitlines()
    if not lines or json.loads(lines[0]) != _analysis_key(run, det):
        return {}
    done: dict[str, dict] = {}
    for ln in lines[1:]:
        try:
            r = json.loads(ln)
        except json.JSONDecodeError:
            continue
        done[r["path"]] = r
    return done


def analyse_split(run: Path, det, rows: pd.DataFrame, split: str, progress: bool = True) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Run ``det.analyze`` on every file of ``rows`` (resumable cache) -> (file table, face table), RAW scores."""
    cache_dir = run / "analysis"
    cache_dir.mkdir(exist_ok=True)
    cache = cache_dir / f"{split}.jsonl"
    done = cached_analyses(run, det, split)
    if not done and cache.is_file():
        cache.unlink()  # another model or contract (or nothing analysed yet)
    if not cache.is_file():
        cache.write_text(json.dumps(_analysis_key(run, det)) + "\n")
    todo = [r for r in rows.to_dict("records") if r["path"] not in done]
    t0 = time.time()
    with open(cache, "a") as fh:
        for i, r in enumerate(todo, 1):
            res = det.analyze(r["path"])
            faces = [{"frame": int(f.frame or 0), "track": int(f.track if f.track is not None else k), "face": k,
                      "raw_score": round(float(f.raw_score), 6), "x": f.box[0], "y": f.box[1], "w": f.box[2], "h": f.box[3]}
                     for k, f in enumerate(res.all_faces)]
            rec = {"path": r["path"], "kind": res.kind, "raw_score": res.raw_score, "faces": res.faces,
                   "error": res.error, "face_list": faces}
            fh.write(json.dumps(rec) + "\n")
            fh.flush()
            done[r["path"]] = rec
            if progress and (i % 10 == 0 or i == len(todo)):
                el = time.time() - t0
                print(f"{split}: analysed {i}/{len(todo)} files, {el:.0f}s, ETA {el / i * (len(todo) - i):.0f}s",
                      file=sys.stderr, flush=True)
    meta = ["dataset", "method", "compression", "group", "label", "media", "gender", "race", "age"]
    files, faces = [], []
    for r in rows.to_dict("records"):
        a = done[r["path"]]
        base = {k: r.get(k, "") for k in meta}
        files.append({"path": r["path"], "kind": a["kind"], "raw_score": a["raw_score"], "faces": a["faces"],
                      "error": a["error"], **base})
        for f in a["face_list"]:
            faces.append({"path": r["path"], **{k: base[k] for k in ("dataset", "method", "compression", "group", "label")},
                          **f})
    ft = pd.DataFrame(files)
    fc = pd.DataFrame(faces, columns=["path", "dataset", "method", "compression", "group", "label", "frame", "track",
                                      "face", "raw_score", "x", "y", "w", "h"])
    ft["label"] = ft["label"].astype(int)
    fc["label"] = fc["label"].astype(int)
    return ft, fc


def _load_run(run: Path):
    from model.api import Detector

    cfg = config_mod.from_dict({k: v for k, v in json.loads((run / "config.json").read_text()).items() if k != "crop_spec"})
    det = Detector.load(run / "model")
    index = split_index(cfg)
    return cfg, det, index


def video_datasets(cfg, index: pd.DataFrame) -> list[str]:
    ds = cfg.data.val_datasets or sorted(set(index["dataset"]) - set(PHOTO_SETS))
    return [d for d in ds if d not in PHOTO_SETS]


# --------------------------------------------------------------------------- calibrate
def choose_threshold(y, p, policy: str, target_fpr: float = 0.1, datasets=None) -> float:
    """Operating threshold on CALIBRATED validation file scores.

    ``youden``: maximise TPR - FPR; ``bayes``: 0.5 (the decision rule of a calibrated probability at equal
    costs); ``fpr``: the lowest threshold giving at most ``target_fpr`` false alarms on every dataset's reals.
    """
    y, p = np.asarray(y, int), np.asarray(p, np.float64)
    if policy == "bayes":
        return 0.5
    if policy == "youden":
        from sklearn.metrics import roc_curve

        fpr, tpr, thr = roc_curve(y, p)
        return float(np.clip(thr[int(np.argmax(tpr - fpr))], 1e-6, 1.0))
    if policy == "fpr":
        ds = np.asarray(datasets if datasets is not None else np.zeros(len(y)))
        per = [np.quantile(p[(ds == d) & (y == 0)], 1 - target_fpr, method="higher")
               for d in np.unique(ds[y == 0])]
        return float(min(1.0, max(per) + 1e-6))
    raise ValueError("policy must be youden, bayes or fpr")


def calibrate_run(run: str | Path, policy: str = "youden", target_fpr: float = 0.1, progress: bool = True) -> dict:
    from model import calibration as calmod
    from model.network import CARD_FILE

    run = Path(run)
    cfg, det, index = _load_run(run)
    vds = video_datasets(cfg, index)
    val = index[(index["split"] == "val") & index["dataset"].isin(vds)]
    if val.empty or val["label"].nunique() < 2:
        raise ValueError(f"{run}: the validation split of {vds} needs real and fake files to calibrate")
    ft, _ = analyse_split(run, det, val, "val", progress)
    ok = ft[ft["raw_score"].notna()]
    cal = calmod.fit(ok["label"], ok["raw_score"], ok["group"], seed=cfg.seed,
                     fitted_on=f"validation files of {', '.join(vds)} (file score, n={len(ok)}, "
                               f"{ok['group'].nunique()} identity groups)")
    p = cal.apply(ok["raw_score"].to_numpy(float))
    thr = choose_threshold(ok["label"], p, policy, target_fpr, ok["dataset"].to_numpy())
    what = {"youden": "max TPR-FPR", "bayes": "0.5 on calibrated P(fake)",
            "fpr": f"at most {target_fpr:.0%} false alarms on each dataset's validation real files"}[policy]
    card_f = run / "model" / CARD_FILE
    card = json.loads(card_f.read_text())
    card["calibration"] = cal.to_dict()
    # the model-selection number: file-level AUC on the validation files, through the engine (as users run it)
    y, raw = ok["label"].to_numpy(int), ok["raw_score"].to_numpy(float)
    val_auc = auc(y, raw)
    val_ci = metrics.bootstrap(auc, y, raw, ok["group"].to_numpy(), digits=4)
    card.setdefault("metrics", {})["val_file_auc"] = None if val_auc is None else round(float(val_auc), 4)
    card["metrics"]["val_file_auc_ci"] = val_ci
    card["threshold"] = round(float(thr), 6)
    card["threshold_policy"] = f"{policy}: {what}, on calibrated validation file scores (n={len(ok)})"
    card["notes"] = "P(fake) is calibrated on validation files; run `python -m training evaluate RUN` for test numbers"
    _atomic_json(card, card_f)
    return {"threshold": thr, "calibration": cal.to_dict(), "policy": card["threshold_policy"],
            "val_file_auc": card["metrics"]["val_file_auc"], "val_file_auc_ci": val_ci,
            "n_val_files": int(len(ok)), "skipped": int(len(ft) - len(ok))}


# --------------------------------------------------------------------------- evaluate: writing
def _atomic_csv(df: pd.DataFrame, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    df.to_csv(tmp, index=False)
    os.replace(tmp, path)


def _atomic_json(obj, path: Path) -> None:
    """Write ``obj`` as JSON beside ``path`` and move it into place (a reader never sees half a file)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2) + "\n")
    os.replace(tmp, path)


def _curves(out: Path, tag: str, y, p) -> None:
    from sklearn import metrics as skm

    if len(np.unique(y)) < 2:
        return
    fpr, tpr, thr = skm.roc_curve(y, p)
    pd.DataFrame({"fpr": fpr, "tpr": tpr, "threshold": np.minimum(thr, 1.0)}).to_csv(out / f"roc_{tag}.csv", index=False)
    prec, rec, thr2 = skm.precision_recall_curve(y, p)
    pd.DataFrame({"precision": prec, "recall": rec, "threshold": np.append(thr2, 1.0)}).to_csv(out / f"pr_{tag}.csv", index=False)


# --------------------------------------------------------------------------- evaluate: analysis
def _slices(ft: pd.DataFrame, fc: pd.DataFrame, vds: list[str], thr: float, n_boot: int) -> list[dict]:
    """Slices by level, dataset, method and compression. The pooled "video datasets" slice (the headline) covers
    ``vds``; every other non-photo dataset of the test split gets its own slices too (a dataset held out of
    training and validation -- leave-one-dataset-out -- is reported, never pooled into the headline)."""
    out = []
    for level, t in (("file", ft), ("face", fc)):
        t = t[~t["dataset"].isin(PHOTO_SETS)]
        if t.empty:
            continue
        pooled = [(POOLED, t[t["dataset"].isin(vds)])] if t["dataset"].isin(vds).any() else []
        for dname, d in pooled + [(x, t[t["dataset"] == x]) for x in sorted(t["dataset"].unique())]:
            for comp in ["all"] + sorted(c for c in d["compression"].astype(str).unique() if c):
                dc = d if comp == "all" else d[d["compression"].astype(str) == comp]
                reals = dc[dc["label"] == 0]
                if dc.empty:
                    continue
                out.append(slice_metrics(dc, thr, n_boot, level=level, dataset=dname, method="all", compression=comp))
                for m in sorted(dc.loc[dc["label"] == 1, "method"].unique()):
                    fakes = dc[(dc["label"] == 1) & (dc["method"] == m)]
                    # a method's fakes against the reals of the datasets it occurs in: in the pooled slice, FF++'s
                    # methods against DFDC's reals would measure the source, not the manipulation
                    both = pd.concat([reals[reals["dataset"].isin(set(fakes["dataset"]))], fakes])
                    out.append(slice_metrics(both, thr, n_boot, level=level, dataset=dname, method=m, compression=comp))
    return out


def _pooled(slices: list[dict], level: str) -> dict | None:
    """The pooled video-dataset slice of ``level`` over all methods and compressions (file level: the headline)."""
    return next((s for s in slices if s["level"] == level and s["dataset"] == POOLED and s["method"] == "all"
                 and s["compression"] == "all"), None)


def _photo_slices(scored: pd.DataFrame, thr: float, n_boot: int) -> list[dict]:
    """One file-level slice per photo set (never pooled with the videos or with each other)."""
    return [slice_metrics(g, thr, n_boot, level="file", dataset=d, method="real", compression="all")
            for d, g in scored[scored["dataset"].isin(PHOTO_SETS)].groupby("dataset")]


def audit(ft: pd.DataFrame, thr: float, n_boot: int = BOOTSTRAP) -> pd.DataFrame:
    """Held-out real photos: false-alarm rate at the threshold by gender and race (with a 95 % bootstrap interval
    over PEOPLE: ``model.metrics.bootstrap`` resamples the identity ``group`` column -- LFW's group is the person,
    a UTKFace file is its own group; files when the table has no group column) and score percentiles -- a 0 % rate
    far below the threshold says nothing, the percentiles show it. Photo sets are never pooled: one row per set,
    and gender/race rows (from UTKFace's file names) per attribute. A row of one person has no interval (empty)."""
    reals = ft[(ft["label"] == 0) & ft["dataset"].isin(PHOTO_SETS) & ft["score"].notna()]
    rows = []
    groups = []
    for attr, names in (("gender", GENDERS), ("race", RACES)):
        if attr in reals:
            a = pd.to_numeric(reals[attr], errors="coerce")
            groups += [(attr, name, reals[a == code]) for code, name in names.items()]
    for ds in sorted(reals["dataset"].unique()):
        groups.append(("dataset", ds, reals[reals["dataset"] == ds]))
    for attr, name, g in groups:
        if g.empty:
            continue
        y, s = g["label"].to_numpy(int), g["score"].to_numpy(float)
        rate = metrics.false_alarm_rate(y, s, thr)
        ci = metrics.bootstrap(lambda yy, pp: metrics.false_alarm_rate(yy, pp, thr), y, s,
                               g["group"].to_numpy() if "group" in g else None, n=n_boot, digits=4)
        rows.append({"attribute": attr, "group": name, "n": len(g), "false_alarms": int((s >= thr).sum()),
                     "false_alarm_rate": round(rate, 4),
                     "false_alarm_rate_ci_lo": ci[0] if ci else None, "false_alarm_rate_ci_hi": ci[1] if ci else None,
                     "score_p50": round(float(np.percentile(s, 50)), 4), "score_p90": round(float(np.percentile(s, 90)), 4),
                     "score_p99": round(float(np.percentile(s, 99)), 4)})
    return pd.DataFrame(rows, columns=["attribute", "group", "n", "false_alarms", "false_alarm_rate",
                                       "false_alarm_rate_ci_lo", "false_alarm_rate_ci_hi", "score_p50", "score_p90",
                                       "score_p99"])


def _score_by_source(scored: pd.DataFrame) -> pd.DataFrame:
    """Score percentiles per (dataset, media, label)."""
    src = (scored.assign(media=scored["kind"]).groupby(["dataset", "media", "label"])["score"]
           .describe(percentiles=[0.1, 0.25, 0.5, 0.75, 0.9]).reset_index())
    src = src.rename(columns={"count": "n", "10%": "p10", "25%": "p25", "50%": "p50", "75%": "p75", "90%": "p90"})
    return src[["dataset", "media", "label", "n", "p10", "p25", "p50", "p75", "p90"]].round(4)


def _reliability_table(parts: list[tuple[str, str, pd.DataFrame]], cal) -> pd.DataFrame | None:
    """Reliability bins of raw and calibrated scores for each (split, level, table with raw_score and label)."""
    rel = []
    for split, level, t in parts:
        if t.empty:
            continue
        raw = t["raw_score"].to_numpy(float)
        for stage, p in (("raw", raw), ("calibrated", cal.apply(raw))):
            r = reliability(t["label"], p)
            r.insert(0, "split", split), r.insert(0, "stage", stage), r.insert(0, "level", level)
            rel.append(r)
    return pd.concat(rel, ignore_index=True) if rel else None


def _calibration_before_after(hv: pd.DataFrame, head: dict | None) -> dict:
    """ECE and Brier of the headline test files, raw scores against calibrated ones ({} without a headline)."""
    if not head:
        return {}
    raw, y = hv["raw_score"].to_numpy(float), hv["label"].to_numpy(int)
    return {"raw": {"ece": round(metrics.ece(y, raw), 4), "brier": round(metrics.brier(y, raw), 4)},
            "calibrated": {"ece": head["ece"], "brier": head["brier"]}}


# --------------------------------------------------------------------------- evaluate: steps
def choose_test_files(run: Path, index: pd.DataFrame, audit_sets: Sequence[str] = (),
                      max_photos: int = 0, datasets: Sequence[str] = ()) -> pd.DataFrame:
    """The files to evaluate: the run's test split (only ``datasets`` when given, e.g. the held-out dataset of a
    leave-one-dataset-out run), plus every audit set (``KIND=ROOT``, real photos the run never used) whole; at most
    ``max_photos`` sampled files per photo set when given (seeded)."""
    from training.datasets import index_dataset

    test = index[index["split"] == "test"]
    if datasets:
        unknown = sorted(set(datasets) - set(test["dataset"]))
        if unknown:
            raise ValueError(f"--datasets: no test files of {', '.join(unknown)} in this run's splits "
                             f"(test datasets: {', '.join(sorted(set(test['dataset'])))})")
        test = test[test["dataset"].isin(datasets)]
    for spec in audit_sets:
        kind, _, root = spec.partition("=")
        extra = index_dataset(kind, root)
        if set(extra["dataset"]) & set(index["dataset"]):
            raise ValueError(f"{spec}: the run already uses dataset {sorted(set(extra['dataset']))}; its test split "
                             "is evaluated anyway")
        if (extra["label"] != 0).any():
            raise ValueError(f"{spec}: an audit set holds real photos only")
        test = pd.concat([test, extra.assign(split="test")], ignore_index=True)
    if max_photos:
        photos = test[test["dataset"].isin(PHOTO_SETS)]
        keep = pd.concat([g.sample(min(len(g), max_photos), random_state=0) for _, g in photos.groupby("dataset")]
                         + [photos.iloc[0:0]])
        test = pd.concat([test[~test["dataset"].isin(PHOTO_SETS)], keep])
    if test.empty:
        raise ValueError(f"{run}: the test split is empty")
    return test


def _scored_tables(run: Path, det, rows: pd.DataFrame, split: str, progress: bool) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``analyse_split`` plus the calibrated ``score`` column (nan where the file or face has no raw score)."""
    ft, fc = analyse_split(run, det, rows, split, progress)
    for t in (ft, fc):
        t["score"] = det.calibration.apply(t["raw_score"].to_numpy(float)) if len(t) else []
        t.loc[t["raw_score"].isna(), "score"] = np.nan
    return ft, fc


def _validation_parts(run: Path, det, index: pd.DataFrame, vds: list[str], progress: bool) -> list:
    """(split, level, table) of the validation files for the reliability table -- only when ``calibrate`` has
    analysed them already (``RUN/analysis/val.jsonl``): evaluating never starts a validation analysis."""
    if not (run / "analysis" / "val.jsonl").is_file():
        return []
    val = index[(index["split"] == "val") & index["dataset"].isin(vds)]
    vft, vfc = analyse_split(run, det, val, "val", progress)
    return [("val", "file", vft[vft["raw_score"].notna()]), ("val", "face", vfc)]


def _write_tables(tmpdir: Path, ft: pd.DataFrame, fc: pd.DataFrame, scored: pd.DataFrame, vds: list[str],
                  reliability_parts: list, cal, thr: float, n_boot: int) -> None:
    """The CSV files of ``RUN/evaluation/`` (see the module doc) into ``tmpdir``."""
    pf = ft.assign(path=[_rel(p) for p in ft["path"]])
    _atomic_csv(pf[FILE_COLS + [c for c in ("age", "gender", "race") if c in pf]], tmpdir / "predictions.csv")
    _atomic_csv(fc.assign(path=[_rel(p) for p in fc["path"]])[FACE_COLS], tmpdir / "face_predictions.csv")
    hv, hf = scored[scored["dataset"].isin(vds)], fc[fc["dataset"].isin(vds)]
    _curves(tmpdir, "file", hv["label"], hv["score"])
    _curves(tmpdir, "face", hf["label"], hf["score"])
    rel = _reliability_table(reliability_parts + [("test", "file", hv), ("test", "face", hf)], cal)
    if rel is not None:
        _atomic_csv(rel, tmpdir / "reliability.csv")
    au = audit(ft, thr, n_boot)
    if len(au):
        _atomic_csv(au, tmpdir / "audit.csv")
    _atomic_csv(_score_by_source(scored), tmpdir / "score_by_source.csv")


def _publish(run: Path, tmpdir: Path, model_key: str, operating: dict | None = None) -> Path:
    """Swap ``tmpdir`` in as ``RUN/evaluation/``. Explain-eval results of the old folder are carried over while
    the model is the same one (they are costly to recompute); so are the robustness files, while the model and
    its ``operating`` point (``threshold``, ``calibration``: their rates depend on it; ``calibrate`` changes it
    without touching the weights) are the same."""
    import shutil

    out = run / "evaluation"
    if not out.exists():
        os.replace(tmpdir, out)
        return out
    try:
        same = json.loads((out / "metrics.json").read_text()).get("model_key") == model_key
    except (OSError, ValueError):
        same = False
    for f in sorted(out.glob("explain_eval*")) if same else []:
        shutil.copy2(f, tmpdir / f.name)
    try:  # robustness results (python -m training robustness) of the same model: costly too, carried over
        kept = json.loads((out / "robustness.json").read_text())
        robust = kept.get("model_key") == model_key and all(kept.get(k) == v for k, v in (operating or {}).items())
    except (OSError, ValueError):
        robust = False
    for f in sorted(out.glob("robustness*")) if robust else []:
        shutil.copy2(f, tmpdir / f.name)
    old = run / "evaluation.old"
    if old.exists():
        shutil.rmtree(old)
    os.replace(out, old)
    os.replace(tmpdir, out)
    shutil.rmtree(old)
    return out


def _update_model_card(run: Path, head: dict | None, face: dict | None, photo: list[dict]) -> None:
    """The model card's metrics (rewritten atomically): the headline with its interval, the face-level AUC and the
    photo sets' false-alarm rates apart; the training and validation entries are kept."""
    from model.network import CARD_FILE

    card_f = run / "model" / CARD_FILE
    card = json.loads(card_f.read_text())
    keep = {k: v for k, v in card.get("metrics", {}).items() if k in ("val_auc", "best_epoch", "val_file_auc", "val_file_auc_ci")}
    if head:
        keep["headline"] = {k: head[k] for k in ("level", "dataset", "n", "n_real", "n_fake", "n_groups", "auc",
                                                 "auc_ci", "ece", "ece_ci", "brier", "false_alarm_rate",
                                                 "detection_rate")}
        keep["headline"]["what"] = "file-level AUC on the video datasets' test identity groups (engine-run)"
        if face:
            keep["face_auc"], keep["face_auc_ci"] = face["auc"], face["auc_ci"]
    for s in photo:
        keep[f"false_alarm_rate_{s['dataset']}"] = {"rate": s["false_alarm_rate"], "ci": s["false_alarm_rate_ci"],
                                                     "n": s["n"]}
    card["metrics"] = keep
    _atomic_json(card, card_f)


def evaluate_run(run: str | Path, n_boot: int = BOOTSTRAP, progress: bool = True, max_photos: int = 0,
                 audit_sets: Sequence[str] = (), datasets: Sequence[str] = ()) -> str:
    """Analyse the run's test files through the engine and write ``RUN/evaluation/``; returns a summary.

    ``audit_sets``: extra real photo sets the run never trained on (``KIND=ROOT``, e.g. ``utkface=../data/utkface``),
    evaluated whole as held-out photo sets (false alarms by group; never pooled into the headline).
    """
    run = Path(run)
    cfg, det, index = _load_run(run)
    thr = det.threshold
    test = choose_test_files(run, index, audit_sets, max_photos, datasets)
    vds = video_datasets(cfg, index)
    ft, fc = _scored_tables(run, det, test, "test", progress)
    scored = ft[ft["score"].notna()]

    slices = _slices(scored, fc, vds, thr, n_boot)
    head, face = _pooled(slices, "file"), _pooled(slices, "face")
    photo = _photo_slices(scored, thr, n_boot)

    tmpdir = run / "evaluation.tmp"
    if tmpdir.exists():  # left by an interrupted evaluation: none of its files may be published
        import shutil

        shutil.rmtree(tmpdir)
    tmpdir.mkdir(parents=True)
    _write_tables(tmpdir, ft, fc, scored, vds, _validation_parts(run, det, index, vds, progress), det.calibration,
                  thr, n_boot)
    m = {
        "schema": SCHEMA, "threshold": thr, "threshold_policy": det.card.threshold_policy,
        "calibration": det.calibration.to_dict(),
        "calibration_test_files": _calibration_before_after(scored[scored["dataset"].isin(vds)], head),
        "headline": head, "slices": slices, "photo_sets": photo,
        "n_files": int(len(ft)), "n_faces": int(len(fc)), "n_errors": int((ft["error"].fillna("") != "").sum()),
        "test_groups": (sorted(test["group"].unique().tolist()) if test["group"].nunique() <= 60
                        else f"{test['group'].nunique()} groups"),
        "bootstrap": f"{n_boot} resamples of identity groups, 95 % percentile intervals",
        "model_card": det.card.to_dict(),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "model_key": _model_key(run),
    }
    (tmpdir / "metrics.json").write_text(json.dumps(m, indent=2))
    _publish(run, tmpdir, m["model_key"], {"threshold": m["threshold"], "calibration": m["calibration"]})
    _update_model_card(run, head, face, photo)
    if head:
        return (f"{run}: file AUC {head['auc']} [{head['auc_ci']}] on {head['n']} test files of {', '.join(vds)} "
                f"({head['n_groups']} identity groups); ECE {head['ece']}; threshold {thr:.4f}; {m['n_errors']} errors")
    return f"{run}: evaluated {len(ft)} files (no video-dataset test files: no headline)"


def audit_run(run: str | Path) -> pd.DataFrame:
    f = Path(run) / "evaluation" / "audit.csv"
    if not f.is_file():
        raise FileNotFoundError(f"{f} not found: evaluate the run first (its test split needs real photos)")
    return pd.read_csv(f)
