"""Several detectors in one engine: the registry, crops cut once per contract, per-detector results and the
combined verdict."""
import csv
import io
import json

import numpy as np
import pytest

from model import registry, results
from model.api import Detector, Scorer


@pytest.mark.parametrize("labels,verdict", [
    (["real", "real"], "real"), (["real", "fake"], "fake"), (["fake", "unknown"], "fake"),
    (["real", "unknown"], "unknown"), (["unknown", "unknown"], "unknown"), ([], "unknown"), (["real"], "real"),
])
def test_combined_verdict_rule(labels, verdict):
    assert registry.combine(labels) == verdict
    assert "any" in registry.VERDICT_RULE and "every" in registry.VERDICT_RULE


def test_registry_names_and_errors():
    assert registry.keys()[0] == registry.DEFAULT == "faceswap" and "generated" in registry.keys()
    assert registry.parse("faceswap") == ["faceswap"]
    assert registry.parse(" faceswap , faceswap") == ["faceswap"]
    assert registry.parse(None) == [e.key for e in registry.available()]
    with pytest.raises(registry.RegistryError, match="unknown detector 'nope'; choose from faceswap"):
        registry.parse("faceswap,nope")
    with pytest.raises(registry.RegistryError, match="at least one"):
        registry.parse(" , ")


def _card(key_margin: float, threshold: float, detects: str, size: int = 64):
    from model.crops import CropSpec
    from model.network import ModelCard

    return ModelCard(backbone="efficientnet_b0", input_size=size, trained=True, threshold=threshold,
                     detects=detects, looks_for=f"{detects} traces",
                     crop_spec=CropSpec(size=size, margin=key_margin, frames=4).to_dict())


@pytest.fixture(scope="module")
def two_models():
    import keras

    from model.network import build_detector

    keras.utils.set_random_seed(1)
    a, b = build_detector("efficientnet_b0", 64), build_detector("efficientnet_b0", 64)
    head = [layer for layer in b.layers if layer.weights][-1]  # the output layer: shift its logit bias
    w = head.get_weights()
    head.set_weights([*w[:-1], w[-1] + 1.5])
    return a, b


def _pair(two_models, margin2: float, t1=0.5, t2=0.5) -> Detector:
    a, b = two_models
    return Detector(scorers=[Scorer(a, _card(0.3, t1, "face swaps"), key="faceswap"),
                             Scorer(b, _card(margin2, t2, "generated faces"), key="generated")])


def test_two_detectors_score_each_face_and_share_crops(two_models, astronaut, monkeypatch):
    from model import api

    cuts = []
    real_cut = api.crop_box_image
    monkeypatch.setattr(api, "crop_box_image", lambda *a, **k: cuts.append(1) or real_cut(*a, **k))
    det = _pair(two_models, margin2=0.3)  # same contract: the detection's crop serves both
    res = det.analyze_array(astronaut)
    assert cuts == [] and res.faces == 1 and list(res.detectors) == ["faceswap", "generated"]
    f = res.face_results[0]
    for s in det.scorers:  # each detector's score is its own network on the shared crop, calibrated
        raw = float(s.score_crops(f.crop)[0])
        assert f.detectors[s.key]["raw_score"] == pytest.approx(raw, abs=1e-5)
        assert res.detectors[s.key]["score"] == pytest.approx(s.calibrate(raw), abs=1e-6)
        assert res.detectors[s.key]["label"] == s.label_for(res.detectors[s.key]["score"])
    # the two networks differ, so their scores do
    assert abs(f.detectors["faceswap"]["raw_score"] - f.detectors["generated"]["raw_score"]) > 1e-6
    # score/label stay the default (first) detector's; the verdict combines
    assert (res.score, res.label) == (res.detectors["faceswap"]["score"], res.detectors["faceswap"]["label"])
    assert res.verdict == registry.combine([res.detectors[k]["label"] for k in det.keys])


def test_a_detector_with_another_contract_gets_its_own_cut(two_models, astronaut, monkeypatch):
    from model import api
    from model.crops import CropSpec, crop_box_image

    cuts = []
    monkeypatch.setattr(api, "crop_box_image", lambda *a, **k: cuts.append(a[2]) or crop_box_image(*a, **k))
    det = _pair(two_models, margin2=0.0)
    res = det.analyze_array(astronaut)
    assert len(cuts) == 1 and cuts[0].margin == 0.0  # one face, cut once more for the second contract
    f = res.face_results[0]
    tight = crop_box_image(astronaut, f.box, CropSpec(size=64, margin=0.0))
    assert f.detectors["generated"]["raw_score"] == pytest.approx(float(det.scorer("generated").score_crops(tight)[0]),
                                                                  abs=1e-5)


def test_verdict_fires_when_any_detector_does(two_models, astronaut):
    res = _pair(two_models, 0.3, t1=1.01, t2=0.0).analyze_array(astronaut)  # faceswap never fires, generated always
    assert res.label == "real" and res.detectors["generated"]["label"] == "fake" and res.verdict == "fake"
    res = _pair(two_models, 0.3, t1=1.01, t2=1.01).analyze_array(astronaut)
    assert res.verdict == "real"


def test_no_face_leaves_every_detector_unknown(two_models):
    from skimage import data

    res = _pair(two_models, 0.3).analyze_array(data.coffee())
    assert res.faces == 0 and res.verdict == "unknown"
    assert all(d["score"] is None and d["label"] == "unknown" for d in res.detectors.values())


def test_video_tracks_carry_every_detector(two_models, face_video):
    det = _pair(two_models, 0.0)
    res = det.analyze_video(face_video, frames=4)
    assert res.error == "" and res.tracks
    for t in res.tracks:
        assert set(t.detectors) == {"faceswap", "generated"} and t.detectors["faceswap"]["score"] == pytest.approx(
            t.score, abs=1e-6)
    assert set(res.detectors) == {"faceswap", "generated"} and res.score == res.detectors["faceswap"]["score"]
    assert json.loads(res.to_json())["verdict_rule"] == registry.VERDICT_RULE


def test_csv_has_a_pair_per_detector_and_the_verdict(two_models, astronaut):
    res = _pair(two_models, 0.3, t1=1.01, t2=0.0).analyze_array(astronaut, "a.png")
    buf = io.StringIO()
    w = results.ResultWriter(None, "csv", detectors=["faceswap", "generated"])
    w._f = buf  # noqa: SLF001 - write into memory instead of stdout
    w._csv = csv.DictWriter(buf, fieldnames=w.columns, lineterminator="\n")
    w._csv.writeheader()
    w.write(res.to_dict())
    rows = list(csv.DictReader(io.StringIO(buf.getvalue())))
    assert list(rows[0])[-5:] == ["score_faceswap", "label_faceswap", "score_generated", "label_generated",
                                  "verdict"]
    r = rows[0]
    assert list(r) == res.csv_columns() and list(res.csv_row()) == res.csv_columns()
    assert r["score"] == r["score_faceswap"] and r["label"] == r["label_faceswap"] == "real"
    assert r["label_generated"] == "fake" and r["verdict"] == "fake"
    assert float(r["score_generated"]) == pytest.approx(res.detectors["generated"]["score"], abs=1e-6)


def test_explain_uses_the_chosen_detector(two_models, astronaut):
    det = _pair(two_models, 0.3)
    crop = det.analyze_array(astronaut).face_results[0].crop
    h1, _ = det.explain(crop, detector="faceswap")
    h2, _ = det.explain(crop, detector="generated")
    assert h1.shape == h2.shape == (64, 64) and not np.allclose(h1, h2)
    with pytest.raises(KeyError, match="no detector 'x'"):
        det.explain(crop, detector="x")


def test_load_with_a_folder_is_one_detector_and_refuses_detectors(tiny_model_dir):
    det = Detector.load(tiny_model_dir)
    assert det.keys == ["model"]
    with pytest.raises(registry.RegistryError, match="with --model"):
        Detector.load(tiny_model_dir, detectors="generated")
