"""Sharded, streamable face crops: TFRecord shards holding the PNG bytes, plus a metadata index without images.

Written by ``python -m training prepare --engine ray`` (``training.prepare_ray``); read by training through
``tf.data`` (``shard_dataset``: interleaved over shard files, no per-crop constants in the graph) and by the
dashboard through ``open_crop``.

Layout of a sharded prepared folder (a local path or an object-store URI such as ``gs://bucket/prep``)::

    OUT/prepare.json                  {"crop_spec": {...}, "version": 2, "format": "shards"}
    OUT/source_index.csv              the media index (no splits: computed at training time)
    OUT/plan.csv                      item id -> shard (fixed at the first run, so a resume finds the same shards)
    OUT/shards/<dataset>-00007.tfrecord   one tf.train.Example per crop (see FEATURES), one dataset per shard
    OUT/index/<shard>.parquet         that shard's crop records (CROP_COLUMNS, no image); written after the shard
    OUT/errors/<shard>.csv            that shard's failed items, one line per item (no shared file, no races)
    OUT/crops.csv, OUT/errors.csv     the merged index and errors (written once, at the end)

A crop reference (the ``crop`` column of ``crops.csv``) is ``shards/<shard>.tfrecord@<byte offset>``: the record
starts at that offset, so ``open_crop`` reads one record without scanning the shard.
"""
from __future__ import annotations

import io
import os
import struct
import tempfile
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

SHARD_DIR = "shards"
INDEX_DIR = "index"
ERROR_DIR = "errors"
SUFFIX = ".tfrecord"
# one record = uint64 length, uint32 masked crc of the length, the bytes, uint32 masked crc of the bytes
RECORD_OVERHEAD = 16


# --------------------------------------------------------------------------- file systems (local or URI)
def is_uri(p: str | os.PathLike) -> bool:
    return "://" in str(p)


def filesystem(root: str | os.PathLike):
    """(pyarrow FileSystem, path inside it) for a local folder or an object-store URI (gs://, s3://, ...)."""
    import pyarrow.fs as pafs

    if is_uri(root):
        return pafs.FileSystem.from_uri(str(root))
    return pafs.LocalFileSystem(), str(Path(root).resolve())


def join(root: str, *parts: str) -> str:
    return "/".join([str(root).rstrip("/"), *parts])


def exists(root: str | os.PathLike, rel: str) -> bool:
    import pyarrow.fs as pafs

    fs, base = filesystem(root)
    return fs.get_file_info(join(base, rel)).type == pafs.FileType.File


def write_bytes(root: str | os.PathLike, rel: str, data: bytes) -> None:
    """Write a whole file atomically: local files via rename, objects by a single PUT."""
    fs, base = filesystem(root)
    target = join(base, rel)
    fs.create_dir(target.rsplit("/", 1)[0], recursive=True)
    if is_uri(root):
        with fs.open_output_stream(target) as f:
            f.write(data)
        return
    tmp = target + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, target)


def read_bytes(root: str | os.PathLike, rel: str) -> bytes:
    fs, base = filesystem(root)
    with fs.open_input_stream(join(base, rel)) as f:
        return f.read()


def list_files(root: str | os.PathLike, rel_dir: str, suffix: str) -> list[str]:
    """Relative paths of the files under ``rel_dir`` ending in ``suffix`` (sorted)."""
    import pyarrow.fs as pafs

    fs, base = filesystem(root)
    sel = pafs.FileSelector(join(base, rel_dir), allow_not_found=True)
    return sorted(f"{rel_dir}/{i.base_name}" for i in fs.get_file_info(sel)
                  if i.type == pafs.FileType.File and i.base_name.endswith(suffix))


# --------------------------------------------------------------------------- records
def encode_example(png: bytes, rec: dict) -> bytes:
    """One crop as a serialized tf.train.Example (protobuf only: no TensorFlow graph needed)."""
    import json

    from tensorflow.core.example import example_pb2

    ex = example_pb2.Example()
    f = ex.features.feature
    f["image"].bytes_list.value.append(png)
    for k in ("label", "file_label", "frame", "face", "track"):
        f[k].int64_list.value.append(int(rec[k]))
    kps = rec["kps"]
    f["kps"].float_list.value.extend(json.loads(kps) if isinstance(kps, str) else kps)
    for k in ("video", "dataset", "path"):
        f[k].bytes_list.value.append(str(rec[k]).encode())
    return ex.SerializeToString()


def write_shard(records: Sequence[tuple[bytes, dict]]) -> tuple[bytes, list[int]]:
    """Serialize ``(png, record)`` pairs as one TFRecord file -> (file bytes, byte offset of each record)."""
    import tensorflow as tf

    offsets, pos = [], 0
    with tempfile.TemporaryDirectory() as td:
        fn = os.path.join(td, "shard" + SUFFIX)
        with tf.io.TFRecordWriter(fn) as w:
            for png, rec in records:
                data = encode_example(png, rec)
                w.write(data)
                offsets.append(pos)
                pos += len(data) + RECORD_OVERHEAD
        with open(fn, "rb") as f:
            blob = f.read()
    if len(blob) != pos:
        raise RuntimeError("unexpected TFRecord framing: offsets would be wrong")
    return blob, offsets


def parse_ref(ref: str | os.PathLike) -> tuple[str, int | None]:
    """``.../shards/x.tfrecord@123`` -> (``.../shards/x.tfrecord``, 123); a plain crop file -> (path, None)."""
    s = str(ref)
    head, sep, tail = s.rpartition("@")
    if sep and head.endswith(SUFFIX) and tail.isdigit():
        return head, int(tail)
    return s, None


def crop_exists(ref: str | os.PathLike) -> bool:
    """True when ``open_crop(ref)`` can find the file the crop lives in (a PNG or a shard)."""
    path, _ = parse_ref(ref)
    if is_uri(path):
        root, _, rel = path.rpartition("/")
        return exists(root, rel)
    return Path(path).is_file()


def open_crop(ref: str | os.PathLike) -> np.ndarray:
    """A prepared face crop as an RGB uint8 array, whether it is a PNG file or a record inside a shard.

    ``ref`` is the prepared folder joined with the ``crop`` column of ``crops.csv``, e.g.
    ``data/prepared/dfdc/shards/dfdc-00007.tfrecord@123456`` or ``data/prepared/ffpp/crops/x/f00012_0.png``.
    Raises FileNotFoundError when the file is missing and ValueError when the bytes are not a crop.
    """
    import cv2

    path, offset = parse_ref(ref)
    if offset is None:
        img = cv2.imread(path, cv2.IMREAD_COLOR) if Path(path).is_file() else None
        if img is None:
            raise FileNotFoundError(f"crop missing or unreadable: {path}")
        return img[..., ::-1].copy()
    if not crop_exists(path):
        raise FileNotFoundError(f"shard not found: {path}")
    if is_uri(path):
        import pyarrow.fs as pafs

        fs, p = pafs.FileSystem.from_uri(path)
        f = fs.open_input_file(p)
    else:
        f = open(path, "rb")
    with f:
        f.seek(offset)
        head = f.read(12)
        if len(head) != 12:
            raise ValueError(f"{ref}: offset past the end of the shard")
        (n,) = struct.unpack("<Q", head[:8])
        if n > 64 << 20:
            raise ValueError(f"{ref}: not a record boundary")
        data = f.read(n)
    from tensorflow.core.example import example_pb2

    try:
        ex = example_pb2.Example.FromString(data)
        png = ex.features.feature["image"].bytes_list.value[0]
    except Exception as e:  # noqa: BLE001 - any parse failure means the reference is wrong
        raise ValueError(f"{ref}: not a crop record ({type(e).__name__})") from None
    img = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise ValueError(f"{ref}: the record's image is not a PNG")
    return img[..., ::-1].copy()


def iter_shard(path: str | os.PathLike) -> Iterable[tuple[int, dict]]:
    """(offset, {feature: value}) for every record of a local shard (tests and tools; training uses tf.data)."""
    from tensorflow.core.example import example_pb2

    with open(path, "rb") as f:
        data = f.read()
    pos = 0
    while pos < len(data):
        (n,) = struct.unpack("<Q", data[pos:pos + 8])
        ex = example_pb2.Example.FromString(data[pos + 12:pos + 12 + n])
        out = {}
        for k, v in ex.features.feature.items():
            kind = v.WhichOneof("kind")
            out[k] = list(getattr(v, kind).value)
        yield pos, out
        pos += n + RECORD_OVERHEAD


# --------------------------------------------------------------------------- merged index
def merge_index(root: str | os.PathLike) -> "tuple[object, object]":
    """Concatenate index/*.parquet and errors/*.csv into crops.csv and errors.csv (each written once)."""
    import pandas as pd
    import pyarrow.parquet as pq

    from training.prepare import CROP_COLUMNS

    fs, base = filesystem(root)
    frames = [pq.read_table(join(base, rel), filesystem=fs).to_pandas() for rel in list_files(root, INDEX_DIR, ".parquet")]
    crops = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=CROP_COLUMNS)
    crops = crops.sort_values(["video", "frame", "face"], kind="stable").reset_index(drop=True)[CROP_COLUMNS]
    write_bytes(root, "crops.csv", crops.to_csv(index=False).encode())
    errs = [pd.read_csv(io.BytesIO(read_bytes(root, rel)), keep_default_na=False)
            for rel in list_files(root, ERROR_DIR, ".csv")]
    errors = pd.concat(errs, ignore_index=True) if errs else pd.DataFrame(columns=["video", "error"])
    write_bytes(root, "errors.csv", errors.to_csv(index=False).encode())
    return crops, errors
