"""``python -m training train CONFIG --workers N [--address ...]``: multi-worker training on Ray Train.

Ray Train's ``TensorflowTrainer`` starts N workers (one GPU each when ``use_gpu``; else one CPU each) and sets
``TF_CONFIG`` on each, so ``tf.distribute.MultiWorkerMirroredStrategy`` forms one synchronous data-parallel job:
every worker runs ``training.train.train`` with that strategy, draws its own seeded stream of training crops,
evaluates a 1/N slice of the validation crops (metrics are all-reduced), and worker 0 (the chief) writes the run
folder. ``batch_size`` is per replica and the learning rate scales linearly with the replicas (``training.train``).

Checkpoints and resume: the run folder must be on a path every worker sees (NFS, a mounted bucket): the chief
writes ``checkpoints/backup`` after every epoch and every worker restores from it when the same command is run
again (or when Ray Train restarts the group after a worker failure, ``max_failures``).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path


def _worker(config: dict) -> None:
    import tensorflow as tf
    from ray import train as ray_train

    from training import train as train_mod

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    ctx = ray_train.get_context()
    rank = ctx.get_world_rank()
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    run = train_mod.train(config["config"], run_dir=config["run_dir"], resume=config["resume"], strategy=strategy,
                          chief=rank == 0, worker_seed=rank)
    ray_train.report({"run": str(run), "rank": rank})


def train(config_path: str | Path, workers: int, run_dir: str | Path | None = None, resume: bool = True,
          address: str | None = None, use_gpu: bool | None = None, max_failures: int = 1) -> Path:
    """Train CONFIG with ``workers`` Ray Train workers (MultiWorkerMirroredStrategy) -> the run folder."""
    import ray
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.tensorflow import TensorflowTrainer

    from model.api import REPO_ROOT
    from model.batch import connect
    from training import config as config_mod

    if workers < 1:
        raise ValueError("--workers must be >= 1")
    cfg = config_mod.load(config_path)  # fail fast, before any worker starts
    run = Path(run_dir).resolve() if run_dir else REPO_ROOT / "runs" / cfg.name
    if run.exists() and not resume:
        import shutil

        shutil.rmtree(run)
    run.mkdir(parents=True, exist_ok=True)
    connect(address, num_cpus=None if address else max(workers, os.cpu_count() or 1))
    if use_gpu is None:
        use_gpu = ray.cluster_resources().get("GPU", 0) >= workers
    trainer = TensorflowTrainer(
        _worker,
        train_loop_config={"config": str(Path(config_path).resolve()), "run_dir": str(run), "resume": True},
        scaling_config=ScalingConfig(num_workers=workers, use_gpu=use_gpu,
                                     resources_per_worker=None if use_gpu else {"CPU": 1}),
        run_config=RunConfig(name=f"{cfg.name}-ray", storage_path=str(run / "ray"),
                             failure_config=FailureConfig(max_failures=max_failures)),
    )
    print(f"train (ray): {workers} workers ({'GPU' if use_gpu else 'CPU'}), run folder {run}", file=sys.stderr)
    result = trainer.fit()
    if getattr(result, "error", None):
        raise RuntimeError(f"Ray Train failed: {result.error}")
    if not (run / "model" / "detector.keras").is_file():
        raise RuntimeError(f"training finished without a model in {run / 'model'}: see the worker logs")
    return run
