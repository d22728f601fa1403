"""The one image preprocessing function: training, evaluation and the worker all call it."""

from __future__ import annotations

import functools
import io
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import ExifTags, Image, ImageCms
from pillow_heif import register_heif_opener

# HEIC/HEIF, phones' own format, opens like any other (libheif turns it upright as it decodes). Its
# embedded thumbnail is never used in place of the picture (draft() would: a phone's is ~320 px, and
# a corrupt picture would pass unseen), nor are its depth and auxiliary images read.
register_heif_opener(thumbnails=False, depth_images=False, aux_images=False)

IMAGE_SIZE = 224
SRGB = ImageCms.createProfile("sRGB")
# What Pillow can decode for us; the training reader accepts these suffixes.
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".gif", ".bmp", ".webp", ".heic", ".heif"}


class ImageDecodeError(ValueError):
    """The file is not an image Pillow can fully decode."""


# EXIF orientation -> the turn that shows the picture as meant (as ImageOps.exif_transpose turns it)
TURNS = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
         4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270,
         7: Image.Transpose.TRANSVERSE, 8: Image.Transpose.ROTATE_90}


def orientation(img: Image.Image) -> int:
    """The EXIF (or XMP) orientation of a decoded image: read after decoding, as a PNG's EXIF may
    come after its pixels, so that the site and the worker agree on which one counts."""
    img.load()
    return img.getexif().get(ExifTags.Base.Orientation, 1)


def upright(img: Image.Image) -> Image.Image:
    """The picture turned as its orientation says. ImageOps.exif_transpose does the same but also
    rewrites the EXIF it keeps, which raises on a malformed tag; nothing here keeps the EXIF."""
    turn = TURNS.get(orientation(img))
    return img.transpose(turn) if turn is not None else img


def to_rgb(img: Image.Image) -> Image.Image:
    """Return an RGB image, compositing any transparency on white (not black); 16-bit and 32-bit
    integer greys are scaled to 8 bits (Pillow's own conversion would clip them to white).

    Transparency includes a PNG colour key (tRNS: `img.info["transparency"]`, one grey or RGB
    value that is see-through) on L and RGB images, which Pillow leaves in `info`, not in an alpha band.
    """
    if img.mode in ("L", "RGB") and "transparency" in img.info:
        img = img.convert("RGBA")  # the key becomes alpha 0
    if img.mode == "RGB":
        return img
    if img.mode == "I" or img.mode.startswith("I;16"):
        grey = np.asarray(img.convert("I"), dtype=np.float64) / 257.0
        img = Image.fromarray(np.clip(np.rint(grey), 0, 255).astype(np.uint8), "L")
    if img.mode in ("RGBA", "LA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return img.convert("RGB")


def rgb_profile(img: Image.Image) -> bytes | None:
    """`img`'s colour profile, for its pixels made RGB: a CMYK or grey picture's profile describes
    other channels (a browser would misread the RGB with it), so it has none then."""
    return img.info.get("icc_profile") if img.mode in ("RGB", "RGBA", "RGBX", "P", "PA") else None


def to_srgb(img: Image.Image, icc: bytes | None) -> Image.Image:
    """An RGB picture whose embedded colour profile `icc` is another than sRGB (a phone's Display P3,
    a camera's Adobe RGB) converted to sRGB, as a browser shows it, and as the photos the model was
    trained on are: read as sRGB, a P3 photo's colours come out dull. Anything else as it is (no
    profile, an sRGB one, a CMYK or grey one, one that does not parse)."""
    transform = srgb_transform(icc) if icc else None
    return ImageCms.applyTransform(img, transform) if transform is not None else img


@functools.lru_cache(maxsize=16)
def srgb_transform(icc: bytes) -> ImageCms.ImageCmsTransform | None:
    """The transform from an RGB profile to sRGB; None for sRGB itself or a profile it cannot use.
    Kept: a phone's photos all carry the same profile."""
    try:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        described = profile.profile.profile_description or ""
        if profile.profile.xcolor_space.strip() != "RGB" or "srgb" in described.lower():
            return None
        return ImageCms.buildTransform(profile, SRGB, "RGB", "RGB")
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
        return None


def load_image(source: str | Path | BinaryIO, size: int = IMAGE_SIZE) -> np.ndarray:
    """Decode a photo to a `size` x `size` RGB uint8 array.

    Steps, in this order and nowhere else: JPEG draft decoding (the decoder scales by a power of
    two while staying at or above `size`, so big photos decode fast without losing detail we use),
    EXIF orientation, first frame of animations, alpha on white, one antialiased bilinear resize of
    the whole photo to a square (no crop: a cake near the edge stays in view), and colours from
    another profile than sRGB to sRGB (at that size: the same to the model, and cheap).
    Pixel scaling to the network's range lives inside the model, so this array is all a caller
    feeds it.
    """
    try:
        with Image.open(source) as img:
            img.draft("RGB", (size, size))
            icc = rgb_profile(img)
            img = upright(img)
            img = to_rgb(img)
            img = img.resize((size, size), Image.Resampling.BILINEAR)
            img = to_srgb(img, icc)
            return np.asarray(img, dtype=np.uint8)
    except MemoryError:
        raise
    except Exception as exc:  # a corrupt file makes Pillow's and pillow-heif's decoders raise anything
        raise ImageDecodeError(f"cannot decode image: {type(exc).__name__}: {exc}") from exc
