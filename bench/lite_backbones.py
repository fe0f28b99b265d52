"""Benchmark: EfficientNet-Lite0/1/2 detectors -- single-image CPU inference time, parameters, saved size.

    python -m bench.lite_backbones [--rounds 15] [--configs lite0:128,lite0:160,...]

Builds each detector (random init: weights do not change the speed) with the engine's own call
(``tf.function`` of ``model(x, training=False)``, one 1-image batch), and times all configs **side by side**:
each round runs every config once in a shuffled order, so background load hits all of them alike. Prints the
median ms per image, ``ratio`` = median / the first config's median (default Lite0 at 128 px, the bundled model),
the parameter counts (backbone and whole detector) and the size of the saved ``detector.keras``. Not a test.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

DEFAULT = ("lite0:128,lite0:160,lite0:224,lite1:128,lite1:160,lite1:240,lite2:128,lite2:160,lite2:260")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--configs", default=DEFAULT, help="comma-separated VARIANT:SIZE (first = reference)")
    a = ap.parse_args(argv)

    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")  # one tf.function per config is intended

    from model.network import ModelCard, build_detector, save_detector

    rng = np.random.default_rng(0)
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for cfg in a.configs.split(","):
            variant, size = cfg.split(":")
            backbone, size = f"efficientnet_{variant}", int(size)
            m = build_detector(backbone, size)
            spec = tf.TensorSpec([None, size, size, 3], tf.float32)
            f = tf.function(lambda x, m=m: m(x, training=False)[:, 0], input_signature=[spec], autograph=False)
            x = tf.constant(rng.uniform(0, 255, (1, size, size, 3)).astype(np.float32))
            for _ in range(3):
                f(x).numpy()  # trace + warm up
            d = Path(tmp) / cfg.replace(":", "_")
            save_detector(m, ModelCard(backbone=backbone, input_size=size), d)
            head = sum(int(np.prod(w.shape)) for l in m.layers if l.name.startswith("head_") or l.name == "logit"
                       for w in l.weights)
            runs.append(dict(cfg=cfg, f=f, x=x, times=[], params=m.count_params(),
                             backbone_params=m.count_params() - head, mb=(d / "detector.keras").stat().st_size / 1e6))
        for _ in range(a.rounds):
            for i in rng.permutation(len(runs)):
                r = runs[i]
                t0 = time.perf_counter()
                r["f"](r["x"]).numpy()
                r["times"].append(time.perf_counter() - t0)
    ref = float(np.median(runs[0]["times"]))
    print(f"{'config':<10} {'ms/image':>9} {'ratio':>6} {'backbone params':>16} {'detector params':>16} "
          f"{'.keras MB':>10}")
    for r in runs:
        med = float(np.median(r["times"]))
        print(f"{r['cfg']:<10} {med * 1e3:9.1f} {med / ref:6.2f} {r['backbone_params']:16,d} {r['params']:16,d} "
              f"{r['mb']:10.1f}")
    print(f"rounds: {a.rounds}; threads: inter {tf.config.threading.get_inter_op_parallelism_threads()}, "
          f"intra {tf.config.threading.get_intra_op_parallelism_threads()} (0 = all cores); cpus: {os.cpu_count()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
