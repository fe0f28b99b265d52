import numpy as np
import pandas as pd
import pytest

from dashboard import overlays, runs, settings


def test_resolve_under_refuses_escape(tmp_path):
    (tmp_path / "a").mkdir()
    assert settings.resolve_under(tmp_path, "a") == (tmp_path / "a").resolve()
    for bad in ("../", "/etc/passwd", "a/../../x", "a\x00b"):
        with pytest.raises(settings.PathNotAllowed):
            settings.resolve_under(tmp_path, bad)
    (tmp_path / "link").symlink_to("/etc")
    with pytest.raises(settings.PathNotAllowed):
        settings.resolve_under(tmp_path, "link/passwd")


def test_confusion_and_misclassified():
    df = pd.DataFrame({"label": [0, 0, 1, 1, 0], "score": [0.1, 0.9, 0.8, 0.3, 0.6]})
    assert runs.confusion_at(df, 0.5).tolist() == [[1, 2], [1, 1]]
    fp = runs.misclassified(df, 0.5, "fp")
    assert fp["score"].tolist() == [0.9, 0.6]
    fn = runs.misclassified(df, 0.5, "fn")
    assert fn["score"].tolist() == [0.3]
    m = runs.metrics_at(df, 0.5)
    assert m["accuracy"] == pytest.approx(0.4)


def test_score_colour_and_boxes():
    assert overlays.score_color(0.0) == (0, 255, 0) and overlays.score_color(1.0) == (255, 0, 0)

    class F:
        box, score = [10, 10, 30, 30], 0.9

    img = np.zeros((100, 100, 3), np.uint8)
    out = overlays.draw_faces(img, [F()], 0.5, show_label=False)
    assert out.shape == img.shape
    # a fake at the threshold: the box edge is drawn in pure red, the inside of the box stays untouched
    assert out[10, 25].tolist() == [255, 0, 0] and out[25, 10].tolist() == [255, 0, 0]
    assert out[25, 25].tolist() == [0, 0, 0] and not img.any()  # the input is not modified
    F.score = 0.2
    out = overlays.draw_faces(img, [F()], 0.5, show_label=False)
    assert out[10, 25].tolist() == [0, 255, 0]  # real: green


def test_history_long(tiny_run):
    long = runs.history_long([tiny_run])
    assert set(long["metric"]) == {"loss", "auc", "accuracy"} and set(long["split"]) == {"train", "validation"}
    assert long["epoch"].min() == 1


def test_explorer_reads_png_and_shard_crops(tmp_path):
    """The dataset explorer shows crops of both prepare engines: PNG files and records inside Ray shards."""
    import cv2

    from dashboard.dataset import crop_image
    from training import shards

    rng = np.random.default_rng(0)
    a, b = (rng.integers(0, 256, (32, 32, 3), dtype=np.uint8) for _ in range(2))
    (tmp_path / "crops").mkdir()
    cv2.imwrite(str(tmp_path / "crops" / "a.png"), a[..., ::-1])
    rec = dict(label=1, file_label=1, frame=0, face=0, track=0, kps=[0.0] * 10, video="v", dataset="d", path="p")
    pngs = [cv2.imencode(".png", x[..., ::-1])[1].tobytes() for x in (a, b)]
    blob, offsets = shards.write_shard([(p, rec) for p in pngs])
    (tmp_path / "shards").mkdir()
    (tmp_path / "shards" / "d-00000.tfrecord").write_bytes(blob)
    assert np.array_equal(crop_image(tmp_path, "crops/a.png"), a)
    assert np.array_equal(crop_image(tmp_path, f"shards/d-00000.tfrecord@{offsets[1]}"), b)
    assert crop_image(tmp_path, "crops/missing.png") is None
    assert crop_image(tmp_path, f"shards/d-00000.tfrecord@{offsets[1] + 3}") is None  # not a record boundary
    assert crop_image(tmp_path, "../../etc/passwd") is None  # outside the prepared folder


def test_credential_details_and_markdown_escaping():
    from dashboard import detect

    prov = {"state": "invalid", "signer": "Evil [click](http://x)", "signer_cn": "cn", "actions": ["c2pa.edited"],
            "digital_source_type": "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia",
            "source_type": "AI-generated", "validation_codes": ["assertion.dataHash.mismatch"],
            "camera_make": "Canon", "camera_model": "EOS R5", "software": ""}
    rows = dict(detect.credential_details(prov))
    assert rows["Signer"] == "Evil [click](http://x) (certificate name: cn)"
    assert rows["Digital source type"].startswith("AI-generated (http://cv.iptc.org/")
    assert rows["Validation"].startswith("invalid:") and rows["Validation"].endswith("(assertion.dataHash.mismatch)")
    assert rows["EXIF camera"] == "Canon EOS R5" and "EXIF software" not in rows and "Signed at" not in rows
    assert detect.md_escape(rows["Signer"]).startswith("Evil \\[click\\](http://x)")  # no link rendered


def test_representative_video_face_is_the_one_whose_crop_was_kept():
    """Isotonic calibration gives equal calibrated scores to different raw scores: the page must show the face the
    engine kept a crop of (highest raw score), not the first face with the top calibrated score (crop None)."""
    import numpy as np

    from dashboard.detect import _representative_faces
    from model.api import FaceResult, FrameResult, Result

    def face(raw, crop, frame):
        return FaceResult(box=[0, 0, 10, 10], confidence=1.0, keypoints={}, score=0.8, label="fake", frame=frame,
                          track=0, crop=np.zeros((4, 4, 3), np.uint8) if crop else None, raw_score=raw)

    res = Result(path="v.mp4", kind="video")
    res.frames = [FrameResult(0, 0.0, [face(0.61, False, 0)]), FrameResult(1, 0.1, [face(0.70, True, 1)]),
                  FrameResult(2, 0.2, [face(0.65, False, 2)])]
    (f,) = _representative_faces(res)
    assert f.frame == 1 and f.crop is not None


def test_combined_cost_rows_read_the_measured_table(tmp_path):
    import json

    from dashboard.about import combined_cost_rows

    assert combined_cost_rows(tmp_path / "missing.json") == []
    f = tmp_path / "c.json"
    f.write_text(json.dumps({"detectors": ["faceswap", "generated"], "rows": [
        {"source": "utkface", "real": True, "n": 10, "faceswap": 0.5, "faceswap_ci": [0.2, 0.8], "generated": 0.1,
         "generated_ci": None, "combined": 0.6, "combined_ci": [0.3, 0.9]}]}))
    (r,) = combined_cost_rows(f)
    assert r == {"sample": "utkface", "kind": "real photos: false alarms", "n": 10, "faceswap": "50.0 % [20.0, 80.0]",
                 "generated": "10.0 %", "combined": "60.0 % [30.0, 90.0]"}
