import json

import numpy as np
import pytest

from model import network
from model.network import BACKBONES, LAST_CONV, LOGIT, ModelCard, build_detector, load_detector, save_detector

LARGE = {"efficientnet_b5", "efficientnet_b6", "efficientnet_b7"}


@pytest.mark.parametrize(
    "backbone", [pytest.param(b, marks=pytest.mark.slow) if b in LARGE else b for b in BACKBONES])
def test_every_backbone_builds_flat_and_outputs_probability(backbone):
    m = build_detector(backbone, 64)
    x = np.random.default_rng(0).uniform(0, 255, (2, 64, 64, 3)).astype("float32")
    y = np.asarray(m(x, training=False))
    assert y.shape == (2, 1)
    assert np.all((y >= 0) & (y <= 1))
    # one flat graph: no nested Model layers, Grad-CAM targets reachable by name
    import keras

    assert not any(isinstance(layer, keras.Model) for layer in m.layers)
    assert m.get_layer(LAST_CONV).output.shape[-1] > 0
    assert m.get_layer(LOGIT).output.shape[-1] == 1


def test_unknown_backbone_and_bad_size_rejected():
    with pytest.raises(ValueError, match="unknown backbone"):
        build_detector("resnet50", 64)
    with pytest.raises(ValueError):
        build_detector("efficientnet_b0", 16)


def test_save_load_identical_outputs_and_card(tmp_path):
    m = build_detector("efficientnet_lite0", 64)
    card = ModelCard(backbone="efficientnet_lite0", input_size=64, threshold=0.42, trained=True, metrics={"auc": 0.9})
    save_detector(m, card, tmp_path / "m")
    m2, card2 = load_detector(tmp_path / "m")
    x = np.random.default_rng(1).uniform(0, 255, (3, 64, 64, 3)).astype("float32")
    np.testing.assert_allclose(np.asarray(m(x)), np.asarray(m2(x)), rtol=0, atol=1e-6)
    assert card2.threshold == 0.42 and card2.metrics == {"auc": 0.9} and card2.trained
    assert json.loads((tmp_path / "m" / "model_card.json").read_text())["backbone"] == "efficientnet_lite0"
    assert not list((tmp_path / "m").glob("*.tmp*"))


def test_load_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_detector(tmp_path / "nothing")


# Layouts read off the wheels' state dicts (blocks per stage, output channels per stage).
@pytest.mark.parametrize("backbone,repeats,widths", [
    ("efficientnet_lite0", (1, 2, 2, 3, 3, 4, 1), (16, 24, 40, 80, 112, 192, 320)),
    ("efficientnet_lite1", (1, 3, 3, 4, 4, 5, 1), (16, 24, 40, 80, 112, 192, 320)),
    ("efficientnet_lite2", (1, 3, 3, 4, 4, 5, 1), (16, 24, 48, 88, 120, 208, 352)),
])
def test_lite_block_specs_follow_lite_scaling(backbone, repeats, widths):
    import itertools

    specs = network.lite_block_specs(backbone)
    stages = [(cout, len(list(g))) for cout, g in itertools.groupby(specs, key=lambda s: s[4])]
    assert tuple(c for c, _ in stages) == widths and tuple(n for _, n in stages) == repeats
    assert specs[0] == (1, 3, 1, 32, 16)  # fixed 32-channel stem feeds block 0
    assert [s[2] for s in specs].count(2) == 4  # 4 stride-2 blocks + stride-2 stem: /32


@pytest.mark.parametrize("backbone", list(network.LITE_VARIANTS))
def test_lite_detector_head_and_classifier(backbone):
    m = build_detector(backbone, 64)
    assert m.get_layer(LAST_CONV).output.shape[1:] == (2, 2, 1280)  # head fixed at 1280
    assert not any("se_" in layer.name or "swish" in layer.name for layer in m.layers)  # no squeeze-excite
    assert m.get_layer(LAST_CONV).max_value == 6.0  # ReLU6
    clf = network.build_lite_classifier(backbone)
    assert clf.input_shape[1] == network.LITE_VARIANTS[backbone].resolution and clf.output_shape == (None, 1000)
    with pytest.raises(ValueError, match="no download"):
        build_detector(backbone, 64, weights="imagenet")
