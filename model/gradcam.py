"""Grad-CAM (Selvaraju et al.) for the detector's real/fake output, as small pure functions.

The gradient is taken of the pre-sigmoid ``logit`` (the same effect as tf-keras-vis' ``ReplaceToLinear``)
with respect to the last convolutional activation ``top_activation``, inside one compiled
``tf.function`` (about 20x faster than tf-keras-vis' Gradcam here).
"""
from __future__ import annotations

import cv2
import keras
import numpy as np
import tensorflow as tf

from model.network import LAST_CONV, LOGIT


def grad_model(model: keras.Model, layer: str = LAST_CONV) -> keras.Model:
    """A model mapping the image to (last-conv activations, logit)."""
    return keras.Model(model.inputs, [model.get_layer(layer).output, model.get_layer(LOGIT).output])


def make_gradcam_fn(model: keras.Model, layer: str = LAST_CONV):
    """Return ``fn(batch, target) -> (N, h, w) CAMs`` for target 'fake' (+logit) or 'real' (-logit)."""
    gm = grad_model(model, layer)

    @tf.function(reduce_retracing=True, autograph=False)
    def _cam(x, sign):
        with tf.GradientTape() as tape:
            acts, logit = gm(x, training=False)
            target = sign * tf.reduce_sum(logit)
        grads = tape.gradient(target, acts)
        weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
        return tf.nn.relu(tf.reduce_sum(weights * acts, axis=-1))

    def fn(batch: np.ndarray, target: str = "fake") -> np.ndarray:
        sign = tf.constant(1.0 if target == "fake" else -1.0)
        return _cam(tf.convert_to_tensor(np.asarray(batch, np.float32)), sign).numpy()

    return fn


def normalize_cam(cam: np.ndarray, size: int) -> np.ndarray:
    """Upsample a (h, w) CAM to size x size and scale to [0, 1] (all zeros stays zeros)."""
    c = cv2.resize(cam.astype(np.float32), (size, size), interpolation=cv2.INTER_CUBIC)
    c = np.maximum(c, 0)
    m = float(c.max())
    return c / m if m > 0 else c


def overlay(image: np.ndarray, heat: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """Blend a [0, 1] heat map (JET colour map) over an RGB uint8 image of the same size."""
    h = cv2.resize(heat, (image.shape[1], image.shape[0])) if heat.shape[:2] != image.shape[:2] else heat
    colored = cv2.applyColorMap(np.uint8(255 * np.clip(h, 0, 1)), cv2.COLORMAP_JET)[..., ::-1]
    return np.uint8(np.clip((1 - alpha) * image.astype(np.float32) + alpha * colored, 0, 255))
