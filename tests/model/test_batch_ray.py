"""``predict --engine ray``: detector actors on local Ray give the plain CLI's rows (model.batch)."""
from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest

from tests.conftest import face_frames, write_video


@pytest.fixture()
def folder(tmp_path, astronaut_png, face_video):
    d = tmp_path / "in"
    (d / "sub").mkdir(parents=True)
    shutil.copy(astronaut_png, d / "a.png")
    shutil.copy(face_video, d / "sub" / "clip.mp4")
    (d / "broken.jpg").write_bytes(b"not an image")
    return d


def test_parquet_output_local_engine_matches_csv(folder, tmp_path, tiny_model_dir):
    from model import cli

    assert cli.main(["predict", str(folder), "--model", str(tiny_model_dir), "--output", str(tmp_path / "a.csv"), "--quiet"]) == 0
    assert cli.main(["predict", str(folder), "--model", str(tiny_model_dir), "--output", str(tmp_path / "a.parquet"), "--quiet"]) == 0
    a = pd.read_csv(tmp_path / "a.csv", keep_default_na=False)
    b = pd.read_parquet(tmp_path / "a.parquet")
    assert list(b.columns) == list(a.columns) and len(a) == 3
    assert list(a["path"]) == list(b["path"]) and list(a["label"]) == list(b["label"])
    assert b["score"].isna().sum() == 1 and "broken" in b.loc[b["score"].isna(), "path"].iloc[0]
    ok = b["score"].notna()
    assert ((b.loc[ok, "score"] >= 0) & (b.loc[ok, "score"] <= 1)).all()
    assert not list(tmp_path.glob("*.tmp"))


@pytest.mark.slow
def test_ray_engine_same_rows_as_plain_cli(folder, tmp_path, tiny_model_dir):
    from model import cli

    assert cli.main(["predict", str(folder), "--model", str(tiny_model_dir), "--output", str(tmp_path / "plain.csv"), "--quiet"]) == 0
    assert cli.main(["predict", str(folder), "--model", str(tiny_model_dir), "--engine", "ray", "--workers", "2",
                     "--output", str(tmp_path / "ray.parquet"), "--quiet"]) == 0
    a = pd.read_csv(tmp_path / "plain.csv", keep_default_na=False)
    b = pd.read_parquet(tmp_path / "ray.parquet")
    assert list(a["path"]) == list(b["path"])  # input order kept
    assert list(a["label"]) == list(b["label"]) and list(a["faces"]) == list(b["faces"])
    assert list(a["kind"]) == list(b["kind"]) and list(a["error"]) == list(b["error"])
    sa = pd.to_numeric(a["score"], errors="coerce")
    assert sa.isna().tolist() == b["score"].isna().tolist()
    assert (sa.dropna() - b["score"].dropna()).abs().max() < 1e-6  # same engine, same crops: same P(fake)


def test_actor_runs_with_the_drivers_limits(tiny_model_dir, face_video):
    """An actor sets the limits object the driver gives it (not the environment's) before it analyses."""
    from model import batch, limits

    previous = limits.current()
    lim = limits.Limits(max_frame=(200, 160), max_video_s=1.0, decode_mem_mb=500, decode_timeout_s=60.0,
                        isolate=False)
    try:
        scorer = batch._Scorer(str(tiny_model_dir), 4, "max_mean", lim)
        assert limits.current() == lim
        rec = json.loads(scorer({"path": [str(face_video)]})["record"][0])
    finally:
        limits.configure(previous)
    assert rec["error"] == "video frames are 320x240, over the 200x160 limit (refused before decoding)"


@pytest.fixture()
def limit_folder(tmp_path, astronaut, face_video, astronaut_png):
    d = tmp_path / "lim"
    d.mkdir()
    shutil.copy(face_video, d / "a_clip.mp4")  # 320x240, 2 s: cut to its first second
    write_video(d / "b_big.mp4", face_frames(astronaut, 12, size=(480, 360)))  # over the frame limit: refused
    shutil.copy(astronaut_png, d / "c.png")
    return d


def _jsonl(path):
    recs = [json.loads(line) for line in path.read_text().splitlines()]
    for r in recs:
        r.pop("timings", None)  # seconds per stage: the only field that may differ between two runs
    return recs


@pytest.mark.slow
def test_ray_engine_applies_the_limit_flags_like_the_local_engine(limit_folder, tmp_path, tiny_model_dir):
    from model import cli

    flags = ["--model", str(tiny_model_dir), "--format", "jsonl", "--quiet", "--max-frame", "400x300",
             "--max-video-s", "1", "--decode-mem-mb", "600", "--decode-timeout-s", "90", "--no-isolation"]
    assert cli.main(["predict", str(limit_folder), "--output", str(tmp_path / "local.jsonl"), *flags]) == 0
    assert cli.main(["predict", str(limit_folder), "--engine", "ray", "--workers", "2",
                     "--output", str(tmp_path / "ray.jsonl"), *flags]) == 0
    local, ray = _jsonl(tmp_path / "local.jsonl"), _jsonl(tmp_path / "ray.jsonl")
    assert [r["path"].rsplit("/", 1)[1] for r in local] == ["a_clip.mp4", "b_big.mp4", "c.png"]
    assert local[0]["note"].startswith("first 1 s of 2 s analysed") and local[0]["error"] == ""
    assert local[1]["error"] == "video frames are 480x360, over the 400x300 limit (refused before decoding)"
    assert ray == local  # full records: frames, tracks, faces, scores, notes and errors
