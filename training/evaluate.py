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
                        dataset, method and compression, photo sets apart; every metric with a 95 % bootstrap
                        interval resampled by identity group
    predictions.csv     file level: path, kind, dataset, method, compression, group, label, score, raw_score, faces, error
    face_predictions.csv  path, dataset, method, compression, group, label, frame, track, face, score, raw_score, x, y, w, h
    roc_{file,face}.csv, pr_{file,face}.csv   curves of the headline slice
    reliability.csv     level, stage (raw|calibrated), split (val|test), bin, mean_score, fraction_fake, count
    audit.csv           held-out real photos: false-alarm rate by gender and race with intervals, score percentiles
    score_by_source.csv per-source score distribution (dataset, media, label)

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

import numpy as np
import pandas as pd

from training import config as config_mod
from training.datasets import PHOTO_SETS
from training.train import REPO_ROOT, split_index

GENDERS = {0: "male", 1: "female"}
RACES = {0: "White", 1: "Black", 2: "Asian", 3: "Indian", 4: "Other"}
SCHEMA = 2
BOOTSTRAP = 1000
FILE_COLS = ["path", "kind", "dataset", "method", "compression", "group", "label", "score", "raw_score", "faces", "error"]
FACE_COLS = ["path", "dataset", "method", "compression", "group", "label", "frame", "track", "face", "score",
             "raw_score", "x", "y", "w", "h"]


# --------------------------------------------------------------------------- metrics
def auc(y: np.ndarray, p: np.ndarray) -> float | None:
    """ROC AUC by the Mann-Whitney rank statistic (ties count half)."""
    from scipy.stats import rankdata

    y = np.asarray(y, int)
    n1 = int(y.sum())
    n0 = len(y) - n1
    if n1 == 0 or n0 == 0:
        return None
    r = rankdata(p)
    return float((r[y == 1].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def eer(y, p) -> float | None:
    from sklearn.metrics import roc_curve

    if len(np.unique(y)) < 2:
        return None
    fpr, tpr, _ = roc_curve(y, p)
    fnr = 1 - tpr
    i = int(np.nanargmin(np.abs(fnr - fpr)))
    return float((fpr[i] + fnr[i]) / 2)


def ece(y, p, bins: int = 10) -> float:
    """Expected calibration error: bin-size-weighted |mean score - fraction fake| over 10 equal-width bins."""
    y, p = np.asarray(y, np.float64), np.asarray(p, np.float64)
    idx = np.minimum((p * bins).astype(int), bins - 1)
    tot = 0.0
    for b in np.unique(idx):
        m = idx == b
        tot += m.sum() * abs(p[m].mean() - y[m].mean())
    return float(tot / len(y)) if len(y) else float("nan")


def _point_metrics(y, p, thr: float) -> dict:
    from sklearn.metrics import average_precision_score

    y = np.asarray(y, int)
    p = np.clip(np.asarray(p, np.float64), 1e-7, 1 - 1e-7)
    two = len(np.unique(y)) == 2
    pred = p >= thr
    reals, fakes = y == 0, y == 1
    return {
        "auc": auc(y, p) if two else None,
        "ap": float(average_precision_score(y, p)) if two else None,
        "eer": eer(y, p) if two else None,
        "log_loss": float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))),
        "brier": float(np.mean((p - y) ** 2)),
        "ece": ece(y, p),
        "false_alarm_rate": float(pred[reals].mean()) if reals.any() else None,
        "detection_rate": float(pred[fakes].mean()) if fakes.any() else None,
    }


def bootstrap(y, p, groups, thr: float, n: int = BOOTSTRAP, seed: int = 0) -> dict[str, list[float] | None]:
    """95 % percentile intervals of every metric, resampling identity GROUPS with replacement."""
    y, p, groups = np.asarray(y, int), np.asarray(p, np.float64), np.asarray(groups).astype(str)
    ug, inv = np.unique(groups, return_inverse=True)
    members = [np.flatnonzero(inv == k) for k in range(len(ug))]
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {}
    for _ in range(n if len(ug) > 1 else 0):
        pick = rng.integers(0, len(ug), len(ug))
        idx = np.concatenate([members[k] for k in pick])
        for k, v in _point_metrics(y[idx], p[idx], thr).items():
            if v is not None:
                draws.setdefault(k, []).append(v)
    out = {}
    for k in ("auc", "ap", "eer", "log_loss", "brier", "ece", "false_alarm_rate", "detection_rate"):
        d = draws.get(k, [])
        out[f"{k}_ci"] = ([round(float(np.percentile(d, 2.5)), 4), round(float(np.percentile(d, 97.5)), 4)]
                          if len(d) >= max(20, n // 4) else None)
    return out


def slice_metrics(df: pd.DataFrame, thr: float, n_boot: int = BOOTSTRAP, **tags) -> dict:
    y, p = df["label"].to_numpy(int), df["score"].to_numpy(float)
    pm = _point_metrics(y, p, thr)
    pred = p >= thr
    d = {**tags, "n": int(len(df)), "n_real": int((y == 0).sum()), "n_fake": int((y == 1).sum()),
         "n_groups": int(df["group"].nunique())}
    d.update({k: (None if v is None else round(float(v), 4)) for k, v in pm.items()})
    d.update(bootstrap(y, p, df["group"].to_numpy(), thr, n=n_boot))
    d.update(accuracy=round(float((pred == (y == 1)).mean()), 4) if len(y) else None,
             tn=int(((~pred) & (y == 0)).sum()), fp=int((pred & (y == 0)).sum()),
             fn=int(((~pred) & (y == 1)).sum()), tp=int((pred & (y == 1)).sum()))
    return d


def reliability(y, p, bins: int = 10) -> pd.DataFrame:
    y, p = np.asarray(y, np.float64), np.asarray(p, np.float64)
    idx = np.minimum((p * bins).astype(int), bins - 1)
    rows = [{"bin": b, "mean_score": round(float(p[idx == b].mean()), 5), "fraction_fake": round(float(y[idx == b].mean()), 5),
             "count": int((idx == b).sum())} for b in range(bins) if (idx == b).any()]
    return pd.DataFrame(rows, columns=["bin", "mean_score", "fraction_fake", "count"])


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


def analyse_split(run: Path, det, rows: pd.DataFrame, split: str, progress: bool = True) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Run ``det.analyze`` on every file of ``rows`` (resumable cache) -> (file table, face table), RAW scores."""
    cache_dir = run / "analysis"
    cache_dir.mkdir(exist_ok=True)
    cache = cache_dir / f"{split}.jsonl"
    key = {"model": _model_key(run), "crop_spec": det.spec.to_dict(), "strategy": "max_mean"}
    done: dict[str, dict] = {}
    if cache.is_file():
        lines = cache.read_text().splitlines()
        if lines and json.loads(lines[0]) == key:
            for ln in lines[1:]:
                try:
                    r = json.loads(ln)
                except json.JSONDecodeError:  # a line cut by a kill: analysed again
                    continue
                done[r["path"]] = r
        else:
            cache.unlink()
    if not cache.is_file():
        cache.write_text(json.dumps(key) + "\n")
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
    val_ci = bootstrap(y, raw, ok["group"].to_numpy(), 0.5)["auc_ci"]
    card.setdefault("metrics", {})["val_file_auc"] = None if val_auc is None else round(float(val_auc), 4)
    card["metrics"]["val_file_auc_ci"] = val_ci
    card["threshold"] = round(float(thr), 6)
    card["threshold_policy"] = f"{policy}: {what}, on calibrated validation file scores (n={len(ok)})"
    card["notes"] = "P(fake) is calibrated on validation files; run `python -m training evaluate RUN` for test numbers"
    tmp = card_f.with_suffix(".tmp")
    tmp.write_text(json.dumps(card, indent=2) + "\n")
    os.replace(tmp, card_f)
    return {"threshold": thr, "calibration": cal.to_dict(), "policy": card["threshold_policy"],
            "val_file_auc": card["metrics"]["val_file_auc"], "val_file_auc_ci": val_ci,
            "n_val_files": int(len(ok)), "skipped": int(len(ft) - len(ok))}


# --------------------------------------------------------------------------- evaluate
def _atomic_csv(df: pd.DataFrame, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    df.to_csv(tmp, index=False)
    os.replace(tmp, path)


def _curves(out: Path, tag: str, y, p) -> None:
    from sklearn import metrics as skm

    if len(np.unique(y)) < 2:
        return
    fpr, tpr, thr = skm.roc_curve(y, p)
    pd.DataFrame({"fpr": fpr, "tpr": tpr, "threshold": np.minimum(thr, 1.0)}).to_csv(out / f"roc_{tag}.csv", index=False)
    prec, rec, thr2 = skm.precision_recall_curve(y, p)
    pd.DataFrame({"precision": prec, "recall": rec, "threshold": np.append(thr2, 1.0)}).to_csv(out / f"pr_{tag}.csv", index=False)


def _slices(ft: pd.DataFrame, fc: pd.DataFrame, vds: list[str], thr: float, n_boot: int) -> list[dict]:
    """Slices by level, dataset, method and compression. The pooled "video datasets" slice (the headline) covers
    ``vds``; every other non-photo dataset of the test split gets its own slices too (a dataset held out of
    training and validation -- leave-one-dataset-out -- is reported, never pooled into the headline)."""
    out = []
    for level, t in (("file", ft), ("face", fc)):
        t = t[~t["dataset"].isin(PHOTO_SETS)]
        if t.empty:
            continue
        pooled = [("video datasets", t[t["dataset"].isin(vds)])] if t["dataset"].isin(vds).any() else []
        for dname, d in pooled + [(x, t[t["dataset"] == x]) for x in sorted(t["dataset"].unique())]:
            for comp in ["all"] + sorted(c for c in d["compression"].astype(str).unique() if c):
                dc = d if comp == "all" else d[d["compression"].astype(str) == comp]
                reals = dc[dc["label"] == 0]
                if dc.empty:
                    continue
                out.append(slice_metrics(dc, thr, n_boot, level=level, dataset=dname, method="all", compression=comp))
                for m in sorted(dc.loc[dc["label"] == 1, "method"].unique()):
                    both = pd.concat([reals, dc[(dc["label"] == 1) & (dc["method"] == m)]])
                    out.append(slice_metrics(both, thr, n_boot, level=level, dataset=dname, method=m, compression=comp))
    return out


def audit(ft: pd.DataFrame, thr: float, n_boot: int = BOOTSTRAP) -> pd.DataFrame:
    """Held-out real photos: false-alarm rate at the threshold by gender and race (with a 95 % bootstrap interval
    over files) and score percentiles -- a 0 % rate far below the threshold says nothing, the percentiles show it.
    Photo sets are never pooled: one row per set, and gender/race rows (from UTKFace's file names) per attribute."""
    reals = ft[(ft["label"] == 0) & ft["dataset"].isin(PHOTO_SETS) & ft["score"].notna()]
    rows = []
    groups = []
    for attr, names in (("gender", GENDERS), ("race", RACES)):
        if attr in reals:
            a = pd.to_numeric(reals[attr], errors="coerce")
            groups += [(attr, name, reals[a == code]) for code, name in names.items()]
    for ds in sorted(reals["dataset"].unique()):
        groups.append(("dataset", ds, reals[reals["dataset"] == ds]))
    rng = np.random.default_rng(0)
    for attr, name, g in groups:
        if g.empty:
            continue
        s = g["score"].to_numpy(float)
        fa = s >= thr
        boots = [fa[rng.integers(0, len(fa), len(fa))].mean() for _ in range(n_boot)]
        rows.append({"attribute": attr, "group": name, "n": len(g), "false_alarms": int(fa.sum()),
                     "false_alarm_rate": round(float(fa.mean()), 4),
                     "false_alarm_rate_ci_lo": round(float(np.percentile(boots, 2.5)), 4),
                     "false_alarm_rate_ci_hi": round(float(np.percentile(boots, 97.5)), 4),
                     "score_p50": round(float(np.percentile(s, 50)), 4), "score_p90": round(float(np.percentile(s, 90)), 4),
                     "score_p99": round(float(np.percentile(s, 99)), 4)})
    return pd.DataFrame(rows, columns=["attribute", "group", "n", "false_alarms", "false_alarm_rate",
                                       "false_alarm_rate_ci_lo", "false_alarm_rate_ci_hi", "score_p50", "score_p90",
                                       "score_p99"])


def evaluate_run(run: str | Path, n_boot: int = BOOTSTRAP, progress: bool = True, max_photos: int = 0,
                 audit_sets: list[str] = ()) -> str:
    """Analyse the run's test files through the engine and write ``RUN/evaluation/``; returns a summary.

    ``audit_sets``: extra real photo sets the run never trained on (``KIND=ROOT``, e.g. ``utkface=../data/utkface``),
    evaluated whole as held-out photo sets (false alarms by group; never pooled into the headline).
    """
    from model.network import CARD_FILE
    from training.datasets import index_dataset

    run = Path(run)
    cfg, det, index = _load_run(run)
    thr, cal = det.threshold, det.calibration
    test = index[index["split"] == "test"]
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
    vds = video_datasets(cfg, index)
    ft, fc = analyse_split(run, det, test, "test", progress)
    for t in (ft, fc):
        t["score"] = cal.apply(t["raw_score"].to_numpy(float)) if len(t) else []
        t.loc[t["raw_score"].isna(), "score"] = np.nan
    scored = ft[ft["score"].notna()]
    slices = _slices(scored, fc, vds, thr, n_boot)
    head = next((s for s in slices if s["level"] == "file" and s["dataset"] == "video datasets"
                 and s["method"] == "all" and s["compression"] == "all"), None)
    photo = [slice_metrics(g, thr, n_boot, level="file", dataset=d, method="real", compression="all")
             for d, g in scored[scored["dataset"].isin(PHOTO_SETS)].groupby("dataset")]

    out, tmpdir = run / "evaluation", run / "evaluation.tmp"
    tmpdir.mkdir(parents=True, exist_ok=True)
    pf = ft.copy()
    pf["path"] = [_rel(p) for p in pf["path"]]
    _atomic_csv(pf[FILE_COLS + [c for c in ("age", "gender", "race") if c in pf]], tmpdir / "predictions.csv")
    pc = fc.copy()
    pc["path"] = [_rel(p) for p in pc["path"]]
    _atomic_csv(pc[FACE_COLS], tmpdir / "face_predictions.csv")
    hv = scored[scored["dataset"].isin(vds)]
    hf = fc[fc["dataset"].isin(vds)]
    _curves(tmpdir, "file", hv["label"], hv["score"])
    _curves(tmpdir, "face", hf["label"], hf["score"])
    rel = []
    val_cache = run / "analysis" / "val.jsonl"
    val_parts = []
    if val_cache.is_file():
        val = index[(index["split"] == "val") & index["dataset"].isin(vds)]
        vft, vfc = analyse_split(run, det, val, "val", progress)
        vft = vft[vft["raw_score"].notna()]
        val_parts = [("val", "file", vft), ("val", "face", vfc)]
    for split, level, t in val_parts + [("test", "file", hv), ("test", "face", hf)]:
        if t.empty:
            continue
        raw = t["raw_score"].to_numpy(float)
        for stage, p in (("raw", raw), ("calibrated", cal.apply(raw))):
            r = reliability(t["label"], p)
            r.insert(0, "split", split), r.insert(0, "stage", stage), r.insert(0, "level", level)
            rel.append(r)
    if rel:
        _atomic_csv(pd.concat(rel, ignore_index=True), tmpdir / "reliability.csv")
    au = audit(ft, thr, n_boot)
    if len(au):
        _atomic_csv(au, tmpdir / "audit.csv")
    src = (scored.assign(media=scored["kind"]).groupby(["dataset", "media", "label"])["score"]
           .describe(percentiles=[0.1, 0.25, 0.5, 0.75, 0.9]).reset_index())
    src = src.rename(columns={"count": "n", "10%": "p10", "25%": "p25", "50%": "p50", "75%": "p75", "90%": "p90"})
    _atomic_csv(src[["dataset", "media", "label", "n", "p10", "p25", "p50", "p75", "p90"]].round(4),
                tmpdir / "score_by_source.csv")
    calib_before_after = {}
    if head:
        raw = hv["raw_score"].to_numpy(float)
        y = hv["label"].to_numpy(int)
        calib_before_after = {"raw": {"ece": round(ece(y, raw), 4), "brier": round(float(np.mean((raw - y) ** 2)), 4)},
                              "calibrated": {"ece": head["ece"], "brier": head["brier"]}}
    m = {
        "schema": SCHEMA, "threshold": thr, "threshold_policy": det.card.threshold_policy,
        "calibration": cal.to_dict(), "calibration_test_files": calib_before_after,
        "headline": head, "slices": slices, "photo_sets": photo,
        "n_files": int(len(ft)), "n_faces": int(len(fc)), "n_errors": int((ft["error"].fillna("") != "").sum()),
        "test_groups": (sorted(test["group"].unique().tolist()) if test["group"].nunique() <= 60
                        else f"{test['group'].nunique()} groups"),
        "bootstrap": f"{n_boot} resamples of identity groups, 95 % percentile intervals",
        "model_card": det.card.to_dict(),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    m["model_key"] = _model_key(run)
    (tmpdir / "metrics.json").write_text(json.dumps(m, indent=2))
    if out.exists():  # publish atomically
        import shutil

        # explain-eval results stay valid while the model is the same one (they are costly to recompute)
        try:
            same = json.loads((out / "metrics.json").read_text()).get("model_key") == m["model_key"]
        except (OSError, ValueError):
            same = False
        for f in sorted(out.glob("explain_eval*")) if same else []:
            shutil.copy2(f, tmpdir / f.name)

        old = run / "evaluation.old"
        if old.exists():
            shutil.rmtree(old)
        os.replace(out, old)
        os.replace(tmpdir, out)
        shutil.rmtree(old)
    else:
        os.replace(tmpdir, out)
    # the model card's metrics: the headline with its interval, and the photo sets apart
    card_f = run / "model" / CARD_FILE
    card = json.loads(card_f.read_text())
    keep = {k: v for k, v in card.get("metrics", {}).items() if k in ("val_auc", "best_epoch", "val_file_auc", "val_file_auc_ci")}
    if head:
        keep["headline"] = {k: head[k] for k in ("level", "dataset", "n", "n_real", "n_fake", "n_groups", "auc",
                                                 "auc_ci", "ece", "ece_ci", "brier", "false_alarm_rate",
                                                 "detection_rate")}
        keep["headline"]["what"] = "file-level AUC on the video datasets' test identity groups (engine-run)"
        face = next((s for s in slices if s["level"] == "face" and s["dataset"] == "video datasets"
                     and s["method"] == "all" and s["compression"] == "all"), None)
        if face:
            keep["face_auc"], keep["face_auc_ci"] = face["auc"], face["auc_ci"]
    for s in photo:
        keep[f"false_alarm_rate_{s['dataset']}"] = {"rate": s["false_alarm_rate"], "ci": s["false_alarm_rate_ci"],
                                                     "n": s["n"]}
    card["metrics"] = keep
    card_f.write_text(json.dumps(card, indent=2) + "\n")
    if head:
        return (f"{run}: file AUC {head['auc']} [{head['auc_ci']}] on {head['n']} test files of {', '.join(vds)} "
                f"({head['n_groups']} identity groups); ECE {head['ece']}; threshold {thr:.4f}; {m['n_errors']} errors")
    return f"{run}: evaluated {len(ft)} files (no video-dataset test files: no headline)"


def audit_run(run: str | Path) -> pd.DataFrame:
    f = Path(run) / "evaluation" / "audit.csv"
    if not f.is_file():
        raise FileNotFoundError(f"{f} not found: evaluate the run first (its test split needs real photos)")
    return pd.read_csv(f)
