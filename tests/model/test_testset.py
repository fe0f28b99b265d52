"""Bring-your-own test set (model.testset): zip and folder reading, hostile members, caps, scoring, CLI."""
from __future__ import annotations

import io
import os
import stat
import tempfile
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from model import testset


def _png(img: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", img[..., ::-1])
    assert ok
    return buf.tobytes()


@pytest.fixture(scope="module")
def images(astronaut):
    face = astronaut[:300, 80:380]
    return {
        "real1": _png(face),
        "real2": _png(np.clip(face.astype(int) + 20, 0, 255).astype(np.uint8)),
        "fake1": _png(cv2.GaussianBlur(face, (9, 9), 3)),
        "fake2": _png(face[:, ::-1].copy()),
        "noface": _png(np.full((120, 160, 3), 128, np.uint8)),
    }


def _hostile_zip(images, extra=()) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("myset/real/a.png", images["real1"])
        z.writestr("myset/Real/sub/b.png", images["real2"])
        z.writestr("myset/fake/c.png", images["fake1"])
        z.writestr("myset/fake/d.png", images["fake2"])
        z.writestr("myset/fake/blank.png", images["noface"])
        z.writestr("myset/fake/broken.jpg", b"\xff\xd8\xff\xe0" + b"\x00" * 40)
        z.writestr("myset/real/notes.txt", b"hello")
        z.writestr("myset/other/e.png", images["real1"])
        z.writestr("../evil.png", images["real1"])
        z.writestr("real/../../evil2.png", images["real1"])
        z.writestr("/abs/real/x.png", images["real1"])
        link = zipfile.ZipInfo("myset/real/link.png")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        z.writestr(link, "/etc/passwd")
        z.writestr("__MACOSX/myset/real/._a.png", b"meta")
        for name, data in extra:
            z.writestr(name, data)
    return buf.getvalue()


def _reasons(ts):
    return {p.name: p.reason for p in ts.problems}


def test_zip_members_labelled_and_hostile_ones_listed(images, tmp_path):
    before = set(Path(tempfile.gettempdir()).glob("dfd_testset_*"))
    progress = []
    ts = testset.open_test_set(io.BytesIO(_hostile_zip(images)), progress=lambda d, t, m: progress.append((d, t)))
    try:
        names = {i.name: i.label for i in ts.items}
        assert names == {"myset/real/a.png": 0, "myset/Real/sub/b.png": 0, "myset/fake/c.png": 1,
                         "myset/fake/d.png": 1, "myset/fake/blank.png": 1, "myset/fake/broken.jpg": 1}
        r = _reasons(ts)
        assert "path trick" in r["../evil.png"] and "path trick" in r["real/../../evil2.png"]
        assert "absolute" in r["/abs/real/x.png"]
        assert "link" in r["myset/real/link.png"]
        assert "unsupported file type" in r["myset/real/notes.txt"]
        assert "real/ or fake/" in r["myset/other/e.png"]
        assert not any("__MACOSX" in n for n in r) and "__MACOSX" not in " ".join(names)
        # everything extracted lies in ONE new private folder, under generated names
        tmp = Path(ts._tmp)
        assert stat.S_IMODE(tmp.stat().st_mode) == 0o700
        assert all(i.path.parent == tmp and i.path.name[:5].isdigit() for i in ts.items)
        assert sorted(p.name for p in tmp.iterdir()) == sorted(i.path.name for i in ts.items)
        assert not (tmp.parent / "evil.png").exists() and not (tmp.parent / "evil2.png").exists()
        assert progress[-1][0] == progress[-1][1]
    finally:
        ts.close()
    assert not tmp.exists()
    assert set(Path(tempfile.gettempdir()).glob("dfd_testset_*")) == before


def test_encrypted_member_refused(images):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        z.writestr("fake/locked.png", images["fake1"])
        z.writestr("real/a.png", images["real1"])
    data = bytearray(buf.getvalue())
    loc, cen = data.index(b"PK\x03\x04"), data.index(b"PK\x01\x02")
    data[loc + 6] |= 0x1  # general purpose flag: encrypted (local and central headers)
    data[cen + 8] |= 0x1
    with testset.open_test_set(io.BytesIO(bytes(data))) as ts:
        assert [i.name for i in ts.items] == ["real/a.png"]
        assert _reasons(ts)["fake/locked.png"] == "encrypted member refused"


def test_caps_refuse_the_whole_archive(images):
    data = _hostile_zip(images)
    with pytest.raises(testset.TestSetError, match="holds .* files; the limit is 5"):
        testset.open_test_set(io.BytesIO(data), max_files=5)
    with pytest.raises(testset.TestSetError, match="unpacks to"):
        testset.open_test_set(io.BytesIO(data), max_bytes=1000)


def test_bytes_written_are_counted(images, tmp_path):
    """The copy counts the bytes it writes and stops at the cap, whatever the header said."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("real/a.png", images["real1"])
    zf = zipfile.ZipFile(io.BytesIO(buf.getvalue()))
    info = zf.infolist()[0]
    with pytest.raises(testset.TestSetError, match="more than"):
        testset._copy_member(zf, info, tmp_path / "x.png", 0, info.file_size - 1)


def test_lying_size_header_is_an_unreadable_member(images):
    """A member whose headers understate its size fails its CRC check: listed, not extracted, not fatal."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        z.writestr("real/a.png", images["real1"])
        z.writestr("fake/b.png", images["fake1"])
    data = bytearray(buf.getvalue())
    n = len(images["real1"])
    lie = (100).to_bytes(4, "little")
    loc = data.index(b"PK\x03\x04")
    assert int.from_bytes(data[loc + 22:loc + 26], "little") == n
    data[loc + 22:loc + 26] = lie
    cen = data.index(b"PK\x01\x02")
    assert int.from_bytes(data[cen + 24:cen + 28], "little") == n
    data[cen + 24:cen + 28] = lie
    with testset.open_test_set(io.BytesIO(bytes(data))) as ts:
        assert [i.name for i in ts.items] == ["fake/b.png"]
        assert "unreadable member" in _reasons(ts)["real/a.png"]


def test_not_a_zip_and_empty_sets(tmp_path, images):
    with pytest.raises(testset.TestSetError, match="not a readable zip"):
        testset.open_test_set(io.BytesIO(b"PK\x03\x04 not really a zip"))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("photos/a.png", images["real1"])
    with pytest.raises(testset.TestSetError, match=r"no usable image or video under real/ or fake/ \(1 file skipped\)"):
        testset.open_test_set(io.BytesIO(buf.getvalue()))
    with pytest.raises(testset.TestSetError, match="not found"):
        testset.open_test_set(tmp_path / "missing.zip")


def test_folder_in_place_links_skipped(tmp_path, images):
    (tmp_path / "real").mkdir()
    (tmp_path / "fake" / "deep").mkdir(parents=True)
    (tmp_path / "real" / "a.png").write_bytes(images["real1"])
    (tmp_path / "fake" / "deep" / "b.png").write_bytes(images["fake1"])
    (tmp_path / "fake" / "c.gif.txt").write_text("x")
    os.symlink("/etc/passwd", tmp_path / "real" / "passwd.png")
    os.symlink("/etc", tmp_path / "fake" / "etc")
    ts = testset.open_test_set(tmp_path)
    assert {i.name: i.label for i in ts.items} == {"real/a.png": 0, "fake/deep/b.png": 1}
    assert all(i.path.parent.is_relative_to(tmp_path) for i in ts.items) and ts._tmp is None
    r = _reasons(ts)
    assert r["real/passwd.png"] == "symbolic link skipped" and r["fake/etc"] == "symbolic link skipped"
    assert "unsupported" in r["fake/c.gif.txt"]
    with pytest.raises(testset.TestSetError, match="more than 1 files"):
        testset.open_test_set(tmp_path, max_files=1)


def test_score_summary_and_ranking(tiny_detector, images):
    with testset.open_test_set(io.BytesIO(_hostile_zip(images))) as ts:
        seen = []
        table = testset.score(tiny_detector, ts, progress=lambda d, t, m: seen.append(d))
    assert seen[-1] == 6
    assert list(table.columns) == list(testset.COLUMNS)
    rows = table.set_index("name")
    assert rows.loc["myset/fake/blank.png", "error"] == "no face found"
    assert "not a readable image" in rows.loc["myset/fake/broken.jpg", "error"]
    assert "path trick" in rows.loc["../evil.png", "error"] and pd.isna(rows.loc["../evil.png", "score"])
    scored = table[table["score"].notna()]
    assert len(scored) == 4 and scored["score"].between(0, 1).all()
    s = testset.summary(table, 0.5)
    y = (scored["label"] == "fake").astype(int)
    assert s["auc"] == pytest.approx(roc_auc_score(y, scored["score"]))
    assert s["n_scored"] == 4 and s["n_real"] == 2 and s["n_fake"] == 2
    assert s["tn"] + s["fp"] == 2 and s["fn"] + s["tp"] == 2
    assert s["tp"] == int((scored.loc[y == 1, "score"] >= 0.5).sum())
    assert s["n_problems"] == len(table) - 4
    assert len(s["roc"]["fpr"]) == len(s["roc"]["tpr"]) >= 2
    ranked = testset.by_error(table)
    err = ranked["error_size"].dropna().to_numpy()
    assert (np.diff(err) <= 0).all() and ranked["score"].notna().sum() == 4
    assert ranked["score"].iloc[:4].notna().all()
    one = testset.summary(table[table["label"] != "fake"], 0.5)
    assert one["auc"] is None and one["roc"] is None and one["false_alarm_rate"] is not None


def test_cli_evaluate_zip(tiny_model_dir, images, tmp_path, capsys):
    from model.cli import main

    z = tmp_path / "set.zip"
    z.write_bytes(_hostile_zip(images))
    out, js = tmp_path / "per_file.csv", tmp_path / "summary.json"
    assert main(["evaluate", str(z), "--model", str(tiny_model_dir), "--output", str(out), "--json", str(js),
                 "--threshold", "0.5", "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "files scored: 4 of 6 (2 real, 2 fake)" in text and ("AUC 0." in text or "AUC 1." in text)
    assert "skipped ../evil.png: path trick refused" in text
    df = pd.read_csv(out, keep_default_na=False)
    assert list(df.columns) == list(testset.COLUMNS) + ["error_size"]
    import json

    s = json.loads(js.read_text())
    assert s["threshold"] == 0.5 and s["n_scored"] == 4 and "roc" not in s


def test_cli_evaluate_refuses_bad_input(tmp_path, capsys):
    from model.cli import main

    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"not a zip at all")
    assert main(["evaluate", str(bad), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "error: not a readable zip file" in err and "Traceback" not in err
