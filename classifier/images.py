"""Photos as pictures: which files we take (validate_image: the format, size and integrity checks),
and the copies made of them (the thumbnail, the copy a photo's page shows, the JPEG a HEIC or an AVIF
is stored as). No database and no storage here: classifier.services stores what these return."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NamedTuple

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import UploadedFile
from django.template.defaultfilters import filesizeformat
from django.utils.translation import gettext, gettext_noop
from PIL import Image, UnidentifiedImageError

from classifier import metadata
from training.preprocess import TURNS, orientation, rgb_profile, to_rgb, upright

log = logging.getLogger(__name__)

# Pillow format name -> the extension we store under; what a browser can also show. Every photo is
# stored without its metadata (classifier.metadata), the place it was taken above all.
# MPO is a JPEG with a second picture after the first (a phone's depth or gain map): stored as the
# JPEG it is, and browsers and the worker read its first picture. HEIF (HEIC, phones' own format;
# decoded by pillow-heif, training.preprocess) most browsers cannot show: stored as a JPEG of the
# picture, upright (training.preprocess), without its metadata (a phone's puts the place there).
# AVIF (what browsers save a picture as, and some phones write) is stored so too: Safari before 16.4
# and Edge before 121 cannot show it, and the worker and training then never decode one. Both are
# decoded only in a process of its own, its memory capped (decoded_apart): never by READERS here (a
# HEIC is opened by them, its pixels not decoded, for the checks of its boxes: heif_decoded_size).
ALLOWED_FORMATS = {"JPEG": "jpg", "MPO": "jpg", "PNG": "png", "GIF": "gif", "BMP": "bmp", "WEBP": "webp",
                   "HEIF": "jpg", "AVIF": "jpg"}
STORED_AS_JPEG = {"HEIF", "AVIF"}
READERS = [fmt for fmt in ALLOWED_FORMATS if fmt not in ("MPO", "AVIF")]  # (the JPEG reader opens MPO files)
FORMATS_TAKEN = gettext_noop("JPEG, PNG, GIF, BMP, WebP, HEIC or AVIF")  # (as the refusals name them)


def formats_taken() -> str:
    """FORMATS_TAKEN in the request's language (the API's schema keeps it in English)."""
    return gettext(FORMATS_TAKEN)
CONTENT_TYPES = {"jpg": "image/jpeg", "png": "image/png", "gif": "image/gif", "bmp": "image/bmp",
                 "webp": "image/webp"}


THUMBNAIL_SIZE = 320
# A photo larger than this (its long side) gets a smaller copy for its page (make_display): the
# page's column is at most 800 CSS pixels, twice that on a sharp screen. A phone's 12-megapixel photo
# of 3 MB becomes one of 2000 x 1500 and about 400 KB; the photo itself stays a click away. (A
# smaller PNG or WebP stored turned gets an upright copy too, made at upload: validate_image.)
DISPLAY_SIZE = 1600
MIN_IMAGE_SIDE = 32  # smaller is an icon, not a photo of a cake


class PixelBudget:
    """At most `pixels` pixels decoded at once by a process's threads; a picture larger than the
    whole budget waits until it has the budget to itself."""

    def __init__(self, pixels: int):
        self.total = self.free = pixels
        self.changed = threading.Condition()

    @contextmanager
    def decoding(self, pixels: int) -> Iterator[None]:
        pixels = min(pixels, self.total)
        with self.changed:
            self.changed.wait_for(lambda: self.free >= pixels)
            self.free -= pixels
        try:
            yield
        finally:
            with self.changed:
                self.free += pixels
                self.changed.notify_all()


# A picture decoded whole costs up to 15 bytes a pixel (Pillow's WebP reader: +611 MB at 40
# megapixels), and its file can weigh 2 KB: uploads sent together, each in a thread of the same web
# process, added that up (8 at once: +4.8 GB). They now share a budget of 50 megapixels (about
# 750 MB at worst): four phone photos of 12 megapixels decode together, two of 40 in turn (8 at once:
# +615 MB, and 3.6 s instead of 7.9).
DECODING = PixelBudget(50_000_000)

# What the process decoding an AVIF or a HEIC may take beyond what it holds when it starts, and for
# how long: a 40-megapixel AVIF of 12 bits a colour with transparency (the costliest a camera or
# browser writes) took 653 MB and 2.3 s, a phone's 12 megapixels 110 MB and 0.4 s (its start
# included), on one core; a grid of 65,280 tiles in 3.5 MB was still decoding at 20 s. More than the
# whole DECODING budget: an AVIF decodes with that budget to itself (the size it says bounds nothing);
# a HEIC is charged the size its boxes were checked to decode at, as when it was decoded here, and
# may take DECODE_BYTES_ANY and DECODE_BYTES_A_PIXEL of that size, at most DECODE_BYTES: so HEICs
# that decode larger than checked, side by side in one web process, take what their share of the
# budget allows, not 1 GB each (eight such took 4.3 GB). Every legit HEIC and AVIF tried decoded
# within 192 MB + 16 bytes a pixel, up to 40-megapixel grids of 10 bits with transparency (a
# 12-megapixel HEIC within 64 MB + 8; a 40-megapixel one not). Its processor time is what bounds
# its work (it counts every thread, and goes on if the web process is gone); the wait is twice that,
# for a machine whose cores are busy (a legit 40-megapixel HEIC took 4.3 s of one loaded core).
DECODE_BYTES = 1024 * 1024 * 1024
DECODE_BYTES_ANY = 192 * 1024 * 1024
DECODE_BYTES_A_PIXEL = 24
DECODE_CPU_SECONDS = 10
DECODE_SECONDS = 2 * DECODE_CPU_SECONDS
# What libavif reads of an AVIF before that process runs it to those limits (avif_refusal): items it
# looks up one by one among those it has (a grid of 65,280 tiles in 2.9 MB took 20 s to parse, one
# of 16,384 1.2 s: the square of their number), and tiles drawn from the same coded bytes (1 MB of
# noise, one 512x512 tile drawn 1,000 times into a canvas of 262 megapixels, took the whole 10 s;
# drawn 64 times, 4.6 s). A camera's or encoder's grid has tiles of 512 px or more, each its own
# data: 160 at 40 megapixels; libheif refuses a HEIF of more than 1000 items.
AVIF_MAX_ITEMS = 1000
# libheif's own limits: a file of more items, or an item of more extents, it refuses.
HEIF_MAX_ITEMS = 1000
HEIF_MAX_EXTENTS = 32


def area(size: tuple[int, int]) -> int:
    """How many pixels a picture of `size` has: what its decoding costs, and what the limits count."""
    return size[0] * size[1]


class CheckedImage(NamedTuple):
    extension: str  # of the format found in the content, whatever the file was called
    sha256: str
    thumbnail: ContentFile
    width: int  # upright, as shown (EXIF orientation applied)
    height: int
    converted: ContentFile | None = None  # what is stored instead of the file, if anything
    display: ContentFile | None = None  # the copy its page shows, where one is made at once


def file_too_large_message() -> str:
    return gettext("The file is larger than %(size)s.") % {"size": filesizeformat(settings.MAX_UPLOAD_BYTES)}


def validate_image(upload: UploadedFile) -> CheckedImage:
    """Check an upload is a whole image we accept; return its format, hash, thumbnail and size.

    Refuses, with a message a user can act on: an empty or too large file, anything Pillow cannot
    identify, formats we do not take, decompression bombs, and truncated or corrupt data. The whole
    image is decoded once here (a JPEG at the smallest scale that still covers the thumbnail: every
    byte is still read), so a bad file never reaches the queue; the same decoded image makes the
    thumbnail.
    """
    if upload.size == 0:
        raise ValidationError(gettext("The file is empty."), code="empty")
    if upload.size > settings.MAX_UPLOAD_BYTES:
        raise ValidationError(file_too_large_message(), code="too_large")
    upload.seek(0)
    data = upload.read()  # (read once: the hash, a HEIC's coded size and the metadata come from it)
    upload.seek(0)
    sha256 = hashlib.sha256(data).hexdigest()
    try:
        # Only the formats we take are tried: the others' readers raise anything on a broken file.
        if is_avif(data):
            opened = decoded_apart(data, "AVIF", DECODING.total)  # (its cap: DECODE_BYTES)
        else:
            opened = Image.open(upload, formats=READERS)
        with opened as img:
            fmt = img.format
            coded = heif_decoded_size(data, img) if fmt == "HEIF" else img.size
            for size in (img.size, coded):
                if area(size) > settings.MAX_IMAGE_PIXELS:
                    raise too_many_pixels(size)
            if min(img.size) < MIN_IMAGE_SIDE:
                raise ValidationError(
                    gettext("The image is %(width)s×%(height)s pixels; a photo needs at least %(min)s "
                            "pixels on each side.") % {"width": img.width, "height": img.height,
                                                       "min": MIN_IMAGE_SIDE},
                    code="too_small",
                )
            if fmt == "BMP" and img.info.get("compression") in (1, 2):  # Pillow decodes RLE in Python
                raise ValidationError(gettext("Compressed (RLE) BMP images are not supported; send JPEG, "
                                              "PNG, GIF, WebP, HEIC, AVIF or an uncompressed BMP."),
                                      code="format")
            width, height = img.size
            decoded = drafted(img, THUMBNAIL_SIZE)  # (the smallest scale that still covers the thumbnail)
            if fmt == "HEIF":  # libheif decodes the whole coded picture (apart, below)
                decoded = max(decoded, coded, key=area)
            with DECODING.decoding(area(decoded)):
                if fmt == "HEIF":  # its boxes checked: its pixels are decoded apart, as an AVIF's, the
                    # budget held here from then until its JPEG and thumbnail are made (not asked twice)
                    img = decoded_apart(data, "HEIF", area(coded), held=True)
                turned = orientation(img)  # (decoded first)
                if turned in (5, 6, 7, 8):  # shown turned a quarter
                    width, height = height, width
                if fmt in STORED_AS_JPEG:  # (before the thumbnail shrinks it)
                    if area(img.size) > settings.MAX_IMAGE_PIXELS:  # decoded larger than it said
                        raise too_large_to_decode()
                    width, height = img.size  # as decoded: upright already
                    converted = as_jpeg(img)
                display = None
                if turned in TURNS and fmt not in ("JPEG", "MPO", *STORED_AS_JPEG) and (
                        max(img.size) <= DISPLAY_SIZE):
                    # Stored sideways with a tag that only JPEG's has every browser obey (Chromium
                    # shows a WebP as stored): its page shows an upright copy, made from the
                    # pixels decoded whole here. (A larger one gets its copy as ever, services.photo_display.)
                    display = make_display(img)
                thumbnail = make_thumbnail(img)
            if fmt not in STORED_AS_JPEG:  # (the decoding budget given back first: no pixels here)
                converted = stored_without_metadata(data, fmt, turned)
    except ValidationError:
        raise
    except Image.DecompressionBombError as exc:
        raise too_large_to_decode() from exc
    except (UnidentifiedImageError, SyntaxError) as exc:
        other = format_of(upload) if isinstance(exc, UnidentifiedImageError) else None
        if other:
            raise ValidationError(gettext("%(format)s images are not supported; send %(formats)s.") % {
                "format": other, "formats": formats_taken()}, code="format") from exc
        raise ValidationError(gettext("The file is not an image we can read."), code="not_image") from exc
    # Pillow raises ValueError for some corrupt chunks, pillow-heif RuntimeError (libheif's errors)
    except (OSError, ValueError, EOFError, RuntimeError) as exc:
        raise ValidationError(gettext("The image is truncated or corrupt."), code="corrupt") from exc
    finally:
        upload.seek(0)
    return CheckedImage(ALLOWED_FORMATS[fmt], sha256, thumbnail, width, height, converted, display)


def too_large_to_decode() -> ValidationError:
    """A picture that would take far more memory or time to decode than its size says."""
    return ValidationError(gettext("The image is too large to decode safely."), code="bomb")


def too_many_pixels(size: tuple[int, int]) -> ValidationError:
    return ValidationError(gettext("The image is %(width)s×%(height)s pixels; at most %(megapixels)s "
                                   "megapixels are accepted.") % {
                               "width": size[0], "height": size[1],
                               "megapixels": settings.MAX_IMAGE_PIXELS // 1_000_000},
                           code="too_many_pixels")


def is_avif(data: bytes) -> bool:
    """Whether a file says it is an AVIF: its first box ('ftyp') names the AVIF brands, as libavif
    asks, with a main brand Pillow's AVIF reader takes."""
    size = int.from_bytes(data[:4], "big")
    if data[4:8] != b"ftyp" or data[8:12] not in (b"avif", b"avis", b"mif1", b"msf1"):
        return False
    brands = {data[at:at + 4] for at in range(16, min(size, len(data)) - 3, 4)} | {data[8:12]}
    return bool(brands & {b"avif", b"avis"})


def avif_refusal(data: bytes) -> ValidationError | None:
    """Why an AVIF is refused before it is decoded, if it is: more items (or references, or
    properties' entries) than AVIF_MAX_ITEMS, pictures whose data add up to more than the file (a
    tile's coded bytes drawn again and again), or a picture ('ispe') or grid canvas of more pixels
    than we take (libavif decodes the whole canvas before scaling it to the size it reports). Read
    from the file's boxes where libavif reads them; what they may not say (an AV1 stream larger
    than its 'ispe') is left to the limits of the process that decodes it."""
    for meta, meta_end in heif_boxes(data, 0, len(data), b"meta"):
        start, counts, placed = meta + 4, [], 0  # (after its version and flags)
        idat = next(heif_boxes(data, start, meta_end, b"idat"), (meta_end, meta_end))
        for iinf, iinf_end in heif_boxes(data, start, meta_end, b"iinf"):
            counts.append(heif_iinf_count(data, iinf, iinf_end)[0])
        for iloc, iloc_end in heif_boxes(data, start, meta_end, b"iloc"):
            id_size = 4 if data[iloc:iloc + 1] == b"\2" else 2
            counts.append(int.from_bytes(data[iloc + 6:min(iloc + 6 + id_size, iloc_end)], "big"))
            for _, method, pieces in heif_iloc_entries(data, iloc, iloc_end, AVIF_MAX_ITEMS):
                if pieces is None:  # (more extents than an encoder writes: 1)
                    return too_large_to_decode()
                origin, limit = idat if method == 1 else (0, len(data))
                # (what a file cut short lacks is not counted: libavif finds it corrupt)
                placed += sum(min(length or len(data), max(0, limit - origin - at)) for at, length in pieces)
        for iprp, iprp_end in heif_boxes(data, start, meta_end, b"iprp"):
            for ipma, ipma_end in heif_boxes(data, iprp, iprp_end, b"ipma"):
                counts.append(int.from_bytes(data[ipma + 4:min(ipma + 8, ipma_end)], "big"))
        for iref, iref_end in heif_boxes(data, start, meta_end, b"iref"):
            id_size = 2 if data[iref:iref + 1] == b"\0" else 4
            references = []
            for ref, ref_end in heif_boxes(data, iref + 4, iref_end, None):
                references.append(int.from_bytes(data[ref + id_size:min(ref + id_size + 2, ref_end)], "big"))
                if len(references) > AVIF_MAX_ITEMS:
                    break
            counts += [len(references), sum(references)]
        if max(counts, default=0) > AVIF_MAX_ITEMS or placed > len(data):
            return too_large_to_decode()
    coded = heif_coded_size(data)
    return too_many_pixels(coded) if area(coded) > settings.MAX_IMAGE_PIXELS else None


def decoded_apart(data: bytes, fmt: str, pixels: int, *, held: bool = False) -> Image.Image:
    """An AVIF's or a HEIC's (`fmt`: "AVIF" or "HEIF") first picture, upright (libheif turns a HEIC
    as it decodes), with its colour profile, decoded in a process of its own that may take
    DECODE_BYTES_ANY and DECODE_BYTES_A_PIXEL of `pixels`, at most DECODE_BYTES
    (classifier.isolated_decode: libavif and libheif decode whatever size the coded
    picture or grid says before scaling or cropping it to the size they report). Refuses, as for the
    other formats, a picture of more pixels than we take (before decoding it), one that needs more
    than that memory or time (the process killed by its limits among them), and as corrupt a file
    that libavif or libheif cannot read (an AVIF cut short reads as no AVIF at all). An AVIF's boxes
    are checked first (avif_refusal); a HEIC's were, by the caller (heif_decoded_size). `pixels`
    of the DECODING budget are held meanwhile, unless the caller holds them (`held`: until it is done
    with the picture's pixels)."""
    refusal = avif_refusal(data) if fmt == "AVIF" else None
    if refusal:
        raise refusal
    cap = min(DECODE_BYTES, DECODE_BYTES_ANY + DECODE_BYTES_A_PIXEL * pixels)
    command = [sys.executable, "-m", "classifier.isolated_decode", fmt, str(settings.MAX_IMAGE_PIXELS),
               str(cap), str(DECODE_CPU_SECONDS)]
    with DECODING.decoding(0 if held else pixels):
        try:
            # (glibc's memory arena for each of libheif's 4 decoding threads takes 64 MB of the address
            # space the cap counts: a 40-megapixel grid HEIC held 1 GB, within 100 MB of it; 570 MB so)
            done = subprocess.run(command, input=data, capture_output=True, timeout=DECODE_SECONDS,
                                  cwd=settings.BASE_DIR, env={**os.environ, "MALLOC_ARENA_MAX": "2"},
                                  check=False)
        except subprocess.TimeoutExpired as exc:
            raise too_large_to_decode() from exc
        # killed at its limit of processor time (SIGKILL: its soft limit is its hard one), or by the
        # kernel short of memory (its cap itself only refuses allocations)
        if done.returncode in (-signal.SIGKILL, -signal.SIGXCPU):
            raise too_large_to_decode()
        if done.returncode != 0:  # (a crash, or a process that cannot start here: every such file fails)
            log.warning("decoding a %s apart failed (exit status %s): %s", fmt, done.returncode,
                        done.stderr[-1000:].decode(errors="replace"))
        line = done.stdout.find(b"\n") + 1
        said = json.loads(done.stdout[:line]) if done.returncode == 0 and line else {"refused": "corrupt"}
        raw = memoryview(done.stdout)[line:]  # (not copied: 160 MB at 40 megapixels)
        if said.get("refused") == "too_many_pixels":
            raise too_many_pixels(said["size"])
        if said.get("refused") == "bomb":
            raise too_large_to_decode()
        # (a HEIC may be grey, of 8 or 16 bits: "L", "I;16"; a mode Pillow lacks raises: corrupt too)
        pixel = len(Image.new(said["mode"], (1, 1)).tobytes()) if "mode" in said else 0
        if said.get("refused") or len(raw) != area(said["size"]) * pixel:
            raise ValidationError(gettext("The image is truncated or corrupt."), code="corrupt")
        img = Image.frombytes(said["mode"], tuple(said["size"]), raw)
        raw.release()
        del done
        turn = TURNS.get(said["orientation"])
        img = img.transpose(turn) if turn is not None else img
    img.format = fmt
    if said["icc"]:
        img.info["icc_profile"] = bytes.fromhex(said["icc"])
    return img


def stored_without_metadata(data: bytes, fmt: str, turned: int) -> ContentFile | None:
    """What to store of the file `data` instead of itself: the file without its metadata (where the
    photo was taken, the camera, an editor's notes), or None if it has none."""
    bare = metadata.without_metadata(data, fmt, turned)
    return ContentFile(bare) if bare != data else None


def sha256_of(upload: UploadedFile) -> str:
    """The SHA-256 of the file as sent (read in chunks; left at its start)."""
    digest = hashlib.sha256()
    for chunk in upload.chunks():
        digest.update(chunk)
    upload.seek(0)
    return digest.hexdigest()


def format_of(upload: UploadedFile) -> str | None:
    """The format Pillow would take a file we do not take for, to name it in the refusal; None if
    none (any reader's error on a broken file included)."""
    upload.seek(0)
    try:
        with Image.open(upload) as img:
            return img.format
    except Exception:  # noqa: BLE001 - only the name was wanted
        return None


def heif_decoded_size(data: bytes, img: Image.Image) -> tuple[int, int]:
    """The largest picture libheif may decode for a HEIF file: what its 'ispe' boxes declare, or the
    size its crop is cut from. Every picture of a HEIF file has an 'ispe': one not found where libheif
    reads it is refused, as libheif would decode whatever size the picture's stream says."""
    coded = heif_coded_size(data)
    if coded == (0, 0):
        raise too_large_to_decode()
    return max(coded, heif_uncropped_size(img), key=area)


def heif_coded_size(data: bytes) -> tuple[int, int]:
    """The largest picture a HEIF file's 'ispe' boxes, or its grids' and overlays' canvases, declare
    ((0, 0) if a canvas's size is not found): libheif decodes that whole, before
    cropping it to the size it reports (its clean aperture, 'clap'), which may be far smaller. The
    boxes are read where libheif reads them (meta, iprp, ipco), each as libheif reads it: its size
    may also be 0 (to the end of its container), 1 (a 64-bit size follows) or more than its fields
    need. (Not found by searching the bytes: 'ispe' also occurs in the coded picture, or in a word of
    its metadata, "whisper", with any numbers after it.)"""
    largest = (0, 0)
    for meta, meta_end in heif_boxes(data, 0, len(data), b"meta"):
        for iprp, iprp_end in heif_boxes(data, meta + 4, meta_end, b"iprp"):  # (after its version and flags)
            for ipco, ipco_end in heif_boxes(data, iprp, iprp_end, b"ipco"):
                for ispe, ispe_end in heif_boxes(data, ipco, ipco_end, b"ispe"):
                    if ispe_end - ispe >= 12:  # version and flags, width, height
                        found = (int.from_bytes(data[ispe + 4:ispe + 8], "big"),
                                 int.from_bytes(data[ispe + 8:ispe + 12], "big"))
                        largest = max(largest, found, key=area)
        canvases = heif_canvas_sizes(data, meta + 4, meta_end)
        if canvases is None:
            return (0, 0)
        largest = max([largest, *canvases], key=area)
    return largest


def heif_canvas_sizes(data: bytes, start: int, end: int) -> list[tuple[int, int]] | None:
    """The sizes of the canvases of a HEIF file's tiled ('grid') and overlaid ('iovl') pictures, read
    from the meta box's contents data[start:end]; None if one's data is not found. libheif draws the
    tiles into the whole canvas their data declares, checking it against their 'ispe' only after (a
    file of 2 KB declaring 22528x22528, drawn from a 2048x2048 tile, took 1.5 GB)."""
    derived = {}  # item id: its type
    for iinf, iinf_end in heif_boxes(data, start, end, b"iinf"):
        for infe, infe_end in heif_boxes(data, heif_iinf_count(data, iinf, iinf_end)[1], iinf_end, b"infe"):
            if data[infe:infe + 1] in (b"\2", b"\3"):  # (earlier versions name no item type)
                at = infe + (8 if data[infe] == 2 else 10)  # after its version, flags, id, protection
                if data[at:at + 4] in (b"grid", b"iovl") and at + 4 <= infe_end:
                    derived[int.from_bytes(data[infe + 4:at - 2], "big")] = data[at:at + 4]
    if not derived:
        return []
    stored = heif_item_data(data, start, end, set(derived))
    sizes = []
    for item, kind in derived.items():
        for blob in stored.get(item, [b""]):
            field = 4 if len(blob) > 1 and blob[1] & 1 else 2  # (flag 1: 32-bit sizes)
            at = 4 if kind == b"grid" else 10  # after the rows and columns, or the fill colour
            if len(blob) < at + 2 * field:
                return None
            sizes.append((int.from_bytes(blob[at:at + field], "big"),
                          int.from_bytes(blob[at + field:at + 2 * field], "big")))
    return sizes


def heif_iinf_count(data: bytes, iinf: int, iinf_end: int) -> tuple[int, int]:
    """The number of items the 'iinf' box data[iinf:iinf_end] says it lists, and where its first
    entry starts (after its version, flags and that count: 2 bytes in version 0, else 4)."""
    first = iinf + (6 if data[iinf:iinf + 1] == b"\0" else 8)
    return int.from_bytes(data[iinf + 4:min(first, iinf_end)], "big"), first


def heif_item_data(data: bytes, start: int, end: int, items: set[int]) -> dict[int, list[bytes]]:
    """The first bytes of the data of the given items, as the 'iloc' boxes in data[start:end] (a meta
    box's contents) place them: in the file, or in its 'idat' box (construction methods 0 and 1, the
    ones libheif reads); an item's extents joined, in a list for each time it is placed."""
    idat = next(heif_boxes(data, start, end, b"idat"), (end, end))
    found: dict[int, list[bytes]] = {}
    for iloc, iloc_end in heif_boxes(data, start, end, b"iloc"):
        for item, method, pieces in heif_iloc_entries(data, iloc, iloc_end):
            if pieces is None:
                break
            origin, limit = idat if method == 1 else (0, len(data))
            blob = b"".join(data[origin + at:min(origin + at + (length or 64), limit)][:64]
                            for at, length in pieces)
            if item in items and method in (0, 1):
                found.setdefault(item, []).append(blob)
    return found


def heif_iloc_entries(data: bytes, iloc: int, iloc_end: int, max_items: int = HEIF_MAX_ITEMS
                      ) -> Iterator[tuple[int, int, list[tuple[int, int]] | None]]:
    """The entries of the 'iloc' box data[iloc:iloc_end]: (item, construction method, its extents as
    (offset from the data's origin, length; 0: to its end)). None at all for a box of more than
    `max_items` entries; an entry of more than HEIF_MAX_EXTENTS extents (libheif's limits: it refuses
    the file) as (item, method, None), and none after it, nor after one cut off by the box's end."""
    version, sizes = data[iloc:iloc + 1], data[iloc + 4:iloc + 6]
    if len(sizes) < 2:
        return
    offset_size, length_size, base_size = sizes[0] >> 4, sizes[0] & 15, sizes[1] >> 4
    index_size = sizes[1] & 15 if version in (b"\1", b"\2") else 0
    if not {offset_size, length_size, base_size, index_size} <= {0, 4, 8}:
        return  # (the format's only sizes; libheif reads a field of another size as none)
    fields = io.BytesIO(data[iloc + 6:iloc_end])
    id_size = 4 if version == b"\2" else 2
    try:
        count = stored_number(fields, id_size)
        if count > max_items:
            return
        for _ in range(count):
            item = stored_number(fields, id_size)
            method = stored_number(fields, 2) & 15 if version in (b"\1", b"\2") else 0
            stored_number(fields, 2)  # (its data reference: the file itself)
            base = stored_number(fields, base_size)
            extents = stored_number(fields, 2)
            if extents > HEIF_MAX_EXTENTS:
                yield item, method, None
                return
            pieces = []
            for _ in range(extents):
                stored_number(fields, index_size)
                offset, length = stored_number(fields, offset_size), stored_number(fields, length_size)
                pieces.append((base + offset, length))
            yield item, method, pieces
    except EOFError:
        return


def stored_number(fields: io.BytesIO, size: int) -> int:
    """The next `size`-byte big-endian number of a box's fields (size 0: none, 0)."""
    read = fields.read(size)
    if len(read) < size:
        raise EOFError
    return int.from_bytes(read, "big")


def heif_boxes(data: bytes, start: int, end: int, kind: bytes | None) -> Iterator[tuple[int, int]]:
    """Where the contents of the boxes of type `kind` (None: any) in data[start:end] start and end (a box that
    does not fit in its container ends the list: nothing after it is read as a box)."""
    at = start
    while at + 8 <= end:
        size, header = int.from_bytes(data[at:at + 4], "big"), 8
        if size == 1:
            size, header = int.from_bytes(data[at + 8:at + 16], "big"), 16
        elif size == 0:
            size = end - at
        if size < header or at + size > end:
            return
        if kind is None or data[at + 4:at + 8] == kind:
            yield at + header, at + size
        at += size


def heif_uncropped_size(img: Image.Image) -> tuple[int, int]:
    """The size libheif crops a HEIF picture from, as libheif reads its 'clap' (pillow-heif's
    transformations: left, top, right and bottom borders, then that size); (0, 0) without a crop.
    A crop with no 'ispe' to measure it by is of a picture decoded whatever size its stream says
    (libheif checks the decoded size against its 'ispe' only): refused as a bomb."""
    image = img._heif_file[img.tell()]  # noqa: SLF001 - pillow-heif keeps libheif's reading there
    uncropped = [tuple(step[5:7]) for step in image._c_image.transformations if step[0] == "clap"]  # noqa: SLF001
    if any(0 in size for size in uncropped):
        raise too_large_to_decode()
    return max(uncropped, default=(0, 0), key=area)


def drafted(img: Image.Image, side: int) -> tuple[int, int]:
    """Let a JPEG decode at the smallest scale that still covers `side` on its long side; the size
    of the picture its decoding holds: that reduced one, or the full one for a progressive JPEG
    (every coefficient of the full picture is kept) and for the other formats."""
    full = img.size
    if img.format in ("JPEG", "MPO"):
        img.draft("RGB", fitted(img.size, side))
        if not img.info.get("progressive"):
            return img.size
    return full


def fitted(size: tuple[int, int], side: int) -> tuple[int, int]:
    """The size of a picture of `size` within a square of `side`: never enlarged."""
    scale = min(1.0, side / max(size))
    return max(1, round(size[0] * scale)), max(1, round(size[1] * scale))


def make_display(img: Image.Image) -> ContentFile:
    """The copy a photo's page shows: upright, its colour profile kept, at least DISPLAY_SIZE on its
    long side and less than twice that. It is shrunk by a whole factor (averaging blocks of pixels)
    and not resampled to DISPLAY_SIZE exactly: resampling a phone's photo took 50 to 80 ms, where
    all of this takes 40 (bench/README.md). One still over 1.25 times DISPLAY_SIZE (no whole factor,
    nor a JPEG's reduced decoding, brought it to 2000 px, as they do a phone's 4000 px photo) is
    resampled to DISPLAY_SIZE: kept whole, a photo of 3199 px was a copy of 740 KB, where 250 KB
    shows as much (110 ms more, once per photo)."""
    factor = max(img.size) // DISPLAY_SIZE  # (a JPEG decoded at a reduced scale may need none)
    rgb = to_rgb(img)  # (first: reduce() takes neither 16-bit greys nor palettes)
    shown = rgb.reduce(factor) if factor > 1 else rgb
    if max(shown.size) > 1.25 * DISPLAY_SIZE:  # (also after a reduce: a PNG of 4001 to 4799 px)
        shown = shown.resize(fitted(shown.size, DISPLAY_SIZE), Image.Resampling.BICUBIC)
    shown.info = img.info  # the orientation
    buffer = io.BytesIO()
    upright(shown).save(buffer, "JPEG", quality=85, icc_profile=rgb_profile(img))
    return ContentFile(buffer.getvalue())


def as_jpeg(img: Image.Image) -> ContentFile:
    """The picture as a JPEG a browser shows: upright, full size, its colour profile (a phone's is
    Display P3) but no other metadata."""
    buffer = io.BytesIO()
    to_rgb(upright(img)).save(buffer, "JPEG", quality=92, icc_profile=rgb_profile(img))
    return ContentFile(buffer.getvalue())


def make_thumbnail(img: Image.Image) -> ContentFile:
    """A small upright JPEG for galleries (transparency on white); shrinks `img` in place."""
    # (Pillow's reduce() takes no 16-bit greys: they are resized in one step)
    img.thumbnail((THUMBNAIL_SIZE, THUMBNAIL_SIZE), reducing_gap=None if img.mode.startswith("I;16") else 2.0)
    small = to_rgb(upright(img))  # after shrinking: the box is square
    buffer = io.BytesIO()
    small.save(buffer, "JPEG", quality=85)
    return ContentFile(buffer.getvalue())


# What reading a stored photo's file again may raise: gone or refused by the disk, or damaged.
STORED_FILE_UNREADABLE = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)
