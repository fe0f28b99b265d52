"""Decoding in a limited child process: hostile files cost one clear error, never the calling process."""
import io
import os
import signal
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from model import isolation
from model.limits import Limits
from model.media import MediaError
from tests import media_fixtures
from tests.conftest import face_frames, write_video

DEFAULT = Limits()


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.fixture(scope="module")
def bomb(tmp_path_factory):
    return media_fixtures.gray_h264(tmp_path_factory.mktemp("bomb") / "bomb.mp4")


@pytest.fixture(scope="module")
def clip(tmp_path_factory, astronaut):
    return write_video(tmp_path_factory.mktemp("clip") / "clip.mp4", face_frames(astronaut, n=30))


def test_child_has_an_address_space_limit(clip):
    with isolation.video_frames(clip, n=2, lim=DEFAULT) as frames:
        assert len(list(frames)) == 2
    pids = isolation.POOL.idle_pids()
    assert pids, "the finished child should wait for the next file"
    limits_text = Path(f"/proc/{pids[-1]}/limits").read_text()
    line = next(x for x in limits_text.splitlines() if x.startswith("Max address space"))
    soft = int(line.split()[3])
    assert soft < 4 * 1024**3  # a real limit (the default is 'unlimited')
    core = next(x for x in limits_text.splitlines() if x.startswith("Max core file size"))
    assert core.split()[4] == "0"


def test_frames_match_in_process_decoding(clip):
    lim = DEFAULT
    with isolation.video_frames(clip, n=5, max_side=200, lim=lim) as frames:
        remote = list(frames)
        info = frames.info
    with isolation.video_frames(clip, n=5, max_side=200, lim=lim.replace(isolate=False)) as frames:
        local = list(frames)
    assert [i for i, _ in remote] == [i for i, _ in local] and len(remote) == 5
    for (_, a), (_, b) in zip(remote, local):
        assert a.shape == b.shape == (150, 200, 3) and np.array_equal(a, b)
    assert (info.frame_count, info.width, info.height) == (30, 320, 240)


def test_8k_file_is_refused_before_decoding_and_cheaply(bomb):
    with pytest.raises(MediaError, match="video frames are 7680x4320, over the 3840x2160 limit"):
        with isolation.video_frames(bomb, lim=DEFAULT) as frames:
            list(frames)
    pids = isolation.POOL.idle_pids()
    assert pids and _rss_mb(pids[-1]) < 400  # the child that said no is small and reusable


def test_memory_limit_turns_a_huge_decode_into_an_error(bomb, clip):
    lim = DEFAULT.replace(max_frame=(8000, 8000), decode_mem_mb=120)
    before = isolation.POOL.started
    with pytest.raises(MediaError, match="120 MB memory limit"):
        with isolation.video_frames(bomb, n=4, lim=lim) as frames:
            list(frames)
    # the caller is fine, and the next file gets a fresh, working child
    with isolation.video_frames(clip, n=3, lim=lim) as frames:
        assert len(list(frames)) == 3
    assert isolation.POOL.started == before + 2


def test_wall_time_limit(clip):
    lim = DEFAULT.replace(decode_timeout_s=0.001)
    with pytest.raises(MediaError, match=r"decoding took longer than the 0.001 s limit"):
        with isolation.video_frames(clip, n=30, lim=lim) as frames:
            list(frames)
    with isolation.video_frames(clip, n=3, lim=DEFAULT) as frames:
        assert len(list(frames)) == 3


def test_child_killed_mid_stream_is_a_clear_error(clip):
    with pytest.raises(MediaError, match="the decoder crashed on this file"):
        with isolation.video_frames(clip, n=8, lim=DEFAULT) as frames:
            it = iter(frames)
            next(it)
            os.kill(frames._worker.pid, signal.SIGKILL)
            list(it)
    with isolation.video_frames(clip, n=2, lim=DEFAULT) as frames:
        assert len(list(frames)) == 2


def test_stopping_early_does_not_reuse_a_busy_child(clip):
    with isolation.video_frames(clip, n=8, lim=DEFAULT) as frames:
        pid = frames._worker.pid
        next(iter(frames))
    assert pid not in isolation.POOL.idle_pids()
    with pytest.raises(ProcessLookupError):
        for _ in range(100):
            os.kill(pid, 0)
            import time

            time.sleep(0.05)


def test_images_from_bytes_and_paths(tmp_path, astronaut):
    buf = io.BytesIO()
    Image.fromarray(astronaut).save(buf, "PNG")
    img = isolation.load_image(buf.getvalue(), lim=DEFAULT)
    assert np.array_equal(img, astronaut)
    with pytest.raises(MediaError, match="not a readable image"):
        isolation.load_image(b"\xff\xd8\xff\xe0" + b"\x00" * 50, lim=DEFAULT)
    with pytest.raises(MediaError, match="image too large"):
        isolation.load_image(buf.getvalue(), lim=DEFAULT.replace(max_image_mp=0.1))
    with pytest.raises(MediaError, match="empty file"):
        isolation.load_image(b"", lim=DEFAULT)
    p = tmp_path / "a.png"
    p.write_bytes(buf.getvalue())
    assert np.array_equal(isolation.load_image(p, lim=DEFAULT), astronaut)


def test_detector_reports_limits_in_the_result(tiny_detector, tmp_path, bomb, clip, monkeypatch):
    from model import limits

    res = tiny_detector.analyze(bomb, frames=4)
    assert res.kind == "video" and res.error.startswith("video frames are 7680x4320") and res.score is None
    monkeypatch.setattr(limits, "_CURRENT", DEFAULT.replace(max_video_s=1.0))
    monkeypatch.setattr(tiny_detector, "spec", tiny_detector.spec.replace(decode_max_side=160))
    res = tiny_detector.analyze(clip, frames=8)
    assert res.error == "" and res.width == 160 and res.height == 120
    assert res.note == "first 1 s of 3 s analysed (video longer than the 1 s limit)"
    assert res.to_dict()["note"] == res.note and res.csv_row()["note"] == res.note
    assert max(fr.index for fr in res.frames) < 10


def test_child_outlives_the_thread_that_started_it(clip):
    """Streamlit runs each script run in its own thread: a pooled child must survive that thread."""
    import threading
    import time

    isolation.POOL.shutdown()
    t = threading.Thread(target=lambda: list(isolation.video_frames(clip, n=2, lim=DEFAULT)))
    t.start()
    t.join(60)
    started = isolation.POOL.started
    pid = isolation.POOL.idle_pids()[-1]
    time.sleep(0.5)
    with isolation.video_frames(clip, n=2, lim=DEFAULT) as frames:
        assert frames._worker.pid == pid
        assert len(list(frames)) == 2
    assert isolation.POOL.started == started
