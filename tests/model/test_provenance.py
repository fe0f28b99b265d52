"""model.provenance: C2PA content credentials, read from files the tests sign themselves with a throwaway
certificate chain (tests/c2pa_fixtures.py), then tampered with, stripped, truncated and corrupted."""
from __future__ import annotations

import csv
import io
import json

import pytest
from PIL import Image

from model import isolation, limits, media, provenance
from model.provenance import Provenance
from tests import c2pa_fixtures as cf

pytest.importorskip("c2pa")

ISOLATED = limits.Limits()
IN_PROCESS = limits.Limits(isolate=False)


@pytest.fixture(scope="module")
def signing():
    return cf.make_signing()


@pytest.fixture(scope="module")
def plain_jpeg(astronaut):
    return cf.jpeg(astronaut)


@pytest.fixture(scope="module")
def signed_jpeg(plain_jpeg, signing):
    return cf.sign(plain_jpeg, signing)


def _one_line_error(p: Provenance) -> None:
    assert p.state == "error"
    assert p.summary.startswith("Content credentials: could not be read (")
    assert "\n" not in p.summary and "Traceback" not in p.summary


# --------------------------------------------------------------------------- a signed, AI-generated JPEG
@pytest.mark.parametrize("lim", [ISOLATED, IN_PROCESS], ids=["child", "in-process"])
def test_signed_ai_jpeg_is_untrusted_without_a_trust_list(signed_jpeg, tmp_path, lim, monkeypatch):
    """No trust list is configured by default, so an intact credential is "untrusted" (library state "Valid",
    code signingCredential.untrusted): signature and hashes check out, the signer is vouched for by no one."""
    monkeypatch.delenv(provenance.TRUST_ENV, raising=False)
    path = tmp_path / "signed.jpg"
    path.write_bytes(signed_jpeg)
    for source in (path, signed_jpeg):
        p = provenance.read(source, lim)
        assert p.state == "untrusted", p
        assert p.validation_state == "Valid" and "signingCredential.untrusted" in p.validation_codes
        assert (p.signer, p.signer_cn) == (cf.SIGNER_ORG, cf.SIGNER_CN)
        assert p.claim_generator.startswith("deepfake-detect-tests 1.0")
        assert p.actions == ("c2pa.created",)
        assert p.digital_source_type == cf.AI_SOURCE and p.source_type == "AI-generated" and p.ai == "yes"
        assert p.summary == (f"Content credentials: signed by {cf.SIGNER_ORG} (signer not on a trust list), "
                             "says AI-generated")
        assert p.manifests == 1 and p.ingredients == ()
        d = p.to_dict()
        assert json.loads(json.dumps(d)) == d and Provenance.from_dict(d) == p


def test_trust_anchor_makes_it_valid_and_another_ca_does_not(signed_jpeg, signing, tmp_path, monkeypatch):
    anchors = tmp_path / "anchors.pem"
    anchors.write_bytes(signing.ca_pem)
    monkeypatch.setenv(provenance.TRUST_ENV, str(anchors))
    p = provenance.read(signed_jpeg, ISOLATED)
    assert (p.state, p.validation_state, p.ai) == ("valid", "Trusted", "yes")
    assert p.summary == f"Content credentials: signed by {cf.SIGNER_ORG} (trusted signer), says AI-generated"
    anchors.write_bytes(cf.make_signing().ca_pem)  # someone else's CA: the check is real
    assert provenance.read(signed_jpeg, ISOLATED).state == "untrusted"
    monkeypatch.setenv(provenance.TRUST_ENV, str(tmp_path / "missing.pem"))
    p = provenance.read(signed_jpeg, IN_PROCESS)
    _one_line_error(p)
    assert provenance.TRUST_ENV in p.summary


def test_camera_capture_claim_is_not_ai(plain_jpeg, signing):
    p = provenance.read(cf.sign(plain_jpeg, signing,
                                definition=cf.manifest(provenance.IPTC + "digitalCapture")), IN_PROCESS)
    assert (p.state, p.ai, p.source_type) == ("untrusted", "no", "captured by a camera")
    assert p.summary.endswith("says captured by a camera")


# --------------------------------------------------------------------------- tampered, stripped, broken
def test_changed_pixels_make_it_invalid(signed_jpeg):
    sos = cf.jpeg_segments(signed_jpeg)[-1]
    assert sos[0] == 0xDA
    start = sos[1] + 2 + sos[2]  # entropy-coded image data, after every APP11 (manifest) segment
    t = bytearray(signed_jpeg)
    for k in range(start + 200, start + 264):
        t[k] ^= 0x55
    p = provenance.read(bytes(t), ISOLATED)
    assert p.state == "invalid" and p.validation_state == "Invalid"
    assert "assertion.dataHash.mismatch" in p.validation_codes
    assert p.summary.startswith("Content credentials: present but invalid (the content was changed after signing")
    assert p.summary.endswith(f"claims to be signed by {cf.SIGNER_ORG}")
    assert p.ai == ""  # a claim that does not verify is no "yes"
    assert p.source_type == "AI-generated"  # ... but what it says stays visible in the details


def test_reencoded_file_has_none(signed_jpeg):
    buf = io.BytesIO()
    Image.open(io.BytesIO(signed_jpeg)).save(buf, "JPEG", quality=95)
    p = provenance.read(buf.getvalue(), ISOLATED)
    assert p == Provenance() and p.summary == "Content credentials: none"


@pytest.mark.parametrize("cut", ["truncated", "garbage"])
def test_truncated_or_garbage_file_is_one_line(signed_jpeg, cut):
    data = signed_jpeg[:1500] if cut == "truncated" else b"\xff\xd8\xff\xe0" + bytes(range(256)) * 40
    _one_line_error(provenance.read(data, ISOLATED))


def test_corrupt_app11_segment(signed_jpeg):
    app11 = [s for s in cf.jpeg_segments(signed_jpeg) if s[0] == 0xEB]
    assert app11, "the manifest travels in APP11 segments"
    _, pos, length = app11[0]
    bad_length = bytearray(signed_jpeg)
    bad_length[pos + 2:pos + 4] = b"\xff\xff"  # the segment claims more bytes than the box holds
    p = provenance.read(bytes(bad_length), ISOLATED)
    _one_line_error(p)
    scrambled = bytearray(signed_jpeg)
    for k in range(pos + 2000, min(pos + 2100, pos + length)):
        scrambled[k] ^= 0x5A  # inside the manifest's boxes
    p = provenance.read(bytes(scrambled), ISOLATED)
    assert p.state in ("invalid", "error") and "\n" not in p.summary and p.ai == ""


def test_exif_camera_and_software_are_read(astronaut):
    data = cf.jpeg(astronaut, {0x010F: "Canon", 0x0110: "EOS\tR5\x1b\x00", 0x0131: "Adobe Photoshop 25.0"})
    p = provenance.read(data, ISOLATED)
    assert p.state == "none"
    assert (p.camera_make, p.camera_model, p.software) == ("Canon", "EOS R5", "Adobe Photoshop 25.0")
    assert p.exif_line == "Camera: Canon EOS R5 · Software: Adobe Photoshop 25.0"
    assert provenance.read(cf.jpeg(astronaut), IN_PROCESS).exif_line == ""


def test_formats_the_reader_is_not_given_are_none(tmp_path):
    buf = io.BytesIO()
    Image.new("RGB", (32, 32)).save(buf, "BMP")
    p = provenance.read(buf.getvalue(), ISOLATED)
    assert p.state == "none" and p.summary == "Content credentials: none (this file format is not read for them)"
    webm = tmp_path / "x.webm"
    webm.write_bytes(b"\x1aE\xdf\xa3" + b"\x00" * 100)
    assert provenance.read(webm, ISOLATED).state == "none"


def test_video_credentials(tmp_path, signing, astronaut):
    from tests.conftest import face_frames, write_video

    clip = write_video(tmp_path / "clip.mp4", face_frames(astronaut, 6))
    assert provenance.read(clip, ISOLATED) == Provenance()
    signed = tmp_path / "signed.mp4"
    signed.write_bytes(cf.sign(clip.read_bytes(), signing, "video/mp4", cf.manifest(title="clip.mp4")))
    p = provenance.read(signed, ISOLATED)
    assert (p.state, p.ai, p.signer) == ("untrusted", "yes", cf.SIGNER_ORG)
    assert p.camera_make == "" and p.exif_error == ""  # no EXIF read for videos


# --------------------------------------------------------------------------- bounds
def test_files_over_the_upload_limit_are_refused_before_reading(signed_jpeg, tmp_path, monkeypatch):
    def never(*a, **k):
        raise AssertionError("the reader must not run")

    monkeypatch.setattr(provenance, "read_local", never)
    monkeypatch.setattr(media, "MAX_FILE_BYTES", 1000)
    path = tmp_path / "big.jpg"
    path.write_bytes(signed_jpeg)
    for source in (path, signed_jpeg):
        p = provenance.read(source, IN_PROCESS)
        _one_line_error(p)
        assert "file too large" in p.summary


def test_manifest_json_is_capped(signed_jpeg):
    p = provenance.read_local(signed_jpeg, None, "image/jpeg", "image", max_json=500)
    _one_line_error(p)
    assert "over the 0.0005 MB limit" in p.summary


def test_a_read_over_the_time_limit_stops_the_child(signed_jpeg, monkeypatch):
    """A child that never answers (its request is swallowed) costs the time limit and one line; it is killed and
    the next read gets a fresh one."""
    started = isolation.POOL.started
    monkeypatch.setattr(provenance, "TIMEOUT_S", 0.2)
    monkeypatch.setattr(isolation._Worker, "send", lambda self, header, payload=None: None)
    p = provenance.read(signed_jpeg, ISOLATED)
    _one_line_error(p)
    assert "took longer than the 0.2 s limit" in p.summary
    monkeypatch.undo()
    assert provenance.read(signed_jpeg, ISOLATED).state == "untrusted"
    assert isolation.POOL.started >= started + 1  # the silent child was not reused


def test_hostile_manifest_store_is_cleaned_and_capped():
    long = "\u202eevil\x00" + "ü" * 5000
    acts = [{"action": f"c2pa.{i}{long}", "digitalSourceType": provenance.IPTC + "trainedAlgorithmicMedia"}
            for i in range(5000)]
    store = {"active_manifest": "m", "validation_state": "Valid",
             "validation_status": [{"code": long}] * 500 + ["x", 3],
             "manifests": {"m": {"signature_info": {"issuer": long, "common_name": ["x"], "time": {"a": 1}},
                                 "claim_generator_info": [{"name": long, "version": 7}],
                                 "assertions": [{"label": "c2pa.actions", "data": {"actions": acts + ["junk", 5]}},
                                                {"label": 5}, "junk"],
                                 "ingredients": [{"title": long, "relationship": "parentOf"}] * 500 + [None]}}}
    p = provenance.from_store(store)
    assert p.state == "untrusted" and p.ai == "yes"
    assert len(p.actions) == provenance.MAX_ACTIONS and len(p.ingredients) == provenance.MAX_INGREDIENTS
    assert len(p.validation_codes) == provenance.MAX_CODES
    text = json.dumps(p.to_dict())
    assert "\u202e" not in json.loads(text)["signer"] and "\x00" not in text
    assert max(len(v) for v in p.to_dict().values() if isinstance(v, str)) <= 400
    assert len(text) < isolation._MAX_LINE  # what the child sends back always fits one protocol line
    assert p.signer_cn == "" and p.signed_at == ""  # wrong types are dropped, not stringified


@pytest.mark.parametrize("store", [None, [], {"manifests": {}}, {"active_manifest": "x", "manifests": {"y": {}}},
                                   {"active_manifest": 3, "manifests": []}])
def test_a_store_without_an_active_manifest_is_an_error(store):
    _one_line_error(provenance.from_store(store))


def test_no_validation_state_is_never_more_than_invalid():
    p = provenance.from_store({"active_manifest": "m", "manifests": {"m": {}}})
    assert p.state == "invalid" and p.ai == "" and "unnamed signer" in p.summary


def test_from_dict_rejects_garbage_from_the_child():
    _one_line_error(Provenance.from_dict({"state": "trusted-by-me"}))
    _one_line_error(Provenance.from_dict("nope"))
    p = Provenance.from_dict({"state": "none", "actions": "not a list", "manifests": True, "extra": 1})
    assert p.actions == () and p.manifests == 0


# --------------------------------------------------------------------------- the engine and the CLI
def test_analyze_carries_provenance_and_leaves_the_score_alone(tiny_detector, plain_jpeg, signed_jpeg):
    plain, signed = tiny_detector.analyze(plain_jpeg), tiny_detector.analyze(signed_jpeg)
    assert plain.provenance["state"] == "none" and signed.provenance["state"] == "untrusted"
    assert signed.provenance["ai"] == "yes"
    # signing embeds a manifest but leaves the pixels: the same score and label, credentials or not
    assert (signed.score, signed.raw_score, signed.label) == (plain.score, plain.raw_score, plain.label)
    d = json.loads(signed.to_json())
    assert d["provenance"] == signed.provenance and d["score_meaning"] == "P(fake) in [0, 1]"
    bad = tiny_detector.analyze(signed_jpeg[:1500])  # undecodable, but the credentials were still looked at
    assert bad.error and bad.provenance["state"] == "error"


def test_cli_writes_provenance_columns_and_records(tiny_model_dir, signed_jpeg, plain_jpeg, tmp_path, capsys):
    from model.cli import main

    (tmp_path / "signed.jpg").write_bytes(signed_jpeg)
    (tmp_path / "plain.jpg").write_bytes(plain_jpeg)
    assert main(["predict", str(tmp_path), "--model", str(tiny_model_dir), "--quiet"]) == 0
    rows = {r["path"].rsplit("/", 1)[-1]: r for r in csv.DictReader(io.StringIO(capsys.readouterr().out))}
    assert [rows["signed.jpg"][c] for c in ("provenance", "provenance_signer", "provenance_ai")] == [
        "untrusted", cf.SIGNER_ORG, "yes"]
    assert [rows["plain.jpg"][c] for c in ("provenance", "provenance_signer", "provenance_ai")] == ["none", "", ""]
    assert rows["signed.jpg"]["score"] == rows["plain.jpg"]["score"]
    assert main(["predict", str(tmp_path / "signed.jpg"), "--model", str(tiny_model_dir), "--quiet",
                 "--format", "jsonl"]) == 0
    rec = json.loads(capsys.readouterr().out)
    assert rec["provenance"]["state"] == "untrusted" and rec["provenance"]["actions"] == ["c2pa.created"]
