import streamlit as st

from dashboard import evaluation, loaders, runs

st.title("Misclassifications")
run = evaluation.run_picker(need_eval=True)
if run is not None:
    m = runs.evaluation(run)
    pred = runs.predictions(run, "frame")
    thr = st.slider("Threshold", 0.0, 1.0, float(round(m["threshold"], 3)), 0.001, format="%.3f", key="mis_threshold")
    kind = st.radio("Show", ["fp", "fn"], horizontal=True,
                    format_func=lambda k: {"fp": "False positives (real faces scored fake)",
                                           "fn": "False negatives (fakes scored real)"}[k])
    n = st.slider("How many", 4, 48, 16, 4)
    worst = runs.misclassified(pred, thr, kind, n)
    if worst.empty:
        st.success("No such mistakes at this threshold.")
    else:
        imgs = {i: evaluation.image_for(r, run) for i, r in worst.iterrows()}
        missing = sum(v is None for v in imgs.values())
        if missing:
            st.info(f"{missing} of {len(worst)} crops are not on this machine (datasets are research-only and not "
                    "shipped): showing the table only for those. Prepare the data to see the faces.")
        cols = st.columns(4)
        det = None
        for k, (i, r) in enumerate(worst.iterrows()):
            p = imgs[i]
            if p is None:
                continue
            with cols[k % 4]:
                st.image(str(p), caption=f"P(fake) {r['score']:.3f} · {r['method']} · {r['dataset']}",
                         width="stretch")
                if st.toggle("Grad-CAM", key=f"mis_cam_{i}"):
                    det = det or loaders.run_detector(run)
                    import numpy as np
                    from PIL import Image

                    _, over = det.explain(np.asarray(Image.open(p).convert("RGB")))
                    st.image(over, caption="Grad-CAM (this run's model)", width="stretch")
        st.dataframe(worst[["score", "label", "method", "dataset", "video", "frame", "image"]], hide_index=True)
