"""Bad and odd uploads, through the website form and the API alike: each is handled correctly or
refused with a message a person can act on; never a 500, never a half-written row or orphan file."""

import io
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from django.conf import settings as django_settings
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from PIL import Image
from rest_framework.test import APIClient

from classifier import images, services, tasks
from classifier.models import Photo
from tests.conftest import api_token, make_photo, png_bytes, sample_photo
from training.preprocess import load_image

pytestmark = pytest.mark.django_db


def encoded(img: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, fmt, **options)
    return buffer.getvalue()


def photo_like(size=(120, 90)) -> Image.Image:
    """A small picture with structure (gradients), so colours and orientation can be checked."""
    x = np.linspace(0, 255, size[0], dtype=np.uint8)[None, :].repeat(size[1], 0)
    y = np.linspace(0, 255, size[1], dtype=np.uint8)[:, None].repeat(size[0], 1)
    return Image.fromarray(np.stack([x, y, 255 - x], axis=-1), "RGB")


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims huge dimensions in a few bytes (a decompression bomb's header)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))


def animated_gif() -> bytes:
    frames = [Image.new("RGB", (64, 64), colour) for colour in ((200, 30, 30), (30, 200, 30), (30, 30, 200))]
    return encoded(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)


def exif_rotated_jpeg(orientation: int = 6) -> bytes:
    """A 200x100 JPEG whose EXIF says: turn it a quarter to show it upright (orientation 6 and 8;
    5 and 7 mirror it too, as a phone's front camera may)."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encoded(photo_like((200, 100)), "JPEG", exif=exif.tobytes())


def sixteen_bit_png() -> bytes:
    grey = (np.linspace(0, 65535, 100 * 80).reshape(80, 100)).astype(np.uint16)
    return encoded(Image.fromarray(grey), "PNG")  # mode I;16


def palette_png_with_transparency() -> bytes:
    img = photo_like().convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    return encoded(img, "PNG", transparency=0)


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_with_inflating_text() -> bytes:
    """A small PNG whose compressed comment inflates to 3 MB (Pillow stops at 1 MB)."""
    whole = encoded(photo_like(), "PNG")
    text = png_chunk(b"zTXt", b"Comment\0\0" + zlib.compress(b"\0" * 3_000_000))
    return whole[:33] + text + whole[33:]  # after the signature and IHDR


def png_with_a_short_header() -> bytes:
    whole = encoded(photo_like(), "PNG")
    return whole[:8] + struct.pack(">I", 12) + whole[12:]  # IHDR says 12 bytes long instead of 13


def png_with_a_broken_chunk_inside_its_pixels() -> bytes:
    """A PNG whose header is whole but whose pixel data runs into a chunk with no valid type: Pillow
    opens it, then raises SyntaxError ("broken PNG file") while decoding."""
    pixels = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    data = zlib.compress(b"".join(b"\0" + row.tobytes() for row in pixels))
    ihdr = struct.pack(">IIBBBBB", 64, 64, 8, 2, 0, 0, 0)
    half = len(data) // 2
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", data[:half])
            + png_chunk(b"\0\0\0\0", data[half:]) + png_chunk(b"IEND", b""))


def mpo_jpeg() -> bytes:
    """A phone's JPEG with a second, smaller picture after the first (Pillow's format: MPO)."""
    img = photo_like()
    return encoded(img, "MPO", save_all=True, append_images=[img.resize((40, 30))])


def jpeg_with_a_malformed_exif_tag() -> bytes:
    """Turned a quarter (orientation 6), with a resolution unit stored as a 4-byte number (it is a
    2-byte one): rewriting that EXIF, as ImageOps.exif_transpose does, raises."""
    entries = struct.pack("<HHIHxx", 0x0112, 3, 1, 6) + struct.pack("<HHII", 0x0128, 4, 1, 100_000)
    exif = b"Exif\0\0II*\0" + struct.pack("<I", 8) + struct.pack("<H", 2) + entries + struct.pack("<I", 0)
    return encoded(photo_like((200, 100)), "JPEG", exif=exif)


def big_sixteen_bit_png() -> bytes:
    """16-bit grey, large enough that the thumbnail would be made by Pillow's reduce(), which
    takes no such image."""
    grey = (np.linspace(0, 65535, 1300 * 1040).reshape(1040, 1300)).astype(np.uint16)
    return encoded(Image.fromarray(grey), "PNG")


def avif_without_its_picture() -> bytes:
    """An AVIF whose primary item is not there: Pillow's AVIF reader raises RuntimeError."""
    data = encoded(photo_like((64, 64)), "AVIF")
    at = data.index(b"pitm") + 8
    return data[:at] + b"\0\x63" + data[at + 2:]


def dds_with_no_pixel_format() -> bytes:
    """Pillow's DDS reader raises NotImplementedError for it."""
    data = bytearray(encoded(Image.new("RGBA", (64, 64)), "DDS"))
    struct.pack_into("<I", data, 80, 0)
    return bytes(data)


def heic_decoding_far_larger_than_it_says() -> bytes:
    """A small HEIC whose coded picture ('ispe') says 40000x40000: libheif decodes that whole
    before cropping it to the size it reports."""
    data = bytearray(encoded(photo_like((80, 48)), "HEIF", quality=50))
    struct.pack_into(">II", data, data.index(b"ispe") + 8, 40_000, 40_000)
    return bytes(data)


def heic_with_its_ispe_written(form: str, side: int = 40_000) -> bytes:
    """A small HEIC whose coded picture ('ispe') says `side` x `side`, that box written otherwise
    than in its usual 20 bytes, as libheif also reads it: with a 64-bit size ("large"), or with
    bytes after its fields ("padded"). The colour box before it gives up the room (a 'free' box
    now), so that nothing after it moves."""
    data = bytearray(encoded(photo_like((80, 48)), "HEIF", quality=50))
    colr, ispe = data.index(b"colr") - 4, data.index(b"ispe") - 4
    assert struct.unpack_from(">I", data, ispe)[0] == 20 and ispe == colr + 19  # (as pillow-heif writes them)
    grown = {"large": 8, "padded": 4}[form]
    fields = struct.pack(">III", 0, side, side)
    box = (struct.pack(">I4sQ", 1, b"ispe", 28) + fields if form == "large"
           else struct.pack(">I4s", 24, b"ispe") + fields + bytes(4))
    data[colr:ispe + 20] = struct.pack(">I4s", 19 - grown, b"free") + bytes(11 - grown) + box
    return bytes(data)


def heic_cropped_without_an_ispe() -> bytes:
    """A HEIC whose picture has no 'ispe' but is cropped ('clap'): libheif decodes whatever size its
    stream says (this one 80x64; another, of 15 KB, 8000x8008 in 300 MB) and reports the crop."""
    return encoded(photo_like((80, 48)), "HEIF", quality=50).replace(b"ispe", b"free")


def box(kind: bytes, payload: bytes, version: int | None = None, flags: int = 0) -> bytes:
    """An ISOBMFF box (HEIC's and AVIF's) of `payload`; with `version`, a full box (version, flags)."""
    payload = payload if version is None else struct.pack(">I", version << 24 | flags) + payload
    return struct.pack(">I4s", 8 + len(payload), kind) + payload


def box_of(data: bytes, kind: bytes) -> bytes:
    """The first box of type `kind` in `data`, whole."""
    at = data.index(kind) - 4
    return data[at:at + struct.unpack_from(">I", data, at)[0]]


def heic_tiled_far_larger_than_it_says(misread: bool = False, rows: int = 7) -> bytes:
    """A HEIC of 829 bytes whose picture is a grid of 7x7 tiles (`rows`), each the same 1024x1024 coded
    picture, its 'ispe' boxes all 1024x1024: libheif draws the tiles into the 7168x7168 canvas its grid
    data declares before finding that is not the size it said (22528x22528 in 4:4:4 took 1.5 GB).
    `misread`: its 'iloc' says base offsets are 2 bytes, which the format does not allow:
    libheif reads a base offset of 4 or 8 bytes only (none here), so that read as 2 bytes its entries
    place the grid elsewhere, at a grid data of 1024x1024 (22528x22528 took 750 MB so)."""
    tile = encoded(Image.new("RGB", (1024, 1024), (200, 150, 100)), "HEIF", quality=10)
    hvcc, ispe = box_of(tile, b"hvcC"), box_of(tile, b"ispe")
    stream = tile[tile.index(b"mdat") + 4:]  # (its last box)
    grid = bytes([0, 0, rows - 1, rows - 1]) + struct.pack(">HH", rows * 1024, rows * 1024)  # (and columns)

    small = grid[:4] + struct.pack(">HH", 1024, 1024)

    def head(stream_at: int) -> bytes:
        iloc = (struct.pack(">BBH", 0x44, 0, 2) + struct.pack(">HHHHII", 1, 1, 0, 1, 0, len(grid))
                + struct.pack(">HHHHII", 2, 0, 0, 1, stream_at, len(stream)))  # the grid's in 'idat'
        if misread:  # libheif: items 3 (3 extents), 1 (the grid, after `small`) and 2
            read = struct.pack(">HHHHHII", 1, 1, 0, 0, 1, 0, len(small))  # as read with 2-byte base offsets
            iloc = (struct.pack(">BBH", 0x44, 0x20, 3) + struct.pack(">HHHHH", 3, 0, 0, 3, 0) + read
                    + struct.pack(">HH", 4, 0) + struct.pack(">HHHHII", 1, 1, 0, 1, len(small), len(grid))
                    + struct.pack(">HHHHII", 2, 0, 0, 1, stream_at, len(stream)))
        items = b"".join(box(b"infe", struct.pack(">HH4sx", item, 0, kind), 2)
                         for item, kind in ((1, b"grid"), (2, b"hvc1")))
        ipma = struct.pack(">IHBBHBBB", 2, 1, 1, 2, 2, 2, 0x81, 2)  # the grid: its 'ispe'; the tile: both
        properties = box(b"ipco", hvcc + ispe) + box(b"ipma", ipma, 0)
        return box(b"ftyp", b"heic\0\0\0\0mif1heic") + box(b"meta", b"".join((
            box(b"hdlr", bytes(4) + b"pict" + bytes(13), 0), box(b"pitm", struct.pack(">H", 1), 0),
            box(b"iinf", struct.pack(">H", 2) + items, 0), box(b"iloc", iloc, 1),
            box(b"iref", box(b"dimg", struct.pack(">HH", 1, rows**2) + struct.pack(">H", 2) * rows**2), 0),
            box(b"iprp", properties), box(b"idat", (small if misread else b"") + grid))), 0)

    return head(len(head(0)) + 8) + box(b"mdat", stream)


def heic_whose_metadata_says_whisper() -> bytes:
    """A HEIC whose XMP description has the letters 'ispe' in it ("whisper"), numbers of billions
    after them: no box, and no size of its picture."""
    xmp = (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF><rdf:Description dc:description="A whisper of '
           b'pandan"/></rdf:RDF></x:xmpmeta>')
    data = encoded(photo_like(), "HEIF", quality=50, xmp=xmp)
    assert data.count(b"ispe") == 2
    return data


def avif_turned(orientation: int = 6) -> bytes:
    """A 200x100 AVIF shown turned a quarter: its 'irot' box (Pillow writes an EXIF orientation so)."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = encoded(photo_like((200, 100)), "AVIF", quality=60, exif=exif.tobytes())
    assert b"irot" in data
    return data


def avif_saying(side: int) -> bytes:
    """A small AVIF whose picture ('ispe') says `side` x `side`: libavif scales what it decodes to that."""
    data = bytearray(encoded(photo_like(), "AVIF", quality=50))
    struct.pack_into(">II", data, data.index(b"ispe") + 8, side, side)
    return bytes(data)


def avif_coded_far_larger_than_it_says() -> bytes:
    """An AVIF of 1 KB whose picture ('ispe') says 64x64, its AV1 stream 4096x4096: libavif decodes
    the stream whole, then scales it to the size it says (63 MB; a stream of 16384x16384 took 967 MB)."""
    big = Image.new("RGB", (4096, 4096), (200, 150, 100))
    data = bytearray(encoded(big, "AVIF", quality=10, speed=10, subsampling="4:4:4"))
    struct.pack_into(">II", data, data.index(b"ispe") + 8, 64, 64)
    return bytes(data)


def avif_animation_far_larger_than_it_says() -> bytes:
    """An animated AVIF whose frames are 4096x4096, its track, sample entry and 'ispe' saying 64x64."""
    frames = [Image.new("RGB", (4096, 4096), colour) for colour in ((200, 150, 100), (90, 60, 30))]
    data = bytearray(encoded(frames[0], "AVIF", save_all=True, append_images=frames[1:], quality=10, speed=10,
                             subsampling="4:4:4"))
    tkhd_end = data.index(b"tkhd") - 4 + struct.unpack_from(">I", data, data.index(b"tkhd") - 4)[0]
    struct.pack_into(">II", data, tkhd_end - 8, 64 << 16, 64 << 16)  # (16.16 fixed point)
    struct.pack_into(">HH", data, data.index(b"av01", data.index(b"stsd")) + 28, 64, 64)
    struct.pack_into(">II", data, data.index(b"ispe") + 8, 64, 64)
    return bytes(data)


def avif_grid(rows: int, cols: int, side: int, says: int | None = None, shared: bool = False) -> bytes:
    """An AVIF whose picture is a grid of rows x cols tiles of side x side, each its own copy of one
    coded picture placed after the others, as an encoder writes a grid (`shared`: all drawn from
    the same bytes), the grid's 'ispe' saying `says` x `says` (by default, its canvas's size)."""
    tile = encoded(photo_like((side, side)), "AVIF", quality=90, speed=10)
    stream = tile[tile.index(b"mdat") + 4:]  # (its last box)
    width, height = cols * side, rows * side
    grid = bytes([0, 0, rows - 1, cols - 1]) + struct.pack(">HH", width, height)
    tiles = range(2, rows * cols + 2)

    def head(stream_at: int) -> bytes:
        iloc = struct.pack(">BBH", 0x44, 0, len(tiles) + 1) + struct.pack(">HHHHII", 1, 1, 0, 1, 0, len(grid))
        iloc += b"".join(struct.pack(">HHHHII", item, 0, 0, 1, stream_at + (0 if shared else i * len(stream)),
                                     len(stream)) for i, item in enumerate(tiles))
        items = box(b"infe", struct.pack(">HH4sx", 1, 0, b"grid"), 2) + b"".join(
            box(b"infe", struct.pack(">HH4sx", item, 0, b"av01"), 2, flags=1) for item in tiles)
        ipma = struct.pack(">IHBBB", len(tiles) + 1, 1, 2, 2, 4) + b"".join(
            struct.pack(">HBBBB", item, 3, 1, 0x83, 4) for item in tiles)
        canvas = box(b"ispe", struct.pack(">II", says or width, says or height), 0)
        tile_ispe, av1c, colr = (box_of(tile, kind) for kind in (b"ispe", b"av1C", b"colr"))
        properties = box(b"ipco", tile_ispe + canvas + av1c + colr)
        properties += box(b"ipma", ipma, 0)
        return box(b"ftyp", b"avif\0\0\0\0avifmif1miaf") + box(b"meta", b"".join((
            box(b"hdlr", bytes(4) + b"pict" + bytes(13), 0), box(b"pitm", struct.pack(">H", 1), 0),
            box(b"iloc", iloc, 1), box(b"iinf", struct.pack(">H", len(tiles) + 1) + items, 0),
            box(b"iref", box(b"dimg", struct.pack(f">HH{len(tiles)}H", 1, len(tiles), *tiles)), 0),
            box(b"iprp", properties), box(b"idat", grid))), 0)

    return head(len(head(0)) + 8) + box(b"mdat", stream * (1 if shared else len(tiles)))


def avif_locating_items_it_lacks(count: int) -> bytes:
    """A 64x64 AVIF whose 'iloc' also places `count` items of no data that no other box names:
    libavif looks each up among those it has (60,000 took 5 s, and the picture was then taken)."""
    picture = encoded(photo_like((64, 64)), "AVIF", quality=90, speed=10)
    stream = picture[picture.index(b"mdat") + 4:]  # (its last box)

    def head(stream_at: int) -> bytes:
        iloc = struct.pack(">BBHHHHHII", 0x44, 0, count + 1, 1, 0, 0, 1, stream_at, len(stream))
        iloc += b"".join(struct.pack(">HHHH", item, 0, 0, 0) for item in range(2, count + 2))
        properties = box(b"ipco", b"".join(box_of(picture, kind) for kind in (b"ispe", b"av1C", b"colr")))
        properties += box(b"ipma", struct.pack(">IHBBB", 1, 1, 2, 1, 0x82), 0)
        return box(b"ftyp", b"avif\0\0\0\0avifmif1miaf") + box(b"meta", b"".join((
            box(b"hdlr", bytes(4) + b"pict" + bytes(13), 0), box(b"pitm", struct.pack(">H", 1), 0),
            box(b"iloc", iloc, 1), box(b"iinf", struct.pack(">H", 1) + box(b"infe", struct.pack(
                ">HH4sx", 1, 0, b"av01"), 2), 0), box(b"iprp", properties))), 0)

    return head(len(head(0)) + 8) + box(b"mdat", stream)


def rle_bmp_wide_and_slow() -> bytes:
    """1.2 KB, 1,249,999 x 32 pixels of 8-bit run-length encoding: Pillow decodes RLE in Python,
    for seconds."""
    rows = b"\x01\x07\x00\x00" * 32 + b"\x00\x01"  # one pixel and end of line, each row; end
    offset = 14 + 40 + 1024
    return (b"BM" + struct.pack("<IHHI", offset + len(rows), 0, 0, offset)
            + struct.pack("<IiiHHIIiiII", 40, 1_249_999, 32, 1, 8, 1, len(rows), 0, 0, 256, 0)
            + bytes(1024) + rows)


JPEG = sample_photo().read_bytes()
NOISE_PNG = encoded(Image.fromarray(np.random.default_rng(0).integers(0, 256, (200, 200, 3), dtype=np.uint8)),
                    "PNG")

REFUSED = {
    "empty file": ("cake.jpg", b"", "The file is empty."),
    "text renamed .jpg": ("notes.jpg", b"just some notes, not a photo\n" * 20, "not an image we can read"),
    "PDF renamed .jpg": ("paper.jpg", b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer\n%%EOF\n",
                         "not an image we can read"),
    "truncated JPEG": ("cut.jpg", JPEG[: len(JPEG) // 2], "truncated or corrupt"),
    "truncated PNG": ("cut.png", NOISE_PNG[: len(NOISE_PNG) // 2], "truncated or corrupt"),
    "decompression bomb": ("bomb.png", png_header_only(40_000, 40_000), "too large to decode safely"),
    "too many pixels": ("huge.png", png_header_only(9_000, 9_000), "at most 40 megapixels"),
    "1x1 image": ("dot.png", png_bytes((1, 1)), "at least 32 pixels"),
    "400x8 strip": ("strip.png", png_bytes((400, 8)), "at least 32 pixels on each side"),  # long, yet thin
    "PNG broken inside its pixels": ("broken.png", png_with_a_broken_chunk_inside_its_pixels(),
                                     "not an image we can read"),
    "SVG with a script": ("drawing.svg", b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script>'
                                         b'<rect width="10" height="10"/></svg>', "not an image we can read"),
    "TIFF": ("scan.tif", encoded(photo_like(), "TIFF"), "TIFF images are not supported"),
    "PNG with a corrupt header": ("bad.png", png_with_a_short_header(), "truncated or corrupt"),
    "PNG with a text bomb": ("text.png", png_with_inflating_text(), "truncated or corrupt"),
    # found by fuzzing: each was a 500, or took seconds or hundreds of MB
    "broken AVIF": ("photo.jpg", avif_without_its_picture(), "truncated or corrupt"),
    "broken DDS": ("photo.jpg", dds_with_no_pixel_format(), "not an image we can read"),
    "HEIC decoding 40000x40000": ("IMG.HEIC", heic_decoding_far_larger_than_it_says(),
                                  "at most 40 megapixels"),
    "HEIC decoding 40000x40000, its size in 64 bits": ("IMG.HEIC", heic_with_its_ispe_written("large"),
                                                      "at most 40 megapixels"),
    "HEIC decoding 40000x40000, its box padded": ("IMG.HEIC", heic_with_its_ispe_written("padded"),
                                                  "at most 40 megapixels"),
    "HEIC cropped without an ispe": ("IMG.HEIC", heic_cropped_without_an_ispe(),
                                     "too large to decode safely"),
    "HEIC tiled far larger than it says": ("IMG.HEIC", heic_tiled_far_larger_than_it_says(),
                                           "at most 40 megapixels"),
    "HEIC tiled far larger than it says, its iloc misread": (
        "IMG.HEIC", heic_tiled_far_larger_than_it_says(misread=True), "too large to decode safely"),
    "RLE BMP": ("wide.bmp", rle_bmp_wide_and_slow(), "Compressed (RLE) BMP images are not supported"),
    "AVIF of 9000x9000": ("big.avif", avif_saying(9000), "at most 40 megapixels"),
    # made when their test runs (each takes a second to encode)
    "AVIF coded far larger than it says": ("IMG.avif", avif_coded_far_larger_than_it_says,
                                           "too large to decode safely"),
    "AVIF animation far larger than it says": ("party.avif", avif_animation_far_larger_than_it_says,
                                               "too large to decode safely"),
    # each took seconds to read or decode (a grid of 65,280 tiles, 20 s), not refused before
    "AVIF grid of 1,056 tiles": ("IMG.avif", avif_grid(32, 33, 64), "too large to decode safely"),
    "AVIF placing 1,100 items it lacks": ("IMG.avif", avif_locating_items_it_lacks(1100),
                                          "too large to decode safely"),
    "AVIF grid drawing one tile's bytes 64 times": ("IMG.avif", avif_grid(8, 8, 128, shared=True),
                                                    "too large to decode safely"),
    "AVIF grid whose canvas is 8192x8192, its 'ispe' saying 1024x1024": (
        "IMG.avif", lambda: avif_grid(8, 8, 1024, says=1024), "at most 40 megapixels"),
}

ACCEPTED = {
    # name: (file name, bytes, stored format, upright (width, height))
    "PNG named .jpg": ("cake.jpg", encoded(photo_like(), "PNG"), "png", (120, 90)),
    "animated GIF": ("party.gif", animated_gif(), "gif", (64, 64)),
    "CMYK JPEG": ("print.jpg", encoded(photo_like().convert("CMYK"), "JPEG"), "jpg", (120, 90)),
    "16-bit PNG": ("deep.png", sixteen_bit_png(), "png", (100, 80)),
    "palette PNG with transparency": ("icon.png", palette_png_with_transparency(), "png", (120, 90)),
    "EXIF-rotated JPEG": ("phone.jpg", exif_rotated_jpeg(), "jpg", (100, 200)),
    "EXIF-rotated and mirrored JPEG (5)": ("selfie5.jpg", exif_rotated_jpeg(5), "jpg", (100, 200)),
    "EXIF-rotated and mirrored JPEG (7)": ("selfie7.jpg", exif_rotated_jpeg(7), "jpg", (100, 200)),
    "JPEG with a second picture (MPO)": ("IMG_0001.jpg", mpo_jpeg(), "jpg", (120, 90)),
    "turned JPEG with a malformed EXIF tag": ("odd.jpg", jpeg_with_a_malformed_exif_tag(), "jpg", (100, 200)),
    "16-bit PNG of 1300 px": ("deep-big.png", big_sixteen_bit_png(), "png", (1300, 1040)),
    "HEIC whose metadata says 'whisper'": ("IMG.HEIC", heic_whose_metadata_says_whisper(), "jpg", (120, 90)),
    "AVIF turned a quarter ('irot')": ("IMG.avif", avif_turned(), "jpg", (100, 200)),
    "AVIF with transparency": ("pic.avif", encoded(photo_like().convert("RGBA"), "AVIF"), "jpg", (120, 90)),
    "grey AVIF": ("grey.avif", encoded(photo_like().convert("L"), "AVIF"), "jpg", (120, 90)),
    "AVIF grid of 4x4 tiles": ("IMG.avif", avif_grid(4, 4, 64), "jpg", (256, 256)),
    "AVIF placing 2 items it lacks": ("IMG.avif", avif_locating_items_it_lacks(2), "jpg", (64, 64)),
}


@pytest.fixture
def api(user):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {api_token(user)}")
    return client


def media_files(settings) -> list[Path]:
    root = Path(settings.MEDIA_ROOT)
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


def upload_through(route: str, client, api, files: list[tuple[str, bytes]], **extra):
    """POST files through the website form (checking CSRF, as for a browser: the check parses the
    body before any view) or the API; returns (status, messages shown)."""
    uploads = [SimpleUploadedFile(name, data) for name, data in files]
    if route == "website":
        client.handler.enforce_csrf_checks = True
        token = str(client.get(reverse("upload")).context["csrf_token"])
        response = client.post(reverse("upload"), {"photos": uploads, "csrfmiddlewaretoken": token}, **extra)
        context = response.context
        shown = [str(m) for m in context.get("messages", [])] if context else []
        if context and context.get("form"):
            shown += [e for errors in context["form"].errors.values() for e in errors]
        if context:
            shown.append(context.get("refusal") or context.get("message") or "")
        return response.status_code, " ".join(shown)
    if extra:
        response = api.post("/api/photos/", {"files": uploads}, format="multipart", **extra)
        return response.status_code, response.json()["error"]["message"]
    response = api.post("/api/photos/", {"files": uploads}, format="multipart")
    body = response.json()
    if "results" in body:
        return response.status_code, " ".join(" ".join(r["errors"]) for r in body["results"])
    return response.status_code, body["error"]["message"] + " " + str(body["error"]["fields"])


@pytest.mark.parametrize("route", ["website", "api"])
@pytest.mark.parametrize("case", list(REFUSED))
def test_a_bad_file_is_refused_with_its_reason_and_leaves_nothing(client, api, user, enqueued, settings,
                                                                  route, case):
    client.force_login(user)
    name, data, reason = REFUSED[case]

    status, shown = upload_through(route, client, api, [(name, data() if callable(data) else data)])

    assert status == 400
    assert reason in shown and name in shown if route == "website" else reason in shown
    assert Photo.objects.count() == 0 and media_files(settings) == [] and enqueued == []


@pytest.mark.parametrize("route", ["website", "api"])
@pytest.mark.parametrize("case", list(ACCEPTED))
def test_an_odd_but_real_image_is_stored_by_its_content_and_shown_upright(
        client, api, user, enqueued, django_capture_on_commit_callbacks, route, case):
    client.force_login(user)
    name, data, fmt, (width, height) = ACCEPTED[case]

    with django_capture_on_commit_callbacks(execute=True):
        status, _ = upload_through(route, client, api, [(name, data)])

    photo = Photo.objects.get()
    assert status in (201, 302) and enqueued == [photo.pk]
    assert photo.image_format == fmt and photo.image.name.endswith(f".{fmt}")
    assert (photo.width, photo.height) == (width, height)
    with photo.thumbnail.open("rb") as f:
        thumbnail = Image.open(f)
        thumbnail.load()
    assert thumbnail.mode == "RGB" and (thumbnail.width > thumbnail.height) == (width > height)
    assert 20 < np.asarray(thumbnail).mean() < 235  # not washed out to white or black


@pytest.mark.parametrize("case", list(ACCEPTED))
def test_the_worker_classifies_every_accepted_kind_of_image(user, enqueued, case):
    name, data, _, _ = ACCEPTED[case]
    photo = services.photo_create(owner=user, upload=SimpleUploadedFile(name, data))

    pixels = load_image(io.BytesIO(data))
    tasks.classify_photo(photo.pk)

    photo.refresh_from_db()
    assert pixels.shape == (224, 224, 3) and pixels.dtype == np.uint8 and 20 < pixels.mean() < 235
    assert photo.status == "done" and photo.predictions.count() == 1


def test_a_heic_larger_inside_than_the_checks_of_its_boxes_see_is_refused_by_the_process_that_decodes_it(
        monkeypatch):
    """The checks of a HEIC's boxes (heif_decoded_size) read the format as libheif 1.23 does, and may
    differ from it (another libheif, a box they do not know): libheif then decodes, in a process whose
    memory is capped, a picture larger than it says, never in the web process. Here a grid of 2.5 KB
    whose canvas is 30720x30720 (1.4 GB), the checks off: libheif is refused the memory."""
    monkeypatch.setattr(images, "heif_decoded_size", lambda data, img: img.size)

    with pytest.raises(ValidationError, match="The image is too large to decode safely."):
        images.validate_image(SimpleUploadedFile("IMG.HEIC", heic_tiled_far_larger_than_it_says(rows=30)))


def test_a_heic_holds_its_share_of_the_decoding_budget_while_its_pixels_are_in_the_web_process(monkeypatch):
    """A HEIC's pixels come back from the process that decodes it, and are made a JPEG and a thumbnail
    here: the budget of its coded size is held from its decoding until then, as when it was decoded
    here (else a thread holds a decoded picture the budget does not count while it waits for the budget
    again)."""
    held = []
    decoded_apart = images.decoded_apart

    def decoded_and_held(*args, **kwargs):
        img = decoded_apart(*args, **kwargs)
        held.append(images.DECODING.total - images.DECODING.free)
        return img

    monkeypatch.setattr(images, "decoded_apart", decoded_and_held)
    checked = images.validate_image(SimpleUploadedFile("IMG.HEIC", encoded(photo_like((120, 90)), "HEIF")))

    assert (checked.width, checked.height) == (120, 90)
    assert held == [120 * 90]


def test_a_picture_whose_decoding_is_killed_at_its_processor_time_limit_is_too_large_not_corrupt(monkeypatch):
    """The process that decodes an AVIF or a HEIC is killed by the kernel at its limit of processor
    time (signal 9, SIGKILL, its soft limit being its hard one; 24, SIGXCPU, were it lower): refused as
    too large to decode safely, as at its wall-clock limit. Here
    an AVIF whose 60,000 items libavif takes 5 s to look up, the check of its boxes off, that limit 1 s."""
    monkeypatch.setattr(images, "avif_refusal", lambda data: None)
    monkeypatch.setattr(images, "DECODE_CPU_SECONDS", 1)

    with pytest.raises(ValidationError, match="The image is too large to decode safely."):
        images.validate_image(SimpleUploadedFile("IMG.avif", avif_locating_items_it_lacks(60_000)))


@pytest.mark.parametrize("route", ["website", "api"])
def test_one_empty_file_does_not_lose_the_good_photo_beside_it(client, api, user, enqueued, route):
    client.force_login(user)

    status, shown = upload_through(route, client, api, [("cake.jpg", JPEG), ("empty.jpg", b"")])

    assert status in (201, 302) and Photo.objects.count() == 1
    if route == "api":
        assert "The file is empty." in shown


@pytest.mark.parametrize("route", ["website", "api"])
@pytest.mark.parametrize("name, shown_as", [
    ("../../etc/passwd.jpg", "passwd.jpg"),
    ("kué 蛋糕 🍰.jpg", "kué 蛋糕 🍰.jpg"),
    ("k" * 300 + ".jpg", "k" * 251 + ".jpg"),  # Django keeps the extension within 255 characters
])
def test_a_file_name_is_kept_for_display_only_and_never_reaches_the_disk(client, api, user, enqueued,
                                                                        settings, route, name, shown_as):
    client.force_login(user)

    upload_through(route, client, api, [(name, JPEG)])

    photo = Photo.objects.get()
    assert photo.original_name == shown_as
    stored = [p.name for p in media_files(settings)]
    assert len(stored) == 2 and all(not s.startswith(("passwd", "kué", "kkk")) for s in stored)
    assert all(Path(settings.MEDIA_ROOT) in p.resolve().parents for p in media_files(settings))


@pytest.mark.parametrize("route", ["website", "api"])
def test_a_file_over_the_size_limit_is_refused_with_the_limit(client, api, user, enqueued, settings, route):
    settings.MAX_UPLOAD_BYTES = 10_000
    client.force_login(user)

    status, shown = upload_through(route, client, api, [("big.jpg", JPEG)])

    assert len(JPEG) > 10_000 and status == 400 and "larger than 9.8" in shown
    assert Photo.objects.count() == 0 and media_files(settings) == []


class Unreadable(io.RawIOBase):
    def readinto(self, buffer):
        raise AssertionError("the body was read")


@pytest.mark.parametrize("route", ["website", "api"])
def test_a_request_body_beyond_what_we_take_at_once_is_a_413_before_it_is_read(client, api, user, settings,
                                                                              route):
    settings.MAX_UPLOAD_BYTES, settings.MAX_FILES_PER_UPLOAD = 2_000, 2
    client.force_login(user)

    status, shown = upload_through(route, client, api, [("big.jpg", JPEG)], **{"wsgi.input": Unreadable()})

    assert status == 413 and "at most 2 photos" in shown and Photo.objects.count() == 0


@pytest.mark.parametrize("path", ["/api/photos.json", "/accounts/login/", "/photos/1/feedback/"])
def test_no_url_reads_a_body_beyond_what_we_take_at_once(client, user, settings, path):
    settings.MAX_UPLOAD_BYTES, settings.MAX_FILES_PER_UPLOAD = 2_000, 2
    client.force_login(user)

    response = client.generic("POST", path, b"", content_type="multipart/form-data; boundary=x",
                              CONTENT_LENGTH="100000", **{"wsgi.input": Unreadable()})

    assert response.status_code == 413
    if not path.startswith("/api/"):
        assert "Too much at once" in response.content.decode() and "Sign out" in response.content.decode()


def test_only_photo_uploads_take_a_body_of_many_megabytes_and_the_pages_form_only_when_signed_in(
        client, user, settings):
    """A login page (or any address that takes no file) does not spool 300 MB to disk for anyone:
    beyond DATA_UPLOAD_MAX_MEMORY_SIZE it answers 413 before reading. Uploads still take a full
    batch of photos; the API reads nothing before it knows the sender, the page's form is for the
    signed-in."""
    length = str(settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1)

    def post(path):
        return client.generic("POST", path, b"", content_type="multipart/form-data; boundary=x",
                              CONTENT_LENGTH=length, **{"wsgi.input": Unreadable()})

    anonymous = {path: post(path) for path in ("/accounts/login/", "/admin/login/", "/signup/", "/upload/",
                                               "/api/auth/token/")}
    api_upload = post("/api/photos/")
    client.force_login(user)
    feedback, account = post("/photos/1/feedback/"), post("/api/account/")

    assert {path: r.status_code for path, r in anonymous.items()} == dict.fromkeys(anonymous, 413)
    assert "at most 2.5" in anonymous["/accounts/login/"].content.decode()
    assert feedback.status_code == account.status_code == 413
    assert api_upload.status_code in (401, 403)  # (not signed in: refused unread)
    assert post("/upload/").status_code == 400  # read by the view (an empty multipart body)


def test_a_body_beyond_what_we_take_is_a_413_even_while_the_database_is_down(client, user, settings,
                                                                            monkeypatch):
    from django.contrib.sessions.backends.db import SessionStore
    from django.db import OperationalError

    settings.MAX_UPLOAD_BYTES, settings.MAX_FILES_PER_UPLOAD = 2_000, 2
    client.force_login(user)

    def database_down(self):
        raise OperationalError("connection refused")

    monkeypatch.setattr(SessionStore, "load", database_down)  # the signed-in menu needs the session
    for method in ("POST", "PUT"):
        response = client.generic(method, "/upload/", b"", content_type="multipart/form-data; boundary=x",
                                  CONTENT_LENGTH="100000", **{"wsgi.input": Unreadable()})
        assert response.status_code == 413 and "Too much at once" in response.content.decode()


@pytest.mark.parametrize("route", ["website", "api"])
@pytest.mark.parametrize("count", [4, 6])
def test_too_many_files_in_one_request_are_refused_with_the_limit(client, api, user, enqueued, settings,
                                                                  route, count):
    settings.MAX_FILES_PER_UPLOAD, settings.DATA_UPLOAD_MAX_NUMBER_FILES = 3, 4
    client.force_login(user)

    status, shown = upload_through(route, client, api, [(f"{i}.png", png_bytes()) for i in range(count)])

    assert status == 400 and "At most 3 photos at once." in shown and Photo.objects.count() == 0


@pytest.mark.parametrize("body, content_type", [
    ("{not json", "application/json"),
    ('{"label": 5}', "application/json"),
    ('{"label": ["kue_lapis"]}', "application/json"),
    ('{"label": "kue_pizza"}', "application/json"),
    ('{}', "application/json"),
    ("label=kue_lapis", "text/plain"),
])
def test_malformed_or_wrong_feedback_is_a_4xx_and_changes_nothing(api, user, body, content_type):
    photo = make_photo(user, status="done", label="kue_lapis")

    response = api.put(f"/api/photos/{photo.pk}/feedback/", body, content_type=content_type)

    assert response.status_code in (400, 415) and "error" in response.json()
    assert not hasattr(Photo.objects.get(pk=photo.pk), "feedback")


@pytest.mark.parametrize("pk", ["999999", "0", "abc", "1" * 30, "%0A", "1%0A"])
def test_ids_that_do_not_exist_are_a_404(api, client, user, pk):
    client.force_login(user)

    missing = api.get(f"/api/photos/{pk}/")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"  # (a newline too)
    assert api.get(f"/api/photos/{pk}/image/").json()["error"]["code"] == "not_found"
    assert api.put(f"/api/photos/{pk}/feedback/", {"label": "kue_lapis"}, format="json").status_code == 404
    assert client.get(f"/photos/{pk}/").status_code == 404


TOO_LONG_EMAIL = "a" * 60 + "@" + ("b" * 60 + ".") * 4 + "com"  # valid in form, 308 characters


def test_an_address_longer_than_an_address_may_be_is_a_400_and_changes_nothing(api, client, user):
    from classifier.models import PendingEmail

    client.force_login(user)
    changed = api.patch("/api/account/", {"email": TOO_LONG_EMAIL, "password": "kue-lapis-2026"},
                        format="json")
    page = client.post("/accounts/", {"email": TOO_LONG_EMAIL, "password": "kue-lapis-2026"})
    reset = APIClient().post("/api/auth/password-reset/", {"email": TOO_LONG_EMAIL}, format="json")
    signup = APIClient().post("/api/account/", {"username": "eka", "password": "onde-onde-wijen-9",
                                                "email": TOO_LONG_EMAIL}, format="json")

    assert (changed.status_code, page.status_code, reset.status_code, signup.status_code) == (400,) * 4
    assert "no more than 254 characters" in str(changed.json()) and "254" in str(reset.json())
    assert not PendingEmail.objects.exists() and not type(user).objects.filter(username="eka").exists()


def test_a_user_name_longer_than_an_account_may_have_is_a_400_on_the_token_endpoint():
    """django-axes writes a failed sign-in's name to a column of 255 characters (a 500 on PostgreSQL)."""
    response = APIClient().post("/api/auth/token/", {"username": "u" * 300, "password": "x"}, format="json")

    assert response.status_code == 400 and "no more than 150 characters" in str(response.json())


@pytest.mark.parametrize("route", ["website", "api"])
def test_a_name_taken_between_the_forms_check_and_the_save_is_refused_like_any_taken_name(
        client, django_user_model, monkeypatch, route):
    """Two sign-ups with one new name at once: both forms found it free; the second save fails."""
    from classifier.accounts import SignUpRateThrottle

    def another_sign_up_commits_meanwhile(throttle, request):  # counted after the form's checks
        django_user_model.objects.create_user("racer", password="onde-onde-wijen-9")
        return None

    monkeypatch.setattr(SignUpRateThrottle, "wait_if_over", another_sign_up_commits_meanwhile)
    if route == "api":
        response = APIClient().post("/api/account/", {"username": "racer", "password": "onde-onde-wijen-9"},
                                    format="json")
        assert response.status_code == 400
        assert response.json()["error"]["fields"]["username"] == ["A user with that username already exists."]
    else:
        response = client.post("/signup/", {"username": "racer", "password1": "onde-onde-wijen-9",
                                            "password2": "onde-onde-wijen-9"})
        assert response.status_code == 200 and "A user with that username already exists." in \
            response.content.decode()
    assert django_user_model.objects.filter(username="racer").count() == 1


def test_a_photo_deleted_twice_at_once_is_deleted_once_and_the_second_is_a_404(api, user):
    from django.http import Http404

    photo = make_photo(user)
    stale = Photo.objects.get(pk=photo.pk)  # what a second request read before the first deleted it

    assert api.delete(f"/api/photos/{photo.pk}/").status_code == 204
    with pytest.raises(Http404):
        services.photo_delete(stale)


def test_api_errors_are_json_whatever_the_client_accepts(api, user):
    for response in (api.get("/api/photos/999999/", HTTP_ACCEPT="text/html"),
                     api.post("/api/photos/", HTTP_ACCEPT="text/html"),
                     api.get("/api/photos/?format=api")):
        assert response["Content-Type"] == "application/json" and "error" in response.json()


def test_a_boolean_filter_refuses_values_that_are_no_boolean(api, staff):
    api.force_authenticate(staff)

    assert api.get("/api/model-versions/?is_active=maybe").status_code == 400
    active = api.get("/api/model-versions/?is_active=true").json()["results"]
    assert [version["is_active"] for version in active] == [True]


def test_a_content_length_that_is_no_number_is_a_400_not_a_413(api, user):
    response = api.generic("POST", "/api/photos/", b"", content_type="multipart/form-data; boundary=x",
                           CONTENT_LENGTH="abc")

    assert response.status_code == 400 and Photo.objects.count() == 0


# How much more memory a process needs at its peak to check `count` copies of a file at once, each in
# its own thread, as a web process's threads check uploads that arrive together (MB).
# (Linux: a process's peak, VmHWM, comes with it from the process that forked it until reset.)
PEAK_CHECKING_AT_ONCE = """
import re, sys, threading
import django
django.setup()
from django.core.files.uploadedfile import SimpleUploadedFile
from classifier import images
def kb(field):
    return int(re.search(field + r":\\s+(\\d+) kB", open("/proc/self/status").read()).group(1))
data, count = open(sys.argv[1], "rb").read(), int(sys.argv[2])
open("/proc/self/clear_refs", "w").write("5")  # the peak is now
before = kb("VmHWM")
threads = [threading.Thread(target=images.validate_image, args=(SimpleUploadedFile("a", data),))
           for _ in range(count)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
print((kb("VmHWM") - before) // 1024)
"""


@pytest.mark.parametrize("kind, options, weight, cost_mb", [
    ("webp", {"lossless": True}, 4000, 300),  # Pillow's WebP reader: some 600 MB
    ("jpg", {"progressive": True}, 300_000, 80),  # kept whole, at full size: some 115 MB
])
def test_small_files_of_huge_pictures_sent_together_cost_the_memory_of_one(tmp_path, kind, options, weight,
                                                                           cost_mb):
    """Pictures of 38 megapixels in files of a few kilobytes, that cost hundreds of megabytes to
    decode: six arriving together must not cost six times that."""
    huge = tmp_path / f"huge.{kind}"
    Image.new("RGB", (16000, 2400), (200, 120, 60)).save(huge, **options)
    assert huge.stat().st_size < weight

    def peak_mb(count: int) -> int:
        env = {**os.environ, "DJANGO_SETTINGS_MODULE": "cakesite.settings"}
        out = subprocess.run([sys.executable, "-c", PEAK_CHECKING_AT_ONCE, str(huge), str(count)],
                             cwd=django_settings.BASE_DIR, env=env, capture_output=True, text=True,
                             timeout=300)
        assert out.returncode == 0 and "Traceback" not in out.stderr, out.stderr[-3000:]
        return int(out.stdout.split()[-1])

    one, six = peak_mb(1), peak_mb(6)
    assert one > cost_mb and six < 1.5 * one, (one, six)
