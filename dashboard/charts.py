"""Plotly figures (pure functions of data frames)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go


def timeline(frames: list, tracks: list, threshold: float) -> go.Figure:
    """Score per sampled frame for each face track of a video."""
    fig = go.Figure()
    for t in tracks:
        times = {fr.index: fr.time_s for fr in frames}
        fig.add_trace(go.Scatter(x=[times[i] for i in t.frames], y=t.scores, mode="lines+markers",
                                 name=f"face {t.id + 1} (mean {np.mean(t.scores):.2f})"))
    fig.add_hline(y=threshold, line_dash="dash", line_color="red", annotation_text=f"threshold {threshold:.2f}")
    fig.update_layout(xaxis_title="time (s)", yaxis_title="P(fake)", yaxis_range=[0, 1], height=320,
                      margin=dict(l=10, r=10, t=30, b=10), legend=dict(orientation="h"))
    return fig


def training_curves(long: pd.DataFrame, metric: str) -> go.Figure:
    d = long[long["metric"] == metric]
    fig = px.line(d, x="epoch", y="value", color="run", line_dash="split", markers=True, title=metric)
    fig.update_layout(height=360, margin=dict(l=10, r=10, t=40, b=10), yaxis_title=metric,
                      legend=dict(orientation="h", yanchor="top", y=-0.25, title=None))
    return fig


def roc(curves: dict[str, pd.DataFrame], aucs: dict[str, float | None]) -> go.Figure:
    fig = go.Figure()
    for name, c in curves.items():
        a = aucs.get(name)
        fig.add_trace(go.Scatter(x=c["fpr"], y=c["tpr"], mode="lines", name=f"{name} (AUC {a:.3f})" if a is not None else name))
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", line=dict(dash="dot", color="grey"), name="chance"))
    fig.update_layout(xaxis_title="false positive rate", yaxis_title="true positive rate", height=380,
                      margin=dict(l=10, r=10, t=30, b=10), title="ROC")
    return fig


def pr(curves: dict[str, pd.DataFrame], aps: dict[str, float | None]) -> go.Figure:
    fig = go.Figure()
    for name, c in curves.items():
        a = aps.get(name)
        fig.add_trace(go.Scatter(x=c["recall"], y=c["precision"], mode="lines", name=f"{name} (AP {a:.3f})" if a is not None else name))
    fig.update_layout(xaxis_title="recall (fakes caught)", yaxis_title="precision", height=380, yaxis_range=[0, 1.02],
                      margin=dict(l=10, r=10, t=30, b=10), title="Precision-recall")
    return fig


def confusion(cm: np.ndarray, title: str) -> go.Figure:
    labels = ["real", "fake"]
    fig = go.Figure(go.Heatmap(z=cm, x=[f"predicted {l}" for l in labels], y=[f"actual {l}" for l in labels],
                               text=cm, texttemplate="%{text}", colorscale="Blues", showscale=False))
    fig.update_layout(title=title, height=320, margin=dict(l=10, r=10, t=40, b=10), yaxis_autorange="reversed")
    return fig


def counts(df: pd.DataFrame, by: str, color: str) -> go.Figure:
    d = df.groupby([by, color]).size().rename("crops").reset_index()
    fig = px.bar(d, x=by, y="crops", color=color, barmode="group")
    fig.update_layout(height=300, margin=dict(l=10, r=10, t=10, b=10))
    return fig


def reliability_stages(rel: pd.DataFrame, level: str, split: str) -> go.Figure:
    """Reliability diagram before (raw network score) and after calibration, one line per stage."""
    d = rel[(rel["level"] == level) & (rel["split"] == split)]
    fig = go.Figure()
    for stage, dash in (("raw", "dot"), ("calibrated", "solid")):
        s = d[d["stage"] == stage].sort_values("mean_score")
        if s.empty:
            continue
        fig.add_trace(go.Scatter(x=s["mean_score"], y=s["fraction_fake"], mode="lines+markers", name=stage,
                                 line=dict(dash=dash), text=[f"n={int(c)}" for c in s["count"]],
                                 marker=dict(size=[6 + 10 * (c / max(s["count"].max(), 1)) ** 0.5 for c in s["count"]])))
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", line=dict(dash="dot", color="grey"), name="perfect"))
    fig.update_layout(xaxis_title="mean P(fake) in bin", yaxis_title="observed fraction fake", height=360,
                      xaxis_range=[0, 1], yaxis_range=[0, 1], margin=dict(l=10, r=10, t=40, b=10),
                      title=f"Reliability, {level} level, {split} split", legend=dict(orientation="h"))
    return fig


def score_distribution(src: pd.DataFrame, threshold: float | None = None) -> go.Figure:
    """Per-source score distribution from stored percentiles: box = p25..p75, line = median, whiskers = p10..p90."""
    fig = go.Figure()
    for label, color in (("real", "#2ca02c"), ("fake", "#d62728")):
        d = src[src["label"] == label]
        if d.empty:
            continue
        names = [f"{a} ({m})" for a, m in zip(d["dataset"], d["media"])]
        fig.add_trace(go.Box(name=label, x=names, q1=d["p25"], median=d["p50"], q3=d["p75"], lowerfence=d["p10"],
                             upperfence=d["p90"], marker_color=color,
                             hovertext=[f"n={int(n)}" for n in pd.to_numeric(d["n"], errors="coerce").fillna(0)]))
    if threshold is not None:
        fig.add_hline(y=threshold, line_dash="dash", line_color="black", annotation_text=f"threshold {threshold:.3f}")
    fig.update_layout(boxmode="group", yaxis_title="P(fake)", yaxis_range=[0, 1], height=360,
                      margin=dict(l=10, r=10, t=40, b=10), title="Scores by source (whiskers p10–p90)",
                      legend=dict(orientation="h"))
    return fig


def deletion(curves: list, height: int = 220) -> go.Figure:
    """Deletion curves (``model.explain.DeletionCurve``): P(target) as the most salient pixels are removed."""
    fig = go.Figure()
    for c in curves:
        name = "random map" if c.method == "random" else (c.method or "map")
        fig.add_trace(go.Scatter(x=c.fractions, y=c.scores, mode="lines", name=f"{name} (area {c.area:.3f})",
                                 line=dict(dash="dot" if c.method == "random" else "solid")))
    fig.update_layout(xaxis_title="fraction of pixels removed", yaxis_title="score", yaxis_range=[0, 1.02],
                      height=height, margin=dict(l=10, r=10, t=10, b=10),
                      legend=dict(orientation="h", yanchor="bottom", y=1.0, font=dict(size=10)))
    return fig


DASHES = ("solid", "dash", "dot", "dashdot", "longdash", "longdashdot")


def robustness(long: pd.DataFrame, metric: str, label: str | None = None) -> go.Figure:
    """``metric`` against the perturbation level (0 = clean): one colour per perturbation, one line dash per run,
    the 95 % interval (``<metric>_ci_lo`` / ``_ci_hi``) as error bars."""
    fig = go.Figure()
    palette = px.colors.qualitative.Plotly
    perts = list(dict.fromkeys(long["perturbation"]))
    run_names = list(dict.fromkeys(long["run"]))
    for (run, pert), d in long.groupby(["run", "perturbation"], sort=False):
        d = d.sort_values("level")
        v, lo, hi = (d[c].to_numpy(float) for c in (metric, f"{metric}_ci_lo", f"{metric}_ci_hi"))
        up, down = np.nan_to_num(hi - v, nan=0.0), np.nan_to_num(v - lo, nan=0.0)
        name = pert if len(run_names) == 1 else f"{pert} · {run}"
        fig.add_trace(go.Scatter(
            x=d["level"], y=v, mode="lines+markers", name=name, legendgroup=pert,
            line=dict(color=palette[perts.index(pert) % len(palette)], dash=DASHES[run_names.index(run) % len(DASHES)]),
            error_y=dict(type="data", array=up, arrayminus=down, visible=True, thickness=1),
            customdata=np.stack([d["parameter"].astype(str), d["n_files"]], axis=-1),
            hovertemplate="%{customdata[0]}<br>" + (label or metric) + " %{y:.3f} (n=%{customdata[1]})<extra>"
                          + name + "</extra>"))
    fig.update_layout(xaxis_title="perturbation level (0 = clean)", yaxis_title=label or metric, height=420,
                      xaxis=dict(tickmode="linear", dtick=1), yaxis_range=[0, 1.02],
                      margin=dict(l=10, r=10, t=30, b=10), legend=dict(orientation="h", yanchor="top", y=-0.2))
    return fig
