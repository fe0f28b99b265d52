"""Calibration: fitted at the file level, stored as plain numbers, applied by the engine."""
import json

import numpy as np
import pytest

from model.calibration import Calibration, fit


def test_platt_recovers_a_known_miscalibration():
    rng = np.random.default_rng(0)
    true_p = rng.uniform(0.02, 0.98, 4000)
    y = (rng.uniform(size=4000) < true_p).astype(int)
    # an over-confident model: logit doubled
    raw = 1 / (1 + np.exp(-2 * np.log(true_p / (1 - true_p))))
    cal = fit(y, raw, groups=np.arange(4000) % 50, methods=("platt",))
    assert cal.method == "platt"
    assert cal.a == pytest.approx(0.5, abs=0.08) and abs(cal.b) < 0.15
    assert cal.selection["cv_log_loss"]["platt"] < cal.selection["cv_log_loss"]["none"]
    np.testing.assert_allclose(cal.apply(raw), true_p, atol=0.06)


def test_isotonic_is_monotone_and_json_round_trips():
    rng = np.random.default_rng(1)
    raw = rng.uniform(size=600)
    y = (rng.uniform(size=600) < raw ** 3).astype(int)  # far from the identity
    cal = fit(y, raw, groups=np.arange(600) % 30)
    d = json.loads(json.dumps(cal.to_dict()))  # plain numbers only
    back = Calibration.from_dict(d)
    grid = np.linspace(0, 1, 101)
    np.testing.assert_allclose(back.apply(grid), cal.apply(grid))
    assert np.all(np.diff(back.apply(grid)) >= -1e-12)
    assert cal.method in ("platt", "isotonic") and cal.apply(0.5) < 0.35  # 0.5**3 = 0.125 in truth


def test_already_calibrated_scores_keep_none_or_near_identity():
    rng = np.random.default_rng(2)
    p = rng.uniform(size=3000)
    y = (rng.uniform(size=3000) < p).astype(int)
    cal = fit(y, p, groups=np.arange(3000) % 40)
    np.testing.assert_allclose(cal.apply(np.array([0.1, 0.5, 0.9])), [0.1, 0.5, 0.9], atol=0.07)


def test_bad_inputs():
    with pytest.raises(ValueError, match="real and fake"):
        fit([0, 0, 0], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="unknown calibration"):
        Calibration("magic")
    with pytest.raises(ValueError, match="knots"):
        Calibration("isotonic", x=[0.5], y=[0.5])
    assert Calibration().apply(0.3) == pytest.approx(0.3)
    assert Calibration("platt", a=1.0, b=0.0).apply(0.73) == pytest.approx(0.73, abs=1e-6)


def test_engine_applies_the_cards_calibration(tiny_model_dir, tmp_path, astronaut):
    import shutil

    from model.api import Detector

    d = tmp_path / "m"
    shutil.copytree(tiny_model_dir, d)
    card = json.loads((d / "model_card.json").read_text())
    card["calibration"] = {"method": "platt", "a": 1.0, "b": 2.0}
    (d / "model_card.json").write_text(json.dumps(card))
    det = Detector.load(d)
    res = det.analyze_array(astronaut)
    assert res.face_results, "the astronaut has a face"
    raw = res.raw_score
    expect = 1 / (1 + np.exp(-(np.log(raw / (1 - raw)) + 2.0)))
    assert res.score == pytest.approx(expect, abs=1e-6) and res.score > raw
    assert res.face_results[0].score == pytest.approx(det.calibrate(res.face_results[0].raw_score))
    assert json.loads(res.to_json())["raw_score"] == pytest.approx(raw, abs=1e-6)
