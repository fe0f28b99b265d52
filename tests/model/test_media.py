import io

import numpy as np
import pytest
from PIL import Image

from model.media import MediaError, kind_of, load_image


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
