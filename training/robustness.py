"""Robustness to everyday degradations, THROUGH THE ENGINE: ``python -m training robustness RUN``.

The run's test files (the selection ``evaluate`` uses; by default the headline datasets, photo sets left out) are
analysed clean (level 0, the reference) and under every perturbation of ``model.perturb`` at every level:

* images: decoded once (``model.isolation.load_image``, as ``Detector.analyze`` decodes them), perturbed with
  ``perturb.apply`` and analysed with ``Detector.analyze_array`` -- the engine's image path after decoding;
* videos: ``h264`` only: the file is re-encoded at the level's CRF (``perturb.reencode_video``, into a temporary
  folder removed right after) and analysed with ``Detector.analyze`` as any upload. The image perturbations are
  NOT applied to videos: the engine has no hook to perturb decoded frames, and writing perturbed frames to a new
  video would add a compression step of its own, so a video row would measure two changes at once. Image
  perturbations are therefore measured on the image files, ``h264`` on the video files; each row's ``media``
  column says which, and its clean (level 0) reference is the same files untouched.

Writes into ``RUN/evaluation/``:

    robustness.csv         one row per perturbation x level (level 0 = clean reference of the same files):
                           perturbation, media, level, parameter, n_files, n_real, n_fake, n_groups, n_unscored,
                           auc, auc_ci_lo, auc_ci_hi, detection_rate(_ci_lo/_ci_hi), false_alarm_rate(_ci_lo/_ci_hi)
                           at the model's threshold, auc_drop (clean AUC - AUC) with a PAIRED interval
                           (auc_drop_ci_lo/_hi, on the files scored in both conditions), target (PASS/MISS at
                           levels 3 and 5). Intervals: 95 % bootstrap resampling identity groups (``model.metrics``).
    robustness_scores.csv  per file per condition: path, dataset, media, group, label, perturbation, level,
                           raw_score, faces, error (ends with "|", the cache's end-of-row mark: a row cut by a
                           kill lacks it and is analysed again) -- the resumable cache (a killed run continues where it stopped;
                           discarded when the model, crop contract, seed or perturbation parameters change)
    robustness.json        the settings (perturbations, levels, datasets, max_files, seed, threshold, calibration)
                           and the cache key

Scores are the engine's raw scores calibrated with the run's calibration at report time, so re-running after
``calibrate`` needs no re-analysis. ``n_unscored`` counts files without a score under that condition (no face
found, decoding error): they are left out of that row's metrics.

Target (a benchmark-style check, printed): AUC drop <= 0.05 at level 3 and <= 0.10 at level 5.
"""
from __future__ import annotations

import csv
import dataclasses
import datetime as _dt
import hashlib
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from model import metrics, perturb
from model.metrics import BOOTSTRAP

RESULT_CSV = "robustness.csv"
SCORES_CSV = "robustness_scores.csv"
SETTINGS_JSON = "robustness.json"
CLEAN = "none"  # the perturbation name of level 0 rows in the scores cache
TARGETS = {3: 0.05, 5: 0.10}  # level -> largest AUC drop that passes
SCORE_COLS = ["path", "dataset", "media", "group", "label", "perturbation", "level", "raw_score", "faces", "error"]
RESULT_COLS = ["perturbation", "media", "level", "parameter", "n_files", "n_real", "n_fake", "n_groups", "n_unscored",
               "auc", "auc_ci_lo", "auc_ci_hi", "detection_rate", "detection_rate_ci_lo", "detection_rate_ci_hi",
               "false_alarm_rate", "false_alarm_rate_ci_lo", "false_alarm_rate_ci_hi", "auc_drop", "auc_drop_ci_lo",
               "auc_drop_ci_hi", "target"]


# --------------------------------------------------------------------------- arguments
def parse_perturbations(text: str | Sequence[str] | None) -> list[str]:
    """``"jpeg,resize"`` (or a list; None/"all": every one) -> names in ``perturb.ALL`` order; PerturbError on an
    unknown name."""
    if text is None or text == "all":
        return list(perturb.ALL)
    names = [n.strip() for part in ([text] if isinstance(text, str) else text) for n in str(part).split(",")]
    names = [n for n in names if n]
    bad = [n for n in names if n not in perturb.ALL]
    if bad or not names:
        raise perturb.PerturbError(f"unknown perturbation {', '.join(bad) or repr(text)}; choose from "
                                   f"{', '.join(perturb.ALL)}")
    return [n for n in perturb.ALL if n in names]


def file_seed(seed: int, path: str) -> int:
    """The noise seed of one file: stable across runs and machines, different per file."""
    return int(hashlib.sha1(f"{seed}:{Path(path).name}".encode()).hexdigest()[:8], 16)


def choose_files(run: Path, cfg, index: pd.DataFrame, datasets: Sequence[str] = (), max_files: int = 0,
                 seed: int = 0) -> pd.DataFrame:
    """The test files ``evaluate`` uses (``choose_test_files``; default the headline datasets, photo sets left
    out), with a ``media`` column; ``max_files``: at most that many per dataset, a seeded subsample stratified by
    label (each label keeps its share, at least one file)."""
    from training.datasets import PHOTO_SETS
    from training.evaluate import choose_test_files, video_datasets

    if max_files < 0:
        raise ValueError(f"--max-files must be 0 (all) or more (got {max_files})")
    test = choose_test_files(run, index, datasets=datasets)
    if not datasets:
        vds = video_datasets(cfg, index)
        test = test[test["dataset"].isin(vds) & ~test["dataset"].isin(PHOTO_SETS)]
    test = test[test["media"].isin(["image", "video"])]  # the index's media; a file of neither kind: nothing to degrade
    if max_files:
        parts = []
        for _, d in test.groupby("dataset"):
            if len(d) <= max_files:
                parts.append(d)
                continue
            for _, g in d.groupby("label"):
                k = min(len(g), max(1, round(max_files * len(g) / len(d))))
                parts.append(g.sample(k, random_state=seed))
        test = pd.concat(parts)
    test = test.sort_values(["dataset", "label", "path"]).reset_index(drop=True)
    if test.empty or test["label"].nunique() < 2:
        raise ValueError(f"{run}: robustness needs real and fake test files (got {len(test)} files)")
    return test


def conditions(media: str, perts: Sequence[str], levels: Sequence[int]) -> list[tuple[str, int]]:
    """(perturbation, level) pairs one file is analysed under: clean first, then the perturbations of its media."""
    own = [p for p in perts if (p in perturb.VIDEO_ONLY) == (media == "video")]
    return [(CLEAN, 0)] + [(p, lv) for p in own for lv in levels] if own else []


# --------------------------------------------------------------------------- the cache
def cache_key(run: Path, det, seed: int) -> dict:
    from training.evaluate import _model_key

    return {"model_key": _model_key(run), "crop_spec": det.spec.to_dict(), "seed": int(seed),
            "params": {k: list(v) for k, v in perturb.PARAMS.items()}}


def read_cache(path: Path) -> dict[tuple[str, str, int], dict]:
    """(path, perturbation, level) -> row of the scores CSV; a line cut by a kill is skipped (analysed again)."""
    done: dict[tuple[str, str, int], dict] = {}
    if not path.is_file():
        return done
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            if None in r or any(r.get(c) is None for c in SCORE_COLS) or not r["error"].endswith("|"):
                continue
            try:
                key = (r["path"], r["perturbation"], int(r["level"]))
            except ValueError:
                continue
            done[key] = r
    return done


@dataclasses.dataclass
class _Analysed:
    """What a row needs of an engine result (``evaluate``'s cached record of a file)."""
    raw_score: float | None
    faces: int
    error: str


def _row(f: dict, pert: str, level: int, res=None, error: str = "") -> dict:
    raw = None if res is None or res.raw_score is None else round(float(res.raw_score), 6)
    err = error or ("" if res is None else res.error or "")
    # the error field ends with "|" so that a line cut short by a kill is recognised (and analysed again)
    return {"path": f["rel"], "dataset": f["dataset"], "media": f["media"], "group": f["group"],
            "label": int(f["label"]), "perturbation": pert, "level": level, "raw_score": "" if raw is None else raw,
            "faces": 0 if res is None else res.faces, "error": err.replace("\n", " ").replace("|", "/") + "|"}


def analyse(run: Path, det, files: pd.DataFrame, perts: Sequence[str], levels: Sequence[int], seed: int,
            progress: bool = True) -> pd.DataFrame:
    """Every file under every condition of its media (resumable cache ``SCORES_CSV``) -> the scores table."""
    from model import isolation
    from model.media import MediaError

    out = run / "evaluation"
    out.mkdir(exist_ok=True)
    cache, settings = out / SCORES_CSV, out / SETTINGS_JSON
    key = cache_key(run, det, seed)
    try:
        old_key = json.loads(settings.read_text()).get("cache_key")
    except (OSError, ValueError):
        old_key = None
    if old_key != key:
        cache.unlink(missing_ok=True)
    done = read_cache(cache)
    if not settings.is_file() or old_key != key:
        _atomic_json({"cache_key": key, "model_key": key["model_key"]}, settings)
    new = not cache.is_file() or cache.stat().st_size == 0
    if not new:
        with open(cache, "rb") as fh:
            fh.seek(-1, 2)
            if fh.read(1) != b"\n":  # a line cut by a kill: the next row starts on a line of its own
                with open(cache, "a") as fa:
                    fa.write("\n")
    from training.evaluate import _rel

    records = [{**f, "rel": _rel(f["path"])} for f in files.to_dict("records")]  # stored relative to the repo
    # the untouched files (level 0): ``evaluate`` ran the same engine on them (``analysis/test.jsonl``); taken
    # from there when that cache is of this model and contract
    from training.evaluate import cached_analyses

    evaluated = cached_analyses(run, det, "test")
    clean = [_row(f, p, 0, _Analysed(**{k: evaluated[f["path"]][k] for k in ("raw_score", "faces", "error")}))
             for f in records if f["path"] in evaluated
             for p, lv in conditions(f["media"], perts, levels) if lv == 0 and (f["rel"], p, 0) not in done]
    todo = [(f, conditions(f["media"], perts, levels)) for f in records]
    todo = [(f, [c for c in cs if (f["rel"], c[0], c[1]) not in done
                 and not (c[1] == 0 and f["path"] in evaluated)]) for f, cs in todo]
    todo = [(f, cs) for f, cs in todo if cs]
    t0, n_total = time.time(), sum(len(cs) for _, cs in todo)
    n = 0
    with open(cache, "a", newline="") as fh:
        w = csv.DictWriter(fh, SCORE_COLS)
        if new:
            w.writeheader()
        for r in clean:
            w.writerow(r)
            done[(r["path"], r["perturbation"], int(r["level"]))] = r
        fh.flush()
        for f, conds in todo:
            rows = (_image_rows if f["media"] == "image" else _video_rows)(det, f, conds, seed, isolation, MediaError)
            for r in rows:
                w.writerow(r)
                fh.flush()
                done[(r["path"], r["perturbation"], int(r["level"]))] = r
            n += len(conds)
            if progress:
                el = time.time() - t0
                print(f"robustness: {n}/{n_total} analyses, {el:.0f}s, ETA {el / n * (n_total - n):.0f}s",
                      file=sys.stderr, flush=True)
    rows = [done[(f["rel"], p, lv)] for f in records for p, lv in conditions(f["media"], perts, levels)]
    t = pd.DataFrame(rows, columns=SCORE_COLS)
    t["label"] = t["label"].astype(int)
    t["level"] = t["level"].astype(int)
    t["raw_score"] = pd.to_numeric(t["raw_score"], errors="coerce")
    t["error"] = t["error"].astype(str).str.rstrip("|")
    return t


def _image_rows(det, f: dict, conds, seed: int, isolation, MediaError):
    try:
        img = isolation.load_image(f["path"])
    except MediaError as e:
        return [_row(f, p, lv, error=str(e)) for p, lv in conds]
    return [_row(f, p, lv, det.analyze_array(perturb.apply(img, p, lv, seed=file_seed(seed, f["path"])) if lv
                                             else img, f["path"])) for p, lv in conds]


def _video_rows(det, f: dict, conds, seed: int, isolation, MediaError):
    rows = []
    for p, lv in conds:
        if lv == 0:
            rows.append(_row(f, p, lv, det.analyze(f["path"])))
            continue
        tmp = Path(tempfile.mkdtemp(prefix="deepfake-robust-"))
        try:
            enc = perturb.reencode_video(f["path"], lv, tmp)
            res = det.analyze(str(enc))
            rows.append(_row(f, p, lv, res))
        except perturb.PerturbError as e:
            rows.append(_row(f, p, lv, error=str(e)))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return rows


# --------------------------------------------------------------------------- the table
def _ci(ci, i):
    return None if not ci else ci[i]


def _r(v):
    return None if v is None else round(float(v), 4)


def _paired_drop(clean: pd.DataFrame, cond: pd.DataFrame, n_boot: int, seed: int):
    """Clean AUC - perturbed AUC on the files scored in both, with its 95 % interval (identity groups resampled
    together, so both AUCs see the same draw)."""
    both = clean[["path", "label", "group", "score"]].merge(cond[["path", "score"]], on="path", suffixes=("_c", "_p"))
    both = both.dropna(subset=["score_c", "score_p"])
    if both.empty:
        return None
    c, q = both["score_c"].to_numpy(float), both["score_p"].to_numpy(float)

    def drop(y, idx):
        i = idx.astype(int)
        a, b = metrics.auc(y, c[i]), metrics.auc(y, q[i])
        return None if a is None or b is None else a - b

    return metrics.bootstrap(drop, both["label"].to_numpy(int), np.arange(len(both), dtype=float),
                             both["group"].to_numpy(), n=n_boot, seed=seed, digits=4)


def summarise(scores: pd.DataFrame, det, perts: Sequence[str], levels: Sequence[int], n_boot: int = BOOTSTRAP,
              seed: int = 0) -> pd.DataFrame:
    """``RESULT_COLS`` rows: per perturbation (whose media has files) level 0 (clean) then every level."""
    s = scores.copy()
    ok = s["raw_score"].notna()
    s["score"] = np.nan
    if ok.any():
        s.loc[ok, "score"] = np.asarray(det.calibrate(s.loc[ok, "raw_score"].to_numpy(float)), float)
    thr = float(det.threshold)
    rows = []
    for p in perts:
        media = "video" if p in perturb.VIDEO_ONLY else "image"
        clean = s[(s["perturbation"] == CLEAN) & (s["media"] == media)]
        if clean.empty:
            continue
        clean_auc = None
        for lv in [0, *levels]:
            cond = clean if lv == 0 else s[(s["perturbation"] == p) & (s["level"] == lv)]
            sc = cond[cond["score"].notna()]
            y, sp, g = sc["label"].to_numpy(int), sc["score"].to_numpy(float), sc["group"].to_numpy()

            def point(yy, pp):
                return {"auc": metrics.auc(yy, pp), "detection_rate": metrics.detection_rate(yy, pp, thr),
                        "false_alarm_rate": metrics.false_alarm_rate(yy, pp, thr)}

            pm = point(y, sp) if len(sc) else {"auc": None, "detection_rate": None, "false_alarm_rate": None}
            ci = metrics.bootstrap(point, y, sp, g, n=n_boot, seed=seed, digits=4) if len(sc) else {}
            row = {"perturbation": p, "media": media, "level": lv,
                   "parameter": "clean (untouched)" if lv == 0 else perturb.describe(p, lv),
                   "n_files": len(sc), "n_real": int((y == 0).sum()), "n_fake": int((y == 1).sum()),
                   "n_groups": int(sc["group"].nunique()), "n_unscored": int(len(cond) - len(sc))}
            for k in ("auc", "detection_rate", "false_alarm_rate"):
                row[k], row[f"{k}_ci_lo"], row[f"{k}_ci_hi"] = _r(pm[k]), _ci(ci.get(k), 0), _ci(ci.get(k), 1)
            if lv == 0:
                clean_auc = pm["auc"]
                row.update(auc_drop=0.0 if clean_auc is not None else None, auc_drop_ci_lo=None, auc_drop_ci_hi=None)
            else:
                drop = None if clean_auc is None or pm["auc"] is None else clean_auc - pm["auc"]
                dci = _paired_drop(clean, cond, n_boot, seed)
                row.update(auc_drop=_r(drop), auc_drop_ci_lo=_ci(dci, 0), auc_drop_ci_hi=_ci(dci, 1))
            row["target"] = (("PASS" if row["auc_drop"] <= TARGETS[lv] else "MISS") if row["auc_drop"] is not None
                             else "n/a") if lv in TARGETS else ""
            rows.append(row)
    return pd.DataFrame(rows, columns=RESULT_COLS)


def target_report(table: pd.DataFrame) -> str:
    """The benchmark-style check, one line per perturbation and target level."""
    lines = [f"target: AUC drop <= {TARGETS[3]:.2f} at level 3 and <= {TARGETS[5]:.2f} at level 5"]
    for r in table[table["level"].isin(list(TARGETS))].itertuples():
        drop = "n/a" if pd.isna(r.auc_drop) else f"{r.auc_drop:+.4f}"
        lines.append(f"  {r.target or 'n/a':4s} {r.perturbation:20s} level {r.level} ({r.parameter}): AUC drop {drop} "
                     f"(limit {TARGETS[r.level]:.2f}; {r.n_files} {r.media} files)")
    return "\n".join(lines)


def format_table(table: pd.DataFrame) -> str:
    def ci(v, lo, hi):
        if pd.isna(v):
            return "n/a"
        return f"{v:.3f}" + ("" if pd.isna(lo) else f" [{lo:.3f}, {hi:.3f}]")

    t = pd.DataFrame({"perturbation": table["perturbation"], "level": table["level"], "n": table["n_files"],
                      "AUC [95% CI]": [ci(*x) for x in zip(table["auc"], table["auc_ci_lo"], table["auc_ci_hi"])],
                      "TPR": [ci(*x) for x in zip(table["detection_rate"], table["detection_rate_ci_lo"],
                                                  table["detection_rate_ci_hi"])],
                      "FPR": [ci(*x) for x in zip(table["false_alarm_rate"], table["false_alarm_rate_ci_lo"],
                                                  table["false_alarm_rate_ci_hi"])],
                      "AUC drop": table["auc_drop"]})
    return t.to_string(index=False)


# --------------------------------------------------------------------------- the command
def _atomic_json(obj, path: Path) -> None:
    from training.evaluate import _atomic_json as write

    write(obj, path)


def robustness_run(run: str | Path, perturbations: str | Sequence[str] | None = None, levels: str = "1-5",
                   datasets: Sequence[str] = (), max_files: int = 0, seed: int = 0, n_boot: int = BOOTSTRAP,
                   progress: bool = True) -> tuple[pd.DataFrame, str]:
    """Analyse, write ``RUN/evaluation/{robustness.csv, robustness_scores.csv, robustness.json}`` -> (table,
    printed summary). Perturbations, levels and the run folder are checked before the model is loaded,
    --datasets and --max-files against the run's index once it is read (PerturbError / ValueError /
    FileNotFoundError, one line)."""
    from training.evaluate import _atomic_csv, _load_run

    perts = parse_perturbations(perturbations)
    lv = perturb.parse_levels(levels)
    run = Path(run)
    if not (run / "config.json").is_file():
        raise FileNotFoundError(f"{run}: not a run folder (no config.json)")
    cfg, det, index = _load_run(run)
    files = choose_files(run, cfg, index, datasets, max_files, seed)
    notes = []
    for media, kinds in (("image", [p for p in perts if p not in perturb.VIDEO_ONLY]),
                         ("video", [p for p in perts if p in perturb.VIDEO_ONLY])):
        n = int((files["media"] == media).sum())
        if kinds and not n:
            notes.append(f"{', '.join(kinds)}: skipped, no {media} test files")
    n_vid = int((files["media"] == "video").sum())
    img_perts = [p for p in perts if p not in perturb.VIDEO_ONLY]
    if n_vid and img_perts:
        notes.append(f"{', '.join(img_perts)}: image files only ({n_vid} video files are measured under h264 only: "
                     "the engine has no per-frame perturbation hook)")
    scores = analyse(run, det, files, perts, lv, seed, progress)
    table = summarise(scores, det, perts, lv, n_boot, seed)
    out = run / "evaluation"
    _atomic_csv(table, out / RESULT_CSV)
    key = cache_key(run, det, seed)
    settings = {"cache_key": key, "model_key": key["model_key"],
                "perturbations": perts, "levels": lv, "datasets": sorted(files["dataset"].unique().tolist()),
                "max_files": max_files, "seed": seed, "bootstrap": f"{n_boot} resamples of identity groups, 95 % "
                "percentile intervals", "threshold": float(det.threshold),
                "calibration": det.calibration.to_dict(), "n_files": int(len(files)),
                "n_images": int((files["media"] == "image").sum()), "n_videos": n_vid, "notes": notes,
                "targets": {str(k): v for k, v in TARGETS.items()},
                "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    _atomic_json(settings, out / SETTINGS_JSON)
    text = "\n".join([format_table(table), *notes, target_report(table),
                      f"-> {out / RESULT_CSV} ({len(files)} test files: {settings['n_images']} images, {n_vid} videos)"])
    return table, text
