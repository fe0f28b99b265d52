"""pyproject.toml: name, version, dependencies and console scripts; bench/ runs without sys.path edits."""
from __future__ import annotations

import importlib
import subprocess
import sys
import tomllib

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


@pytest.mark.slow
def test_pip_install_editable(tmp_path):
    """`pip install -e .` in a fresh virtual environment (reusing the installed dependencies) gives both commands."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True)
    pip = venv / "bin" / "pip"
    r = subprocess.run([str(pip), "install", "--no-build-isolation", "--no-deps", "-e", str(REPO)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    for script in ("deepfake-detect", "deepfake-train"):
        out = subprocess.run([str(venv / "bin" / script), "--help"], capture_output=True, text=True, cwd=tmp_path,
                             timeout=120)
        assert out.returncode == 0 and "usage:" in out.stdout, out.stderr[-2000:]
    r = subprocess.run([str(venv / "bin" / "python"), str(REPO / "bench" / "video.py"), "--help"], capture_output=True,
                       text=True, cwd=tmp_path, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
