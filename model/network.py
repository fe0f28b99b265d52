"""Detector network factory, model card and safe save/load.

Every detector is ONE flat functional Keras graph:

    raw RGB pixels 0-255 -> backbone (... -> ``top_activation``) -> global average pooling
    -> Dense 512 ReLU -> Dropout -> Dense 128 ReLU -> Dense 1 (``logit``) -> sigmoid (``p_fake``)

so Grad-CAM can reach ``top_activation`` and the pre-sigmoid ``logit`` directly, and the
output is P(fake) in [0, 1].
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import math
import os
from pathlib import Path
from typing import Any, Callable

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
from keras import layers  # noqa: E402

from model import __version__  # noqa: E402

MODEL_FILE = "detector.keras"
CARD_FILE = "model_card.json"
LAST_CONV = "top_activation"
LOGIT = "logit"

_APPS: dict[str, Callable[..., keras.Model]] = {
    "efficientnet_b0": keras.applications.EfficientNetB0,
    "efficientnet_b1": keras.applications.EfficientNetB1,
    "efficientnet_b2": keras.applications.EfficientNetB2,
    "efficientnet_b3": keras.applications.EfficientNetB3,
    "efficientnet_b4": keras.applications.EfficientNetB4,
    "efficientnet_b5": keras.applications.EfficientNetB5,
    "efficientnet_b6": keras.applications.EfficientNetB6,
    "efficientnet_b7": keras.applications.EfficientNetB7,
    "efficientnetv2_b0": keras.applications.EfficientNetV2B0,
    "efficientnetv2_b1": keras.applications.EfficientNetV2B1,
    "efficientnetv2_b2": keras.applications.EfficientNetV2B2,
    "efficientnetv2_b3": keras.applications.EfficientNetV2B3,
}


# --------------------------------------------------------------------------- EfficientNet-Lite0/1/2
# Base stages, as B0: (expand ratio, kernel, stride, in channels, out channels, repeats).
# Lite drops squeeze-excite, uses ReLU6, keeps the stem (32) and head (1280) fixed and does not scale the
# repeats of the first and last stage; channels scale by ``width`` (rounded to multiples of 8) and the
# other stages' repeats by ``ceil(depth * repeats)``.
LITE_BASE_STAGES = (
    (1, 3, 1, 32, 16, 1),
    (6, 3, 2, 16, 24, 2),
    (6, 5, 2, 24, 40, 2),
    (6, 3, 2, 40, 80, 3),
    (6, 5, 1, 80, 112, 3),
    (6, 5, 2, 112, 192, 4),
    (6, 3, 1, 192, 320, 1),
)


@dataclasses.dataclass(frozen=True)
class LiteVariant:
    width: float
    depth: float
    resolution: int  # native ImageNet input size


LITE_VARIANTS: dict[str, LiteVariant] = {
    "efficientnet_lite0": LiteVariant(1.0, 1.0, 224),
    "efficientnet_lite1": LiteVariant(1.0, 1.1, 240),
    "efficientnet_lite2": LiteVariant(1.1, 1.2, 260),
}
# ImageNet normalisation of the PyTorch Lite weights (torchvision mean/std, in 0-255 units).
LITE_MEAN = (0.485 * 255, 0.456 * 255, 0.406 * 255)
LITE_STD = (0.229 * 255, 0.224 * 255, 0.225 * 255)
BN_EPS = 1e-3
LITE_STEM, LITE_HEAD = 32, 1280
BACKBONES: tuple[str, ...] = tuple(_APPS) + tuple(LITE_VARIANTS)


def _lite_variant(backbone: str) -> LiteVariant:
    if backbone not in LITE_VARIANTS:
        raise ValueError(f"unknown EfficientNet-Lite backbone {backbone!r}; choose one of: {', '.join(LITE_VARIANTS)}")
    return LITE_VARIANTS[backbone]


def _round_filters(c: int, width: float, divisor: int = 8) -> int:
    if width == 1.0:
        return c
    c *= width
    new = max(divisor, int(c + divisor / 2) // divisor * divisor)
    return int(new + divisor) if new < 0.9 * c else int(new)


def lite_block_specs(backbone: str = "efficientnet_lite0") -> list[tuple[int, int, int, int, int]]:
    """One (expand, kernel, stride, in, out) tuple per block, in weight order (Lite0: 16, Lite1/2: 21)."""
    v = _lite_variant(backbone)
    last = len(LITE_BASE_STAGES) - 1
    specs = []
    for i, (expand, k, s, cin, cout, reps) in enumerate(LITE_BASE_STAGES):
        cin = LITE_STEM if i == 0 else _round_filters(cin, v.width)
        cout = _round_filters(cout, v.width)
        if 0 < i < last:
            reps = math.ceil(v.depth * reps)
        for r in range(reps):
            specs.append((expand, k, s if r == 0 else 1, cin if r == 0 else cout, cout))
    return specs


def _lite_features(inp: keras.KerasTensor, backbone: str) -> keras.KerasTensor:
    var = [s * s for s in LITE_STD]
    x = layers.Normalization(mean=list(LITE_MEAN), variance=var, name="lite_normalize")(inp)
    x = layers.Conv2D(LITE_STEM, 3, strides=2, padding="same", use_bias=False, name="stem_conv")(x)
    x = layers.BatchNormalization(epsilon=BN_EPS, name="stem_bn")(x)
    x = layers.ReLU(6.0, name="stem_activation")(x)
    for i, (expand, k, s, cin, cout) in enumerate(lite_block_specs(backbone)):
        p = f"block{i:02d}_"
        shortcut = x
        if expand != 1:
            x = layers.Conv2D(cin * expand, 1, padding="same", use_bias=False, name=p + "expand_conv")(x)
            x = layers.BatchNormalization(epsilon=BN_EPS, name=p + "expand_bn")(x)
            x = layers.ReLU(6.0, name=p + "expand_activation")(x)
        x = layers.DepthwiseConv2D(k, strides=s, padding="same", use_bias=False, name=p + "dwconv")(x)
        x = layers.BatchNormalization(epsilon=BN_EPS, name=p + "bn")(x)
        x = layers.ReLU(6.0, name=p + "activation")(x)
        x = layers.Conv2D(cout, 1, padding="same", use_bias=False, name=p + "project_conv")(x)
        x = layers.BatchNormalization(epsilon=BN_EPS, name=p + "project_bn")(x)
        if s == 1 and cin == cout:
            x = layers.Add(name=p + "add")([x, shortcut])
    x = layers.Conv2D(LITE_HEAD, 1, padding="same", use_bias=False, name="top_conv")(x)
    x = layers.BatchNormalization(epsilon=BN_EPS, name="top_bn")(x)
    return layers.ReLU(6.0, name=LAST_CONV)(x)


def build_lite_classifier(backbone: str = "efficientnet_lite0", input_size: int | None = None) -> keras.Model:
    """EfficientNet-Lite with its 1000-class ImageNet head (logits; used to verify converted weights).

    ``input_size`` defaults to the variant's native resolution (224 / 240 / 260).
    """
    size = input_size or _lite_variant(backbone).resolution
    inp = keras.Input((size, size, 3), name="image")
    x = _lite_features(inp, backbone)
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    out = layers.Dense(1000, name="predictions")(x)
    return keras.Model(inp, out, name=f"{backbone}_imagenet")


# --------------------------------------------------------------------------- the detector
def build_detector(
    backbone: str = "efficientnet_b0",
    input_size: int = 128,
    weights: str | None = None,
    dropout: float = 0.3,
    dense_units: tuple[int, int] = (512, 128),
) -> keras.Model:
    """Build a detector: flat functional graph, raw 0-255 RGB in, P(fake) out.

    ``weights``: None (random init), ``"imagenet"`` (keras.applications download; needs internet),
    or for ``efficientnet_lite0/1/2`` a path to converted ImageNet weights
    (``python -m training convert-lite --variant lite0|lite1|lite2``).
    """
    if backbone not in BACKBONES:
        raise ValueError(f"unknown backbone {backbone!r}; choose one of: {', '.join(BACKBONES)}")
    if input_size < 32:
        raise ValueError("input_size must be at least 32 pixels")
    inp = keras.Input((input_size, input_size, 3), name="image")
    if backbone in LITE_VARIANTS:
        feats = _lite_features(inp, backbone)
        if weights == "imagenet":
            raise ValueError(f"{backbone} has no download; pass the converted weights file path")
    else:
        if weights not in (None, "imagenet"):
            raise ValueError("weights must be None or 'imagenet' for keras.applications backbones")
        bb = _APPS[backbone](include_top=False, weights=weights, input_tensor=inp)
        feats = bb.output
    x = layers.GlobalAveragePooling2D(name="head_pool")(feats)
    x = layers.Dense(dense_units[0], activation="relu", name="head_dense1")(x)
    x = layers.Dropout(dropout, name="head_dropout")(x)
    x = layers.Dense(dense_units[1], activation="relu", name="head_dense2")(x)
    x = layers.Dense(1, name=LOGIT)(x)
    out = layers.Activation("sigmoid", name="p_fake", dtype="float32")(x)
    model = keras.Model(inp, out, name=f"detector_{backbone}")
    if backbone in LITE_VARIANTS and weights:
        load_backbone_weights(model, weights)
    return model


def load_backbone_weights(model: keras.Model, path: str | os.PathLike) -> int:
    """Copy converted EfficientNet-Lite weights (``.weights.npz`` by layer name) into matching layers."""
    import numpy as np

    with np.load(path, allow_pickle=False) as data:
        groups: dict[str, list[tuple[int, Any]]] = {}
        for key in data.files:
            name, idx = key.rsplit("/", 1)
            groups.setdefault(name, []).append((int(idx), data[key]))
    copied = 0
    for layer in model.layers:
        if layer.name in groups:
            arrays = [a for _, a in sorted(groups[layer.name], key=lambda t: t[0])]
            layer.set_weights(arrays)
            copied += 1
    if copied == 0:
        raise ValueError(f"{path}: no layer of the model matched the weights file")
    return copied


# --------------------------------------------------------------------------- model card
@dataclasses.dataclass
class ModelCard:
    backbone: str
    input_size: int
    face_margin: float = 0.3
    threshold: float = 0.5
    trained: bool = False
    trained_on: str = "nothing (random initialisation)"
    pretrained_from: str | None = None
    metrics: dict[str, Any] = dataclasses.field(default_factory=dict)
    run: str | None = None
    created: str = dataclasses.field(default_factory=lambda: _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
    package_version: str = __version__
    notes: str = ""
    crop_spec: dict[str, Any] = dataclasses.field(default_factory=dict)  # model.crops.CropSpec as a dict
    calibration: dict[str, Any] = dataclasses.field(default_factory=dict)  # model.calibration.Calibration
    threshold_policy: str = ""  # how the threshold was chosen (on calibrated file scores)
    detects: str = ""  # what it detects, a few plain words (model.registry.CARD_DEFAULTS for older cards)
    looks_for: str = ""  # one plain-language line on what it looks for

    def spec(self):
        """The face-crop contract this model was trained with (older cards: size and margin only)."""
        from model.crops import CropSpec

        if self.crop_spec:
            return CropSpec.from_dict(self.crop_spec)
        return CropSpec(size=int(self.input_size), margin=float(self.face_margin))

    def calibrator(self):
        from model.calibration import Calibration

        return Calibration.from_dict(self.calibration)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ModelCard":
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


def save_detector(model: keras.Model, card: ModelCard, directory: str | os.PathLike) -> Path:
    """Write ``detector.keras`` and ``model_card.json`` atomically (temp file then rename)."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    tmp = d / (MODEL_FILE + ".tmp.keras")
    model.save(tmp)
    os.replace(tmp, d / MODEL_FILE)
    tmpc = d / (CARD_FILE + ".tmp")
    tmpc.write_text(json.dumps(card.to_dict(), indent=2) + "\n")
    os.replace(tmpc, d / CARD_FILE)
    return d


def load_detector(directory: str | os.PathLike) -> tuple[keras.Model, ModelCard]:
    """Load a saved detector folder with Keras ``safe_mode=True`` (no arbitrary code)."""
    d = Path(directory)
    mf, cf = d / MODEL_FILE, d / CARD_FILE
    if not mf.is_file():
        raise FileNotFoundError(f"no {MODEL_FILE} in {d}")
    model = keras.models.load_model(mf, compile=False, safe_mode=True)
    if cf.is_file():
        card = ModelCard.from_dict(json.loads(cf.read_text()))
    else:
        card = ModelCard(backbone="unknown", input_size=int(model.input_shape[1]), notes="no model card found")
    return model, card
