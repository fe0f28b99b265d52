import streamlit as st

from dashboard import charts, evaluation, runs, settings

st.title("Evaluation")
st.caption("Numbers from `python -m training evaluate RUN`: every test file run through the engine; scores are "
           "calibrated P(fake) in [0, 1]; intervals are 95 % bootstrap intervals over identity groups.")
listed = runs.list_runs(settings.runs_root())
all_runs = [r for r in listed if (r / "evaluation" / "metrics.json").is_file()]
evaluation.apply_query_params()
evaluation.cross_dataset_section(all_runs)

st.divider()
st.subheader("One run in detail")
run = evaluation.run_picker(need_eval=True, key="eval_run")
if run is not None:
    m = runs.evaluation(run)
    if evaluation.rerun_note(run, m):
        key = evaluation.slice_pickers(m)
        evaluation.sync_query_params(run, key)
        s = runs.find_slice(m, *key)
        if s is None:
            st.info("This run has no such slice.")
        else:
            evaluation.metrics_block(s)
            pred = runs.eval_predictions(run, key[0])
            roc, prc = runs.slice_curves(run, m, key, pred)
            c1, c2 = st.columns(2)
            if roc is not None:
                c1.plotly_chart(charts.roc({key[0]: roc}, {key[0]: s.get("auc")}), width="stretch")
            if prc is not None:
                c2.plotly_chart(charts.pr({key[0]: prc}, {key[0]: s.get("ap")}), width="stretch")
            evaluation.confusion_block(pred, m, key, run)
        with st.expander("Every slice of this run", expanded=False):
            level = key[0]
            st.dataframe(runs.slices_table(m, level), hide_index=True)
            photo = runs.slices_table(m, photo=True)
            if len(photo):
                st.markdown("**Real-only photo sets** (false-alarm rates; never pooled into the headline)")
                st.dataframe(photo, hide_index=True)
        evaluation.reliability_section(run)
        evaluation.distribution_section(run, float(m["threshold"]))
        evaluation.audit_section(run, float(m["threshold"]))
        evaluation.explain_section(run)
        st.divider()
        evaluation.roc_runs_section(all_runs, key)

st.divider()
evaluation.robustness_section(listed)
