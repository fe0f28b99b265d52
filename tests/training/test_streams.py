"""The per-dataset sample-weighting rule of the training input (``training.train.stream_weights``): pure, no TF."""
from __future__ import annotations

import pandas as pd
import pytest

from training import config
from training.train import stream_rows, stream_weights


def data_cfg(**kw) -> config.DataCfg:
    return config.DataCfg(prepared=["x"], **kw)


def table(counts: dict[str, tuple[int, int]]) -> pd.DataFrame:
    """A train split with ``counts[dataset] = (reals, fakes)`` crops."""
    rows = [(d, lab) for d, (r, f) in counts.items() for lab, n in ((0, r), (1, f)) for _ in range(n)]
    return pd.DataFrame(rows, columns=["dataset", "label"])


def by_key(streams):
    return {(s.dataset, s.label, s.sbi): s.weight for s in streams}


def test_equal_dataset_shares_and_the_split_within_one():
    # ffpp has 10x the crops of dfd: the datasets still weigh the same
    streams = stream_weights(table({"ffpp": (100, 400), "dfd": (10, 40)}), data_cfg(real_weight=0.5, fake_weight=0.3,
                                                                                    sbi_weight=0.2))
    w = by_key(streams)
    assert sum(w.values()) == pytest.approx(1.0)
    for d in ("ffpp", "dfd"):
        assert w[(d, 0, False)] == pytest.approx(0.25)  # half of the dataset's half
        assert w[(d, 1, False)] == pytest.approx(0.5 * 0.5 * 0.3 / 0.5)
        assert w[(d, 1, True)] == pytest.approx(0.5 * 0.5 * 0.2 / 0.5)
    # stream order and seeds: datasets sorted, parts real / own fakes / self-blended
    assert [(s.dataset, s.label, s.sbi, s.seed_offset) for s in streams] == [
        ("dfd", 0, False, 0), ("dfd", 1, False, 101), ("dfd", 1, True, 202),
        ("ffpp", 0, False, 1000), ("ffpp", 1, False, 1101), ("ffpp", 1, True, 1202)]


def test_real_only_dataset_is_all_self_blended_whatever_sbi_weight():
    for sbi in (0.0, 0.25):
        w = by_key(stream_weights(table({"ffpp": (10, 10), "lfw": (20, 0)}),
                                  data_cfg(real_weight=0.5, fake_weight=0.5, sbi_weight=sbi)))
        r = 0.5 / (0.5 + 0.5 + sbi)  # the real share of every dataset
        assert w[("lfw", 0, False)] == pytest.approx(0.5 * r)
        assert w[("lfw", 1, True)] == pytest.approx(0.5 * (1 - r))  # the whole fake share of lfw, self-blended
        assert ("lfw", 1, False) not in w
        assert (("ffpp", 1, True) in w) == (sbi > 0)  # where a dataset has fakes, sbi_weight sets the ratio
        assert sum(w.values()) == pytest.approx(1.0)


def test_fakes_only_dataset_is_all_fake():
    streams = stream_weights(table({"a": (10, 10), "fakes": (0, 7)}), data_cfg())
    w = by_key(streams)
    assert w[("fakes", 1, False)] == pytest.approx(0.5)
    assert [s for s in streams if s.dataset == "fakes"][0].seed_offset == 1000  # its only part is part 0
    assert sum(w.values()) == pytest.approx(1.0)


def test_stream_rows_are_the_dataset_reals_or_fakes():
    df = table({"a": (3, 2), "b": (4, 0)})
    for s in stream_weights(df, data_cfg()):
        rows = stream_rows(df, s)
        assert set(rows["dataset"]) == {s.dataset}
        assert set(rows["label"]) == {0 if s.sbi else s.label}  # self-blended fakes are made from real faces


def test_one_class_or_nothing_is_an_error():
    with pytest.raises(ValueError, match="both classes"):
        stream_weights(table({"fakes": (0, 5)}), data_cfg())
    with pytest.raises(ValueError, match="both classes"):  # reals with fakes that weigh nothing and no sbi
        stream_weights(table({"a": (5, 5)}), data_cfg(fake_weight=0.0, sbi_weight=0.0))
    with pytest.raises(ValueError, match="no training crops"):
        stream_weights(table({}), data_cfg())
