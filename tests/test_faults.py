"""Faults, with real processes: a worker killed mid-task, the broker down during an upload, the
database gone for a moment, broken model files, a crashing training run. Nothing is lost, nothing
is done twice, and the service comes back by itself."""

import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import numpy as np
import pytest
import requests
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from classifier import inference, retraining, services, tasks
from classifier.models import ModelVersion, Photo, TrainingRun
from tests.conftest import PHOTOS, api_token, sample_photo
from tests.processes import (
    SilentServer,
    TcpProxy,
    app_env,
    database_url,
    free_port,
    require_services,
    start_redis,
    start_web,
    start_worker,
    wait_for,
)
from training import runtime

# The sweep: anything waiting longer than a second is sent again, checked every second (so a photo
# in a worker's hands may be sent twice, which the tests allow: a worker would refuse that setting).
SWEEP = {"REQUEUE_AFTER_S": "1", "SWEEP_INTERVAL_S": "1", "CELERY_SKIP_CHECKS": "1"}


def photos_of_every_class() -> list[SimpleUploadedFile]:
    return [SimpleUploadedFile(p.name, p.read_bytes()) for p in sorted(PHOTOS.glob("*/*.jpg"))]


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_worker_killed_mid_task_loses_nothing_and_classifies_each_photo_once(settings, tmp_path, user):
    require_services()
    env = app_env(settings, tmp_path, **SWEEP)
    first = start_worker(env, tmp_path / "first.log", "--concurrency=1")
    photos = [services.photo_create(owner=user, upload=u) for u in photos_of_every_class()]
    try:
        assert wait_for(lambda: Photo.objects.filter(status="done").exists(), 90, 0.01), first.tail()
        assert wait_for(lambda: Photo.objects.filter(status="processing").exists(), 30, 0.002), first.tail()
        first.kill()  # SIGKILL, worker and pool alike: the message in flight is never acknowledged
    finally:
        first.kill()
    in_flight = set(Photo.objects.filter(status="processing").values_list("pk", flat=True))
    left = Photo.objects.exclude(status="done").count()

    second = start_worker(env, tmp_path / "second.log", "--concurrency=1", "--beat",
                          "--schedule", str(tmp_path / "beat-schedule"))
    try:
        finished = wait_for(lambda: Photo.objects.filter(status="done").count() == len(photos), 120)
    finally:
        second.stop()

    assert in_flight and left > 0
    assert finished, second.tail()
    for photo in photos:
        assert photo.predictions.count() == 1


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_an_upload_while_the_broker_is_down_is_kept_queued_and_classified_when_it_is_back(
        settings, tmp_path, user):
    require_services()
    broker_port, web_port = free_port(), free_port()
    env = app_env(settings, tmp_path, CELERY_BROKER_URL=f"redis://127.0.0.1:{broker_port}/0", **SWEEP)
    token = api_token(user)
    web = start_web(env, tmp_path / "web.log", web_port)
    try:
        with sample_photo().open("rb") as f:  # no broker at all: nothing listens on its port
            response = requests.post(f"http://127.0.0.1:{web_port}/api/photos/", files={"files": f},
                                     headers={"Authorization": f"Token {token}"}, timeout=30)
        assert response.status_code == 201, web.tail()
        photo = response.json()["results"][0]["photo"]
        assert photo["status"] == "queued" and Photo.objects.get(pk=photo["id"]).status == "queued"

        broker = start_redis(broker_port, tmp_path / "redis.log")
        worker = start_worker(env, tmp_path / "worker.log", "--pool=solo", "--beat",
                              "--schedule", str(tmp_path / "beat-schedule"))
        try:
            done = wait_for(lambda: Photo.objects.get(pk=photo["id"]).status == "done", 90)
            assert done, worker.tail()
        finally:
            worker.stop()
            broker.stop()
    finally:
        web.stop()
    assert Photo.objects.get(pk=photo["id"]).predictions.count() == 1


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
@pytest.mark.parametrize("redis", ["refusing", "hanging"])
def test_with_redis_down_or_hung_pages_and_the_api_answer_and_uploads_wait_queued(
        settings, tmp_path, user, redis):
    """One Redis is the cache (the throttles' counters) and the broker, as in docker-compose.yml.
    Down, or hung without a word, it must not take the site with it: pages and API calls answer
    (the throttles count nothing meanwhile) and an upload is stored, queued for the sweep."""
    require_services()
    silent = SilentServer() if redis == "hanging" else None
    redis_url, web_port = f"redis://127.0.0.1:{silent.port if silent else free_port()}", free_port()
    env = app_env(settings, tmp_path, CACHE_URL=f"{redis_url}/1", CELERY_BROKER_URL=f"{redis_url}/0")
    token = api_token(user)
    base, auth = f"http://127.0.0.1:{web_port}", {"Authorization": f"Token {token}"}
    web = start_web(env, tmp_path / "web.log", web_port)
    browser = requests.Session()
    try:
        started = time.monotonic()
        with sample_photo().open("rb") as f:
            upload = requests.post(f"{base}/api/photos/", files={"files": f}, headers=auth, timeout=30)
        listing = requests.get(f"{base}/api/photos/", headers=auth, timeout=30)
        photo_id = upload.json()["results"][0]["photo"]["id"] if upload.status_code == 201 else 0
        waited = requests.get(f"{base}/api/photos/{photo_id}/?wait=1", headers=auth, timeout=30)
        browser.get(f"{base}/signup/", timeout=30)
        signup = browser.post(f"{base}/signup/", timeout=30, allow_redirects=False, data={
            "username": "citra", "password1": "onde-onde-wijen-9", "password2": "onde-onde-wijen-9",
            "csrfmiddlewaretoken": browser.cookies["csrftoken"]})
        browser.get(f"{base}/upload/", timeout=30)
        with sample_photo("kue_putri_salju").open("rb") as f:
            page_upload = browser.post(f"{base}/upload/", files={"photos": f}, timeout=30,
                                       allow_redirects=False,
                                       data={"csrfmiddlewaretoken": browser.cookies["csrftoken"]})
        home = browser.get(f"{base}/", timeout=30)
        elapsed = time.monotonic() - started
    finally:
        web.stop()
        if silent:
            silent.stop()

    assert upload.status_code == 201, web.tail()
    assert listing.status_code == 200 and listing.json()["count"] == 1
    assert waited.status_code == 200 and waited.json()["status"] == "queued"
    assert signup.status_code == 302 and page_upload.status_code == 302, web.tail()
    assert home.status_code == 200 and "Signed in as <strong>citra</strong>" in home.text
    assert sorted(Photo.objects.values_list("owner__username", "status")) == [
        ("ayu", "queued"), ("citra", "queued")]
    # a hung Redis costs the first cache call its timeout (1 s), then the cache is left alone for
    # a while; each publish gives up after three tries of 2 s
    assert elapsed < (20 if silent else 10)


@pytest.fixture
def redis_cache(settings, monkeypatch):
    """Django's cache on a Redis at `url` (this process's own cache objects, and its own record of
    an outage, restored afterwards)."""
    from cakesite import cache as fail_open

    monkeypatch.setattr(fail_open, "down_until", 0.0)

    def at(url: str) -> None:
        settings.CACHES = {"default": {"BACKEND": "cakesite.cache.RedisCache", "LOCATION": url,
                                       "OPTIONS": {"socket_timeout": 1, "socket_connect_timeout": 1}}}
    return at


def test_after_the_cache_hangs_once_the_other_threads_do_not_wait_for_it_too(redis_cache):
    """Django gives each thread its own cache object: the outage is known to them all at once."""
    from django.core.cache import cache

    silent = SilentServer()
    redis_cache(f"redis://127.0.0.1:{silent.port}/0")

    def timed_get(_):
        started = time.monotonic()
        assert cache.get("throttle_user_1") is None  # nothing counted
        return time.monotonic() - started

    try:
        first = timed_get(0)
        with ThreadPoolExecutor(4) as threads:
            others = list(threads.map(timed_get, range(4)))
    finally:
        silent.stop()

    assert 0.9 < first < 3  # the socket timeout
    assert max(others) < 0.1


def test_an_email_limits_count_expires_even_when_its_key_lapsed_just_before_it_was_counted(
        redis_cache, monkeypatch):
    """Django's Redis incr asks whether the key exists, then INCRs it: a key that expired in between
    comes back from INCR without an expiry, and the address would get no more links, ever."""
    import redis
    from django.core.cache import cache

    from classifier import services

    require_services()
    broker = urlsplit(os.environ["CELERY_BROKER_URL"])
    url = f"redis://{broker.hostname}:{broker.port or 6379}{broker.path or '/0'}"  # (the key is unique)
    redis_cache(url)
    key = services.emails_to(f"{time.time_ns()}@example.org", "reset")
    monkeypatch.setattr(cache, "add", lambda *args, **kwargs: False)  # it was there, and then it lapsed
    monkeypatch.setattr(redis.Redis, "exists", lambda self, *keys: len(keys))

    assert services.one_more(key, 3)

    monkeypatch.undo()
    assert 3500 < redis.Redis.from_url(url).ttl(cache.make_key(key)) <= 3600
    cache.delete(key)


def test_a_cache_with_a_wrong_password_is_an_error_not_a_silent_outage(redis_cache):
    """A mistake in CACHE_URL would otherwise switch the throttles off for good, unnoticed."""
    from django.core.cache import cache
    from redis.exceptions import AuthenticationError

    require_services()
    broker = urlsplit(os.environ["CELERY_BROKER_URL"])
    redis_cache(f"redis://nobody:wrong@{broker.hostname}:{broker.port or 6379}/0")

    with pytest.raises(AuthenticationError):
        cache.get("throttle_user_1")


def four_photos() -> list[SimpleUploadedFile]:
    return [SimpleUploadedFile(f"{i}.jpg", sample_photo().read_bytes()) for i in range(4)]


def files_under(folder) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
@pytest.mark.parametrize("fault", ["the disk is full", "the database is gone"])
def test_an_upload_the_server_fails_midway_says_which_photos_were_stored(
        settings, user, enqueued, monkeypatch, fault):
    """A 20-photo upload cut off after a few: answered as one error, the client would send the
    stored ones again. It says which are stored, and which to send again."""
    from django import db
    from django.core.files.storage import FileSystemStorage

    if fault == "the database is gone":
        import psycopg

        require_services()
        photo_save = Photo.save

        def save_cut_off_at_the_third(photo, *args, **kwargs):
            if Photo.objects.count() == 2:
                backend = db.connection.connection.info.backend_pid
                with psycopg.connect(database_url(), autocommit=True) as other:
                    other.execute("select pg_terminate_backend(%s)", [backend])
            return photo_save(photo, *args, **kwargs)

        monkeypatch.setattr(Photo, "save", save_cut_off_at_the_third)
    else:
        storage_save, saved = FileSystemStorage._save, []

        def disk_full_at_the_third(storage, name, content):
            if len(saved) == 4:  # two files (the photo, its thumbnail) for each photo stored
                raise OSError(28, "No space left on device")
            saved.append(name)
            return storage_save(storage, name, content)

        monkeypatch.setattr(FileSystemStorage, "_save", disk_full_at_the_third)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {api_token(user)}")

    response = api.post("/api/photos/", {"files": four_photos()}, format="multipart")
    db.close_old_connections()  # what the end of a request does (the test client does not)

    assert response.status_code == 201
    results = response.json()["results"]
    stored = [r["photo"]["id"] for r in results if r["photo"]]
    assert [r["file"] for r in results] == ["0.jpg", "1.jpg", "2.jpg", "3.jpg"]
    assert len(stored) == 2 and [r["errors"] for r in results[2:]] == [[services.NOT_STORED]] * 2
    assert sorted(Photo.objects.values_list("pk", flat=True)) == sorted(stored) == sorted(enqueued)
    assert len(files_under(settings.MEDIA_ROOT)) == 4  # the two stored photos' files, no orphan


def commits_unanswered(patch) -> None:
    """From now on (within `patch`'s context) the database commits, and the answer is lost on the
    way: the connection drops."""
    from django.db import OperationalError, connection

    commit = connection.commit

    def committed_unanswered():
        commit()
        raise OperationalError("server closed the connection unexpectedly")

    patch.setattr(connection, "commit", committed_unanswered)


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_photo_whose_commit_went_through_unanswered_is_stored(settings, user, enqueued, monkeypatch):
    """The database committed the row and the answer was lost on the way (the connection dropped):
    the photo was stored, so the upload answers with it (not a 503 that has the user send it again),
    keeps its files and sends it to the worker (were the row not there, its files would be removed);
    a prediction keeps its heat map."""
    from django.db import OperationalError

    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {api_token(user)}")
    with monkeypatch.context() as patch:
        commits_unanswered(patch)
        upload = SimpleUploadedFile("a.jpg", sample_photo().read_bytes())
        response = api.post("/api/photos/", {"files": [upload]}, format="multipart")

    photo = Photo.objects.get()
    assert response.status_code == 201 and response.json()["results"][0]["photo"]["id"] == photo.pk
    assert enqueued == [photo.pk]
    assert photo.status == "queued" and photo.image.storage.exists(photo.image.name)
    assert photo.thumbnail.storage.exists(photo.thumbnail.name)
    assert len(files_under(settings.MEDIA_ROOT)) == 2

    with monkeypatch.context() as patch, pytest.raises(OperationalError):  # the worker's result, the same way
        commits_unanswered(patch)
        services.prediction_record(photo=photo, version_id=ModelVersion.objects.get(is_active=True).pk,
                                   probabilities={"kue_lapis": 0.9}, label="kue_lapis", confidence=0.9,
                                   inference_ms=5.0, heatmap=np.ones((7, 7), dtype="float32"))

    heatmap = photo.predictions.get().heatmap
    assert heatmap and heatmap.storage.exists(heatmap.name) and len(files_under(settings.MEDIA_ROOT)) == 3


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_photo_stored_unanswered_whose_send_the_broker_refuses_is_still_the_answer(user, monkeypatch):
    """As after an answered commit: a send the broker refuses (Redis out of memory) leaves the
    stored photo queued for the sweep, and the upload answers with it, not with a 500."""
    import redis

    def refused(*_args, **_kwargs):
        raise redis.exceptions.ResponseError("OOM command not allowed when used memory > 'maxmemory'.")

    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {api_token(user)}")
    monkeypatch.setattr(tasks.classify_photo, "apply_async", refused)
    with monkeypatch.context() as patch:
        commits_unanswered(patch)
        upload = SimpleUploadedFile("a.jpg", sample_photo().read_bytes())
        response = api.post("/api/photos/", {"files": [upload]}, format="multipart")

    assert response.status_code == 201
    assert response.json()["results"][0]["photo"]["id"] == Photo.objects.get(status="queued").pk


@pytest.mark.django_db
def test_an_error_on_the_server_side_is_a_page_on_the_site_and_the_api_error_shape_under_api(
        client, user, enqueued, monkeypatch, settings):
    from django.core.files.storage import FileSystemStorage

    def storage_broken(*_args):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(FileSystemStorage, "_save", storage_broken)
    client.force_login(user)
    client.raise_request_exception = False  # as a server answers: with handler500

    api = client.post("/api/photos/", {"files": four_photos()})
    page = client.post("/upload/", {"photos": four_photos()})

    assert api.status_code == 500 and api.json()["error"]["code"] == "server_error"
    assert "it has been logged" in api.json()["error"]["message"]
    assert page.status_code == 500 and "Something went wrong" in page.content.decode()
    assert 'href="/accounts/login/"' not in page.content.decode()  # (drawn without the user: no Sign in)
    assert Photo.objects.count() == 0 and files_under(settings.MEDIA_ROOT) == []


def test_a_path_in_a_503s_log_line_cannot_start_a_forged_line(rf, caplog):
    """Logged as Django logs a request's path: a decoded %0A in it is written as \\n."""
    import errno

    from django.db import OperationalError

    from classifier.middleware import ServiceUnavailableMiddleware, full_disk_refusal

    request = rf.get("/accounts/email/x%0A2026-12-07 ERROR forged/")
    middleware = ServiceUnavailableMiddleware(lambda _: None)
    database = middleware.process_exception(request, OperationalError("gone"))
    disk = full_disk_refusal(request, OSError(errno.ENOSPC, "No space left on device"))

    logged = [record.getMessage() for record in caplog.records]
    assert database.status_code == disk.status_code == 503 and len(logged) == 2
    assert all("\n" not in line and "/accounts/email/x\\n2026-12-07 ERROR forged/" in line for line in logged)


@pytest.mark.django_db
def test_an_upload_onto_a_full_disk_is_refused_for_now_and_stores_nothing(
        client, user, enqueued, disk_full_for, settings, caplog):
    """Not "something went wrong": the user learns to come back later, the operator that the disk
    is full (logged as critical)."""
    disk_full_for("photos/")
    client.force_login(user)

    api = client.post("/api/photos/", {"files": four_photos()})
    page = client.post("/upload/", {"photos": four_photos()})

    assert (api.status_code, api["Retry-After"], api.json()["error"]["code"]) == (503, "300", "unavailable")
    assert api.json()["error"]["message"] == ("The server has no room to store more just now; nothing you "
                                              "sent was stored. Try again later.")
    assert page.status_code == 503 and "no room to store more just now" in page.content.decode()
    assert Photo.objects.count() == 0 and files_under(settings.MEDIA_ROOT) == [] and enqueued == []
    assert [r.levelname for r in caplog.records if "disk full for POST" in r.getMessage()] == ["CRITICAL"] * 2


@pytest.mark.django_db
def test_a_large_photo_sent_by_the_pages_form_onto_a_full_disk_is_the_same_503(
        user, enqueued, settings, monkeypatch, caplog):
    """Django spools a large upload (over FILE_UPLOAD_MAX_MEMORY_SIZE, most phones' photos) to a
    temporary file, which the form's CSRF check reads before the view: the full disk is met there."""
    from django.core.files.uploadhandler import TemporaryFileUploadHandler
    from django.test import Client
    from django.urls import reverse

    settings.FILE_UPLOAD_MAX_MEMORY_SIZE = 10

    def full(*_args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(TemporaryFileUploadHandler, "receive_data_chunk", full)
    browser = Client(enforce_csrf_checks=True, raise_request_exception=False)
    browser.force_login(user)
    browser.get(reverse("upload"))

    page = browser.post(reverse("upload"), {"photos": four_photos()[:1],
                                            "csrfmiddlewaretoken": browser.cookies["csrftoken"].value})

    assert (page.status_code, page["Retry-After"]) == (503, "300")
    assert "no room to store more just now" in page.content.decode()
    assert Photo.objects.count() == 0 and enqueued == []
    # logged once, as critical, with its traceback (not again by Django, as an error)
    said = [(r.levelname, bool(r.exc_info)) for r in caplog.records if "/upload/" in r.getMessage()]
    assert said == [("CRITICAL", True)]


@pytest.mark.django_db
def test_a_photo_the_disk_takes_only_in_part_leaves_no_part_of_it(client, user, enqueued, settings):
    """A real write failing midway (the process may write at most half the photo: the kernel refuses
    the rest as it would on a full disk): the upload is refused and nothing of it stays on disk."""
    import resource

    photo = sample_photo().read_bytes()
    client.force_login(user)
    client.raise_request_exception = False
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (len(photo) // 2, hard))  # Python ignores SIGXFSZ
    try:
        response = client.post("/api/photos/", {"files": [SimpleUploadedFile("a.jpg", photo)]})
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))

    assert response.status_code == 500 and Photo.objects.count() == 0 and enqueued == []
    assert files_under(settings.MEDIA_ROOT) == []


def test_a_file_never_replaces_one_that_took_its_name_while_it_was_written(settings):
    from django.core.files.base import ContentFile
    from django.core.files.storage import default_storage

    first = default_storage.save("photos/a.jpg", ContentFile(b"first"))
    # what a second writer does when the name was free as it started
    second = default_storage._save("photos/a.jpg", ContentFile(b"second"))

    assert first == "photos/a.jpg" and second != first
    assert default_storage.open(first).read() == b"first" and default_storage.open(second).read() == b"second"
    assert sorted(files_under(settings.MEDIA_ROOT)) == sorted(p.split("/")[1] for p in (first, second))


def postgres_address(settings) -> tuple[str, int]:
    """Where the test database's server listens, for a proxy in front of it."""
    return (settings.DATABASES["default"]["HOST"] or "127.0.0.1",
            int(settings.DATABASES["default"]["PORT"] or 5432))


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_while_the_database_is_unreachable_requests_get_a_clear_503_and_then_it_recovers(
        settings, tmp_path, user):
    require_services()
    proxy = TcpProxy(postgres_address(settings))
    proxy.start()
    port = free_port()
    env = app_env(settings, tmp_path, DATABASE_URL=database_url(port=proxy.port), DB_CONN_MAX_AGE="60")
    token = api_token(user)
    web = start_web(env, tmp_path / "web.log", port)
    base, auth = f"http://127.0.0.1:{port}", {"Authorization": f"Token {token}"}

    def at_once(count: int) -> list[int]:
        """Status codes of `count` API requests sent together: every server thread takes some."""
        with ThreadPoolExecutor(count) as pool:
            return list(pool.map(lambda _: requests.get(f"{base}/api/photos/", headers=auth,
                                                        timeout=30).status_code, range(count)))

    try:
        before = at_once(12)  # each of the server's threads now holds a database connection
        proxy.stop()  # the database goes away, connections and all
        api = requests.get(f"{base}/api/photos/", headers=auth, timeout=30)
        page = requests.get(f"{base}/", timeout=30)
        proxy.start()
        after = at_once(12)  # no thread may answer from the connection that was cut
    finally:
        proxy.stop()
        web.stop()

    assert before == [200] * 12, web.tail()
    assert api.status_code == 503 and api.json()["error"]["code"] == "unavailable"
    assert api.headers["Retry-After"] == "5"
    assert page.status_code == 503 and "briefly unavailable" in page.text
    assert after == [200] * 12, web.tail()
    logged = (tmp_path / "web.log").read_text()
    assert "database unavailable for GET /api/photos/" in logged  # once, with its cause
    assert "Service Unavailable: /api/photos/" not in logged  # (not again by django.request)


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_database_that_hangs_instead_of_refusing_gets_the_same_503_in_bounded_time(
        settings, tmp_path, user):
    require_services()
    silent, port = SilentServer(), free_port()
    env = app_env(settings, tmp_path, DATABASE_URL=database_url(port=silent.port), DB_CONNECT_TIMEOUT="2")
    token = api_token(user)
    web = start_web(env, tmp_path / "web.log", port)
    try:
        started = time.monotonic()
        api = requests.get(f"http://127.0.0.1:{port}/api/photos/", timeout=30,
                           headers={"Authorization": f"Token {token}"})
        page = requests.get(f"http://127.0.0.1:{port}/", timeout=30)
        elapsed = time.monotonic() - started
    finally:
        web.stop()
        silent.stop()

    assert api.status_code == 503 and api.json()["error"]["code"] == "unavailable", web.tail()
    assert page.status_code == 503 and "briefly unavailable" in page.text
    assert elapsed < 10  # each request gave up connecting after DB_CONNECT_TIMEOUT (2 s)


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_worker_whose_database_connection_was_cut_classifies_the_next_photo_on_a_new_one(
        settings, tmp_path, user):
    """The worker keeps its database connection from photo to photo; when the database cuts it, the
    next photo is retried on a new connection, not failed or left queued (no sweep runs here)."""
    require_services()
    proxy = TcpProxy(postgres_address(settings))
    proxy.start()
    env = app_env(settings, tmp_path, DATABASE_URL=database_url(port=proxy.port))
    worker = start_worker(env, tmp_path / "worker.log", "--concurrency=1")
    try:
        first = services.photo_create(owner=user, upload=SimpleUploadedFile(
            "a.jpg", sample_photo().read_bytes()))
        assert wait_for(lambda: Photo.objects.get(pk=first.pk).status == "done", 90), worker.tail()
        proxy.stop()  # every connection through the proxy is cut...
        proxy.start()  # ...and the database answers again at once
        second = services.photo_create(owner=user, upload=SimpleUploadedFile(
            "b.jpg", sample_photo("kue_klepon").read_bytes()))
        done = wait_for(lambda: Photo.objects.get(pk=second.pk).status == "done", 60)
    finally:
        worker.stop()
        proxy.stop()

    assert done, worker.tail()
    assert second.predictions.count() == 1


def broken_copy(settings, tmp_path, damage: str) -> ModelVersion:
    """A registered version whose files were then damaged: a 'missing' or 'corrupt' network, or one
    'changed' in place (another head: it loads and runs, but it is not what was registered)."""
    settings.MODELS_DIR = tmp_path / "models"
    shutil.copytree(settings.BASE_DIR / "models" / "kue-mobilenetv2", settings.MODELS_DIR / "broken")
    shutil.copytree(settings.BASE_DIR / "models" / "kue-mobilenetv2",
                    settings.MODELS_DIR / "kue-mobilenetv2")
    version = services.model_version_register(name=f"broken-{damage}", path="broken")
    network = settings.MODELS_DIR / "broken" / "model.tflite"
    if damage == "missing":
        network.unlink()
        (settings.MODELS_DIR / "broken" / "model.keras").unlink()
    elif damage == "corrupt":
        network.write_bytes(network.read_bytes()[:5000])
    else:
        head = dict(np.load(settings.MODELS_DIR / "broken" / "head.npz"))  # (a later cake favoured)
        np.savez(settings.MODELS_DIR / "broken" / "head.npz", kernel=head["kernel"],
                 bias=head["bias"] + np.linspace(0, 3, len(head["bias"]), dtype=head["bias"].dtype))
        runtime.check(version.folder)  # (it still loads and runs)
    return version


@pytest.mark.django_db
@pytest.mark.parametrize("damage", ["missing", "corrupt", "changed"])
def test_a_version_with_broken_files_cannot_be_activated(settings, tmp_path, admin_client, damage):
    active = ModelVersion.objects.get(is_active=True)
    broken = broken_copy(settings, tmp_path, damage)

    with pytest.raises(ValidationError, match="cannot be activated: its model files do not load"):
        services.model_version_activate(broken)
    page = admin_client.post(f"/staff/models/{broken.pk}/activate/", follow=True).content.decode()

    assert "cannot be activated" in page
    assert "the files differ from those it was registered with" in page  # (not "BadZipFile: ...")
    assert ("(model.keras, model.tflite not there): put its own files back" in page) == (damage == "missing")
    assert ModelVersion.objects.get(is_active=True) == active


@pytest.mark.django_db
def test_a_worker_whose_model_files_broke_fails_each_photo_without_loading_them(
        settings, tmp_path, monkeypatch):
    """The files are compared with those registered before they are loaded: a network that no longer
    loads as LiteRT falls back to Keras, seconds for each photo of a backlog, only to be refused."""
    monkeypatch.setattr(inference, "_loaded", None)
    broken = broken_copy(settings, tmp_path, "corrupt")
    loads = []
    load = runtime.load
    monkeypatch.setattr(runtime, "load", lambda *args: loads.append(1) or load(*args))

    for _ in range(3):
        with pytest.raises(inference.ModelUnavailable, match="files differ from those it was registered"):
            inference.classify(broken.pk, str(PHOTOS / "kue_lapis" / "108.jpg"))

    assert loads == []


@pytest.mark.django_db
@pytest.mark.parametrize("damage", ["corrupt", "changed"])
def test_a_worker_keeps_serving_its_model_when_the_active_one_breaks(settings, tmp_path, user, monkeypatch,
                                                                     enqueued, damage):
    monkeypatch.setattr(inference, "_loaded", None)
    good = ModelVersion.objects.get(is_active=True)
    broken = broken_copy(settings, tmp_path, damage)
    inference.warm_up()  # the process serves the good version
    ModelVersion.objects.filter(pk=good.pk).update(is_active=False)  # files broke after activation
    ModelVersion.objects.filter(pk=broken.pk).update(is_active=True)
    photo = services.photo_create(owner=user, upload=SimpleUploadedFile("l.jpg", sample_photo().read_bytes()))

    tasks.classify_photo(photo.pk)

    photo.refresh_from_db()
    assert photo.status == "done" and photo.predictions.get().model_version == good


@pytest.mark.django_db
def test_a_fresh_worker_with_only_a_broken_model_fails_photos_with_a_clear_reason(settings, tmp_path, user,
                                                                                  monkeypatch, enqueued):
    monkeypatch.setattr(inference, "_loaded", None)
    broken = broken_copy(settings, tmp_path, "missing")
    ModelVersion.objects.update(is_active=False)
    ModelVersion.objects.filter(pk=broken.pk).update(is_active=True)
    photo = services.photo_create(owner=user, upload=SimpleUploadedFile("l.jpg", sample_photo().read_bytes()))

    inference.warm_up()  # logs the problem instead of crashing the worker
    tasks.classify_photo(photo.pk)

    photo.refresh_from_db()
    assert photo.status == "failed" and "model cannot be loaded" in photo.error


@pytest.mark.django_db
def test_photos_that_waited_for_a_model_mended_in_place_are_classified_once_it_serves(
        settings, tmp_path, user, monkeypatch, enqueued):
    """The active version's files restored where they were (no activation, no worker restart): the
    first photo classified with them sends the ones that failed meanwhile again."""
    monkeypatch.setattr(inference, "_loaded", None)
    monkeypatch.setattr(inference, "_unavailable", False)
    broken = broken_copy(settings, tmp_path, "missing")
    ModelVersion.objects.update(is_active=False)
    ModelVersion.objects.filter(pk=broken.pk).update(is_active=True)
    waited, later = (services.photo_create(owner=user, upload=SimpleUploadedFile(
        f"{i}.jpg", sample_photo().read_bytes())) for i in range(2))
    sent = []
    monkeypatch.setattr(tasks.classify_photos_awaiting_model, "apply_async", lambda *a, **k: sent.append(1))
    tasks.classify_photo(waited.pk)
    assert Photo.objects.get(pk=waited.pk).awaits_model and sent == []

    for name in ("model.tflite", "model.keras"):  # mended
        shutil.copy(settings.BASE_DIR / "models" / "kue-mobilenetv2" / name, settings.MODELS_DIR / "broken")
    tasks.classify_photo(later.pk)

    assert Photo.objects.get(pk=later.pk).status == "done" and sent == [1]
    assert tasks.classify_photos_awaiting_model() == "1 photo" and enqueued == [waited.pk]
    tasks.classify_photo(waited.pk)
    assert Photo.objects.get(pk=waited.pk).status == "done" and sent == [1]  # (said once)


@pytest.mark.django_db
def test_a_crashing_training_run_is_marked_failed_and_the_active_model_stays(admin_user, monkeypatch):
    active = ModelVersion.objects.get(is_active=True)
    monkeypatch.setattr(tasks.train_model, "apply_async", lambda *a, **k: None)
    run = services.training_run_start(user=admin_user)

    def crash(run):
        raise MemoryError("out of memory while refitting")

    monkeypatch.setattr(retraining, "execute", crash)
    tasks.train_model(run.pk)

    run.refresh_from_db()
    assert run.status == "failed" and "MemoryError: out of memory while refitting" in run.error
    assert ModelVersion.objects.get(is_active=True) == active and ModelVersion.objects.count() == 1


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
@pytest.mark.parametrize("cut", ["during the run", "as it ends"])
def test_a_run_whose_database_connection_was_cut_still_records_how_it_ended(admin_user, monkeypatch, cut):
    """A long run's connection may be cut meanwhile (a database restart): its last write then goes
    through on a new connection, instead of leaving the run `running` and every new run refused."""
    import psycopg
    from django.db import connection

    require_services()
    monkeypatch.setattr(tasks.train_model, "apply_async", lambda *a, **k: None)
    run = services.training_run_start(user=admin_user)
    active = ModelVersion.objects.get(is_active=True)

    def cut_connection_then(run):
        with psycopg.connect(database_url(), autocommit=True) as other:
            other.execute("select pg_terminate_backend(%s)", [connection.connection.info.backend_pid])
        if cut == "during the run":
            ModelVersion.objects.count()  # the run's next query finds the connection gone
        return active

    monkeypatch.setattr(retraining, "execute", cut_connection_then)
    tasks.train_model(run.pk)

    run.refresh_from_db()
    if cut == "during the run":
        assert run.status == "failed" and "OperationalError" in run.error
    else:
        assert run.status == "succeeded" and run.result_version == active


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_runs_progress_after_a_long_step_goes_on_a_new_connection_when_the_old_one_was_cut(
        admin_user, monkeypatch):
    """A full run's epoch takes minutes, over which a database restart or failover cuts its
    connection: the run goes on, as a request after it would, instead of failing at its next epoch."""
    import psycopg
    from django.db import connection

    require_services()
    monkeypatch.setattr(tasks.train_model, "apply_async", lambda *a, **k: None)
    run = services.training_run_start(user=admin_user)
    services.training_run_begin(run, "task-1")
    with psycopg.connect(database_url(), autocommit=True) as other:  # while the epoch ran
        other.execute("select pg_terminate_backend(%s)", [connection.connection.info.backend_pid])

    retraining.progress(run, "fine-tuning on the base and user photos: epoch 1 of 8", 35)

    run.refresh_from_db()
    assert (run.status, run.progress) == ("running", 35) and run.stage.endswith("epoch 1 of 8")


@pytest.mark.django_db
def test_a_run_whose_worker_died_is_marked_failed_when_the_broker_hands_its_task_back(admin_user, caplog):
    """With acks_late and reject_on_worker_lost the broker redelivers the task of a killed worker;
    the run it finds running will never finish, and would hold off new runs until the sweep."""
    run = services.training_run_start(user=admin_user)
    assert services.training_run_begin(run, "task-1")  # the worker that then died

    tasks.train_model.push_request(id="task-1", delivery_info={"redelivered": True})
    try:
        assert tasks.train_model(run.pk) == "worker lost"
    finally:
        tasks.train_model.pop_request()

    run.refresh_from_db()
    assert run.status == "failed" and "stopped during the run" in run.error
    assert f"training run {run.pk}: its worker process died during the run" in caplog.text  # (which run)
    assert services.training_run_start(user=admin_user).status == "queued"  # the way is free again


@pytest.mark.django_db
@pytest.mark.parametrize("delivery", [
    {"id": "task-2", "delivery_info": {"redelivered": False}},  # the sweep's fresh copy
    {"id": "task-2", "delivery_info": {"redelivered": True}},  # that copy, handed back by another worker
])
def test_another_delivery_of_a_run_that_is_running_fine_changes_nothing(admin_user, delivery):
    run = services.training_run_start(user=admin_user)
    assert services.training_run_begin(run, "task-1")

    tasks.train_model.push_request(**delivery)
    try:
        assert tasks.train_model(run.pk) == "not queued"
    finally:
        tasks.train_model.pop_request()

    run.refresh_from_db()
    assert run.status == "running"


@pytest.mark.django_db
def test_a_run_marked_failed_meanwhile_is_not_turned_into_a_success(admin_user):
    run = services.training_run_start(user=admin_user)
    services.training_run_begin(run, "task-1")
    services.training_run_fail(run, "The training worker stopped during the run.")

    services.training_run_succeed(run, ModelVersion.objects.get(is_active=True))

    run.refresh_from_db()
    assert run.status == "failed" and run.result_version is None


@pytest.mark.django_db
@pytest.mark.parametrize("backlog", [0, 40_000])
def test_the_sweep_resends_what_waited_too_long_and_only_that(
        settings, user, admin_user, monkeypatch, backlog):
    """While the queue holds a backlog a queued photo most likely waits in it: it is sent again only
    after ten times as long (one never sent must not wait for ever); one a worker started and lost,
    at once."""
    from datetime import timedelta

    from django.utils import timezone

    sent = []
    for task in (tasks.classify_photo, tasks.train_model):  # the broker boundary
        monkeypatch.setattr(task, "apply_async", lambda args, task=task, **_: sent.append((task.name, *args)))
    monkeypatch.setattr(tasks, "messages_waiting", lambda queue: backlog if queue == "celery" else None)
    settings.REQUEUE_AFTER_S = 60
    old, _fresh, done, waited, never_sent = (services.photo_create(owner=user, upload=SimpleUploadedFile(
        f"{i}.jpg", sample_photo().read_bytes())) for i in range(5))
    Photo.objects.filter(pk=old.pk).update(status="processing", updated=timezone.now() - timedelta(minutes=5))
    Photo.objects.filter(pk=done.pk).update(status="done", updated=timezone.now() - timedelta(minutes=5))
    Photo.objects.filter(pk=waited.pk).update(updated=timezone.now() - timedelta(minutes=5))
    Photo.objects.filter(pk=never_sent.pk).update(updated=timezone.now() - timedelta(minutes=11))
    lost = TrainingRun.objects.create(started_by=admin_user, base_version=ModelVersion.objects.get(),
                                      status="running", started=timezone.now() - timedelta(hours=3))
    waiting = TrainingRun.objects.create(started_by=admin_user, base_version=ModelVersion.objects.get(),
                                         sent=timezone.now() - timedelta(minutes=5))  # the trainer is down

    said = tasks.requeue_stuck()
    again = list(sent)
    tasks.requeue_stuck()  # right after: nothing is sent twice in a row

    # the fresh photo waited less than a minute and the done one is done: neither is resent
    resent = [old.pk, waited.pk, never_sent.pk] if backlog == 0 else [old.pk, never_sent.pk]
    assert again == [*(("classifier.tasks.classify_photo", pk) for pk in resent),
                     ("classifier.tasks.train_model", waiting.pk)]
    assert sent == again
    # the worker's log names them
    photos = ", ".join(map(str, resent))
    assert said.startswith(f"{len(resent)} photos ({photos}), 1 training run ({waiting.pk}),")
    assert Photo.objects.get(pk=old.pk).status == "queued"
    lost.refresh_from_db()
    assert lost.status == "failed" and "stopped during the run" in lost.error


@pytest.mark.django_db
@pytest.mark.parametrize("waiting", [0, 1, None])  # None: the broker cannot be asked
def test_a_queued_run_is_not_resent_while_a_message_waits_in_the_training_queue(
        settings, admin_user, monkeypatch, waiting):
    """Its own message, most likely, waiting for a trainer that is down: one more a sweep would pile up."""
    from datetime import timedelta

    from django.utils import timezone

    sent = []
    monkeypatch.setattr(tasks.train_model, "apply_async", lambda args, **_: sent.append(args[0]))
    monkeypatch.setattr(tasks, "messages_waiting", lambda queue: waiting if queue == "celery.training" else 0)
    settings.REQUEUE_AFTER_S = 60
    run = TrainingRun.objects.create(started_by=admin_user, base_version=ModelVersion.objects.get(),
                                     sent=timezone.now() - timedelta(minutes=5))

    tasks.requeue_stuck()

    assert sent == ([] if waiting else [run.pk])


@pytest.mark.django_db
def test_photos_lost_more_than_once_are_resent_one_a_sweep(settings, user, monkeypatch):
    """One of them may kill its whole worker: sent beside the others, it would kill them along with
    it, and each of their starts would count towards CLASSIFY_MAX_STARTS as its own does."""
    from datetime import timedelta

    from django.utils import timezone

    sent = []
    monkeypatch.setattr(tasks.classify_photo, "apply_async", lambda args, **_: sent.append(args[0]))
    monkeypatch.setattr(tasks, "messages_waiting", lambda queue: 0)
    settings.REQUEUE_AFTER_S = 60
    once, twice, four_times = (services.photo_create(owner=user, upload=SimpleUploadedFile(
        f"{i}.jpg", sample_photo().read_bytes())) for i in range(3))
    for photo, starts in ((once, 1), (twice, 2), (four_times, 4)):
        Photo.objects.filter(pk=photo.pk).update(status="processing", starts=starts,
                                                 updated=timezone.now() - timedelta(minutes=5))

    tasks.requeue_stuck()
    first = list(sent)
    tasks.requeue_stuck()

    assert first == [once.pk, twice.pk] and sent == [once.pk, twice.pk, four_times.pk]


def test_the_sweep_counts_the_messages_waiting_on_the_broker_in_use():
    """The sweep's count, on the configured broker itself (Redis in CI, the filesystem one in
    development), in a queue of its own that no worker reads."""
    import uuid

    from celery import current_app

    queue = f"sweep-count-{uuid.uuid4().hex[:8]}"
    assert tasks.messages_waiting(queue) == 0  # never used
    try:
        for pk in (1, 2, 3):
            tasks.classify_photo.apply_async((pk,), queue=queue)
        assert tasks.messages_waiting(queue) == 3
    finally:
        with current_app.connection_for_write() as connection:
            connection.default_channel.queue_purge(queue)
    assert tasks.messages_waiting(queue) == 0


@pytest.mark.parametrize("broker", ["refusing", "hanging"])
def test_the_sweep_goes_on_without_the_count_when_the_broker_cannot_be_asked(
        settings, user, monkeypatch, broker):
    """No count: queued photos are taken to wait in a backlog (sent again only after much longer);
    the rest of the sweep (photos a worker lost, runs) still happens, in bounded time."""
    from datetime import timedelta

    from celery import current_app
    from django.utils import timezone

    require_services()  # the Redis broker's settings (its socket timeouts)
    silent = SilentServer() if broker == "hanging" else None
    monkeypatch.setattr(current_app.conf, "broker_read_url",
                        f"redis://127.0.0.1:{silent.port if silent else free_port()}/0")
    sent = []
    monkeypatch.setattr(tasks.classify_photo, "apply_async", lambda args, **_: sent.append(args[0]))
    lost, waiting = (services.photo_create(owner=user, upload=SimpleUploadedFile(
        f"{i}.jpg", sample_photo().read_bytes())) for i in range(2))
    five_minutes_ago = timezone.now() - timedelta(minutes=5)
    Photo.objects.filter(pk=lost.pk).update(status="processing", updated=five_minutes_ago)
    Photo.objects.filter(pk=waiting.pk).update(updated=five_minutes_ago)

    try:
        started = time.monotonic()
        tasks.requeue_stuck()
        took = time.monotonic() - started
        assert tasks.messages_waiting("celery") is None
    finally:
        if silent:
            silent.stop()

    assert sent == [lost.pk]
    assert took < 12  # one count asked (hanging: three tries of 2 s), not one for each queue


@pytest.mark.django_db
def test_a_run_that_fails_after_writing_its_model_folder_leaves_no_folder_and_only_its_own(
        admin_user, monkeypatch, settings, tmp_path):
    from pathlib import Path

    shutil.copytree(Path(settings.MODELS_DIR) / "kue-mobilenetv2", tmp_path / "kue-mobilenetv2")
    settings.MODELS_DIR = tmp_path
    monkeypatch.setattr(tasks.train_model, "apply_async", lambda *a, **k: None)
    run = services.training_run_start(user=admin_user)
    # A folder of the run's name left from elsewhere (a database started afresh beside old folders).
    (tmp_path / f"kue-mobilenetv2+run{run.pk}").mkdir()
    (tmp_path / f"kue-mobilenetv2+run{run.pk}" / "keep.txt").write_text("someone's")

    def benchmark_breaks(folder, *args):
        raise RuntimeError("a benchmark photo cannot be read")

    monkeypatch.setattr(retraining, "evaluate_version", benchmark_breaks)
    tasks.train_model(run.pk)

    run.refresh_from_db()
    assert run.status == "failed" and "a benchmark photo cannot be read" in run.error
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kue-mobilenetv2", f"kue-mobilenetv2+run{run.pk}"]
    assert (tmp_path / f"kue-mobilenetv2+run{run.pk}" / "keep.txt").read_text() == "someone's"
