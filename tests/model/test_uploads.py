import os
import stat
import subprocess
import sys
import threading
import time

import pytest

from model import uploads
from tests.conftest import face_frames, write_video


@pytest.fixture()
def upload_root(tmp_path, monkeypatch):
    root = tmp_path / "uploads"
    root.mkdir()
    monkeypatch.setenv("DEEPFAKE_UPLOAD_DIR", str(root))
    return root


def test_spooled_is_private_and_always_removed(upload_root):
    with uploads.spooled(b"video bytes", "clip.MP4") as p:
        assert p.read_bytes() == b"video bytes" and p.name == "upload.mp4"
        assert stat.S_IMODE(p.parent.stat().st_mode) == 0o700 and stat.S_IMODE(p.stat().st_mode) == 0o600
        assert p.parent.parent == upload_root and p.parent.name.startswith(f"dfd_upload_{os.getpid()}-")
    assert list(upload_root.iterdir()) == []
    with pytest.raises(RuntimeError):
        with uploads.spooled(b"x", "../../evil name.sh") as p:
            assert p.name == "upload.bin" and p.parent.parent == upload_root
            raise RuntimeError("analysis failed")
    assert list(upload_root.iterdir()) == []


def _dead_owner_tag() -> str:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.2)"])
    tag = uploads._owner_tag(proc.pid)
    proc.wait()
    return tag


def test_sweep_removes_folders_of_dead_processes_only(upload_root):
    dead = upload_root / f"dfd_upload_{_dead_owner_tag()}_abc"
    alive = upload_root / f"dfd_upload_{uploads._owner_tag(os.getppid())}_def"
    mine = upload_root / f"dfd_upload_{uploads._owner_tag()}_ghi"
    old = upload_root / f"dfd_upload_{uploads._owner_tag(os.getppid())}_old"
    legacy = upload_root / "dfd_upload_x1y2z3"  # the old naming, without an owner
    for d in (dead, alive, mine, old, legacy):
        d.mkdir()
        (d / "upload.mp4").write_bytes(b"x")
    os.utime(old, (time.time() - 7 * 3600,) * 2)
    plain_file = upload_root / "dfd_upload_123-456_file"
    plain_file.write_text("not a folder")
    target = upload_root / "elsewhere"
    target.mkdir()
    link = upload_root / "dfd_upload_1-1_link"
    link.symlink_to(target)
    removed = uploads.sweep_stale(upload_root)
    assert sorted(removed) == sorted([dead, old, legacy])
    assert alive.is_dir() and mine.is_dir() and plain_file.is_file() and target.is_dir() and link.is_symlink()


def test_analyze_video_bytes_spools_privately_and_cleans_up(tiny_detector, upload_root, tmp_path, astronaut):
    clip = write_video(tmp_path / "c.mp4", face_frames(astronaut, n=12)).read_bytes()
    seen = []

    def progress(f, m):
        seen.extend((p, stat.S_IMODE(p.stat().st_mode)) for p in upload_root.iterdir())

    res = tiny_detector.analyze(clip, frames=4, progress=progress, display_name="clip.mp4")
    assert res.error == "" and res.kind == "video" and res.path == "clip.mp4" and res.faces >= 1
    assert seen and {m for _, m in seen} == {0o700}
    assert list(upload_root.iterdir()) == []
    # a file that passes the magic-byte check but is corrupt: an error, and nothing left either
    bad = clip[:64] + b"\x00" * 2000
    res = tiny_detector.analyze(bad, frames=4, display_name="bad.mp4")
    assert res.error and res.kind == "video"
    assert list(upload_root.iterdir()) == []


def test_analyze_image_bytes_never_touch_disk(tiny_detector, upload_root, astronaut_png):
    res = tiny_detector.analyze(astronaut_png.read_bytes(), display_name="photo.jpg")
    assert res.kind == "image" and res.error == "" and res.faces == 1 and res.path == "photo.jpg"
    assert not any(upload_root.iterdir())


def test_private_dir_refuses_a_planted_folder(tmp_path):
    good = uploads.private_dir(tmp_path / "cache" / "samples")
    assert good == tmp_path / "cache" / "samples" and stat.S_IMODE(good.stat().st_mode) == 0o700
    planted = tmp_path / "planted"
    planted.mkdir(mode=0o777)
    os.chmod(planted, 0o777)
    other = uploads.private_dir(planted)
    assert other != planted and stat.S_IMODE(other.stat().st_mode) == 0o700
    link = tmp_path / "link"
    link.symlink_to(good)
    assert uploads.private_dir(link) != link


def test_write_atomic_with_racing_writers(tmp_path):
    target = tmp_path / "sample.jpg"
    payloads = [bytes([i]) * 200_000 for i in range(8)]
    threads = [threading.Thread(target=uploads.write_atomic, args=(target, p)) for p in payloads]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert target.read_bytes() in payloads
    assert [p.name for p in tmp_path.iterdir()] == ["sample.jpg"]  # no temporary file left
