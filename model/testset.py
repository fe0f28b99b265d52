"""Bring your own test set: a zip file or a folder with ``real/`` and ``fake/`` subfolders of images and videos.

    with testset.open_test_set("my_set.zip") as ts:      # or a folder, or an uploaded file object
        table = testset.score(det, ts, progress=cb)       # one row per file: name, label, score, faces, error
    s = testset.summary(table, det.threshold)             # AUC, AP, confusion at the threshold, ROC/PR points

``real/`` and ``fake/`` may sit at the top of the archive or inside one top folder (``my_set/real/...``), at any
depth below. Bad members never stop the run: each is listed in ``TestSet.problems`` (or, once scored, in the
table's ``error`` column) with a one-line reason -- path tricks (``../``, absolute paths, links), encrypted or
unreadable members, wrong file types, files outside ``real/``/``fake/``; corrupt media and faceless files are
reported by the engine. The archive as a whole is refused (``TestSetError``) when it is not a zip, or when it
holds more than ``max_files`` members or more than ``max_bytes`` uncompressed.

Safety: members are written under generated names (``00001.jpg``) inside a private temporary folder (mode 0700)
that is removed by ``close()`` / the ``with`` block; no member name ever becomes a file system path. The bytes
actually written are counted, so a member whose header understates its size is cut off at the cap.
"""
from __future__ import annotations

import dataclasses
import os
import shutil
import stat
import tempfile
import zipfile
from pathlib import Path, PurePosixPath
from typing import IO, Any, Callable

import numpy as np

from model import media
from model.video import DEFAULT_STRATEGY

MAX_FILES = 2000
MAX_BYTES = 4 * 1024**3  # total uncompressed
LABELS = {"real": 0, "fake": 1}
_IGNORED = {"__MACOSX", ".DS_Store", "Thumbs.db", "desktop.ini"}
_CHUNK = 1 << 20


class TestSetError(ValueError):
    """The test set as a whole cannot be used (one line, for the user)."""


Progress = Callable[[int, int, str], None]


@dataclasses.dataclass
class Item:
    name: str  # as in the archive / relative to the folder (display only)
    path: Path  # on disk
    label: int  # 0 real, 1 fake


@dataclasses.dataclass
class Problem:
    name: str
    reason: str


@dataclasses.dataclass
class TestSet:
    items: list[Item]
    problems: list[Problem]
    source: str
    _tmp: str | None = None

    @property
    def n_real(self) -> int:
        return sum(i.label == 0 for i in self.items)

    @property
    def n_fake(self) -> int:
        return sum(i.label == 1 for i in self.items)

    def close(self) -> None:
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def __enter__(self) -> "TestSet":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# --------------------------------------------------------------------------- names
def _ignored(parts: tuple[str, ...]) -> bool:
    return any(p in _IGNORED for p in parts) or parts[-1].startswith("._")


def label_of(parts: tuple[str, ...]) -> int | None:
    """0/1 from ``real/...`` or ``fake/...`` (case-insensitive), optionally under one top folder."""
    if len(parts) >= 2 and parts[0].lower() in LABELS:
        return LABELS[parts[0].lower()]
    if len(parts) >= 3 and parts[1].lower() in LABELS:
        return LABELS[parts[1].lower()]
    return None


def _classify(parts: tuple[str, ...]) -> tuple[int | None, str]:
    """(label, '') for a usable file, else (None, reason)."""
    label = label_of(parts)
    if label is None:
        return None, "not inside a real/ or fake/ folder"
    try:
        media.kind_of(parts[-1])
    except media.MediaError as e:
        return None, str(e).split(";")[0]
    return label, ""


def _member_parts(info: zipfile.ZipInfo) -> tuple[tuple[str, ...] | None, str]:
    """Normalised path parts of a zip member, or (None, reason) for path tricks and links."""
    raw = info.filename
    name = raw.replace("\\", "/")
    if "\x00" in name:
        return None, "path trick refused (NUL byte in the name)"
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        return None, "path trick refused (absolute path)"
    parts = tuple(p for p in PurePosixPath(name).parts if p not in ("", "."))
    if any(p == ".." for p in parts):
        return None, "path trick refused ('..' in the path)"
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        return None, "symbolic link refused"
    if not parts:
        return None, "empty name"
    return parts, ""


# --------------------------------------------------------------------------- zip
def from_zip(source: str | os.PathLike | IO[bytes], max_files: int = MAX_FILES, max_bytes: int = MAX_BYTES,
             progress: Progress | None = None) -> TestSet:
    """Extract the usable members of a zip into a private temporary folder (see the module doc)."""
    display = str(source) if isinstance(source, (str, os.PathLike)) else getattr(source, "name", "<upload>")
    try:
        zf = zipfile.ZipFile(source)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError) as e:
        raise TestSetError(f"not a readable zip file: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    with zf:
        infos = [i for i in zf.infolist() if not i.is_dir()]
        if len(infos) > max_files:
            raise TestSetError(f"the zip holds {len(infos)} files; the limit is {max_files}")
        declared = sum(max(i.file_size, 0) for i in infos)
        if declared > max_bytes:
            raise TestSetError(f"the zip unpacks to {declared / 1e6:,.0f} MB; the limit is {max_bytes / 1e6:,.0f} MB")
        tmp = tempfile.mkdtemp(prefix="dfd_testset_")  # mode 0700
        ts = TestSet(items=[], problems=[], source=display, _tmp=tmp)
        try:
            written = 0
            for k, info in enumerate(infos, 1):
                if progress:
                    progress(k - 1, len(infos), f"unpacking {info.filename}")
                parts, reason = _member_parts(info)
                if parts is None:
                    ts.problems.append(Problem(info.filename, reason))
                    continue
                if _ignored(parts):
                    continue
                label, reason = _classify(parts)
                if label is None:
                    ts.problems.append(Problem(info.filename, reason))
                    continue
                if info.flag_bits & 0x1:
                    ts.problems.append(Problem(info.filename, "encrypted member refused"))
                    continue
                if info.file_size > media.MAX_FILE_BYTES:
                    ts.problems.append(Problem(info.filename, "file too large"))
                    continue
                dest = Path(tmp) / f"{k:05d}{Path(parts[-1]).suffix.lower()}"
                try:
                    written = _copy_member(zf, info, dest, written, max_bytes)
                except TestSetError:
                    raise
                except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError, RuntimeError, ValueError) as e:
                    dest.unlink(missing_ok=True)
                    msg = str(e).splitlines()[0] if str(e) else type(e).__name__
                    ts.problems.append(Problem(info.filename, f"unreadable member: {msg}"))
                    continue
                ts.items.append(Item("/".join(parts), dest, label))
            if progress:
                progress(len(infos), len(infos), "unpacked")
        except BaseException:
            ts.close()
            raise
    return ts


def _copy_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, dest: Path, written: int, max_bytes: int) -> int:
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with zf.open(info) as src, os.fdopen(fd, "wb") as out:
        while True:
            chunk = src.read(_CHUNK)
            if not chunk:
                break
            written += len(chunk)
            if written > max_bytes:
                raise TestSetError(f"the zip unpacks to more than {max_bytes / 1e6:,.0f} MB (the limit)")
            out.write(chunk)
    return written


# --------------------------------------------------------------------------- folder
def from_folder(folder: str | os.PathLike, max_files: int = MAX_FILES) -> TestSet:
    """Use a local folder in place (nothing copied). Symbolic links are listed and skipped."""
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise TestSetError(f"not a folder: {root}")
    ts = TestSet(items=[], problems=[], source=str(root))
    seen = 0
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        d = Path(dirpath)
        for dn in list(dirnames):
            if (d / dn).is_symlink():
                ts.problems.append(Problem(str((d / dn).relative_to(root)), "symbolic link skipped"))
                dirnames.remove(dn)
            elif dn in _IGNORED or dn.startswith("."):
                dirnames.remove(dn)
        dirnames.sort()
        for fn in sorted(filenames):
            p = d / fn
            rel = p.relative_to(root)
            parts = rel.parts
            if _ignored(parts) or fn.startswith("."):
                continue
            seen += 1
            if seen > max_files:
                raise TestSetError(f"the folder holds more than {max_files} files (the limit)")
            if p.is_symlink():
                ts.problems.append(Problem(rel.as_posix(), "symbolic link skipped"))
                continue
            label, reason = _classify(parts)
            if label is None:
                ts.problems.append(Problem(rel.as_posix(), reason))
                continue
            ts.items.append(Item(rel.as_posix(), p, label))
    return ts


def open_test_set(source: str | os.PathLike | IO[bytes], max_files: int = MAX_FILES, max_bytes: int = MAX_BYTES,
                  progress: Progress | None = None) -> TestSet:
    """A folder (used in place) or a zip (path or binary file object). Raises TestSetError when unusable."""
    if isinstance(source, (str, os.PathLike)):
        p = Path(source).expanduser()
        if p.is_dir():
            ts = from_folder(p, max_files)
        elif p.is_file():
            ts = from_zip(p, max_files, max_bytes, progress)
        else:
            raise TestSetError(f"not found: {p}")
    else:
        ts = from_zip(source, max_files, max_bytes, progress)
    if not ts.items:
        n = len(ts.problems)
        ts.close()
        raise TestSetError("no usable image or video under real/ or fake/"
                           + (f" ({n} file{'s' * (n != 1)} skipped)" if n else ""))
    return ts


# --------------------------------------------------------------------------- scoring
COLUMNS = ("name", "label", "kind", "score", "faces", "error")


def score(det, ts: TestSet, frames: int | None = None, strategy: str | None = None, progress: Progress | None = None):
    """Run the engine over every item; one row per item plus one per listed problem (score empty). ``frames`` and
    ``strategy`` default to the engine's (the model card's crop contract and ``video.DEFAULT_STRATEGY``), the
    settings the model's threshold was fitted with."""
    import pandas as pd

    rows: list[dict[str, Any]] = []
    n = len(ts.items)
    for k, it in enumerate(ts.items):
        if progress:
            progress(k, n, f"analysing {it.name}")
        res = det.analyze(it.path, frames=frames, strategy=strategy or DEFAULT_STRATEGY, display_name=it.name)
        err = res.error or ("" if res.score is not None else "no face found")
        rows.append({"name": it.name, "label": "fake" if it.label else "real", "kind": res.kind,
                     "score": None if res.score is None else float(res.score), "faces": res.faces, "error": err})
    if progress:
        progress(n, n, "done")
    for pr in ts.problems:
        rows.append({"name": pr.name, "label": "", "kind": "", "score": None, "faces": 0, "error": pr.reason})
    return pd.DataFrame(rows, columns=list(COLUMNS))


def by_error(table):
    """Scored files, the worst mistakes first: |label - score| descending (then the unscored ones)."""
    t = table.copy()
    y = (t["label"] == "fake").astype(float)
    t["error_size"] = (y - t["score"].astype(float)).abs()
    return t.sort_values(["error_size", "name"], ascending=[False, True], na_position="last").reset_index(drop=True)


def summary(table, threshold: float) -> dict[str, Any]:
    """Metrics over the scored files (``model.metrics``; AUC/AP need both classes, null otherwise)."""
    from sklearn import metrics as skm

    from model import metrics

    t = table[table["score"].notna() & table["label"].isin(["real", "fake"])]
    y = (t["label"] == "fake").to_numpy(int)
    p = t["score"].to_numpy(float)
    cm = metrics.confusion(y, p, threshold)
    tn, fp, fn, tp = cm["tn"], cm["fp"], cm["fn"], cm["tp"]
    two = len(np.unique(y)) == 2
    out: dict[str, Any] = {
        "threshold": float(threshold), "n_files": int(len(table[table["label"].isin(["real", "fake"])])),
        "n_scored": int(len(t)), "n_real": int((y == 0).sum()), "n_fake": int((y == 1).sum()),
        "n_problems": int(table["error"].astype(bool).sum()),
        "auc": metrics.auc(y, p), "ap": metrics.average_precision(y, p),
        "tn": tn, "fp": fp, "fn": fn, "tp": tp,
        "accuracy": metrics.accuracy(y, p, threshold),
        "detection_rate": metrics.detection_rate(y, p, threshold),
        "false_alarm_rate": metrics.false_alarm_rate(y, p, threshold),
        "roc": None, "pr": None,
    }
    if two:
        fpr, tpr, thr = skm.roc_curve(y, p)
        prec, rec, _ = skm.precision_recall_curve(y, p)
        out["roc"] = {"fpr": fpr.tolist(), "tpr": tpr.tolist()}
        out["pr"] = {"precision": prec.tolist(), "recall": rec.tolist()}
    return out
