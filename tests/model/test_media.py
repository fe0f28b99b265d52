import io

import numpy as np
import pytest
from PIL import Image

from model import media
from model.media import MediaError, content_kind, kind_of, load_image
from tests import media_fixtures
from tests.conftest import face_frames, write_video


def _save(tmp_path, name, img: Image.Image, **kw):
    p = tmp_path / name
    img.save(p, **kw)
    return p


def test_kind_of():
    assert kind_of("a.JPG") == "image" and kind_of("b.mp4") == "video"
    with pytest.raises(MediaError, match="unsupported file type"):
        kind_of("notes.txt")


def test_empty_missing_text_and_truncated(tmp_path, astronaut):
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(MediaError, match="empty"):
        load_image(tmp_path / "empty.png")
    with pytest.raises(MediaError, match="not found"):
        load_image(tmp_path / "nope.png")
    (tmp_path / "text.png").write_text("hello, not an image")
    with pytest.raises(MediaError, match="not a readable image"):
        load_image(tmp_path / "text.png")
    buf = io.BytesIO()
    Image.fromarray(astronaut).save(buf, "PNG")
    (tmp_path / "trunc.png").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(MediaError, match="corrupt or truncated"):
        load_image(tmp_path / "trunc.png")


def test_decompression_bomb_refused_before_decoding(tmp_path):
    p = _save(tmp_path, "bomb.png", Image.new("1", (20000, 20000)))
    assert p.stat().st_size < 2_000_000
    with pytest.raises(MediaError, match="too large"):
        load_image(p)


def test_exif_orientation_applied(tmp_path):
    img = Image.new("RGB", (60, 30), (255, 0, 0))
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90 CW on display
    p = _save(tmp_path, "rot.jpg", img, exif=exif.tobytes())
    assert load_image(p).shape == (60, 30, 3)


@pytest.mark.parametrize("mode", ["L", "RGBA", "I;16", "P", "CMYK"])
def test_modes_become_rgb8(tmp_path, mode, astronaut):
    base = Image.fromarray(astronaut)
    if mode == "I;16":
        arr = (np.asarray(base.convert("L"), np.uint16) * 257)
        img = Image.fromarray(arr)  # uint16 -> mode I;16
    else:
        img = base.convert(mode)
    p = _save(tmp_path, f"x_{mode.replace(';', '')}.{'jpg' if mode == 'CMYK' else 'png'}", img)
    out = load_image(p)
    assert out.shape == (512, 512, 3) and out.dtype == np.uint8
    assert 20 < out.mean() < 235
    if mode == "I;16":  # 16-bit scaled, not clipped
        np.testing.assert_allclose(out[..., 0], np.asarray(base.convert("L")), atol=1)


def test_rgba_transparent_composited_on_white(tmp_path):
    img = Image.new("RGBA", (20, 20), (0, 0, 0, 0))
    out = load_image(_save(tmp_path, "t.png", img))
    assert out.min() == 255


def test_bytes_source(astronaut):
    buf = io.BytesIO()
    Image.fromarray(astronaut).save(buf, "JPEG")
    assert load_image(buf.getvalue()).shape == (512, 512, 3)
    with pytest.raises(MediaError):
        load_image(b"")


def _image_bytes(fmt: str, mode: str = "RGB") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, (24, 24), 128).save(buf, fmt)
    return buf.getvalue()


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "GIF", "BMP", "TIFF", "WEBP"])
def test_images_typed_from_content_not_name(tmp_path, fmt):
    data = _image_bytes(fmt)
    assert media.sniff(data)[0] == "image"
    p = tmp_path / "disguised.mp4"  # the name says video; the content decides
    p.write_bytes(data)
    assert content_kind(p) == "image" and content_kind(data, name="x.mov") == "image"
    assert load_image(data).shape == (24, 24, 3)


def test_videos_typed_from_content(tmp_path, astronaut):
    mp4 = write_video(tmp_path / "v.mp4", face_frames(astronaut, n=3))
    import cv2

    avi = tmp_path / "v.avi"
    vw = cv2.VideoWriter(str(avi), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for _ in range(3):
        vw.write(np.zeros((48, 64, 3), np.uint8))
    vw.release()
    webm = media_fixtures.live_webm(mp4, tmp_path / "v.webm")
    mkv = tmp_path / "v.mkv"
    media_fixtures.ffmpeg("-i", str(mp4), "-c", "copy", str(mkv))
    mov = tmp_path / "v.mov"
    media_fixtures.ffmpeg("-i", str(mp4), "-c", "copy", str(mov))
    for p, fmt in [(mp4, "MP4/MOV"), (avi, "AVI"), (webm, "Matroska/WebM"), (mkv, "Matroska/WebM"), (mov, "MP4/MOV")]:
        assert media.sniff(p.read_bytes()) == ("video", fmt), p.name
        renamed = p.with_name(p.stem + "_named.jpg")
        renamed.write_bytes(p.read_bytes())
        assert content_kind(renamed) == "video"


def test_unknown_content_is_refused_with_a_message_from_the_name(tmp_path):
    text = b"just some text, no magic here" * 4
    with pytest.raises(MediaError, match=r"^not a readable video \(unknown or corrupt container\)$"):
        content_kind(text, name="clip.mp4")
    with pytest.raises(MediaError, match=r"^not a readable image"):
        content_kind(text, name="photo.jpg")
    with pytest.raises(MediaError, match=r"^unsupported file type \.docx"):
        content_kind(text, name="notes.docx")
    with pytest.raises(MediaError, match="empty file"):
        content_kind(b"", name="a.png")
    heic = b"\x00\x00\x00\x18ftypheic" + b"\x00" * 40  # ISO box container, but a still image format we don't read
    assert media.sniff(heic) is None


@pytest.mark.parametrize("fmt", ["PCX", "TGA", "ICO"])
def test_decoders_outside_the_whitelist_are_not_used(fmt):
    """Pillow could read these, but untrusted bytes only reach the decoders of the formats we accept."""
    data = _image_bytes(fmt)
    Image.open(io.BytesIO(data)).load()  # Pillow itself reads it...
    with pytest.raises(MediaError, match="not a readable image"):
        load_image(data)  # ...we do not
