"""A user's own data as one zip file, streamed as it is written (a thousand phone photos are
gigabytes): their photos as stored, named after the files they uploaded, with `photos.json` (each
photo as the API shows it: its results and the answer given, and which file in the archive it is)
and `account.json`. The website's account page and the API both send it."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterator

from django.http import HttpRequest, StreamingHttpResponse
from django.utils import timezone
from django.utils.http import content_disposition_header

from classifier import files, selectors

CHUNK = 1 << 20


class Pending(io.RawIOBase):
    """A write-only file whose bytes wait to be taken: zipfile writes into it, the response sends
    what it took."""

    def __init__(self):
        self.parts: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self.parts.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        data, self.parts = b"".join(self.parts), []
        return data


def archive_name(photo) -> str:
    """Where the photo goes in the archive: its id (unique), then the name it is saved under."""
    return f"photos/{photo.pk}-{files.file_name(photo)}"


def account_archive(request: HttpRequest) -> Iterator[bytes]:
    """The zip of the signed-in user's data, a piece at a time."""
    from classifier.api.serializers import PhotoSerializer

    user, pending, described = request.user, Pending(), []
    with zipfile.ZipFile(pending, "w", zipfile.ZIP_STORED) as archive:
        for photo in selectors.own_photos(user).iterator(chunk_size=200):
            name = archive_name(photo)
            try:
                with photo.image.open("rb") as source, archive.open(name, "w", force_zip64=True) as target:
                    while chunk := source.read(CHUNK):
                        target.write(chunk)
                        yield pending.take()
            except FileNotFoundError:  # deleted meanwhile, or lost from the disk: described without it
                name = None
            described.append({**PhotoSerializer(photo, context={"request": request}).data, "file": name})
            yield pending.take()
        archive.writestr("photos.json", json.dumps(described, indent=2, ensure_ascii=False))
        archive.writestr("account.json", json.dumps({
            "username": user.get_username(), "email": user.email,
            "date_joined": user.date_joined.isoformat(), "exported": timezone.now().isoformat(),
            "photos": len(described)}, indent=2, ensure_ascii=False))
    yield pending.take()


def account_archive_response(request: HttpRequest) -> StreamingHttpResponse:
    day = timezone.localdate()
    response = StreamingHttpResponse(account_archive(request), content_type="application/zip")
    response["Content-Disposition"] = content_disposition_header(
        True, f"cakesite-{request.user.get_username()}-{day:%Y-%m-%d}.zip")
    response["Cache-Control"] = "private, no-store"
    return response
