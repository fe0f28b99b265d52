"""Several detectors in the dashboard: Detect side by side (file and face level, combined verdict), the re-test
after re-compression, the About page's registry, and Evaluation on a generated-face run folder.

Two tiny detectors are built from the tiny test model: "faceswap" (threshold 1.0: every face real) and
"generated" (threshold 0.0 and another crop margin: every face fake), so their verdicts differ for sure and
the combined verdict (fake when any detector says fake) is observable."""
from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from tests.conftest import REPO

FACESWAP_LOOKS = "blending seams where a swapped face meets the head (test card)"
GENERATED_LOOKS = "texture and symmetry traces of a face generator (test card)"


@pytest.fixture(scope="module")
def two_detectors(tiny_model_dir):
    from model.api import Detector, Scorer
    from model.crops import CropSpec
    from model.network import load_detector

    m1, card = load_detector(tiny_model_dir)
    m2, _ = load_detector(tiny_model_dir)
    c1 = dataclasses.replace(card, threshold=1.0, detects="face swaps (test card)", looks_for=FACESWAP_LOOKS,
                             threshold_policy="test: never fake")
    c2 = dataclasses.replace(card, threshold=0.0, detects="generated faces (test card)", looks_for=GENERATED_LOOKS,
                             threshold_policy="test: always fake",
                             crop_spec=CropSpec(size=64, margin=0.2, frames=4).to_dict())
    return Detector(scorers=[Scorer(m1, c1, key="faceswap", name="tiny-a"),
                             Scorer(m2, c2, key="generated", name="tiny-b")])


@pytest.fixture()
def env(monkeypatch, tmp_path, sample_cache):
    monkeypatch.setenv("DEEPFAKE_CACHE", str(sample_cache))
    monkeypatch.setenv("DEEPFAKE_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("DEEPFAKE_DATA", str(tmp_path / "no_data"))
    monkeypatch.setenv("DEEPFAKE_UPLOAD_DIR", str(tmp_path / "uploads"))
    (tmp_path / "uploads").mkdir()
    monkeypatch.chdir(REPO)
    return tmp_path


@pytest.fixture(scope="module")
def sample_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


def _use(monkeypatch, det):
    from dashboard import loaders

    monkeypatch.setattr(loaders, "detector", lambda: det)


def _app() -> AppTest:
    at = AppTest.from_file(str(REPO / "app_main.py"), default_timeout=120)
    at.run()
    return at


def _metric(at, label):
    return next(m.value for m in at.metric if m.label == label)


def _retest_table(at) -> pd.DataFrame:
    return next(pd.DataFrame(df.value) for df in at.dataframe if "verdict after" in list(df.value.columns))


# --------------------------------------------------------------------------- Detect: side by side
def test_two_detectors_side_by_side_with_combined_verdict(monkeypatch, env, two_detectors, astronaut_png):
    from model import registry

    data = astronaut_png.read_bytes()
    expected = two_detectors.analyze(data, display_name="astronaut.png")
    fs, gen = expected.detectors["faceswap"], expected.detectors["generated"]
    assert fs["score"] < 1.0 and gen["score"] >= 0.0  # the thresholds' premise: faceswap real, generated fake
    _use(monkeypatch, two_detectors)
    at = _app()
    at.file_uploader[0].set_value(("astronaut.png", data, "image/png")).run()
    assert not at.exception, at.exception
    # file level: each detector's score and verdict at its own threshold, and the combined verdict
    assert _metric(at, "P(fake) · faceswap") == f"{fs['score']:.3f}"
    assert _metric(at, "P(fake) · generated") == f"{gen['score']:.3f}"
    assert _metric(at, "Verdict · faceswap") == "Likely REAL"
    assert _metric(at, "Verdict · generated") == "Likely FAKE"
    assert _metric(at, "Verdict") == "Likely FAKE" and expected.verdict == "fake"
    captions = " ".join(c.value for c in at.caption)
    assert "score = P(fake) in [0, 1]" in captions
    assert registry.VERDICT_RULE.removeprefix("combined verdict: ")[1:] in captions
    assert FACESWAP_LOOKS in captions and GENERATED_LOOKS in captions
    # per face: one column per detector with its own score and verdict
    md = [m.value for m in at.markdown]
    face_fs = expected.face_results[0].detectors["faceswap"]["score"]
    face_gen = expected.face_results[0].detectors["generated"]["score"]
    assert f"**faceswap**: P(fake) = **{face_fs:.3f}** → real (threshold 1.000)" in md
    assert f"**generated**: P(fake) = **{face_gen:.3f}** → fake (threshold 0.000)" in md
    # a custom threshold per detector relabels without re-analysing
    at.toggle(key="custom_threshold").set_value(True).run()
    at.slider(key="threshold_generated").set_value(1.0).run()
    assert not at.exception
    assert _metric(at, "Verdict · generated") == "Likely REAL" and _metric(at, "Verdict") == "Likely REAL"
    assert _metric(at, "P(fake) · generated") == f"{gen['score']:.3f}"
    # Grad-CAM of every detector for the face
    at.toggle(key="cam_0").set_value(True).run(timeout=600)  # two maps and deletion curves on a busy CPU
    assert not at.exception, at.exception
    cams = at.session_state["gradcam"]
    for k in (("cam_0", "gradcam"), ("cam_0_generated", "gradcam")):
        assert cams[k].explanation.overlay.dtype == np.uint8 and cams[k].explanation.overlay.shape == (64, 64, 3)


def test_video_tracks_per_detector(two_detectors, face_video):
    """The per-track table has every detector's aggregated score and label and the combined label."""
    from dashboard import detect
    from model import registry

    res = two_detectors.analyze(str(face_video), frames=8)
    assert res.tracks
    rows = detect.track_rows(two_detectors, res)
    for r, t in zip(rows, res.tracks):
        for k in ("faceswap", "generated"):
            assert r[f"P(fake) · {k}"] == round(t.detectors[k]["score"], 4)
            assert r[f"label · {k}"] == t.detectors[k]["label"]
        assert r["combined"] == registry.combine(t.detectors[k]["label"] for k in ("faceswap", "generated"))
    assert {r["label · faceswap"] for r in rows} == {"real"} and {r["label · generated"] for r in rows} == {"fake"}


# --------------------------------------------------------------------------- re-test after re-compression
def test_retest_image_before_and_after(monkeypatch, env, two_detectors, astronaut_png, astronaut):
    from model import perturb

    data = astronaut_png.read_bytes()
    before = two_detectors.analyze(data, display_name="astronaut.png")
    after = two_detectors.analyze(perturb.image_bytes(perturb.apply(astronaut, "jpeg", 3)))
    _use(monkeypatch, two_detectors)
    at = _app()
    at.file_uploader[0].set_value(("astronaut.png", data, "image/png")).run()
    assert not at.exception
    assert at.select_slider(key="retest_level").value == 3
    at.button(key="retest_run").click().run()
    assert not at.exception, at.exception
    t = _retest_table(at)
    assert list(t["detector"]) == ["faceswap", "generated", "combined"]
    for k in ("faceswap", "generated"):
        row = t[t["detector"] == k].iloc[0]
        assert row["P(fake) before"] == pytest.approx(round(before.detectors[k]["score"], 4))
        assert row["P(fake) after"] == pytest.approx(round(after.detectors[k]["score"], 4))
        assert row["verdict before"] == before.detectors[k]["label"]
        assert row["verdict after"] == after.detectors[k]["label"]
    assert list(t["verdict"]) == ["stable"] * 3  # thresholds 1.0 / 0.0: no compression changes these verdicts
    assert any(s.value.startswith("Stable: the verdict stays **fake** after JPEG quality 50") for s in at.success)
    assert not list((env / "uploads").iterdir())


def test_retest_rows_say_fragile_when_a_verdict_changes(two_detectors, astronaut_png):
    """The same scores at a threshold between before and after: that detector's verdict is fragile."""
    from dashboard import detect

    before = two_detectors.analyze(astronaut_png.read_bytes())
    after = dataclasses.replace(before, detectors={k: dict(v) for k, v in before.detectors.items()})
    s = before.detectors["faceswap"]["score"]
    after.detectors["faceswap"]["score"] = s / 2
    thr = {"faceswap": 0.75 * s, "generated": 0.0}
    rows, cb, ca = detect.retest_rows(two_detectors, before, after, thr)
    assert [r["verdict"] for r in rows] == ["fragile", "stable", "stable"]
    assert (rows[0]["verdict before"], rows[0]["verdict after"]) == ("fake", "real")
    assert cb == ca == "fake"
    thr["generated"] = 1.0  # only faceswap could call it fake: the combined verdict changes too
    rows, cb, ca = detect.retest_rows(two_detectors, before, after, thr)
    assert (cb, ca) == ("fake", "real") and rows[-1]["verdict"] == "fragile"


def _video_sample(at):
    from dashboard.samples import SAMPLES

    at.radio[0].set_value("Bundled sample").run()
    at.selectbox[0].set_value(next(k for k, v in SAMPLES.items() if v.endswith(".mp4"))).run()
    assert not at.exception, at.exception


def test_retest_video_one_detector_removes_its_temp_folder(monkeypatch, env, tiny_detector):
    """One detector (a model folder): the H.264 re-test runs through the engine, its folder is gone afterwards."""
    from dashboard import detect

    _use(monkeypatch, tiny_detector)
    at = _app()
    _video_sample(at)
    at.button(key="retest_run").click().run()
    assert not at.exception, at.exception
    assert not list((env / "uploads").iterdir()), "re-test left files behind"
    t = _retest_table(at)
    assert list(t["detector"]) == ["model"]
    (res, _), = at.session_state["detect_results"].values()
    assert t["P(fake) before"][0] == pytest.approx(round(res.score, 4))
    after = next(iter(at.session_state[detect.RETEST_KEY].values()))
    assert after.kind == "video" and after.path.endswith(".h2643.mp4") and not after.error
    assert after.score is not None and t["P(fake) after"][0] == pytest.approx(round(after.score, 4))
    assert len(at.success) + len(at.warning) >= 1  # stable or fragile, said in words


def test_retest_ffmpeg_failure_is_one_line(monkeypatch, env, two_detectors):
    from model import perturb

    false = shutil.which("false")
    if false is None:
        pytest.skip("no `false` executable")
    monkeypatch.setattr(perturb, "ffmpeg_exe", lambda: false)  # an encoder that fails, as a broken ffmpeg does
    _use(monkeypatch, two_detectors)
    at = _app()
    _video_sample(at)
    at.button(key="retest_run").click().run()
    assert not at.exception, at.exception
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and "Could not re-test" in errors[0] and "re-encode" in errors[0], errors
    assert "\n" not in errors[0] and "Traceback" not in errors[0]
    assert not list((env / "uploads").iterdir()), "re-test left files behind after a failure"


# --------------------------------------------------------------------------- About: the registry
def test_about_lists_every_registry_entry(monkeypatch, env, two_detectors):
    from dashboard import about
    from model import registry

    rows = about.registry_rows(two_detectors)
    assert [r["detector"] for r in rows] == registry.keys()
    by = {r["detector"]: r for r in rows}
    assert by["generated"]["looks for"] == GENERATED_LOOKS and by["faceswap"]["looks for"] == FACESWAP_LOOKS
    assert by["generated"]["crop contract"] == "64 px, margin 20%" and by["faceswap"]["crop contract"] == "64 px, margin 30%"
    assert by["generated"]["threshold"].startswith("0.0000 (test: always fake)")
    _use(monkeypatch, two_detectors)
    at = _app()
    at.switch_page("app_pages/about.py").run()
    assert not at.exception, at.exception
    md = " ".join(m.value for m in at.markdown)
    for e in registry.REGISTRY:
        assert f"#### {e.key}" in md and f"| run folder | {e.run} |" in md
    assert "generated faces (test card)" in md and "face swaps (test card)" in md
    assert any(registry.VERDICT_RULE.removeprefix("combined verdict: ")[1:] in i.value for i in at.info)
    subs = [s.value for s in at.subheader]
    assert "The model in use: faceswap" in subs and "The model in use: generated" in subs


def test_about_registry_with_one_model_folder(tiny_detector):
    """A $DEEPFAKE_MODEL folder: the registry is still listed; an entry whose model folder is missing says so."""
    from dashboard import about
    from model import registry

    rows = about.registry_rows(tiny_detector)
    assert [r["detector"] for r in rows] == registry.keys()
    have = {e.key for e in registry.available()}
    for r in rows:
        assert r["in use"] == "no"
        if r["detector"] in have:
            assert r["detects"] != "—" and "px, margin" in r["crop contract"]
        else:
            assert r["status"].startswith("not available here")


# --------------------------------------------------------------------------- Evaluation: a generated-face run
GAN_METHODS = ("stylegan2", "sd21", "other_gan")


def write_gan_run(root, name: str, seed: int = 0, threshold: float = 0.5, headline: bool = True):
    """A run folder in the schema-2 layout whose test data is the image dataset ``gan_faces`` (FFHQ reals and
    three generators); metrics computed from the written predictions by tests.evaldata's slice function."""
    from tests.evaldata import _slice

    rng = np.random.default_rng(seed)
    rows = []
    for g in range(8):
        rows.append(dict(path=f"gan_faces/real/ffhq/{g}.png", kind="image", dataset="gan_faces", method="",
                         compression="", group=f"gan_faces:real/{g}", label=0, score=float(rng.beta(2, 4))))
        for m in GAN_METHODS:
            rows.append(dict(path=f"gan_faces/fake/{m}/{g}.png", kind="image", dataset="gan_faces", method=m,
                             compression="", group=f"gan_faces:{m}/{g}", label=1, score=float(rng.beta(4, 2))))
    ft = pd.DataFrame(rows)
    ft["raw_score"], ft["faces"], ft["error"] = ft["score"], 1, ""
    fc = ft.copy()
    fc["frame"], fc["track"], fc["face"] = 0, 0, 0
    fc["x"], fc["y"], fc["w"], fc["h"] = 10, 10, 50, 60
    slices = []
    for level, t in (("file", ft), ("face", fc)):
        dsets = ([("video datasets", t)] if headline else []) + [("gan_faces", t)]
        for dname, d in dsets:
            slices.append(_slice(d, threshold, level=level, dataset=dname, method="all", compression="all"))
            for m in GAN_METHODS:
                slices.append(_slice(d[(d["label"] == 0) | (d["method"] == m)], threshold, level=level,
                                     dataset=dname, method=m, compression="all"))
    head = slices[0] if headline else None
    run = root / name
    ev = run / "evaluation"
    ev.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"name": name}))
    m = {"schema": 2, "threshold": threshold, "threshold_policy": "youden on validation files",
         "calibration": {"method": "platt", "a": 1.0, "b": 0.0}, "headline": head, "slices": slices,
         "photo_sets": [], "n_files": len(ft), "n_faces": len(fc), "model_card": {}, "created": "2026-01-01"}
    (ev / "metrics.json").write_text(json.dumps(m))
    ft.to_csv(ev / "predictions.csv", index=False)
    fc.to_csv(ev / "face_predictions.csv", index=False)
    return run


def test_evaluation_reads_a_generated_face_run(monkeypatch, tmp_path, tiny_model_dir):
    from dashboard import runs

    root = tmp_path / "runs"
    write_gan_run(root, "gan", seed=0)
    write_gan_run(root, "logo-stylegan2", seed=1, headline=False)
    table, cells, old = runs.cross_dataset(runs.list_runs(root), "file", "all")
    assert {"gan_faces", *(f"gan_faces · {m}" for m in GAN_METHODS)} <= set(table.columns) and not old
    assert table.loc["logo-stylegan2", "video datasets"] == ""  # no pooled slice in that run
    monkeypatch.setenv("DEEPFAKE_RUNS", str(root))
    monkeypatch.setenv("DEEPFAKE_MODEL", str(tiny_model_dir))
    monkeypatch.chdir(REPO)
    at = _app()
    at.switch_page("app_pages/evaluation.py").run()
    assert not at.exception, at.exception
    for run in ("gan", "logo-stylegan2"):
        at.selectbox(key="eval_run").set_value(run).run()
        assert not at.exception, (run, at.exception)
        ds = at.selectbox(key="eval_dataset")
        assert "gan_faces" in ds.options
        ds.set_value("gan_faces").run()
        at.selectbox(key="eval_method").set_value("sd21").run()
        assert not at.exception, (run, at.exception)
        s = runs.find_slice(runs.evaluation(root / run), "file", "gan_faces", "sd21", "all")
        assert next(x.value for x in at.metric if x.label == "AUC") == runs.fmt(s["auc"])
