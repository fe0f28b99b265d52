"""Shared tiny fixtures, generated at test time (public-domain images from scikit-image, videos via OpenCV)."""
from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import json
import textwrap

import cv2
import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"
FFPP = SHARED_DATA / "ffpp_mini"
UTK = SHARED_DATA / "utkface"
LFW = SHARED_DATA / "lfw"
DFDC_FACES = SHARED_DATA / "dfdc_faces"

needs_ffpp = pytest.mark.skipif(not FFPP.is_dir(), reason=f"dataset not present: {FFPP} (../shared/data beside the checkout)")
needs_dfdc_faces = pytest.mark.skipif(not DFDC_FACES.is_dir(), reason=f"dataset not present: {DFDC_FACES} (../shared/data beside the checkout)")
needs_utk = pytest.mark.skipif(not UTK.is_dir(), reason=f"dataset not present: {UTK} (../shared/data beside the checkout)")


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    from skimage import data

    return data.astronaut()


@pytest.fixture(scope="session")
def astronaut_png(tmp_path_factory, astronaut) -> Path:
    p = tmp_path_factory.mktemp("img") / "astronaut.png"
    cv2.imwrite(str(p), astronaut[..., ::-1])
    return p


def write_video(path: Path, frames: list[np.ndarray], fps: float = 10.0) -> Path:
    h, w = frames[0].shape[:2]
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    assert vw.isOpened()
    for f in frames:
        vw.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    vw.release()
    return path


def face_frames(astronaut: np.ndarray, n: int = 20, size: tuple[int, int] = (320, 240)) -> list[np.ndarray]:
    """The astronaut's face drifting slowly across a grey frame (one face, one track)."""
    w, h = size
    face = cv2.resize(astronaut[20:300, 120:330], (140, 180))
    out = []
    for i in range(n):
        f = np.full((h, w, 3), 90, np.uint8)
        x = 20 + int(i * (w - 180) / max(n - 1, 1))
        f[30:210, x:x + 140] = face
        cv2.putText(f, str(i), (5, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1)
        out.append(f)
    return out


@pytest.fixture(scope="session")
def face_video(tmp_path_factory, astronaut) -> Path:
    return write_video(tmp_path_factory.mktemp("vid") / "face.mp4", face_frames(astronaut))


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A tiny (64 px) B0 detector saved with a card that claims training, so labels are produced."""
    from model.network import ModelCard, build_detector, save_detector

    import keras

    keras.utils.set_random_seed(0)
    m = build_detector("efficientnet_b0", 64)
    d = tmp_path_factory.mktemp("model") / "tiny"
    from model.crops import CropSpec

    save_detector(m, ModelCard(backbone="efficientnet_b0", input_size=64, trained=True, threshold=0.5,
                               trained_on="test fixture (random weights)",
                               # the v2 contract's margin: this random network's Grad-CAM on the tighter v3
                               # crop of the astronaut is all zero (no positive gradient), which the explanation
                               # tests cannot use
                               crop_spec=CropSpec(size=64, margin=0.3, frames=4).to_dict()), d)
    return d


@pytest.fixture(scope="session")
def tiny_detector(tiny_model_dir):
    from model.api import Detector

    return Detector.load(tiny_model_dir)


# --------------------------------------------------------------------------- tiny generated dataset
PERSONS = ["p0", "p1", "p2", "p3"]


def _fake(frame: np.ndarray) -> np.ndarray:
    """A crude 'manipulation': the face region smoothed and tinted (learnable at tiny scale)."""
    f = frame.copy()
    region = f[40:200]
    f[40:200] = np.clip(cv2.GaussianBlur(region, (9, 9), 4).astype(int) + [30, -10, -10], 0, 255).astype(np.uint8)
    return f


def person_layout(root: Path, astronaut: np.ndarray, n: int, fakes: dict) -> Path:
    """A real/fake folder dataset: per person of PERSONS (the astronaut, re-tinted) a real video of ``n`` frames
    and, per ``fakes`` entry ``suffix: manipulation``, a fake video ``<person>_<suffix>.mp4``."""
    for i, p in enumerate(PERSONS):
        frames = face_frames(np.clip(astronaut * (0.8 + 0.1 * i) + 5 * i, 0, 255).astype(np.uint8), n=n)
        (root / "real" / p).mkdir(parents=True)
        (root / "fake" / p).mkdir(parents=True)
        write_video(root / "real" / p / f"{p}.mp4", frames)
        for suffix, manipulate in fakes.items():
            write_video(root / "fake" / p / f"{p}_{suffix}.mp4", [manipulate(f) for f in frames])
    return root


@pytest.fixture(scope="session")
def layout(tmp_path_factory, astronaut):
    root = person_layout(tmp_path_factory.mktemp("layout"), astronaut, 12, {"swap": _fake})
    (root / "fake" / "p0" / "corrupt.mp4").write_text("corrupt video bytes")
    return root


@pytest.fixture(scope="session")
def prepared(layout, tmp_path_factory):
    from model.crops import CropSpec
    from training import datasets, prepare

    df = datasets.index_dataset("folder", layout)
    out = tmp_path_factory.mktemp("prep") / "p"
    crops = prepare.prepare(df, out, spec=CropSpec(size=64, frames=4), progress=False)
    return out, crops




def tiny_config(tmp_path: Path, prepared_dir: Path, **train) -> Path:
    tr = {"batch_size": 8, "epochs": 2, "steps_per_epoch": 3, "learning_rate": 1e-3, "early_stopping_patience": 0}
    tr.update(train)
    text = textwrap.dedent(f"""
        name = "tiny"
        seed = 1
        [model]
        backbone = "efficientnet_b0"
        input_size = 64
        [data]
        prepared = ["{prepared_dir}"]
        val_groups = ["folder:p1", "folder:p2"]
        test_groups = ["folder:p3"]
        [train]
    """) + "\n".join(f"{k} = {json.dumps(v)}" for k, v in tr.items()) + "\n"
    p = tmp_path / "tiny.toml"
    p.write_text(text)
    return p


@pytest.fixture(scope="session")
def tiny_run(prepared, tmp_path_factory):
    """A tiny run folder made by the real training code: 1 epoch, evaluated (for dashboard tests)."""
    from training import evaluate, train

    root = tmp_path_factory.mktemp("runs")
    cfg = tiny_config(root, prepared[0], epochs=1, steps_per_epoch=2)
    run = train.train(cfg, run_dir=root / "tiny")
    evaluate.calibrate_run(run, progress=False)
    evaluate.evaluate_run(run, n_boot=50, progress=False)
    return run


RAY_MISSING = 'needs Ray: pip install "ray[data,train]==2.60.0"'


@pytest.fixture()
def no_ray_env(tmp_path) -> dict:
    """Environment for a subprocess in which ``import ray`` fails (a ``ray.py`` that raises ImportError first on
    PYTHONPATH), as on a machine without Ray."""
    shim = tmp_path / "no_ray"
    shim.mkdir()
    (shim / "ray.py").write_text("raise ImportError(\"No module named 'ray'\")\n")
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(shim), str(REPO)]), "TF_CPP_MIN_LOG_LEVEL": "2"}
