import json

import streamlit as st

from dashboard import charts, evaluation, runs

st.title("Training")
chosen = evaluation.run_picker(multi=True)
if chosen:
    long = runs.history_long(chosen)
    if long.empty:
        st.warning("The chosen runs have no history.csv yet.")
    else:
        cols = st.columns(3)
        for c, metric in zip(cols, ("loss", "auc", "accuracy")):
            c.plotly_chart(charts.training_curves(long, metric), width="stretch")
        st.caption("Solid: training batches (self-blended fakes included); dashed: the validation split "
                   "(held-out identity groups, dataset fakes only).")
    st.subheader("Configs side by side")
    cfg_cols = st.columns(len(chosen))
    for c, r in zip(cfg_cols, chosen):
        c.markdown(f"**{r.name}**")
        cfg = runs.read_json(r / "config.json")
        c.json(cfg or {}, expanded=2)
        best = runs.read_json(r / "checkpoints" / "best.json") or (runs.read_json(r / "model" / "model_card.json") or {}).get("metrics")
        if best:
            c.caption(f"best: {json.dumps(best)}")
