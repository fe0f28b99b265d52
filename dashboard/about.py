"""About / model card screen."""
from __future__ import annotations

import streamlit as st

from dashboard import runs, settings


def render(det) -> None:
    card = det.card
    st.markdown(
        "DeepFake-Detect finds faces in an image or video (MTCNN), scores each face with an EfficientNet "
        "classifier, and explains the score with Grad-CAM. **Score = P(fake)** in [0, 1].")
    st.subheader("The model in use")
    spec = det.spec
    cal = det.calibration
    st.markdown(f"""
| | |
|---|---|
| Backbone | {card.backbone} ({det.input_size} px face crops) |
| Face-crop contract | margin {spec.margin:.0%}, {spec.size} px, {spec.frames} frames per video, up to {spec.max_faces} faces per frame, MTCNN confidence ≥ {spec.min_confidence}, detection at ≤ {spec.video_max_side} px (video) / {spec.image_max_side} px (image) — the same in training and here |
| Trained | {'yes' if card.trained else '**no — random weights, scores are not a verdict**'} |
| Trained on | {card.trained_on} |
| Started from | {card.pretrained_from or 'random initialisation'} |
| P(fake) calibration | {cal.method}{f' — {cal.fitted_on}' if cal.fitted_on else ''} |
| Threshold | {card.threshold:.4f} ({card.threshold_policy or card.notes or 'default'}) |
| Run | {card.run or '—'} |
| Created | {card.created} (package {card.package_version}) |
""")
    m = card.metrics or {}
    head = m.get("headline")
    if head:
        st.subheader("Measured numbers (engine-run evaluation on held-out identity groups)")
        ci = head.get("auc_ci") or [float("nan")] * 2
        st.markdown(
            f"**File-level AUC {head['auc']:.3f} (95 % interval {ci[0]:.3f}–{ci[1]:.3f})** on {head['n']} test files "
            f"({head['n_real']} real, {head['n_fake']} fake) from {head['n_groups']} FF++/DFD identity groups never "
            f"seen in training, analysed exactly as this app analyses an upload. Calibration error (ECE) "
            f"{head['ece']:.3f}. Intervals resample identity groups: with this few groups they are wide.")
        if m.get("face_auc") is not None:
            fc = m.get("face_auc_ci") or [float("nan")] * 2
            st.markdown(f"Face-level AUC {m['face_auc']:.3f} ({fc[0]:.3f}–{fc[1]:.3f}).")
        photo = {k: v for k, v in m.items() if k.startswith("false_alarm_rate_")}
        for k, v in photo.items():
            c = v.get("ci") or [float("nan")] * 2
            st.markdown(f"False alarms on held-out real photos ({k.removeprefix('false_alarm_rate_')}, n={v['n']}): "
                        f"{v['rate']:.1%} ({c[0]:.1%}–{c[1]:.1%}) — reported apart, never pooled into the AUC.")
    elif m:
        st.info("This model's card holds numbers from an older evaluation protocol: run "
                "`python -m training calibrate RUN` and `python -m training evaluate RUN`.")
    if m:
        st.json(m, expanded=False)
    run = settings.runs_root() / (card.run or "")
    ev = runs.evaluation(run) if card.run else None
    if ev and ev.get("schema") == 2:
        audit = runs.read_csv(run / "evaluation" / "audit.csv")
        if audit is not None:
            st.markdown(f"False-alarm rate on held-out real photos by group, at threshold {ev['threshold']:.3f} "
                        "(with 95 % intervals and score percentiles: a 0 % rate far below the threshold says little):")
            st.dataframe(audit, hide_index=True)
            for r in audit[(audit["attribute"] == "dataset")].itertuples():
                if r.false_alarms == 0 and float(r.score_p99) < ev["threshold"]:
                    st.caption(f"{r.group}: 0 false alarms, but only because all its scores sit below the threshold "
                               f"(99th percentile {float(r.score_p99):.3f} < {ev['threshold']:.3f}) — that says the model "
                               f"separates this photo source, not that it is right about other photos.")
    hist = runs.read_csv(settings.runs_root() / "model_history.csv")
    if hist is not None:
        with st.expander("Earlier bundled models (history)"):
            st.dataframe(hist, hide_index=True)
    st.subheader("Limits")
    flagged = {k.removeprefix("false_alarm_rate_"): v for k, v in (card.metrics or {}).items()
               if k.startswith("false_alarm_rate_") and isinstance(v, dict) and (v.get("rate") or 0) >= 0.2}
    if flagged:
        rates = ", ".join(f"{name} {100 * v['rate']:.0f} % of {v.get('n', '?')}" for name, v in sorted(flagged.items()))
        st.warning(f"**Ordinary photos are often flagged.** At its threshold this model calls real photos fake on "
                   f"held-out photo sets ({rates}, measured by its evaluation): a \"fake\" on a plain portrait is "
                   "likely a false alarm.")
    st.markdown("""
- **A demo model.** The bundled model was trained on a 2-core CPU from DFDC face crops (4,500 real videos and one fake
  of each), about a hundred FaceForensics++ / Google DFD videos and LFW photos with self-blended fakes. Real use needs
  the full datasets (see the README for the commands).
- **New generators evade detectors.** A detector learns the traces of the manipulations it saw; diffusion models,
  new face-swap tools and heavy re-compression can hide them.
- **A score is evidence, not proof.** Low scores do not certify a video as authentic; high scores can be false
  alarms (unusual lighting, make-up, compression, faces unlike the training data). Check the source and context.
- Only faces are analysed: a synthetic background, voice or body is not.
""")
