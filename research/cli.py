"""``python -m research {lomo,learning-curve}``: experiments about the training recipe, apart from the product.

    python -m research lomo CONFIG [--out DIR] [--epochs N] [--steps N]   # leave-one-method-out
    python -m research learning-curve CONFIG [--per-video N]                # AUC vs number of identity groups
"""
from __future__ import annotations

import argparse
import logging
import pickle
import sys


def cmd_learning_curve(a) -> int:
    from research import learning_curve

    s = learning_curve.run(a.config, out=a.out, ns=a.n, repeats=a.repeats, per_video=a.per_video, C=a.C,
                           seed=a.seed, threads=a.threads)
    print(f"learning curve ({s['method']})")
    print(f"train groups {len(s['train_groups'])} ({s['n_train_files_all']} files, {s['n_train_crops_all']} crops); "
          f"validation {s['n_val_files']} files ({s['n_val_files_fake']} fake) / {s['n_val_crops']} crops "
          f"from {len(s['val_groups'])} groups; {s['per_video'] or 'all'} crops per file at most")
    print(learning_curve.format_table(s["curve"]))
    print(f"-> {s['out']}/{learning_curve.CSV}, {learning_curve.JSON} ({s['seconds']:.0f} s)")
    return 0


def cmd_lomo(a) -> int:
    from research import lomo

    r = lomo.lomo(a.config, a.out, methods=a.methods, epochs=a.epochs, steps=a.steps, splits=a.splits,
                  n_boot=a.bootstrap)
    print(f"leave-one-method-out on the {'+'.join(a.splits)} split (AUC [95 % CI, identity-group bootstrap]; "
          f"scored with each fold's last epoch)\n")
    print(r["table"])
    print()
    print(r["file_table"])
    print("\n" + "; ".join(f"{f}: {i['epochs']}x{i['steps']} steps, {i['train_minutes']} min"
                           for f, i in r["folds"].items()))
    print(f"-> {r['csv']}")
    return 0


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    ap = argparse.ArgumentParser(prog="python -m research", description="DeepFake-Detect research experiments")
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("learning-curve", help="validation AUC vs number of training identity groups "
                                              "(linear probe on frozen backbone features; cheap on a CPU)")
    p.add_argument("config")
    p.add_argument("--out", default="runs/_learning_curve", help="output folder (feature cache, CSV, JSON)")
    p.add_argument("--n", type=int, nargs="+", help="identity-group counts (default 2, 4, 8, ... and all)")
    p.add_argument("--repeats", type=int, default=5, help="seeded draws of groups per n (one draw when n = all)")
    p.add_argument("--per-video", type=int, default=8, help="crops per file at most, evenly spaced (0: all)")
    p.add_argument("--C", type=float, default=1.0, help="inverse L2 strength of the logistic regression")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="TensorFlow CPU threads for feature extraction (0: default)")
    p.set_defaults(func=cmd_learning_curve)
    p = sub.add_parser("lomo", help="leave-one-method-out: train without each FF++ method in turn, AUC on it")
    p.add_argument("config")
    p.add_argument("--out", default="runs/_lomo", help="output folder (one run per fold, lomo.csv)")
    p.add_argument("--epochs", type=int, help="epochs per fold (default: the config's)")
    p.add_argument("--steps", type=int, help="steps per epoch (default: the config's)")
    from research.lomo import FFPP_METHODS

    p.add_argument("--methods", nargs="+", default=list(FFPP_METHODS), help="methods to hold out (default: FF++'s four)")
    p.add_argument("--splits", nargs="+", choices=("val", "test"), default=["val"],
                   help="splits scored (default val; test adds the test groups)")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples of identity groups")
    p.set_defaults(func=cmd_lomo)
    a = ap.parse_args(argv)
    try:
        return a.func(a)
    except (ValueError, FileNotFoundError, pickle.UnpicklingError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
