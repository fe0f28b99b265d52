"""Regression test of the COMMITTED model: its raw and calibrated scores on two fixed fixtures.

If the bundled model, its card (calibration) or the face-crop contract change, these numbers change: refresh
them on purpose with ``python -m tests.model.test_bundled_model --update`` and say why in the commit.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

EXPECTED = Path(__file__).with_name("bundled_scores.json")


def fixtures() -> dict[str, np.ndarray]:
    from skimage import data

    from tests.conftest import face_frames

    return {"astronaut": data.astronaut(), "astronaut_in_frame": face_frames(data.astronaut(), n=3)[1]}


def measure() -> dict:
    from model.api import BUNDLED_MODEL, Detector

    det = Detector.load(BUNDLED_MODEL)
    out = {"model_card_created": det.card.created, "threshold": det.threshold}
    for name, img in fixtures().items():
        r = det.analyze_array(img)
        out[name] = {"faces": len(r.face_results), "raw_score": round(float(r.raw_score), 6),
                     "score": round(float(r.score), 6), "label": r.label}
    return out


def test_bundled_model_scores_are_unchanged():
    from model.api import BUNDLED_MODEL

    if not (BUNDLED_MODEL / "detector.keras").is_file():
        pytest.fail(f"the bundled model is missing: {BUNDLED_MODEL}")
    exp = json.loads(EXPECTED.read_text())
    got = measure()
    assert got["threshold"] == pytest.approx(exp["threshold"], abs=1e-9)
    for name in fixtures():
        assert got[name]["faces"] == exp[name]["faces"], name
        assert got[name]["raw_score"] == pytest.approx(exp[name]["raw_score"], abs=2e-4), name
        assert got[name]["score"] == pytest.approx(exp[name]["score"], abs=2e-4), name
        assert got[name]["label"] == exp[name]["label"], name


if __name__ == "__main__" and "--update" in sys.argv:
    EXPECTED.write_text(json.dumps(measure(), indent=2) + "\n")
    print(EXPECTED.read_text())
