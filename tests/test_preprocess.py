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


def display_p3_profile() -> bytes:
    """A minimal ICC v2 display profile with the Display P3 primaries (D50-adapted) and a gamma of
    2.2, written out here (no profile file to ship): littleCMS converts with it as with a phone's."""
    import struct

    def s15(v):
        return struct.pack(">i", round(v * 65536))

    def xyz(x, y, z):
        return b"XYZ " + bytes(4) + s15(x) + s15(y) + s15(z)

    def curve(gamma):
        return b"curv" + bytes(4) + struct.pack(">IH", 1, round(gamma * 256)) + bytes(2)

    def desc(text):
        raw = text.encode() + b"\0"
        return b"desc" + bytes(4) + struct.pack(">I", len(raw)) + raw + bytes(12 + 67)

    tags = [(b"desc", desc("Display P3 (test)")), (b"cprt", b"text" + bytes(4) + b"none\0"),
            (b"wtpt", xyz(0.9642, 1.0, 0.8249)), (b"rXYZ", xyz(0.5151, 0.2412, -0.0011)),
            (b"gXYZ", xyz(0.2919, 0.6922, 0.0419)), (b"bXYZ", xyz(0.1572, 0.0666, 0.7841)),
            (b"rTRC", curve(2.2)), (b"gTRC", curve(2.2)), (b"bTRC", curve(2.2))]
    start, table, data = 128 + 4 + 12 * len(tags), b"", b""
    for signature, body in tags:
        body += bytes(-len(body) % 4)
        table += signature + struct.pack(">II", start + len(data), len(body))
        data += body
    header = (struct.pack(">I", start + len(data)) + b"lcms" + struct.pack(">I", 0x02100000)
              + b"mntrRGB XYZ " + bytes(12) + b"acspAPPL" + bytes(24)
              + s15(0.9642) + s15(1.0) + s15(0.8249) + b"lcms" + bytes(44))
    return header + struct.pack(">I", len(tags)) + table + data


def test_a_phone_photo_in_display_p3_is_read_in_the_colours_it_shows_not_dulled():
    """The model learnt from sRGB photos; a phone's Display P3 photo, read as if it were sRGB, has
    duller colours than the browser shows. Its profile converts it; an sRGB profile changes nothing."""
    from PIL import ImageCms

    from tests.conftest import PHOTOS

    path = PHOTOS / "kue_klepon" / "11.jpg"  # green: far inside what P3 can show beyond sRGB
    p3 = display_p3_profile()
    with Image.open(path) as img:
        in_p3 = ImageCms.profileToProfile(img.convert("RGB"), ImageCms.createProfile("sRGB"),
                                          ImageCms.ImageCmsProfile(io.BytesIO(p3)), outputMode="RGB")
    shown = load_image(path).astype(float)

    def saved(img, **options):
        out = io.BytesIO()
        img.save(out, "JPEG", quality=95, **options)
        out.seek(0)
        return out

    with_profile = np.abs(load_image(saved(in_p3, icc_profile=p3)) - shown).mean()
    as_if_srgb = np.abs(load_image(saved(in_p3)) - shown).mean()
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    with Image.open(path) as img:
        assert np.array_equal(load_image(saved(img, icc_profile=srgb)), load_image(saved(img)))

    assert with_profile < 1.0 and as_if_srgb > 1.5
