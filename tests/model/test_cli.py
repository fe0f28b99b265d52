import csv
import io
import json
import os
import subprocess
import sys
import tempfile

import pytest
from PIL import Image

from model.cli import main
from tests.conftest import REPO, face_frames, write_video

COLUMNS = ["path", "kind", "faces", "score", "label", "error"]


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
    before = set(os.listdir(tempfile.gettempdir()))
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
    tr = rows["truncated.mp4"]
    assert tr["error"] or int(tr["faces"]) >= 0
    for r in rows.values():
        assert "Traceback" not in r["error"] and "\n" not in r["error"]
    assert "Traceback" not in out.err
    assert set(os.listdir(tempfile.gettempdir())) - before == set(), "temp files left behind"


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


def test_python_m_model_end_to_end(astronaut_png, tiny_model_dir):
    """The real command line in a subprocess: one CSV row for the public-domain astronaut photo."""
    r = subprocess.run([sys.executable, "-m", "model", "predict", str(astronaut_png), "--model", str(tiny_model_dir)],
                       cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    rows = _csv(r.stdout)
    assert len(rows) == 1 and int(rows[0]["faces"]) >= 1 and 0 <= float(rows[0]["score"]) <= 1
