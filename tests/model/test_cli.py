import csv
import io
import json
import os
import subprocess
import sys
import weakref

import pytest
from PIL import Image

from model.cli import main
from tests.conftest import REPO, face_frames, write_video

# today's ten columns, then one score/label pair per detector (one folder given with --model: "model") and the
# combined verdict
COLUMNS = ["path", "kind", "faces", "score", "label", "error", "note", "provenance", "provenance_signer",
           "provenance_ai", "score_model", "label_model", "verdict"]


@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory, astronaut):
    d = tmp_path_factory.mktemp("bad")
    (d / "empty.jpg").write_bytes(b"")
    (d / "text.mp4").write_text("definitely not a video\n" * 20)
    good = write_video(d / "good.mp4", face_frames(astronaut, 12))
    data = good.read_bytes()
    (d / "truncated.mp4").write_bytes(data[: len(data) // 3])
    good.unlink()
    (d / "notes.docx").write_text("unsupported")
    Image.new("1", (20000, 20000)).save(d / "bomb.png")
    from skimage import data as skd

    Image.fromarray(skd.coffee()).save(d / "noface.jpg")
    import cv2
    import numpy as np

    tile = cv2.resize(astronaut, (160, 160))
    Image.fromarray(np.concatenate([np.concatenate([tile] * 6, axis=1)] * 5, axis=0)).save(d / "thirty.png")
    return d


def _csv(text):
    rows = list(csv.DictReader(io.StringIO(text)))
    return rows


def test_csv_format_and_bad_inputs(tiny_model_dir, bad_inputs, capsys):
    rc = main(["predict", str(bad_inputs), str(bad_inputs / "does_not_exist.png"), "--model", str(tiny_model_dir),
               "--frames", "4"])
    out = capsys.readouterr()
    assert rc == 0
    assert out.out.splitlines()[0] == ",".join(COLUMNS)
    rows = {os.path.basename(r["path"]): r for r in _csv(out.out)}
    assert rows["empty.jpg"]["error"].startswith("empty file")
    assert rows["text.mp4"]["error"] and rows["text.mp4"]["kind"] == "video"
    assert rows["bomb.png"]["error"].startswith("image too large")
    assert rows["does_not_exist.png"]["error"].startswith("file not found")
    # notes.docx is not picked up from a folder (unsupported types are only reported when named)
    assert "notes.docx" not in rows
    assert rows["noface.jpg"]["error"] == "" and rows["noface.jpg"]["faces"] == "0"
    assert rows["noface.jpg"]["score"] == "" and rows["noface.jpg"]["label"] == "unknown"
    assert rows["thirty.png"]["faces"] == "30" and 0 <= float(rows["thirty.png"]["score"]) <= 1
    for r in rows.values():  # one detector: its pair repeats the default columns; the verdict is its label
        assert (r["score_model"], r["label_model"], r["verdict"]) == (r["score"], r["label"], r["label"])
    tr = rows["truncated.mp4"]  # OpenCV writes the index (moov) last: a file cut short has none
    assert tr["error"] == "not a readable video (unknown or corrupt container)"
    assert tr["kind"] == "video" and tr["faces"] == "0" and tr["score"] == "" and tr["label"] == "unknown"
    for r in rows.values():
        assert "Traceback" not in r["error"] and "\n" not in r["error"]
        assert r["provenance"] in ("", "none", "valid", "untrusted", "invalid", "error")
    assert "Traceback" not in out.err
    # content credentials: read for every file whose type is known, beside the score; unsigned files have none
    assert [rows[n]["provenance"] for n in ("noface.jpg", "thirty.png")] == ["none", "none"]
    assert rows["noface.jpg"]["provenance_signer"] == rows["noface.jpg"]["provenance_ai"] == ""
    assert rows["empty.jpg"]["provenance"] == rows["does_not_exist.png"]["provenance"] == ""  # never read


def test_unsupported_named_file_is_a_row(tiny_model_dir, bad_inputs, capsys):
    assert main(["predict", str(bad_inputs / "notes.docx"), "--model", str(tiny_model_dir)]) == 0
    r = _csv(capsys.readouterr().out)[0]
    assert r["error"].startswith("unsupported file type") and r["kind"] == "unknown"


def test_json_format_and_output_file(tiny_model_dir, astronaut_png, face_video, tmp_path, capsys):
    out = tmp_path / "r.json"
    assert main(["predict", str(astronaut_png), str(face_video), "--model", str(tiny_model_dir), "--frames", "4",
                 "--format", "json", "--output", str(out), "--quiet"]) == 0
    d = json.loads(out.read_text())
    assert [x["kind"] for x in d] == ["image", "video"]
    assert d[0]["faces"] == 1 and 0 <= d[0]["score"] <= 1
    assert d[1]["video_info"]["sampled_frames"] == 4 and len(d[1]["tracks"]) == 1
    assert "using model" in capsys.readouterr().err


def test_usage_errors_exit_nonzero(tiny_model_dir, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["predict"])
    assert e.value.code != 0
    assert main(["predict", str(tmp_path), "--model", str(tiny_model_dir)]) == 2  # empty folder
    assert main(["predict", "x.jpg", "--frames", "0", "--model", str(tiny_model_dir)]) == 2
    with pytest.raises(SystemExit):
        main(["predict", "x.jpg", "--model", str(tmp_path / "no_model")])


@pytest.mark.parametrize("args", [["info"], ["predict", "IMG"], ["predict", "IMG", "--output", "rows.parquet"]])
def test_missing_model_is_refused_in_one_line(tmp_path, astronaut_png, monkeypatch, capsys, args):
    """No model at $DEEPFAKE_MODEL: the command stops with one line naming the folder, never scores untrained."""
    monkeypatch.setenv("DEEPFAKE_MODEL", str(tmp_path / "gone"))
    monkeypatch.chdir(tmp_path)
    try:
        code = main([str(astronaut_png) if a == "IMG" else a for a in args])
    except SystemExit as e:
        code, msg = e.code, str(e.code)
    else:
        msg = capsys.readouterr().err
    assert code not in (0, None)
    lines = [ln for ln in msg.splitlines() if ln.strip()]
    assert len(lines) == 1 and "error: no detector.keras in" in lines[0], msg
    assert str(tmp_path / "gone") in lines[0] and "DEEPFAKE_MODEL" in lines[0]
    assert not (tmp_path / "rows.parquet").exists()


def test_python_m_model_end_to_end(astronaut_png, tiny_model_dir):
    """The real command line in a subprocess: one CSV row for the public-domain astronaut photo."""
    r = subprocess.run([sys.executable, "-m", "model", "predict", str(astronaut_png), "--model", str(tiny_model_dir)],
                       cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    rows = _csv(r.stdout)
    assert len(rows) == 1 and int(rows[0]["faces"]) >= 1 and 0 <= float(rows[0]["score"]) <= 1


@pytest.fixture()
def image_folder(tmp_path, astronaut):
    import cv2

    d = tmp_path / "imgs"
    d.mkdir()
    for i in range(5):
        Image.fromarray(cv2.resize(astronaut[0:330, 90:360], (120 + 8 * i, 140 + 8 * i))).save(d / f"img{i}.jpg")
    return d


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_rows_are_written_as_each_file_finishes(tiny_model_dir, image_folder, tmp_path, monkeypatch, fmt):
    """While file k is analysed, the output already holds the rows of files 1..k-1 and no earlier result is
    still alive (nothing accumulates until the end)."""
    from model.api import Detector

    out = tmp_path / f"out.{fmt}"
    seen, alive = [], []
    original = Detector.analyze

    def spy(self, path, *a, **kw):
        import gc

        gc.collect()
        seen.append(out.read_text().splitlines() if out.exists() else None)
        alive.append(sum(r() is not None for r in refs))
        res = original(self, path, *a, **kw)
        refs.append(weakref.ref(res))
        return res

    refs = []
    monkeypatch.setattr(Detector, "analyze", spy)
    assert main(["predict", str(image_folder), "--model", str(tiny_model_dir), "--format", fmt,
                 "--output", str(out), "--quiet"]) == 0
    header = 1 if fmt == "csv" else 0
    assert [len(lines) for lines in seen] == [header + k for k in range(5)]
    assert alive == [0] * 5
    final = out.read_text().splitlines()
    assert len(final) == header + 5
    if fmt == "jsonl":
        recs = [json.loads(line) for line in final]
        assert [os.path.basename(r["path"]) for r in recs] == [f"img{i}.jpg" for i in range(5)]
        assert all(r["faces"] == 1 and 0 <= r["score"] <= 1 and r["error"] == "" for r in recs)


def test_limit_flags(tiny_model_dir, face_video, tmp_path, capsys):
    """--max-frame refuses from the header; --max-video-s cuts and says so in CSV and JSON."""
    assert main(["predict", str(face_video), "--model", str(tiny_model_dir), "--max-frame", "160x120",
                 "--frames", "4", "--quiet"]) == 0
    r = _csv(capsys.readouterr().out)[0]
    assert r["error"] == "video frames are 320x240, over the 160x120 limit (refused before decoding)"
    assert main(["predict", str(face_video), "--model", str(tiny_model_dir), "--max-video-s", "1", "--frames", "4",
                 "--format", "jsonl", "--quiet"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["error"] == "" and d["note"].startswith("first 1 s of 2 s analysed")
    assert max(f["index"] for f in d["frames"]) < 10  # 10 fps: frames 0..9 are the first second
    assert main(["predict", str(face_video), "--model", str(tiny_model_dir), "--max-video-s", "1", "--frames", "4",
                 "--quiet"]) == 0
    assert _csv(capsys.readouterr().out)[0]["note"].startswith("first 1 s of 2 s analysed")
    assert main(["predict", str(face_video), "--max-frame", "huge", "--model", str(tiny_model_dir)]) == 2
    assert "frame size must look like 3840x2160" in capsys.readouterr().err


def test_no_isolation_gives_the_same_scores(tiny_model_dir, face_video, astronaut_png, capsys):
    common = ["predict", str(face_video), str(astronaut_png), "--model", str(tiny_model_dir), "--frames", "4",
              "--format", "jsonl", "--quiet"]
    assert main(common) == 0
    isolated = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert main(common + ["--no-isolation"]) == 0
    inproc = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["score"] for r in isolated] == [r["score"] for r in inproc]
    assert [r["faces"] for r in isolated] == [r["faces"] for r in inproc] != [0, 0]


def test_engine_ray_without_ray_is_one_line(no_ray_env, astronaut_png):
    from tests.conftest import RAY_MISSING

    r = subprocess.run([sys.executable, "-m", "model", "predict", str(astronaut_png), "--engine", "ray"],
                       cwd=REPO, env=no_ray_env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.splitlines() == [f"error: --engine ray {RAY_MISSING}"]


@pytest.mark.parametrize("var,value,allowed", [
    ("DEEPFAKE_MAX_FRAME", "bogus", "a frame size WxH such as 3840x2160, each side at least 16"),
    ("DEEPFAKE_MAX_VIDEO_S", "-5", "a number of seconds above 0"),
    ("DEEPFAKE_MAX_IMAGE_MP", "nan", "a number of megapixels above 0"),
    ("DEEPFAKE_DECODE_MEM_MB", "1.5", "a whole number of MB above 0"),
    ("DEEPFAKE_DECODE_TIMEOUT_S", "soon", "a number of seconds above 0"),
    ("DEEPFAKE_ISOLATE", "maybe", "1 or 0"),
    ("DEEPFAKE_MAX_ANALYSES", "0", "a whole number above 0"),
])
def test_bad_environment_value_is_one_line(monkeypatch, capsys, tiny_model_dir, astronaut_png, var, value, allowed):
    monkeypatch.setenv(var, value)
    for argv in (["predict", str(astronaut_png), "--model", str(tiny_model_dir)],
                 ["evaluate", str(astronaut_png.parent)], ["info", "--model", str(tiny_model_dir)]):
        assert main(argv) == 2
        out = capsys.readouterr()
        assert out.out == ""
        [line] = out.err.splitlines()
        assert line.startswith(f"error: bad value for {var}: {value!r} (allowed: {allowed}")
