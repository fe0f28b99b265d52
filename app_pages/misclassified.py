import streamlit as st

from dashboard import evaluation, loaders, misclassified, runs

st.title("Misclassifications")
st.caption("The most confident mistakes of a run's evaluation (scores are calibrated P(fake)); faces are cut again "
           "from the source files, so they show only where the datasets are on this machine.")
run = evaluation.run_picker(need_eval=True, key="mis_run")
if run is not None:
    m = runs.evaluation(run)
    if evaluation.rerun_note(run, m):
        c1, c2 = st.columns(2)
        level = c1.radio("Level", ["face", "file"], horizontal=True, key="mis_level",
                         format_func=lambda v: {"face": "faces", "file": "files (image or video)"}[v])
        kind = c2.radio("Show", ["fp", "fn"], horizontal=True, key="mis_kind",
                        format_func=lambda k: {"fp": "False positives (real scored fake)",
                                               "fn": "False negatives (fakes scored real)"}[k])
        evaluation.threshold_for(run, "mis_threshold")
        thr = st.slider("Threshold", 0.0, 1.0, float(m["threshold"]), 0.000001, format="%.4f", key="mis_threshold")
        n = st.slider("How many", 4, 48, 12, 4, key="mis_n")
        pred = runs.eval_predictions(run, level)
        if pred is None:
            st.info("No predictions stored for this run: " + runs.RERUN.format(run=run) + ".")
        else:
            worst = runs.misclassified(pred, thr, kind, n)
            if worst.empty:
                st.success("No such mistakes at this threshold.")
            else:
                faces = runs.eval_predictions(run, "face") if level == "file" else pred
                misclassified.gallery(worst, faces, lambda: loaders.run_detector(run), level, key=f"mis_{run.name}")
                st.dataframe(misclassified.table(worst, level), hide_index=True)
