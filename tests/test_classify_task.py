"""The classification task with the real shipped model: records once, fails visibly, follows activation."""

import io
import shutil
from pathlib import Path

import numpy as np
import pytest
from django.conf import settings as django_settings
from django.core.files.base import ContentFile
from PIL import Image

from classifier import inference, services, tasks
from classifier.models import ModelVersion, Photo, Prediction
from tests.conftest import migrated_back, png_bytes, sample_photo, upload_of

pytestmark = pytest.mark.django_db


@pytest.fixture
def photo(user, enqueued):
    """Not kue_risoles: the shipped model also gives that label to an all-black picture, so a worker
    that lost the photo's pixels would still seem right."""
    return services.photo_create(owner=user, upload=upload_of(sample_photo("kue_lapis")))


def test_it_classifies_a_photo_and_records_the_prediction(photo, user):
    other = services.photo_create(owner=user, upload=upload_of(sample_photo("kue_dadar_gulung")))

    assert tasks.classify_photo(photo.pk) == f"photo {photo.pk}: kue_lapis"
    assert tasks.classify_photo(other.pk) == f"photo {other.pk}: kue_dadar_gulung"

    photo.refresh_from_db()
    prediction = photo.predictions.get()
    assert photo.status == "done"
    assert prediction.label == "kue_lapis"
    assert prediction.model_version == ModelVersion.objects.get(is_active=True)
    assert set(prediction.probabilities) == {item["slug"] for item in prediction.model_version.labels}
    assert np.isclose(sum(prediction.probabilities.values()), 1.0, atol=1e-4)
    assert prediction.confidence == max(prediction.probabilities.values())  # as its top-k shows it
    second = sorted(prediction.probabilities.values())[-2]
    assert prediction.margin == round(prediction.confidence - second, 6)  # (no 0.36648400000000003)
    assert prediction.inference_ms > 0


def test_classifying_a_photo_takes_a_fixed_handful_of_statements(photo, django_assert_max_num_queries):
    """The worker's share of each photo's database time: the photo with the active version's id and
    whether a version labelled it already, processing, then, with the photo locked, whether a
    prediction landed meanwhile, the prediction, done and its notification; inside a test the
    transaction adds a savepoint and its release. The version's row is read only when a worker
    process loads it, which it does at its start."""
    inference.warm_up()

    with django_assert_max_num_queries(9):
        assert tasks.classify_photo(photo.pk) == f"photo {photo.pk}: kue_lapis"


def test_a_photo_its_worker_died_on_each_time_fails_instead_of_being_sent_for_ever(photo, settings):
    """A photo that kills the process classifying it (out of memory, a crash in native code) comes
    back with every redelivery and every sweep, and would kill a worker process each time."""
    settings.CLASSIFY_MAX_STARTS = 3
    for _ in range(3):  # three deliveries, each started and never finished
        services.photo_start(photo)

    assert tasks.classify_photo(photo.pk) == f"photo {photo.pk}: given up"

    photo.refresh_from_db()
    assert photo.status == "failed" and not photo.predictions.exists()
    assert photo.error == ("Classifying this photo was started several times and never finished; it is "
                           "not tried again unless you retry it.")
    services.photo_retry(photo)  # its owner may try again: a worker lost to something else, say
    assert tasks.classify_photo(photo.pk) == f"photo {photo.pk}: kue_lapis"
    photo.refresh_from_db()
    assert (photo.status, photo.starts) == ("done", 1)


def test_a_start_that_ends_in_an_error_and_a_retry_is_not_counted_as_lost(photo, monkeypatch):
    """Only starts that end without a word count towards CLASSIFY_MAX_STARTS: three retries of an
    error must not make a photo look like one that kills its worker."""
    def broken(*_args):
        raise RuntimeError("a bug")

    monkeypatch.setattr(inference, "classify", broken)
    for _ in range(3):
        with pytest.raises(RuntimeError):  # called directly, the retry raises the error itself
            tasks.classify_photo(photo.pk)

    photo.refresh_from_db()
    assert (photo.status, photo.starts) == ("processing", 0)


def test_a_redelivered_task_never_makes_a_second_prediction(photo, monkeypatch):
    tasks.classify_photo(photo.pk)

    def model_runs_again(*_args):
        raise AssertionError("a photo labelled already is not classified again")

    monkeypatch.setattr(inference, "classify", model_runs_again)  # (a worker's second of CPU for nothing)
    assert tasks.classify_photo(photo.pk) == f"photo {photo.pk}: already done"
    assert Prediction.objects.filter(photo=photo).count() == 1


@pytest.mark.parametrize("second_ends", ["with the same result", "in an error"])
def test_a_delivery_that_read_the_photo_before_another_finished_leaves_its_result_shown(
        photo, monkeypatch, second_ends):
    """Two deliveries of one task (the sweep, a redelivery, two workers): the second read the photo
    just before the first recorded its result. The photo stays done, with its one prediction."""
    from classifier import selectors

    read_early = selectors.photo_to_classify(photo.pk)
    assert tasks.classify_photo(photo.pk) == f"photo {photo.pk}: kue_lapis"
    monkeypatch.setattr(selectors, "photo_to_classify", lambda _pk: read_early)
    if second_ends == "in an error":
        def model_gone(*_args):
            raise inference.ModelUnavailable("the version's files are gone")

        monkeypatch.setattr(inference, "classify", model_gone)
    ends = tasks.classify_photo(photo.pk)

    outcome = "already done" if second_ends == "with the same result" else "failed"
    assert ends == f"photo {photo.pk}: {outcome}"

    photo.refresh_from_db()
    assert photo.status == "done" and photo.error == "" and photo.predictions.count() == 1


def test_a_photo_deleted_before_the_worker_ran_is_skipped(photo):
    Photo.objects.filter(pk=photo.pk).delete()

    assert tasks.classify_photo(photo.pk) == f"photo {photo.pk}: gone"


def test_an_unreadable_stored_file_marks_the_photo_failed_with_a_reason(photo):
    with open(photo.image.path, "wb") as f:
        f.write(b"garbage that is no longer a jpeg")

    assert tasks.classify_photo(photo.pk) == f"photo {photo.pk}: failed"

    photo.refresh_from_db()
    assert photo.status == "failed"
    assert photo.error == ("The photo could not be read: its file on the server is damaged. Delete it and "
                           "upload it again.")  # (and not where the server keeps it)
    assert not photo.predictions.exists()


def test_a_stored_file_that_vanished_marks_the_photo_failed_without_naming_the_servers_folders(photo):
    Path(photo.image.path).unlink()

    assert tasks.classify_photo(photo.pk) == f"photo {photo.pk}: failed"

    photo = Photo.objects.get(pk=photo.pk)  # (refresh_from_db would read the file's size again)
    assert photo.error == ("The photo could not be read: its file on the server is missing. Delete it and "
                           "upload it again.")


@pytest.mark.parametrize("outage", ["no version active", "the active version's files broken"])
def test_a_photo_failed_for_want_of_a_model_is_classified_once_a_version_is_activated(
        photo, user, enqueued, monkeypatch, django_capture_on_commit_callbacks, outage):
    """Its owner need not come back to retry it; a photo failed for another reason stays failed."""
    shipped, classify = ModelVersion.objects.get(is_active=True), inference.classify
    damaged = services.photo_create(owner=user, upload=upload_of(sample_photo("kue_lapis")))
    Path(damaged.image.path).write_bytes(b"garbage that is no longer a jpeg")
    tasks.classify_photo(damaged.pk)
    if outage == "no version active":
        ModelVersion.objects.update(is_active=False)
    else:
        def model_gone(*_args):
            raise inference.ModelUnavailable("the version's files are gone")

        monkeypatch.setattr(inference, "classify", model_gone)
    tasks.classify_photo(photo.pk)
    photo.refresh_from_db()
    assert photo.status == "failed"
    assert photo.error == ("No model is active yet; the photo is classified once an administrator "
                           "activates one." if outage == "no version active" else
                           "The model cannot be loaded right now; the photo is classified once a working "
                           "version is active.")
    monkeypatch.setattr(inference, "classify", classify)  # (the files mended)
    sent = []
    monkeypatch.setattr(tasks.classify_photos_awaiting_model, "apply_async", lambda *a, **_: sent.append(1))

    with django_capture_on_commit_callbacks(execute=True):
        services.model_version_activate(shipped)
    assert sent == [1]
    assert tasks.classify_photos_awaiting_model() == "1 photo"

    assert enqueued == [photo.pk]
    photo.refresh_from_db()
    assert (photo.status, photo.error) == ("queued", "")
    assert tasks.classify_photo(photo.pk) == f"photo {photo.pk}: kue_lapis"
    assert Photo.objects.get(pk=damaged.pk).status == "failed"
    assert tasks.classify_photos_awaiting_model() == "0 photos"  # (a second run finds none)


@pytest.mark.parametrize("meanwhile", ["a version activated", "nothing"])
def test_a_photo_failed_for_want_of_a_model_as_one_was_activated_is_sent_again(photo, monkeypatch, meanwhile):
    """The activation's call for the waiting photos may run (on another worker process) between this
    photo's read and its failure, and find it still processing: the failure asks once more."""
    from classifier import selectors

    shipped = ModelVersion.objects.get(is_active=True)
    ModelVersion.objects.update(is_active=False)
    read_early = selectors.photo_to_classify(photo.pk)  # no version active
    if meanwhile == "a version activated":
        services.model_version_activate(shipped)
    monkeypatch.setattr(selectors, "photo_to_classify", lambda _pk: read_early)
    sent = []
    monkeypatch.setattr(tasks.classify_photos_awaiting_model, "apply_async", lambda *a, **k: sent.append(1))

    assert tasks.classify_photo(photo.pk) == f"photo {photo.pk}: no model"

    assert sent == ([1] if meanwhile == "a version activated" else [])
    assert Photo.objects.get(pk=photo.pk).awaits_model


def test_a_newly_activated_version_is_used_without_a_restart(photo, user, settings, tmp_path):
    shipped = ModelVersion.objects.get(is_active=True)
    tasks.classify_photo(photo.pk)
    settings.MODELS_DIR = tmp_path
    shutil.copytree(django_settings.BASE_DIR / "models" / shipped.path, tmp_path / "copy")
    shutil.copytree(django_settings.BASE_DIR / "models" / shipped.path, tmp_path / shipped.path)
    newer = services.model_version_register(name="copy", path="copy", activate=True)
    later = services.photo_create(owner=user, upload=upload_of(sample_photo("kue_lapis")))

    tasks.classify_photo(later.pk)

    assert later.predictions.get().model_version == newer
    assert photo.predictions.get().model_version == shipped
    assert ModelVersion.objects.filter(is_active=True).get() == newer


def test_activation_keeps_exactly_one_active_version(settings):
    shipped = ModelVersion.objects.get(is_active=True)
    other = ModelVersion.objects.create(name="other", path=shipped.path, labels=shipped.labels)

    services.model_version_activate(other, confirmed=True)  # (it has no figures)
    assert list(ModelVersion.objects.filter(is_active=True)) == [other]
    services.model_version_activate(shipped)
    assert list(ModelVersion.objects.filter(is_active=True)) == [shipped]


def test_thumbnails_are_small_upright_jpegs(photo):
    from PIL import Image

    with Image.open(photo.thumbnail.path) as thumb:
        assert thumb.format == "JPEG" and max(thumb.size) <= 320


def test_a_photo_with_a_missing_file_fails_instead_of_hanging(user):
    photo = Photo(owner=user, image_format="png", sha256="0" * 64)
    photo.image.save("x", ContentFile(png_bytes()), save=False)
    photo.width, photo.height = 48, 36
    photo.save()
    photo.image.storage.delete(photo.image.name)

    assert tasks.classify_photo(photo.pk) == f"photo {photo.pk}: failed"


def test_the_worker_draws_the_heat_map_once_and_serves_it_to_the_owner_only(photo, client, user, other_user):
    tasks.classify_photo(photo.pk)
    prediction = Prediction.objects.get(photo=photo)
    client.force_login(user)

    page = client.get(photo.get_absolute_url()).content.decode()
    heat = client.get(f"/photos/{photo.pk}/heatmap/")
    image = Image.open(io.BytesIO(b"".join(heat.streaming_content)))
    client.force_login(other_user)

    assert prediction.heatmap.name.startswith("heatmaps/") and "Show where the model looked" in page
    assert f'aria-describedby="heat-key-{photo.pk}"' in page and "the model hardly looked" in page  # its key
    assert heat["Content-Type"] == "image/png" and image.mode == "RGBA"
    assert image.width == 64 and abs(image.height / image.width - photo.height / photo.width) < 0.05
    assert client.get(f"/photos/{photo.pk}/heatmap/").status_code == 404


def test_deleting_a_photo_removes_its_heat_map_file_too(photo, user, django_capture_on_commit_callbacks):
    tasks.classify_photo(photo.pk)
    heatmap = Prediction.objects.get(photo=photo).heatmap

    with django_capture_on_commit_callbacks(execute=True):
        services.photo_delete(photo)

    assert not heatmap.storage.exists(heatmap.name)


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_photo_deleted_while_the_model_ran_ends_the_task_quietly_and_leaves_no_file(photo, monkeypatch,
                                                                                     settings):
    classify = inference.classify

    def owner_deletes_it_meanwhile(version_id, source):
        result = classify(version_id, source)
        services.photo_delete(Photo.objects.get(pk=photo.pk))
        return result

    monkeypatch.setattr(inference, "classify", owner_deletes_it_meanwhile)

    assert tasks.classify_photo(photo.pk) == f"photo {photo.pk}: gone"
    assert not Photo.objects.exists() and not Prediction.objects.exists()
    assert [p for p in Path(settings.MEDIA_ROOT).rglob("*") if p.is_file()] == []


def test_a_task_delivered_again_after_another_version_was_activated_adds_no_prediction(photo):
    tasks.classify_photo(photo.pk)
    shipped = ModelVersion.objects.get(is_active=True)
    services.model_version_activate(
        ModelVersion.objects.create(name="kue-v2", path=shipped.path, labels=shipped.labels), confirmed=True)

    assert tasks.classify_photo(photo.pk) == f"photo {photo.pk}: already done"
    assert Prediction.objects.get(photo=photo).model_version == shipped


# apply() runs the task's signals, which close a connection held in a test's transaction; the
# rows the migrations made (the shipped model) are restored after the flush.
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_passing_fault_in_the_model_is_retried_and_the_photo_still_classified(photo, monkeypatch):
    from training.runtime import Classifier

    real, calls = Classifier.pixels_with_heatmap, []

    def once_broken(self, pixels):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("XNNPACK delegate hiccup")
        return real(self, pixels)

    monkeypatch.setattr(Classifier, "pixels_with_heatmap", once_broken)

    tasks.classify_photo.apply(args=[photo.pk])  # eager: the retry runs at once

    photo.refresh_from_db()
    assert len(calls) == 2 and photo.status == "done" and photo.predictions.count() == 1


# apply() runs the task's signals, which close a connection held in a test's transaction; the
# rows the migrations made (the shipped model) are restored after the flush.
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_fault_that_outlasts_the_retries_fails_the_photo_with_a_reason(photo, monkeypatch):
    from training.runtime import Classifier

    calls = []

    def broken(self, pixels):
        calls.append(1)
        raise RuntimeError("XNNPACK delegate hiccup")

    monkeypatch.setattr(Classifier, "pixels_with_heatmap", broken)

    tasks.classify_photo.apply(args=[photo.pk])

    photo.refresh_from_db()
    assert len(calls) == 1 + tasks.classify_photo.max_retries
    assert photo.status == "failed" and photo.error == "Classification failed; please retry later."


def test_activating_a_version_deleted_meanwhile_is_refused_and_the_active_one_stays(monkeypatch):
    from django.core.exceptions import ValidationError

    from training import runtime

    shipped = ModelVersion.objects.get(is_active=True)
    copy = ModelVersion.objects.create(name="copy", path=shipped.path, labels=shipped.labels)
    check = runtime.check

    def deleted_while_checked(*args):  # loading the model takes seconds
        check(*args)
        ModelVersion.objects.filter(pk=copy.pk).delete()

    monkeypatch.setattr(runtime, "check", deleted_while_checked)

    with pytest.raises(ValidationError, match="deleted meanwhile"):
        services.model_version_activate(copy, confirmed=True)
    assert list(ModelVersion.objects.filter(is_active=True)) == [shipped]


def test_two_deliveries_under_different_active_versions_record_one_prediction(photo):
    """Both read "not predicted yet" before either recorded (the second after an activation)."""
    shipped = ModelVersion.objects.get(is_active=True)
    other = ModelVersion.objects.create(name="kue-v2", path=shipped.path, labels=shipped.labels)
    probabilities = {item["slug"]: 1 / 8 for item in shipped.labels}
    heat = np.ones((7, 7))

    first, second = (services.prediction_record(
        photo=photo, version_id=version.pk, probabilities=probabilities, label="kue_risoles",
        confidence=0.125, inference_ms=1.0, heatmap=heat) for version in (shipped, other))

    assert (first, second) == (True, False)
    assert list(photo.predictions.values_list("model_version__name", flat=True)) == ["kue-mobilenetv2"]
    assert len(list(Path(django_settings.MEDIA_ROOT, "heatmaps").iterdir())) == 1  # the second's is gone


def test_a_heat_map_the_disk_refuses_leaves_the_photo_classified_without_one(
        photo, client, user, disk_full_for, caplog):
    """The label matters more than the picture: a full disk (or an unwritable heat-map folder) is
    logged, and the photo gets its result without a heat map instead of failing."""
    disk_full_for("heatmaps/")

    tasks.classify_photo(photo.pk)

    photo.refresh_from_db()
    prediction = photo.predictions.get()
    assert photo.status == "done" and prediction.label == "kue_lapis" and not prediction.heatmap
    assert "its heat map could not be stored" in caplog.text
    client.force_login(user)
    page = client.get(photo.get_absolute_url()).content.decode()
    assert "Kue Lapis" in page and "Show where the model looked" not in page
    assert client.get(f"/photos/{photo.pk}/heatmap/").status_code == 404


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_delivery_waiting_on_the_photo_while_another_records_adds_no_second_prediction(photo):
    """On PostgreSQL: the second recorder waits for the first's lock, then must see its prediction."""
    import threading

    from django.db import connection, connections, transaction

    from tests.processes import lock_waited_for
    from tests.test_api_photos import needs_postgresql

    needs_postgresql()
    shipped = ModelVersion.objects.get(is_active=True)
    other = ModelVersion.objects.create(name="kue-v2", path=shipped.path, labels=shipped.labels)
    probabilities = {item["slug"]: 1 / 8 for item in shipped.labels}
    second: list = []

    def second_delivery():
        try:
            second.append(services.prediction_record(
                photo=photo, version_id=other.pk, probabilities=probabilities, label="kue_risoles",
                confidence=0.125, inference_ms=1.0))
        finally:
            connections.close_all()

    with transaction.atomic():  # the first delivery, recording
        Photo.objects.select_for_update().get(pk=photo.pk)
        waiting = threading.Thread(target=second_delivery)
        waiting.start()
        assert lock_waited_for()  # the second waits for the lock
        Prediction.objects.create(photo=photo, model_version=shipped, label="kue_risoles", confidence=0.125,
                                  probabilities=probabilities, margin=0.0, inference_ms=1.0)
    waiting.join()

    assert connection.vendor == "postgresql" and second == [False]
    assert list(photo.predictions.values_list("model_version__name", flat=True)) == ["kue-mobilenetv2"]


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_photos_failed_for_want_of_a_model_before_the_upgrade_are_classified_once_one_is_active(user):
    """Migration 0025 marks them as the worker now does, with the message that says so."""
    with migrated_back("0024_unused_indexes_dropped") as apps:  # rows as they were then
        old = apps.get_model("classifier", "Photo")
        photos = [old.objects.create(owner_id=user.pk, image=f"photos/{i}.png", image_format="png",
                                     sha256=f"{i}" * 64, width=48, height=36, status="failed", error=error)
                  for i, error in enumerate([
                      "No model is active yet; an administrator must activate one.",
                      "The model cannot be loaded right now; retry once an administrator has activated a "
                      "working version.",
                      "Classification failed; please retry later."])]

    marked = {photo.pk: (photo.awaits_model, photo.error) for photo in Photo.objects.all()}
    assert marked == {
        photos[0].pk: (True, "No model is active yet; the photo is classified once an administrator "
                             "activates one."),
        photos[1].pk: (True, "The model cannot be loaded right now; the photo is classified once a working "
                             "version is active."),
        photos[2].pk: (False, "Classification failed; please retry later.")}
    assert services.photos_awaiting_model_requeue() == [photos[0].pk, photos[1].pk]


def test_photos_sent_again_after_waiting_for_a_model_wait_behind_new_uploads_on_redis(
        user, monkeypatch, django_capture_on_commit_callbacks):
    """A thousand photos sent again when a version is activated are some 40 s of one worker process:
    an upload made after them is taken first (on Redis: priority 9 against the default 0)."""
    import os
    import uuid

    from celery import current_app

    from tests.conftest import services_required

    if not os.environ.get("CELERY_BROKER_URL", "").startswith("redis://"):
        (pytest.fail if services_required() else pytest.skip)("needs CELERY_BROKER_URL=redis://...")
    queue = f"test-priority-{uuid.uuid4().hex}"  # (a queue of its own: no worker takes from it)
    publish = tasks.classify_photo.apply_async
    monkeypatch.setattr(tasks.classify_photo, "apply_async",
                        lambda args, **kw: publish(args, queue=queue, **kw))
    waiting = [services.photo_create(owner=user, upload=upload_of(sample_photo("kue_lapis")))
               for _ in range(3)]
    for photo in waiting:
        services.photo_fail(photo, "No model is active yet.", awaits_model=True)

    assert tasks.classify_photos_awaiting_model() == "3 photos"
    with django_capture_on_commit_callbacks(execute=True):  # (an upload is sent once committed)
        upload = services.photo_create(owner=user, upload=upload_of(sample_photo("kue_klepon")))

    taken = []
    with current_app.connection_for_read() as connection:
        channel = connection.default_channel
        try:
            while (message := channel.basic_get(queue, no_ack=True)) is not None:
                taken.append(message.decode()[0][0])
        finally:
            channel.queue_delete(queue)
    assert taken == [upload.pk] + [photo.pk for photo in waiting]
