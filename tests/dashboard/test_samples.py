import stat
import threading

import numpy as np

from dashboard import samples
from model import media


def test_samples_are_generated_into_a_private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DEEPFAKE_CACHE", str(tmp_path / "cache"))
    p = samples.get_sample("Cat (no human face)")
    assert p.parent == tmp_path / "cache" / "samples"
    assert stat.S_IMODE(p.parent.stat().st_mode) == 0o700
    img = media.load_image(p)
    assert img.shape == (300, 451, 3) and img.dtype == np.uint8
    assert samples.get_sample("Cat (no human face)") == p  # generated once


def test_a_planted_cache_folder_is_not_used(tmp_path, monkeypatch):
    planted = tmp_path / "shared" / "samples"
    planted.mkdir(parents=True)
    planted.chmod(0o777)
    (planted / "chelsea.jpg").write_bytes(b"planted by someone else")
    monkeypatch.setenv("DEEPFAKE_CACHE", str(tmp_path / "shared"))
    p = samples.get_sample("Cat (no human face)")
    assert p.parent != planted and stat.S_IMODE(p.parent.stat().st_mode) == 0o700
    assert media.load_image(p).shape == (300, 451, 3)


def test_concurrent_sessions_get_one_complete_sample(tmp_path, monkeypatch):
    monkeypatch.setenv("DEEPFAKE_CACHE", str(tmp_path / "cache"))
    name = next(k for k, v in samples.SAMPLES.items() if v.endswith(".mp4"))
    got, errors = [], []

    def session():
        try:
            got.append(samples.get_sample(name))
        except Exception as e:  # collected and asserted below
            errors.append(e)

    threads = [threading.Thread(target=session) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors and len(set(got)) == 1
    folder = got[0].parent
    assert [p.name for p in folder.iterdir()] == [got[0].name]  # no temporary file left behind
    from model import video

    info, frames = video.read_frames(got[0], n=4)
    assert info.frame_count == 40 and len(frames) == 4
