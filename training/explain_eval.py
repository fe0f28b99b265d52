"""``python -m training explain-eval RUN --method ...``: how faithful each explanation method is on a run's test fakes.

Takes the test-fake faces of the run's evaluation (``evaluation/face_predictions.csv``, schema 2), cuts each face
again from its source file by the model's crop contract, and measures for every method the deletion-curve area
(``model.explain``; lower = more faithful) beside a random map. Writes into ``RUN/evaluation/``:

    explain_eval.json        {"schema": 1, "methods": [{method, label, faces, deletion_area, deletion_area_ci,
                              minus_random, seconds_per_face, mean_score}], "faces", "faces_missing", "steps", "fill",
                              "target": "fake", "model", "created"}
    explain_eval_faces.csv   path, frame, face, x, y, w, h, sample, method, area, seconds, score
                             (one row per face and method; sample = the face's number in this sample)

Running again with other methods on the same faces (same --faces/--seed/--steps/--fill) adds them to the table.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
from pathlib import Path
from typing import Sequence

import pandas as pd

EVAL_JSON = "explain_eval.json"
FACES_CSV = "explain_eval_faces.csv"
FACE_KEY = ["path", "frame", "face", "x", "y", "w", "h"]


def test_fakes(run: Path, n: int, seed: int = 0) -> pd.DataFrame:
    """Up to ``n`` scored test-fake faces from the run's evaluation, spread over files (seeded)."""
    ev = run / "evaluation"
    m = json.loads((ev / "metrics.json").read_text()) if (ev / "metrics.json").is_file() else None
    if not m:
        raise ValueError(f"{run}: not evaluated yet; run `python -m training evaluate {run}` first")
    if int(m.get("schema", 1)) < 2 or not (ev / "face_predictions.csv").is_file():
        raise ValueError(f"{run}: evaluation in the old format (no face_predictions.csv); "
                         f"re-run `python -m training evaluate {run}`")
    fc = pd.read_csv(ev / "face_predictions.csv", keep_default_na=False)
    fc = fc[(pd.to_numeric(fc["label"], errors="coerce") == 1) & (pd.to_numeric(fc["score"], errors="coerce").notna())]
    if fc.empty:
        raise ValueError(f"{run}: the evaluation has no test-fake faces")
    # one face per file first (round robin over files), so a long video does not fill the sample
    fc = fc.sample(frac=1.0, random_state=seed)
    fc["_rank"] = fc.groupby("path").cumcount()
    return fc.sort_values(["_rank"], kind="stable").head(n).drop(columns="_rank").reset_index(drop=True)


def _merge_previous(ev: Path, new: pd.DataFrame, settings: dict) -> pd.DataFrame:
    """Keep earlier rows of other methods when they were measured on the same faces with the same settings."""
    old_json = ev / EVAL_JSON
    old_csv = ev / FACES_CSV
    if not (old_json.is_file() and old_csv.is_file()):
        return new
    try:
        prev = json.loads(old_json.read_text())
        old = pd.read_csv(old_csv, keep_default_na=False)
    except (OSError, ValueError):
        return new
    if any(prev.get(k) != v for k, v in settings.items()):
        return new
    key = lambda d: set(map(tuple, d[FACE_KEY].astype(str).drop_duplicates().values.tolist()))  # noqa: E731
    if key(old) != key(new):
        return new
    keep = old[~old["method"].isin(set(new["method"]))]
    return pd.concat([keep, new], ignore_index=True)


def explain_eval(run: str | Path, methods: Sequence[str], faces: int = 48, steps: int = 16, fill: str = "mean",
                 seed: int = 0, progress: bool = True, det=None) -> dict:
    """``det``: the run's detector when already loaded (default: loaded from RUN/model)."""
    from model import explain
    from model.api import Detector

    run = Path(run)
    methods = [explain.check_method(m) for m in methods]
    sample = test_fakes(run, faces, seed)
    det = det or Detector.load(run / "model")
    if not explain.recut_available(det):
        raise ValueError(explain.RECUT_MISSING)
    crops, kept = [], []
    for _, r in sample.iterrows():
        c = explain.recut_face(det, r["path"], int(r["frame"] or 0), [float(r[k]) for k in ("x", "y", "w", "h")])
        if c is not None:
            crops.append(c)
            kept.append(r)
    if not crops:
        raise ValueError(f"{run}: none of the {len(sample)} test-fake source files is on this machine")

    def prog(done, total, msg):
        if progress:
            print(f"[{done}/{total}] {msg}", flush=True)

    rows = explain.evaluate_methods(det, crops, methods, steps=steps, fill=fill, target="fake", progress=prog)
    face_df = pd.DataFrame(kept)[FACE_KEY].reset_index(drop=True)
    per = pd.DataFrame(rows).rename(columns={"face": "sample"})  # 'face' is the face number in its frame
    per = pd.concat([face_df.iloc[per["sample"].to_numpy()].reset_index(drop=True), per], axis=1)
    settings = {"steps": steps, "fill": fill, "seed": seed, "target": "fake"}
    ev = run / "evaluation"
    per = _merge_previous(ev, per, settings)
    # sample numbers are positions in this sample; recompute them from the face key for merged rows
    keys = per[FACE_KEY].astype(str).agg("|".join, axis=1)
    per["sample"] = keys.map({k: i for i, k in enumerate(dict.fromkeys(keys))})
    summary = explain.summarize(per.drop(columns="face").rename(columns={"sample": "face"}).to_dict("records"))
    out = {"schema": 1, "methods": summary, "faces": len(crops), "faces_missing": len(sample) - len(crops),
           **settings, "model": str(run / "model"),
           "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    tmp = ev / (FACES_CSV + ".tmp")
    per[FACE_KEY + ["sample", "method", "area", "seconds", "score"]].to_csv(tmp, index=False)
    os.replace(tmp, ev / FACES_CSV)
    tmp = ev / (EVAL_JSON + ".tmp")
    tmp.write_text(json.dumps(out, indent=2) + "\n")
    os.replace(tmp, ev / EVAL_JSON)
    return out


def format_table(out: dict) -> str:
    lines = [f"{'method':<24}{'faces':>6}  {'deletion area [95% CI]':<28}{'- random':>10}{'s/face':>9}"]
    for r in out["methods"]:
        lo, hi = r["deletion_area_ci"] or (None, None)
        ci = "[n/a]" if lo is None or hi is None else f"[{lo:.3f}, {hi:.3f}]"  # no interval below two faces
        mr = "" if r["minus_random"] is None else f"{r['minus_random']:+.3f}"
        lines.append(f"{r['label']:<24}{r['faces']:>6}  {r['deletion_area']:.3f} {ci:<14}{'':<8}"
                     f"{mr:>10}{r['seconds_per_face']:>9.3f}")
    lines.append(f"{out['faces']} test-fake faces ({out['faces_missing']} not on this machine); {out['steps']} steps, "
                 f"{out['fill']} fill; lower area = more faithful")
    return "\n".join(lines)
