import json

import numpy as np
import pytest

from model.api import Detector


def test_analyze_image_scores_each_face(tiny_detector, astronaut_png):
    res = tiny_detector.analyze(astronaut_png)
    assert res.error == "" and res.kind == "image" and res.faces == 1
    f = res.face_results[0]
    assert 0.0 <= f.score <= 1.0 and res.score == pytest.approx(f.score)
    assert res.label == ("fake" if res.score >= res.threshold else "real")
    d = json.loads(res.to_json())
    assert d["score_meaning"].startswith("P(fake)") and d["face_results"][0]["box"] == f.box
    # batched scoring equals per-face scoring
    one = tiny_detector.score_crops(f.crop)
    np.testing.assert_allclose(one, [f.score], atol=1e-5)


def test_threshold_changes_label(tiny_detector):
    s = 0.6
    assert tiny_detector.label_for(s, 0.5) == "fake" and tiny_detector.label_for(s, 0.7) == "real"
    assert tiny_detector.label_for(None) == "unknown"


def test_untrained_model_never_gives_a_verdict(astronaut):
    det = Detector.untrained(input_size=64)
    res = det.analyze_array(astronaut)
    assert res.faces == 1 and 0 <= res.score <= 1 and res.label == "unknown"
    assert "UNTRAINED" in det.describe()


def test_no_face_gives_unknown(tiny_detector, tmp_path):
    from PIL import Image
    from skimage import data

    p = tmp_path / "coffee.jpg"
    Image.fromarray(data.coffee()).save(p)
    res = tiny_detector.analyze(p)
    assert res.error == "" and res.faces == 0 and res.score is None and res.label == "unknown"


def test_analyze_video_tracks_and_scores(tiny_detector, face_video):
    seen = []
    res = tiny_detector.analyze_video(face_video, frames=8, progress=lambda f, m: seen.append(f))
    assert res.error == "" and res.video_info["sampled_frames"] == 8
    assert len(res.frames) == 8 and all(len(fr.faces) == 1 for fr in res.frames)
    assert res.faces == 1 and len(res.tracks[0].frames) == 8  # one face drifting = one track
    frame_scores = [fr.faces[0].score for fr in res.frames]
    assert res.score == pytest.approx(np.mean(frame_scores), abs=1e-6)
    assert seen[0] == 0.0 and seen[-1] == 1.0 and seen == sorted(seen)
    d = json.loads(res.to_json())
    assert d["tracks"][0]["id"] == 0 and len(d["frames"]) == 8
    conf = tiny_detector.analyze_video(face_video, frames=8, strategy="confident")
    assert conf.strategy == "confident" and 0 <= conf.score <= 1


def test_analyze_never_raises_on_bad_input(tiny_detector, tmp_path):
    (tmp_path / "a.txt").write_text("x")
    (tmp_path / "b.mp4").write_text("not a video")
    (tmp_path / "c.png").write_bytes(b"")
    for p, msg in [(tmp_path / "a.txt", "unsupported"), (tmp_path / "b.mp4", "video"),
                   (tmp_path / "c.png", "empty"), (tmp_path / "missing.jpg", "not found")]:
        res = tiny_detector.analyze(p)
        assert msg in res.error and res.score is None and res.label == "unknown"
