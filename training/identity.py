"""Face-identity groups for datasets whose people recur across files (DFDC: about a thousand paid actors).

Splits must keep a person out of two splits, but DFDC names no actor. We group real items by face:

* **Embedding**: dlib's 128-d face-recognition ResNet (``face_recognition_models`` 0.3.0 weights, run by the
  ``dlib-bin`` wheel; both install offline from PyPI, no hub). dlib documents two faces of one person as closer than
  0.6 (99.38 % pair accuracy on LFW). The face is aligned with dlib's 5-point landmark model (the 68-point model,
  non-commercial, is not used). Crops that dlib's HOG detector misses are taken as tight face crops (the whole
  image is the face box), which is how the DFDC export is cut.
* **Clustering**: Chinese-whispers graph clustering (``dlib.chinese_whispers_clustering``) of the REAL items at
  ``threshold``; a fake joins the cluster of its original (same scene). The face swapped into a fake belongs to
  another actor: where it is within ``threshold`` of a real cluster, that cluster is added to the fake's ``ids`` so
  the splitter excludes the fake if that person lands in another split.
* **Checks** (``report``): clusters and their size distribution, every fake in its original's group, and a
  nearest-neighbour leak check: for each validation/test real face, the distance to the nearest training real face,
  against the same-person threshold.

    python -m training identity dfdc_faces=../shared/data/dfdc_faces --out data/index/dfdc_faces.csv
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

SAME_PERSON = 0.6  # dlib's documented threshold for "same person"
DEFAULT_THRESHOLD = 0.5  # clustering edge threshold (dlib's face-clustering example)


class IdentityError(RuntimeError):
    pass


def _models():
    try:
        import dlib
        import face_recognition_models as frm
    except ImportError as e:
        raise IdentityError(f"face-identity grouping needs dlib-bin and face-recognition-models "
                            f"(pip install -r requirements-dev.txt): {e}") from None
    return (dlib, dlib.get_frontal_face_detector(),
            dlib.shape_predictor(frm.pose_predictor_five_point_model_location()),
            dlib.face_recognition_model_v1(frm.face_recognition_model_location()))


def embed_images(paths: list[str], progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(N, 128) float32 embeddings and an (N,) array saying how the face was found: 1 HOG detector, 0 whole
    image taken as the face box, -1 unreadable (embedding NaN)."""
    import cv2

    dlib, det, sp, rec = _models()
    out = np.full((len(paths), 128), np.nan, np.float32)
    how = np.full(len(paths), -1, np.int8)
    t0 = time.time()
    for i, p in enumerate(paths):
        bgr = cv2.imread(str(p), cv2.IMREAD_COLOR)
        if bgr is None:
            continue
        img = np.ascontiguousarray(bgr[:, :, ::-1])
        h, w = img.shape[:2]
        found = det(img, 0)
        if len(found):
            r = max(found, key=lambda b: b.width() * b.height())
            how[i] = 1
        else:  # a tight crop: the face fills the image
            m = int(0.08 * min(h, w))
            r = dlib.rectangle(m, m, w - 1 - m, h - 1 - m)
            how[i] = 0
        out[i] = np.asarray(rec.compute_face_descriptor(img, sp(img, r)), np.float32)
        if progress and (i + 1) % 500 == 0:
            el = time.time() - t0
            print(f"identity: embedded {i + 1}/{len(paths)} ({el:.0f}s, ETA {el / (i + 1) * (len(paths) - i - 1):.0f}s)",
                  file=sys.stderr, flush=True)
    return out, how


def cluster(emb: np.ndarray, threshold: float = DEFAULT_THRESHOLD) -> np.ndarray:
    """Chinese-whispers cluster labels (N,) of embeddings at ``threshold`` (Euclidean)."""
    import dlib

    if len(emb) == 0:
        return np.zeros(0, int)
    vecs = [dlib.vector(e.astype(float).tolist()) for e in emb]
    return np.asarray(dlib.chinese_whispers_clustering(vecs, float(threshold)), int)


def nearest(a: np.ndarray, b: np.ndarray, chunk: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """For each row of ``a``: distance to and index of its nearest row of ``b``."""
    d_out = np.empty(len(a), np.float32)
    i_out = np.empty(len(a), int)
    bb = (b.astype(np.float32) ** 2).sum(1)
    for s in range(0, len(a), chunk):
        x = a[s:s + chunk].astype(np.float32)
        d2 = (x ** 2).sum(1)[:, None] + bb[None, :] - 2 * x @ b.T.astype(np.float32)
        j = d2.argmin(1)
        i_out[s:s + chunk] = j
        d_out[s:s + chunk] = np.sqrt(np.maximum(d2[np.arange(len(x)), j], 0))
    return d_out, i_out


def attach_groups(index: pd.DataFrame, emb: np.ndarray, threshold: float = DEFAULT_THRESHOLD,
                  prefix: str = "dfdc:id") -> pd.DataFrame:
    """Index with ``group`` = the identity cluster of each real item / of a fake's original, and ``ids`` = the
    group plus, for a fake, the cluster of the real face nearest to its (swapped-in) face when within ``threshold``.
    Rows whose embedding failed keep a group of their own (real) or their original's group (fake)."""
    df = index.reset_index(drop=True).copy()
    ok = ~np.isnan(emb).any(1)
    real = (df["label"].to_numpy() == 0) & ok
    labels = np.full(len(df), -1)
    labels[real] = cluster(emb[real], threshold)
    group_of_path = {}
    for i in np.flatnonzero(df["label"].to_numpy() == 0):
        group_of_path[df.at[i, "path"]] = f"{prefix}{labels[i]}" if labels[i] >= 0 else df.at[i, "group"]
    groups, ids = [], []
    ridx = np.flatnonzero(real)
    fake_rows = np.flatnonzero((df["label"].to_numpy() == 1) & ok)
    near_d, near_i = (nearest(emb[fake_rows], emb[ridx]) if len(fake_rows) and len(ridx)
                      else (np.zeros(0), np.zeros(0, int)))
    swapped = {r: (d, ridx[j]) for r, d, j in zip(fake_rows, near_d, near_i)}
    for i, r in df.iterrows():
        if r["label"] == 0:
            g = group_of_path[r["path"]]
            groups.append(g)
            ids.append(g)
            continue
        g = group_of_path.get(r["original"], r["group"])
        extra = []
        if i in swapped and swapped[i][0] < threshold:
            other = group_of_path[df.at[swapped[i][1], "path"]]
            if other != g:
                extra.append(other)
        groups.append(g)
        ids.append(" ".join([g] + extra))
    df["group"], df["ids"] = groups, ids
    return df


def report(df: pd.DataFrame, emb: np.ndarray, how: np.ndarray | None = None) -> dict:
    """Checks of a grouping (``df`` with ``group``, ``label``, ``original`` and, optionally, ``split``)."""
    real = df["label"].to_numpy() == 0
    sizes = df[real].groupby("group").size()
    path_group = dict(zip(df.loc[real, "path"], df.loc[real, "group"]))
    fakes = df[~real]
    with_orig = fakes[fakes["original"].isin(path_group)]
    pairs_together = int((with_orig["group"] == with_orig["original"].map(path_group)).sum())
    out = {
        "items": int(len(df)), "real_items": int(real.sum()),
        "clusters": int(len(sizes)),
        "cluster_size": {k: float(v) for k, v in sizes.describe(percentiles=[.5, .9, .99]).items()},
        "singletons": int((sizes == 1).sum()),
        "largest_clusters": [int(v) for v in sizes.sort_values(ascending=False).head(5)],
        "fakes": int(len(fakes)), "fakes_with_original": int(len(with_orig)),
        "fakes_with_original_in_its_group": pairs_together,
        "fakes_with_a_second_identity": int((fakes["ids"].str.count(" ") > 0).sum()),
        "same_person_threshold": SAME_PERSON,
    }
    if how is not None:
        out["faces_found_by_hog"] = int((how == 1).sum())
        out["faces_taken_as_whole_crop"] = int((how == 0).sum())
        out["unreadable"] = int((how == -1).sum())
    if "split" in df and (df["split"] == "train").any():
        ok = ~np.isnan(emb).any(1)
        tr = np.flatnonzero(real & ok & (df["split"].to_numpy() == "train"))
        leak = {}
        for s in ("val", "test"):
            q = np.flatnonzero(real & ok & (df["split"].to_numpy() == s))
            if not len(q) or not len(tr):
                continue
            d, _ = nearest(emb[q], emb[tr])
            # the same check inside the split (nearest OTHER item of the same split), for scale
            dd = []
            for k, i in enumerate(q):
                rest = np.delete(q, k)
                if len(rest):
                    dd.append(float(np.sqrt(((emb[rest] - emb[i]) ** 2).sum(1)).min()))
            leak[s] = {"n": int(len(q)),
                       "nearest_train_distance_p1_p5_p50": [round(float(np.percentile(d, p)), 3) for p in (1, 5, 50)],
                       "share_nearest_train_below_0.4": round(float((d < 0.4).mean()), 4),
                       "share_nearest_train_below_0.5": round(float((d < 0.5).mean()), 4),
                       "share_nearest_train_below_0.6": round(float((d < SAME_PERSON).mean()), 4),
                       "share_nearest_same_split_below_0.5": round(float((np.asarray(dd) < 0.5).mean()), 4) if dd else None}
        out["leak_check"] = leak
    return out


def build(kind: str, root: str, out: str | Path, threshold: float = DEFAULT_THRESHOLD, seed: int = 0,
          fakes: bool = False) -> dict:
    """Index ``root``, embed the real items (and the fakes with ``fakes``; cached in ``<out>.embeddings.npz``),
    attach identity groups, write the index CSV to ``out`` and the checks (with a leak check on a seeded split at
    the default fractions) beside it as ``<out>.identity.json``."""
    from training import datasets

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    idx = datasets.index_dataset(kind, root)
    cache = out.with_suffix(".embeddings.npz")
    if cache.is_file():
        z = np.load(cache, allow_pickle=False)
        if list(z["paths"]) == list(idx["path"]):
            emb, how = z["emb"], z["how"]
        else:
            emb = None
    else:
        emb = None
    if emb is None:
        todo = np.flatnonzero((idx["label"].to_numpy() == 0) | fakes)
        emb = np.full((len(idx), 128), np.nan, np.float32)
        how = np.full(len(idx), -1, np.int8)
        emb[todo], how[todo] = embed_images(list(idx["path"].iloc[todo]))
        np.savez(cache, emb=emb, how=how, paths=np.asarray(idx["path"], dtype=str))
    df = attach_groups(idx, emb, threshold)
    tmp = out.with_suffix(".csv.tmp")
    df.to_csv(tmp, index=False)
    tmp.replace(out)
    split = datasets.assign_splits(df, seed=seed)
    rep = report(split, emb, how[idx["label"].to_numpy() == 0] if not fakes else how)
    rep["threshold"] = threshold
    rep["split_items"] = split["split"].value_counts().to_dict()
    out.with_suffix(".identity.json").write_text(json.dumps(rep, indent=2))
    return rep
