import numpy as np
import pytest

from model import gradcam


def test_gradcam_shape_range_nonconstant(tiny_detector, astronaut):
    res = tiny_detector.analyze_array(astronaut)
    crop = res.face_results[0].crop
    heat, over = tiny_detector.explain(crop)
    assert heat.shape == (64, 64) and over.shape == (64, 64, 3) and over.dtype == np.uint8
    assert heat.min() >= 0 and heat.max() <= 1
    assert heat.std() > 0.01, "Grad-CAM map is constant"
    # the overlay differs from the crop (the heat map was blended in)
    assert np.abs(over.astype(int) - crop.astype(int)).mean() > 1


def test_real_target_is_a_different_map(tiny_detector, astronaut):
    crop = tiny_detector.analyze_array(astronaut).face_results[0].crop
    fake, _ = tiny_detector.explain(crop, "fake")
    real, _ = tiny_detector.explain(crop, "real")
    assert not np.allclose(fake, real)


def test_normalize_and_overlay_pure_functions():
    cam = np.zeros((4, 4), np.float32)
    assert gradcam.normalize_cam(cam, 16).max() == 0
    cam[1, 1] = 3.0
    n = gradcam.normalize_cam(cam, 16)
    assert n.shape == (16, 16) and n.max() == pytest.approx(1.0)
    img = np.zeros((16, 16, 3), np.uint8)
    o = gradcam.overlay(img, n, alpha=0.5)
    assert o.shape == img.shape and o.max() > 0


def test_matches_tf_keras_vis_reference(tiny_detector, astronaut):
    """Our compiled GradientTape Grad-CAM agrees with tf-keras-vis' Gradcam + ReplaceToLinear."""
    from tf_keras_vis.gradcam import Gradcam
    from tf_keras_vis.utils.model_modifiers import ReplaceToLinear
    from tf_keras_vis.utils.scores import BinaryScore

    crop = tiny_detector.analyze_array(astronaut).face_results[0].crop.astype(np.float32)
    ours, _ = tiny_detector.explain(crop)
    import keras

    clone = keras.models.clone_model(tiny_detector.model)
    clone.set_weights(tiny_detector.model.get_weights())
    ref = Gradcam(clone, model_modifier=ReplaceToLinear(), clone=False)(
        BinaryScore(1.0), crop[None], penultimate_layer="top_activation", normalize_cam=True)[0]
    assert ref.shape == ours.shape
    r = np.corrcoef(ref.ravel(), ours.ravel())[0, 1]
    assert r > 0.95, f"correlation with tf-keras-vis {r:.3f}"
