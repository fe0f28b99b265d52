"""Evaluation: ``python -m training evaluate RUN`` writes ``RUN/evaluation/`` (schema below), computed with
scikit-learn from the run's best model on its test split. The dashboard reads these files as they are.

    metrics.json        {"threshold", "frame": M, "video": M, "per_method": [M + method], "per_dataset": [M + dataset],
                         "confusion_frame": {"tn","fp","fn","tp"}, "confusion_video": {...}, "n_frame", "n_video",
                         "model_card", "created"}
                        where M = {auc, ap, accuracy, balanced_accuracy, log_loss, eer, n, n_real, n_fake}
                        (auc/ap/eer are null when a subset has one class only)
    predictions.csv     frame level: crop, image, path, video, dataset, method, compression, group, label, score,
                        frame, age, gender, race   (image = crop path relative to the repository when inside it)
    video_predictions.csv   video level: video, path, dataset, method, label, score (max over faces per frame, mean
                        over frames), frames
    roc_frame.csv, roc_video.csv   fpr, tpr, threshold
    pr_frame.csv, pr_video.csv     precision, recall, threshold
    calibration.csv     bin, mean_score, fraction_fake, count (frame level, 10 bins)
    audit.csv           false-alarm rate on real faces by attribute (when the test split has UTKFace-style attributes)
"""
from __future__ import annotations

import datetime as _dt
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn import metrics as skm

from training import config as config_mod
from training.train import REPO_ROOT, load_images, load_table

GENDERS = {0: "male", 1: "female"}
RACES = {0: "White", 1: "Black", 2: "Asian", 3: "Indian", 4: "Other"}


def eer(y: np.ndarray, p: np.ndarray) -> float | None:
    if len(np.unique(y)) < 2:
        return None
    fpr, tpr, _ = skm.roc_curve(y, p)
    fnr = 1 - tpr
    i = int(np.nanargmin(np.abs(fnr - fpr)))
    return float((fpr[i] + fnr[i]) / 2)


def metric_block(y: np.ndarray, p: np.ndarray, thr: float) -> dict:
    y = np.asarray(y, int)
    p = np.clip(np.asarray(p, np.float64), 1e-7, 1 - 1e-7)
    pred = (p >= thr).astype(int)
    two = len(np.unique(y)) == 2
    r = lambda v: None if v is None else round(float(v), 6)  # noqa: E731
    return {
        "auc": r(skm.roc_auc_score(y, p)) if two else None,
        "ap": r(skm.average_precision_score(y, p)) if two else None,
        "accuracy": r(skm.accuracy_score(y, pred)),
        "balanced_accuracy": r(skm.balanced_accuracy_score(y, pred)) if two else None,
        "log_loss": r(skm.log_loss(y, p, labels=[0, 1])),
        "eer": r(eer(y, p)),
        "n": int(len(y)), "n_real": int((y == 0).sum()), "n_fake": int((y == 1).sum()),
    }


def confusion(y, p, thr) -> dict:
    tn, fp, fn, tp = skm.confusion_matrix(np.asarray(y, int), (np.asarray(p) >= thr).astype(int), labels=[0, 1]).ravel()
    return {"tn": int(tn), "fp": int(fp), "fn": int(fn), "tp": int(tp)}


def video_level(pred: pd.DataFrame) -> pd.DataFrame:
    """Max over faces in a frame, mean over frames -- the engine's default ``max_mean`` strategy."""
    per_frame = pred.groupby(["video", "frame"], as_index=False).agg(
        score=("score", "max"), label=("label", "first"), path=("path", "first"), dataset=("dataset", "first"),
        method=("method", "first"))
    return per_frame.groupby("video", as_index=False).agg(
        path=("path", "first"), dataset=("dataset", "first"), method=("method", "first"), label=("label", "first"),
        score=("score", "mean"), frames=("frame", "count"))


def _curves(out: Path, tag: str, y, p) -> None:
    if len(np.unique(y)) < 2:
        return
    fpr, tpr, thr = skm.roc_curve(y, p)
    pd.DataFrame({"fpr": fpr, "tpr": tpr, "threshold": np.minimum(thr, 1.0)}).to_csv(out / f"roc_{tag}.csv", index=False)
    prec, rec, thr2 = skm.precision_recall_curve(y, p)
    pd.DataFrame({"precision": prec, "recall": rec, "threshold": np.append(thr2, 1.0)}).to_csv(out / f"pr_{tag}.csv", index=False)


def calibration(y, p, bins: int = 10) -> pd.DataFrame:
    y, p = np.asarray(y), np.asarray(p)
    idx = np.minimum((p * bins).astype(int), bins - 1)
    rows = [{"bin": b, "mean_score": float(p[idx == b].mean()), "fraction_fake": float(y[idx == b].mean()),
             "count": int((idx == b).sum())} for b in range(bins) if (idx == b).any()]
    return pd.DataFrame(rows, columns=["bin", "mean_score", "fraction_fake", "count"])


def audit(pred: pd.DataFrame, thr: float) -> pd.DataFrame:
    """False-alarm rate (real faces scored >= threshold) by gender and by race, for rows with attributes."""
    reals = pred[(pred["label"] == 0) & (pred.get("gender", -1).astype(float) >= 0)] if "gender" in pred else pred.iloc[0:0]
    rows = []
    for attr, names in (("gender", GENDERS), ("race", RACES)):
        if attr not in reals:
            continue
        for code, name in names.items():
            g = reals[reals[attr].astype(float) == code]
            if len(g):
                rows.append({"attribute": attr, "group": name, "n": len(g),
                             "false_alarms": int((g["score"] >= thr).sum()),
                             "false_alarm_rate": round(float((g["score"] >= thr).mean()), 4)})
    if len(reals):
        rows.append({"attribute": "all", "group": "all", "n": len(reals), "false_alarms": int((reals["score"] >= thr).sum()),
                     "false_alarm_rate": round(float((reals["score"] >= thr).mean()), 4)})
    return pd.DataFrame(rows, columns=["attribute", "group", "n", "false_alarms", "false_alarm_rate"])


def _rel(p: str) -> str:
    try:
        return str(Path(p).resolve().relative_to(REPO_ROOT))
    except ValueError:
        return p


def _atomic_csv(df: pd.DataFrame, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    df.to_csv(tmp, index=False)
    os.replace(tmp, path)


def evaluate_run(run: str | Path, frames: int = 0, batch: int = 64) -> str:
    """Evaluate ``RUN/model`` on the run's test split; returns a one-paragraph summary."""
    from model.api import Detector

    run = Path(run)
    cfg = config_mod.from_dict(json.loads((run / "config.json").read_text()))
    det = Detector.load(run / "model")
    thr = det.threshold
    df = load_table(cfg)
    test = df[df["split"] == "test"].copy()
    if test.empty:
        raise ValueError(f"{run}: the test split is empty")
    scores = []
    files = test["file"].tolist()
    for i in range(0, len(files), 256):
        scores.append(det.score_crops(load_images(files[i:i + 256], det.input_size), batch_size=batch))
    test["score"] = np.concatenate(scores)
    out = run / "evaluation"
    tmpdir = run / "evaluation.tmp"
    tmpdir.mkdir(parents=True, exist_ok=True)
    test["image"] = [_rel(f) for f in test["file"]]
    cols = ["crop", "image", "path", "video", "dataset", "method", "compression", "group", "label", "score", "frame",
            "age", "gender", "race"]
    pred = test[cols].copy()
    pred["path"] = [_rel(p) for p in pred["path"]]
    _atomic_csv(pred, tmpdir / "predictions.csv")
    vid = video_level(pred)
    _atomic_csv(vid, tmpdir / "video_predictions.csv")
    y, p = pred["label"].to_numpy(), pred["score"].to_numpy()
    yv, pv = vid["label"].to_numpy(), vid["score"].to_numpy()
    _curves(tmpdir, "frame", y, p)
    _curves(tmpdir, "video", yv, pv)
    _atomic_csv(calibration(y, p), tmpdir / "calibration.csv")
    # per method: that method's fakes against the real faces of video datasets (same source as the fakes);
    # image-only real sets (UTKFace) would make every method look easy
    video_reals = pred[(pred["label"] == 0) & (test["media"].to_numpy() == "video")]
    reals = video_reals if len(video_reals) else pred[pred["label"] == 0]
    per_method = []
    for m, g in pred[pred["label"] == 1].groupby("method"):
        both = pd.concat([reals, g])
        per_method.append({"method": m, **metric_block(both["label"], both["score"], thr),
                           "detection_rate": round(float((g["score"] >= thr).mean()), 6)})
    per_method.append({"method": "real", **metric_block(reals["label"], reals["score"], thr),
                       "detection_rate": None, "false_alarm_rate": round(float((reals["score"] >= thr).mean()), 6) if len(reals) else None})
    per_dataset = [{"dataset": d, **metric_block(g["label"], g["score"], thr)} for d, g in pred.groupby("dataset")]
    au = audit(pred, thr)
    if len(au):
        _atomic_csv(au, tmpdir / "audit.csv")
    vids = pred[test["media"].to_numpy() == "video"]
    subsets = {}
    if len(vids) and vids["label"].nunique() == 2:
        vv = video_level(vids)
        subsets["video datasets"] = {"frame": metric_block(vids["label"], vids["score"], thr),
                                     "video": metric_block(vv["label"], vv["score"], thr),
                                     "datasets": sorted(vids["dataset"].unique().tolist())}
    m = {
        "threshold": thr, "frame": metric_block(y, p, thr), "video": metric_block(yv, pv, thr),
        "subsets": subsets,
        "per_method": per_method, "per_dataset": per_dataset,
        "confusion_frame": confusion(y, p, thr), "confusion_video": confusion(yv, pv, thr),
        "n_frame": int(len(pred)), "n_video": int(len(vid)),
        "test_groups": sorted(pred["group"].unique().tolist()) if pred["group"].nunique() <= 50 else f"{pred['group'].nunique()} groups",
        "model_card": det.card.to_dict(),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    (tmpdir / "metrics.json").write_text(json.dumps(m, indent=2))
    # publish atomically: the evaluation folder is either the old complete one or the new complete one
    if out.exists():
        old = run / "evaluation.old"
        os.replace(out, old)
        os.replace(tmpdir, out)
        import shutil

        shutil.rmtree(old)
    else:
        os.replace(tmpdir, out)
    # record the measured numbers in the model card (the app shows them)
    from model.network import CARD_FILE

    card_f = run / "model" / CARD_FILE
    card = json.loads(card_f.read_text())
    card["metrics"].update({"test_frame_auc": m["frame"]["auc"], "test_video_auc": m["video"]["auc"],
                            "test_frame_accuracy": m["frame"]["accuracy"], "test_frame_eer": m["frame"]["eer"],
                            "test_video_accuracy": m["video"]["accuracy"], "n_test_crops": m["n_frame"],
                            **({"test_frame_auc_video_datasets": subsets["video datasets"]["frame"]["auc"],
                                "test_video_auc_video_datasets": subsets["video datasets"]["video"]["auc"]}
                               if subsets else {}),
                            "n_test_videos": m["n_video"]})
    if len(au):
        card["metrics"]["false_alarm_rate_by_group"] = {f"{r.attribute}:{r.group}": r.false_alarm_rate for r in au.itertuples()}
    card_f.write_text(json.dumps(card, indent=2) + "\n")
    fm, vm = m["frame"], m["video"]
    extra = ""
    if subsets:
        sv = subsets["video datasets"]
        extra = f"; video datasets only: frame AUC {sv['frame']['auc']} (n={sv['frame']['n']}), video AUC {sv['video']['auc']} (n={sv['video']['n']})"
    return (f"{run}: threshold {thr:.3f}; frame AUC {fm['auc']} acc {fm['accuracy']} (n={fm['n']}); "
            f"video AUC {vm['auc']} acc {vm['accuracy']} (n={vm['n']})" + extra)


def audit_run(run: str | Path) -> pd.DataFrame:
    f = Path(run) / "evaluation" / "audit.csv"
    if not f.is_file():
        raise FileNotFoundError(f"{f} not found: evaluate the run first (its test split needs faces with attributes)")
    return pd.read_csv(f)
