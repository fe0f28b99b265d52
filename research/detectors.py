"""What running several detectors costs and buys: ``python -m research.detectors [--out FILE]``.

Every file goes through the engine the app and the CLI run (``Detector.analyze`` with every bundled detector of
the registry), once; each detector's label and the combined verdict (``model.registry.VERDICT_RULE``) come from
that one pass, so "the face-swap detector alone" and "combined" are compared on the same files (paired).

Samples (seeded; none of them trained on by either detector):

* held-out REAL photos: UTKFace (``--utk`` files; neither detector saw UTKFace), LFW people of the test split
  (the configs share LFW's split; ``--lfw`` files), FFHQ faces of the generated-face set's test split;
* generated faces of that test split, per generator (detection rates).

False-alarm rates (real files labelled fake) and detection rates with 95 % bootstrap intervals: LFW resampled by
person, the others by file (``model.metrics.bootstrap``); the combined-minus-face-swap difference is paired
(the same draws). Writes JSON (``--out``) and prints a Markdown table.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from model import metrics, registry

REPO = Path(__file__).resolve().parent.parent


def sample_files(data: Path, utk: int, lfw: int, seed: int = 0) -> pd.DataFrame:
    """path, source, label (0 real / 1 generated), method, group of the held-out sample."""
    from training import config, datasets, train

    rows = []
    u = datasets.index_dataset("utkface", data / "utkface").sample(frac=1.0, random_state=seed).head(utk)
    rows.append(u.assign(source="utkface"))
    split = train.split_index(config.load(REPO / "configs" / "gan.toml"))
    test = split[split["split"] == "test"]
    lf = test[test["dataset"] == "lfw"].sample(frac=1.0, random_state=seed).head(lfw)
    rows.append(lf.assign(source="lfw"))
    g = test[test["dataset"] == "gan_faces"]
    rows.append(g.assign(source=np.where(g["label"].astype(int) == 1, g["method"], "ffhq")))
    df = pd.concat(rows, ignore_index=True)
    return df[["path", "source", "label", "method", "group"]].reset_index(drop=True)


def score(df: pd.DataFrame, detectors: str | None = None) -> tuple[pd.DataFrame, list[str]]:
    from model.api import Detector

    det = Detector.load(detectors=detectors)
    out = []
    for i, r in enumerate(df.itertuples(index=False), 1):
        res = det.analyze(r.path)
        row = {"path": r.path, "faces": res.faces, "error": res.error, "verdict": res.verdict}
        for k, d in res.detectors.items():
            row[f"score_{k}"], row[f"label_{k}"] = d["score"], d["label"]
        out.append(row)
        if i % 200 == 0:
            print(f"[{i}/{len(df)}]", flush=True)
    return df.merge(pd.DataFrame(out), on="path"), det.keys


def _rate(flags: np.ndarray) -> float | None:
    return float(flags.mean()) if len(flags) else None


def rates(df: pd.DataFrame, keys: list[str]) -> list[dict]:
    """Per source: n, and per detector + combined the share labelled fake, with intervals; for real sources the
    paired difference combined - first detector."""
    out = []
    first = keys[0]
    for src, g in df.groupby("source", sort=False):
        g = g[g["faces"] > 0]
        groups = g["group"].to_numpy() if src == "lfw" else None
        flags = {k: (g[f"label_{k}"] == "fake").to_numpy(float) for k in keys}
        flags["combined"] = (g["verdict"] == "fake").to_numpy(float)
        row = {"source": src, "real": int(g["label"].iloc[0]) == 0 if len(g) else True, "n": len(g),
               "no_face": int((df["source"] == src).sum() - len(g))}
        for k, f in flags.items():
            row[k] = _rate(f)
            row[f"{k}_ci"] = metrics.bootstrap(lambda y, p: _rate(p), np.zeros(len(f)), f, groups, digits=4)
        diff = flags["combined"] - flags[first]
        row["combined_minus_first"] = _rate(diff)
        row["combined_minus_first_ci"] = metrics.bootstrap(lambda y, p: _rate(p), np.zeros(len(diff)), diff, groups,
                                                           digits=4)
        out.append(row)
    return out


def table(rows: list[dict], keys: list[str]) -> str:
    def f(v, ci):
        if v is None:
            return "—"
        s = f"{100 * v:.1f} %"
        return f"{s} [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]" if ci else s

    cols = [*keys, "combined"]
    lines = ["| source | kind | n | " + " | ".join(cols) + f" | combined − {keys[0]} |",
             "|---|---|---:|" + "---:|" * (len(cols) + 1)]
    for r in rows:
        kind = "real: false alarms" if r["real"] else "generated: detections"
        lines.append(f"| {r['source']} | {kind} | {r['n']} | " + " | ".join(f(r[c], r[f'{c}_ci']) for c in cols)
                     + f" | {f(r['combined_minus_first'], r['combined_minus_first_ci'])} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m research.detectors", description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data"))
    ap.add_argument("--utk", type=int, default=600)
    ap.add_argument("--lfw", type=int, default=300)
    ap.add_argument("--detectors", default=None, help="registry keys (default: every bundled detector)")
    ap.add_argument("--out", default=str(registry.COMBINED_COST))
    a = ap.parse_args(argv)
    df = sample_files(Path(a.data), a.utk, a.lfw)
    t0 = time.perf_counter()
    scored, keys = score(df, a.detectors)
    rows = rates(scored, keys)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    scored.assign(path=[Path(p).name for p in scored["path"]]).to_csv(out.with_suffix(".csv"), index=False)
    out.write_text(json.dumps({"detectors": keys, "rule": __import__("model.registry").registry.VERDICT_RULE,
                               "seconds": round(time.perf_counter() - t0, 1), "rows": rows}, indent=2))
    print(table(rows, keys))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
