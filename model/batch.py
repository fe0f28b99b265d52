"""Batch scoring on Ray: ``python -m model predict SOURCE --engine ray --output out.parquet``.

Files are listed on the driver, then scored by a pool of detector actors (Ray Data ``map_batches`` with an
actor pool: the Keras model and MTCNN are built once per actor, a GPU per actor when the cluster has them).
Each actor runs exactly ``Detector.analyze`` -- the engine the plain CLI runs -- so a row is the same row the
plain CLI writes (``api.CSV_COLUMNS``: path, kind, faces, score = P(fake) in [0, 1], label, error). Rows keep
the input order and are streamed to the output (Parquet row groups, or CSV/JSON lines): memory stays bounded
for millions of files.

Without ``--address`` (or ``RAY_ADDRESS``) Ray starts in-process on this machine; with one, the same command
runs on a cluster (every node needs the code, the model folder and the files at the same paths, e.g. a
shared file system or a container image plus a mounted bucket).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Iterable

REPO_ROOT = Path(__file__).resolve().parent.parent


# --------------------------------------------------------------------------- Ray connection (shared by training)
def connect(address: str | None = None, num_cpus: int | None = None) -> dict[str, Any]:
    """Start (or join) Ray once per process -> the cluster's resources.

    ``address`` (or ``$RAY_ADDRESS``): join that cluster (``ray start --head`` / KubeRay / a cloud launcher).
    Otherwise a local Ray is started in-process with ``num_cpus`` (default: all cores).
    """
    import ray

    if not ray.is_initialized():
        os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
        env = {"env_vars": {"PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]),
                            "TF_CPP_MIN_LOG_LEVEL": "2"}}
        address = address or os.environ.get("RAY_ADDRESS") or None
        if address:
            ray.init(address=address, runtime_env=env, log_to_driver=False)
        else:
            ray.init(num_cpus=num_cpus or os.cpu_count(), include_dashboard=False, runtime_env=env,
                     log_to_driver=False, configure_logging=False)
        from ray.data import DataContext

        ctx = DataContext.get_current()
        ctx.enable_progress_bars = False
        ctx.execution_options.preserve_order = True
    return ray.cluster_resources()


def actor_resources(workers: int | None) -> tuple[int, float]:
    """(actors, GPUs per actor): one actor per GPU when the cluster has GPUs, else ``workers`` one-CPU actors."""
    import ray

    res = ray.cluster_resources()
    gpus = int(res.get("GPU", 0))
    if gpus:
        return (workers or gpus), 1.0
    return max(1, workers or int(res.get("CPU", 1))), 0.0


# --------------------------------------------------------------------------- scoring actors
class _Scorer:
    """One per actor: the detector (Keras model + MTCNN) is loaded once, then scores a batch of files."""

    def __init__(self, model_dir: str, frames: int | None, strategy: str):
        from model.api import Detector

        self.det = Detector.load(model_dir)
        self.frames, self.strategy = frames, strategy

    def __call__(self, batch: dict) -> dict:
        from model.api import CSV_COLUMNS

        rows = [self.det.analyze(p, frames=self.frames, strategy=self.strategy).csv_row() for p in batch["path"]]
        return {c: [r[c] for r in rows] for c in CSV_COLUMNS}


def score_files(files: list[str], model_dir: str | None, frames: int | None = None, strategy: str = "max_mean",
                workers: int | None = None, address: str | None = None, batch_size: int = 4) -> Iterable[dict]:
    """Rows (``api.CSV_COLUMNS``) for ``files``, in order, scored by a pool of detector actors on Ray."""
    import ray

    from model.api import require_model_dir

    model_dir = str(require_model_dir(model_dir).resolve())  # checked on the driver: actors never load a missing model
    connect(address, num_cpus=workers)
    n, gpu = actor_resources(workers)
    batch_size = max(1, min(batch_size, -(-len(files) // n)))  # small inputs still reach every actor
    ds = ray.data.from_items([{"path": f} for f in files], override_num_blocks=max(1, min(-(-len(files) // batch_size), 100_000)))
    ds = ds.map_batches(_Scorer, fn_constructor_kwargs={"model_dir": model_dir, "frames": frames, "strategy": strategy},
                        batch_size=batch_size, compute=ray.data.ActorPoolStrategy(size=n, max_tasks_in_flight_per_actor=2),
                        num_cpus=0 if gpu else 1, num_gpus=gpu)
    for batch in ds.iter_batches(batch_size=256, batch_format="pandas"):
        yield from batch.to_dict("records")


# --------------------------------------------------------------------------- writers
class RowWriter:
    """Streams rows to .parquet (row groups of ``group`` rows), .csv, .jsonl or .json (a JSON list), or stdout."""

    def __init__(self, output: str | None, fmt: str = "csv", group: int = 10_000):
        from model.api import CSV_COLUMNS

        self.cols = list(CSV_COLUMNS)
        self.output, self.group, self.buf, self.n = output, group, [], 0
        self.kind = "parquet" if output and output.endswith(".parquet") else fmt
        self._pq = None
        if self.kind == "parquet":
            return
        self.f = open(output, "w", newline="") if output else sys.stdout
        if self.kind == "csv":
            import csv

            self.w = csv.DictWriter(self.f, fieldnames=self.cols, lineterminator="\n")
            self.w.writeheader()
        elif self.kind == "json":
            self.f.write("[")

    def write(self, row: dict) -> None:
        row = {c: row.get(c, "") for c in self.cols}
        if self.kind == "parquet":
            self.buf.append(row)
            if len(self.buf) >= self.group:
                self._flush()
        elif self.kind == "csv":
            self.w.writerow(row)
        else:
            import json

            if self.kind == "jsonl":
                self.f.write(json.dumps(row) + "\n")
            else:
                self.f.write(("," if self.n else "") + "\n  " + json.dumps(row))
        self.n += 1

    def _flush(self) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        types = {"faces": pa.int64(), "score": pa.float64()}
        schema = pa.schema([(c, types.get(c, pa.string())) for c in self.cols])
        cols = {c: [r[c] for r in self.buf] for c in self.cols}
        cols["faces"] = [int(v) for v in cols["faces"]]
        cols["score"] = [None if v in ("", None) else float(v) for v in cols["score"]]
        table = pa.table({c: cols[c] for c in schema.names}, schema=schema)
        if self._pq is None:
            self._tmp = self.output + ".tmp"
            self._pq = pq.ParquetWriter(self._tmp, schema)
        self._pq.write_table(table)
        self.buf = []

    def abort(self) -> None:
        """Stop without leaving a partial output that looks complete."""
        if self.kind == "parquet":
            if self._pq is not None:
                self._pq.close()
                os.unlink(self._tmp)
        elif self.output:
            self.f.close()

    def close(self) -> None:
        if self.kind == "parquet":
            if self.buf or self._pq is None:
                self._flush()
            self._pq.close()
            os.replace(self._tmp, self.output)
            return
        if self.kind == "json":
            self.f.write("\n]\n")
        if self.output:
            self.f.close()


def run(args) -> int:
    """``predict`` with ``--engine ray`` or a ``.parquet`` output (called by ``model.cli``)."""
    from model.cli import _expand

    files = _expand(args.paths)
    if not files:
        print("error: no image or video files found", file=sys.stderr)
        return 2
    from model.api import ModelNotFound, require_model_dir

    try:
        model_dir = require_model_dir(args.model)
    except ModelNotFound as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if getattr(args, "engine", "local") == "ray":
        rows = score_files(files, str(model_dir), frames=args.frames, strategy=args.strategy,
                           workers=getattr(args, "workers", None), address=getattr(args, "address", None))
    else:
        from model.cli import _load_detector

        det = _load_detector(str(model_dir))
        rows = (det.analyze(f, frames=args.frames, strategy=args.strategy).csv_row() for f in files)
    w = RowWriter(args.output, args.format)
    try:
        for i, r in enumerate(rows, 1):
            w.write(r)
            if not args.quiet and (i % 100 == 0 or i == len(files)):
                print(f"[{i}/{len(files)}] scored", file=sys.stderr, flush=True)
    except BaseException:
        w.abort()
        raise
    w.close()
    return 0

