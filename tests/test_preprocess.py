"""The shared preprocessing: every format, EXIF orientation, transparency, and clear errors."""

import io

import numpy as np
import pytest
from PIL import Image

from training.preprocess import ImageDecodeError, load_image


def encode(img: Image.Image, fmt: str, **kwargs) -> io.BytesIO:
    buf = io.BytesIO()
    img.save(buf, fmt, **kwargs)
    buf.seek(0)
    return buf


def halves(width: int, height: int) -> Image.Image:
    """Left half red, right half blue."""
    img = Image.new("RGB", (width, height), (220, 20, 20))
    img.paste((20, 20, 220), (width // 2, 0, width, height))
    return img


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "GIF", "BMP", "WEBP", "HEIF"])
def test_it_reads_every_supported_format_as_square_rgb(fmt):
    pixels = load_image(encode(halves(60, 40), fmt), size=32)

    assert pixels.shape == (32, 32, 3)
    assert pixels.dtype == np.uint8
    assert pixels[16, 2, 0] > 150 and pixels[16, 2, 2] < 100  # red on the left
    assert pixels[16, 29, 2] > 150 and pixels[16, 29, 0] < 100  # blue on the right


@pytest.mark.parametrize("fmt", ["JPEG", "HEIF"])
def test_it_honours_exif_orientation(fmt):
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: the viewer turns it 90 degrees clockwise
    photo = encode(halves(80, 40), fmt, exif=exif.tobytes())  # (pillow-heif: as a HEIF turn, as phones do)

    pixels = load_image(photo, size=32)

    # Turned clockwise, the left (red) half ends on top and the blue half at the bottom.
    assert pixels[2, 16, 0] > 150 and pixels[2, 16, 2] < 100
    assert pixels[29, 16, 2] > 150 and pixels[29, 16, 0] < 100


def test_it_puts_transparency_on_white():
    img = Image.new("RGBA", (20, 20), (255, 0, 0, 0))

    pixels = load_image(encode(img, "PNG"), size=8)

    assert (pixels == 255).all()


def test_it_takes_the_first_frame_of_an_animation():
    frames = [Image.new("RGB", (20, 20), c) for c in [(0, 200, 0), (200, 0, 0)]]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:])
    buf.seek(0)

    pixels = load_image(buf, size=8)

    assert pixels[4, 4, 1] > 150 and pixels[4, 4, 0] < 50


def test_it_decodes_large_jpegs_with_the_draft_shortcut_to_the_same_picture():
    big = halves(1600, 1200)

    pixels = load_image(encode(big, "JPEG", quality=95), size=64)
    reference = np.asarray(big.resize((64, 64), Image.Resampling.BILINEAR), dtype=np.int16)

    assert np.abs(pixels.astype(np.int16) - reference).mean() < 3


def test_it_rejects_a_text_file_with_a_clear_error():
    with pytest.raises(ImageDecodeError, match="cannot decode image"):
        load_image(io.BytesIO(b"this is not a photo, just text"))


def test_it_rejects_a_truncated_jpeg():
    data = encode(halves(200, 200), "JPEG").getvalue()

    with pytest.raises(ImageDecodeError):
        load_image(io.BytesIO(data[: len(data) // 2]))
