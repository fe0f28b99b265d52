import subprocess

import cv2
import numpy as np
import pytest

from model import video
from model.media import MediaError
from tests import media_fixtures
from tests.conftest import face_frames, write_video


@pytest.mark.parametrize("count,n", [(100, 32), (390, 32), (10, 32), (32, 32), (1, 5), (7, 3)])
def test_sample_indices_uniform(count, n):
    idx = video.sample_indices(count, n)
    assert len(idx) == min(count, n)
    assert idx == sorted(set(idx)) and idx[0] >= 0 and idx[-1] < count
    if count > n:
        gaps = np.diff(idx)
        assert gaps.max() - gaps.min() <= 1  # uniform spacing


def test_sample_indices_empty():
    assert video.sample_indices(0, 32) == [] and video.sample_indices(10, 0) == []


def test_read_frames_indices_and_content(tmp_path, astronaut):
    frames = face_frames(astronaut, n=40)
    p = write_video(tmp_path / "v.mp4", frames)
    info, got = video.read_frames(p, n=8)
    assert info.frame_count == 40 and info.fps == pytest.approx(10)
    assert [i for i, _ in got] == video.sample_indices(40, 8)
    for i, f in got:  # decoded frame i is the frame written at i (lossy codec: compare loosely)
        assert np.abs(f.astype(int) - frames[i].astype(int)).mean() < 12
        other = frames[(i + 20) % 40]
        assert np.abs(f.astype(int) - frames[i]).mean() < np.abs(f.astype(int) - other).mean()


def test_read_frames_caps(tmp_path, astronaut):
    p = write_video(tmp_path / "v.mp4", face_frames(astronaut, n=40))
    info, got = video.read_frames(p, n=32, max_duration_s=1.0)  # 10 fps -> only first 10 frames considered
    assert max(i for i, _ in got) < 10 and len(got) == 10
    _, got = video.read_frames(p, n=32, max_frames=4)
    assert len(got) == 4


def test_rotation_metadata_honoured(tmp_path, astronaut):
    ffmpeg = pytest.importorskip("imageio_ffmpeg", reason="imageio-ffmpeg not installed (requirements-dev.txt)")
    frames = face_frames(astronaut, n=10)
    src = write_video(tmp_path / "v.mp4", frames)
    dst = tmp_path / "rot.mp4"
    subprocess.run([ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error", "-display_rotation", "90", "-i", str(src),
                    "-c", "copy", str(dst)], check=True)
    info, got = video.read_frames(dst, n=3)
    assert info.rotation in (90, 270)
    i, f = got[0]
    assert f.shape == (320, 240, 3)
    ccw = np.rot90(frames[i], k=1)
    cw = np.rot90(frames[i], k=-1)
    assert np.abs(f.astype(int) - ccw).mean() < np.abs(f.astype(int) - cw).mean()


def test_bad_videos(tmp_path, astronaut):
    (tmp_path / "empty.mp4").write_bytes(b"")
    with pytest.raises(MediaError, match="empty"):
        video.read_frames(tmp_path / "empty.mp4")
    (tmp_path / "text.mp4").write_text("this is not a video\n" * 50)
    with pytest.raises(MediaError, match="not a readable video"):
        video.read_frames(tmp_path / "text.mp4")
    good = write_video(tmp_path / "good.mp4", face_frames(astronaut, n=30))
    data = good.read_bytes()
    # OpenCV writes the index (moov) last: cut short, the container is unreadable
    (tmp_path / "trunc.mp4").write_bytes(data[: len(data) // 3])
    with pytest.raises(MediaError, match="not a readable video"):
        video.read_frames(tmp_path / "trunc.mp4", n=8)
    # with the index first, the frames before the cut decode and the missing ones are skipped
    fs = media_fixtures.faststart(good, tmp_path / "fs.mp4").read_bytes()
    (tmp_path / "fs_trunc.mp4").write_bytes(fs[: len(fs) * 2 // 3])
    _, got = video.read_frames(tmp_path / "fs_trunc.mp4", n=8)
    idx = [i for i, _ in got]
    assert 0 < len(idx) < 8 and idx == video.sample_indices(30, 8)[:len(idx)]


def test_frame_size_cap_refuses_before_decoding(tmp_path):
    bomb = media_fixtures.gray_h264(tmp_path / "bomb.mp4")
    assert bomb.stat().st_size < 300_000
    with pytest.raises(MediaError, match=r"video frames are 7680x4320, over the 3840x2160 limit \(refused before"):
        video.FrameSampler(bomb, max_frame=(3840, 2160))
    portrait = media_fixtures.testsrc(tmp_path / "portrait.mp4", "240x320", 0.5)
    s = video.FrameSampler(portrait, n=2, max_frame=(320, 240))  # either orientation fits
    assert len(list(s)) == 2
    with pytest.raises(MediaError, match="over the 300x200 limit"):
        video.FrameSampler(portrait, max_frame=(300, 200))


def test_frames_downscaled_right_after_decoding(tmp_path):
    hd = media_fixtures.testsrc(tmp_path / "hd.mp4", "1920x1080", 1.0)
    s = video.FrameSampler(hd, n=4, max_side=640)
    shapes = {f.shape for _, f in s}
    assert shapes == {(360, 640, 3)}
    assert (s.info.width, s.info.height) == (1920, 1080)  # the header's size is still reported


def test_browser_webm_without_frame_count_is_decoded_sequentially(tmp_path, astronaut):
    frames = face_frames(astronaut, n=40)
    webm = media_fixtures.live_webm(write_video(tmp_path / "v.mp4", frames), tmp_path / "live.webm")
    cap = cv2.VideoCapture(str(webm))
    assert not 0 < cap.get(cv2.CAP_PROP_FRAME_COUNT) < 1e8  # the container really does not know
    cap.release()
    s = video.FrameSampler(webm, n=8)
    got = list(s)
    assert s.info.sequential and s.info.frame_count == 40 and not s.info.truncated
    idx = [i for i, _ in got]
    assert len(idx) == 8 and idx == sorted(idx) and idx[0] < 5 and idx[-1] >= 30
    for i, f in got:  # frame i is the frame written at i
        assert np.abs(f.astype(int) - frames[i]).mean() < np.abs(f.astype(int) - frames[(i + 20) % 40]).mean()
    # the duration limit applies as it decodes: 10 fps, first 1.5 s
    s = video.FrameSampler(webm, n=8, max_duration_s=1.5)
    got = list(s)
    assert s.info.truncated and max(i for i, _ in got) < 15 and s.info.note().startswith("first 2 s analysed")


def test_sequential_reservoir_stays_uniform(tmp_path):
    media_fixtures.ffmpeg("-f", "lavfi", "-i", "testsrc=s=64x48:d=30:r=10", "-c:v", "libvpx", "-f", "webm", "-live", "1",
                          str(tmp_path / "long.webm"))
    s = video.FrameSampler(tmp_path / "long.webm", n=6)
    idx = [i for i, _ in s]
    assert s.info.frame_count == 300 and len(idx) == 6
    gaps = np.diff(idx)
    assert gaps.min() >= 32 and gaps.max() <= 64 and idx[0] < 40 and idx[-1] > 220


def test_over_long_video_note(tmp_path, astronaut):
    p = write_video(tmp_path / "v.mp4", face_frames(astronaut, n=40))  # 4 s at 10 fps
    s = video.FrameSampler(p, n=32, max_duration_s=1.0)
    assert len(list(s)) == 10 and s.info.truncated
    assert s.info.note() == "first 1 s of 4 s analysed (video longer than the 1 s limit)"
    s = video.FrameSampler(p, n=4, max_duration_s=600)
    list(s)
    assert not s.info.truncated and s.info.note() == ""


def test_iter_batches_is_lazy():
    pulled = []

    def gen():
        for i in range(10):
            pulled.append(i)
            yield i

    it = video.iter_batches(gen(), 4)
    assert next(it) == [0, 1, 2, 3] and pulled == [0, 1, 2, 3]
    assert list(it) == [[4, 5, 6, 7], [8, 9]]


def test_iou_and_tracks():
    assert video.iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert video.iou((0, 0, 10, 10), (20, 20, 5, 5)) == 0.0
    assert video.iou((0, 0, 10, 10), (5, 0, 10, 10)) == pytest.approx(50 / 150)
    # two faces crossing frames, listed in swapped order in frame 2; a third face appears in frame 3
    frames = [[(0, 0, 10, 10), (100, 0, 10, 10)],
              [(102, 1, 10, 10), (2, 1, 10, 10)],
              [(4, 2, 10, 10), (200, 200, 10, 10), (104, 2, 10, 10)]]
    assert video.link_tracks(frames) == [[0, 1], [1, 0], [0, 2, 1]]
    linker = video.TrackLinker()
    assert [linker.add(b) for b in frames] == [[0, 1], [1, 0], [0, 2, 1]]


def test_aggregation_hand_computed():
    fs = [[0.2, 0.9], [0.4], [], [0.1, 0.3]]
    assert video.aggregate(fs, "max_mean") == pytest.approx((0.9 + 0.4 + 0.3) / 3)
    assert video.aggregate(fs, "mean") == pytest.approx((0.2 + 0.9 + 0.4 + 0.1 + 0.3) / 5)
    assert video.aggregate([[]], "max_mean") is None
    with pytest.raises(ValueError):
        video.aggregate(fs, "median")


def test_confident_strategy_branches():
    # many confident fakes: mean of the confident ones
    p = [0.95] * 20 + [0.1] * 12
    assert video.confident_strategy(p) == pytest.approx(0.95)
    # > 90 % clearly real: mean of those below 0.2
    p = [0.1] * 30 + [0.9] * 2
    assert video.confident_strategy(p) == pytest.approx(0.1)
    # otherwise the plain mean (only 5 confident fakes: not enough)
    p = [0.9] * 5 + [0.5] * 27
    assert video.confident_strategy(p) == pytest.approx(np.mean(p))
    assert video.aggregate([[0.9]] * 5 + [[0.5]] * 27, "confident") == pytest.approx(np.mean(p))


@pytest.mark.parametrize("grab_gap", [0, 24, 10**9])  # always seek / measured choice / always grab
def test_seek_or_grab_gives_the_same_frames(tmp_path, monkeypatch, grab_gap):
    # x264's default key-frame interval (250) makes a seek decode from far back: the sampler chooses per gap by
    # measured cost, and whichever it chooses, frame i is frame i (testsrc draws a different picture per frame)
    src = media_fixtures.testsrc(tmp_path / "long.mp4", "96x64", 40.0)
    cap, _ = video.open_video(src)
    every = []
    while cap.grab():
        every.append(cv2.cvtColor(cap.retrieve()[1], cv2.COLOR_BGR2RGB))
    cap.release()
    assert len(every) == 400
    monkeypatch.setattr(video, "GRAB_GAP", grab_gap)
    wanted = [3, 10, 60, 61, 140, 300, 399]
    _, got = video.read_frames(src, indices=wanted, max_duration_s=None)
    assert [i for i, _ in got] == wanted
    for i, f in got:
        assert np.array_equal(f, every[i]), i
    _, spread = video.read_frames(src, n=8, max_duration_s=None)
    assert [i for i, _ in spread] == video.sample_indices(400, 8)
    assert all(np.array_equal(f, every[i]) for i, f in spread)


# --------------------------------------------------------------------------- keyframes
class _F:
    def __init__(self, box, conf=0.99, kps=None):
        self.box, self.confidence = box, conf
        self.keypoints = kps if kps is not None else {"nose": (box[0] + box[2] / 2, box[1] + box[3] / 2)}


def test_keyframe_positions():
    from model.video import keyframe_positions

    assert keyframe_positions(8, 4) == [0, 4, 7] and keyframe_positions(8, 1) == list(range(8))
    assert keyframe_positions(8, 8) == [0, 7] and keyframe_positions(3, 4) == [0, 2] and keyframe_positions(0, 4) == []


def test_track_pairs_regions_and_faces_follow():
    from model.video import expected_boxes, faces_follow, track_pairs, track_regions

    a = [_F((100, 100, 40, 50)), _F((500, 0, 20, 20))]
    b = [_F((130, 96, 44, 44)), _F((800, 300, 20, 20))]  # the second face does not pair: too far
    assert track_pairs(a, b) is None and track_pairs([], []) is None
    assert track_pairs(a[:1], [_F((100, 100, 90, 90))]) is None  # too different a size
    pairs = track_pairs(a[:1], b[:1])
    assert pairs == {0: 0}  # moved 30 px (0.6 of its side) between keyframes: no overlap needed
    (r,) = track_regions(a, b, pairs, pad=0.5)
    assert r == (100 - 25, 96 - 25, 174 + 25, 150 + 25, 0.8 * 44, 1.25 * 50)  # union widened by half the longer side
    assert expected_boxes(a, b, pairs, 0.5) == [(115.0, 98.0, 42.0, 47.0)]
    assert faces_follow([_F((118, 99, 42, 48))], [(115, 98, 42, 47)])
    assert not faces_follow([_F((118, 99, 42, 48))], [(115, 98, 42, 47), (500, 0, 20, 20)])  # one missing
    assert not faces_follow([_F((118, 99, 42, 48)), _F((0, 0, 9, 9))], [(115, 98, 42, 47)])  # one extra
    assert not faces_follow([_F((160, 99, 42, 48))], [(115, 98, 42, 47)])  # away from the path
    assert faces_follow([], [])


def test_keyframes_search_windows_between_and_keep_every_frames_boxes(tiny_model_dir, face_video, monkeypatch):
    """With video_keyframe_every = 4, MTCNN searches whole frames on 3 of every 8 sampled frames where the tracks
    hold (the fixture's face moves little) and windows around the tracks on the others; every frame's boxes are
    the ones whole-frame detection gives, cut by the contract, in the engine and in prepare's video_faces alike."""
    from model import faces as faces_mod
    from model.api import Detector
    from model.crops import crop_box_image, video_faces

    det = Detector.load(tiny_model_dir)
    every = [[f.box for f in fr.faces] for fr in det.analyze_video(face_video, frames=16).frames]
    det.spec = det.spec.replace(video_keyframe_every=4)
    whole, windows = [], []
    real, real_in = faces_mod.FaceExtractor.detect_batch, faces_mod.FaceExtractor.detect_in
    monkeypatch.setattr(faces_mod.FaceExtractor, "detect_batch",
                        lambda self, frames: whole.append(len(frames)) or real(self, frames))
    monkeypatch.setattr(faces_mod.FaceExtractor, "detect_in",
                        lambda self, frames, regions: windows.append(len(frames)) or real_in(self, frames, regions))
    res = det.analyze_video(face_video, frames=16)
    assert res.error == "" and len(res.frames) == 16
    assert sum(whole) == 6 and sum(windows) == 10  # keyframes 0, 4, 7 of each 8 whole; the rest in windows
    assert [[f.box for f in fr.faces] for fr in res.frames] == every  # the boxes of detection on every frame
    vf = video_faces(face_video, det.spec, frames=16)
    frames = dict(vf.frames)
    for fr, pf in zip(res.frames, vf.faces):
        assert [f.box for f in fr.faces] == [list(map(int, f.box)) for f in pf]  # one contract: engine = prepare
        for f, pfc in zip(fr.faces, pf):
            cut = crop_box_image(frames[fr.index], f.box, det.spec)
            np.testing.assert_array_equal(pfc.crop, cut)  # prepare's crop of the frame = the contract's cut
            np.testing.assert_allclose(det.score_crops(cut), [f.raw_score], atol=1e-5)  # what the engine scored


class _FakeExtractor:
    """Frame i (its pixel value) has one face at x = ``at(i)``; ``detect_in`` finds it there too unless ``off``
    says the window search finds it elsewhere (a face that does not follow the track)."""

    def __init__(self, at, off=()):
        self.at, self.off, self.whole, self.windows = at, set(off), [], []

    def _face(self, i, dx=0):
        from model.faces import Face

        return Face(box=(self.at(i) + dx, 0, 20, 20), confidence=0.99, keypoints={}, crop=np.zeros((16, 16, 3), np.uint8),
                    crop_box=(0, 0, 20, 20))

    def detect_batch(self, frames):
        self.whole.extend(int(f[0, 0, 0]) for f in frames)
        return [[self._face(int(f[0, 0, 0]))] for f in frames]

    def detect_in(self, frames, regions):
        self.windows.extend(int(f[0, 0, 0]) for f in frames)
        return [[self._face(int(f[0, 0, 0]), dx=60 if int(f[0, 0, 0]) in self.off else 0)] for f in frames]


def test_a_lost_track_between_keyframes_is_followed_over_halves():
    from model.crops import CropSpec, chunk_faces

    fx = _FakeExtractor(lambda i: 0 if i < 4 else 100)  # a jump at frame 4 no track survives
    group = [(i, np.full((40, 140, 3), i, np.uint8)) for i in range(8)]
    out = chunk_faces(fx, group, CropSpec(size=16, video_keyframe_every=4), detect_batch=8)
    # keyframes 0, 4, 7; the lost segment 0-4 is halved: 2 searched whole (0-2 holds: 1 in a window), then 3
    assert sorted(fx.whole) == [0, 2, 3, 4, 7]
    assert sorted(fx.windows) == [1, 5, 6]  # the spans whose track holds: searched in windows
    assert [f[0].box[0] for f in out] == [0, 0, 0, 0, 100, 100, 100, 100]


def test_a_face_off_the_track_in_a_window_means_that_frame_is_searched_whole():
    from model.crops import CropSpec, chunk_faces

    fx = _FakeExtractor(lambda i: i, off={5})
    group = [(i, np.full((40, 140, 3), i, np.uint8)) for i in range(8)]
    out = chunk_faces(fx, group, CropSpec(size=16, video_keyframe_every=8), detect_batch=8)
    assert fx.windows == [1, 2, 3, 4, 5, 6] and sorted(fx.whole) == [0, 5, 7]
    assert [f[0].box[0] for f in out] == list(range(8))  # frame 5's face from the whole frame
