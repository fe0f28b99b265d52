"""Indexers on small layouts of each dataset built on the fly (empty files stand in for videos)."""
import json

import pandas as pd
import pytest

from tests.conftest import FFPP, needs_ffpp, needs_utk, UTK
from training import datasets
from training.datasets import DatasetError, assign_splits, check_no_leak, index_dataset


def touch(root, *paths):
    for p in paths:
        f = root / p
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(b"\0")


def test_ffpp_layout_groups_and_official_split(tmp_path):
    touch(tmp_path, "original_sequences/youtube/c23/videos/000.mp4", "original_sequences/youtube/c23/videos/003.mp4",
          "original_sequences/youtube/c23/videos/100.mp4",
          "manipulated_sequences/Deepfakes/c23/videos/000_003.mp4", "manipulated_sequences/FaceSwap/c23/videos/003_000.mp4",
          "manipulated_sequences/Face2Face/c40/videos/100_009.mp4",
          "original_sequences/actors/c23/videos/01__kitchen_pan.mp4",
          "manipulated_sequences/DeepFakeDetection/c23/videos/01_02__kitchen_pan__ABCDEFGH.mp4")
    (tmp_path / "splits").mkdir()
    (tmp_path / "splits" / "train.json").write_text(json.dumps([["000", "003"]]))
    (tmp_path / "splits" / "test.json").write_text(json.dumps([["100", "009"]]))
    df = index_dataset("ffpp", tmp_path)
    assert len(df) == 8 and list(df.columns) == datasets.COLUMNS
    g = dict(zip(df["path"].map(lambda p: p.split("/")[-1]), df["group"]))
    assert g["000.mp4"] == g["003.mp4"] == g["000_003.mp4"] == g["003_000.mp4"]
    assert g["100.mp4"] == g["100_009.mp4"] != g["000.mp4"]
    assert g["01__kitchen_pan.mp4"] == g["01_02__kitchen_pan__ABCDEFGH.mp4"]
    s = dict(zip(df["path"].map(lambda p: p.split("/")[-1]), df["split"]))
    assert s["000_003.mp4"] == "train" and s["100_009.mp4"] == "test" and s["100.mp4"] == "test"
    by = df.set_index(df["path"].map(lambda p: p.split("/")[-1]))
    assert by.loc["100_009.mp4", "compression"] == "c40" and by.loc["000_003.mp4", "method"] == "Deepfakes"
    assert set(df[df.dataset == "dfd"]["path"].map(lambda p: p.split("/")[-1])) == {
        "01__kitchen_pan.mp4", "01_02__kitchen_pan__ABCDEFGH.mp4"}
    assert len(index_dataset("dfd", tmp_path)) == 2


def test_celebdf_layout_and_test_list(tmp_path):
    touch(tmp_path, "Celeb-real/id0_0000.mp4", "Celeb-real/id1_0001.mp4", "YouTube-real/00000.mp4",
          "Celeb-synthesis/id0_id1_0000.mp4", "Celeb-synthesis/id2_id3_0000.mp4")
    (tmp_path / "List_of_testing_videos.txt").write_text("1 YouTube-real/00000.mp4\n0 Celeb-synthesis/id2_id3_0000.mp4\n")
    df = index_dataset("celebdf", tmp_path)
    by = df.set_index(df["path"].map(lambda p: "/".join(p.split("/")[-2:])))
    assert by.loc["Celeb-synthesis/id0_id1_0000.mp4", "label"] == 1
    assert by.loc["Celeb-real/id0_0000.mp4", "group"] == by.loc["Celeb-real/id1_0001.mp4", "group"]  # linked by the fake
    assert by.loc["YouTube-real/00000.mp4", "split"] == "test" and by.loc["Celeb-real/id0_0000.mp4", "split"] == "train"


def test_dfdc_metadata_and_missing_metadata_logged(tmp_path, caplog):
    touch(tmp_path, "dfdc_train_part_0/a.mp4", "dfdc_train_part_0/b.mp4", "dfdc_train_part_1/c.mp4")
    (tmp_path / "dfdc_train_part_0" / "metadata.json").write_text(json.dumps({
        "a.mp4": {"label": "REAL", "split": "train"}, "b.mp4": {"label": "FAKE", "split": "train", "original": "a.mp4"},
        "gone.mp4": {"label": "FAKE", "original": "a.mp4"}}))
    with caplog.at_level("WARNING"):
        df = index_dataset("dfdc", tmp_path)
    assert "no metadata.json" in caplog.text
    assert len(df) == 2 and df["group"].nunique() == 1 and sorted(df["label"]) == [0, 1]


def test_dfdc_no_metadata_at_all_is_an_error(tmp_path):
    touch(tmp_path, "dfdc_train_part_0/a.mp4")
    with pytest.raises(DatasetError, match="no videos"):
        index_dataset("dfdc", tmp_path)


def test_timit_layout(tmp_path):
    touch(tmp_path, "higher_quality/fadg0/sa1-video-fram1.avi", "lower_quality/fadg0/sa1-video-fram1.avi",
          "vidtimit/fadg0/sa1.avi")
    df = index_dataset("timit", tmp_path)
    assert sorted(df["compression"]) == ["", "hq", "lq"] and df["group"].nunique() == 1


def test_generic_folder_and_errors(tmp_path):
    touch(tmp_path, "real/alice/1.jpg", "real/alice/2.jpg", "fake/x.mp4")
    df = index_dataset("folder", tmp_path)
    assert len(df) == 3 and df[df.label == 0]["group"].nunique() == 1
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no videos or images"):
        index_dataset("folder", tmp_path / "empty")
    with pytest.raises(DatasetError, match="not found"):
        index_dataset("folder", tmp_path / "missing")
    with pytest.raises(DatasetError, match="unknown dataset kind"):
        index_dataset("imagenet", tmp_path)


def test_assign_splits_never_splits_a_group():
    rows = [{"path": f"{g}_{i}", "group": f"g{g}", "split": "", "dataset": "x"} for g in range(30) for i in range(g % 4 + 1)]
    df = assign_splits(pd.DataFrame(rows), val=0.2, test=0.2, seed=3, test_groups=["g5"])
    check_no_leak(df)
    assert set(df["split"]) == {"train", "val", "test"}
    assert (df[df.group == "g5"]["split"] == "test").all()
    share = df["split"].value_counts(normalize=True)
    assert 0.1 < share["test"] < 0.3 and 0.1 < share["val"] < 0.3
    bad = df.copy()
    bad.loc[bad.index[0], "split"] = "test" if bad.loc[bad.index[0], "split"] != "test" else "train"
    if bad.groupby("group")["split"].nunique().max() > 1:
        with pytest.raises(DatasetError):
            check_no_leak(bad)


@needs_ffpp
def test_ffpp_mini_index():
    df = index_dataset("ffpp", FFPP)
    assert len(df) == 67 and (df.label == 1).sum() == 44 and (df.label == 0).sum() == 23
    pair = df[df["path"].str.contains(r"/(?:183|253)(?:_(?:183|253))?\.mp4$")]
    assert len(pair) == 10 and pair["group"].nunique() == 1  # 2 reals + 4 methods x 2 directions
    check_no_leak(assign_splits(df, seed=0))


@needs_utk
def test_utkface_attributes():
    df = index_dataset("utkface", UTK)
    assert len(df) == 9780
    assert set(df["gender"]) <= {-1, 0, 1} and set(df["race"]) <= {-1, 0, 1, 2, 3, 4}
    assert (df["gender"] == 1).sum() > 5000
