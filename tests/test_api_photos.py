"""The REST API for photos: token auth, upload, read, filter, poll, feedback, delete, errors."""

import os
import threading
import time
import uuid
from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection, connections
from django.http import Http404
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from classifier import images, selectors, services
from classifier.models import ApiToken, Feedback, ModelVersion, Photo
from tests.conftest import api_token, make_photo, png_bytes, sample_photo, services_required, upload_of

pytestmark = pytest.mark.django_db


@pytest.fixture
def api(user):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {api_token(user)}")
    return client


def error_of(response) -> dict:
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"status", "code", "message", "fields"}
    assert body["error"]["status"] == response.status_code
    return body["error"]


def test_a_token_is_obtained_with_username_and_password(user):
    response = APIClient().post("/api/auth/token/", {"username": "ayu", "password": "kue-lapis-2026"})

    assert response.status_code == 200 and response.json()["expires"] is None
    key = response.json()["token"]
    program = APIClient(HTTP_AUTHORIZATION=f"Token {key}")
    assert program.get("/api/photos/").status_code == 200
    assert key.startswith("kue_") and len(key) == 68


def test_each_program_gets_its_own_token_and_signs_only_itself_out(user):
    """Two programs ask with the same password: each gets a token of its own, and one signing out
    (DELETE) leaves the other signed in. The database keeps neither token, only their hashes."""
    asked = {"username": "ayu", "password": "kue-lapis-2026"}
    keys = [APIClient().post("/api/auth/token/", asked).json()["token"] for _program in range(2)]
    laptop, phone = (APIClient(HTTP_AUTHORIZATION=f"Token {key}") for key in keys)

    assert keys[0] != keys[1] and laptop.get("/api/photos/").status_code == 200
    kept = {value for row in ApiToken.objects.values() for value in row.values() if isinstance(value, str)}
    assert not any(key in value or value in key for key in keys for value in kept if len(value) > 15)
    assert laptop.delete("/api/auth/token/").status_code == 204
    assert laptop.get("/api/photos/").status_code == 401
    assert phone.get("/api/photos/").status_code == 200


def test_a_token_header_that_is_no_utf_8_is_a_401_not_a_500(user):
    """knox decodes the header's token without catching the error (DRF's said 401): a client's
    stray byte (a Latin-1 character) was a server error, logged as one."""
    from django.test import Client

    browser = Client(raise_request_exception=False)

    for header in ("Token kue_\xe9t\xe9", "Token kue_\x00t"):  # (NUL: PostgreSQL refused the query)
        response = browser.get("/api/photos/", HTTP_AUTHORIZATION=header)
        assert response.status_code == 401 and response.json()["error"]["code"] == "authentication_failed"


def test_a_program_names_its_token_and_a_name_too_long_is_refused(user):
    asked = {"username": "ayu", "password": "kue-lapis-2026"}

    named = APIClient().post("/api/auth/token/", {**asked, "name": "kasir-toko"})
    too_long = APIClient().post("/api/auth/token/", {**asked, "name": "x" * 51})

    assert named.status_code == 200 and ApiToken.objects.get(user=user).name == "kasir-toko"
    assert too_long.status_code == 400 and "name" in error_of(too_long)["fields"]
    assert ApiToken.objects.filter(user=user).count() == 1


def test_a_wrong_password_gets_no_token(user):
    response = APIClient().post("/api/auth/token/", {"username": "ayu", "password": "nope"})

    assert response.status_code == 400
    assert "Unable to log in" in str(error_of(response)["fields"])


def test_anonymous_requests_get_401_but_the_schema_and_docs_are_open():
    client = APIClient()

    response = client.get("/api/photos/")
    assert response.status_code == 401 and error_of(response)["code"] == "not_authenticated"
    assert client.get("/api/schema/").status_code == 200
    assert client.get("/api/docs/").status_code == 200


def test_the_api_answers_a_browser_in_json_and_a_client_that_takes_only_html_with_a_406(api):
    browser = api.get("/api/photos/", HTTP_ACCEPT="text/html,application/xhtml+xml,*/*;q=0.8")
    html_only = api.get("/api/photos/", HTTP_ACCEPT="text/html")

    assert browser.status_code == 200 and browser["Content-Type"] == "application/json"
    assert html_only.status_code == 406 and html_only["Content-Type"] == "application/json"
    assert html_only.json()["error"]["code"] == "not_acceptable"
    schema = api.get("/api/schema/", HTTP_ACCEPT="text/html")  # (its own renderers: YAML and JSON)
    assert schema.status_code == 406 and schema["Content-Type"] == "application/json"
    assert schema.json()["error"]["code"] == "not_acceptable"


def test_uploading_two_photos_in_one_request_queues_both(api, user, enqueued,
                                                         django_capture_on_commit_callbacks):
    files = [upload_of(sample_photo("kue_lapis")), upload_of(sample_photo("kue_klepon"))]

    with django_capture_on_commit_callbacks(execute=True):
        response = api.post("/api/photos/", {"files": files}, format="multipart")

    assert response.status_code == 201
    results = response.json()["results"]
    assert [r["file"] for r in results] == [f.name for f in files]
    assert all(r["photo"]["status"] == "queued" and r["errors"] == [] for r in results)
    assert sorted(enqueued) == sorted(Photo.objects.filter(owner=user).values_list("pk", flat=True))
    assert results[0]["photo"]["image_url"] == f"http://testserver/api/photos/{results[0]['photo']['id']}/image/"


def test_a_bad_file_in_a_batch_gets_its_own_error_and_the_good_one_is_kept(api, enqueued):
    files = [upload_of(sample_photo()), SimpleUploadedFile("letter.jpg", b"%PDF-1.4", "image/jpeg")]

    response = api.post("/api/photos/", {"files": files}, format="multipart")

    assert response.status_code == 201
    good, bad = response.json()["results"]
    assert good["photo"] is not None
    assert bad == {"file": "letter.jpg", "photo": None, "errors": ["The file is not an image we can read."]}
    assert Photo.objects.count() == 1


def test_an_upload_with_only_bad_files_is_a_400_and_stores_nothing(api, enqueued):
    response = api.post("/api/photos/", {"files": [SimpleUploadedFile("x.png", b"")]}, format="multipart")

    assert response.status_code == 400
    assert response.json()["results"][0]["errors"] == ["The file is empty."]
    assert Photo.objects.count() == 0


def test_files_beyond_the_photos_an_account_may_keep_are_refused_each_with_its_error(api, user, enqueued,
                                                                                     settings):
    settings.MAX_PHOTOS_PER_ACCOUNT = 2
    make_photo(user)
    assert api.get("/api/account/").json()["photo_limit"] == 2
    files = [upload_of(sample_photo("kue_lapis"), "one.jpg"),
             upload_of(sample_photo("kue_klepon"), "two.jpg")]

    response = api.post("/api/photos/", {"files": files}, format="multipart")

    assert response.status_code == 201
    stored, refused = response.json()["results"]
    assert stored["photo"] is not None and refused["photo"] is None
    assert refused["errors"] == ["This account has 2 photos, the most one account may keep: delete some to "
                                 "upload more."]
    assert Photo.objects.filter(owner=user).count() == 2
    again = api.post("/api/photos/", {"files": [upload_of(sample_photo(), "three.jpg")]}, format="multipart")
    assert again.status_code == 400 and Photo.objects.filter(owner=user).count() == 2
    settings.MAX_PHOTOS_PER_ACCOUNT = 0  # no limit
    assert api.get("/api/account/").json()["photo_limit"] is None
    response = api.post("/api/photos/", {"files": [upload_of(sample_photo())]}, format="multipart")
    assert response.status_code == 201


def test_an_upload_without_files_is_a_400_with_a_field_error(api):
    response = api.post("/api/photos/", {}, format="multipart")

    assert response.status_code == 400
    assert "files" in error_of(response)["fields"]


def test_an_oversized_request_is_a_413(api, settings):
    settings.MAX_UPLOAD_BYTES = 10
    settings.MAX_FILES_PER_UPLOAD = 1

    response = api.post("/api/photos/", {"files": [upload_of(sample_photo())]}, format="multipart")

    assert response.status_code == 413 and error_of(response)["code"] == "too_large"
    assert Photo.objects.count() == 0


def test_a_photo_embeds_its_latest_prediction_with_top_three_and_display_names(api, user):
    photo = make_photo(user, status="done", label="kue_lumpur", confidence=0.91)

    body = api.get(f"/api/photos/{photo.pk}/").json()

    assert body["status"] == "done" and body["owner"] == "ayu"
    prediction = body["prediction"]
    assert prediction["label"] == "kue_lumpur" and prediction["display_name"] == "Kue Lumpur"
    assert prediction["confidence"] == pytest.approx(0.91)
    assert [p["slug"] for p in prediction["top_k"]][0] == "kue_lumpur" and len(prediction["top_k"]) == 3
    assert prediction["model_version"] == "kue-mobilenetv2"
    assert prediction["margin"] == pytest.approx(0.90)  # 0.91 - 0.01
    assert prediction["heatmap_url"] == f"http://testserver/api/photos/{photo.pk}/heatmap/"
    assert body["thumbnail_url"] == f"http://testserver/api/photos/{photo.pk}/thumbnail/"


def test_polling_an_unchanged_photo_is_answered_304_from_its_etag(api, user):
    photo = make_photo(user)
    first = api.get(f"/api/photos/{photo.pk}/")

    again = api.get(f"/api/photos/{photo.pk}/", HTTP_IF_NONE_MATCH=first["ETag"])
    star = api.get(f"/api/photos/{photo.pk}/", HTTP_IF_NONE_MATCH="*")  # any version the client has
    weakened = api.get(f"/api/photos/{photo.pk}/", HTTP_IF_NONE_MATCH=f'"x", W/{first["ETag"]}')  # weakened
    Photo.objects.filter(pk=photo.pk).update(status="done", updated=timezone.now())
    changed = api.get(f"/api/photos/{photo.pk}/", HTTP_IF_NONE_MATCH=first["ETag"])

    assert again.status_code == 304 and not again.content and star.status_code == weakened.status_code == 304
    assert changed.status_code == 200 and changed.json()["status"] == "done"
    assert changed["ETag"] != first["ETag"]


def test_a_long_poll_answers_at_once_for_a_finished_photo_and_after_the_wait_for_a_queued_one(api, user):
    done = make_photo(user, status="done", label="kue_lapis")
    queued = make_photo(user)

    started = time.monotonic()
    finished = api.get(f"/api/photos/{done.pk}/?wait=20")
    answered_done = time.monotonic() - started
    still_queued = api.get(f"/api/photos/{queued.pk}/?wait=0.3")
    answered_queued = time.monotonic() - started - answered_done

    assert finished.status_code == 200 and finished.json()["status"] == "done" and answered_done < 10
    assert still_queued.status_code == 200 and still_queued.json()["status"] == "queued"
    assert answered_queued >= 0.3


def needs_postgresql() -> None:
    if connection.vendor != "postgresql":
        if services_required():
            pytest.fail("DATABASE_URL must be PostgreSQL here")
        pytest.skip("notifications need PostgreSQL (set DATABASE_URL)")


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_long_poll_on_postgresql_sleeps_until_the_worker_settles_the_photo(api, user):
    """The waiting request does not ask the database every few milliseconds: it is woken by the
    notification committed with the prediction."""
    needs_postgresql()
    photo = make_photo(user)
    version = ModelVersion.objects.get(is_active=True)

    def worker_settles_it():
        time.sleep(1.0)
        services.prediction_record(photo=photo, version_id=version.pk, probabilities={"kue_lapis": 0.9},
                                   label="kue_lapis", confidence=0.9, inference_ms=5.0)
        connection.close()

    worker = threading.Thread(target=worker_settles_it)
    with CaptureQueriesContext(connection) as queries:
        worker.start()
        started = time.monotonic()
        response = api.get(f"/api/photos/{photo.pk}/?wait=20")
        waited = time.monotonic() - started
    worker.join()

    assert response.status_code == 200 and response.json()["status"] == "done"
    assert response.json()["prediction"]["label"] == "kue_lapis"
    assert 0.5 < waited < 10  # woken by the result, long before the 20 s wait ends
    assert len(queries) <= 7  # asking every 20 ms for a second would take 50 (7: the token's first use noted)


def notify_from_another_connection(channel: str) -> None:
    """What the worker's commit sends, from its own connection."""
    worker = connections.create_connection("default")
    with worker.cursor() as cursor:
        cursor.execute("SELECT pg_notify(%s, '')", [channel])
    worker.close()
    time.sleep(0.2)  # delivered


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_notification_nobody_waited_for_does_not_end_a_later_wait_on_the_connection(api, user):
    """The photo settled while its request read the status (so did not wait), then was retried:
    the web thread's connection, reused for the next wait on it, must not still hold that news."""
    needs_postgresql()
    photo = make_photo(user)
    with selectors.settling(photo.pk):
        notify_from_another_connection(selectors.settled_channel(photo.pk))

    started = time.monotonic()
    response = api.get(f"/api/photos/{photo.pk}/?wait=1")
    waited = time.monotonic() - started

    assert response.status_code == 200 and response.json()["status"] == "queued"
    assert waited >= 0.9  # the whole wait: nothing settled it since


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_wait_ends_only_on_its_own_photos_news(api, user):
    needs_postgresql()
    photo = make_photo(user)
    with connection.cursor() as cursor:
        cursor.execute('LISTEN "elsewhere"')  # another listener on the same connection
    other = threading.Thread(target=notify_from_another_connection, args=["elsewhere"])
    try:
        other.start()
        started = time.monotonic()
        response = api.get(f"/api/photos/{photo.pk}/?wait=1")
        waited = time.monotonic() - started
    finally:
        other.join()
        with connection.cursor() as cursor:
            cursor.execute('UNLISTEN "elsewhere"')

    assert response.status_code == 200 and response.json()["status"] == "queued"
    assert waited >= 0.9


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
@pytest.mark.parametrize("where", ["the website", "the API", "several at once"])
def test_a_long_poll_for_a_photo_deleted_meanwhile_answers_404_without_waiting_out_its_wait(api, user, where):
    """The owner deletes the photo on one device while another waits for its result."""
    needs_postgresql()
    photo, also = make_photo(user), make_photo(user)

    def owner_deletes_it():
        time.sleep(1.0)
        if where == "the API":
            other_device = APIClient()
            other_device.force_authenticate(user)
            assert other_device.delete(f"/api/photos/{photo.pk}/").status_code == 204
        elif where == "several at once":
            assert services.photos_delete({also.pk, photo.pk}) == sorted([also.pk, photo.pk])
        else:
            services.photo_delete(photo)  # what the website's delete calls
        connection.close()

    owner = threading.Thread(target=owner_deletes_it)
    owner.start()
    started = time.monotonic()
    try:
        response = api.get(f"/api/photos/{photo.pk}/?wait=20")
        waited = time.monotonic() - started
    finally:
        owner.join()

    assert response.status_code == 404
    assert 0.5 < waited < 10  # woken by the deletion, long before the wait ends


@pytest.mark.parametrize("wait", ["-1", "31", "nan", "soon"])
def test_a_wait_that_is_not_0_to_30_seconds_is_refused(api, user, wait):
    response = api.get(f"/api/photos/{make_photo(user).pk}/?wait={wait}")

    assert response.status_code == 400
    assert error_of(response)["fields"] == {"wait": ["A number of seconds from 0 to 30."]}


def test_the_list_has_own_photos_only_newest_first_and_paginated(api, user, other_user):
    mine = [make_photo(user) for _ in range(3)]
    make_photo(other_user)

    body = api.get("/api/photos/", {"page_size": 2}).json()

    assert body["count"] == 3
    assert [p["id"] for p in body["results"]] == [mine[2].pk, mine[1].pk]
    assert body["next"].endswith("page=2&page_size=2")


def test_a_later_page_keeps_the_ordering_asked_for(api, user):
    """A page reads its ids first, then their rows: in the order asked for, not the rows' own."""
    photos = [make_photo(user, status="done", label="kue_lapis", confidence=c)
              for c in (0.5, 0.9, 0.7, 0.6, 0.8)]

    body = api.get("/api/photos/", {"ordering": "-confidence", "page": 2, "page_size": 2}).json()

    assert body["count"] == 5 and [p["id"] for p in body["results"]] == [photos[2].pk, photos[3].pk]


@pytest.mark.parametrize("ordering", ["confidence", "-confidence"])
def test_pages_ordered_by_a_value_many_photos_share_show_each_photo_once(api, user, ordering):
    photos = [make_photo(user, status="done", label="kue_lapis", confidence=c) for c in [0.6, 0.8, 0.7] * 8]
    by = sorted(photos, key=lambda p: (p.confidence, p.pk), reverse=ordering.startswith("-"))
    Photo.objects.filter(pk__in=[p.pk for p in photos[::2]]).update(error="")  # rows stored anew, elsewhere

    def page(number: int) -> list[int]:
        query = {"ordering": ordering, "page": number, "page_size": 4}
        return [p["id"] for p in api.get("/api/photos/", query).json()["results"]]

    assert [pk for number in range(1, 7) for pk in page(number)] == [p.pk for p in by]


@pytest.mark.parametrize("ordering", ["confidence", "-confidence", "margin", "-margin"])
def test_photos_not_classified_yet_come_last_in_either_direction(api, user, ordering):
    """On PostgreSQL and SQLite alike (each puts a missing value first in one of the directions)."""
    sure, unsure = (make_photo(user, status="done", label="kue_lapis", confidence=c) for c in (0.9, 0.5))
    waiting = [make_photo(user) for _ in range(3)]

    def page(number: int) -> list[int]:
        return [p["id"] for p in api.get("/api/photos/", {"ordering": ordering, "page": number,
                                                          "page_size": 2}).json()["results"]]

    classified = [unsure.pk, sure.pk] if ordering in ("confidence", "margin") else [sure.pk, unsure.pk]
    later_first = ordering.startswith("-")  # then by id, in the direction asked for
    assert page(1) == classified
    assert page(2) + page(3) == sorted((p.pk for p in waiting), reverse=later_first)


def test_the_photo_keeps_a_copy_of_its_predictions_label_confidence_and_margin(user):
    """What the list filters and orders on without reading the predictions: copied when the prediction
    is recorded, in the same transaction."""
    queued = make_photo(user)
    done = make_photo(user, status="done", label="kue_lapis", confidence=0.7)  # every other class 0.01

    assert (queued.predicted_label, queued.confidence, queued.margin) == ("", None, None)
    assert (done.predicted_label, done.confidence) == ("kue_lapis", 0.7)
    assert done.margin == pytest.approx(0.69) == done.predictions.get().margin


def test_the_sweep_fills_in_the_copies_a_worker_of_the_release_before_left_out(api, user, monkeypatch):
    """While a release that adds the copies is deployed, a worker of the one before it records
    predictions without them: the photo would be missing from the label filter and misplaced in the
    review queue for good. The sweep fills them in."""
    from classifier import tasks

    done = make_photo(user, status="done", label="kue_lapis", confidence=0.7)
    Photo.objects.filter(pk=done.pk).update(predicted_label="", confidence=None, margin=None)
    monkeypatch.setattr(tasks, "messages_waiting", lambda queue: 0)

    def listed() -> list[int]:
        return [p["id"] for p in api.get("/api/photos/", {"predicted_label": "kue_lapis"}).json()["results"]]

    assert listed() == []
    assert tasks.requeue_stuck().endswith(", 1 prediction copied onto its photo")
    assert listed() == [done.pk]
    done.refresh_from_db()
    assert (done.confidence, done.margin) == (0.7, pytest.approx(0.69))
    assert tasks.requeue_stuck() == "0 photos, 0 training runs, 0 confirmation e-mails"


def test_the_page_size_is_bounded(api, user):
    make_photo(user)

    assert api.get("/api/photos/", {"page_size": 5000}).status_code == 200
    assert api.get("/api/photos/", {"page": 99}).status_code == 404


def test_filters_by_status_label_feedback_confidence_and_date(api, user):
    lapis = make_photo(user, status="done", label="kue_lapis", confidence=0.95)
    serabi = make_photo(user, status="done", label="kue_serabi", confidence=0.40)
    queued = make_photo(user)
    Feedback.objects.create(photo=serabi, user=user, label="kue_lumpur", predicted_label="kue_serabi",
                            is_correction=True)
    Feedback.objects.create(photo=lapis, user=user, label="kue_lapis", predicted_label="kue_lapis",
                            is_correction=False)
    Photo.objects.filter(pk=queued.pk).update(created=timezone.now() - timedelta(days=3))

    def ids(**params):
        return [p["id"] for p in api.get("/api/photos/", params).json()["results"]]

    assert ids(status="queued") == [queued.pk]
    assert ids(label="kue_lumpur") == [serabi.pk]  # the answer, as the website's filter
    assert ids(label="kue_serabi") == [] and ids(predicted_label="kue_serabi") == [serabi.pk]
    assert ids(label="kue_lapis") == ids(predicted_label="kue_lapis") == [lapis.pk]
    for odd in ("brownie", "100%", "%(x)s"):  # refused, as an unknown status is (a "%" as it is)
        refused = api.get("/api/photos/", {"label": odd})
        assert refused.status_code == 400 and error_of(refused)["fields"]["label"][0].startswith(
            f"Unknown cake “{odd}”; choose one of kue_dadar_gulung,")
    assert ids(corrected="true") == [serabi.pk]
    assert ids(corrected="false") == [lapis.pk]
    assert ids(reviewed="false") == [queued.pk]
    assert ids(reviewed="true") == ids(reviewed="1") == ids(reviewed="True") == [serabi.pk, lapis.pk]
    for odd in ({"reviewed": "maybe"}, {"corrected": "yes"}, {"ordering": "size"},
                {"ordering": "-confidence,owner"}, {"ordering": "created,"}):  # refused, not ignored
        assert api.get("/api/photos/", odd).status_code == 400, odd
    assert ids(confidence_min=0.5) == [lapis.pk]
    assert ids(confidence_max=0.5) == [serabi.pk]
    assert ids(created_before=(timezone.now() - timedelta(days=1)).isoformat()) == [queued.pk]
    assert ids(ordering="-confidence", status="done") == [lapis.pk, serabi.pk]
    assert ids(ordering="confidence", status="done") == [serabi.pk, lapis.pk]
    assert ids(ordering="-confidence,created", status="done") == [lapis.pk, serabi.pk]
    assert ids(ordering="-confidence, created", status="done") == [lapis.pk, serabi.pk]
    unknown = api.get("/api/photos/", {"ordering": "size"}).json()["error"]["fields"]["ordering"]
    assert unknown == ["Order by created, confidence, margin; a leading - reverses a field; several, "
                       "comma-separated, order by the first, then the next. Those without a confidence "
                       "or margin come last either way."]


def test_dates_with_any_legal_offset_are_compared_in_utc(api, user):
    photo = make_photo(user)

    found = api.get("/api/photos/", {"created_after": "0527-03-26T19:22:09.30-16:13"})

    assert found.status_code == 200 and [p["id"] for p in found.json()["results"]] == [photo.pk]


def test_a_positive_offset_typed_without_encoding_its_plus_counts_as_that_offset(api, user):
    """From an address bar or curl, "+07:00" arrives as " 07:00"; a date alone is still a date."""
    from datetime import UTC, datetime

    photo = make_photo(user)
    Photo.objects.filter(pk=photo.pk).update(created=datetime(2026, 12, 6, 23, 45, tzinfo=UTC))

    def ids(query):
        response = api.get(f"/api/photos/?{query}")
        assert response.status_code == 200, response.json()
        return [p["id"] for p in response.json()["results"]]

    assert ids("created_after=2026-12-07T06:30:00+07:00") == [photo.pk]  # 23:30 UTC
    assert ids("created_after=2026-12-07T06:50:00%2B07:00") == []
    assert ids("created_after=2026-12-07T06:50:00+0700") == []
    assert ids("created_before=2026-12-07") == [photo.pk]


@pytest.mark.parametrize("param", ["created_after", "created_before"])
def test_a_date_out_of_range_is_a_400_under_the_parameter_the_client_sent(api, param):
    response = api.get("/api/photos/", {param: "9999-12-31T23:59:59-23:59"})  # year 10000 in UTC

    assert response.status_code == 400 and error_of(response)["fields"] == {param: ["Date out of range."]}


def test_more_files_than_django_parses_is_a_400_that_says_the_limit(api, settings):
    settings.MAX_FILES_PER_UPLOAD, settings.DATA_UPLOAD_MAX_NUMBER_FILES = 1, 2
    files = [SimpleUploadedFile(f"{i}.png", png_bytes()) for i in range(3)]

    response = api.post("/api/photos/", {"files": files}, format="multipart")

    assert response.status_code == 400
    assert error_of(response)["fields"] == {"files": ["At most 1 photos at once."]}
    assert Photo.objects.count() == 0


def test_an_invalid_filter_value_is_a_400_with_the_field(api):
    response = api.get("/api/photos/", {"status": "baked"})

    assert response.status_code == 400
    assert "status" in error_of(response)["fields"]


@pytest.mark.parametrize("method, suffix", [
    ("get", ""), ("delete", ""), ("put", "feedback/"), ("post", "retry/"),
])
def test_another_users_photo_is_a_404_for_every_operation(api, other_user, method, suffix):
    photo = make_photo(other_user, status="failed")

    response = getattr(api, method)(f"/api/photos/{photo.pk}/{suffix}", {"label": "kue_lapis"})

    assert response.status_code == 404 and error_of(response)["code"] == "not_found"
    assert error_of(response)["message"] == "Photo not found."  # (the same as for no photo at all)
    assert Photo.objects.filter(pk=photo.pk, status="failed").exists()
    assert not Feedback.objects.exists()


def test_deleting_an_own_photo(api, user, django_capture_on_commit_callbacks):
    photo = make_photo(user)

    with django_capture_on_commit_callbacks(execute=True):
        response = api.delete(f"/api/photos/{photo.pk}/")

    assert response.status_code == 204
    assert not Photo.objects.exists()


def test_confirming_and_then_correcting_a_label_keeps_one_feedback(api, user):
    photo = make_photo(user, status="done", label="kue_serabi", confidence=0.6)

    confirmed = api.put(f"/api/photos/{photo.pk}/feedback/", {"label": "kue_serabi"}).json()
    corrected = api.put(f"/api/photos/{photo.pk}/feedback/", {"label": "kue_lumpur"}).json()

    assert confirmed["feedback"]["is_correction"] is False
    assert corrected["feedback"] == {**corrected["feedback"], "label": "kue_lumpur", "is_correction": True,
                                     "predicted_label": "kue_serabi", "user": "ayu"}
    assert Feedback.objects.filter(photo=photo).count() == 1


def test_none_of_these_is_a_valid_verdict_and_an_unknown_cake_is_not(api, user):
    photo = make_photo(user, status="done", label="kue_lapis")

    assert api.put(f"/api/photos/{photo.pk}/feedback/", {"label": "none"}).status_code == 200
    response = api.put(f"/api/photos/{photo.pk}/feedback/", {"label": "brownie"})

    assert response.status_code == 400
    assert error_of(response)["fields"]["label"] == [
        "Unknown cake “brownie”; choose one of kue_dadar_gulung, kue_kastengel, kue_klepon, kue_lapis, "
        "kue_lumpur, kue_putri_salju, kue_risoles, kue_serabi, or none."]
    assert Feedback.objects.get(photo=photo).label == "none"


def test_a_failed_photo_can_be_retried_and_a_done_one_cannot(api, user, enqueued,
                                                             django_capture_on_commit_callbacks):
    failed = make_photo(user, status="failed")
    done = make_photo(user, status="done", label="kue_lapis")

    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(f"/api/photos/{failed.pk}/retry/")
    refused = api.post(f"/api/photos/{done.pk}/retry/")

    assert response.status_code == 202 and response.json()["status"] == "queued"
    assert enqueued == [failed.pk]
    assert refused.status_code == 400 and "Only a failed photo" in str(error_of(refused)["fields"])


def test_a_waiting_photo_says_since_when_it_waits_and_a_settled_one_does_not(api, user, enqueued):
    """What the site's "taking longer than usual" counts from: the upload, or a retry however old the
    photo; null once classified or failed."""
    from datetime import datetime

    long_ago = timezone.now() - timedelta(days=1)
    failed, queued = make_photo(user, status="failed"), make_photo(user)
    done = make_photo(user, status="done", label="kue_lapis")
    Photo.objects.filter(pk=failed.pk).update(created=long_ago, waiting_since=long_ago)
    before = timezone.now()

    retried = api.post(f"/api/photos/{failed.pk}/retry/").json()
    listed = {photo["id"]: photo for photo in api.get("/api/photos/").json()["results"]}

    def when(text: str) -> datetime:
        return datetime.fromisoformat(text)

    waited = when(listed[queued.pk]["waiting_since"]) - when(listed[queued.pk]["created"])
    assert abs(waited) < timedelta(seconds=5)
    assert when(retried["waiting_since"]) >= before - timedelta(seconds=1)
    assert listed[failed.pk]["waiting_since"] == retried["waiting_since"]
    assert "waiting_since" in listed[done.pk] and listed[done.pk]["waiting_since"] is None


def test_two_retries_of_a_failed_photo_both_read_as_failed_queue_it_once(user, enqueued,
                                                                         django_capture_on_commit_callbacks):
    failed = make_photo(user, status="failed")
    first, second = Photo.objects.get(pk=failed.pk), Photo.objects.get(pk=failed.pk)  # two requests read it

    with django_capture_on_commit_callbacks(execute=True):
        services.photo_retry(first)
        with pytest.raises(ValidationError, match="Only a failed photo"):
            services.photo_retry(second)

    assert enqueued == [failed.pk]


def test_a_retry_of_a_photo_deleted_since_it_was_read_is_a_404(user, enqueued):
    failed = make_photo(user, status="failed")
    Photo.objects.filter(pk=failed.pk).delete()

    with pytest.raises(Http404):
        services.photo_retry(failed)
    assert enqueued == []


def test_uploads_are_throttled_with_retry_after(api, monkeypatch, enqueued):
    from django.core.cache import cache
    from rest_framework.throttling import SimpleRateThrottle

    monkeypatch.setattr(SimpleRateThrottle, "THROTTLE_RATES",
                        {**SimpleRateThrottle.THROTTLE_RATES, "uploads": "2/minute"})
    cache.clear()

    codes = [api.post("/api/photos/", {"files": [SimpleUploadedFile("a.png", png_bytes())]},
                      format="multipart").status_code for _ in range(3)]
    listing = api.get("/api/photos/")

    assert codes == [201, 201, 429]
    assert listing.status_code == 200  # other endpoints keep their own budget
    throttled = api.post("/api/photos/", {"files": [SimpleUploadedFile("b.png", png_bytes())]},
                         format="multipart")
    assert int(throttled["Retry-After"]) > 0 and error_of(throttled)["code"] == "throttled"


def test_the_upload_rate_counts_photos_not_requests(api, monkeypatch, enqueued):
    """Each photo is a job in the queue every user shares: 20 files in one request are 20 uploads."""
    from django.core.cache import cache
    from rest_framework.throttling import SimpleRateThrottle

    monkeypatch.setattr(SimpleRateThrottle, "THROTTLE_RATES",
                        {**SimpleRateThrottle.THROTTLE_RATES, "uploads": "3/minute"})
    cache.clear()

    def upload(n):
        files = [SimpleUploadedFile(f"{i}.png", png_bytes()) for i in range(n)]
        return api.post("/api/photos/", {"files": files}, format="multipart").status_code

    assert [upload(2), upload(2), upload(1), upload(1)] == [201, 429, 201, 429]
    assert Photo.objects.count() == 3


def test_with_redis_the_throttle_counters_live_where_every_web_process_sees_them(api, monkeypatch, enqueued,
                                                                                  settings):
    import redis
    from django.core.cache import caches
    from rest_framework.throttling import SimpleRateThrottle

    from tests.processes import require_services

    require_services()
    url, prefix = os.environ["CELERY_BROKER_URL"], f"test-throttle-{uuid.uuid4().hex}"
    settings.CACHES = {"default": {"BACKEND": "cakesite.cache.RedisCache", "LOCATION": url,
                                   "KEY_PREFIX": prefix}}
    monkeypatch.setattr(SimpleRateThrottle, "THROTTLE_RATES",
                        {**SimpleRateThrottle.THROTTLE_RATES, "uploads": "2/minute"})
    server = redis.Redis.from_url(url)
    try:
        codes = [api.post("/api/photos/", {"files": [SimpleUploadedFile("a.png", png_bytes())]},
                          format="multipart").status_code for _ in range(3)]

        assert codes == [201, 201, 429]
        keys = server.keys(f"{prefix}:*throttle_uploads_*")  # in Redis itself, not in this process
        elsewhere = caches.create_connection("default")  # a new client and pool, as another process has
        assert len(keys) == 1 and len(elsewhere.get(keys[0].decode().split(":", 2)[2])) == 2
    finally:
        if keys := server.keys(f"{prefix}:*"):
            server.delete(*keys)


def test_a_long_poll_on_another_users_photo_is_a_404_at_once_whatever_its_etag(api, other_user):
    photo = make_photo(other_user)  # queued: its owner's wait would last
    own_etag = APIClient()
    own_etag.force_authenticate(other_user)
    etag = own_etag.get(f"/api/photos/{photo.pk}/").headers["ETag"]

    started = time.monotonic()
    response = api.get(f"/api/photos/{photo.pk}/", {"wait": 5}, HTTP_IF_NONE_MATCH=etag)

    assert response.status_code == 404 and time.monotonic() - started < 2


def test_staff_who_may_change_but_not_delete_photos_cannot_delete_others(django_user_model, user):
    from django.contrib.auth.models import Permission

    editor = django_user_model.objects.create_user("editor", password="x-kue-2026-x", is_staff=True)
    editor.user_permissions.add(*Permission.objects.filter(codename__in=["view_photo", "change_photo"]))
    photo = make_photo(user, status="done", label="kue_lapis")
    api = APIClient()
    api.force_authenticate(editor)

    assert api.get(f"/api/photos/{photo.pk}/").status_code == 200
    refused = api.delete(f"/api/photos/{photo.pk}/")
    assert refused.status_code == 403  # not a 404: they see it
    assert refused.json()["error"]["message"] == "You may see other users' photos, but not delete them."
    assert Photo.objects.filter(pk=photo.pk).exists()


def test_a_page_holds_at_most_100_photos_whatever_size_is_asked(api, user):
    for _ in range(101):
        make_photo(user)

    body = api.get("/api/photos/", {"page_size": 5000}).json()

    assert body["count"] == 101 and len(body["results"]) == 100 and body["next"]


@pytest.mark.parametrize("kind, content_type", [("image", "image/png"), ("thumbnail", "image/jpeg"),
                                                ("heatmap", "image/png")])
def test_a_token_client_downloads_the_photo_its_thumbnail_and_its_heat_map(api, user, other_user, kind,
                                                                          content_type):
    photo = make_photo(user, status="done", label="kue_lapis")
    url = api.get(f"/api/photos/{photo.pk}/").json()[f"{kind}_url"] if kind != "heatmap" else \
        api.get(f"/api/photos/{photo.pk}/").json()["prediction"]["heatmap_url"]

    response = api.get(url, HTTP_ACCEPT=content_type)  # as an image viewer asks, not for JSON

    stored = {"image": photo.image, "thumbnail": photo.thumbnail,
              "heatmap": photo.predictions.get().heatmap}[kind]
    assert response.status_code == 200 and response["Content-Type"] == content_type
    assert b"".join(response.streaming_content) == stored.open("rb").read()
    assert response["Cache-Control"] == "private, max-age=86400"
    theirs = make_photo(other_user, status="done", label="kue_lapis")
    refused = api.get(f"/api/photos/{theirs.pk}/{kind}/", HTTP_ACCEPT=content_type)
    assert refused.status_code == 404 and error_of(refused)["code"] == "not_found"  # JSON, whatever accepted


def test_a_photo_still_waiting_has_no_heat_map_yet(api, user):
    photo = make_photo(user)

    assert api.get(f"/api/photos/{photo.pk}/").json()["prediction"] is None
    response = api.get(f"/api/photos/{photo.pk}/heatmap/")
    assert response.status_code == 404 and error_of(response)["message"] == "This photo has no heat map."


def test_the_review_queue_is_the_websites_least_certain_first_without_the_answered(api, client, user):
    sure = make_photo(user, status="done", label="kue_lapis", confidence=0.95)
    unsure = make_photo(user, status="done", label="kue_serabi", confidence=0.35)
    middling = make_photo(user, status="done", label="kue_klepon", confidence=0.6)
    answered = make_photo(user, status="done", label="kue_lumpur", confidence=0.3)
    make_photo(user)  # queued: nothing to review yet
    services.feedback_record(photo=answered, user=user, label="kue_lumpur")
    client.force_login(user)

    queue = api.get("/api/photos/review-queue/", {"ordering": "-margin", "status": "queued"}).json()
    page = client.get("/review/").content.decode()

    assert [p["id"] for p in queue["results"]] == [unsure.pk, middling.pk, sure.pk]  # params change nothing
    positions = [page.index(f'href="/photos/{p.pk}/"') for p in (unsure, middling, sure)]
    assert positions == sorted(positions) and f'href="/photos/{answered.pk}/"' not in page
    by_margin = api.get("/api/photos/", {"ordering": "margin", "status": "done"}).json()["results"]
    assert [p["id"] for p in by_margin] == [answered.pk, unsure.pk, middling.pk, sure.pk]


def test_the_counters_are_the_review_pages(api, user, other_user):
    right = make_photo(user, status="done", label="kue_lapis")
    wrong = make_photo(user, status="done", label="kue_serabi")
    make_photo(user)
    services.feedback_record(photo=right, user=user, label="kue_lapis")
    services.feedback_record(photo=wrong, user=user, label="kue_lumpur")
    make_photo(other_user, status="done", label="kue_lapis")  # not theirs: not counted

    assert api.get("/api/stats/").json() == {
        "photos": 3, "reviewed": 2, "corrected": 1,
        "per_version": [{"version": "kue-mobilenetv2", "reviewed": 2, "confirmed": 1, "accuracy": 0.5,
                         "accuracy_low": pytest.approx(0.0945, abs=1e-4),
                         "accuracy_high": pytest.approx(0.9055, abs=1e-4)}],
    }


@pytest.mark.parametrize("alias", [
    lambda pk: "".join(chr(0x0660 + int(d)) for d in str(pk)),  # Arabic-Indic digits
    lambda pk: "".join(chr(0xFF10 + int(d)) for d in str(pk)),  # full-width digits
    lambda pk: f"{pk}.json",
], ids=["arabic-indic", "full-width", "suffix"])
def test_only_ascii_digits_name_a_photo(api, user, alias):
    photo = make_photo(user)

    assert api.get(f"/api/photos/{alias(photo.pk)}/").status_code == 404
    assert api.delete(f"/api/photos/{alias(photo.pk)}/").status_code == 404
    assert Photo.objects.filter(pk=photo.pk).exists()


@pytest.mark.django_db(transaction=True, serialized_rollback=True)  # the waiting request: a thread
def test_one_user_cannot_hold_more_than_a_few_waiting_requests(user, settings):
    """Each wait holds a web thread: beyond LONG_POLLS_PER_USER at once, a 429 says to come back."""
    settings.LONG_POLLS_PER_USER = 1
    photo = make_photo(user)  # queued: a wait on it lasts
    token = api_token(user)

    def client():
        api = APIClient()
        api.credentials(HTTP_AUTHORIZATION=f"Token {token}")
        return api

    first: list = []
    holder = threading.Thread(target=lambda: first.append(client().get(f"/api/photos/{photo.pk}/?wait=3")))
    holder.start()
    time.sleep(1)  # the first request is waiting by now
    started = time.monotonic()
    second = client().get(f"/api/photos/{photo.pk}/?wait=3")
    refused_in = time.monotonic() - started
    at_once = client().get(f"/api/photos/{photo.pk}/")  # no wait: always answered
    holder.join()
    connections.close_all()
    after = client().get(f"/api/photos/{photo.pk}/?wait=0.2")

    assert first[0].status_code == 200
    # (a slot frees when a wait of up to 30 s ends: a client told "1 s" would ask again and again)
    assert second.status_code == 429 and refused_in < 1 and int(second["Retry-After"]) == 5
    assert "requests waiting for results" in error_of(second)["message"]
    assert at_once.status_code == 200 and after.status_code == 200  # the slot was given back


@pytest.mark.django_db(transaction=True, serialized_rollback=True)  # the waiting request: a thread
def test_many_users_waiting_at_once_leave_a_web_process_threads_for_other_pages(user, other_user, settings):
    """A dozen people waiting on a backlog, a few requests each, would hold every thread of the web
    processes: beyond LONG_POLLS_PER_PROCESS waits at once, whoever asks, a 429 says to come back."""
    settings.LONG_POLLS_PER_PROCESS = 1
    mine, theirs = make_photo(user), make_photo(other_user)  # queued: a wait on either lasts

    def client(owner):
        api = APIClient()
        api.credentials(HTTP_AUTHORIZATION=f"Token {api_token(owner)}")
        return api

    first: list = []
    holder = threading.Thread(target=lambda: first.append(client(user).get(f"/api/photos/{mine.pk}/?wait=3")))
    holder.start()
    time.sleep(1)  # the first request is waiting by now
    second = client(other_user).get(f"/api/photos/{theirs.pk}/?wait=3")  # another user's first wait
    at_once = client(other_user).get(f"/api/photos/{theirs.pk}/")  # no wait: always answered
    holder.join()
    connections.close_all()
    after = client(other_user).get(f"/api/photos/{theirs.pk}/?wait=0.2")

    assert first[0].status_code == 200
    assert second.status_code == 429 and int(second["Retry-After"]) == 5
    assert "as many requests waiting for results as it can" in error_of(second)["message"]
    assert at_once.status_code == 200 and after.status_code == 200  # the slot was given back


def test_the_count_of_waits_lives_as_long_as_the_waits_that_keep_coming(monkeypatch, settings):
    """A count that expired while waits were still open would restart at 1 and let more in."""
    from contextlib import ExitStack
    from types import SimpleNamespace

    from django.core.cache.backends import base, locmem
    from rest_framework.exceptions import Throttled

    from classifier.api.views import MAX_WAIT_S, waiting_slot

    settings.LONG_POLLS_PER_USER = 2
    clock = [1000.0]
    fake_time = SimpleNamespace(time=lambda: clock[0])
    # The cache's clock: Django's base cache computes an expiry, locmem reads it.
    monkeypatch.setattr(base, "time", fake_time)
    monkeypatch.setattr(locmem, "time", fake_time)
    with ExitStack() as waits:
        waits.enter_context(waiting_slot(7))
        clock[0] += 1.5 * MAX_WAIT_S  # a second wait, the first still open
        waits.enter_context(waiting_slot(7))
        clock[0] += MAX_WAIT_S  # past the first one's lifetime of the count

        with pytest.raises(Throttled):
            waits.enter_context(waiting_slot(7))


def test_a_prediction_drawn_without_a_heat_map_says_so(api, user):
    photo = make_photo(user)
    version = ModelVersion.objects.get(is_active=True)
    services.prediction_record(photo=photo, version_id=version.pk, label="kue_lapis", confidence=0.9,
                               probabilities={item["slug"]: 0.9 if item["slug"] == "kue_lapis" else 0.01
                                              for item in version.labels}, inference_ms=1.0, heatmap=None)

    assert api.get(f"/api/photos/{photo.pk}/").json()["prediction"]["heatmap_url"] is None
    missing = api.get(f"/api/photos/{photo.pk}/heatmap/")
    assert missing.status_code == 404 and error_of(missing)["message"] == "This photo has no heat map."


def test_what_users_labelled_is_listed_with_each_photos_content_hash_and_the_account_that_answered(user):
    photo = make_photo(user, status="done", label="kue_lapis")
    services.feedback_record(photo=photo, user=user, label="kue_lapis")

    assert selectors.labelled_photos() == [(photo.pk, "kue_lapis", False, photo.sha256, user.username)]


@pytest.mark.parametrize("collection", ["model-versions", "training-runs"])
def test_only_ascii_digits_name_a_version_or_a_run(admin_user, collection):
    from classifier.models import TrainingRun

    api = APIClient()
    api.force_authenticate(admin_user)
    version = ModelVersion.objects.get(is_active=True)
    run = TrainingRun.objects.create(started_by=admin_user, base_version=version, status="failed")
    pk = version.pk if collection == "model-versions" else run.pk
    arabic = "".join(chr(0x0660 + int(d)) for d in str(pk))

    assert api.get(f"/api/{collection}/{pk}/").status_code == 200
    assert api.get(f"/api/{collection}/{arabic}/").status_code == 404


def test_revoking_a_token_signs_out_only_its_own_user(user, other_user):
    mine, theirs = APIClient(), APIClient()
    mine.credentials(HTTP_AUTHORIZATION=f"Token {api_token(user)}")
    theirs.credentials(HTTP_AUTHORIZATION=f"Token {api_token(other_user)}")

    revoked = mine.delete("/api/auth/token/")

    assert revoked.status_code == 204
    assert mine.get("/api/photos/").status_code == 401
    assert theirs.get("/api/photos/").status_code == 200  # another user's client is not signed out


@pytest.mark.parametrize("kind", ["image", "thumbnail", "heatmap"])
def test_a_photos_files_are_never_sniffed_as_another_type(api, client, user, settings, kind):
    """A browser that guessed a type from the bytes could run an uploaded file as a page: the files
    carry their own header, also where the site-wide one is turned off (say, left to a proxy)."""
    settings.SECURE_CONTENT_TYPE_NOSNIFF = False
    photo = make_photo(user, status="done", label="kue_lapis")
    client.force_login(user)

    assert "X-Content-Type-Options" not in client.get("/photos/")  # the site-wide header is off
    for response in (api.get(f"/api/photos/{photo.pk}/{kind}/"), client.get(f"/photos/{photo.pk}/{kind}/")):
        assert response.status_code == 200
        assert response["X-Content-Type-Options"] == "nosniff"


def settle_with_a_prediction(photo):
    version = ModelVersion.objects.get(is_active=True)
    services.prediction_record(photo=photo, version_id=version.pk, probabilities={"kue_lapis": 0.9},
                               label="kue_lapis", confidence=0.9, inference_ms=5.0)


@pytest.mark.parametrize("worker_step, status", [
    (services.photo_start, "processing"),
    (settle_with_a_prediction, "done"),
    (lambda photo: services.photo_fail(photo, "The photo could not be read."), "failed"),
], ids=["started", "classified", "failed"])
def test_a_client_polling_with_the_etag_sees_each_step_of_the_worker(api, user, worker_step, status):
    """The worker's status changes move the ETag: a poller is never told 304 about a photo that moved."""
    photo = make_photo(user)
    etag = api.get(f"/api/photos/{photo.pk}/")["ETag"]

    worker_step(photo)
    polled = api.get(f"/api/photos/{photo.pk}/", HTTP_IF_NONE_MATCH=etag)

    assert polled.status_code == 200 and polled.json()["status"] == status
    assert polled["ETag"] != etag


def test_an_answer_changes_the_photos_etag(api, user):
    """Another tab (or device) holding the photo's ETag learns of the answer given meanwhile."""
    photo = make_photo(user, status="done", label="kue_lapis")
    etag = api.get(f"/api/photos/{photo.pk}/")["ETag"]

    assert api.put(f"/api/photos/{photo.pk}/feedback/", {"label": "kue_lumpur"}).status_code == 200
    polled = api.get(f"/api/photos/{photo.pk}/", HTTP_IF_NONE_MATCH=etag)

    assert polled.status_code == 200 and polled.json()["feedback"]["label"] == "kue_lumpur"


def test_the_etag_moves_with_the_names_the_photo_shows_from_other_rows(user, staff, django_user_model):
    """A model version renamed in the admin, or the account that answered deleted, changes what the
    photo's representation says without touching the photo: a client is not told 304 about it."""
    photo = make_photo(user, status="done", label="kue_lapis")
    helper = django_user_model.objects.create_user("staffer", is_staff=True)
    services.feedback_record(photo=photo, user=helper, label="kue_lapis")
    api = APIClient()
    api.force_authenticate(staff)  # who sees the names of the staff who answered
    first = api.get(f"/api/photos/{photo.pk}/")

    ModelVersion.objects.update(name="kue-renamed")
    renamed = api.get(f"/api/photos/{photo.pk}/", HTTP_IF_NONE_MATCH=first["ETag"])
    helper.delete()
    gone = api.get(f"/api/photos/{photo.pk}/", HTTP_IF_NONE_MATCH=renamed["ETag"])

    assert first.json()["feedback"]["user"] == "staffer"
    assert renamed.status_code == 200 and renamed.json()["prediction"]["model_version"] == "kue-renamed"
    assert gone.status_code == 200 and gone.json()["feedback"]["user"] is None
    assert api.get(f"/api/photos/{photo.pk}/", HTTP_IF_NONE_MATCH=gone["ETag"]).status_code == 304


def test_the_etag_tells_an_owner_nothing_of_who_answered(api, user, staff, settings):
    """The owner is not shown which staff member answered their photo (null); the ETag, which moves
    with that name, is keyed by the site's secret, so hashing likely names does not find it."""
    photo = make_photo(user, status="done", label="kue_lapis")
    services.feedback_record(photo=photo, user=staff, label="kue_lapis")
    seen = api.get(f"/api/photos/{photo.pk}/")

    settings.SECRET_KEY = "another-" + settings.SECRET_KEY

    assert seen.json()["feedback"]["user"] is None
    assert api.get(f"/api/photos/{photo.pk}/")["ETag"] != seen["ETag"]


def test_a_failed_photo_says_why_in_the_api(api, user):
    photo = make_photo(user)
    services.photo_fail(photo, "The photo could not be read: truncated")

    body = api.get(f"/api/photos/{photo.pk}/").json()

    assert body["status"] == "failed" and body["error"] == "The photo could not be read: truncated"


def test_the_confidence_and_date_filters_at_their_exact_bounds(api, user):
    """confidence_min takes its bound (like confidence_max); created_before is strictly before and
    created_after from the moment on, so consecutive windows never count a photo twice."""
    from datetime import UTC, datetime

    half = make_photo(user, status="done", label="kue_lapis", confidence=0.5)
    surer = make_photo(user, status="done", label="kue_serabi", confidence=0.75)
    noon = datetime(2026, 3, 2, 12, 0, 0, tzinfo=UTC)
    Photo.objects.filter(pk=half.pk).update(created=noon - timedelta(seconds=1))
    Photo.objects.filter(pk=surer.pk).update(created=noon)

    def ids(**params):
        response = api.get("/api/photos/", params)
        assert response.status_code == 200
        return [p["id"] for p in response.json()["results"]]

    assert ids(confidence_min=0.5) == [surer.pk, half.pk]
    assert ids(confidence_min=0.75) == [surer.pk]
    assert ids(created_before="2026-03-02T12:00:00Z") == [half.pk]
    assert ids(created_after="2026-03-02T12:00:00Z") == [surer.pk]


@pytest.mark.django_db(transaction=True, serialized_rollback=True)  # the worker: a thread
def test_a_long_poll_that_sends_the_queued_photos_etag_gets_the_result_once_it_settles(api, user):
    """The answer after a wait is the photo as it is then, with its new ETag: not a 304 for the ETag
    the client had before the wait (which would leave it without the result it waited for)."""
    photo = make_photo(user)
    etag = api.get(f"/api/photos/{photo.pk}/")["ETag"]

    def worker_settles_it():
        time.sleep(0.5)
        settle_with_a_prediction(photo)
        connection.close()

    worker = threading.Thread(target=worker_settles_it)
    worker.start()
    try:
        response = api.get(f"/api/photos/{photo.pk}/?wait=10", HTTP_IF_NONE_MATCH=etag)
    finally:
        worker.join()

    assert response.status_code == 200 and response.json()["status"] == "done"
    assert response["ETag"] != etag
    assert api.get(f"/api/photos/{photo.pk}/", HTTP_IF_NONE_MATCH=response["ETag"]).status_code == 304


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_long_poll_on_postgresql_for_a_photo_already_done_answers_at_once(api, user):
    """No notification will come for a photo that has settled: the request must not wait for one."""
    needs_postgresql()
    photo = make_photo(user, status="done", label="kue_lapis")

    started = time.monotonic()
    response = api.get(f"/api/photos/{photo.pk}/?wait=5")

    assert response.status_code == 200 and response.json()["status"] == "done"
    assert time.monotonic() - started < 2


@pytest.mark.parametrize("write", ["feedback", "retry"])
def test_a_photo_deleted_in_another_tab_just_after_an_api_write_is_a_404_not_a_server_error(
        user, monkeypatch, enqueued, write):
    """The answer or the retry is stored, then the photo is deleted before the view reads it back
    for its response: the client is told the photo is gone, as any later request would tell it."""
    photo = make_photo(user, status="done" if write == "feedback" else "failed",
                       label="kue_lapis" if write == "feedback" else None)
    service = "feedback_record" if write == "feedback" else "photo_retry"
    stored = getattr(services, service)

    def stored_then_deleted_in_another_tab(*args, **kwargs):
        result = stored(*args, **kwargs)
        services.photo_delete(Photo.objects.get(pk=photo.pk))
        return result

    monkeypatch.setattr(services, service, stored_then_deleted_in_another_tab)
    api = APIClient()
    api.force_authenticate(user)

    if write == "feedback":
        response = api.put(f"/api/photos/{photo.pk}/feedback/", {"label": "kue_lumpur"}, format="json")
    else:
        response = api.post(f"/api/photos/{photo.pk}/retry/")

    assert response.status_code == 404
    assert response.json()["error"]["message"] == "The photo no longer exists."


def test_an_upload_sent_again_with_its_idempotency_key_gets_its_photos_not_copies(api, user, enqueued):
    """Its answer was lost on the way (a dropped connection, a proxy's timeout): the client sends the
    same request again, and must not store the photos twice."""
    from classifier import tasks

    def upload(key, *classes):
        files = [upload_of(sample_photo(c)) for c in classes]
        return api.post("/api/photos/", {"files": files}, format="multipart", HTTP_IDEMPOTENCY_KEY=key)

    first = upload("3f2c9a4e-1", "kue_lapis", "kue_klepon")
    tasks.classify_photo(first.json()["results"][0]["photo"]["id"])
    again = upload("3f2c9a4e-1", "kue_lapis", "kue_klepon")
    other = upload("3f2c9a4e-2", "kue_lapis")  # a new upload of the same picture: a new photo

    ids = [r["photo"]["id"] for r in first.json()["results"]]
    assert first.status_code == again.status_code == 201
    assert [r["photo"]["id"] for r in again.json()["results"]] == ids
    assert again.json()["results"][0]["photo"]["prediction"]["label"] == "kue_lapis"  # as it is now
    assert Photo.objects.count() == 3
    assert other.json()["results"][0]["photo"]["id"] not in ids


def test_an_idempotency_key_sent_again_with_another_file_or_malformed_is_refused(api, user, enqueued):
    def upload(cls, key):
        return api.post("/api/photos/", {"files": [upload_of(sample_photo(cls))]}, format="multipart",
                        HTTP_IDEMPOTENCY_KEY=key)

    upload("kue_lapis", "k1")
    reused = upload("kue_klepon", "k1")
    malformed = upload("kue_klepon", "no spaces/please")

    assert reused.status_code == 400
    assert reused.json()["results"][0]["errors"] == [
        "This Idempotency-Key was already used for another file."]
    assert malformed.status_code == 400 and "Idempotency-Key" in error_of(malformed)["fields"]
    assert Photo.objects.count() == 1


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_the_same_upload_arriving_twice_at_once_is_stored_once(user, monkeypatch, enqueued, settings):
    """The browser sent it again while the first was still being stored: both meet at the database."""
    needs_postgresql()
    token = api_token(user)
    validate, together = images.validate_image, threading.Barrier(2)

    def validate_then_wait(upload):  # the real check, then both store at once
        checked = validate(upload)
        together.wait(10)
        return checked

    monkeypatch.setattr(images, "validate_image", validate_then_wait)
    answers = []

    def send():
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
        answers.append(client.post("/api/photos/", {"files": [upload_of(sample_photo())]}, format="multipart",
                                   HTTP_IDEMPOTENCY_KEY="same-upload"))
        connections.close_all()

    threads = [threading.Thread(target=send) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert [a.status_code for a in answers] == [201, 201]
    assert len({a.json()["results"][0]["photo"]["id"] for a in answers}) == 1
    assert Photo.objects.count() == 1
    assert len(os.listdir(os.path.join(settings.MEDIA_ROOT, "photos"))) == 1  # the other's file is gone
