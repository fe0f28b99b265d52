"""DFDC exported as face crops: the indexer, face-identity groups and their checks, re-grouping prepared crops."""
import cv2
import numpy as np
import pandas as pd
import pytest

from tests.conftest import DFDC_FACES, needs_dfdc_faces
from training import datasets, identity
from training.datasets import assign_splits, check_no_leak, index_dataset


def _layout(tmp_path, astronaut):
    (tmp_path / "real").mkdir()
    (tmp_path / "fake").mkdir()
    face = cv2.resize(astronaut[30:230, 140:340], (224, 224))[..., ::-1]
    rows = []
    for i in range(4):
        cv2.imwrite(str(tmp_path / "real" / f"r{i}.jpg"), face)
        cv2.imwrite(str(tmp_path / "fake" / f"f{i}.jpg"), face[:, ::-1])
        rows += [dict(path=f"real/r{i}.jpg", label="real", video=f"r{i}", original="", face_width=150, face_height=150),
                 dict(path=f"fake/f{i}.jpg", label="fake", video=f"f{i}", original=f"r{i}", face_width=150, face_height=150)]
    rows.append(dict(path="fake/gone.jpg", label="fake", video="gone", original="r0", face_width=1, face_height=1))
    pd.DataFrame(rows).to_csv(tmp_path / "metadata.csv", index=False)
    return tmp_path


def test_dfdc_faces_index_pairs_fakes_with_originals(tmp_path, astronaut):
    df = index_dataset("dfdc_faces", _layout(tmp_path, astronaut))
    assert len(df) == 8  # the missing file is skipped
    assert set(df["media"]) == {"image"} and set(df["dataset"]) == {"dfdc"}
    fakes = df[df["label"] == 1]
    assert (fakes["method"] == "dfdc_fake").all()
    by_path = dict(zip(df["path"], df["group"]))
    assert all(by_path[o] == g for o, g in zip(fakes["original"], fakes["group"]))


def test_dfdc_faces_without_metadata_is_an_error(tmp_path):
    with pytest.raises(datasets.DatasetError, match="metadata.csv"):
        index_dataset("dfdc_faces", tmp_path)


def _synthetic(n_people=6, videos=3, seed=0):
    """Embeddings of n_people, each in ``videos`` real videos (spread 0.1 around a person centre ~1.0 apart), and
    one fake per real video whose swapped-in face is the NEXT person's."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 1, (n_people, 128)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True) / 0.75
    rows, emb = [], []
    for p in range(n_people):
        for v in range(videos):
            rows.append(dict(path=f"/r/{p}_{v}", label=0, original="", group=f"dfdc:{p}_{v}", dataset="dfdc"))
            emb.append(centres[p] + rng.normal(0, 0.1 / np.sqrt(128), 128))
    for p in range(n_people):
        for v in range(videos):
            rows.append(dict(path=f"/f/{p}_{v}", label=1, original=f"/r/{p}_{v}", group=f"dfdc:{p}_{v}", dataset="dfdc"))
            emb.append(centres[(p + 1) % n_people] + rng.normal(0, 0.1 / np.sqrt(128), 128))
    df = pd.DataFrame(rows)
    df["ids"] = df["group"]
    return df, np.asarray(emb, np.float32)


def test_identity_groups_join_a_persons_videos_and_keep_fakes_with_originals():
    df, emb = _synthetic()
    g = identity.attach_groups(df, emb, threshold=0.5)
    reals, fakes = g[g["label"] == 0], g[g["label"] == 1]
    # each person's three videos are one cluster, and people are apart
    person = reals["path"].str.extract(r"/r/(\d+)_")[0]
    assert reals.groupby(person)["group"].nunique().eq(1).all()
    assert reals["group"].nunique() == 6
    # a fake sits in its original's group, and its swapped-in face (the next person) is one of its ids
    home = dict(zip(reals["path"], reals["group"]))
    assert (fakes["group"] == fakes["original"].map(home)).all()
    assert (fakes["ids"].str.split(" ").str.len() == 2).all()
    rep = identity.report(assign_splits(g.assign(split=""), val=0.2, test=0.2, seed=1), emb)
    assert rep["clusters"] == 6 and rep["fakes_with_original_in_its_group"] == rep["fakes"] == 18


def test_leak_check_sees_a_person_split_across_splits():
    df, emb = _synthetic()
    split = np.where(df["path"].str.contains("/r/0_0"), "test", "train")  # person 0's video 0 alone in test
    rep = identity.report(df.assign(split=split), emb)
    assert rep["leak_check"]["test"]["share_nearest_train_below_0.5"] == 1.0
    g = identity.attach_groups(df, emb, threshold=0.5)
    s = assign_splits(g.assign(split=""), val=0.2, test=0.3, seed=3)
    check_no_leak(s)
    rep = identity.report(s, emb)
    assert all(v["share_nearest_train_below_0.5"] == 0.0 for v in rep["leak_check"].values())


def test_collect_regroups_prepared_crops(tmp_path, astronaut):
    from model.crops import CropSpec
    from training import prepare

    (tmp_path / "src").mkdir()
    idx = index_dataset("dfdc_faces", _layout(tmp_path / "src", astronaut))
    spec = CropSpec(size=64, margin=0.0, frames=1)
    crops = prepare.prepare(idx, tmp_path / "out", spec=spec, progress=False)
    assert len(crops) == 8 and crops["group"].nunique() == 4
    regrouped = idx.assign(group="dfdc:id0", ids="dfdc:id0")
    crops = prepare.prepare(regrouped, tmp_path / "out", spec=spec, progress=False)  # nothing cut again
    assert set(crops["group"]) == {"dfdc:id0"}
    assert set(prepare.load_source_index(tmp_path / "out")["group"]) == {"dfdc:id0"}


@needs_dfdc_faces
def test_dfdc_faces_real_set_pairs_and_splits():
    md = pd.read_csv(DFDC_FACES / "metadata.csv", dtype=str, keep_default_na=False)
    df = index_dataset("dfdc_faces", DFDC_FACES)
    assert len(df) == len(md)
    assert (df["label"] == 1).sum() == (md["label"] == "fake").sum()
    s = assign_splits(df)
    check_no_leak(s)
    fakes = s[s["label"] == 1]
    split_of = dict(zip(s["path"], s["split"]))
    assert (fakes["original"].map(split_of) == fakes["split"]).all()


def test_evaluate_can_restrict_the_test_files_to_a_held_out_dataset(tmp_path):
    from training.evaluate import choose_test_files

    idx = pd.DataFrame({"path": [f"/x/{i}" for i in range(6)], "dataset": ["dfdc", "dfdc", "ffpp", "ffpp", "lfw", "dfdc"],
                        "split": ["test", "test", "test", "val", "test", "train"], "label": [0, 1, 0, 1, 0, 1],
                        "group": list("abcdef")})
    assert list(choose_test_files(tmp_path, idx, datasets=["dfdc"])["path"]) == ["/x/0", "/x/1"]
    assert len(choose_test_files(tmp_path, idx)) == 4
    with pytest.raises(ValueError, match="no test files of celebdf"):
        choose_test_files(tmp_path, idx, datasets=["celebdf"])


def test_method_slices_compare_a_method_with_the_reals_of_its_own_datasets():
    from training.evaluate import _slices

    rng = np.random.default_rng(0)
    rows = []
    for ds, method, n in (("dfdc", "dfdc_fake", 40), ("ffpp", "Deepfakes", 20)):
        for i in range(n):
            rows.append(dict(dataset=ds, method="real", label=0, compression="", group=f"{ds}{i % 10}",
                             score=rng.uniform(0.0, 0.5) if ds == "dfdc" else rng.uniform(0.4, 0.9), raw_score=0.5))
            rows.append(dict(dataset=ds, method=method, label=1, compression="", group=f"{ds}{i % 10}",
                             score=rng.uniform(0.45, 1.0), raw_score=0.5))
    ft = pd.DataFrame(rows)
    out = _slices(ft, ft.iloc[0:0], ["dfdc", "ffpp"], 0.5, 50)
    pooled = next(s for s in out if s["level"] == "file" and s["dataset"] != "ffpp" and s["method"] == "Deepfakes")
    own = next(s for s in out if s["level"] == "file" and s["dataset"] == "ffpp" and s["method"] == "Deepfakes")
    # FF++'s fakes are compared with FF++'s reals only, even in the pooled slice
    assert pooled["n"] == own["n"] == 40 and pooled["auc"] == own["auc"]
