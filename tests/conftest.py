"""Shared fixtures: users, photo files, private media, and the broker boundary."""

import io
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image

PHOTOS = Path(__file__).resolve().parent / "photos"


def services_required() -> bool:
    """In CI (REQUIRE_SERVICES=1) a test that needs Redis or PostgreSQL fails instead of skipping."""
    return os.environ.get("REQUIRE_SERVICES") == "1"


@pytest.fixture(autouse=True)
def private_media(settings, tmp_path):
    """Each test its own media folder, and an empty folder as its benchmark and base data set (a
    fresh clone has no data set beside it): a test that wants photos names them (tests/photos)."""
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.BENCHMARK_DIR = settings.TRAINING_DATA_DIR = tmp_path / "no-data-set"


@pytest.fixture(autouse=True)
def fresh_throttles():
    """Each test starts with no request counts left in the cache by the tests before it (the tests'
    own local-memory cache; the throttle test on Redis uses a private key prefix)."""
    from django.core.cache import cache

    cache.clear()


@pytest.fixture(autouse=True)
def broker_reachable():
    """Each test starts with no broker outage noted by a test before it (tasks.enqueue skips the
    broker for a few seconds after it failed)."""
    from classifier import tasks

    tasks.broker_down_until = 0.0


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    """Tests make many users: a deliberately slow hash would cost a second each (not a security test)."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def back_to_english():
    """LocaleMiddleware leaves the last request's language active in the thread (a server's next
    request sets its own): a test after one in Indonesian would read Indonesian where it calls
    services directly."""
    from django.utils import translation

    yield
    translation.deactivate()


@pytest.fixture
def user(django_user_model):
    return django_user_model.objects.create_user("ayu", password="kue-lapis-2026")


@pytest.fixture
def other_user(django_user_model):
    return django_user_model.objects.create_user("budi", password="klepon-hijau-2026")


@pytest.fixture
def staff(django_user_model):
    """A staff member allowed to see every photo (the admin's view permission), not to change them."""
    from django.contrib.auth.models import Permission

    member = django_user_model.objects.create_user("admin", password="serabi-solo-2026", is_staff=True)
    member.user_permissions.add(Permission.objects.get(codename="view_photo"))
    return member


@pytest.fixture
def enqueued(monkeypatch):
    """The broker boundary: the ids of photos whose classification was enqueued on commit."""
    from classifier import tasks

    sent: list[int] = []
    monkeypatch.setattr(tasks.classify_photo, "apply_async", lambda args, **_: sent.append(args[0]))
    return sent


@pytest.fixture
def disk_full_for(monkeypatch):
    """`disk_full_for("heatmaps/")`: the media disk refuses the files of that folder as a full disk
    does (OSError 28); the others are stored."""
    from django.core.files.storage import FileSystemStorage

    save = FileSystemStorage._save

    def refusing(folder: str) -> None:
        def full(storage, name, content):
            if name.startswith(folder):
                raise OSError(28, "No space left on device")
            return save(storage, name, content)

        monkeypatch.setattr(FileSystemStorage, "_save", full)
    return refusing


def sample_photo(cls: str = "kue_lapis") -> Path:
    return sorted((PHOTOS / cls).glob("*.jpg"))[0]


def upload_of(path: Path, name: str | None = None, content_type: str = "image/jpeg") -> SimpleUploadedFile:
    return SimpleUploadedFile(name or path.name, path.read_bytes(), content_type=content_type)


def own_photo(path: Path) -> SimpleUploadedFile:
    """A user's own photo of the cake in a sample photo: framed closer (a tenth cut off each side),
    another file. Not a copy of the sample photo, which is also the tests' benchmark: a copy, even
    saved again as another file, is never trained on."""
    out = io.BytesIO()
    with Image.open(path) as img:
        w, h = img.size
        img.convert("RGB").crop((w // 10, h // 10, w - w // 10, h - h // 10)).save(out, "JPEG", quality=90)
    return SimpleUploadedFile(path.name, out.getvalue(), content_type="image/jpeg")


def png_bytes(size=(48, 36), colour=(200, 40, 40)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, "PNG")
    return buf.getvalue()


HEATMAP = np.outer(np.hanning(7), np.hanning(7))  # hot in the middle, as a worker would give


def make_photo(owner, status="queued", label=None, confidence=0.9):
    """A small photo of `owner` in `status`; with a `label`, classified by the active version with
    `confidence` (each other cake 0.01) and a heat map."""
    import uuid

    from django.core.files.base import ContentFile

    from classifier import services
    from classifier.models import ModelVersion, Photo

    photo = Photo(owner=owner, image_format="png", sha256=uuid.uuid4().hex * 2, status=status)
    photo.image.save("x", ContentFile(png_bytes()), save=False)
    photo.thumbnail.save("t", ContentFile(png_bytes((10, 10))), save=False)
    photo.width, photo.height = 48, 36
    photo.save()
    if label:
        version = ModelVersion.objects.get(is_active=True)
        probs = {item["slug"]: (confidence if item["slug"] == label else 0.01) for item in version.labels}
        services.prediction_record(photo=photo, version_id=version.pk, probabilities=probs, label=label,
                                   confidence=confidence, inference_ms=5.0, heatmap=HEATMAP)
        photo.refresh_from_db()
    return photo


def api_token(user) -> str:
    """A new API token of `user`, as a program gets one (POST /api/auth/token/)."""
    from classifier import services

    return services.api_token_new(user)[1]


@contextmanager
def migrated_back(migration: str) -> Iterator:
    """The database migrated back to the classifier app's `migration`, for rows as they were then
    (through the models as they were then: the apps it gives), and forward to the latest at the end."""
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    before = [("classifier", migration)]
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    try:
        yield executor.loader.project_state(before).apps
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes("classifier"))


@pytest.fixture
def task_apply():
    """Celery's `apply` (which reads a message's headers as a worker does) sends task_prerun and
    task_postrun, whose receiver closes a connection outside autocommit: the one the test's
    transaction holds (Django's test client likewise stops request_finished's)."""
    from celery.signals import task_postrun, task_prerun

    from classifier import tasks

    for signal in (task_prerun, task_postrun):
        signal.disconnect(tasks.database_as_for_a_request)
    yield
    for signal in (task_prerun, task_postrun):
        signal.connect(tasks.database_as_for_a_request)
