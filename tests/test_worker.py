"""End to end with a real Celery worker, Redis and PostgreSQL: upload, classify, see the result.

Needs CELERY_BROKER_URL=redis://... and DATABASE_URL=postgres://... (CI sets both); skipped
without them, except in CI (REQUIRE_SERVICES=1), where it must run.
"""

import os
import subprocess
import sys
import time

import pytest
from django.urls import reverse

from classifier import services
from classifier.models import ModelVersion, PendingEmail, Photo, Prediction, TrainingRun
from tests.conftest import PHOTOS, own_photo, sample_photo, upload_of
from tests.processes import app_env, require_services, start_worker, wait_for

# Real processes share the database, so these tests commit; serialized rollback restores what the
# migrations made (the shipped model version) for the tests that follow.
pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


@pytest.fixture
def worker(settings, tmp_path):
    """A real worker process (both queues) on the test database, the test media folder, a private
    copy of the models folder, and the sample photos as the benchmark split."""
    require_services()
    process = start_worker(app_env(settings, tmp_path), tmp_path / "worker.log", "--pool=solo",
                           "-Q", "celery,celery.email,celery.training")
    yield process
    process.stop()
    print(process.tail())  # shown by pytest when the test failed


def test_uploaded_photos_are_classified_by_the_worker(worker, client, user):
    client.force_login(user)
    classes = ["kue_lapis", "kue_dadar_gulung"]

    response = client.post(reverse("upload"), {"photos": [upload_of(sample_photo(c)) for c in classes]})

    assert response.status_code == 302
    photos = list(Photo.objects.order_by("pk"))
    assert wait_for(lambda: all(p.status == "done" for p in Photo.objects.all())), [
        (p.pk, p.status, p.error) for p in Photo.objects.all()
    ]
    for photo, expected in zip(photos, classes):
        assert photo.predictions.get().label == expected
    page = client.get(photos[0].get_absolute_url()).content.decode()
    assert "Kue Lapis" in page and "data-pending" not in page
    status = client.get(reverse("photo-status"), {"ids": photos[1].pk}).json()["photos"][0]
    assert status["status"] == "done" and "Kue Dadar Gulung" in status["html"]


def test_a_training_run_through_the_worker_registers_a_version_the_worker_then_uses(worker, client, user,
                                                                                    staff):
    client.force_login(user)
    photos = [own_photo(p) for p in sorted((PHOTOS / "kue_klepon").glob("*.jpg"))]
    client.post(reverse("upload"), {"photos": photos})
    assert wait_for(lambda: Photo.objects.filter(status="done").count() == 2)
    for photo in Photo.objects.all():  # users teach: these klepon are kue_lumpur
        services.feedback_record(photo=photo, user=user, label="kue_lumpur")

    run = services.training_run_start(user=staff)
    assert wait_for(lambda: TrainingRun.objects.get(pk=run.pk).status in ("succeeded", "failed"), 180)

    run.refresh_from_db()
    assert run.status == "succeeded", run.error
    assert run.result_version.metrics["test"]["n"] == 16
    services.model_version_activate(run.result_version, confirmed=True)
    client.post(reverse("upload"), {"photos": [upload_of(sample_photo("kue_klepon"))]})
    newest = Photo.objects.order_by("-pk").first()
    assert wait_for(lambda: Photo.objects.get(pk=newest.pk).status == "done")
    prediction = newest.predictions.get()
    assert prediction.model_version == ModelVersion.objects.get(is_active=True) == run.result_version
    assert prediction.label == "kue_lumpur"  # the new version follows what users taught


def test_the_worker_e_mails_the_links_that_confirm_an_address_and_then_reset_its_password(
        worker, client, django_user_model):
    """Through the broker, in the worker (whose console backend writes the e-mails to its log); the
    reset asked for in Indonesian, in Indonesian (its language in the message's headers)."""
    import re

    client.post(reverse("signup"), {"username": "citra", "email": "citra@example.org",
                                    "password1": "onde-onde-wijen-9", "password2": "onde-onde-wijen-9"})

    def log():
        return worker.log.read_text(errors="replace")

    assert wait_for(lambda: "/accounts/email/" in log()), worker.tail()
    link = re.search(r"http://testserver(/accounts/email/\S+/)", log()).group(1)
    assert client.post(link).status_code == 302
    assert django_user_model.objects.get(username="citra").email == "citra@example.org"

    client.post(reverse("logout"))
    client.post(reverse("password_reset"), {"email": "citra@example.org"}, HTTP_ACCEPT_LANGUAGE="id")

    assert wait_for(lambda: "/accounts/reset/" in log()), worker.tail()
    reset = log()[log().index("/accounts/email/"):]  # (after the confirmation e-mail, in English)
    assert 'kata sandi baru untuk akun Anda "citra"' in reset and "Someone asked" not in reset


def test_a_link_asked_for_behind_a_backlog_of_photos_goes_out_before_the_backlog_is_done(
        settings, tmp_path, user):
    """E-mails have a queue of their own, which the classification worker takes in turn with the
    photos' (as `make run` and docker-compose start it): a link waits for a photo or two, not for
    every photo uploaded before it was asked for."""
    require_services()
    backlog = services.photos_create(owner=user, uploads=[upload_of(sample_photo()) for _ in range(30)])
    pending = services.account_email_set(user, "citra@example.org", site="http://testserver")
    worker = start_worker(app_env(settings, tmp_path), tmp_path / "worker.log", "--concurrency=1",
                          "-Q", "celery,celery.email")
    try:
        done = wait_for(lambda: Photo.objects.filter(status="done").count() == len(backlog), 120)
        mailed = wait_for(lambda: PendingEmail.objects.get(pk=pending.pk).sent is not None, 30)
        assert done and mailed, worker.tail()
    finally:
        worker.stop()

    sent = PendingEmail.objects.get(pk=pending.pk).sent
    assert Prediction.objects.filter(created__lt=sent).count() <= 2  # of 30 photos queued first


# A process that writes a photo through the site's storage and is killed, as by SIGKILL, halfway.
KILLED_MIDWAY = """
import os, sys, time
from django.conf import settings
settings.configure(MEDIA_ROOT=sys.argv[1])
from django.core.files.base import File
from classifier.storage import WholeFileSystemStorage

class HalfThenHang:
    sent = False
    def read(self, size=-1):
        if self.sent:
            print("half written", flush=True)
            time.sleep(60)
        self.sent = True
        return b"x" * 1000

WholeFileSystemStorage().save("photos/a.jpg", File(HalfThenHang()))
"""


def test_a_worker_that_starts_removes_what_writes_killed_midway_left_once_they_are_old(settings, tmp_path):
    require_services()
    photos = settings.MEDIA_ROOT / "photos"
    writer = subprocess.Popen([sys.executable, "-c", KILLED_MIDWAY, str(settings.MEDIA_ROOT)],
                              cwd=settings.BASE_DIR, stdout=subprocess.PIPE, text=True)
    assert writer.stdout.readline() == "half written\n"
    writer.kill()
    writer.wait()
    (left,) = photos.iterdir()
    assert left.name.startswith(".partial-")
    an_hour_ago = time.time() - 3700
    os.utime(left, (an_hour_ago, an_hour_ago))
    being_written = photos / ".partial-now"  # as a write under way in another process
    being_written.write_bytes(b"x")
    whole = photos / "b.jpg"
    whole.write_bytes(b"x")
    os.utime(whole, (an_hour_ago, an_hour_ago))

    worker = start_worker(app_env(settings, tmp_path), tmp_path / "worker.log", "--pool=solo")
    try:
        assert wait_for(lambda: not left.exists(), 60), worker.tail()
    finally:
        worker.stop()

    assert sorted(p.name for p in photos.iterdir()) == [".partial-now", "b.jpg"]


def test_a_stopping_worker_on_make_runs_broker_takes_what_waits_and_then_stops_waiting(tmp_path, monkeypatch):
    """The filesystem broker of `make run`: Ctrl-C no longer waits out Celery's 2-second polls of the
    folder (one more after it noticed), and a message already there is still taken."""
    from celery.worker import state
    from kombu import Connection, Exchange, Queue

    from cakesite.broker import Transport

    options = {"data_folder_in": str(tmp_path), "data_folder_out": str(tmp_path), "store_processed": False,
               "control_folder": str(tmp_path), "polling_interval": 0.1}
    queue, got = Queue("photos", Exchange("photos"), "photos"), []
    with Connection(transport=Transport, transport_options=options) as connection, connection.Consumer(
            queue, callbacks=[lambda body, message: (got.append(body), message.ack())]):
        connection.Producer().publish("photo 1", exchange=queue.exchange, routing_key="photos",
                                      declare=[queue])
        monkeypatch.setattr(state, "should_stop", 0)  # make's SIGTERM: a warm shutdown, exit code 0
        connection.drain_events(timeout=2.0)
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            connection.drain_events(timeout=2.0)
        waited = time.monotonic() - started

    assert got == ["photo 1"] and waited < 1.0
