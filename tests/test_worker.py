"""End to end with a real Celery worker, Redis and PostgreSQL: upload, classify, see the result.

Needs CELERY_BROKER_URL=redis://... and DATABASE_URL=postgres://... (CI sets both); skipped
without them, except in CI (REQUIRE_SERVICES=1), where it must run.
"""

import os
import subprocess
import sys
import time
from urllib.parse import urlsplit, urlunsplit

import pytest
from django.conf import settings
from django.db import connection
from django.urls import reverse

from classifier.models import Photo
from tests.conftest import sample_photo, services_required, upload_of

ROOT = settings.BASE_DIR


def require_services() -> None:
    broker = os.environ.get("CELERY_BROKER_URL", "")
    database = os.environ.get("DATABASE_URL", "")
    if broker.startswith("redis://") and database.startswith("postgres"):
        return
    reason = "needs CELERY_BROKER_URL=redis://... and DATABASE_URL=postgres://..."
    if services_required():
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture
def worker(transactional_db, settings):
    """A real worker process on the test database, the test media folder and a fresh queue."""
    require_services()
    parts = urlsplit(os.environ["DATABASE_URL"])
    env = {
        **os.environ,
        "DATABASE_URL": urlunsplit(parts._replace(path="/" + connection.settings_dict["NAME"])),
        "MEDIA_ROOT": str(settings.MEDIA_ROOT),
        "PYTHONUNBUFFERED": "1",
    }
    log = open(settings.MEDIA_ROOT.parent / "worker.log", "w+")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "cakesite", "worker", "--pool=solo", "--loglevel=INFO",
         "--without-gossip", "--without-mingle", "--without-heartbeat", "-Q", "celery"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    yield proc
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.seek(0)
    print(log.read()[-4000:])  # shown by pytest when the test failed
    log.close()


def wait_for(predicate, timeout: float = 90.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.25)
    return False


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
