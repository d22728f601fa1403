"""An AVIF or a HEIC decoded in a process of its own, its memory capped (classifier.images.decoded_apart
runs it).

libavif decodes the picture its AV1 stream, or its grid's canvas, says, up to 268 megapixels, and only
then scales it to the size the file's 'ispe' box says, the size Pillow reports: a file of 3.4 KB said
64x64 and took 967 MB, a grid of 12 KB said 1024x1024 and took 2.3 GB. Reading the AV1 stream as dav1d
does (its frame headers, its hidden frames) is not done: the memory this process may take is capped
instead, so that a file larger inside than it says fails here, whatever its way of saying it. libheif
likewise decodes a HEIC's whole coded picture or grid canvas before cropping it: classifier.images
refuses the ways known of saying one larger than it reports before this runs, and this process
bounds the ways not known (a reading of the format that differs from libheif's, a libheif upgrade).

Run as `python -m classifier.isolated_decode FORMAT MAX_PIXELS MAX_BYTES MAX_SECONDS` (FORMAT: AVIF or
HEIF, as Pillow names them), the file on its standard input (MAX_SECONDS of processor time: it stops
even if the process that started it is gone). It writes one line of JSON, then the first picture's
pixels (in its mode, row by row): {"size", "mode", "orientation", "icc"} (the colour profile in
hex), or {"refused": REASON}: "too_many_pixels" (with its "size") for a picture of more than
MAX_PIXELS (not decoded), "bomb" for one that needed more than MAX_BYTES beyond what this process
held when it started decoding, or far more than a picture of its size needs, or "corrupt" for a file
libavif or libheif cannot read or decode (one cut short, among them). Any other failure: exit status
1 (killed by its limits: by signal 9 or 24). Imports nothing from Django (it starts in a tenth of a
second).
"""

from __future__ import annotations

import io
import json
import resource
import sys

from PIL import ExifTags, Image, UnidentifiedImageError

Image.MAX_IMAGE_PIXELS = None  # (main() holds a picture to MAX_PIXELS itself, and names its size)


# What decoding a picture may take, at most: a pixel, 16.4 bytes were measured (12 bits a colour, no
# colour subsampling, transparency; 9 for a phone's 8 bits and subsampled colours); any picture, some
# more (1 to 2 MB for pictures of 64x64 to 256x256).
BYTES_A_PIXEL = 24
BYTES_ANY_PICTURE = 32 * 1024 * 1024


def peak_bytes() -> int:
    """The most memory this process has held at once (its peak resident set)."""
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmHWM:"))


def held_bytes() -> int:
    """The address space this process holds now (what RLIMIT_AS counts)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[0]) * resource.getpagesize()


def main(fmt: str, max_pixels: int, max_bytes: int, max_seconds: int) -> int:
    data = sys.stdin.buffer.read()
    if fmt == "HEIF":  # as training.preprocess reads it (libheif turns it upright as it decodes)
        from pillow_heif import register_heif_opener

        register_heif_opener(thumbnails=False, depth_images=False, aux_images=False)
    else:  # (only the reader of its format is loaded: libavif's takes 20 ms)
        from PIL import AvifImagePlugin

        AvifImagePlugin.DEFAULT_MAX_THREADS = 1  # (each thread of libavif's decoder holds buffers of its own)
    cap = held_bytes() + max_bytes
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    resource.setrlimit(resource.RLIMIT_CPU, (max_seconds, max_seconds))
    head, pixels = {}, b""
    try:
        img = Image.open(io.BytesIO(data), formats=[fmt])
    except (UnidentifiedImageError, RuntimeError):  # (libavif's refusals of what it parses: cut short too)
        head = {"refused": "corrupt"}
    else:
        with img:
            if img.width * img.height > max_pixels:
                head = {"refused": "too_many_pixels", "size": img.size}
            else:
                head, pixels = decoded(img)
    sys.stdout.buffer.write(json.dumps(head).encode() + b"\n")
    sys.stdout.buffer.write(pixels)
    return 0


def decoded(img: Image.Image) -> tuple[dict, bytes]:
    """What main() writes of a picture it decodes: its description, and its pixels. One that took far
    more memory than a picture of its size needs is refused, though it fitted under the cap: its
    stream or grid is larger than it says (3.4 KB said 64x64 and took 967 MB), also when its decoder
    then fails (libheif finds a grid's canvas is not the size it said only once it has drawn it)."""
    needs = peak_bytes() + BYTES_ANY_PICTURE + BYTES_A_PIXEL * img.width * img.height
    try:
        img.load()
        if peak_bytes() > needs:
            return {"refused": "bomb"}, b""
        head = {"size": img.size, "mode": img.mode, "icc": (img.info.get("icc_profile") or b"").hex(),
                "orientation": img.getexif().get(ExifTags.Base.Orientation, 1)}
        return head, img.tobytes()
    except MemoryError:
        return {"refused": "bomb"}, b""
    except (RuntimeError, OSError, ValueError, EOFError) as exc:  # libavif's, libheif's errors, a short frame
        # (libavif says "Out of memory" where the cap refused it an allocation, libheif "Memory allocation")
        return {"refused": "bomb" if "memory" in str(exc).lower() or peak_bytes() > needs else "corrupt"}, b""


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])))
