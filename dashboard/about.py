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
    st.markdown(f"""
| | |
|---|---|
| Backbone | {card.backbone} ({det.input_size} px face crops, margin {card.face_margin:.0%}) |
| Trained | {'yes' if card.trained else '**no — random weights, scores are not a verdict**'} |
| Trained on | {card.trained_on} |
| Started from | {card.pretrained_from or 'random initialisation'} |
| Threshold | {card.threshold:.3f} ({card.notes or 'default'}) |
| Run | {card.run or '—'} |
| Created | {card.created} (package {card.package_version}) |
""")
    m = card.metrics or {}
    if m:
        st.subheader("Measured numbers (from the run's evaluation)")
        if m.get("test_frame_auc_video_datasets") is not None:
            st.markdown(
                f"**Held-out video faces (FF++/DFD identity groups never seen in training): frame AUC "
                f"{m['test_frame_auc_video_datasets']:.3f}, video AUC {m.get('test_video_auc_video_datasets', float('nan')):.3f}.** "
                f"The AUC over all test faces ({m.get('test_frame_auc', float('nan')):.3f}) also counts held-out UTKFace "
                "photos, which are much easier to call real, so it overstates what the model can do on videos.")
        st.json(m, expanded=False)
    run = settings.runs_root() / (card.run or "")
    ev = runs.evaluation(run) if card.run else None
    if ev:
        tbl = runs.per_table(ev, "per_dataset")
        if not tbl.empty:
            st.markdown("Per dataset (held-out identity groups):")
            st.dataframe(tbl, hide_index=True)
        audit = runs.read_csv(run / "evaluation" / "audit.csv")
        if audit is not None:
            st.markdown(f"False-alarm rate on real faces by group, at threshold {ev['threshold']:.3f}:")
            st.dataframe(audit, hide_index=True)
    st.subheader("Limits")
    st.markdown("""
- **A demo model.** The bundled model was trained on a few dozen FaceForensics++ / Google DFD videos, UTKFace
  photos and self-blended fakes on a laptop CPU. Real use needs the full datasets (see the README for the commands).
- **New generators evade detectors.** A detector learns the traces of the manipulations it saw; diffusion models,
  new face-swap tools and heavy re-compression can hide them.
- **A score is evidence, not proof.** Low scores do not certify a video as authentic; high scores can be false
  alarms (unusual lighting, make-up, compression, faces unlike the training data). Check the source and context.
- Only faces are analysed: a synthetic background, voice or body is not.
""")
