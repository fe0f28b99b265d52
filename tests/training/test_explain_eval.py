"""``python -m training explain-eval``: deletion areas per method over a run's test fakes, re-cut from the sources."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pandas as pd
import pytest

from model import explain
from tests.evaldata import write_v1_run, write_v2_run
from training import explain_eval

@pytest.fixture(scope="module")
def run_with_faces(tmp_path_factory, tiny_detector, tiny_model_dir, astronaut):
    assert explain.recut_available(tiny_detector)
    root = tmp_path_factory.mktemp("xeval")
    rows = []
    for i, img in enumerate((astronaut, astronaut[:, ::-1].copy())):
        p = root / f"fake_{i}.png"
        cv2.imwrite(str(p), img[..., ::-1])
        f = tiny_detector.analyze_array(img).face_results[0]
        rows.append(dict(path=str(p), dataset="ffpp", method="Deepfakes", compression="c23", group=f"ffpp:{i}",
                         label=1, frame=0, track=0, face=0, score=f.score, raw_score=f.score,
                         x=f.box[0], y=f.box[1], w=f.box[2], h=f.box[3]))
    missing = dict(rows[0], path=str(root / "not_here.png"), group="ffpp:9")
    real = dict(rows[0], label=0, method="", group="ffpp:8", path=str(root / "fake_0.png"))
    faces = pd.DataFrame(rows + [missing, real])
    return write_v2_run(root, "run", faces=faces, model_dir=tiny_model_dir)


def test_explain_eval_writes_mean_deletion_area_per_method(run_with_faces, tiny_detector):
    det = tiny_detector  # the run's model is a copy of the tiny model: reuse the loaded one (faster)
    out = explain_eval.explain_eval(run_with_faces, ["gradcam", "layercam"], faces=10, steps=4, progress=False, det=det)
    assert out["faces"] == 2 and out["faces_missing"] == 1  # the real face is never used; one file is absent
    by = {r["method"]: r for r in out["methods"]}
    assert set(by) == {"gradcam", "layercam", "random"}
    ev = run_with_faces / "evaluation"
    stored = json.loads((ev / explain_eval.EVAL_JSON).read_text())
    assert stored["methods"] == out["methods"] and stored["steps"] == 4 and stored["fill"] == "mean"
    per = pd.read_csv(ev / explain_eval.FACES_CSV)
    assert len(per) == 2 * 3
    for m in ("gradcam", "layercam", "random"):
        assert by[m]["deletion_area"] == pytest.approx(per.loc[per["method"] == m, "area"].mean(), abs=1e-6)
        assert by[m]["faces"] == 2
    assert by["layercam"]["seconds_per_face"] > 0
    # the face of the first file, re-cut and measured again by hand, gives the stored area
    r = per[(per["method"] == "gradcam") & (per["sample"] == 0)].iloc[0]
    crop = explain.recut_face(det, r["path"], int(r["frame"]), [r["x"], r["y"], r["w"], r["h"]])
    ex = explain.explain(det, crop, "gradcam")
    again = explain.deletion_curve(det, crop, ex.heat, steps=4, seed=0)  # sample i is deleted with seed i
    assert again.area == pytest.approx(r["area"], abs=1e-4)

    # another method later, same faces and settings: added beside the earlier ones
    out2 = explain_eval.explain_eval(run_with_faces, ["gradcam++"], faces=10, steps=4, progress=False, det=det)
    assert {r["method"] for r in out2["methods"]} == {"gradcam", "layercam", "gradcam++", "random"}
    assert {r["method"]: r["deletion_area"] for r in out2["methods"]}["gradcam"] == by["gradcam"]["deletion_area"]
    # other settings: a fresh table
    out3 = explain_eval.explain_eval(run_with_faces, ["gradcam"], faces=10, steps=2, progress=False, det=det)
    assert {r["method"] for r in out3["methods"]} == {"gradcam", "random"}
    assert "Grad-CAM (fast)" in explain_eval.format_table(out3)


def test_explain_eval_cli_and_errors(run_with_faces, tmp_path, capsys):
    from training.cli import main

    assert main(["explain-eval", str(run_with_faces), "--method", "scorecam", "--faces", "3", "--steps", "2"]) == 0
    text = capsys.readouterr().out
    assert "Score-CAM (faster)" in text and "random map (baseline)" in text and "explain_eval.json" in text
    old = write_v1_run(tmp_path, "old")
    assert main(["explain-eval", str(old)]) == 2
    assert "re-run `python -m training evaluate" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["explain-eval", str(run_with_faces), "--method", "lime"])


def test_test_fakes_spread_over_files(tmp_path):
    rows = [dict(path="a.mp4", label=1, score=0.9, frame=i) for i in range(10)]
    rows += [dict(path="b.mp4", label=1, score=0.8, frame=0), dict(path="c.mp4", label=0, score=0.1, frame=0)]
    ev = tmp_path / "r" / "evaluation"
    ev.mkdir(parents=True)
    (ev / "metrics.json").write_text(json.dumps({"schema": 2, "slices": []}))
    pd.DataFrame(rows).to_csv(ev / "face_predictions.csv", index=False)
    got = explain_eval.test_fakes(tmp_path / "r", 2)
    assert sorted(got["path"]) == ["a.mp4", "b.mp4"]  # one face per file before a second from the same file
    assert np.all(got["label"] == 1)
