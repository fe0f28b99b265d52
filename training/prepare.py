"""Preprocessing: videos/images of an index -> face crops (the engine's own face extraction) + crop index.

Layout of an output folder::

    OUT/source_index.csv        the media index it was made from (with splits)
    OUT/items/<id>.json         one finished item (video/image): its crop records; written atomically last
    OUT/crops/<id>/f00012_0.png the crops (square, engine margin, ``size`` px, lossless PNG)
    OUT/crops.csv               all crop records (written atomically when every item is done)
    OUT/errors.csv              items that failed (corrupt video, no face), with the reason

Resumable: an item whose ``items/<id>.json`` exists is skipped, so a kill loses only the items in flight.
Columns of ``crops.csv``: crop, path, video, dataset, media, label, method, compression, group, split,
frame, face, confidence, kps (10 numbers: 5 keypoints x,y in crop pixels), age, gender, race.
"""
from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path

import pandas as pd

log = logging.getLogger(__name__)
CROP_COLUMNS = ["crop", "path", "video", "dataset", "media", "label", "method", "compression", "group", "split",
                "frame", "face", "confidence", "kps", "age", "gender", "race"]

_EXTRACTOR = None


def item_id(path: str) -> str:
    p = Path(path)
    return f"{p.parent.name}_{p.stem}_{hashlib.sha1(str(p).encode()).hexdigest()[:8]}"


def _init(size: int, margin: float, faces_per_frame: int):
    global _EXTRACTOR
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from model.faces import FaceExtractor

    _EXTRACTOR = FaceExtractor(crop_size=size, margin=margin, max_faces=faces_per_frame, min_confidence=0.9)


def _process(args) -> tuple[str, list[dict], str]:
    """Worker: one media item -> (item id, crop records, error)."""
    row, out_dir, frames = args
    import cv2

    from model import media, video

    iid = item_id(row["path"])
    try:
        if row["media"] == "video":
            _info, decoded = video.read_frames(row["path"], n=frames)
        else:
            decoded = [(0, media.load_image(row["path"]))]
        per = _EXTRACTOR.detect_batch([f for _, f in decoded])
    except media.MediaError as e:
        return iid, [], str(e)
    except Exception as e:  # noqa: BLE001 - a broken file must not stop a long preprocessing run
        return iid, [], f"{type(e).__name__}: {e}".splitlines()[0]
    crop_dir = Path(out_dir) / "crops" / iid
    crop_dir.mkdir(parents=True, exist_ok=True)
    recs = []
    for (idx, _), faces in zip(decoded, per):
        for k, f in enumerate(faces):
            x0, y0, x1, y1 = f.crop_box
            s = f.crop.shape[0] / max(x1 - x0, 1)
            kps = [round((v[0] - x0) * s, 2) if j == 0 else round((v[1] - y0) * s, 2)
                   for name in ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")
                   for v in [f.keypoints.get(name, (0.0, 0.0))] for j in (0, 1)]
            fn = crop_dir / f"f{idx:05d}_{k}.png"
            cv2.imwrite(str(fn), cv2.cvtColor(f.crop, cv2.COLOR_RGB2BGR))
            rec = {c: row.get(c, "") for c in ("path", "dataset", "media", "label", "method", "compression",
                                              "group", "split", "age", "gender", "race")}
            rec.update(crop=str(fn.relative_to(out_dir)), video=iid, frame=int(idx), face=k,
                       confidence=round(float(f.confidence), 4), kps=json.dumps(kps))
            recs.append(rec)
    if not recs:
        return iid, [], "no face found"
    return iid, recs, ""


def prepare(index: pd.DataFrame, out_dir: str | Path, size: int = 128, margin: float = 0.3, frames: int = 16,
            faces_per_frame: int = 1, workers: int = 1, progress: bool = True) -> pd.DataFrame:
    """Extract crops for every row of ``index`` into ``out_dir``; returns the crop table."""
    out = Path(out_dir)
    (out / "items").mkdir(parents=True, exist_ok=True)
    meta = {"size": size, "margin": margin, "frames": frames, "faces_per_frame": faces_per_frame}
    mf = out / "prepare.json"
    if mf.is_file():
        old = json.loads(mf.read_text())
        if old != meta:
            raise ValueError(f"{out} was prepared with {old}; use another folder for {meta}")
    else:
        mf.write_text(json.dumps(meta, indent=2))
    index.to_csv(out / "source_index.csv", index=False)
    rows = index.to_dict("records")
    todo = [r for r in rows if not (out / "items" / f"{item_id(r['path'])}.json").is_file()]
    errors_f = out / "errors.csv"
    errors = pd.read_csv(errors_f).to_dict("records") if errors_f.is_file() else []
    done_err = {e["video"] for e in errors}
    todo = [r for r in todo if item_id(r["path"]) not in done_err]
    t0 = time.time()
    n = len(todo)
    if progress:
        print(f"prepare: {len(rows) - n} of {len(rows)} items already done, {n} to go", file=sys.stderr)
    jobs = [(r, str(out), frames) for r in todo]
    if workers > 1 and n > 1:
        ctx = mp.get_context("spawn")
        pool = ctx.Pool(workers, initializer=_init, initargs=(size, margin, faces_per_frame))
        it = pool.imap_unordered(_process, jobs)
    else:
        _init(size, margin, faces_per_frame)
        pool, it = None, map(_process, jobs)
    try:
        for i, (iid, recs, err) in enumerate(it, 1):
            if err:
                log.warning("skipped %s: %s", iid, err)
                errors.append({"video": iid, "error": err})
                pd.DataFrame(errors).to_csv(errors_f.with_suffix(".tmp"), index=False)
                os.replace(errors_f.with_suffix(".tmp"), errors_f)
            else:
                tmp = out / "items" / f"{iid}.json.tmp"
                tmp.write_text(json.dumps(recs))
                os.replace(tmp, out / "items" / f"{iid}.json")
            if progress and (i % 10 == 0 or i == n):
                el = time.time() - t0
                print(f"prepare: {i}/{n} items, {el:.0f}s elapsed, ETA {el / i * (n - i):.0f}s", file=sys.stderr, flush=True)
    finally:
        if pool is not None:
            pool.close()
            pool.join()
    return collect(out)


def collect(out_dir: str | Path) -> pd.DataFrame:
    """Merge finished items into ``crops.csv`` (atomic write)."""
    out = Path(out_dir)
    recs = []
    for f in sorted((out / "items").glob("*.json")):
        recs.extend(json.loads(f.read_text()))
    df = pd.DataFrame(recs, columns=CROP_COLUMNS)
    tmp = out / "crops.csv.tmp"
    df.to_csv(tmp, index=False)
    os.replace(tmp, out / "crops.csv")
    return df


def load_crops(out_dir: str | Path) -> pd.DataFrame:
    f = Path(out_dir) / "crops.csv"
    if not f.is_file():
        raise FileNotFoundError(f"{f} not found: run `python -m training prepare` first")
    df = pd.read_csv(f, keep_default_na=False, dtype={"split": str, "compression": str})
    df["root"] = str(Path(out_dir).resolve())
    meta = Path(out_dir) / "prepare.json"
    df["crop_size"] = int(json.loads(meta.read_text())["size"]) if meta.is_file() else 0
    return df
