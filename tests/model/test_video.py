import subprocess

import numpy as np
import pytest

from model import video
from model.media import MediaError
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
    with pytest.raises(MediaError):
        video.read_frames(tmp_path / "text.mp4")
    good = write_video(tmp_path / "good.mp4", face_frames(astronaut, n=30))
    data = good.read_bytes()
    (tmp_path / "trunc.mp4").write_bytes(data[: len(data) // 3])
    try:  # a truncated file either yields the frames that decode or a clear error
        _, got = video.read_frames(tmp_path / "trunc.mp4", n=8)
        assert 0 < len(got) <= 8
    except MediaError as e:
        assert "video" in str(e) or "frame" in str(e)


def test_iou_and_tracks():
    assert video.iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert video.iou((0, 0, 10, 10), (20, 20, 5, 5)) == 0.0
    assert video.iou((0, 0, 10, 10), (5, 0, 10, 10)) == pytest.approx(50 / 150)
    # two faces crossing frames, listed in swapped order in frame 2; a third face appears in frame 3
    frames = [[(0, 0, 10, 10), (100, 0, 10, 10)],
              [(102, 1, 10, 10), (2, 1, 10, 10)],
              [(4, 2, 10, 10), (200, 200, 10, 10), (104, 2, 10, 10)]]
    assert video.link_tracks(frames) == [[0, 1], [1, 0], [0, 2, 1]]


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
