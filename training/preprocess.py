"""The one image preprocessing function: training, evaluation and the worker all call it."""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps
from pillow_heif import register_heif_opener

# HEIC/HEIF, phones' own format, opens like any other (libheif turns it upright as it decodes). Its
# embedded thumbnail is never used in place of the picture (draft() would: a phone's is ~320 px, and
# a corrupt picture would pass unseen), nor are its depth and auxiliary images read.
register_heif_opener(thumbnails=False, depth_images=False, aux_images=False)

IMAGE_SIZE = 224
# What Pillow can decode for us; the training reader accepts these suffixes.
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp", ".heic", ".heif"}


class ImageDecodeError(ValueError):
    """The file is not an image Pillow can fully decode."""


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


def load_image(source: str | Path | BinaryIO, size: int = IMAGE_SIZE) -> np.ndarray:
    """Decode a photo to a `size` x `size` RGB uint8 array.

    Steps, in this order and nowhere else: JPEG draft decoding (the decoder scales by a power of
    two while staying at or above `size`, so big photos decode fast without losing detail we use),
    EXIF orientation, first frame of animations, alpha on white, and one antialiased bilinear
    resize of the whole photo to a square (no crop: a cake near the edge stays in view).
    Pixel scaling to the network's range lives inside the model, so this array is all a caller
    feeds it.
    """
    try:
        with Image.open(source) as img:
            img.draft("RGB", (size, size))
            img = ImageOps.exif_transpose(img)
            img = to_rgb(img)
            img = img.resize((size, size), Image.Resampling.BILINEAR)
            return np.asarray(img, dtype=np.uint8)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise ImageDecodeError(f"cannot decode image: {exc}") from exc
