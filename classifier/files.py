"""A photo's files (the photo, the copy its page shows, its thumbnail, its heat map) as HTTP
answers: the website's and the API's views both serve them with this, to whoever
`selectors.photo_for_user` lets through."""

from __future__ import annotations

import logging
import re
from pathlib import PurePath

from django.http import FileResponse, Http404
from django.utils.translation import gettext

from classifier import images, selectors, services
from classifier.models import Photo

log = logging.getLogger(__name__)


def photo_file_response(photo: Photo, kind: str) -> FileResponse:
    """`kind` ("image", "display", "thumbnail" or "heatmap") of `photo`, private to its viewer; 404
    if there is none (yet). The photo and its display copy are named, saved from a browser, after
    the file uploaded."""
    name = ""  # (a thumbnail or a heat map: the stored file's name)
    if kind == "heatmap":
        prediction = selectors.latest_prediction(photo)
        if prediction is None or not prediction.heatmap:
            raise Http404(gettext("This photo has no heat map."))
        field, content_type = prediction.heatmap, "image/png"
    elif kind == "thumbnail" and photo.thumbnail:
        field, content_type = photo.thumbnail, "image/jpeg"
    elif kind == "display" and services.photo_display(photo).display:  # (else the photo itself)
        field, content_type, name = photo.display, "image/jpeg", file_name(photo, "jpg")
    else:
        field, content_type, name = photo.image, images.CONTENT_TYPES[photo.image_format], file_name(photo)
    try:
        opened = field.open("rb")
    except FileNotFoundError:  # deleted between reading its row and opening it, or lost from the disk
        if selectors.photo_state(photo.pk) is not None:  # still there: its file is lost (a restore?)
            log.error("photo %s: its %s file %s is missing", photo.pk, kind, field.name)
        raise Http404(gettext("This photo is gone.")) from None
    response = FileResponse(opened, content_type=content_type, filename=name)
    response["Cache-Control"] = "private, max-age=86400"
    response["X-Content-Type-Options"] = "nosniff"
    return response


def file_name(photo: Photo, extension: str | None = None) -> str:
    """The name a photo's file is saved under: the name of the file uploaded, with the extension of
    the file stored (a HEIC is stored as a JPEG), and without characters file systems refuse."""
    stem = re.sub(r"[\x00-\x1f\\/:*?\"<>|]+", "_", PurePath(photo.original_name).stem).strip(" .")[:100]
    return f"{stem or f'photo-{photo.pk}'}.{extension or photo.image_format}"
