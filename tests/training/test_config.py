"""The training config schema: types, ranges, unknown keys, one-line errors, legacy run configs, the README table."""
from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import pytest

from tests.conftest import REPO
from training import config

BASE = {"name": "t", "data": {"prepared": ["data/prepared/x"]}}


def with_key(dotted: str, value) -> dict:
    d = json.loads(json.dumps(BASE))
    section, _, key = dotted.rpartition(".")
    (d.setdefault(section, {}) if section else d)[key] = value
    return d


def error_of(d: dict) -> str:
    with pytest.raises(config.ConfigError) as e:
        config.from_dict(d)
    return str(e.value)


def test_defaults_and_round_trip():
    cfg = config.from_dict(BASE)
    assert cfg.train.epochs == 10 and cfg.model.dense_units == [512, 128] and cfg.data.prepared == ["data/prepared/x"]
    assert config.from_dict(cfg.to_dict()) == cfg
    assert json.loads(json.dumps(cfg.to_dict())) == cfg.to_dict()  # what a run's config.json stores


@pytest.mark.parametrize("key,value,expect", [
    ("train.epochs", "10", "train.epochs: must be an integer >= 1 (got '10')"),
    ("train.epochs", 10.0, "train.epochs: must be an integer >= 1 (got 10.0)"),
    ("train.epochs", True, "train.epochs: must be an integer >= 1 (got True)"),
    ("train.learning_rate", "1e-3", "train.learning_rate: must be a number > 0 (got '1e-3')"),
    ("augment.flip", "yes", "augment.flip: must be true or false (got 'yes')"),
    ("augment.flip", 1, "augment.flip: must be true or false (got 1)"),
    ("model.backbone", 3, "model.backbone: must be one of efficientnet_b0"),
    ("train.optimizer", "rmsprop", "train.optimizer: must be one of adam, adamw, sgd (got 'rmsprop')"),
    ("seed", "0", "seed: must be an integer >= 0 (got '0')"),
    ("name", "../elsewhere", "name: must be a name of letters, digits"),
])
def test_wrong_type_is_one_line_naming_the_key(key, value, expect):
    msg = error_of(with_key(key, value))
    assert msg.startswith(expect) and "\n" not in msg


@pytest.mark.parametrize("key,value", [
    ("data.prepared", "data/x"),  # would be read one character at a time
    ("data.val_groups", "ffpp:001"),
    ("data.exclude_methods", "NeuralTextures"),
    ("model.dense_units", "512,128"),
    ("augment.jpeg_quality", 40),
])
def test_string_or_scalar_instead_of_list(key, value):
    msg = error_of(with_key(key, value))
    assert msg.startswith(f"{key}: must be a list of ") and repr(value) in msg


@pytest.mark.parametrize("key,value,expect", [
    ("train.epochs", 0, "integer >= 1"),
    ("train.batch_size", -4, "integer >= 1"),
    ("train.learning_rate", 0.0, "number > 0"),
    ("train.learning_rate", float("nan"), "number > 0"),
    ("train.label_smoothing", 1.0, "number in [0, 1)"),
    ("model.input_size", 16, "integer >= 32"),
    ("model.dropout", 1.5, "number in [0, 1)"),
    ("data.val_fraction", -0.1, "number in [0, 1)"),
    ("data.sbi_weight", -1.0, "number >= 0"),
    ("augment.jpeg_prob", 2.0, "number in [0, 1]"),
    ("augment.jpeg_quality", [40, 101], "list of exactly two integers in [0, 100]"),
    ("data.prepared", [], "list of one or more non-empty strings"),
    ("data.prepared", [""], "list of one or more non-empty strings"),
])
def test_out_of_range(key, value, expect):
    msg = error_of(with_key(key, value))
    assert msg.startswith(f"{key}: must be {'an' if expect[0] in 'aeiou' else 'a'} {expect}"), msg


@pytest.mark.parametrize("units", [[512], [512, 128, 64], [512, 0], [512.0, 128], []])
def test_dense_units_are_exactly_two_positive_ints(units):
    msg = error_of(with_key("model.dense_units", units))
    assert msg.startswith("model.dense_units: must be a list of exactly two integers >= 1")
    assert config.from_dict(with_key("model.dense_units", [256, 64])).model.dense_units == [256, 64]


def test_unknown_keys():
    msg = error_of(with_key("train.learning_rat", 0.1))
    assert msg.startswith("unknown key train.learning_rat; allowed in [train]: ") and "learning_rate" in msg
    assert error_of(with_key("bogus", 1)).startswith("unknown key bogus; allowed in the top level: ")
    assert error_of(with_key("model.face_margn", 0.3)).startswith("unknown key model.face_margn")


def test_sections():
    assert error_of({"name": "t"}) == "[data]: missing (it needs prepared)"
    assert error_of({**BASE, "train": 3}).startswith("train: must be a table")
    msg = error_of({**BASE, "model": {"backbone": "vgg"}, "train": {"epochs": 0}})
    assert msg.startswith("model.backbone: must be one of efficientnet_b0") and "(got 'vgg')" in msg
    assert msg.endswith("(also wrong: train.epochs)")


@pytest.mark.parametrize("data,key", [
    ({"val_groups": ["ffpp:1"], "test_groups": ["ffpp:1"]}, "data.val_groups, data.test_groups"),
    ({"exclude_datasets": ["dfdc"], "val_datasets": ["dfdc", "ffpp"]}, "data.exclude_datasets"),
    ({"real_weight": 0.0, "fake_weight": 0.0, "sbi_weight": 0.0}, "data.real_weight, fake_weight, sbi_weight"),
    ({"val_fraction": 0.5, "test_fraction": 0.5}, "data.val_fraction + data.test_fraction"),
])
def test_cross_key_checks(data, key):
    msg = error_of({**BASE, "data": {**BASE["data"], **data}})
    assert msg.startswith(key + ": ") and "\n" not in msg


def test_jpeg_quality_low_below_high():
    assert error_of(with_key("augment.jpeg_quality", [90, 40])).startswith("augment.jpeg_quality: must be [low, high]")


def test_load_reports_toml_errors(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text('name = "x"\n[data]\nprepared = "data/x"\n')
    with pytest.raises(config.ConfigError, match=re.escape("data.prepared: must be a list of one or more non-empty "
                                                           "strings (got 'data/x')")):
        config.load(p)
    with pytest.raises(config.ConfigError, match="not found"):
        config.load(tmp_path / "missing.toml")


def test_face_margin_rejected_in_toml_ignored_in_stored_runs(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text('name = "x"\n[model]\nface_margin = 0.3\n[data]\nprepared = ["data/x"]\n')
    with pytest.raises(config.ConfigError) as e:
        config.load(p)
    assert str(e.value).startswith("model.face_margin: no longer a config key") and "prepared folders" in str(e.value)
    stored = config.from_dict(with_key("model.face_margin", 0.3))  # a config.json written by an older version
    assert "face_margin" not in stored.to_dict()["model"]


@pytest.mark.parametrize("run", sorted(p.parent.name for p in (REPO / "runs").glob("*/config.json")))
def test_stored_run_configs_still_load(run):
    saved = json.loads((REPO / "runs" / run / "config.json").read_text())
    cfg = config.from_dict({k: v for k, v in saved.items() if k != "crop_spec"})
    assert cfg.name == saved["name"] and cfg.train.epochs == saved["train"]["epochs"]
    assert cfg.data.prepared == saved["data"]["prepared"]


@pytest.mark.parametrize("path", sorted(p.name for p in (REPO / "configs").glob("*.toml")))
def test_shipped_configs_load(path):
    config.load(REPO / "configs" / path)


def test_module_docstring_example_is_a_valid_config():
    doc = config.__doc__
    block = doc.split("::\n\n", 1)[1].split("\n\n", 1)[0]
    text = "\n".join(line.removeprefix("    ") for line in block.splitlines())
    cfg = config.from_dict(tomllib.loads(text))
    assert cfg.model.backbone == "efficientnet_lite0" and cfg.train.epochs == 8


def test_every_key_has_a_meaning():
    for model in (config.Config, *config.SECTIONS.values()):
        for key, field in model.model_fields.items():
            assert field.description and field.description.endswith("."), f"{model.__name__}.{key}"


def test_reference_lists_every_key_once():
    table = config.reference_markdown()
    keys = re.findall(r"^\| [^|]+ \| `(\w+)` \|", table, flags=re.M)
    want = [k for k in config.Config.model_fields if k not in config.SECTIONS]
    want += [k for m in config.SECTIONS.values() for k in m.model_fields]
    assert keys == want
    assert "| `[model]` | `dense_units` | list of exactly two integers >= 1 | `[512, 128]` |" in table
    assert "| `[data]` | `prepared` | list of one or more non-empty strings | required |" in table


def test_readme_reference_matches_the_schema():
    readme = (REPO / "README.md").read_text()
    assert config.readme_reference(readme) == config.reference_markdown(), \
        "README config reference is stale: run `python -m training config-reference --update README.md`"


def test_with_reference_rewrites_only_between_the_markers():
    text = f"intro\n{config.REFERENCE_START}\n| old |\n{config.REFERENCE_END}\nrest\n"
    out = config.with_reference(text)
    assert out.startswith("intro\n") and out.endswith(f"{config.REFERENCE_END}\nrest\n")
    assert config.readme_reference(out) == config.reference_markdown()
    with pytest.raises(config.ConfigError, match="config-reference"):
        config.readme_reference("no markers")


def test_cli_prints_one_line_and_exits_2(tmp_path, capsys):
    from training.cli import main

    p = tmp_path / "bad.toml"
    p.write_text('name = "x"\n[data]\nprepared = ["data/x"]\n[train]\nepochs = "10"\n')
    assert main(["train", str(p)]) == 2
    assert capsys.readouterr().err == "config error: train.epochs: must be an integer >= 1 (got '10')\n"


def test_cli_config_reference(capsys):
    from training.cli import main

    assert main(["config-reference"]) == 0
    assert capsys.readouterr().out == config.reference_markdown()


def test_crop_margin_comes_from_the_prepared_folders(tmp_path):
    from model.crops import CropSpec
    from training import train

    def folder(name, **spec):
        d = tmp_path / name
        d.mkdir()
        (d / "prepare.json").write_text(json.dumps({"crop_spec": CropSpec(**spec).to_dict(), "version": 2}))
        return str(d)

    a, b = folder("a", size=64, margin=0.2, frames=4), folder("b", size=64, margin=0.2, frames=8)
    spec = train.crop_spec_of(config.from_dict({"model": {"input_size": 64}, "data": {"prepared": [a, b]}}))
    assert spec.margin == 0.2 and spec.frames == 8
    c = folder("c", size=64, margin=0.4, frames=4)
    with pytest.raises(config.ConfigError, match="disagree"):
        train.crop_spec_of(config.from_dict({"model": {"input_size": 64}, "data": {"prepared": [a, c]}}))
    with pytest.raises(config.ConfigError, match="model.input_size: must be the crops' size"):
        train.crop_spec_of(config.from_dict({"model": {"input_size": 96}, "data": {"prepared": [a]}}))


def test_degradation_augmentation_is_seeded_and_changes_crops():
    import numpy as np
    import tensorflow as tf

    from training import config as config_mod
    from training.train import augmenter

    img = tf.constant(np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8))
    seed = tf.constant([3, 4], tf.int64)
    off = config_mod.AugmentCfg(flip=False, brightness=0, contrast=0, jpeg_prob=0)
    on = off.model_copy(update={"perturb_prob": 1.0, "perturb_max_level": 5, "perturbations": ["noise", "blur"]})
    x0, _ = augmenter(off)((img, 1.0), seed)
    x1, _ = augmenter(on)((img, 1.0), seed)
    x2, _ = augmenter(on)((img, 1.0), seed)
    np.testing.assert_array_equal(x0.numpy(), img.numpy().astype(np.float32))  # off: untouched
    assert np.abs(x1.numpy() - x0.numpy()).mean() > 1.0  # on (prob 1): degraded
    np.testing.assert_array_equal(x1.numpy(), x2.numpy())  # seeded: the same seed, the same degradation
    with pytest.raises(Exception, match="perturbations"):
        config_mod.AugmentCfg(perturbations=["h264"])
