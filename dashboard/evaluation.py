"""Run selection shared by the Training, Evaluation and Misclassifications screens, and the Evaluation screen's
sections (evaluation folder schema 2: engine-run, 95 % bootstrap intervals; schema-1 runs are asked to re-run)."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from dashboard import charts, runs, settings
from training.robustness import TARGETS

SLICE_KEYS = ("eval_level", "eval_dataset", "eval_method", "eval_comp")
QUERY = ("run", "level", "dataset", "method", "compression")


def run_picker(multi: bool = False, need_eval: bool = False, key: str | None = None):
    root = settings.runs_root()
    all_runs = [r for r in runs.list_runs(root) if not need_eval or (r / "evaluation" / "metrics.json").is_file()]
    if not all_runs:
        st.info(f"No {'evaluated ' if need_eval else ''}run folders under {root} (set `DEEPFAKE_RUNS`). "
                "Train with `python -m training train CONFIG`, then `python -m training evaluate RUN`.")
        return [] if multi else None
    names = [r.name for r in all_runs]
    default = "sample" if "sample" in names else names[0]
    if multi:
        chosen = st.multiselect("Runs", names, default=[default], key=key)
        return [root / n for n in chosen]
    if key and st.session_state.get(key) not in names:
        st.session_state.pop(key, None)
    return root / st.selectbox("Run", names, index=names.index(default), key=key)


def rerun_note(run: Path, m: dict | None) -> bool:
    """Tell the user to re-evaluate a run stored in the old format; True when the run is usable."""
    if runs.is_current(m):
        return True
    st.warning(f"**{run.name}** was evaluated with an older version (evaluation schema {runs.schema(m)}: crop-level, "
               f"no intervals). To see it here, {runs.RERUN.format(run=run)}.")
    return False


# --------------------------------------------------------------------------- query parameters <-> slice
def apply_query_params() -> None:
    """On a fresh visit with ``?run=..&level=..&dataset=..&method=..&compression=..``, preselect that slice."""
    qp = st.query_params
    sig = tuple(qp.get(k, "") for k in QUERY)
    if not any(sig) or st.session_state.get("_eval_qp") == sig:
        return
    st.session_state["_eval_qp"] = sig
    if sig[0]:
        st.session_state["eval_run"] = sig[0]
    for k, v in zip(SLICE_KEYS, sig[1:]):
        if v:
            st.session_state[k] = v


def select_slice(run: str, key: runs.SliceKey) -> None:
    """Make (run, slice) the one shown in detail and put it in the URL (a link to that slice)."""
    st.session_state["eval_run"] = run
    for k, v in zip(SLICE_KEYS, key):
        st.session_state[k] = v
    params = dict(zip(QUERY, (run, *key)))
    st.query_params.from_dict(params)
    st.session_state["_eval_qp"] = tuple(params[k] for k in QUERY)


def sync_query_params(run: Path, key: runs.SliceKey) -> None:
    """Keep the address bar on the slice shown, so that it can be shared as a link."""
    params = dict(zip(QUERY, (run.name, *key)))
    sig = tuple(params[k] for k in QUERY)
    if tuple(st.query_params.get(k, "") for k in QUERY) != sig:
        st.query_params.from_dict(params)
    st.session_state["_eval_qp"] = sig


# --------------------------------------------------------------------------- sections
def cross_dataset_section(run_dirs: list[Path]) -> None:
    st.subheader("Cross-dataset table")
    c1, c2 = st.columns(2)
    level = c1.radio("Level", runs.LEVELS, horizontal=True, key="xd_level",
                     help="file: one score per image or video (the verdict); face: every face crop")
    comps = sorted({str(s.get("compression", "all")) for r in run_dirs
                    for s in ((runs.evaluation(r) or {}).get("slices") or [])} - {"all"})
    comp = c2.selectbox("Compression", ["all", *comps], key="xd_comp")
    table, cells, old = runs.cross_dataset(run_dirs, level, comp)
    if table.empty:
        st.info("No run evaluated in the current format yet: " + runs.RERUN.format(run="RUN") + ".")
    else:
        st.caption("AUC [95 % bootstrap interval over identity groups] of every run (rows) on every test dataset and "
                   "manipulation method it was evaluated on (columns); a method column = that method's fakes against "
                   "the same dataset's real files. **Click a cell** to open that slice below (the address bar then "
                   "links to it). Scores are P(fake).")
        ev = st.dataframe(table, on_select="rerun", selection_mode="single-cell", key="xd_table")
        picked = list(getattr(getattr(ev, "selection", None), "cells", []) or [])
        if picked:
            row, col = picked[0]
            cell = (str(table.index[int(row)]), str(col))
            if cell != st.session_state.get("_xd_last") and cell in cells:
                st.session_state["_xd_last"] = cell
                select_slice(cell[0], cells[cell])
    if old:
        st.caption(f"Not in the table (old evaluation format): {', '.join(old)} — "
                   + runs.RERUN.format(run="RUN") + " for each.")


def roc_runs_section(run_dirs: list[Path], key: runs.SliceKey) -> None:
    current = [r for r in run_dirs if runs.is_current(runs.evaluation(r))]
    if not current:
        return
    level, dataset, method, comp = key
    st.subheader("ROC curves of several runs")
    names = [r.name for r in current]
    default = [n for n in (st.session_state.get("eval_run"),) if n in names] or names[:1]
    chosen = st.multiselect("Runs to compare", names, default=default, key="roc_runs")
    curves, labels, missing = {}, {}, []
    for r in current:
        if r.name not in chosen:
            continue
        m = runs.evaluation(r)
        s = runs.find_slice(m, *key)
        roc, _ = runs.slice_curves(r, m, key, runs.eval_predictions(r, level)) if s else (None, None)
        if roc is None:
            missing.append(r.name)
            continue
        name = f"{r.name} (AUC {runs.fmt_ci(s.get('auc'), s.get('auc_ci'))})"
        curves[name], labels[name] = roc, None
    st.caption(f"Slice: {level} level · {runs.column_name(dataset, method)} · compression {comp}.")
    if curves:
        st.plotly_chart(charts.roc(curves, labels), width="stretch", key="roc_runs_chart")
    if missing:
        st.caption(f"No such slice (or no predictions on this machine) for: {', '.join(missing)}.")


def slice_pickers(m: dict) -> runs.SliceKey:
    """Level, dataset, method and compression of the run's stored slices (defaults: the headline)."""
    sl = m.get("slices") or []
    head = runs.headline_key(m)
    c = st.columns(4)

    def pick(col, label, key, options, default, **kw):
        options = list(dict.fromkeys(options))
        if st.session_state.get(key) not in options:
            st.session_state[key] = default if default in options else options[0]
        return col.selectbox(label, options, key=key, **kw)

    level = pick(c[0], "Level", "eval_level", [s["level"] for s in sl] or list(runs.LEVELS), head[0])
    lv = [s for s in sl if s["level"] == level]
    dataset = pick(c[1], "Test data", "eval_dataset", [s["dataset"] for s in lv], head[1])
    dv = [s for s in lv if s["dataset"] == dataset]
    method = pick(c[2], "Method", "eval_method", ["all", *sorted({s["method"] for s in dv} - {"all"})], "all",
                  help="a method = its fakes against the same real files")
    mv = [s for s in dv if s["method"] == method]
    comp = pick(c[3], "Compression", "eval_comp", ["all", *sorted({str(s["compression"]) for s in mv} - {"all"})], "all")
    return level, dataset, method, comp


def metrics_block(s: dict) -> None:
    c = st.columns(4)
    c[0].metric("AUC", runs.fmt(s.get("auc")), help="95 % interval below; resampled by identity group")
    c[1].metric("AP", runs.fmt(s.get("ap")))
    c[2].metric("Detection rate", runs.fmt(s.get("detection_rate")), help="fakes called fake at the threshold")
    c[3].metric("False-alarm rate", runs.fmt(s.get("false_alarm_rate")), help="real files called fake at the threshold")
    rows = [{"metric": k.replace("_", " "), "value": s.get(k),
             "95 % CI low": (s.get(f"{k}_ci") or [None, None])[0], "95 % CI high": (s.get(f"{k}_ci") or [None, None])[1]}
            for k in runs.CI_METRICS if k in s]
    st.dataframe(pd.DataFrame(rows).round(4), hide_index=True)
    st.caption(f"{s.get('n')} {s.get('level')}s ({s.get('n_real')} real, {s.get('n_fake')} fake) from "
               f"{s.get('n_groups')} held-out identity groups.")


def threshold_for(run: Path, key: str) -> None:
    """A threshold slider starts at each run's own operating threshold: forget the value set for another run."""
    owner = f"_{key}_run"
    if st.session_state.get(owner) != str(run):
        st.session_state.pop(key, None)
        st.session_state[owner] = str(run)


def confusion_block(pred: pd.DataFrame | None, m: dict, key: runs.SliceKey, run: Path) -> None:
    st.subheader("Confusion matrix")
    threshold_for(run, "eval_threshold")
    thr = st.slider("Threshold on calibrated P(fake) (score ≥ threshold → fake)", 0.0, 1.0, float(m["threshold"]),
                    0.000001, format="%.4f", key="eval_threshold",
                    help=f"default: the operating threshold ({m.get('threshold_policy') or 'stored policy'})")
    if pred is None:
        st.info("Predictions are not stored for this run: re-run evaluate.")
        return
    rows = runs.slice_rows(pred, m, *key[1:])
    if rows.empty:
        st.info("No predictions in this slice.")
        return
    cm = runs.confusion_at(rows, thr)
    c1, c2 = st.columns(2)
    c1.plotly_chart(charts.confusion(cm, f"{key[0]} level at threshold {thr:.4f}"), width="stretch")
    (tn, fp), (fn, tp) = cm
    c2.markdown(f"TN **{tn}** · FP **{fp}** · FN **{fn}** · TP **{tp}**")
    c2.dataframe(pd.Series(runs.metrics_at(rows, thr)).round(4).rename("value"))


def reliability_section(run: Path) -> None:
    rel = runs.reliability_table(run)
    if rel is None or rel.empty:
        st.caption("No reliability.csv in this evaluation.")
        return
    st.subheader("Calibration: reliability before and after")
    c1, c2 = st.columns(2)
    level = c1.radio("Level", sorted(rel["level"].unique()), horizontal=True, key="rel_level")
    splits = sorted(rel.loc[rel["level"] == level, "split"].unique(), key=lambda s: s != "test")
    split = c2.radio("Split", splits, horizontal=True, key="rel_split",
                     help="val: the data the calibration was fitted on; test: held out")
    st.plotly_chart(charts.reliability_stages(rel, level, split), width="stretch", key="rel_chart")


def distribution_section(run: Path, threshold: float) -> None:
    src = runs.score_by_source(run)
    if src is None or src.empty:
        return
    st.subheader("Score distribution per source")
    st.plotly_chart(charts.score_distribution(src, threshold), width="stretch", key="src_chart")
    st.dataframe(src, hide_index=True)


def audit_section(run: Path, threshold: float) -> None:
    audit = runs.audit_table(run)
    if audit is None:
        return
    st.subheader("False alarms on held-out real photos, by group")
    st.caption(f"At threshold {threshold:.4f}; interval = 95 % bootstrap. A 0 % rate far below the threshold says "
               "little: the score percentiles show how close each group comes.")
    st.dataframe(audit, hide_index=True)


def explain_section(run: Path) -> None:
    st.subheader("How faithful is each explanation?")
    ee = runs.explain_eval(run)
    if not ee or not ee.get("methods"):
        st.caption(f"Not measured yet: `python -m training explain-eval {run} --method all` (deletion curves over "
                   "this run's test fakes).")
        return
    t = pd.DataFrame(ee["methods"])
    t["deletion area [95 % CI]"] = [runs.fmt_ci(a, ci) for a, ci in zip(t["deletion_area"], t["deletion_area_ci"])]
    cols = ["label", "faces", "deletion area [95 % CI]", "minus_random", "seconds_per_face"]
    st.dataframe(t[[c for c in cols if c in t]].rename(columns={
        "label": "method", "minus_random": "minus random map (paired)", "seconds_per_face": "seconds per face"}),
        hide_index=True)
    st.caption(f"Deletion: the most salient pixels of each map are replaced ({ee.get('fill', 'mean')} fill) in "
               f"{ee.get('steps', '?')} steps and the face is rescored; area under the network's P(fake) — lower = "
               f"the map found what the score depends on. Baseline: a random map. {ee.get('faces', '?')} test-fake "
               f"faces re-cut from their source files; {ee.get('created', '')}.")


def robustness_section(run_dirs: list[Path]) -> None:
    """Metric against the degradation level (``python -m training robustness RUN``) for one or several runs."""
    st.subheader("Robustness to everyday degradations")
    long, missing = runs.robustness_long(run_dirs)
    if long.empty:
        st.info("No run has robustness curves yet. Measure them with `"
                + runs.ROBUSTNESS_CMD.format(run="RUN") + "` (JPEG, resize, blur, noise, brightness/contrast, "
                "saturation on images; H.264 re-encoding on videos; levels 1-5).")
        return
    names = list(dict.fromkeys(long["run"]))
    default = [n for n in (st.session_state.get("eval_run"),) if n in names] or names[:1]
    c1, c2 = st.columns([2, 1])
    chosen = c1.multiselect("Runs", names, default=default, key="robust_runs",
                            help="one line dash per run, one colour per perturbation")
    label = c2.radio("Metric", list(runs.ROBUSTNESS_METRICS), horizontal=True, key="robust_metric",
                     help="detection and false-alarm rates at each run's own threshold")
    d = long[long["run"].isin(chosen)]
    if d.empty:
        st.caption("Choose a run.")
    else:
        st.plotly_chart(charts.robustness(d, runs.ROBUSTNESS_METRICS[label], label), width="stretch",
                        key="robust_chart")
        st.caption("Test files analysed through the engine at rising degradation (level 0 = the untouched files); "
                   "error bars: 95 % bootstrap intervals over identity groups. Image degradations are measured on "
                   "the image files, H.264 on the video files. Target: " + ", ".join(
                       f"AUC drop ≤ {v:.2f} at level {k}" for k, v in TARGETS.items()) + ".")
        cols = ["run", "perturbation", "media", "level", "parameter", "n_files", "n_unscored", "auc", "auc_drop",
                "detection_rate", "false_alarm_rate", "target"]
        with st.expander("Robustness table", expanded=False):
            st.dataframe(d[[c for c in cols if c in d]], hide_index=True)
    if missing:
        st.caption("No robustness curves for: " + ", ".join(missing) + " — measure with `"
                   + runs.ROBUSTNESS_CMD.format(run="RUN") + "` for each.")
