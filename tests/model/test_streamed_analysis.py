"""Detector-level behaviour of the bounded, streamed analysis."""
import numpy as np
import pytest

from tests import media_fixtures
from tests.conftest import face_frames, write_video


def test_score_crops_in_fixed_batches(tiny_detector):
    rng = np.random.default_rng(0)
    crops = rng.integers(0, 256, (37, 64, 64, 3), dtype=np.uint8)
    whole = tiny_detector.score_crops(crops, batch_size=32)
    small = tiny_detector.score_crops(list(crops), batch_size=5)
    one = np.array([tiny_detector.score_crops(c)[0] for c in crops[:3]])
    assert whole.shape == (37,) and whole.dtype == np.float32
    np.testing.assert_allclose(small, whole, atol=1e-5)
    np.testing.assert_allclose(one, whole[:3], atol=1e-5)
    assert tiny_detector.score_crops([]).shape == (0,)


def test_video_result_keeps_one_crop_per_track_and_the_key_frame(tiny_detector, face_video):
    res = tiny_detector.analyze(face_video, frames=8)
    assert res.error == "" and res.tracks
    faces = res.all_faces
    with_crop = [f for f in faces if f.crop is not None]
    assert len(with_crop) == len(res.tracks)
    for t in res.tracks:
        best = max((f for f in faces if f.track == t.id), key=lambda f: f.score)
        assert best.crop is not None and best.crop.shape == (64, 64, 3)
    assert res.image is not None and res.image.shape == (res.height, res.width, 3)
    # the key frame is the frame of the highest-scoring face
    from model import video

    top = max(faces, key=lambda f: f.score)
    _, decoded = video.read_frames(face_video, n=8)
    assert np.array_equal(res.image, dict(decoded)[top.frame])
    assert res.image_frame == max(faces, key=lambda f: f.raw_score).frame and res.to_dict()["image_frame"] == res.image_frame
    assert res.video_info["sampled_frames"] == 8 and not res.video_info["sequential"]
    assert set(res.timings) == {"decode_s", "detect_s", "classify_s"}


def test_browser_recorded_webm_is_analysed(tiny_detector, tmp_path, astronaut):
    src = write_video(tmp_path / "v.mp4", face_frames(astronaut, n=30))
    webm = media_fixtures.live_webm(src, tmp_path / "rec.webm")
    res = tiny_detector.analyze(webm.read_bytes(), frames=6, display_name="recording.webm")
    assert res.error == "" and res.kind == "video" and res.faces >= 1
    assert res.video_info["sequential"] and res.video_info["frame_count"] == 30
    assert len(res.frames) == 6 and 0 <= res.score <= 1


@pytest.mark.parametrize("strategy", ["max_mean", "confident"])
def test_streamed_scores_match_scoring_the_same_crops_at_once(tiny_detector, face_video, strategy):
    """Streaming changes memory, not numbers: the video score equals aggregating the per-face scores."""
    from model import video

    res = tiny_detector.analyze(face_video, frames=8, strategy=strategy)
    per_frame = [[f.score for f in fr.faces] for fr in res.frames]
    assert res.score == pytest.approx(video.aggregate(per_frame, strategy))


def test_compiled_detection_leaves_crops_and_scores_unchanged(tiny_detector, face_video, monkeypatch):
    """The old per-frame path (mtcnn's eager pipeline) and the engine's compiled MTCNN give the same faces, the
    same crops and the same scores for every sampled frame of a clip: exactly, not within a tolerance."""
    from model import faces

    new = tiny_detector.analyze_video(face_video, frames=8)
    eager = faces.build_mtcnn(compiled=False)
    monkeypatch.setattr(faces, "get_mtcnn", lambda: eager)
    old = tiny_detector.analyze_video(face_video, frames=8)
    assert len(new.all_faces) == len(old.all_faces) >= 8
    for a, b in zip(old.all_faces, new.all_faces):
        assert (a.frame, a.box, a.confidence, a.keypoints, a.track) == (b.frame, b.box, b.confidence, b.keypoints, b.track)
        assert a.raw_score == b.raw_score
        assert (a.crop is None) == (b.crop is None)
        if a.crop is not None:
            assert np.array_equal(a.crop, b.crop)
    assert old.score == new.score and old.raw_score == new.raw_score
