"""About / model card screen: the registry of detectors, the combined verdict rule, each detector's card."""
from __future__ import annotations

from pathlib import Path

import streamlit as st

from dashboard import runs, settings
from model import registry


def _card_of(entry: registry.Entry, det):
    """The model card of a registry entry: the loaded detector's, else its model folder's, else None."""
    if entry.key in getattr(det, "keys", []):
        return det.scorer(entry.key).card
    f = entry.folder / "model_card.json"
    if not f.is_file():
        return None
    from model.network import ModelCard

    d = runs.read_json(f)
    return ModelCard.from_dict(d) if isinstance(d, dict) else None


def _test_metrics(card) -> str:
    """The card's test numbers in one line ('' when it has none)."""
    m = card.metrics or {}
    head = m.get("headline") or {}
    parts = []
    if head.get("auc") is not None:
        ci = head.get("auc_ci") or [None, None]
        parts.append(f"file-level AUC {runs.fmt_ci(head['auc'], ci)} on {head.get('n', '?')} test files"
                     + (f" ({head['dataset']})" if head.get("dataset") else ""))
    if m.get("face_auc") is not None:
        parts.append(f"face-level AUC {runs.fmt_ci(m['face_auc'], m.get('face_auc_ci'))}")
    for k, v in sorted(m.items()):
        if k.startswith("false_alarm_rate_") and isinstance(v, dict) and v.get("rate") is not None:
            parts.append(f"false alarms on {k.removeprefix('false_alarm_rate_')} photos {v['rate']:.1%} "
                         f"(n={v.get('n', '?')})")
    return "; ".join(parts)


def registry_rows(det=None) -> list[dict]:
    """One row per registry entry: what it detects and looks for, its run folder, crop contract, calibration,
    threshold (and how it was chosen) and test metrics from its model card; an entry without a model folder
    says so."""
    rows = []
    for e in registry.REGISTRY:
        card = _card_of(e, det)
        try:
            folder = str(Path(e.folder).relative_to(registry.REPO_ROOT))
        except ValueError:
            folder = str(e.folder)
        r = {"detector": e.key, "run folder": e.run, "model folder": folder,
             "in use": "yes" if e.key in getattr(det, "keys", []) else "no"}
        if card is None:
            r.update({"detects": "—", "looks for": "—", "crop contract": "—", "calibration": "—",
                      "threshold": "—", "test metrics": "—",
                      "status": "not available here (no model folder yet)"})
        else:
            spec, cal = card.spec(), card.calibrator()
            r.update({"detects": card.detects or "face manipulation (its model card does not say which)",
                      "looks for": card.looks_for or "—",
                      "crop contract": f"{spec.size} px, margin {spec.margin:.0%}",
                      "calibration": cal.method + (f" ({cal.fitted_on})" if cal.fitted_on else ""),
                      "threshold": f"{card.threshold:.4f} ({card.threshold_policy or card.notes or 'default'})",
                      "test metrics": _test_metrics(card) or "none in its card yet",
                      "status": "trained" if card.trained else "untrained (scores are no verdict)"})
        rows.append(r)
    return rows


def registry_section(det) -> None:
    st.subheader("Detectors (the registry)")
    st.markdown("Every file goes through the same steps: faces are found once, then **every detector** scores "
                "them, each with its own face-crop contract, calibration and threshold. **Score = P(fake)** in "
                "[0, 1] for each detector.")
    for r in registry_rows(det):
        st.markdown(f"#### {r['detector']}" + ("" if r["in use"] == "yes" else " (not loaded here)"))
        st.markdown("\n".join(["| | |", "|---|---|"] + [f"| {k} | {str(v).replace('|', '/')} |"
                                                        for k, v in r.items() if k != "detector"]))
    rule = registry.VERDICT_RULE.removeprefix("combined verdict: ")
    st.info(f"**Combined verdict.** {rule[:1].upper()}{rule[1:]}.")
    cost = combined_cost_rows()
    if cost:
        st.markdown("**What the combined verdict costs and buys** (measured by `python -m research.detectors` on "
                    "files neither detector trained on; share labelled fake, 95 % interval):")
        st.dataframe(cost, hide_index=True)
    if getattr(det, "keys", None) and det.keys[0] not in registry.keys():
        st.caption(f"This server uses one model folder ({det.name}, set by $DEEPFAKE_MODEL) instead of the "
                   "registry's detectors.")


COMBINED_COST = registry.COMBINED_COST


def combined_cost_rows(path: Path = COMBINED_COST) -> list[dict]:
    """Rows of the measured combined-verdict table (``research.detectors``): per sample, each detector's and the
    combined share labelled fake with intervals; [] when not measured here."""
    import json

    if not path.is_file():
        return []
    d = json.loads(path.read_text())

    def pct(v, ci):
        return "—" if v is None else f"{100 * v:.1f} %" + (f" [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]" if ci else "")

    rows = []
    for r in d["rows"]:
        row = {"sample": r["source"], "kind": "real photos: false alarms" if r["real"] else "generated: detections",
               "n": r["n"]}
        for k in [*d["detectors"], "combined"]:
            row[k] = pct(r.get(k), r.get(f"{k}_ci"))
        rows.append(row)
    return rows


def render(det) -> None:
    st.markdown(
        "DeepFake-Detect finds faces in an image or video (MTCNN), scores each face with every detector of its "
        "registry (EfficientNet classifiers), and explains each score with Grad-CAM. **Score = P(fake)** in [0, 1].")
    registry_section(det)
    for s in det.scorers:
        detector_details(s, det)
    _history_and_limits(det)


def detector_details(s, det) -> None:
    card = s.card
    st.subheader(f"The model in use: {s.key}" if len(det.scorers) > 1 else "The model in use")
    spec = s.spec
    cal = s.calibration
    st.markdown(f"""
| | |
|---|---|
| Backbone | {card.backbone} ({s.input_size} px face crops) |
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
        ci = head.get("auc_ci") or [None, None]
        ece = f" Calibration error (ECE) {head['ece']:.3f}." if head.get("ece") is not None else ""
        st.markdown(
            f"**File-level AUC {runs.fmt_ci(head.get('auc'), ci)} (95 % interval)** on {head.get('n', '?')} test "
            f"files ({head.get('n_real', '?')} real, {head.get('n_fake', '?')} fake) from {head.get('n_groups', '?')} "
            f"identity groups never seen in training (test data: {head.get('dataset') or 'its test split'}), "
            f"analysed exactly as this app analyses an upload.{ece} Intervals resample identity groups: with this "
            "few groups they are wide.")
        if m.get("face_auc") is not None:
            fc = m.get("face_auc_ci") or [float("nan")] * 2
            st.markdown(f"Face-level AUC {m['face_auc']:.3f} ({fc[0]:.3f}–{fc[1]:.3f}).")
        photo = {k: v for k, v in m.items() if k.startswith("false_alarm_rate_")}
        for k, v in photo.items():
            if not isinstance(v, dict) or v.get("rate") is None:
                continue
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
        if audit is not None and {"attribute", "false_alarms", "score_p99", "group"} <= set(audit.columns):
            st.markdown(f"False-alarm rate on held-out real photos by group, at threshold {ev['threshold']:.3f} "
                        "(with 95 % intervals and score percentiles: a 0 % rate far below the threshold says little):")
            st.dataframe(audit, hide_index=True)
            for r in audit[(audit["attribute"] == "dataset")].itertuples():
                if r.false_alarms == 0 and float(r.score_p99) < ev["threshold"]:
                    st.caption(f"{r.group}: 0 false alarms, but only because all its scores sit below the threshold "
                               f"(99th percentile {float(r.score_p99):.3f} < {ev['threshold']:.3f}) — that says the model "
                               f"separates this photo source, not that it is right about other photos.")


def _history_and_limits(det) -> None:
    hist = runs.read_csv(settings.runs_root() / "model_history.csv")
    if hist is not None:
        with st.expander("Earlier bundled models (history)"):
            st.dataframe(hist, hide_index=True)
    st.subheader("Limits")
    for s in det.scorers:
        flagged = {k.removeprefix("false_alarm_rate_"): v for k, v in (s.card.metrics or {}).items()
                   if k.startswith("false_alarm_rate_") and isinstance(v, dict) and (v.get("rate") or 0) >= 0.2}
        if flagged:
            rates = ", ".join(f"{name} {100 * v['rate']:.0f} % of {v.get('n', '?')}"
                              for name, v in sorted(flagged.items()))
            who = f"the {s.key} detector" if len(det.scorers) > 1 else "this model"
            st.warning(f"**Ordinary photos are often flagged.** At its threshold {who} calls real photos fake on "
                       f"held-out photo sets ({rates}, measured by its evaluation): a \"fake\" on a plain portrait "
                       "is likely a false alarm.")
    st.markdown("""
- **A demo model.** The bundled face-swap model was trained on a 2-core CPU from DFDC face crops (4,500 real videos and one fake
  of each), about a hundred FaceForensics++ / Google DFD videos and LFW photos with self-blended fakes. Real use needs
  the full datasets (see the README for the commands).
- **New generators evade detectors.** A detector learns the traces of the manipulations it saw; diffusion models,
  new face-swap tools and heavy re-compression can hide them.
- **A score is evidence, not proof.** Low scores do not certify a video as authentic; high scores can be false
  alarms (unusual lighting, make-up, compression, faces unlike the training data). Check the source and context.
- Only faces are analysed: a synthetic background, voice or body is not.
""")
