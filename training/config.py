"""One TOML config file per experiment; unknown keys are rejected.

Example (``configs/sample_lite0.toml``)::

    name = "sample-lite0"
    seed = 0
    [model]
    backbone = "efficientnet_lite0"
    input_size = 128
    weights = "weights/efficientnet_lite0_imagenet.weights.npz"
    [data]
    prepared = ["data/prepared/ffpp_mini", "data/prepared/utkface"]
    test_groups = ["ffpp:585", "ffpp:866"]
    [train]
    epochs = 8
"""
from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    pass


@dataclasses.dataclass
class ModelCfg:
    backbone: str = "efficientnet_b0"
    input_size: int = 128
    weights: str | None = None  # None | "imagenet" | path to converted Lite0 weights
    dropout: float = 0.3
    dense_units: list[int] = dataclasses.field(default_factory=lambda: [512, 128])
    face_margin: float = 0.3


@dataclasses.dataclass
class DataCfg:
    prepared: list[str] = dataclasses.field(default_factory=list)  # folders made by `python -m training prepare`
    # Splits are computed here, at training time, from the prepared folders' source index (training.datasets.
    # assign_splits): official splits first, then explicit groups; a dataset with an explicit group puts its other
    # groups in train; the rest are hashed (seed) into val_fraction / test_fraction of each dataset's items.
    val_groups: list[str] = dataclasses.field(default_factory=list)
    test_groups: list[str] = dataclasses.field(default_factory=list)
    val_fraction: float = 0.15
    test_fraction: float = 0.2
    # Per dataset: real faces are real_weight / (sum) of its samples; the fake rest is split between the dataset's
    # own fakes and self-blended fakes as fake_weight : sbi_weight (all self-blended for real-only datasets, even
    # with sbi_weight = 0: sbi_weight only sets the ratio where a dataset has fakes of its own).
    real_weight: float = 0.5
    fake_weight: float = 0.25
    sbi_weight: float = 0.25
    max_val_per_dataset: int = 400  # cap validation crops per dataset and label (keeps validation fast)
    val_datasets: list[str] = dataclasses.field(default_factory=list)  # datasets used for validation (empty: all)
    # Manipulation methods (crops.csv ``method``, e.g. "NeuralTextures") whose FAKE files are dropped from the
    # TRAIN split only (validation and test keep them): leave-one-method-out runs (``python -m research lomo``).
    exclude_methods: list[str] = dataclasses.field(default_factory=list)
    # Datasets whose crops are dropped from the TRAIN split only (validation and test keep them): leave-one-
    # dataset-out runs, e.g. train without DFDC and test on DFDC's test split. Keep them out of val_datasets too,
    # so neither model selection nor calibration sees the held-out dataset.
    exclude_datasets: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class AugmentCfg:
    flip: bool = True
    brightness: float = 0.1
    contrast: float = 0.15
    jpeg_quality: list[int] = dataclasses.field(default_factory=lambda: [40, 100])
    jpeg_prob: float = 0.5


@dataclasses.dataclass
class TrainCfg:
    batch_size: int = 32
    epochs: int = 10
    steps_per_epoch: int = 100
    optimizer: str = "adamw"  # adam | adamw | sgd
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    schedule: str = "cosine"  # cosine | constant
    warmup_epochs: float = 0.5
    early_stopping_patience: int = 4
    label_smoothing: float = 0.0


@dataclasses.dataclass
class Config:
    name: str = "experiment"
    seed: int = 0
    description: str = ""
    model: ModelCfg = dataclasses.field(default_factory=ModelCfg)
    data: DataCfg = dataclasses.field(default_factory=DataCfg)
    augment: AugmentCfg = dataclasses.field(default_factory=AugmentCfg)
    train: TrainCfg = dataclasses.field(default_factory=TrainCfg)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_SECTIONS = {"model": ModelCfg, "data": DataCfg, "augment": AugmentCfg, "train": TrainCfg}


def _build(cls, d: dict[str, Any], where: str):
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - set(fields))
    if unknown:
        raise ConfigError(f"unknown key(s) in {where}: {', '.join(unknown)}; allowed: {', '.join(fields)}")
    kw = {}
    for k, v in d.items():
        if k in _SECTIONS and where == "config":
            if not isinstance(v, dict):
                raise ConfigError(f"[{k}] must be a table")
            kw[k] = _build(_SECTIONS[k], v, f"[{k}]")
        else:
            kw[k] = v
    return cls(**kw)


def from_dict(d: dict[str, Any]) -> Config:
    cfg = _build(Config, d, "config")
    validate(cfg)
    return cfg


def load(path: str | Path) -> Config:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file not found: {p}")
    try:
        d = tomllib.loads(p.read_text())
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{p}: invalid TOML: {e}") from None
    return from_dict(d)


def validate(cfg: Config) -> None:
    from model.network import BACKBONES

    if cfg.model.backbone not in BACKBONES:
        raise ConfigError(f"model.backbone {cfg.model.backbone!r} unknown; choose one of {', '.join(BACKBONES)}")
    if cfg.model.input_size < 32:
        raise ConfigError("model.input_size must be >= 32")
    if cfg.train.optimizer not in ("adam", "adamw", "sgd"):
        raise ConfigError("train.optimizer must be adam, adamw or sgd")
    if cfg.train.schedule not in ("cosine", "constant"):
        raise ConfigError("train.schedule must be cosine or constant")
    if cfg.train.epochs < 1 or cfg.train.batch_size < 1 or cfg.train.steps_per_epoch < 1:
        raise ConfigError("train.epochs, batch_size and steps_per_epoch must be >= 1")
    w = (cfg.data.real_weight, cfg.data.fake_weight, cfg.data.sbi_weight)
    if min(w) < 0 or sum(w) <= 0:
        raise ConfigError("data weights must be >= 0 and not all 0")
    if not cfg.data.prepared:
        raise ConfigError("data.prepared must list at least one prepared folder")
    em = cfg.data.exclude_methods
    if not isinstance(em, list) or not all(isinstance(m, str) and m.strip() for m in em):
        raise ConfigError("data.exclude_methods must be a list of method names (strings), e.g. [\"NeuralTextures\"]")
    ed = cfg.data.exclude_datasets
    if not isinstance(ed, list) or not all(isinstance(m, str) and m.strip() for m in ed):
        raise ConfigError("data.exclude_datasets must be a list of dataset names (strings), e.g. [\"dfdc\"]")
    if set(ed) & set(cfg.data.val_datasets):
        raise ConfigError("data.exclude_datasets must not be in data.val_datasets (the held-out dataset would "
                          "choose the model and fit its calibration)")
    if set(cfg.data.val_groups) & set(cfg.data.test_groups):
        raise ConfigError("a group cannot be in both data.val_groups and data.test_groups")
