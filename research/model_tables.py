"""Markdown tables for the README and the model card, read from evaluated run folders (no number typed by hand).

    python -m research.model_tables runs/sample                       # the test-set tables of one run
    python -m research.model_tables --candidates runs/a runs/b ...    # validation-only table of candidate runs
"""
from __future__ import annotations

import argparse
import json
import tomllib
from pathlib import Path

import pandas as pd


def _ci(v, ci) -> str:
    if v is None:
        return "—"
    return f"{v:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else f"{v:.3f}"


def _slice(m: dict, **k) -> dict | None:
    return next((s for s in m["slices"] if all(s.get(a) == b for a, b in k.items())), None)


def run_tables(run: Path) -> str:
    m = json.loads((run / "evaluation" / "metrics.json").read_text())
    out = [f"{m['n_files']} test files (video test groups and held-out photos), {m['n_faces']} faces, "
           f"{m['n_errors']} errors; intervals: 95 % bootstrap over identity groups ({m.get('bootstrap')})."]
    out += ["", "| FF++/DFD test | files (groups) | file AUC [95 % CI] | faces | face AUC [95 % CI] |", "|---|---|---|---|---|"]
    for comp in ("all", "c23", "c40"):
        for method in ("all", "Deepfakes", "Face2Face", "FaceSwap", "NeuralTextures"):
            f = _slice(m, level="file", dataset="video datasets", method=method, compression=comp)
            g = _slice(m, level="face", dataset="video datasets", method=method, compression=comp)
            if not f:
                continue
            name = f"{'all methods' if method == 'all' else method}, {'c23 + c40' if comp == 'all' else comp}"
            out.append(f"| {name} | {f['n']} ({f['n_groups']}) | {_ci(f['auc'], f['auc_ci'])} | "
                       f"{g['n'] if g else '—'} | {_ci(g['auc'], g['auc_ci']) if g else '—'} |")
    h = m["headline"]
    c = m["calibration_test_files"]
    out += ["", f"Calibration ({m['calibration']['method']}, fitted on {m['calibration']['fitted_on']}); on the "
                f"{h['n']} FF++/DFD test files: ECE {c['raw']['ece']:.3f} → {c['calibrated']['ece']:.3f} "
                f"(95 % CI after: {_ci(h['ece'], h.get('ece_ci'))}), Brier {c['raw']['brier']:.3f} → "
                f"{c['calibrated']['brier']:.3f}. Threshold {m['threshold']:.4f} ({m['threshold_policy']}): "
                f"false alarms {_ci(h['false_alarm_rate'], h.get('false_alarm_rate_ci'))} of "
                f"{h['n_real']} real test files, detections {_ci(h['detection_rate'], h.get('detection_rate_ci'))} of "
                f"{h['n_fake']} fake test files."]
    if m.get("photo_sets"):
        out += ["", "| held-out real photos | n | false alarms at the threshold [95 % CI] | ECE |", "|---|---|---|---|"]
        for s in m["photo_sets"]:
            out.append(f"| {s['dataset']} | {s['n']} | {_ci(s['false_alarm_rate'], s.get('false_alarm_rate_ci'))} | "
                       f"{s['ece']:.3f} |")
    a = run / "evaluation" / "audit.csv"
    if a.is_file():
        d = pd.read_csv(a)
        d = d[d["attribute"] != "all"]
        out += ["", f"False alarms on held-out real photos by group at threshold {m['threshold']:.3f} (gender and race "
                    f"from UTKFace's file names; UTKFace was never trained on; LFW test people were never seen):", "",
                "| group | n | false alarms [95 % CI] | score p50 / p90 / p99 |", "|---|---|---|---|"]
        for r in d.itertuples():
            out.append(f"| {r.attribute}: {r.group} | {r.n} | {r.false_alarm_rate:.3f} "
                       f"[{r.false_alarm_rate_ci_lo:.3f}, {r.false_alarm_rate_ci_hi:.3f}] | "
                       f"{r.score_p50:.3f} / {r.score_p90:.3f} / {r.score_p99:.3f} |")
    return "\n".join(out)


def candidate_row(run: Path) -> str:
    cfg = tomllib.loads((run / "config.toml").read_text())
    card = json.loads((run / "model" / "model_card.json").read_text())
    hist = pd.read_csv(run / "history.csv")
    mins = f"{hist['epoch_minutes'].sum():.0f}" if "epoch_minutes" in hist else "not logged"
    met = card.get("metrics", {})
    mdl, tr = cfg["model"], cfg["train"]
    start = "ImageNet" if mdl.get("weights") else "random init"
    data = cfg.get("data", {})
    fakes = f"{data.get('fake_weight', 0.25):g} : {data.get('sbi_weight', 0.25):g}"
    return (f"| {run.name} | {mdl['backbone'].removeprefix('efficientnet_')} @ {mdl['input_size']} px, {start} | {fakes} | "
            f"lr {tr['learning_rate']:g} {tr.get('schedule', '')}, {len(hist)}/{tr['epochs']} epochs × "
            f"{tr['steps_per_epoch']} steps | {mins} | {hist['val_auc'].max():.3f} | "
            f"{_ci(met.get('val_file_auc'), met.get('val_file_auc_ci'))} |")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--candidates", action="store_true", help="validation-only table of candidate runs")
    a = ap.parse_args(argv)
    if a.candidates:
        print("| run | network | FF++ fakes, own : self-blended | schedule (epochs run) | training minutes | "
              "best val crop AUC | val file AUC (engine) [95 % CI] |")
        print("|---|---|---|---|---|---|---|")
        for r in a.runs:
            print(candidate_row(r))
        return 0
    for r in a.runs:
        print(run_tables(r))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
