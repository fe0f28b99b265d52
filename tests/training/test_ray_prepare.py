"""Sharded crops (training.shards) and the Ray Data prepare pipeline (training.prepare_ray)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tests.conftest import FFPP, needs_ffpp


def _recs(n):
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        img = rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)
        import cv2

        png = cv2.imencode(".png", img[..., ::-1])[1].tobytes()
        out.append((img, png, {"label": i % 2, "file_label": 1, "frame": i, "face": 0, "track": 0,
                               "kps": "[" + ",".join(["1.5"] * 10) + "]", "video": f"v{i}", "dataset": "d",
                               "path": f"/x/{i}.mp4"}))
    return out


def test_shard_roundtrip_and_open_crop(tmp_path):
    from training import shards

    recs = _recs(5)
    blob, offsets = shards.write_shard([(png, r) for _, png, r in recs])
    shards.write_bytes(tmp_path, "shards/d-00000.tfrecord", blob)
    f = tmp_path / "shards" / "d-00000.tfrecord"
    assert [o for o, _ in shards.iter_shard(f)] == offsets
    for (img, _, r), off in zip(recs, offsets):
        got = shards.open_crop(f"{f}@{off}")
        assert got.dtype == np.uint8 and np.array_equal(got, img)
    parsed = dict(shards.iter_shard(f))
    assert parsed[offsets[3]]["frame"] == [3] and parsed[offsets[3]]["video"] == [b"v3"]
    assert len(parsed[offsets[0]]["kps"]) == 10
    assert not list(tmp_path.rglob("*.tmp"))


def test_open_crop_bad_references(tmp_path):
    from training import shards

    recs = _recs(2)
    blob, offsets = shards.write_shard([(png, r) for _, png, r in recs])
    f = tmp_path / "s.tfrecord"
    f.write_bytes(blob)
    with pytest.raises(FileNotFoundError):
        shards.open_crop(f"{tmp_path}/missing.tfrecord@0")
    with pytest.raises(FileNotFoundError):
        shards.open_crop(tmp_path / "missing.png")
    with pytest.raises(ValueError):
        shards.open_crop(f"{f}@{offsets[1] + 3}")  # not a record boundary
    with pytest.raises(ValueError):
        shards.open_crop(f"{f}@{len(blob) + 10}")
    assert shards.crop_exists(f"{f}@{offsets[1]}") and not shards.crop_exists(f"{tmp_path}/x.tfrecord@0")
    assert shards.parse_ref("a/b.png") == ("a/b.png", None)


def test_plan_is_stable_across_resumes(tmp_path):
    from training import prepare_ray

    idx = pd.DataFrame({"path": [f"/d/{i}.mp4" for i in range(5)], "dataset": ["a", "a", "a", "b", "b"]})
    p1 = prepare_ray.plan_shards(idx, str(tmp_path), shard_items=2)
    assert sorted(p1["shard"].unique()) == ["a-00000", "a-00001", "b-00000"]
    more = pd.concat([idx, pd.DataFrame({"path": ["/d/9.mp4"], "dataset": ["a"]})], ignore_index=True)
    p2 = prepare_ray.plan_shards(more, str(tmp_path), shard_items=2)
    assert dict(zip(p1["item"], p1["shard"])).items() <= dict(zip(p2["item"], p2["shard"])).items()
    assert p2.set_index("item").loc[p2["item"].iloc[-1], "shard"] == "a-00002"  # new items: new shard


@pytest.mark.slow
@needs_ffpp
def test_ray_prepare_equals_single_process(tmp_path):
    """Local Ray, 2 workers, 2 ffpp_mini fakes + their originals, 2 frames: same records and pixels."""
    from model.crops import CropSpec
    from training import datasets, prepare, prepare_ray, shards

    df = datasets.index_dataset("ffpp", FFPP)
    fakes = df[(df["label"] == 1) & (df["original"] != "")].head(2)
    sub = pd.concat([fakes, df[df["path"].isin(fakes["original"])]], ignore_index=True)
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"not a video")
    sub = pd.concat([sub, sub.iloc[[0]].assign(path=str(bad), original="")], ignore_index=True)
    spec = CropSpec(size=64, frames=2)
    a = prepare.prepare(sub, tmp_path / "local", spec=spec, progress=False)
    b = prepare_ray.prepare(sub, str(tmp_path / "ray"), spec=spec, workers=2, shard_items=2, progress=False)
    assert len(a) == len(b) > 0
    a = a.sort_values(["video", "frame", "face"]).reset_index(drop=True)
    cols = [c for c in a.columns if c != "crop"]
    pd.testing.assert_frame_equal(a[cols].astype(str), b[cols].astype(str))
    assert set(a["label"]) == {0, 1}
    for ca, cb in zip(a["crop"], b["crop"]):
        assert cb.startswith("shards/") and "@" in cb
        assert np.array_equal(shards.open_crop(tmp_path / "local" / ca), shards.open_crop(f"{tmp_path / 'ray'}/{cb}"))
    errs = pd.read_csv(tmp_path / "ray" / "errors.csv")
    assert len(errs) == 1 and "broken" in errs["video"].iloc[0]
    # the folder works with the existing loaders, and a second run resumes: nothing is redone
    loaded = prepare.load_crops(tmp_path / "ray")
    assert len(loaded) == len(b) and loaded["crop_size"].iloc[0] == 64
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "ray" / "shards").iterdir()}
    victim = sorted((tmp_path / "ray" / "index").iterdir())[0]
    victim.unlink()  # as if that shard was in flight when killed
    again = prepare_ray.prepare(sub, str(tmp_path / "ray"), spec=spec, workers=2, shard_items=2, progress=False)
    assert len(again) == len(b)
    after = {p: p.stat().st_mtime_ns for p in (tmp_path / "ray" / "shards").iterdir()}
    redone = [p for p in before if after[p] != before[p]]
    assert len(redone) <= 1
    with pytest.raises(ValueError, match="prepared with"):
        prepare_ray.prepare(sub, str(tmp_path / "ray"), spec=spec.replace(size=96), progress=False)
