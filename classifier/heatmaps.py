"""A heat map as a picture: the model's coarse attention map, coloured and laid over the photo."""

from __future__ import annotations

import io

import numpy as np
from django.core.files.base import ContentFile
from PIL import Image

# The attention map is a coarse grid (7 x 7): 64 pixels across, smoothed here and stretched by the
# browser, look the same as 480 and cost 0.6 ms instead of 38 ms per photo in the worker.
WIDTH = 64


def overlay_png(cam: np.ndarray, width: int, height: int) -> ContentFile:
    """A transparent PNG of the photo's shape: hot where `cam` (0..1, any grid) is high, clear where
    it is low, so the photo stays readable beneath it."""
    from matplotlib import colormaps

    size = (WIDTH, max(1, round(WIDTH * height / max(width, 1))))
    smooth = Image.fromarray((np.clip(cam, 0, 1) * 255).astype(np.uint8), "L").resize(size, Image.BICUBIC)
    heat = np.asarray(smooth, dtype=np.float64) / 255.0
    rgba = colormaps["inferno"](heat)
    rgba[..., 3] = np.clip(heat * 1.2, 0, 0.85)
    buffer = io.BytesIO()
    Image.fromarray((rgba * 255).astype(np.uint8), "RGBA").save(buffer, "PNG", optimize=False)
    return ContentFile(buffer.getvalue())
