"""Reading run folders written by the training pipeline (no Streamlit here: plain functions, tested directly)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn import metrics as skm

from model.metrics import POINT_METRICS


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


def curves_from(df: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame] | None:
    """ROC and PR curve points recomputed from predictions (for subsets the evaluation did not store)."""
    if df["label"].nunique() < 2:
        return None
    fpr, tpr, thr = skm.roc_curve(df["label"], df["score"])
    prec, rec, _ = skm.precision_recall_curve(df["label"], df["score"])
    return pd.DataFrame({"fpr": fpr, "tpr": tpr}), pd.DataFrame({"precision": prec, "recall": rec})


# --------------------------------------------------------------------------- evaluation schema v2
# RUN/evaluation/ as written by `python -m training evaluate RUN` since schema 2 (engine-run, bootstrap intervals).
SCHEMA = 2
RERUN = "re-run `python -m training evaluate {run}`"
LEVELS = ("file", "face")
CI_METRICS = POINT_METRICS  # the metrics evaluate stores with a 95 % interval (<metric>_ci)


def schema(m: dict | None) -> int:
    """0 = not evaluated, 1 = the old crop-level format, 2+ = engine-run with intervals."""
    if not m:
        return 0
    try:
        return int(m.get("schema", 1))
    except (TypeError, ValueError):
        return 1


def is_current(m: dict | None) -> bool:
    return schema(m) >= SCHEMA and isinstance(m.get("slices"), list)


def fmt(v, digits: int = 3) -> str:
    return "—" if v is None or (isinstance(v, float) and not np.isfinite(v)) else f"{v:.{digits}f}"


def fmt_ci(v, ci, digits: int = 3) -> str:
    """'0.912 [0.850, 0.950]' (interval omitted when missing)."""
    if v is None:
        return "—"
    if not ci or len(ci) != 2 or ci[0] is None or ci[1] is None:
        return fmt(v, digits)
    return f"{v:.{digits}f} [{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]"


SliceKey = tuple[str, str, str, str]  # level, dataset, method, compression


def slice_key(s: dict) -> SliceKey:
    return (str(s.get("level")), str(s.get("dataset")), str(s.get("method")), str(s.get("compression", "all")))


def find_slice(m: dict, level: str, dataset: str, method: str = "all", compression: str = "all") -> dict | None:
    for s in (m.get("slices") or []) + (m.get("photo_sets") or []):
        if slice_key(s) == (level, dataset, method, compression):
            return s
    return None


def headline_key(m: dict) -> SliceKey:
    h = m.get("headline") or {}
    return slice_key(h) if h else ("file", "video datasets", "all", "all")


def slices_table(m: dict, level: str | None = None, photo: bool = False) -> pd.DataFrame:
    """One row per slice with 'value [lo, hi]' strings for every metric that has an interval."""
    rows = []
    for s in (m.get("photo_sets") if photo else m.get("slices")) or []:
        if level and s.get("level") != level:
            continue
        r = {k: s.get(k) for k in ("level", "dataset", "method", "compression", "n", "n_real", "n_fake", "n_groups")}
        for k in CI_METRICS:
            if k in s:
                r[k.replace("_", " ")] = fmt_ci(s.get(k), s.get(f"{k}_ci"))
        for k in ("tn", "fp", "fn", "tp"):
            r[k] = s.get(k)
        rows.append(r)
    return pd.DataFrame(rows)


def column_name(dataset: str, method: str) -> str:
    return dataset if method == "all" else f"{dataset} · {method}"


def cross_dataset(run_dirs: list[Path], level: str = "file", compression: str = "all"):
    """Every evaluated run (rows) x every (test dataset, method) it was evaluated on (columns).

    Returns (table of 'AUC [lo, hi]' strings, cells {(run name, column): slice key}, old runs (schema 1: to
    re-evaluate)). The headline column ('video datasets') comes first, then per dataset its 'all' then methods.
    """
    rows, cells, old, cols = {}, {}, [], []
    for r in run_dirs:
        m = evaluation(r)
        if not m:
            continue
        if not is_current(m):
            old.append(r.name)
            continue
        row = {}
        for s in m.get("slices") or []:
            if s.get("level") != level or str(s.get("compression", "all")) != compression:
                continue
            c = column_name(s["dataset"], s["method"])
            row[c] = fmt_ci(s.get("auc"), s.get("auc_ci"))
            cells[(r.name, c)] = slice_key(s)
            if c not in cols:
                cols.append(c)
        rows[r.name] = row

    def order(c: str):
        ds, _, meth = c.partition(" · ")
        return (ds != "video datasets", ds, meth != "", meth)

    cols.sort(key=order)
    table = pd.DataFrame.from_dict(rows, orient="index", columns=cols) if rows else pd.DataFrame()
    if len(table):
        table = table.fillna("")
        table.index.name = "run"
    return table, cells, old


def _video_datasets(m: dict) -> set[str]:
    return {s["dataset"] for s in m.get("slices") or [] if s.get("dataset") != "video datasets"}


def eval_predictions(run: Path, level: str = "file") -> pd.DataFrame | None:
    """Schema-2 predictions: file level (predictions.csv, scored files only) or face level (face_predictions.csv)."""
    df = read_csv(run / "evaluation" / ("predictions.csv" if level == "file" else "face_predictions.csv"))
    if df is None or "score" not in df or "label" not in df:
        return None
    df = df.copy()
    df["score"] = pd.to_numeric(df["score"], errors="coerce")
    df = df[df["score"].notna()].copy()
    df["label"] = pd.to_numeric(df["label"], errors="coerce").fillna(-1).astype(int)
    for c in ("dataset", "method", "compression"):
        if c in df:
            df[c] = df[c].astype(str)
    return df


def slice_rows(pred: pd.DataFrame, m: dict, dataset: str, method: str = "all", compression: str = "all") -> pd.DataFrame:
    """The predictions a slice was computed from: per method = that method's fakes against the same
    dataset's (and compression's) real files; 'video datasets' = every dataset of the headline."""
    d = pred[pred["dataset"].isin(_video_datasets(m))] if dataset == "video datasets" else pred[pred["dataset"] == dataset]
    if compression != "all":
        d = d[d["compression"] == compression]
    if method not in ("all", "real"):
        d = d[(d["label"] == 0) | ((d["label"] == 1) & (d["method"] == method))]
    return d


def slice_curves(run: Path, m: dict, key: SliceKey, pred: pd.DataFrame | None):
    """(ROC, PR) points for a slice: the stored curves for the headline, recomputed from predictions otherwise."""
    level, dataset, method, comp = key
    if (dataset, method, comp) == ("video datasets", "all", "all"):
        roc, pr_ = curve(run, "roc", level), curve(run, "pr", level)
        if roc is not None and pr_ is not None:
            return roc, pr_
    if pred is None:
        return None, None
    got = curves_from(slice_rows(pred, m, dataset, method, comp))
    return got if got else (None, None)


def reliability_table(run: Path) -> pd.DataFrame | None:
    """reliability.csv: level, stage (raw|calibrated), split (val|test), bin, mean_score, fraction_fake, count."""
    df = read_csv(run / "evaluation" / "reliability.csv")
    need = {"level", "stage", "split", "mean_score", "fraction_fake", "count"}
    if df is None or not need <= set(df.columns):
        return None
    for c in ("mean_score", "fraction_fake", "count"):
        df[c] = pd.to_numeric(df[c], errors="coerce")
    return df


def score_by_source(run: Path) -> pd.DataFrame | None:
    df = read_csv(run / "evaluation" / "score_by_source.csv")
    need = {"dataset", "media", "label", "n", "p10", "p25", "p50", "p75", "p90"}
    if df is None or not need <= set(df.columns):
        return None
    df = df.copy()
    df["label"] = df["label"].map(lambda v: {"0": "real", "1": "fake"}.get(str(v), str(v)))
    return df


def audit_table(run: Path) -> pd.DataFrame | None:
    """audit.csv with the false-alarm rate and its interval as one 'rate [lo, hi]' column."""
    df = read_csv(run / "evaluation" / "audit.csv")
    if df is None or df.empty:
        return None
    if {"false_alarm_rate_ci_lo", "false_alarm_rate_ci_hi"} <= set(df.columns):
        df = df.copy()
        num = lambda c: pd.to_numeric(df[c], errors="coerce")  # noqa: E731
        df.insert(df.columns.get_loc("false_alarm_rate") + 1, "false alarm rate [95 % CI]",
                  [fmt_ci(v, [lo, hi]) for v, lo, hi in zip(num("false_alarm_rate"), num("false_alarm_rate_ci_lo"),
                                                            num("false_alarm_rate_ci_hi"))])
        df = df.drop(columns=["false_alarm_rate", "false_alarm_rate_ci_lo", "false_alarm_rate_ci_hi"])
    return df


EXPLAIN_EVAL = "explain_eval.json"


def explain_eval(run: Path) -> dict | None:
    """RUN/evaluation/explain_eval.json written by `python -m training explain-eval RUN`."""
    return read_json(run / "evaluation" / EXPLAIN_EVAL)



# --------------------------------------------------------------------------- robustness (python -m training robustness)
ROBUSTNESS_CSV = "robustness.csv"
ROBUSTNESS_METRICS = {"AUC": "auc", "detection rate": "detection_rate", "false-alarm rate": "false_alarm_rate"}
ROBUSTNESS_CMD = "python -m training robustness {run} --max-files 200"


def robustness_table(run: Path) -> pd.DataFrame | None:
    """RUN/evaluation/robustness.csv (one row per perturbation x level, level 0 = clean) or None."""
    t = read_csv(run / "evaluation" / ROBUSTNESS_CSV)
    if t is None or t.empty or not {"perturbation", "level", "auc"} <= set(t.columns):
        return None
    for c in t.columns:
        if c not in ("perturbation", "media", "parameter", "target"):
            t[c] = pd.to_numeric(t[c], errors="coerce")
    return t


def robustness_long(run_dirs: list[Path]) -> tuple[pd.DataFrame, list[str]]:
    """The robustness tables of ``run_dirs`` stacked with a ``run`` column, and the names of the runs without one."""
    parts, missing = [], []
    for r in run_dirs:
        t = robustness_table(r)
        if t is None:
            missing.append(r.name)
        else:
            parts.append(t.assign(run=r.name))
    return (pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()), missing
