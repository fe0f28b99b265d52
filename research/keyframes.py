"""Keyframe detection vs detection on every sampled frame, on the same videos: ``python -m research.keyframes``.

    python -m research.keyframes [--every 4] [--splits val] [--config configs/sample.toml] [--out FILE]

The bundled face-swap detector analyses each video of the chosen splits of the config's FF++/DFD data twice
through the engine: with its card's contract (MTCNN on every sampled frame) and with ``video_keyframe_every = K``
(MTCNN on the whole of every K-th frame of each group of 8 and the group's last; in windows around the faces' path
between, ``model.crops.chunk_faces``). Prints per setting
the file AUC (with a 95 % bootstrap over identity groups), the seconds spent finding faces, and the paired score
differences; writes the per-file scores to ``--out``. This is how the card's keyframe setting is chosen: adopted
only when the validation AUC moves by at most 0.01.
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

from model import metrics

REPO = Path(__file__).resolve().parent.parent


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m research.keyframes", description=__doc__.splitlines()[0])
    ap.add_argument("--every", type=int, default=4)
    ap.add_argument("--splits", nargs="+", default=["val"])
    ap.add_argument("--config", default=str(REPO / "configs" / "sample.toml"))
    ap.add_argument("--model", default=None, help="model folder (default: the bundled face-swap detector)")
    ap.add_argument("--out", default=str(REPO / "runs" / "sample" / "analysis" / "keyframes.csv"))
    a = ap.parse_args(argv)
    from model.api import Detector
    from training import config, train

    idx = train.split_index(config.load(a.config))
    vids = idx[(idx["media"] == "video") & idx["split"].isin(a.splits)].reset_index(drop=True)
    det = Detector.load(a.model, detectors=None if a.model else "faceswap")
    base = det.spec
    rows = []
    for k, spec in (("every frame", base.replace(video_keyframe_every=1)),
                    (f"keyframes every {a.every}", base.replace(video_keyframe_every=a.every))):
        det.spec = spec
        for r in vids.itertuples(index=False):
            res = det.analyze_video(r.path)
            rows.append({"setting": k, "path": os.path.relpath(r.path, REPO), "group": r.group, "label": int(r.label),
                         "score": res.score, "raw_score": res.raw_score, "faces": res.faces, "error": res.error,
                         "detect_s": res.timings.get("detect_s", 0.0), "classify_s": res.timings.get("classify_s", 0.0)})
        print(f"{k}: {len(vids)} videos done", flush=True)
    df = pd.DataFrame(rows)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(a.out, index=False)
    out = {}
    for k, g in df.groupby("setting", sort=False):
        g = g[g["raw_score"].notna()]
        out[k] = {"n": len(g), "auc": metrics.auc(g["label"], g["raw_score"]),
                  "auc_ci": metrics.bootstrap(metrics.auc, g["label"], g["raw_score"], g["group"], digits=4),
                  "detect_s": round(float(g["detect_s"].sum()), 1)}
    w = df.pivot_table(index="path", columns="setting", values="score")
    d = (w.iloc[:, 1] - w.iloc[:, 0]).dropna()
    out["paired"] = {"n": len(d), "mean_abs_diff": round(float(d.abs().mean()), 4),
                     "max_abs_diff": round(float(d.abs().max()), 4)}
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
