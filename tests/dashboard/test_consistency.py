"""The app and the CLI give the same label for the same file and model, right at the model's threshold.

The threshold is set just below and exactly at the file's score: a page that rounded the threshold (a slider's
3 decimals) would disagree with the CLI at one of the two. The model's card is rewritten in place between runs,
so this also checks that the app reloads a recalibrated model instead of serving the cached one.
"""
from __future__ import annotations

import json
import shutil

import pytest
from streamlit.testing.v1 import AppTest

from tests.conftest import REPO


def _cli_row(model_dir, path, tmp_path):
    from model import cli

    out = tmp_path / "rows.jsonl"
    assert cli.main(["predict", str(path), "--model", str(model_dir), "--format", "jsonl", "--output", str(out),
                     "--quiet"]) == 0
    return json.loads(out.read_text().splitlines()[0])


def _app_verdict(image_bytes) -> str:
    at = AppTest.from_file(str(REPO / "app_main.py"), default_timeout=60)
    at.run()
    at.file_uploader[0].set_value(("astronaut.png", image_bytes, "image/png")).run()
    assert not at.exception, at.exception
    return next(m.value for m in at.metric if m.label == "Verdict")


def test_app_and_cli_agree_at_the_threshold(monkeypatch, tmp_path, tiny_model_dir, sample_cache_dir, astronaut_png):
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    monkeypatch.setenv("DEEPFAKE_MODEL", str(model))
    monkeypatch.setenv("DEEPFAKE_CACHE", str(sample_cache_dir))
    monkeypatch.chdir(REPO)
    from model.api import Detector

    score = Detector.load(model).analyze(astronaut_png).score  # exact (the CLI prints 6 decimals)
    assert abs(float(_cli_row(model, astronaut_png, tmp_path)["score"]) - score) < 1e-6
    card_path = model / "model_card.json"
    card = json.loads(card_path.read_text())
    for threshold, expected in ((score, "fake"), (score + 1e-6, "real")):
        if not 0.0 < threshold < 1.0:
            pytest.skip(f"score {score} leaves no room for a threshold beside it")
        card["threshold"] = threshold
        card_path.write_text(json.dumps(card))
        row = _cli_row(model, astronaut_png, tmp_path)
        assert row["label"] == expected, (threshold, row)
        verdict = _app_verdict(astronaut_png.read_bytes())
        assert verdict == {"fake": "Likely FAKE", "real": "Likely REAL"}[expected], (threshold, score, verdict)


@pytest.fixture()
def sample_cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")
