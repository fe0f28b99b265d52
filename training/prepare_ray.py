"""``python -m training prepare ... --engine ray [--address ...]``: face extraction as a Ray Data pipeline.

    index rows -> shards of ``shard_items`` items (one dataset per shard, fixed in plan.csv)
               -> Ray Data ``map_batches`` over an actor pool (MTCNN built once per actor; one GPU per actor
                  when the cluster has GPUs): per item, frame sampling + decoding + detection + crops through
                  ``training.prepare.extract_item`` -- the very function the single-process path runs, under
                  the same ``CropSpec`` -- then the shard is written whole (TFRecord, PNG bytes per crop) by the
                  actor, straight to the output path or object-store URI (no image passes through the driver)
               -> the driver receives only the shard's metadata rows and errors.

Resumable per shard: a shard whose ``index/<shard>.parquet`` exists is skipped. Failures: an actor that dies is
restarted and its shard retried by Ray Data (its actor pools restart actors and retry their tasks); an item raising an unexpected
error is retried ``RETRIES`` times in the actor, then logged once in ``errors/<shard>.csv`` (corrupt media and
"no face" are not retried). Layout: see ``training.shards``.
"""
from __future__ import annotations

import io
import json
import logging
import sys
import time
from typing import Callable

import pandas as pd

from model.crops import CropSpec
from training import shards
from training.prepare import PREPARE_VERSION, crop_records, extract_item, item_id

log = logging.getLogger(__name__)
RETRIES = 2


def plan_shards(index: pd.DataFrame, out: str, shard_items: int) -> pd.DataFrame:
    """item id -> shard, kept from earlier runs (plan.csv); new items go to new shards of their dataset."""
    ids = [item_id(p) for p in index["path"]]
    items = pd.DataFrame({"item": ids, "dataset": index["dataset"].astype(str).to_numpy(), "row": range(len(index))})
    items = items.drop_duplicates("item")
    old = pd.DataFrame(columns=["item", "shard"])
    if shards.exists(out, "plan.csv"):
        old = pd.read_csv(io.BytesIO(shards.read_bytes(out, "plan.csv")), keep_default_na=False)
    plan = items.merge(old, on="item", how="left")
    new = plan["shard"].isna()
    if new.any():
        parts = []
        for ds_name, g in plan[new].sort_values("item").groupby("dataset", sort=True):
            safe = "".join(ch if ch.isalnum() else "_" for ch in ds_name) or "data"
            used = old["shard"][old["shard"].str.startswith(safe + "-")]
            start = 1 + max((int(s.rsplit("-", 1)[1]) for s in used), default=-1)
            k = pd.Series(range(len(g)), index=g.index) // shard_items + start
            parts.append(k.map(lambda v, s=safe: f"{s}-{v:05d}"))
        plan.loc[new, "shard"] = pd.concat(parts)
    keep = pd.concat([old, plan.loc[new, ["item", "shard"]]], ignore_index=True)
    shards.write_bytes(out, "plan.csv", keep.to_csv(index=False).encode())
    return plan


class ShardWorker:
    """Actor: builds the detector once, then turns one shard of items into a TFRecord shard + its index."""

    def __init__(self, spec: dict, out: str, threads: int = 0):
        import os

        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        from model.faces import get_mtcnn
        from model.video import limit_threads

        if threads:
            limit_threads(threads)  # as many threads as the CPUs this actor reserved

        self.spec = CropSpec.from_dict(spec)
        self.out = out
        get_mtcnn()  # MTCNN built once per actor

    def _extract(self, row: dict):
        from model import media

        for attempt in range(RETRIES + 1):
            try:
                faces, diffs, _ = extract_item(row, self.spec)
                return faces, diffs, ""
            except media.MediaError as e:  # corrupt / unsupported media: permanent
                return [], {}, str(e)
            except Exception as e:  # noqa: BLE001 - transient (I/O, memory): retried, then logged once
                err = f"{type(e).__name__}: {e}".splitlines()[0]
                if attempt < RETRIES:
                    time.sleep(0.5 * (attempt + 1))
        return [], {}, f"{err} (after {RETRIES + 1} attempts)"

    def __call__(self, batch: dict) -> dict:
        import cv2
        import pyarrow as pa
        import pyarrow.parquet as pq

        from training.prepare import CROP_COLUMNS

        out_rows = {"shard": [], "crops": [], "items": [], "errors": []}
        for shard, rows_json in zip(batch["shard"], batch["rows"]):
            rows = json.loads(rows_json)
            records, errors = [], []
            for row in rows:
                iid = item_id(row["path"])
                faces, diffs, err = self._extract(row)
                if not err and not faces:
                    err = "no face found"
                if err:
                    errors.append({"video": iid, "error": err})
                    continue
                for rec, f in crop_records(row, iid, faces, diffs):
                    ok, png = cv2.imencode(".png", cv2.cvtColor(f.crop, cv2.COLOR_RGB2BGR))
                    records.append((png.tobytes(), rec))
            rel = f"{shards.SHARD_DIR}/{shard}{shards.SUFFIX}"
            if records:
                blob, offsets = shards.write_shard(records)
                shards.write_bytes(self.out, rel, blob)
                for (_, rec), off in zip(records, offsets):
                    rec["crop"] = f"{rel}@{off}"
            meta = pd.DataFrame([r for _, r in records], columns=CROP_COLUMNS)
            for c in ("compression", "group", "ids", "method", "path", "dataset", "media", "kps", "crop", "video"):
                meta[c] = meta[c].astype(str)
            shards.write_bytes(self.out, f"{shards.ERROR_DIR}/{shard}.csv",
                               pd.DataFrame(errors, columns=["video", "error"]).to_csv(index=False).encode())
            buf = io.BytesIO()
            pq.write_table(pa.Table.from_pandas(meta, preserve_index=False), buf)
            # the index is written last: its presence marks the shard done
            shards.write_bytes(self.out, f"{shards.INDEX_DIR}/{shard}.parquet", buf.getvalue())
            out_rows["shard"].append(shard)
            out_rows["crops"].append(len(records))
            out_rows["items"].append(len(rows))
            out_rows["errors"].append(len(errors))
        return out_rows


def prepare(index: pd.DataFrame, out_dir: str, spec: CropSpec | None = None, workers: int | None = None,
            address: str | None = None, shard_items: int = 64, progress: bool = True,
            on_shard: Callable[[dict], None] | None = None) -> pd.DataFrame:
    """Extract crops for every row of ``index`` into shards under ``out_dir`` (local path or URI) on Ray.
    ``on_shard(row)`` is called as each shard finishes (row: shard, items, crops, errors)."""
    import ray

    from model.batch import actor_resources, connect

    spec = spec or CropSpec()
    out = str(out_dir)
    meta = {"crop_spec": spec.to_dict(), "version": PREPARE_VERSION, "format": "shards"}
    if shards.exists(out, "prepare.json"):
        old = json.loads(shards.read_bytes(out, "prepare.json"))
        if old != meta:
            raise ValueError(f"{out} was prepared with {old}; use another folder for {meta}")
    else:
        shards.write_bytes(out, "prepare.json", json.dumps(meta, indent=2).encode())
    shards.write_bytes(out, "source_index.csv", index.to_csv(index=False).encode())
    plan = plan_shards(index, out, shard_items)
    done = {rel.rsplit("/", 1)[1][:-len(".parquet")] for rel in shards.list_files(out, shards.INDEX_DIR, ".parquet")}
    rows = index.to_dict("records")
    tasks = []
    for shard, g in plan.groupby("shard", sort=True):
        if shard not in done:
            tasks.append({"shard": shard, "rows": json.dumps([rows[i] for i in g["row"]], default=str)})
    if progress:
        print(f"prepare (ray): {len(done)} shards done, {len(tasks)} to go ({len(plan)} items)", file=sys.stderr)
    if tasks:
        connect(address, num_cpus=workers)
        n, gpu = actor_resources(workers)
        ds = ray.data.from_items(tasks, override_num_blocks=len(tasks))
        # a CPU actor runs one decoding/TensorFlow thread for the one CPU it reserves
        kwargs = {"spec": spec.to_dict(), "out": out, "threads": 0 if gpu else 1}
        ds = ds.map_batches(ShardWorker, fn_constructor_kwargs=kwargs, batch_size=1,
                            compute=ray.data.ActorPoolStrategy(size=min(n, len(tasks)), max_tasks_in_flight_per_actor=1),
                            num_cpus=0 if gpu else 1, num_gpus=gpu)
        t0, k = time.time(), 0
        for r in ds.iter_rows():
            k += 1
            if on_shard is not None:
                on_shard(r)
            if progress:
                el = time.time() - t0
                print(f"prepare (ray): shard {r['shard']} ({r['items']} items, {r['crops']} crops, {r['errors']} "
                      f"errors) {k}/{len(tasks)}, {el:.0f}s elapsed, ETA {el / k * (len(tasks) - k):.0f}s",
                      file=sys.stderr, flush=True)
    crops, _ = shards.merge_index(out)
    return crops
