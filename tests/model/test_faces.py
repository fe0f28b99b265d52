import numpy as np
import pytest

from model.faces import FaceExtractor, crop_square, square_crop_box
from tests.conftest import FFPP, needs_ffpp


@pytest.fixture(scope="module")
def fx():
    return FaceExtractor(crop_size=64, margin=0.3)


def test_astronaut_one_face_box_and_keypoints(fx, astronaut):
    faces = fx.detect(astronaut)
    assert len(faces) == 1
    f = faces[0]
    x, y, w, h = f.box
    H, W = astronaut.shape[:2]
    assert 0 <= x and 0 <= y and x + w <= W and y + h <= H and w > 40 and h > 40
    assert set(f.keypoints) == {"left_eye", "right_eye", "nose", "mouth_left", "mouth_right"}
    for kx, ky in f.keypoints.values():
        assert x <= kx <= x + w and y <= ky <= y + h
    assert f.keypoints["left_eye"][1] < f.keypoints["mouth_left"][1]
    assert f.crop.shape == (64, 64, 3) and f.crop.dtype == np.uint8
    assert f.confidence > 0.95


def test_no_face_in_coffee(fx):
    from skimage import data

    assert fx.detect(data.coffee()) == []


def test_thirty_faces_all_found(fx, astronaut):
    import cv2

    tile = cv2.resize(astronaut, (160, 160))
    grid = np.concatenate([np.concatenate([tile] * 6, axis=1)] * 5, axis=0)
    faces = fx.detect(grid)
    assert len(faces) == 30
    assert len(FaceExtractor(crop_size=64, max_faces=5).detect(grid)) == 5


def test_min_face_size_filters(astronaut):
    assert FaceExtractor(crop_size=64, min_face_size=400).detect(astronaut) == []


def test_square_crop_box_margin_and_padding():
    x0, y0, x1, y1 = square_crop_box((10, 20, 100, 50), 0.3)
    assert x1 - x0 == y1 - y0 == 130
    assert (x0 + x1) / 2 == pytest.approx(60, abs=1) and (y0 + y1) / 2 == pytest.approx(45, abs=1)
    img = np.zeros((50, 50, 3), np.uint8)
    img[:, :25] = 255
    c = crop_square(img, (-25, -25, 75, 75), 20)  # leaves the image on all sides: edge padded
    assert c.shape == (20, 20, 3) and c[:, 0].min() == 255 and c[:, -1].max() == 0


def test_large_image_downscaled_for_detection_boxes_mapped_back(astronaut):
    import cv2

    big = cv2.resize(astronaut, (2048, 2048))
    f = FaceExtractor(crop_size=64, max_side=512).detect(big)
    assert len(f) == 1
    small = FaceExtractor(crop_size=64).detect(astronaut)[0]
    assert abs(f[0].box[0] - small.box[0] * 4) < 40 and abs(f[0].box[2] - small.box[2] * 4) < 40


def _detections(raw):
    return [(list(r["box"]), float(r["confidence"]), {k: list(v) for k, v in r["keypoints"].items()}) for r in raw]


def test_compiled_mtcnn_finds_exactly_what_eager_mtcnn_finds(astronaut, face_video):
    """The engine's MTCNN (stage networks as compiled graphs) vs mtcnn's own eager pipeline: the same boxes,
    confidences and keypoints, bit for bit, on a photo, a group of faces and the frames of a clip."""
    import cv2

    from model import video
    from model.faces import build_mtcnn, get_mtcnn

    eager, compiled = build_mtcnn(compiled=False), get_mtcnn()
    assert compiled is not eager and compiled.stages[0].__class__.__name__ == "FastPNet"
    tile = cv2.resize(astronaut, (160, 160))
    grid = np.concatenate([np.concatenate([tile] * 3, axis=1)] * 2, axis=0)
    _, frames = video.read_frames(face_video, n=4)
    images = [astronaut, grid] + [f for _, f in frames]
    found = 0
    for im in images:
        for kw in ({}, {"min_face_size": 14, "threshold_onet": 0.8}):  # mtcnn's defaults; a deeper pyramid
            a, b = _detections(eager.detect_faces(im, **kw)), _detections(compiled.detect_faces(im, **kw))
            assert a == b
            found += len(a)
    assert found >= 2 * (1 + 6 + 4)  # every face of every image, under both settings


def _around(faces, pad=0.5, sizes=(0.8, 1.25)):
    """Windows around whole-image faces, as ``video.track_regions`` makes them from a face seen at both keyframes."""
    from model.video import track_pairs, track_regions

    return track_regions(faces, faces, track_pairs(faces, faces), pad=pad, sizes=sizes)


def test_search_inside_windows_finds_the_whole_image_faces(astronaut, face_video):
    """MTCNN searching only windows around known faces (P-Net on those windows of the fitting pyramid levels) gives
    the boxes, confidences and keypoints that whole-image detection gives, on a clip's frames and on a group photo;
    a face outside every window is not found; with mtcnn's eager MTCNN (no window search) it is whole-image
    detection."""
    import cv2

    from model import video
    from model.faces import build_mtcnn

    vx = FaceExtractor(crop_size=64, margin=0.0)
    _, frames = video.read_frames(face_video, n=6)
    imgs = [f for _, f in frames]
    whole = vx.detect_batch(imgs)
    assert all(len(w) == 1 for w in whole)
    got = []
    for i in range(0, len(imgs), 2):  # two neighbouring frames as one batch, one window around both faces
        windows = video.track_regions(whole[i], whole[i + 1], video.track_pairs(whole[i], whole[i + 1]))
        assert len(windows) == 1
        got += vx.detect_in(imgs[i:i + 2], windows)
    for w, g in zip(whole, got):
        assert [(f.box, round(f.confidence, 5)) for f in g] == [(f.box, round(f.confidence, 5)) for f in w]
        np.testing.assert_array_equal(g[0].crop, w[0].crop)
    tile = cv2.resize(astronaut, (160, 160))
    grid = np.concatenate([np.concatenate([tile] * 3, axis=1)] * 2, axis=0)
    all6 = vx.detect(grid)
    assert len(all6) == 6
    two = vx.detect_in([grid], _around(all6[:2]))[0]
    assert sorted(f.box for f in two) == sorted(f.box for f in all6[:2])  # only the two faces searched for
    eager = FaceExtractor(crop_size=64, margin=0.0, mtcnn=build_mtcnn(compiled=False))
    assert len(eager.detect_in([grid], _around(all6[:2]))[0]) == 6


@needs_ffpp
def test_search_inside_windows_matches_whole_frames_of_real_videos():
    """On sampled frames of real FF++ c23 videos (the engine's video extractor), windows around each face found
    on the whole frame give back that face: >= 90 % of boxes identical, none missing, none off by more than a
    tenth of its side."""
    from model import video
    from model.crops import CropSpec

    spec = CropSpec()
    clips = sorted((FFPP / "original_sequences" / "youtube" / "c23" / "videos").glob("*.mp4"))[:5]
    assert clips, "no FF++ c23 original videos"
    same = total = 0
    for clip in clips:
        _, frames = video.read_frames(clip, n=8, max_side=spec.decode_max_side)
        vx = spec.video_extractor(min(frames[0][1].shape[:2]))
        for _, f in frames:
            whole = vx.detect(f)
            got = vx.detect_in([f], _around(whole))[0] if whole else []
            for w in whole:
                best = max(got, key=lambda g: video.iou(g.box, w.box))
                diff = np.abs(np.subtract(best.box, w.box)).max()
                assert diff <= 0.1 * max(w.box[2:]), (clip.name, w.box, best.box)
                same += diff == 0
                total += 1
    assert total >= 30 and same / total >= 0.9, (same, total)
