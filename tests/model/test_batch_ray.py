"""``predict --engine ray``: detector actors on local Ray give the plain CLI's rows (model.batch)."""
from __future__ import annotations

import shutil

import pandas as pd
import pytest


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
