"""A user's own data as one zip file, streamed as it is written (a thousand phone photos are
gigabytes): their photos as stored, named after the files they uploaded, with `photos.json` (each
photo as the API shows it: its results and the answer given, and which file in the archive it is)
and `account.json`. The website's account page and the API both send it."""

from __future__ import annotations

import io
import json
import logging
import tempfile
import zipfile
from collections.abc import Iterator

from django.core.cache import cache
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.utils import timezone
from django.utils.http import content_disposition_header
from django.utils.translation import gettext_lazy
from rest_framework.fields import DateTimeField

from classifier import files, selectors
from classifier.middleware import refusal

log = logging.getLogger(__name__)

CHUNK = 1 << 20
BATCH = 200  # photos read, and described, at a time


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


class Locked:
    """The archive's pieces, for a response that gives `lock` back when it is closed: the download
    done, or its client gone (before the first piece too)."""

    def __init__(self, chunks: Iterator[bytes], lock: str):
        self.chunks, self.lock = chunks, lock

    def __iter__(self) -> Iterator[bytes]:
        return self.chunks

    def close(self) -> None:
        self.chunks.close()
        cache.delete(self.lock)


def entry(name: str, when, zone) -> zipfile.ZipInfo:
    """An archive entry dated `when` as a clock in `zone` showed it (zip keeps local times; without
    one, a photo would unpack as of 1 January 1980)."""
    return zipfile.ZipInfo(name, date_time=timezone.localtime(when, zone).timetuple()[:6])


def account_archive(request: HttpRequest, lock: str, zone) -> Iterator[bytes]:
    """The zip of the signed-in user's data, a piece at a time, holding `lock` (in the cache, taken
    by `account_archive_response`) a while longer at each photo, its entries dated in `zone` (the
    visitor's: the body is written after the request's own zone is undone). The photos are read
    BATCH at a time, by id: no query stays open while the client downloads (an open read keeps
    SQLite's writers out). Each photo's description goes to a temporary file as text at once, for
    `photos.json` at the end: thirty thousand of them kept as the serializer's objects took 1.5 GB."""
    from classifier.api.serializers import PhotoSerializer

    user, pending, count, now = request.user, Pending(), 0, timezone.now()
    ids = list(selectors.own_photos(user).values_list("pk", flat=True))
    with (zipfile.ZipFile(pending, "w", zipfile.ZIP_STORED) as archive,
          tempfile.SpooledTemporaryFile(max_size=CHUNK, mode="w+", encoding="utf-8") as described):
        described.write("[")
        for start in range(0, len(ids), BATCH):
            photos = list(selectors.own_photos(user).filter(pk__in=ids[start:start + BATCH]))
            shown = PhotoSerializer(photos, many=True, context={"request": request}).data
            for photo, fields in zip(photos, shown):
                name = archive_name(photo)
                try:
                    with (photo.image.open("rb") as source,
                          archive.open(entry(name, photo.created, zone), "w") as target):
                        while chunk := source.read(CHUNK):
                            target.write(chunk)
                            yield pending.take()
                except OSError as exc:  # deleted meanwhile, or the disk's: described without it
                    log.warning("export of %s: photo %s without its file: %s", user.pk, photo.pk, exc)
                    name = None
                described.write(("," if count else "") + "\n" + json.dumps(
                    {**fields, "file": name}, indent=2, ensure_ascii=False))
                count += 1
                cache.touch(lock, LOCK_S)
                yield pending.take()
        described.write("\n]\n" if count else "]\n")
        described.seek(0)
        with archive.open(entry("photos.json", now, zone), "w") as target:  # a piece at a time
            while text := described.read(CHUNK):
                target.write(text.encode())
                yield pending.take()
        when = DateTimeField().to_representation  # as photos.json writes its times (UTC, with Z)
        archive.writestr(entry("account.json", now, zone), json.dumps({
            "username": user.get_username(), "email": user.email,
            "language": selectors.account_language(user),
            "date_joined": when(user.date_joined), "exported": when(now),
            "photos": count}, indent=2, ensure_ascii=False))
    yield pending.take()


LOCK_S = 15 * 60  # an export whose process died frees its user this long after its last photo
ALREADY = gettext_lazy("An export of your data is being downloaded already; wait until it is done (one at "
                       "a time: each keeps part of the server busy for as long as the download takes).")


def account_archive_response(request: HttpRequest) -> HttpResponse | StreamingHttpResponse:
    """The zip as a download; a 429 while the same user downloads one already."""
    lock = f"export:{request.user.pk}"
    if not cache.add(lock, 1, timeout=LOCK_S):
        response = refusal(request, 429, "throttled", str(ALREADY), "429.html")
        response["Retry-After"] = "60"
        return response
    day = timezone.localdate()
    archive = Locked(account_archive(request, lock, timezone.get_current_timezone()), lock)
    response = StreamingHttpResponse(archive, content_type="application/zip")
    response["Content-Disposition"] = content_disposition_header(
        True, f"cakesite-{request.user.get_username()}-{day:%Y-%m-%d}.zip")
    response["Cache-Control"] = "private, no-store"
    return response
