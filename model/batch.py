"""Batch scoring on Ray: ``python -m model predict SOURCE --engine ray --output out.parquet``.

Files are listed on the driver, then scored by a pool of detector actors (Ray Data ``map_batches`` with an
actor pool: the Keras model and MTCNN are built once per actor, a GPU per actor when the cluster has them).
Each actor runs exactly ``Detector.analyze`` -- the engine the plain CLI runs -- with the driver's limits
(``model.limits``: frame size, video length, decoder memory and time, isolation), and returns each file's full
record (``Result.to_dict()``); the command writes them with the same writer as the local engine
(``model.results``), so every format holds the same rows. Records keep the input order and are streamed to the
output: memory stays bounded for millions of files.

Without ``--address`` (or ``RAY_ADDRESS``) Ray starts in-process on this machine; with one, the same command
runs on a cluster (every node needs the code, the model folder and the files at the same paths, e.g. a
shared file system or a container image plus a mounted bucket).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterator

REPO_ROOT = Path(__file__).resolve().parent.parent
RAY_PIP = 'pip install "ray[data,train]==2.60.0"'


def ray_missing(flag: str, *modules: str) -> str | None:
    """None when Ray (and ``modules``, e.g. ``ray.data``) can be imported; else the one-line error for a command
    run with ``flag``: ``error: --engine ray needs Ray: pip install "ray[data,train]==2.60.0"``."""
    import importlib

    for m in ("ray", *modules):
        try:
            importlib.import_module(m)
        except ImportError as e:
            why = "" if m == "ray" else f" ({m} is missing: {str(e).splitlines()[0] if str(e) else type(e).__name__})"
            return f"error: {flag} needs Ray{why}: {RAY_PIP}"
    return None


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
    """One per actor: the driver's limits are set, the detector (Keras model + MTCNN) is loaded once, then it
    scores a batch of files into full records (``Result.to_dict()``, as JSON text: nested and per-kind fields do
    not fit one Arrow schema)."""

    def __init__(self, model_dir: str | None, frames: int | None, strategy: str, limits=None, detectors=None):
        from model import limits as limits_mod
        from model.api import Detector

        if limits is not None:
            limits_mod.configure(limits)
        self.det = Detector.load(model_dir, detectors=detectors)
        self.frames, self.strategy = frames, strategy

    def __call__(self, batch: dict) -> dict:
        return {"record": [json.dumps(self.det.analyze(p, frames=self.frames, strategy=self.strategy).to_dict())
                           for p in batch["path"]]}


def score_files(files: list[str], model_dir: str | None, frames: int | None = None, strategy: str | None = None,
                workers: int | None = None, address: str | None = None, batch_size: int = 4,
                limits=None, detectors: list[str] | None = None) -> Iterator[dict]:
    """Full records (``Result.to_dict()``) for ``files``, in order, scored by a pool of detector actors on Ray.
    Every actor runs with ``limits`` (default: this process's ``model.limits.current()``), as the driver would.
    ``detectors``: registry keys (the bundled detectors; only without ``model_dir``)."""
    import ray

    from model import limits as limits_mod
    from model.api import require_model_dir
    from model.video import DEFAULT_STRATEGY

    limits = limits or limits_mod.current()
    if detectors:
        model_dir = None  # the registry's folders (checked by registry.parse on the driver)
    else:
        model_dir = str(require_model_dir(model_dir).resolve())  # checked on the driver: actors never load a missing model
    connect(address, num_cpus=workers)
    n, gpu = actor_resources(workers)
    batch_size = max(1, min(batch_size, -(-len(files) // n)))  # small inputs still reach every actor
    ds = ray.data.from_items([{"path": f} for f in files], override_num_blocks=max(1, min(-(-len(files) // batch_size), 100_000)))
    ds = ds.map_batches(_Scorer, fn_constructor_kwargs={"model_dir": model_dir, "frames": frames,
                                                        "strategy": strategy or DEFAULT_STRATEGY, "limits": limits,
                                                        "detectors": detectors},
                        batch_size=batch_size, compute=ray.data.ActorPoolStrategy(size=n, max_tasks_in_flight_per_actor=2),
                        num_cpus=0 if gpu else 1, num_gpus=gpu)
    for row in ds.iter_rows():
        yield json.loads(row["record"])


