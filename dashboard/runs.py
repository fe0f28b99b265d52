"""Reading run folders written by the training pipeline (no Streamlit here: plain functions, tested directly)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn import metrics as skm


def list_runs(root: Path) -> list[Path]:
    """Run folders under root: those with a config.json (sorted by name)."""
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and (p / "config.json").is_file())


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def read_csv(path: Path) -> pd.DataFrame | None:
    try:
        return pd.read_csv(path, keep_default_na=False) if path.is_file() else None
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError):
        return None


def history(run: Path) -> pd.DataFrame | None:
    h = read_csv(run / "history.csv")
    if h is None or h.empty:
        return None
    h = h.copy()
    h["epoch"] = h["epoch"].astype(int) + 1  # 1-based for people
    return h


def history_long(runs: list[Path]) -> pd.DataFrame:
    """Long table run, epoch, metric, split (train/validation), value for plotting."""
    rows = []
    for r in runs:
        h = history(r)
        if h is None:
            continue
        for metric in ("loss", "auc", "accuracy"):
            for col, split in ((metric, "train"), (f"val_{metric}", "validation")):
                if col in h:
                    for e, v in zip(h["epoch"], pd.to_numeric(h[col], errors="coerce")):
                        rows.append({"run": r.name, "epoch": e, "metric": metric, "split": split, "value": v})
    return pd.DataFrame(rows, columns=["run", "epoch", "metric", "split", "value"])


def evaluation(run: Path) -> dict | None:
    return read_json(run / "evaluation" / "metrics.json")


def predictions(run: Path, level: str = "frame") -> pd.DataFrame | None:
    name = "predictions.csv" if level == "frame" else "video_predictions.csv"
    df = read_csv(run / "evaluation" / name)
    if df is not None:
        df["label"] = df["label"].astype(int)
        df["score"] = df["score"].astype(float)
    return df


def confusion_at(df: pd.DataFrame, threshold: float) -> np.ndarray:
    """2x2 [[tn, fp], [fn, tp]] at a threshold (score >= threshold -> fake)."""
    return skm.confusion_matrix(df["label"], (df["score"] >= threshold).astype(int), labels=[0, 1])


def metrics_at(df: pd.DataFrame, threshold: float) -> dict:
    (tn, fp), (fn, tp) = confusion_at(df, threshold)
    n = tn + fp + fn + tp
    return {"accuracy": (tn + tp) / n if n else float("nan"),
            "tpr (detection rate)": tp / (tp + fn) if tp + fn else float("nan"),
            "fpr (false alarms)": fp / (fp + tn) if fp + tn else float("nan"),
            "precision": tp / (tp + fp) if tp + fp else float("nan")}


def curve(run: Path, kind: str, level: str) -> pd.DataFrame | None:
    return read_csv(run / "evaluation" / f"{kind}_{level}.csv")


def misclassified(df: pd.DataFrame, threshold: float, kind: str, n: int = 24) -> pd.DataFrame:
    """Most confident mistakes: false positives (real scored highest) or false negatives (fakes scored lowest)."""
    if kind == "fp":
        sub = df[(df["label"] == 0) & (df["score"] >= threshold)].sort_values("score", ascending=False)
    else:
        sub = df[(df["label"] == 1) & (df["score"] < threshold)].sort_values("score", ascending=True)
    return sub.head(n)


def per_table(metrics: dict, key: str) -> pd.DataFrame:
    rows = metrics.get(key) or []
    cols = [c for c in ("method", "dataset", "n", "n_real", "n_fake", "auc", "ap", "accuracy", "balanced_accuracy",
                        "eer", "log_loss", "detection_rate", "false_alarm_rate") if any(c in r for r in rows)]
    return pd.DataFrame(rows)[cols] if rows else pd.DataFrame()


def curves_from(df: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame] | None:
    """ROC and PR curve points recomputed from predictions (for subsets the evaluation did not store)."""
    if df["label"].nunique() < 2:
        return None
    fpr, tpr, thr = skm.roc_curve(df["label"], df["score"])
    prec, rec, _ = skm.precision_recall_curve(df["label"], df["score"])
    return pd.DataFrame({"fpr": fpr, "tpr": tpr}), pd.DataFrame({"precision": prec, "recall": rec})


def subset(metrics: dict, name: str, level: str, pred: pd.DataFrame | None):
    """(metric block, predictions) for 'all' or a named subset of the evaluation."""
    if name == "all" or name not in (metrics.get("subsets") or {}):
        return metrics[level], pred
    s = metrics["subsets"][name]
    keep = pred[pred["dataset"].isin(s["datasets"])] if pred is not None else None
    return s[level], keep
