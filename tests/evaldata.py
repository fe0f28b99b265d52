"""Small evaluation folders in the schema-2 layout of /work/notes/EVAL_SCHEMA.md (RUN/evaluation/), for tests of the
dashboard and of explain-eval. Numbers are computed from generated predictions with scikit-learn, so every stored
metric agrees with the stored predictions."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn import metrics as skm

VIDEO_DATASETS = ("ffpp", "dfd")
METHODS = ("Deepfakes", "FaceSwap")


def _files(seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for ds, comps in (("ffpp", ("c23", "c40")), ("dfd", ("c23",))):
        for comp in comps:
            for g in range(6):
                group = f"{ds}:{g}"
                rows.append(dict(path=f"../shared/data/{ds}/{comp}/real_{g}.mp4", kind="video", dataset=ds, method="",
                                 compression=comp, group=group, label=0, score=float(rng.beta(2, 4))))
                for m in (METHODS if ds == "ffpp" else METHODS[:1]):
                    rows.append(dict(path=f"../shared/data/{ds}/{comp}/{m}_{g}.mp4", kind="video", dataset=ds,
                                     method=m, compression=comp, group=group, label=1,
                                     score=float(rng.beta(4 if m == "Deepfakes" else 3, 2.5))))
    for i in range(8):
        rows.append(dict(path=f"../shared/data/utkface/{i}.jpg", kind="image", dataset="utkface", method="",
                         compression="", group=f"utkface:{i}", label=0, score=float(rng.beta(1, 6))))
    df = pd.DataFrame(rows)
    df["raw_score"] = df["score"] ** 1.3
    df["faces"], df["error"] = 1, ""
    return df


def _slice(d: pd.DataFrame, thr: float, **tags) -> dict:
    y, p = d["label"].to_numpy(int), d["score"].to_numpy(float)
    two = len(np.unique(y)) == 2
    pred = p >= thr
    tn, fp = int(((~pred) & (y == 0)).sum()), int((pred & (y == 0)).sum())
    fn, tp = int(((~pred) & (y == 1)).sum()), int((pred & (y == 1)).sum())
    auc = float(skm.roc_auc_score(y, p)) if two else None
    r = lambda v: None if v is None else round(v, 4)  # noqa: E731
    ci = lambda v: None if v is None else [r(max(0.0, v - 0.1)), r(min(1.0, v + 0.05))]  # noqa: E731
    s = {**tags, "n": len(d), "n_real": int((y == 0).sum()), "n_fake": int((y == 1).sum()),
         "n_groups": int(d["group"].nunique()),
         "auc": r(auc), "auc_ci": ci(auc), "ap": r(float(skm.average_precision_score(y, p)) if two else None),
         "brier": r(float(np.mean((p - y) ** 2))), "ece": 0.05, "ece_ci": [0.02, 0.09],
         "accuracy": r(float((pred == (y == 1)).mean())), "tn": tn, "fp": fp, "fn": fn, "tp": tp,
         "false_alarm_rate": r(fp / (fp + tn)) if fp + tn else None, "detection_rate": r(tp / (tp + fn)) if tp + fn else None}
    s["ap_ci"] = ci(s["ap"])
    s["false_alarm_rate_ci"], s["detection_rate_ci"] = ci(s["false_alarm_rate"]), ci(s["detection_rate"])
    return s


def _slices(ft: pd.DataFrame, fc: pd.DataFrame, thr: float) -> list[dict]:
    out = []
    for level, t in (("file", ft), ("face", fc)):
        t = t[t["dataset"].isin(VIDEO_DATASETS)]
        for dname, d in [("video datasets", t)] + [(x, t[t["dataset"] == x]) for x in sorted(t["dataset"].unique())]:
            for comp in ["all"] + sorted(d["compression"].unique()):
                dc = d if comp == "all" else d[d["compression"] == comp]
                out.append(_slice(dc, thr, level=level, dataset=dname, method="all", compression=comp))
                for m in sorted(dc.loc[dc["label"] == 1, "method"].unique()):
                    both = dc[(dc["label"] == 0) | (dc["method"] == m)]
                    out.append(_slice(both, thr, level=level, dataset=dname, method=m, compression=comp))
    return out


def write_v2_run(root: Path, name: str, seed: int = 0, threshold: float = 0.5, faces: pd.DataFrame | None = None,
                 model_dir: Path | None = None) -> Path:
    """A run folder with a schema-2 evaluation. ``faces`` replaces the generated face predictions (e.g. with
    faces of real files on this machine); ``model_dir`` is copied to RUN/model."""
    run = root / name
    ev = run / "evaluation"
    ev.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"name": name}))
    if model_dir is not None:
        import shutil

        shutil.copytree(model_dir, run / "model")
    ft = _files(seed)
    if faces is None:
        rng = np.random.default_rng(seed + 100)
        fc = ft.loc[ft.index.repeat(2)].reset_index(drop=True)
        fc["frame"] = np.tile([3, 17], len(ft))
        fc["track"], fc["face"] = 0, 0
        fc["score"] = np.clip(fc["score"] + rng.normal(0, 0.05, len(fc)), 0, 1)
        fc["raw_score"] = fc["score"]
        fc["x"], fc["y"], fc["w"], fc["h"] = 40, 30, 60, 80
    else:
        fc = faces
    thr = threshold
    slices = _slices(ft, fc, thr)
    head = next(s for s in slices if (s["level"], s["dataset"], s["method"], s["compression"]) ==
                ("file", "video datasets", "all", "all"))
    photo = [_slice(ft[ft["dataset"] == "utkface"], thr, level="file", dataset="utkface", method="real",
                    compression="all")]
    m = {"schema": 2, "threshold": thr, "threshold_policy": "youden on validation files",
         "calibration": {"method": "platt", "a": 1.0, "b": 0.0}, "headline": head, "slices": slices,
         "photo_sets": photo, "n_files": len(ft), "n_faces": len(fc), "test_groups": "13 groups",
         "model_card": {}, "created": "2026-01-01T00:00:00+00:00"}
    (ev / "metrics.json").write_text(json.dumps(m, indent=2))
    ft[["path", "kind", "dataset", "method", "compression", "group", "label", "score", "raw_score", "faces",
        "error"]].to_csv(ev / "predictions.csv", index=False)
    fc[["path", "dataset", "method", "compression", "group", "label", "frame", "track", "face", "score", "raw_score",
        "x", "y", "w", "h"]].to_csv(ev / "face_predictions.csv", index=False)
    for level, t in (("file", ft), ("face", fc)):
        t = t[t["dataset"].isin(VIDEO_DATASETS)]
        fpr, tpr, th = skm.roc_curve(t["label"], t["score"])
        pd.DataFrame({"fpr": fpr, "tpr": tpr, "threshold": np.minimum(th, 1)}).to_csv(ev / f"roc_{level}.csv", index=False)
        pr, rc, th2 = skm.precision_recall_curve(t["label"], t["score"])
        pd.DataFrame({"precision": pr, "recall": rc, "threshold": np.append(th2, 1)}).to_csv(ev / f"pr_{level}.csv",
                                                                                            index=False)
    rel = []
    for level in ("file", "face"):
        for split in ("val", "test"):
            for stage, shift in (("raw", 0.15), ("calibrated", 0.0)):
                for b in range(5):
                    rel.append({"level": level, "stage": stage, "split": split, "bin": b,
                                "mean_score": round(0.1 + 0.2 * b, 3),
                                "fraction_fake": round(min(1.0, 0.1 + 0.2 * b + (shift if b < 3 else -shift)), 3),
                                "count": 10 + b})
    pd.DataFrame(rel).to_csv(ev / "reliability.csv", index=False)
    pd.DataFrame([
        {"attribute": "all", "group": "all", "n": 8, "false_alarms": 1, "false_alarm_rate": 0.125,
         "false_alarm_rate_ci_lo": 0.0, "false_alarm_rate_ci_hi": 0.375, "score_p50": 0.1, "score_p90": 0.4,
         "score_p99": 0.6},
        {"attribute": "gender", "group": "female", "n": 4, "false_alarms": 0, "false_alarm_rate": 0.0,
         "false_alarm_rate_ci_lo": 0.0, "false_alarm_rate_ci_hi": 0.0, "score_p50": 0.08, "score_p90": 0.2,
         "score_p99": 0.25}]).to_csv(ev / "audit.csv", index=False)
    src = (ft.assign(media=ft["kind"]).groupby(["dataset", "media", "label"])["score"]
           .describe(percentiles=[0.1, 0.25, 0.5, 0.75, 0.9]).reset_index()
           .rename(columns={"count": "n", "10%": "p10", "25%": "p25", "50%": "p50", "75%": "p75", "90%": "p90"}))
    src[["dataset", "media", "label", "n", "p10", "p25", "p50", "p75", "p90"]].round(4).to_csv(
        ev / "score_by_source.csv", index=False)
    return run


def write_v1_run(root: Path, name: str) -> Path:
    """A run evaluated in the old crop-level format (schema 1)."""
    run = root / name
    (run / "evaluation").mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"name": name}))
    block = {"auc": 0.8, "ap": 0.8, "accuracy": 0.7, "balanced_accuracy": 0.7, "log_loss": 0.5, "eer": 0.2, "n": 10,
             "n_real": 5, "n_fake": 5}
    (run / "evaluation" / "metrics.json").write_text(json.dumps({"threshold": 0.5, "frame": block, "video": block,
                                                                  "per_method": [], "per_dataset": []}))
    pd.DataFrame({"crop": ["a.png"], "image": ["a.png"], "label": [0], "score": [0.3]}).to_csv(
        run / "evaluation" / "predictions.csv", index=False)
    return run
