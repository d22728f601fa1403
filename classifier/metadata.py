"""A photo's file without what a camera or an editor wrote about it (EXIF with the place it was taken,
XMP, IPTC, comments, maker notes, a phone's appended video or depth map), its pixels left byte for
byte: the picture is not decoded or encoded again. What a browser needs to show it as taken is
kept: the colour profile, a JPEG's Adobe colour transform, the orientation (as the only tag of a
new EXIF block) and, for PNG, WebP and GIF, transparency and animation (and a GIF's looping). BMP
carries none of this metadata and is stored as sent; HEIC and AVIF are stored as a JPEG made from
their pixels (images.as_jpeg).

Each function takes a file that Pillow has already decoded whole (images.validate_image) and
raises ValueError for a structure it cannot follow."""

from __future__ import annotations

import re
import zlib

from PIL import ExifTags, Image

ORIENTATION = ExifTags.Base.Orientation


def without_metadata(data: bytes, fmt: str, orientation) -> bytes:
    """`data`, a file of Pillow format `fmt`, without its metadata; `orientation` (1 to 8, as Pillow
    read it) is kept. A tag that is no orientation (text, a negative number) counts as none, as
    `training.preprocess.upright` takes it."""
    if not (isinstance(orientation, int) and 1 <= orientation <= 8):
        orientation = 1
    if fmt in ("JPEG", "MPO"):
        return jpeg_without_metadata(data, orientation)
    if fmt == "PNG":
        return png_without_metadata(data, orientation)
    if fmt == "WEBP":
        return webp_without_metadata(data, orientation)
    if fmt == "GIF":
        return gif_without_metadata(data)
    return data


def exif_with_orientation(orientation: int) -> bytes:
    """A TIFF-format EXIF block whose one tag is `orientation` (no "Exif" prefix)."""
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    return exif.tobytes().removeprefix(b"Exif\x00\x00")


# --- JPEG: segments (marker, length, payload); what follows the first picture's end is dropped ---

def jpeg_kept(marker: int, payload: bytes) -> bool:
    if marker == 0xE0:
        return payload.startswith(b"JFIF\x00")
    if marker == 0xE2:  # (also MPF: the index of an MPO's other pictures, which are dropped)
        return payload.startswith(b"ICC_PROFILE\x00")
    if marker == 0xEE:  # how to turn the samples into colours (YCCK, CMYK)
        return payload.startswith(b"Adobe")
    return not (0xE1 <= marker <= 0xEF or marker == 0xFE)  # other APPn and comments: metadata


FILL = re.compile(rb"\xff+")


def next_marker(data: bytes, at: int) -> int:
    """Where the next marker at or after `at` starts: 0xFF (the last of any fill bytes 0xFF, passed
    over in one match however many) and a byte that is not a stuffed zero or a restart marker
    inside a scan. Anything before it (stray bytes between segments, as libjpeg skips them; a
    scan's entropy-coded data) is passed over by bytes.find."""
    while (at := data.find(b"\xff", at)) >= 0:
        after = FILL.match(data, at).end()
        if after >= len(data):
            break
        if data[after] != 0x00 and not 0xD0 <= data[after] <= 0xD7:
            return after - 1
        at = after + 1
    raise ValueError("a JPEG ends without its end of image")


def jpeg_without_metadata(data: bytes, orientation: int) -> bytes:
    if not data.startswith(b"\xff\xd8"):
        raise ValueError("no JPEG start of image")
    kept, at, size = [], 2, len(data)
    while True:
        at = next_marker(data, at)
        marker = data[at + 1]
        if marker == 0xD9:  # the end of the first picture: an MPO's others and any trailer go
            break
        end = at + 2 + int.from_bytes(data[at + 2:at + 4], "big")
        if end > size or end < at + 4:
            raise ValueError("a JPEG segment runs past the end of the file")
        if marker == 0xDA:  # a scan: its header, then entropy-coded data up to the next marker
            end = next_marker(data, end)
        if jpeg_kept(marker, data[at + 4:end]):
            kept.append(data[at:end])
        at = end
    if orientation != 1:
        exif = b"Exif\x00\x00" + exif_with_orientation(orientation)
        first = 1 if kept and kept[0].startswith(b"\xff\xe0") else 0  # after JFIF's APP0, as is usual
        kept.insert(first, b"\xff\xe1" + (len(exif) + 2).to_bytes(2, "big") + exif)
    return b"".join([b"\xff\xd8", *kept, b"\xff\xd9"])


# --- PNG: chunks (length, type, data, CRC) ---

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_KEPT = {b"IHDR", b"PLTE", b"IDAT", b"IEND", b"tRNS", b"gAMA", b"cHRM", b"sRGB", b"iCCP", b"sBIT",
            b"bKGD", b"pHYs", b"hIST", b"cICP", b"mDCV", b"cLLI", b"acTL", b"fcTL", b"fdAT"}


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(kind + payload)
    return len(payload).to_bytes(4, "big") + kind + payload + crc.to_bytes(4, "big")


def png_without_metadata(data: bytes, orientation: int) -> bytes:
    if not data.startswith(PNG_SIGNATURE):
        raise ValueError("no PNG signature")
    kept, at = [PNG_SIGNATURE], len(PNG_SIGNATURE)
    while True:
        end = at + 12 + int.from_bytes(data[at:at + 4], "big")
        kind = data[at + 4:at + 8]
        if end > len(data):
            raise ValueError("a PNG chunk runs past the end of the file")
        if kind in PNG_KEPT:
            kept.append(data[at:end])
        if kind == b"IHDR" and orientation != 1:
            kept.append(png_chunk(b"eXIf", exif_with_orientation(orientation)))
        at = end
        if kind == b"IEND":
            return b"".join(kept)


# --- WebP: a RIFF file of chunks (type, little-endian length, data, a pad byte to an even length) ---

WEBP_KEPT = {b"VP8X", b"ICCP", b"ANIM", b"ANMF", b"ALPH", b"VP8 ", b"VP8L"}
VP8X_EXIF, VP8X_XMP = 0x08, 0x04


def riff_chunk(kind: bytes, payload: bytes) -> bytes:
    return kind + len(payload).to_bytes(4, "little") + payload + b"\x00" * (len(payload) % 2)


def webp_without_metadata(data: bytes, orientation: int) -> bytes:
    if data[:4] != b"RIFF" or data[8:12] != b"WEBP":
        raise ValueError("no WebP header")
    chunks, at, size = [], 12, min(len(data), 8 + int.from_bytes(data[4:8], "little"))
    while at + 8 <= size:
        kind, length = data[at:at + 4], int.from_bytes(data[at + 4:at + 8], "little")
        if at + 8 + length > size:
            raise ValueError("a WebP chunk runs past the end of the file")
        if kind in WEBP_KEPT:
            chunks.append([kind, data[at + 8:at + 8 + length]])
        at += 8 + length + length % 2
    extended = chunks and chunks[0][0] == b"VP8X"
    if extended:  # its flags say which chunks follow: no XMP, and EXIF only for the orientation
        flags = chunks[0][1][0] & ~(VP8X_EXIF | VP8X_XMP) | (VP8X_EXIF if orientation != 1 else 0)
        chunks[0][1] = bytes([flags]) + chunks[0][1][1:]
        if orientation != 1:
            chunks.append([b"EXIF", exif_with_orientation(orientation)])
    body = b"WEBP" + b"".join(riff_chunk(kind, payload) for kind, payload in chunks)
    return b"RIFF" + len(body).to_bytes(4, "little") + body


# --- GIF: blocks after the header and colour table (extensions 0x21, pictures 0x2C, the end 0x3B) ---

def gif_sub_blocks_end(data: bytes, at: int) -> int:
    """Where the data sub-blocks starting at `at` end (after their zero-length terminator)."""
    while data[at]:
        at += 1 + data[at]
    return at + 1


def gif_without_metadata(data: bytes) -> bytes:
    """Comments and application extensions other than NETSCAPE2.0 (how many times it loops) go:
    XMP among them."""
    if data[:3] != b"GIF":
        raise ValueError("no GIF header")
    at = 13 + (3 << ((data[10] & 7) + 1) if data[10] & 0x80 else 0)  # (the global colour table)
    kept = [data[:at]]
    try:
        while data[at] != 0x3B:
            start = at
            if data[at] == 0x21:  # an extension: its label, then sub-blocks
                at = gif_sub_blocks_end(data, at + 2)
                label = data[start + 1]
                looping = label == 0xFF and data[start + 3:start + 14] == b"NETSCAPE2.0"
                if label == 0xFE or (label == 0xFF and not looping):
                    continue
            elif data[at] == 0x2C:  # a picture: its descriptor, local colour table, code size, sub-blocks
                flags = data[at + 9]
                at += 10 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)
                at = gif_sub_blocks_end(data, at + 1)
            else:
                raise ValueError(f"an unknown GIF block {data[at]:#x}")
            kept.append(data[start:at])
    except IndexError:
        raise ValueError("a GIF block runs past the end of the file") from None
    return b"".join([*kept, b"\x3b"])
