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
    assert g["01__kitchen_pan.mp4"] == g["01_02__kitchen_pan__ABCDEFGH.mp4"] == "dfd:01"  # DFD: by target actor
    o = dict(zip(df["path"].map(lambda p: p.split("/")[-1]), df["original"]))
    assert o["000_003.mp4"].endswith("c23/videos/000.mp4") and o["100_009.mp4"].endswith("c23/videos/100.mp4")
    assert o["01_02__kitchen_pan__ABCDEFGH.mp4"].endswith("01__kitchen_pan.mp4") and o["000.mp4"] == ""
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
    assert by.loc["Celeb-synthesis/id0_id1_0000.mp4", "group"] == by.loc["Celeb-real/id0_0000.mp4", "group"]  # target
    assert by.loc["Celeb-synthesis/id0_id1_0000.mp4", "ids"] == "celeb:id0 celeb:id1"
    assert by.loc["Celeb-synthesis/id0_id1_0000.mp4", "original"].endswith("Celeb-real/id0_0000.mp4")
    assert by.loc["YouTube-real/00000.mp4", "split"] == "test" and by.loc["Celeb-real/id0_0000.mp4", "split"] == ""


def test_dfdc_metadata_and_missing_metadata_logged(tmp_path, caplog):
    touch(tmp_path, "dfdc_train_part_0/a.mp4", "dfdc_train_part_0/b.mp4", "dfdc_train_part_1/c.mp4")
    (tmp_path / "dfdc_train_part_0" / "metadata.json").write_text(json.dumps({
        "a.mp4": {"label": "REAL", "split": "train"}, "b.mp4": {"label": "FAKE", "split": "train", "original": "a.mp4"},
        "gone.mp4": {"label": "FAKE", "original": "a.mp4"}}))
    with caplog.at_level("WARNING"):
        df = index_dataset("dfdc", tmp_path)
    assert "no metadata.json" in caplog.text
    assert len(df) == 2 and set(df["group"]) == {"dfdc:dfdc_train_part_0"} and sorted(df["label"]) == [0, 1]
    assert df[df.label == 1]["original"].iloc[0].endswith("dfdc_train_part_0/a.mp4")


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
    # flip one row of a MULTI-row group: the leak check must catch it
    big = df.groupby("group").size()
    victim = df.index[df["group"] == big[big > 1].index[0]][0]
    bad = df.copy()
    bad.loc[victim, "split"] = "test" if bad.loc[victim, "split"] != "test" else "train"
    with pytest.raises(DatasetError, match="more than one split"):
        check_no_leak(bad)


def test_closed_cast_dfd_splits_by_actor(tmp_path):
    """28 actors who all swap with each other: union-find would make one group (no test set); by actor, every
    split gets actors and no actor is in two splits (cross-split swaps are excluded)."""
    actors = [f"{i:02d}" for i in range(1, 29)]
    paths = [f"original_sequences/actors/c23/videos/{a}__walk.mp4" for a in actors]
    paths += [f"manipulated_sequences/DeepFakeDetection/c23/videos/{a}_{b}__walk__X.mp4"
              for a in actors for b in actors if a != b and (int(a) + int(b)) % 5 == 0]
    touch(tmp_path, *paths)
    df = index_dataset("dfd", tmp_path)
    assert df["group"].nunique() == 28
    fake = df[df.label == 1].iloc[0]
    assert fake["original"].endswith(f"{fake['ids'].split()[0][4:]}__walk.mp4")  # the target actor's own scene
    s = assign_splits(df, val=0.15, test=0.2, seed=0)
    check_no_leak(s)
    live = s[s.split != "excluded"]
    assert {"train", "val", "test"} <= set(live["split"]) and (live[live.split == "test"].label == 1).any()
    # an identity never appears in two splits, also through the source face of a swap
    ex = live.assign(id=live["ids"].str.split(" ")).explode("id")
    assert ex.groupby("id")["split"].nunique().max() == 1


def test_celebdf_official_test_identities_leave_training(tmp_path):
    touch(tmp_path, "Celeb-real/id0_0000.mp4", "Celeb-real/id0_0001.mp4", "Celeb-real/id1_0000.mp4",
          "Celeb-real/id2_0000.mp4", "Celeb-synthesis/id0_id1_0000.mp4", "Celeb-synthesis/id2_id1_0000.mp4",
          "Celeb-synthesis/id2_id3_0000.mp4")
    (tmp_path / "List_of_testing_videos.txt").write_text("1 Celeb-real/id0_0000.mp4\n0 Celeb-synthesis/id0_id1_0000.mp4\n")
    df = index_dataset("celebdf", tmp_path)
    s = assign_splits(df, val=0.0, test=0.0, seed=0)
    check_no_leak(s)  # the official list overlaps training identities; the overlap is excluded, not a leak
    by = s.set_index(s["path"].map(lambda p: "/".join(p.split("/")[-2:])))["split"]
    assert by["Celeb-real/id0_0000.mp4"] == "test" and by["Celeb-synthesis/id0_id1_0000.mp4"] == "test"
    assert by["Celeb-real/id0_0001.mp4"] == "excluded"  # id0 is a test identity
    assert by["Celeb-real/id1_0000.mp4"] == "excluded" and by["Celeb-synthesis/id2_id1_0000.mp4"] == "excluded"
    assert by["Celeb-synthesis/id2_id3_0000.mp4"] == "train"


def test_dfdc_groups_by_part_at_full_scale():
    """DFDC's 119k videos split by part (the time it takes is measured by bench/train_index.py, not here)."""
    import numpy as np

    n = 119_000
    rng = np.random.default_rng(0)
    part = rng.integers(0, 50, n)
    df = pd.DataFrame({"path": [f"/d/dfdc_train_part_{p}/{i}.mp4" for i, p in zip(range(n), part)],
                       "dataset": "dfdc", "media": "video", "label": (np.arange(n) % 6 != 0).astype(int),
                       "group": [f"dfdc:dfdc_train_part_{p}" for p in part], "ids": "", "split": ""})
    s = assign_splits(df, val=0.15, test=0.2, seed=0)
    check_no_leak(s)
    assert s.groupby("group")["split"].nunique().max() == 1 and set(s["split"]) == {"train", "val", "test"}


def test_a_dataset_without_test_data_is_an_error_naming_it():
    from training.datasets import require_splits

    df = pd.DataFrame({"dataset": ["a", "a", "b"], "group": ["x", "y", "z"], "split": ["val", "test", "train"]})
    with pytest.raises(DatasetError, match="'b' has no val and no test"):
        require_splits(df)


@needs_ffpp
def test_ffpp_mini_index():
    df = index_dataset("ffpp", FFPP)
    videos = sorted(FFPP.rglob("*.mp4"))
    fakes = [v for v in videos if "manipulated_sequences" in str(v)]
    assert len(df) == len(videos) and (df.label == 1).sum() == len(fakes) and (df.label == 0).sum() == len(videos) - len(fakes)
    c40 = FFPP / "original_sequences" / "youtube" / "c40" / "videos"
    pair = df[df["path"].str.contains(r"/(?:183|253)(?:_(?:183|253))?\.mp4$")]
    assert pair["group"].nunique() == 1  # reals + every method in both directions, c23 and c40 together
    assert len(pair) == len([v for v in videos if v.stem in {"183", "253", "183_253", "253_183"}])
    # every fake whose target video is here names it as its original
    for r in df[(df.label == 1) & (df.dataset == "ffpp")].itertuples():
        target = r.path.split("/")[-1].split("_")[0]
        has = any(v.stem == target and "original_sequences" in str(v) for v in videos)
        assert (r.original != "") == has and (not has or r.original.endswith(f"/{target}.mp4"))
    assert (c40 / "183.mp4").is_file()
    check_no_leak(assign_splits(df, seed=0))


@needs_utk
def test_utkface_attributes():
    df = index_dataset("utkface", UTK)
    assert len(df) == 9780
    assert set(df["gender"]) <= {-1, 0, 1} and set(df["race"]) <= {-1, 0, 1, 2, 3, 4}
    assert (df["gender"] == 1).sum() > 5000


def test_generated_faces_layout_methods_and_groups(tmp_path):
    for sub, n in (("fake/stylegan2", 2), ("fake/sd21", 3), ("real/ffhq", 4)):
        (tmp_path / sub).mkdir(parents=True)
        for i in range(n):
            (tmp_path / sub / f"{i}.jpg").write_bytes(b"x")
    df = index_dataset("gan_faces", tmp_path)
    assert len(df) == 9 and set(df["dataset"]) == {"gan_faces"}
    assert df.groupby("method")["label"].agg(["count", "max"]).to_dict() == {
        "count": {"real": 4, "sd21": 3, "stylegan2": 2}, "max": {"real": 0, "sd21": 1, "stylegan2": 1}}
    assert df["group"].nunique() == 9  # every file its own group
    (tmp_path / "real" / "ffhq" / "0.jpg").unlink()
    import shutil

    shutil.rmtree(tmp_path / "real")
    with pytest.raises(DatasetError, match="folder real/ missing"):
        index_dataset("gan_faces", tmp_path)


def test_holdout_methods_leaves_only_the_test_split():
    from training.config import ConfigError
    from training.train import holdout_methods

    idx = pd.DataFrame({"label": [0, 1, 1, 1, 1, 0], "method": ["real", "a", "a", "a", "b", "real"],
                        "split": ["train", "train", "val", "test", "val", "val"]})
    out = holdout_methods(idx, ["a"])
    assert out["split"].tolist() == ["train", "excluded", "excluded", "test", "val", "val"]
    assert idx["split"].tolist()[1] == "train"  # the input is not changed
    with pytest.raises(ConfigError, match="no fake files of c .*present: a, b"):
        holdout_methods(idx, ["c"])
