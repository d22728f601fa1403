"""A user takes all their data away: the website's account page and the API give the same zip."""

import io
import json
import zipfile
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.signals import request_finished
from django.db import close_old_connections
from rest_framework.test import APIClient

from classifier import services
from tests.conftest import api_token, make_photo, sample_photo

pytestmark = pytest.mark.django_db


def archive_of(response) -> zipfile.ZipFile:
    return zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))


@pytest.fixture
def photos(user, other_user, enqueued):
    """Two of the user's photos (one answered, one a HEIC from a phone), and someone else's."""
    from tests.test_upload import heic

    lapis = make_photo(user, "done", "kue_lapis")
    type(lapis).objects.filter(pk=lapis.pk).update(original_name='lapis legit: ibu "enak".png')
    services.feedback_record(photo=lapis, user=user, label="kue_lumpur")
    phone = services.photo_create(owner=user, upload=SimpleUploadedFile(
        "IMG_0042.HEIC", heic(sample_photo("kue_dadar_gulung"))))
    theirs = make_photo(other_user, "done", "kue_klepon")
    return lapis, phone, theirs


def test_a_user_downloads_their_photos_and_answers_as_one_zip(client, user, photos):
    lapis, phone, theirs = photos
    services.account_language_set(user, "id")
    client.force_login(user)

    assert 'href="/accounts/export/"' in client.get("/accounts/").content.decode()
    response = client.get("/accounts/export/")

    assert response.status_code == 200 and response["Content-Type"] == "application/zip"
    assert response["Content-Disposition"].startswith('attachment; filename="cakesite-ayu-')
    archive = archive_of(response)
    described = json.loads(archive.read("photos.json"))
    assert [entry["id"] for entry in described] == [lapis.pk, phone.pk]  # not someone else's
    assert [entry["file"] for entry in described] == [
        f"photos/{lapis.pk}-lapis legit_ ibu _enak_.png", f"photos/{phone.pk}-IMG_0042.jpg"]
    assert described[0]["prediction"]["label"] == "kue_lapis"
    assert described[0]["feedback"]["label"] == "kue_lumpur" and described[0]["feedback"]["user"] == "ayu"
    assert described[1]["status"] == "queued" and described[1]["original_name"] == "IMG_0042.HEIC"
    for photo, entry in zip((lapis, phone), described):
        with photo.image.open("rb") as stored:
            assert archive.read(entry["file"]) == stored.read()
    shown = client.get(f"/photos/{phone.pk}/image/")  # one photo on its own, saved from the browser
    assert shown["Content-Disposition"] == 'inline; filename="IMG_0042.jpg"'
    account = json.loads(archive.read("account.json"))
    assert account["username"] == "ayu" and account["photos"] == 2 and account["language"] == "id"
    for written in (account["date_joined"], account["exported"], described[0]["created"]):
        assert written.endswith("Z")  # one way of writing a time, in both files
    assert sorted(archive.namelist()) == sorted([*(entry["file"] for entry in described),
                                                 "photos.json", "account.json"])


def test_the_archives_files_are_dated_as_the_visitors_clock_showed_their_upload(client, user, photos):
    """Unpacked, a photo carries the time it was uploaded, in the visitor's time zone (zip keeps
    local times), not 1 January 1980; photos.json and account.json the time of the export."""
    import zoneinfo
    from datetime import datetime, timedelta

    from django.utils import timezone

    lapis, phone, _ = photos
    uploaded = datetime(2026, 12, 6, 23, 30, 8, tzinfo=zoneinfo.ZoneInfo("UTC"))
    type(lapis).objects.filter(pk=lapis.pk).update(created=uploaded)
    client.force_login(user)
    client.cookies["tz"] = "Asia/Jakarta"

    archive = archive_of(client.get("/accounts/export/"))

    dated = {info.filename: datetime(*info.date_time) for info in archive.infolist()}
    assert dated[f"photos/{lapis.pk}-lapis legit_ ibu _enak_.png"] == datetime(2026, 12, 7, 6, 30, 8)
    jakarta_now = timezone.localtime(timezone.now(), zoneinfo.ZoneInfo("Asia/Jakarta")).replace(tzinfo=None)
    for name in ("photos.json", "account.json", f"photos/{phone.pk}-IMG_0042.jpg"):
        assert abs(dated[name] - jakarta_now) < timedelta(minutes=1), name


def test_the_api_gives_the_same_archive_to_a_token_and_nothing_without_one(user, photos):
    api = APIClient()
    assert api.get("/api/account/export/").status_code == 401
    api.credentials(HTTP_AUTHORIZATION=f"Token {api_token(user)}")

    response = api.get("/api/account/export/", HTTP_ACCEPT="application/zip")

    assert response.status_code == 200 and response["Content-Type"] == "application/zip"
    assert len(json.loads(archive_of(response).read("photos.json"))) == 2


def test_a_photo_whose_file_is_gone_is_described_without_it(client, user, photos):
    lapis, phone, _ = photos
    Path(lapis.image.path).unlink()
    client.force_login(user)

    archive = archive_of(client.get("/accounts/export/"))

    described = json.loads(archive.read("photos.json"))
    assert [(entry["id"], entry["file"]) for entry in described][0] == (lapis.pk, None)
    assert described[1]["file"] == f"photos/{phone.pk}-IMG_0042.jpg"
    assert archive.testzip() is None


def test_visitors_are_sent_to_the_login_page(client):
    response = client.get("/accounts/export/")

    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")


def test_one_export_at_a_time_per_user_each_keeps_part_of_the_server_busy(client, user, other_user, photos):
    client.force_login(user)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {api_token(user)}")
    theirs = APIClient()
    theirs.force_authenticate(other_user)

    downloading = client.get("/accounts/export/")  # (its download has not ended)
    again, by_api = client.get("/accounts/export/"), api.get("/api/account/export/")

    assert again.status_code == 429 and again["Retry-After"] == "60"
    assert "An export of your data is being downloaded already" in again.content.decode()
    assert by_api.status_code == 429 and by_api.json()["error"]["code"] == "throttled"
    assert theirs.get("/api/account/export/").status_code == 200  # someone else's is theirs
    b"".join(downloading.streaming_content)  # done
    left = client.get("/accounts/export/")
    assert left.status_code == 200
    # The client went away before the end: the server closes the response (as the test client does,
    # keeping the test's database connection open), and the next export may start.
    request_finished.disconnect(close_old_connections)
    try:
        left.close()
    finally:
        request_finished.connect(close_old_connections)
    assert client.get("/accounts/export/").status_code == 200


def test_an_account_without_photos_gets_an_archive_that_says_so(client, user):
    client.force_login(user)

    archive = archive_of(client.get("/accounts/export/"))

    assert json.loads(archive.read("photos.json")) == []
    assert json.loads(archive.read("account.json"))["photos"] == 0


def test_names_in_any_script_come_back_as_they_were_given(client, user):
    photo = make_photo(user, "done", "kue_lapis")
    type(photo).objects.filter(pk=photo.pk).update(original_name="kue lapis 千層糕 — ibu’s.png")
    client.force_login(user)

    described = json.loads(archive_of(client.get("/accounts/export/")).read("photos.json"))

    assert described[0]["original_name"] == "kue lapis 千層糕 — ibu’s.png"


def test_photos_read_in_several_batches_are_each_described_once_in_order(client, user, photos, monkeypatch):
    from classifier import exports

    monkeypatch.setattr(exports, "BATCH", 2)
    third = make_photo(user, "done", "kue_klepon")
    client.force_login(user)

    archive = archive_of(client.get("/accounts/export/"))

    described = json.loads(archive.read("photos.json"))
    assert [entry["id"] for entry in described] == [photos[0].pk, photos[1].pk, third.pk]
    assert described[2]["prediction"]["label"] == "kue_klepon" and archive.testzip() is None
