"""`manage.py storage`: files no row names (an upload, a heat map or a copy whose process was killed
before its row committed) reported and removed; rows whose file is missing reported."""

import io
import os
import time
from pathlib import Path

import pytest
from django.core.management import call_command

from classifier.models import ModelVersion, Photo
from tests.conftest import make_photo

pytestmark = pytest.mark.django_db

HOUR = 3600


def storage(*args: str) -> tuple[int, str]:
    out = io.StringIO()
    try:
        call_command("storage", *args, stdout=out)
    except SystemExit as exc:
        return exc.code, out.getvalue()
    return 0, out.getvalue()


def left(path: Path, seconds_ago: float) -> Path:
    """`path` written, `seconds_ago`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * 1000)
    when = time.time() - seconds_ago
    os.utime(path, (when, when))
    return path


def age(photo: Photo, seconds: float) -> None:
    """Date the photo's files back by `seconds`, as if uploaded then."""
    for file in (photo.image, photo.thumbnail, *(p.heatmap for p in photo.predictions.all())):
        when = time.time() - seconds
        os.utime(file.path, (when, when))


def test_a_clean_storage_exits_0(user, settings):
    age(make_photo(user, status="done", label="kue_lapis"), 2 * HOUR)

    code, out = storage()

    assert code == 0, out
    assert "files no row names: 0 (0.0 MB)" in out and "rows whose file is missing: 0" in out


def test_an_old_file_no_row_names_is_reported_and_removed_with_delete_orphans(user, settings):
    age(make_photo(user), 2 * HOUR)
    orphan = left(settings.MEDIA_ROOT / "heatmaps" / "killed-before-its-row.png", 2 * HOUR)

    code, out = storage()
    assert code == 1 and orphan.exists()
    assert "files no row names: 1 (0.0 MB)" in out and "heatmaps/killed-before-its-row.png" in out

    code, out = storage("--delete-orphans")
    assert code == 0, out
    assert "removed 1 of them" in out and not orphan.exists()
    assert storage()[0] == 0


def test_a_young_file_no_row_names_is_kept(user, settings):
    """An upload under way: its files are written before its row commits."""
    uploading = left(settings.MEDIA_ROOT / "photos" / "being-uploaded.jpg", 60)

    code, out = storage("--delete-orphans")

    assert code == 0, out
    assert uploading.exists() and "1 younger left alone" in out


def test_a_file_a_row_names_is_never_removed(user, settings):
    photo = make_photo(user, status="done", label="kue_lapis")
    age(photo, 2 * HOUR)
    files = [Path(photo.image.path), Path(photo.thumbnail.path), Path(photo.predictions.get().heatmap.path)]

    code, out = storage("--delete-orphans", "--older-than", "0")

    assert code == 0, out
    assert all(file.exists() for file in files)


def test_a_file_named_by_a_row_since_the_look_is_not_removed(user, settings):
    """Removal asks the rows again: a name the look found unnamed but a row names by now stays."""
    from classifier import services

    photo = make_photo(user)
    age(photo, 2 * HOUR)

    assert services.media_orphans_remove([photo.image.name, "photos/../../outside.jpg"]) == (0, 0)
    assert Path(photo.image.path).exists()


def test_nothing_outside_the_media_folders_is_touched(user, settings, tmp_path):
    elsewhere = left(tmp_path / "elsewhere" / "keep.jpg", 2 * HOUR)
    (settings.MEDIA_ROOT / "photos").mkdir(parents=True)
    (settings.MEDIA_ROOT / "photos" / "linked").symlink_to(elsewhere.parent)
    beside = left(settings.MEDIA_ROOT / "notes.txt", 2 * HOUR)

    code, out = storage("--delete-orphans")

    assert code == 0, out
    assert elsewhere.exists() and beside.exists()


def test_rows_whose_file_is_missing_are_reported(user, settings):
    photo = make_photo(user, status="done", label="kue_lapis")
    heatmap = photo.predictions.get().heatmap
    os.remove(photo.image.path)
    os.remove(heatmap.path)
    ModelVersion.objects.create(name="restored-without-its-folder", path="gone", labels=[])

    code, out = storage("--delete-orphans")

    assert code == 1
    assert "rows whose file is missing: 2" in out
    assert f"photo {photo.pk}: its image {photo.image.name}" in out
    assert f"prediction {photo.predictions.get().pk}: its heatmap {heatmap.name}" in out
    assert "model versions whose files are missing: 1" in out and "restored-without-its-folder" in out
    assert Photo.objects.filter(pk=photo.pk).exists()  # (reported, not repaired: only a restore can)
