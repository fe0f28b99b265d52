"""Every entry point reads the same defaults: the CLI's ``predict``, ``python -m model evaluate`` (test-set
scoring), the Python API and the app's scoring helpers give one score for one file (frames per video from the
model card's crop contract, the engine's aggregation strategy)."""
from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest


@pytest.fixture()
def clip_set(tmp_path, face_video):
    d = tmp_path / "set"
    (d / "fake").mkdir(parents=True)
    shutil.copy(face_video, d / "fake" / "clip.mp4")
    return d


@pytest.fixture(scope="module")
def spread_model_dir(tiny_model_dir, tmp_path_factory):
    """The tiny model with its logit scaled up: random weights give P(fake) within 1e-6 of 0.5, too close for the
    6-decimal outputs to tell two frame counts apart; scaled, they differ in the second decimal."""
    from model.network import LOGIT, load_detector, save_detector

    model, card = load_detector(tiny_model_dir)
    layer = model.get_layer(LOGIT)
    layer.kernel.assign(layer.kernel * 1e5)
    layer.bias.assign(layer.bias * 1e5)
    return save_detector(model, card, tmp_path_factory.mktemp("spread") / "model")


def test_one_file_one_score_everywhere(clip_set, spread_model_dir, tmp_path, capsys):
    from dashboard import detect, own_test_set
    from model import cli
    from model.api import Detector

    clip = clip_set / "fake" / "clip.mp4"
    det = Detector.load(spread_model_dir)
    assert det.spec.frames == 4  # the fixture's card; the clip has 20 frames, so the count matters
    api = round(det.analyze(clip).score, 6)
    assert abs(det.analyze(clip, frames=16).score - api) > 1e-4  # another frame count gives another answer

    assert cli.main(["predict", str(clip), "--model", str(spread_model_dir), "--format", "jsonl", "--quiet"]) == 0
    predict = json.loads(capsys.readouterr().out)["score"]
    assert cli.main(["evaluate", str(clip_set), "--model", str(spread_model_dir), "--output", str(tmp_path / "e.csv"),
                     "--quiet"]) == 0
    evaluate = pd.read_csv(tmp_path / "e.csv").set_index("name").loc["fake/clip.mp4", "score"]
    from model import testset

    with testset.open_test_set(clip_set) as ts:
        library = testset.score(det, ts).set_index("name").loc["fake/clip.mp4", "score"]
    upload = detect.analyze_upload(det, "clip.mp4", clip.read_bytes()).score
    state = own_test_set.run_test_set(det, clip_set, key="same-defaults")
    page = state["table"].set_index("name").loc["fake/clip.mp4", "score"]
    assert predict == api
    assert round(float(evaluate), 6) == api
    assert round(library, 6) == api
    assert round(upload, 6) == api
    assert round(float(page), 6) == api
