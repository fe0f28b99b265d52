"""model.results: the one row function and the streaming writer both engines of ``predict`` use."""
from __future__ import annotations

import csv
import io
import json

import pytest

from model import results
from model.api import Result

RECORDS = [
    {"path": "a.png", "kind": "image", "faces": 2, "score": 0.1234567, "raw_score": 0.2, "label": "real",
     "error": "", "note": "", "face_results": [{"box": [1, 2, 3, 4], "score": 0.12}]},
    {"path": "b.mp4", "kind": "video", "faces": 0, "score": None, "label": "unknown",
     "error": "video frames are 320x240,\n over the limit", "note": "", "tracks": [], "frames": []},
    {"path": "c,d.mp4", "kind": "video", "faces": 1, "score": 0.9, "label": "fake", "error": "",
     "note": "first 1 s of 2 s analysed", "tracks": [{"id": 0}], "frames": [{"index": 0, "faces": []}],
     "provenance": {"state": "untrusted", "signer": "Example\nGenerator, Inc.", "ai": "yes",
                    "summary": "Content credentials: signed by Example Generator, Inc. (...), says AI-generated"}},
]


def test_csv_row_has_the_seven_columns_then_the_provenance_ones():
    row = results.csv_row(RECORDS[1])
    assert tuple(row) == results.COLUMNS == ("path", "kind", "faces", "score", "label", "error", "note",
                                             "provenance", "provenance_signer", "provenance_ai")
    assert row["score"] == "" and row["error"] == "video frames are 320x240, over the limit"
    assert (row["provenance"], row["provenance_signer"], row["provenance_ai"]) == ("", "", "")  # not read
    assert results.csv_row(RECORDS[0])["score"] == "0.123457"
    row = results.csv_row(RECORDS[2])
    assert (row["score"], row["label"]) == ("0.900000", "fake")  # the score columns do not move
    assert (row["provenance"], row["provenance_signer"], row["provenance_ai"]) == (
        "untrusted", "Example Generator, Inc.", "yes")


def test_result_csv_row_is_the_row_of_its_record():
    r = Result(path="x.mp4", kind="video", score=0.31415926, label="real", note="first 1 s\nanalysed")
    assert r.csv_row() == results.csv_row(r.to_dict()) == results.csv_row(json.loads(r.to_json()))
    r.provenance = {"state": "invalid", "signer": "X", "ai": ""}
    assert r.csv_row() == results.csv_row(json.loads(r.to_json()))
    assert r.csv_row()["provenance"] == "invalid" and r.to_dict()["provenance"] == r.provenance


def _write(path, fmt=None, records=RECORDS, **kw):
    w = results.ResultWriter(str(path), fmt or "csv", **kw)
    for r in records:
        w.write(r)
    w.close()
    return path


def test_formats(tmp_path):
    rows = list(csv.DictReader(io.StringIO(_write(tmp_path / "o.csv").read_text())))
    assert [list(r) for r in rows] == [list(results.COLUMNS)] * 3 and rows[2]["path"] == "c,d.mp4"
    lines = _write(tmp_path / "o.jsonl", "jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == RECORDS  # the full record, not the seven columns
    assert json.loads(_write(tmp_path / "o.json", "json").read_text()) == RECORDS
    assert json.loads(_write(tmp_path / "e.json", "json", records=[]).read_text()) == []


def test_text_rows_are_flushed_as_written_and_abort_keeps_them(tmp_path):
    out = tmp_path / "o.jsonl"
    w = results.ResultWriter(str(out), "jsonl")
    w.write(RECORDS[0])
    assert json.loads(out.read_text()) == RECORDS[0]  # on disk before the writer is closed
    w.abort()
    assert out.read_text().count("\n") == 1
    out = tmp_path / "o.json"
    with pytest.raises(KeyboardInterrupt):
        with results.ResultWriter(str(out), "json") as w:
            w.write(RECORDS[0])
            raise KeyboardInterrupt
    with pytest.raises(json.JSONDecodeError):  # an interrupted array does not pass for a complete one
        json.loads(out.read_text())


def test_parquet_row_groups_typed_columns_and_no_partial_file(tmp_path):
    import pyarrow.parquet as pq

    out = _write(tmp_path / "o.parquet", "json", records=RECORDS * 2, group=4)  # .parquet wins over fmt
    f = pq.ParquetFile(out)
    assert f.metadata.num_row_groups == 2 and f.metadata.num_rows == 6
    t = f.read().to_pandas()
    assert list(t.columns) == list(results.COLUMNS) and str(t["faces"].dtype) == "int64"
    assert t["score"].isna().tolist() == [False, True, False] * 2
    assert t["provenance"].tolist() == ["", "", "untrusted"] * 2
    assert not list(tmp_path.glob("*.tmp"))
    bad = tmp_path / "bad.parquet"
    with pytest.raises(RuntimeError):
        with results.ResultWriter(str(bad), group=1) as w:
            w.write(RECORDS[0])
            raise RuntimeError("interrupted")
    assert not bad.exists() and not list(tmp_path.glob("*.tmp"))


def test_parquet_needs_a_file():
    with pytest.raises(ValueError, match="parquet needs an output file"):
        results.ResultWriter(None, "parquet")
