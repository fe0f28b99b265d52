import pandas as pd
import streamlit as st

from dashboard import charts, evaluation, runs

st.title("Evaluation")
run = evaluation.run_picker(need_eval=True)
if run is not None:
    m = runs.evaluation(run)
    level = st.radio("Level", ["frame", "video"], horizontal=True,
                     help="frame: every face crop; video: max over faces per frame, mean over frames")
    subsets = ["all"] + list((m.get("subsets") or {}).keys())
    which = st.radio("Test faces", subsets, horizontal=True,
                     format_func=lambda s: "all test faces" if s == "all" else s,
                     help="'video datasets': only FF++/DFD-style videos (image-only real sets such as UTKFace are "
                          "much easier to tell from video fakes)")
    block, pred = runs.subset(m, which, level, runs.predictions(run, level))
    c = st.columns(5)
    for col, k in zip(c, ("auc", "ap", "accuracy", "balanced_accuracy", "eer")):
        col.metric(k.replace("_", " "), "—" if block.get(k) is None else f"{block[k]:.3f}")
    st.caption(f"{block['n']} {level}s ({block['n_real']} real, {block['n_fake']} fake) from held-out identity "
               f"groups; metrics as stored by `python -m training evaluate` at threshold {m['threshold']:.3f}.")
    c1, c2 = st.columns(2)
    roc, prc = runs.curve(run, "roc", level), runs.curve(run, "pr", level)
    if which != "all":
        roc, prc = runs.curves_from(pred) or (None, None)
    if roc is not None:
        c1.plotly_chart(charts.roc({level: roc}, {level: block.get("auc")}), width="stretch")
    if prc is not None:
        c2.plotly_chart(charts.pr({level: prc}, {level: block.get("ap")}), width="stretch")

    st.subheader("Confusion matrix")
    thr = st.slider("Threshold (score ≥ threshold → fake)", 0.0, 1.0, float(round(m["threshold"], 3)), 0.001, format="%.3f",
                    key="eval_threshold")
    if pred is not None and len(pred):
        cm = runs.confusion_at(pred, thr)
        c1, c2 = st.columns([1, 1])
        c1.plotly_chart(charts.confusion(cm, f"{level} level at threshold {thr:.2f}"), width="stretch")
        (tn, fp), (fn, tp) = cm
        c2.markdown(f"TN **{tn}** · FP **{fp}** · FN **{fn}** · TP **{tp}**")
        c2.dataframe(pd.Series(runs.metrics_at(pred, thr)).round(4).rename("value"))
    st.subheader("Per manipulation method and per dataset")
    st.caption("Per method: that method's fakes against the real faces of the video datasets in the test split (FF++/DFD reals; UTKFace photos would make every method look easy).")
    st.dataframe(runs.per_table(m, "per_method"), hide_index=True)
    st.dataframe(runs.per_table(m, "per_dataset"), hide_index=True)
    cal = runs.read_csv(run / "evaluation" / "calibration.csv")
    cc1, cc2 = st.columns(2)
    if cal is not None and len(cal):
        cc1.plotly_chart(charts.reliability(cal), width="stretch")
    cc2.markdown("**Frame level vs video level**")
    cc2.dataframe(pd.DataFrame({"frame": m["frame"], "video": m["video"]}).T[
        ["auc", "ap", "accuracy", "balanced_accuracy", "eer", "n"]], width="stretch")
    audit = runs.read_csv(run / "evaluation" / "audit.csv")
    if audit is not None:
        cc2.markdown("**False alarms on real faces by group**")
        cc2.dataframe(audit, hide_index=True)
