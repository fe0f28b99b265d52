"""pyproject.toml: name, version, dependencies and console scripts; bench/ runs without sys.path edits; an
editable and a wheel install each work in a fresh virtual environment, whichever interpreter runs pytest."""
from __future__ import annotations

import importlib
import json
import os
import shutil
import site
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.conftest import REPO


@pytest.fixture(scope="module")
def project():
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def test_metadata_single_sources(project):
    import model

    p = project["project"]
    assert p["name"] == "deepfake-detect"
    assert set(p["dynamic"]) == {"version", "dependencies"}
    dyn = project["tool"]["setuptools"]["dynamic"]
    assert dyn["version"] == {"attr": "model.__version__"} and model.__version__
    assert dyn["dependencies"] == {"file": ["requirements.txt"]}
    reqs = [line.split(";")[0].strip() for line in (REPO / "requirements.txt").read_text().splitlines()
            if line.strip() and not line.startswith("#")]
    assert not any(r.startswith("-") for r in reqs), "setuptools cannot read -r/-e lines from requirements.txt"
    assert any(r.startswith("tf-keras-vis==") for r in reqs), "explanations need tf-keras-vis at run time"


@pytest.mark.parametrize("script,module", [("deepfake-detect", "model.cli"), ("deepfake-train", "training.cli")])
def test_console_scripts_point_at_mains(project, script, module):
    target = project["project"]["scripts"][script]
    mod, _, func = target.partition(":")
    assert mod == module
    main = getattr(importlib.import_module(mod), func)
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0


def test_bench_has_no_sys_path_edits():
    for f in sorted((REPO / "bench").glob("*.py")):
        assert "sys.path" not in f.read_text(), f"{f.name} edits sys.path (pip install -e . makes it unnecessary)"


def make_venv(path: Path) -> Path:
    """A fresh virtual environment that also sees the packages of the environment running pytest (its site
    directories, through a .pth file), so the test installs only this project, offline.

    ``--system-site-packages`` would not do: run from inside a venv, it exposes the base interpreter's packages,
    not the ones that venv installed. The project is built with pip's build isolation (setuptools from the index
    pip is configured with, as for ``pip install -r requirements-dev.txt``), so no build tool has to be present
    in either environment."""
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True, timeout=300)
    dirs = list(site.getsitepackages())
    if site.ENABLE_USER_SITE and Path(site.getusersitepackages()).is_dir():
        dirs.append(site.getusersitepackages())
    py = path / "bin" / "python"
    own = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                         capture_output=True, text=True, check=True).stdout.strip()
    (Path(own) / "_pytest_parent_env.pth").write_text(
        "".join(f"import site; site.addsitedir({d!r})\n" for d in dirs))
    return py


def pip(py: Path, *args: str, cwd: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PIP_NO_BUILD_ISOLATION")}
    r = subprocess.run([str(py), "-m", "pip", *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]


def run_in(venv_py: Path, *args: str, cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    """A console script (or ``bin/python``) of the venv, outside the checkout and without $DEEPFAKE_MODEL."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "DEEPFAKE_MODEL")}
    return subprocess.run([str(venv_py.parent / args[0]), *args[1:]], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=timeout)


@pytest.mark.slow
def test_pip_install_editable(tmp_path):
    """`pip install -e .` in a fresh virtual environment (reusing the installed dependencies) gives both commands."""
    py = make_venv(tmp_path / "venv")
    pip(py, "install", "--no-deps", "-e", str(REPO), cwd=tmp_path)
    for script in ("deepfake-detect", "deepfake-train"):
        out = run_in(py, script, "--help", cwd=tmp_path, timeout=120)
        assert out.returncode == 0 and "usage:" in out.stdout, out.stderr[-2000:]
    r = run_in(py, "python", str(REPO / "bench" / "video.py"), "--help", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]


def _wheel_sources(project: dict, dest: Path) -> Path:
    """The files a wheel is built from (pyproject's packages and package-dir, the metadata files), copied out of
    the checkout: the build leaves nothing in it and no stale build/ folder can leak into the wheel."""
    st = project["tool"]["setuptools"]
    folders = {p.split(".")[0] for p in st["packages"]} | set(st.get("package-dir", {}).values())
    dest.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE", "requirements.txt"):
        shutil.copy2(REPO / name, dest / name)
    for f in sorted(folders):
        shutil.copytree(REPO / f, dest / f, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return dest


@pytest.mark.slow
def test_wheel_install_uses_the_bundled_model(project, tmp_path, astronaut_png):
    """`pip install .` (a wheel, not editable) in a fresh venv: `info` and `predict` use the bundled model."""
    card = json.loads((REPO / "runs" / "sample" / "model" / "model_card.json").read_text())
    src = _wheel_sources(project, (tmp_path / "src"))
    py = make_venv(tmp_path / "venv")
    pip(py, "wheel", "--no-deps", "-w", str(tmp_path / "dist"), str(src), cwd=tmp_path)
    (whl,) = (tmp_path / "dist").glob("deepfake_detect-*.whl")
    pip(py, "install", "--no-deps", str(whl), cwd=tmp_path)
    shutil.rmtree(src)  # nothing may come from the sources
    installed = Path(subprocess.run([str(py), "-c", "import model, os; print(os.path.dirname(model.__file__))"],
                                    capture_output=True, text=True, cwd=tmp_path, check=True).stdout.strip())
    assert installed.is_relative_to(tmp_path / "venv"), installed
    bundled = installed / "bundled"
    assert (bundled / "detector.keras").read_bytes() == (REPO / "runs/sample/model/detector.keras").read_bytes()

    r = run_in(py, "deepfake-detect", "info", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    info = json.loads(r.stdout)
    assert (info["run"], info["backbone"], info["threshold"], info["trained"]) == \
        (card["run"], card["backbone"], card["threshold"], True)
    assert f"using model faceswap: {bundled}" in r.stderr and "UNTRAINED" not in r.stderr, r.stderr[-3000:]
    # every registry detector ships: the generated-face detector too, from its package folder
    gan = installed / "bundled_gan"
    assert (gan / "detector.keras").read_bytes() == (REPO / "runs/gan/model/detector.keras").read_bytes()
    assert f"generated: {gan}" in r.stderr, r.stderr[-3000:]

    r = run_in(py, "deepfake-detect", "predict", str(astronaut_png), "--format", "json", cwd=tmp_path, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    (row,) = json.loads(r.stdout)
    assert row["model"] == str(bundled) and row["threshold"] == pytest.approx(card["threshold"])
    assert row["faces"] >= 1 and row["label"] in ("fake", "real")
    assert set(row["detectors"]) == {"faceswap", "generated"} and row["verdict"] in ("fake", "real")
