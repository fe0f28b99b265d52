"""Preprocessing: videos/images of an index -> face crops cut by the engine's face-crop contract.

Faces are found and cut by ``model.crops`` (the same functions inference uses) with the ``CropSpec`` given
(frames per video, detector scale, margin, size, faces per frame), so a training crop and the engine's crop of
the same face are the same image. EVERY face track is kept, not only the surest face.

Labels per track: a real file's tracks are real. For a fake video whose original is in the dataset (FF++: the
target id's video at the same compression; DFDC: ``original`` in metadata.json), each face is compared with the
original's pixels at the same place of the same frame: a track is fake where it differs from the original (the
median over its frames of the mean absolute difference of the face box, 32x32 grey, exceeds ``DIFF_FAKE``),
otherwise real (an untouched bystander). Without an original, every track of a fake is fake.

Layout of an output folder::

    OUT/prepare.json            {"crop_spec": {...}, "version": 2}: a folder holds one contract only
    OUT/source_index.csv        the media index it was made from (no splits: they are computed at training time)
    OUT/items/<id>.json         one finished item (video/image): its crop records; written atomically last
    OUT/crops/<id>/f00012_0.png the crops (lossless PNG, spec.size px)
    OUT/crops.csv               all crop records (written atomically when every item is done)
    OUT/errors.csv              items that failed (corrupt video, no face), with the reason

Resumable: an item whose ``items/<id>.json`` exists is skipped, so a kill loses only the items in flight.
Columns of ``crops.csv``: see ``CROP_COLUMNS``; ``label`` is the track's label, ``file_label`` the file's,
``diff`` the difference from the original (-1 without one), ``x, y, w, h`` the face box in the decoded frame.
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

import numpy as np
import pandas as pd

from model.crops import CropSpec

log = logging.getLogger(__name__)
CROP_COLUMNS = ["crop", "path", "video", "dataset", "media", "label", "file_label", "method", "compression", "group",
                "ids", "frame", "face", "track", "confidence", "kps", "diff", "x", "y", "w", "h", "age", "gender", "race"]
ROW_KEYS = ("path", "dataset", "media", "method", "compression", "group", "ids", "age", "gender", "race")
PREPARE_VERSION = 2
# grey levels (0-255). Measured on ffpp_mini (median over 6 frames, face box vs the same box in the original):
# manipulated faces differ by 3.4 (NeuralTextures c40) to 14.9 (FaceSwap c40); untouched background boxes of
# the same frames by 0.0-2.2.
DIFF_FAKE = 2.5

_SPEC: CropSpec | None = None


def item_id(path: str) -> str:
    p = Path(path)
    return f"{p.parent.name}_{p.stem}_{hashlib.sha1(str(p).encode()).hexdigest()[:8]}"


def _init(spec_dict: dict):
    global _SPEC
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    _SPEC = CropSpec.from_dict(spec_dict)


def face_difference(fake: np.ndarray, original: np.ndarray, box) -> float:
    """Mean absolute grey difference (0-255) of a face box between a fake frame and its original frame."""
    import cv2

    x, y, w, h = (int(v) for v in box)
    H, W = fake.shape[:2]
    if original.shape[:2] != (H, W):
        original = cv2.resize(original, (W, H), interpolation=cv2.INTER_AREA)
    x0, y0, x1, y1 = max(0, x), max(0, y), min(W, x + w), min(H, y + h)
    if x1 - x0 < 4 or y1 - y0 < 4:
        return -1.0
    a = cv2.cvtColor(fake[y0:y1, x0:x1], cv2.COLOR_RGB2GRAY)
    b = cv2.cvtColor(original[y0:y1, x0:x1], cv2.COLOR_RGB2GRAY)
    a = cv2.resize(a, (32, 32), interpolation=cv2.INTER_AREA).astype(np.float32)
    b = cv2.resize(b, (32, 32), interpolation=cv2.INTER_AREA).astype(np.float32)
    return float(np.mean(np.abs(a - b)))


def _kps_in_crop(f) -> list[float]:
    x0, y0, x1, y1 = f.crop_box
    s = f.crop.shape[0] / max(x1 - x0, 1)
    return [round((v[0] - x0) * s, 2) if j == 0 else round((v[1] - y0) * s, 2)
            for name in ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")
            for v in [f.keypoints.get(name, (0.0, 0.0))] for j in (0, 1)]


def extract_item(row: dict, spec: CropSpec) -> tuple[list[tuple[int, int, int, object]], dict[int, float], str]:
    """One media item -> ([(frame, face index, track, Face)], {track: median diff from original}, error)."""
    from model import media, video
    from model.crops import image_faces, video_faces

    if row["media"] == "video":
        vf = video_faces(row["path"], spec)
        faces = [(idx, k, tid, f) for (idx, _), fs, tids in zip(vf.frames, vf.faces, vf.tracks)
                 for k, (f, tid) in enumerate(zip(fs, tids))]
        diffs: dict[int, list[float]] = {}
        orig = str(row.get("original") or "")
        if faces and int(row["label"]) == 1 and orig and Path(orig).is_file():
            try:
                _, odec = video.read_frames(orig, indices=[i for i, _ in vf.frames], max_side=spec.decode_max_side,
                                            max_duration_s=None)
                ofr = dict(odec)
                frame_of = dict(vf.frames)
                for idx, _, tid, f in faces:
                    if idx in ofr:
                        d = face_difference(frame_of[idx], ofr[idx], f.box)
                        if d >= 0:
                            diffs.setdefault(tid, []).append(d)
            except media.MediaError as e:
                log.warning("original %s unreadable (%s): all tracks of %s labelled fake", orig, e, row["path"])
        return faces, {t: float(np.median(v)) for t, v in diffs.items()}, ""
    img = media.load_image(row["path"])
    return [(0, k, k, f) for k, f in enumerate(image_faces(img, spec))], {}, ""


def crop_records(row: dict, iid: str, faces, diffs: dict[int, float]) -> list[tuple[dict, object]]:
    """(crop record, Face) per face of one item: the track label against the original, keypoints in crop pixels.
    ``crop`` is the crop's file name (``f00012_0.png``); the writer (PNG folder or shard) replaces it."""
    file_label = int(row["label"])
    out = []
    for idx, k, tid, f in faces:
        d = diffs.get(tid, -1.0)
        label = file_label if (file_label == 0 or tid not in diffs) else int(d > DIFF_FAKE)
        rec = {c: row.get(c, "") for c in ROW_KEYS}
        rec.update(crop=f"f{idx:05d}_{k}.png", video=iid, frame=int(idx), face=int(k), track=int(tid),
                   label=label, file_label=file_label, confidence=round(float(f.confidence), 4),
                   kps=json.dumps(_kps_in_crop(f)), diff=round(d, 3),
                   x=int(f.box[0]), y=int(f.box[1]), w=int(f.box[2]), h=int(f.box[3]))
        out.append((rec, f))
    return out


def _process(args) -> tuple[str, list[dict], str]:
    """Worker: one media item -> (item id, crop records, error)."""
    row, out_dir = args
    import cv2

    from model import media

    iid = item_id(row["path"])
    try:
        faces, diffs, _ = extract_item(row, _SPEC)
    except media.MediaError as e:
        return iid, [], str(e)
    except Exception as e:  # noqa: BLE001 - a broken file must not stop a long preprocessing run
        return iid, [], f"{type(e).__name__}: {e}".splitlines()[0]
    if not faces:
        return iid, [], "no face found"
    crop_dir = Path(out_dir) / "crops" / iid
    crop_dir.mkdir(parents=True, exist_ok=True)
    recs = []
    for rec, f in crop_records(row, iid, faces, diffs):
        fn = crop_dir / rec["crop"]
        cv2.imwrite(str(fn), cv2.cvtColor(f.crop, cv2.COLOR_RGB2BGR))
        rec["crop"] = str(fn.relative_to(out_dir))
        recs.append(rec)
    return iid, recs, ""


def prepare(index: pd.DataFrame, out_dir: str | Path, spec: CropSpec | None = None, workers: int = 1,
            progress: bool = True) -> pd.DataFrame:
    """Extract crops for every row of ``index`` into ``out_dir`` under the crop contract ``spec``."""
    spec = spec or CropSpec()
    out = Path(out_dir)
    (out / "items").mkdir(parents=True, exist_ok=True)
    meta = {"crop_spec": spec.to_dict(), "version": PREPARE_VERSION}
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
    done_err = set(pd.read_csv(errors_f)["video"]) if errors_f.is_file() and errors_f.stat().st_size else set()
    todo = [r for r in todo if item_id(r["path"]) not in done_err]
    t0 = time.time()
    n = len(todo)
    if progress:
        print(f"prepare: {len(rows) - n} of {len(rows)} items already done, {n} to go", file=sys.stderr)
    jobs = [(r, str(out)) for r in todo]
    if workers > 1 and n > 1:
        ctx = mp.get_context("spawn")
        pool = ctx.Pool(workers, initializer=_init, initargs=(spec.to_dict(),))
        it = pool.imap_unordered(_process, jobs)
    else:
        _init(spec.to_dict())
        pool, it = None, map(_process, jobs)
    new_err = not errors_f.is_file()
    try:
        with open(errors_f, "a", newline="") as ef:  # appended once per failed item (no rewrite)
            if new_err:
                ef.write("video,error\n")
            for i, (iid, recs, err) in enumerate(it, 1):
                if err:
                    log.warning("skipped %s: %s", iid, err)
                    ef.write(f"{iid},{json.dumps(err)}\n")
                    ef.flush()
                else:
                    tmp = out / "items" / f"{iid}.json.tmp"
                    tmp.write_text(json.dumps(recs))
                    os.replace(tmp, out / "items" / f"{iid}.json")
                if progress and (i % 10 == 0 or i == n):
                    el = time.time() - t0
                    print(f"prepare: {i}/{n} items, {el:.0f}s elapsed, ETA {el / i * (n - i):.0f}s", file=sys.stderr,
                          flush=True)
    finally:
        if pool is not None:
            pool.close()
            pool.join()
    return collect(out, index)


def collect(out_dir: str | Path, index: pd.DataFrame | None = None) -> pd.DataFrame:
    """Merge finished items into ``crops.csv`` (atomic write). With ``index``, each crop's ``group`` and ``ids``
    are taken from it: preparing again with a re-grouped index (e.g. identity clusters from ``python -m training
    identity``) re-groups the crops without cutting them again."""
    out = Path(out_dir)
    recs = []
    for f in sorted((out / "items").glob("*.json")):
        recs.extend(json.loads(f.read_text()))
    df = pd.DataFrame(recs, columns=CROP_COLUMNS)
    if index is not None and len(df):
        for col in ("group", "ids"):
            if col in index:
                new = df["path"].map(dict(zip(index["path"], index[col].astype(str))))
                df[col] = new.where(new.notna(), df[col])
    tmp = out / "crops.csv.tmp"
    df.to_csv(tmp, index=False)
    os.replace(tmp, out / "crops.csv")
    return df


def prepared_spec(out_dir: str | Path) -> CropSpec:
    meta = Path(out_dir) / "prepare.json"
    if not meta.is_file():
        raise FileNotFoundError(f"{meta} not found: run `python -m training prepare` first")
    d = json.loads(meta.read_text())
    if "crop_spec" not in d:
        raise ValueError(f"{out_dir} was prepared by an older version (no crop contract): prepare it again")
    return CropSpec.from_dict(d["crop_spec"])


def load_crops(out_dir: str | Path) -> pd.DataFrame:
    f = Path(out_dir) / "crops.csv"
    if not f.is_file():
        raise FileNotFoundError(f"{f} not found: run `python -m training prepare` first")
    df = pd.read_csv(f, keep_default_na=False, dtype={"compression": str, "group": str, "ids": str})
    df["root"] = str(Path(out_dir).resolve())
    df["crop_size"] = prepared_spec(out_dir).size
    return df


def load_source_index(out_dir: str | Path) -> pd.DataFrame:
    f = Path(out_dir) / "source_index.csv"
    if not f.is_file():
        raise FileNotFoundError(f"{f} not found: run `python -m training prepare` first")
    return pd.read_csv(f, keep_default_na=False, dtype={"compression": str, "group": str, "ids": str, "split": str})
