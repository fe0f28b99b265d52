"""Dataset indexers: each public dataset's own layout -> one table.

Kinds (``INDEXERS``, ``python -m training index KIND ROOT``): ``ffpp`` and ``dfd`` (the FaceForensics++
layout: its ``actors`` / ``DeepFakeDetection`` part is Google's DFD, which ``dfd`` keeps alone), ``celebdf``,
``dfdc`` (the training parts' videos and ``metadata.json``), ``dfdc_faces`` (DFDC exported as one face crop per
video: ``real/``, ``fake/`` and ``metadata.csv``; indexed as dataset ``dfdc``, media image), ``timit``, ``folder``
(``real/`` and ``fake/`` sub-folders), ``utkface`` and ``lfw`` (real-only photo sets, ``PHOTO_SETS``).

Columns of every index (a pandas DataFrame, stored as CSV):

    path         absolute path of the video or image
    dataset      ffpp | dfd | celebdf | dfdc | timit | folder | utkface | lfw
    media        video | image
    label        0 real, 1 fake
    method       manipulation method ("real" for originals)
    compression  c0/c23/c40 (FF++), hq/lq (TIMIT), "" when unknown
    group        identity group: the unit that splits assign (FF++: every video sharing a person, as target or
                 source; Google DFD and Celeb-DF: the target actor; DFDC: the ``dfdc_train_part_N`` folder, a
                 cluster from ``clusters.csv``, or -- for ``dfdc_faces`` -- the original video; the face-identity
                 clusters come from ``python -m training identity``, which writes an index CSV whose groups are
                 clusters of dlib face embeddings (give that CSV to ``prepare``); photo sets: the person or the file)
    ids          space-separated identities the item shows (target and source of a swap): an item whose
                 identities fall in different splits is excluded, so no person is in two splits
    original     for a fake: the path of its original video when the dataset has it (FF++ target, DFD scene,
                 DFDC ``original``), else ""
    split        the dataset's OFFICIAL split (FF++ splits/*.json, Celeb-DF test list) or "" -- the rest is
                 assigned at training time by ``assign_splits``
    age, gender, race   only for face-attribute datasets (UTKFace); -1 when unknown

Missing optional parts (metadata files, split files) are logged and skipped; a layout with no media at all
raises :class:`DatasetError`.
"""
from __future__ import annotations

import hashlib
import json
import logging
import re
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import pandas as pd

from model.media import IMAGE_EXTS, VIDEO_EXTS

log = logging.getLogger(__name__)
COLUMNS = ["path", "dataset", "media", "label", "method", "compression", "group", "ids", "original", "split",
           "age", "gender", "race"]
FFPP_METHODS = ("Deepfakes", "Face2Face", "FaceSwap", "NeuralTextures", "FaceShifter", "DeepFakeDetection")


class DatasetError(ValueError):
    pass


class _UnionFind:
    def __init__(self):
        self.p: dict[str, str] = {}

    def find(self, a: str) -> str:
        self.p.setdefault(a, a)
        while self.p[a] != a:
            self.p[a] = self.p[self.p[a]]
            a = self.p[a]
        return a

    def union(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.p[max(ra, rb)] = min(ra, rb)


def _files(folder: Path, exts: set[str]) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in exts)


def _frame(rows: list[dict], what: str) -> pd.DataFrame:
    if not rows:
        raise DatasetError(f"{what}: no videos or images found")
    df = pd.DataFrame(rows)
    for c in COLUMNS:
        if c not in df:
            df[c] = -1 if c in ("age", "gender", "race") else ""
    for c in ("ids", "original", "split", "compression", "method"):
        df[c] = df[c].fillna("")
    empty_ids = df["ids"] == ""
    df.loc[empty_ids, "ids"] = df.loc[empty_ids, "group"]
    return df[COLUMNS].sort_values("path").reset_index(drop=True)


def _groups(rows: list[dict], ids_of: Callable[[dict], Iterable[str]]) -> None:
    """Fill ``group`` as the connected component of the identities each row involves."""
    uf = _UnionFind()
    for r in rows:
        ids = list(ids_of(r))
        for i in ids[1:]:
            uf.union(ids[0], i)
    for r in rows:
        r["group"] = uf.find(next(iter(ids_of(r))))


# --------------------------------------------------------------------------- FaceForensics++ and Google DFD
def index_ffpp(root: str | Path) -> pd.DataFrame:
    """FF++ layout (``original_sequences/{youtube,actors}/<c>/videos``, ``manipulated_sequences/<m>/<c>/videos``).

    Fakes are ``target_source.mp4`` (DFD fakes: ``01_02__scene__ID.mp4``). ``actors`` and
    ``DeepFakeDetection`` form the Google DFD dataset. Official ``splits/{train,val,test}.json`` are used
    when present (lists of [target, source] pairs).
    """
    root = Path(root)
    rows = []
    for src in ("youtube", "actors"):
        base = root / "original_sequences" / src
        if not base.is_dir():
            continue
        for cdir in sorted(base.iterdir()):
            for f in _files(cdir / "videos", VIDEO_EXTS):
                ids = [("dfd:" + f.stem.split("__")[0]) if src == "actors" else ("ffpp:" + f.stem)]
                rows.append(dict(path=str(f.resolve()), dataset="dfd" if src == "actors" else "ffpp", media="video",
                                 label=0, method="real", compression=cdir.name, _ids=ids, _vid=f.stem))
    mbase = root / "manipulated_sequences"
    if mbase.is_dir():
        for mdir in sorted(mbase.iterdir()):
            if not mdir.is_dir():
                continue
            for cdir in sorted(mdir.iterdir()):
                for f in _files(cdir / "videos", VIDEO_EXTS):
                    if mdir.name == "DeepFakeDetection":
                        pair = f.stem.split("__")[0].split("_")
                        ids, ds = ["dfd:" + p for p in pair], "dfd"
                    else:
                        pair = f.stem.split("_")
                        ids, ds = ["ffpp:" + p for p in pair], "ffpp"
                    rows.append(dict(path=str(f.resolve()), dataset=ds, media="video", label=1, method=mdir.name,
                                     compression=cdir.name, _ids=ids, _vid=f.stem))
    youtube = [r for r in rows if r["dataset"] == "ffpp"]
    _groups(youtube, lambda r: r["_ids"])
    # Google DFD: the group is the target actor (a closed cast of 28 actors would collapse into one component)
    reals = {}
    for r in rows:
        if r["label"] == 0:
            reals.setdefault((r["dataset"], r["_vid"], r["compression"]), r["path"])
    for r in rows:
        r["ids"] = " ".join(dict.fromkeys(r["_ids"]))
        if r["dataset"] == "dfd":
            r["group"] = r["_ids"][0]
        if r["label"] == 1:  # the original: FF++ target video / DFD actor's same scene, same compression first
            if r["dataset"] == "ffpp":
                key = r["_vid"].split("_")[0]
            else:
                bits = r["_vid"].split("__")
                key = f"{bits[0].split('_')[0]}__{bits[1]}" if len(bits) >= 2 else ""
            cands = [reals.get((r["dataset"], key, r["compression"]))] + [
                v for (d, k, _c), v in sorted(reals.items()) if d == r["dataset"] and k == key]
            r["original"] = next((c for c in cands if c), "")
    # official splits
    sdir = root / "splits"
    split_of: dict[str, str] = {}
    if sdir.is_dir():
        for name in ("train", "val", "test"):
            sf = sdir / f"{name}.json"
            if not sf.is_file():
                log.warning("FF++ split file missing: %s", sf)
                continue
            for pair in json.loads(sf.read_text()):
                for p in pair:
                    split_of["ffpp:" + str(p)] = name
    for r in rows:
        r["split"] = next((split_of[i] for i in r["_ids"] if i in split_of), "") if r["dataset"] == "ffpp" else ""
        r["group"] = r["group"]
    for r in rows:
        del r["_ids"], r["_vid"]
    return _frame(rows, f"FaceForensics++ at {root}")


# --------------------------------------------------------------------------- Celeb-DF
def index_celebdf(root: str | Path) -> pd.DataFrame:
    """Celeb-DF v1/v2: ``Celeb-real/idX_NNNN``, ``YouTube-real/NNNNN``, ``Celeb-synthesis/idX_idY_NNNN`` and
    ``List_of_testing_videos.txt`` (lines ``<1 real|0 fake> <folder/file>``); listed videos are test."""
    root = Path(root)
    rows = []
    for folder, label, method in (("Celeb-real", 0, "real"), ("YouTube-real", 0, "real"), ("Celeb-synthesis", 1, "celebdf_synthesis")):
        for f in _files(root / folder, VIDEO_EXTS):
            parts = f.stem.split("_")
            if folder == "Celeb-real":
                ids = ["celeb:" + parts[0]]
            elif folder == "YouTube-real":
                ids = ["yt:" + f.stem]
            else:
                ids = ["celeb:" + parts[0], "celeb:" + parts[1]] if len(parts) >= 3 else ["celeb:" + parts[0]]
            rows.append(dict(path=str(f.resolve()), dataset="celebdf", media="video", label=label, method=method,
                             compression="", _ids=ids, _rel=f"{folder}/{f.name}", group=ids[0], ids=" ".join(ids)))
    # group = the target identity; the source face is in ``ids`` (59 celebrities swapped among themselves would
    # otherwise be one component). Identities of the official test videos never appear in training.
    reals = {(r["_ids"][0], r["_rel"].rsplit("_", 1)[-1]): r["path"] for r in rows if r["label"] == 0}
    for r in rows:
        if r["label"] == 1:
            r["original"] = reals.get((r["_ids"][0], r["_rel"].rsplit("_", 1)[-1]), "")
    test_list = root / "List_of_testing_videos.txt"
    tests: set[str] = set()
    if test_list.is_file():
        for line in test_list.read_text().splitlines():
            bits = line.split()
            if len(bits) == 2:
                tests.add(bits[1])
    else:
        log.warning("Celeb-DF: %s missing; no official split", test_list)
    for r in rows:
        r["split"] = "test" if r["_rel"] in tests else ""
        del r["_ids"], r["_rel"]
    return _frame(rows, f"Celeb-DF at {root}")


# --------------------------------------------------------------------------- DFDC
def index_dfdc(root: str | Path) -> pd.DataFrame:
    """DFDC training parts: ``dfdc_train_part_*/metadata.json`` maps file -> label (REAL/FAKE) and original.
    A part without a readable metadata.json is logged and skipped."""
    root = Path(root)
    parts = sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    if (root / "metadata.json").is_file():
        parts = [root] + parts
    rows = []
    clusters: dict[str, str] = {}
    cf = root / "clusters.csv"
    if cf.is_file():  # optional: filename,cluster (e.g. from face clustering): actors recur across parts
        cl = pd.read_csv(cf, dtype=str, keep_default_na=False)
        clusters = dict(zip(cl.iloc[:, 0].map(lambda v: Path(v).name), cl.iloc[:, 1]))
    for part in parts:
        mf = part / "metadata.json"
        if not mf.is_file():
            log.warning("DFDC: %s has no metadata.json; skipped", part)
            continue
        try:
            meta = json.loads(mf.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            log.warning("DFDC: %s unreadable (%s); skipped", mf, e)
            continue
        for name, m in sorted(meta.items()):
            f = part / name
            if not f.is_file():
                continue
            fake = str(m.get("label", "")).upper() == "FAKE"
            orig = m.get("original") or name
            group = ("dfdc:c" + clusters[name]) if name in clusters else "dfdc:" + part.name
            rows.append(dict(path=str(f.resolve()), dataset="dfdc", media="video", label=int(fake),
                             method="dfdc_fake" if fake else "real", compression="", group=group,
                             original=str((part / orig).resolve()) if fake and (part / orig).is_file() else "",
                             split=""))
    return _frame(rows, f"DFDC at {root}")


def index_dfdc_faces(root: str | Path) -> pd.DataFrame:
    """DFDC exported as one face crop per video: ``real/<video>.jpg``, ``fake/<video>.jpg`` and ``metadata.csv``
    (``path,label,video,original,...``; a fake's ``original`` is the real video it was made from).

    Media are images (the crop is the item). Until identity clusters are attached (``python -m training identity``,
    which writes this index with ``group`` = the face-identity cluster of the original), the group is the
    original video: a fake always lands with its original, but two videos of one actor may not.
    """
    root = Path(root)
    mf = root / "metadata.csv"
    if not mf.is_file():
        raise DatasetError(f"DFDC faces at {root}: metadata.csv missing")
    md = pd.read_csv(mf, dtype=str, keep_default_na=False)
    need = {"path", "label", "video", "original"}
    if not need <= set(md.columns):
        raise DatasetError(f"DFDC faces: metadata.csv needs columns {sorted(need)}, has {list(md.columns)}")
    by_video = {v: p for v, p in zip(md["video"], md["path"])}
    rows = []
    for r in md.itertuples(index=False):
        f = root / r.path
        if not f.is_file():
            continue
        fake = str(r.label).lower() in ("fake", "1")
        home = r.original if fake and r.original else r.video
        orig = root / by_video.get(r.original, "") if fake and r.original in by_video else None
        rows.append(dict(path=str(f.resolve()), dataset="dfdc", media="image", label=int(fake),
                         method="dfdc_fake" if fake else "real", compression="", group="dfdc:" + home,
                         original=str(orig.resolve()) if orig is not None and orig.is_file() else "", split=""))
    return _frame(rows, f"DFDC faces at {root}")


# --------------------------------------------------------------------------- DeepFake-TIMIT
def index_timit(root: str | Path) -> pd.DataFrame:
    """DeepfakeTIMIT: ``higher_quality/<subject>/*``, ``lower_quality/<subject>/*`` fakes; VidTIMIT reals as
    videos under ``vidtimit/<subject>/``. The group is the subject (the faked target)."""
    root = Path(root)
    rows = []
    for q, comp in (("higher_quality", "hq"), ("lower_quality", "lq")):
        for f in _files(root / q, VIDEO_EXTS):
            subject = f.relative_to(root / q).parts[0]
            rows.append(dict(path=str(f.resolve()), dataset="timit", media="video", label=1, method="timit_faceswap",
                             compression=comp, group="timit:" + subject, split=""))
    for f in _files(root / "vidtimit", VIDEO_EXTS):
        subject = f.relative_to(root / "vidtimit").parts[0]
        rows.append(dict(path=str(f.resolve()), dataset="timit", media="video", label=0, method="real",
                         compression="", group="timit:" + subject, split=""))
    return _frame(rows, f"DeepFake-TIMIT at {root}")


# --------------------------------------------------------------------------- generic and face-attribute folders
def index_folder(root: str | Path, name: str = "folder") -> pd.DataFrame:
    """``real/`` and ``fake/`` folders of images or videos. A sub-folder directly under real/ or fake/ is
    the identity group (``real/alice/*.jpg``); loose files are their own group."""
    root = Path(root)
    rows = []
    for sub, label in (("real", 0), ("fake", 1)):
        for f in _files(root / sub, IMAGE_EXTS | VIDEO_EXTS):
            rel = f.relative_to(root / sub).parts
            group = rel[0] if len(rel) > 1 else f.stem
            rows.append(dict(path=str(f.resolve()), dataset=name, media="image" if f.suffix.lower() in IMAGE_EXTS else "video",
                             label=label, method="real" if label == 0 else "fake", compression="",
                             group=f"{name}:{group}", split=""))
    return _frame(rows, f"real/fake folder at {root}")


_UTK = re.compile(r"^(\d+)_(\d*)_?(\d)?_")


def index_utkface(root: str | Path) -> pd.DataFrame:
    """UTKFace (``age_gender_race_date.jpg``): real faces with attributes; each file its own group."""
    root = Path(root)
    rows = []
    for f in _files(root, IMAGE_EXTS):
        parts = f.name.split("_")
        try:
            age = int(parts[0])
        except ValueError:
            age = -1
        gender = int(parts[1]) if len(parts) > 3 and parts[1] in ("0", "1") else -1
        race = int(parts[2]) if len(parts) > 3 and parts[2].isdigit() else -1
        if len(parts) == 3:  # files missing the gender field: age_race_date
            race = int(parts[1]) if parts[1].isdigit() else -1
        rows.append(dict(path=str(f.resolve()), dataset="utkface", media="image", label=0, method="real",
                         compression="", group="utk:" + f.name.split(".")[0], split="", age=age, gender=gender, race=race))
    return _frame(rows, f"UTKFace at {root}")


def index_lfw(root: str | Path) -> pd.DataFrame:
    """Labeled Faces in the Wild (``<Person_Name>_0001.jpg``, flat or in per-person folders): real news
    photos; the group is the person."""
    root = Path(root)
    rows = []
    for f in _files(root, IMAGE_EXTS):
        person = re.sub(r"_\d{4}$", "", f.stem)
        rows.append(dict(path=str(f.resolve()), dataset="lfw", media="image", label=0, method="real",
                         compression="", group="lfw:" + person, split=""))
    return _frame(rows, f"LFW at {root}")


def index_ffhq(root: str | Path) -> pd.DataFrame:
    """FFHQ real faces (Flickr portraits, any folder of ``*.png``/``*.jpg``, e.g. ``gan_faces/real/ffhq``): real
    photos, one person per file (FFHQ has no identity labels; each file is its own group)."""
    root = Path(root)
    rows = [dict(path=str(f.resolve()), dataset="ffhq", media="image", label=0, method="real", compression="",
                 group="ffhq:" + f.stem, split="") for f in _files(root, IMAGE_EXTS)]
    return _frame(rows, f"FFHQ at {root}")



def index_gan_faces(root: str | Path) -> pd.DataFrame:
    """Entirely generated faces beside real ones (``fake/<generator>/*.jpg``, ``real/<source>/*.jpg``, e.g.
    ``gan_faces``: StyleGAN2, Stable Diffusion 2.1, another GAN; FFHQ reals). ``method`` is the generator (the
    folder name: ``stylegan2``, ``sd21``, ``other_gan``) so leave-one-generator-out is ``data.exclude_methods``;
    every file is its own group (generated people are unique; FFHQ has no identity labels)."""
    root = Path(root)
    rows = []
    for label, top in ((1, "fake"), (0, "real")):
        if not (root / top).is_dir():
            raise DatasetError(f"generated faces at {root}: folder {top}/ missing")
        for sub in sorted(d for d in (root / top).iterdir() if d.is_dir()):
            for f in _files(sub, IMAGE_EXTS):
                rows.append(dict(path=str(f.resolve()), dataset="gan_faces", media="image", label=label,
                                 method=sub.name if label else "real", compression="",
                                 group=f"gan_faces:{sub.name}/{f.stem}", split=""))
    return _frame(rows, f"generated faces at {root}")


INDEXERS: dict[str, Callable[..., pd.DataFrame]] = {
    "ffpp": index_ffpp, "dfd": index_ffpp, "celebdf": index_celebdf, "dfdc": index_dfdc, "dfdc_faces": index_dfdc_faces,
    "timit": index_timit, "folder": index_folder, "utkface": index_utkface, "lfw": index_lfw, "ffhq": index_ffhq,
    "gan_faces": index_gan_faces,
}
PHOTO_SETS = ("utkface", "lfw", "ffhq")  # real-only photo sets: reported apart, never pooled into a headline


def index_dataset(kind: str, root: str | Path) -> pd.DataFrame:
    if kind not in INDEXERS:
        raise DatasetError(f"unknown dataset kind {kind!r}; choose one of {', '.join(INDEXERS)}")
    if not Path(root).is_dir():
        raise DatasetError(f"{kind}: folder not found: {root}")
    df = INDEXERS[kind](root)
    if kind == "dfd":
        df = df[df["dataset"] == "dfd"].reset_index(drop=True)
    return df


# --------------------------------------------------------------------------- splits
def _h(seed: int, s: str) -> int:
    return int(hashlib.sha1(f"{seed}:{s}".encode()).hexdigest()[:12], 16)


def assign_splits(df: pd.DataFrame, val: float = 0.15, test: float = 0.2, seed: int = 0,
                  val_groups: Iterable[str] = (), test_groups: Iterable[str] = (),
                  train_only_datasets: Iterable[str] = ()) -> pd.DataFrame:
    """Splits by identity, vectorised (O(rows)); returns a copy with ``split`` in train|val|test|excluded.

    1. Rows with an official split, and rows of explicit ``val_groups`` / ``test_groups``, keep that split.
    2. Every other row whose identities (``ids``) include one of a fixed row's identities is ``excluded``
       (e.g. Celeb-DF training videos of a person in the official test list), unless its whole group is fixed.
    3. The remaining groups are ordered by a seeded hash, per dataset, and filled so each split gets about its
       fraction of rows (datasets in ``train_only_datasets`` put them all in train).
    4. An identity whose rows ended in several splits keeps the split of its own group; the others are excluded.
    """
    df = df.copy()
    if "ids" not in df:
        df["ids"] = df["group"]
    g = df["group"].astype(str)
    ids = df["ids"].fillna("").astype(str).where(df["ids"].fillna("").astype(str) != "", g)
    split = df["split"].fillna("").astype(str).to_numpy(object)
    split = np.where(g.isin(set(test_groups)), "test", np.where(g.isin(set(val_groups)), "val", split))
    fixed = split != ""
    # 2. identities of fixed rows
    ex = pd.DataFrame({"row": np.arange(len(df)), "id": ids.str.split(" ")}).explode("id")
    fixed_ids = set(ex.loc[fixed[ex["row"].to_numpy()], "id"])
    touches = ex[ex["id"].isin(fixed_ids)]["row"].unique()
    grp_fixed = pd.Series(fixed).groupby(g.to_numpy()).transform("all").to_numpy()
    bad = np.zeros(len(df), bool)
    bad[touches] = True
    split = np.where(~fixed & bad & ~grp_fixed, "excluded", split)
    # 3. hash-ordered quota fill of the free groups, per dataset
    free = split == ""
    if free.any():
        sub = pd.DataFrame({"dataset": df["dataset"].astype(str).to_numpy()[free], "group": g.to_numpy()[free]})
        sizes = sub.groupby(["dataset", "group"]).size().rename("n").reset_index()
        sizes["h"] = [_h(seed, x) for x in sizes["group"]]
        sizes = sizes.sort_values(["dataset", "h"])
        frac = (sizes.groupby("dataset")["n"].cumsum() - sizes["n"] / 2) / sizes.groupby("dataset")["n"].transform("sum")
        sizes["split"] = np.where(frac < test, "test", np.where(frac < test + val, "val", "train"))
        sizes.loc[sizes["dataset"].isin(set(train_only_datasets)), "split"] = "train"
        gs = dict(zip(zip(sizes["dataset"], sizes["group"]), sizes["split"]))
        split[free] = [gs[k] for k in zip(sub["dataset"], sub["group"])]
    # 4. an identity in several splits: keep its own group's split
    ex["split"] = split[ex["row"].to_numpy()]
    live = ex[ex["split"] != "excluded"]
    home = pd.Series(split, index=g.to_numpy())
    home = home[~home.index.duplicated()]
    own = live["id"].map(home)
    clash = live[own.notna() & (own != live["split"])]["row"].unique()
    split[clash] = np.where(fixed[clash], split[clash], "excluded")
    df["split"] = split
    return df


def check_no_leak(df: pd.DataFrame) -> None:
    """No identity group and no identity in two splits (``excluded`` rows aside)."""
    live = df[df["split"] != "excluded"]
    per = live.groupby("group")["split"].nunique()
    bad = per[per > 1]
    if len(bad):
        raise DatasetError(f"identity groups in more than one split: {', '.join(map(str, bad.index[:5]))}")
    if "ids" in live:
        ex = live.assign(id=live["ids"].fillna("").astype(str).str.split(" ")).explode("id")
        ex = ex[ex["id"] != ""]
        per = ex.groupby("id")["split"].nunique()
        bad = per[per > 1]
        if len(bad):
            raise DatasetError(f"identities in more than one split: {', '.join(map(str, bad.index[:5]))}")


def require_splits(df: pd.DataFrame, needed=("val", "test")) -> None:
    """Every dataset must have validation and test data; a dataset without is an error naming it."""
    for ds, sub in df.groupby("dataset"):
        missing = [s for s in needed if not (sub["split"] == s).any()]
        if missing:
            raise DatasetError(f"dataset {ds!r} has no {' and no '.join(missing)} data after splitting "
                               f"(groups: {sub['group'].nunique()}); add data, change the fractions or name groups")
