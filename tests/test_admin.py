"""The Django admin lists every model with its columns, and a photo row shows its thumbnail."""

import html
import re

import pytest
from django.urls import reverse

from classifier.models import Photo
from tests.conftest import api_token, make_photo

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("model", ["photo", "prediction", "modelversion", "feedback", "trainingrun",
                                   "apitoken"])
def test_every_model_has_an_admin_list(admin_client, model, user):
    make_photo(user, status="done", label="kue_lapis")

    response = admin_client.get(reverse(f"admin:classifier_{model}_changelist"))

    assert response.status_code == 200


@pytest.mark.parametrize("model", ["photo", "prediction", "feedback", "trainingrun", "apitoken"])
def test_an_admin_list_costs_the_same_queries_for_2_or_12_rows(admin_client, admin_user, model, user):
    """Each row's user, version and photo come with it, not one query per row."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from classifier import services
    from classifier.models import ModelVersion, TrainingRun

    def add_rows(n):
        shipped = ModelVersion.objects.get(is_active=True)
        for _ in range(n):
            photo = make_photo(user, status="done", label="kue_lapis")
            services.feedback_record(photo=photo, user=user, label="kue_klepon")
            result = ModelVersion.objects.create(name=f"v{photo.pk}", path=shipped.path,
                                                 labels=shipped.labels)
            TrainingRun.objects.create(started_by=admin_user, base_version=shipped, result_version=result,
                                       status="succeeded")
            api_token(user)

    def queries_for_list() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert admin_client.get(reverse(f"admin:classifier_{model}_changelist")).status_code == 200
        return len(captured)

    add_rows(2)
    few = queries_for_list()
    add_rows(10)

    assert queries_for_list() == few


def test_the_photo_list_shows_thumbnails_and_the_versions_show_test_figures(admin_client, user):
    photo = make_photo(user, status="done", label="kue_lapis")

    photos = admin_client.get(reverse("admin:classifier_photo_changelist")).content.decode()
    versions = admin_client.get(reverse("admin:classifier_modelversion_changelist")).content.decode()
    runs = admin_client.get(reverse("admin:classifier_trainingrun_changelist")).content.decode()

    assert f'src="/photos/{photo.pk}/thumbnail/"' in photos
    assert "86.4%" in versions
    assert "Start a training run" in runs
    changing = admin_client.get(reverse("admin:classifier_photo_change", args=[photo.pk])).content.decode()
    assert 'type="file"' not in changing  # no file of a photo is swapped past the upload's checks


def test_the_admin_calls_an_answer_what_the_site_calls_it(admin_client):
    index = admin_client.get(reverse("admin:index")).content.decode()

    assert ">Answers</a>" in index and ">Feedback" not in index


def test_activating_from_the_admin_needs_exactly_one_version(admin_client):
    from classifier.models import ModelVersion

    shipped = ModelVersion.objects.get(is_active=True)
    other = ModelVersion.objects.create(name="kue-v2", path=shipped.path, labels=shipped.labels)
    url = reverse("admin:classifier_modelversion_changelist")

    two = admin_client.post(url, {"action": "activate", "_selected_action": [shipped.pk, other.pk]},
                            follow=True)
    unmeasured = admin_client.post(url, {"action": "activate", "_selected_action": [other.pk]}, follow=True)
    assert list(ModelVersion.objects.filter(is_active=True)) == [shipped]
    one = admin_client.post(url, {"action": "activate_confirmed", "_selected_action": [other.pk]},
                            follow=True)

    assert "Select exactly one version" in two.content.decode()
    assert ("Kue-v2 was not activated. It was not measured on the benchmark split. To use it all the "
            "same: “Activate the selected version despite its warning”.") in unmeasured.content.decode()  # K
    # The action menu stays narrow: its longest choice is the menu's width.
    menu = re.search(r'<select name="action".*?</select>', unmeasured.content.decode(), re.S)[0]
    assert max(len(choice) for choice in re.findall(r">([^<]+)</option>", menu)) <= 60
    assert "The active version is now kue-v2." in one.content.decode()
    assert list(ModelVersion.objects.filter(is_active=True)) == [other]


def test_a_model_folder_with_a_class_called_none_is_refused_as_a_version(admin_client, settings, tmp_path):
    """"none" is the site's answer "none of these": a class of that name could never be confirmed."""
    import json
    import shutil

    from classifier.models import ModelVersion

    shutil.copytree(settings.MODELS_DIR / "kue-mobilenetv2", tmp_path / "odd")
    labels = json.loads((tmp_path / "odd" / "labels.json").read_text())
    labels[0] = {"slug": "none", "name": "None"}
    (tmp_path / "odd" / "labels.json").write_text(json.dumps(labels))
    settings.MODELS_DIR = tmp_path

    refused = admin_client.post(reverse("admin:classifier_modelversion_add"), {"name": "odd", "path": "odd"})

    assert "has a class named &#x27;none&#x27;, the site&#x27;s answer" in refused.content.decode()
    assert not ModelVersion.objects.filter(name="odd").exists()


def test_a_version_is_added_from_its_folder_and_then_only_renamed(admin_client):
    from classifier.models import ModelVersion

    shipped = ModelVersion.objects.get(is_active=True)
    add = reverse("admin:classifier_modelversion_add")

    refused = admin_client.post(add, {"name": "nowhere", "path": "does-not-exist"})
    admin_client.post(add, {"name": "kue-copy", "path": shipped.path})
    copy = ModelVersion.objects.get(name="kue-copy")
    admin_client.post(reverse("admin:classifier_modelversion_change", args=[shipped.pk]),
                      {"name": "kue-mobilenetv2-shipped", "path": "does-not-exist", "labels": "[]"})

    assert "is not an exported model folder" in refused.content.decode()
    assert copy.labels == shipped.labels and copy.metrics["test"]["n"] == 162 and not copy.is_active
    assert copy.fingerprint == shipped.fingerprint != ""  # the same files
    shipped.refresh_from_db()
    assert shipped.name == "kue-mobilenetv2-shipped"
    assert shipped.path == copy.path and shipped.labels == copy.labels and shipped.is_active


def test_a_version_name_that_is_a_path_is_refused_and_runs_never_write_outside_the_models_folder(
        admin_client, admin_user, settings):
    """A version's name names its retrained versions' folders: "../x" would put one (and its removal,
    when the run is cancelled) anywhere."""
    from django.core.exceptions import ValidationError

    from classifier import retraining, services
    from classifier.models import ModelVersion, TrainingRun

    shipped = ModelVersion.objects.get(is_active=True)
    change = reverse("admin:classifier_modelversion_change", args=[shipped.pk])

    renamed = admin_client.post(change, {"name": "../../../tmp/escape"})
    with pytest.raises(ValidationError, match="letters, digits"):
        services.model_version_register(name="/tmp/escape", path=shipped.path)
    ModelVersion.objects.filter(pk=shipped.pk).update(name="../escape")  # from before names were checked
    run = TrainingRun.objects.create(started_by=admin_user, base_version=shipped)
    name = retraining.new_version_name(ModelVersion.objects.get(pk=shipped.pk), run)

    assert "Use letters, digits and . _ + - only" in renamed.content.decode()
    assert name == f"version+run{run.pk}"


def test_the_active_version_and_a_live_run_cannot_be_deleted(admin_client, admin_user):
    from classifier import services
    from classifier.models import ModelVersion, TrainingRun

    shipped = ModelVersion.objects.get(is_active=True)
    run = TrainingRun.objects.create(started_by=admin_user, base_version=shipped)  # queued

    version_page = admin_client.get(reverse("admin:classifier_modelversion_delete", args=[shipped.pk]))
    run_page = admin_client.get(reverse("admin:classifier_trainingrun_delete", args=[run.pk]))
    services.training_run_fail(run, "stopped")
    finished_run_page = admin_client.get(reverse("admin:classifier_trainingrun_delete", args=[run.pk]))

    assert version_page.status_code == 403 and run_page.status_code == 403
    assert finished_run_page.status_code == 200


def media_files(settings) -> list:
    from pathlib import Path

    return sorted(p.name for p in Path(settings.MEDIA_ROOT).rglob("*") if p.is_file())


@pytest.mark.parametrize("how", ["one", "bulk action", "deleting its owner"])
def test_photos_deleted_in_the_admin_take_their_files_with_them(admin_client, user, settings,
                                                                django_capture_on_commit_callbacks, how):
    """The photo, its thumbnail and its heat map: a deleted user's private originals must not stay."""

    photos = [make_photo(user, status="done", label="kue_lapis") for _ in range(2)]
    assert len(media_files(settings)) == 6
    with django_capture_on_commit_callbacks(execute=True):
        if how == "one":
            admin_client.post(reverse("admin:classifier_photo_delete", args=[photos[0].pk]), {"post": "yes"})
        elif how == "bulk action":
            admin_client.post(reverse("admin:classifier_photo_changelist"), {
                "action": "delete_selected", "_selected_action": [p.pk for p in photos], "post": "yes"})
        else:
            admin_client.post(reverse("admin:auth_user_delete", args=[user.pk]), {"post": "yes"})

    left = 3 if how == "one" else 0
    assert len(media_files(settings)) == left


def test_a_file_the_disk_refuses_to_delete_leaves_the_photos_other_files_deleted(
        user, settings, monkeypatch, django_capture_on_commit_callbacks):
    from django.core.files.storage import FileSystemStorage

    photo = make_photo(user, status="done", label="kue_lapis")
    delete = FileSystemStorage.delete

    def refusing(storage, name):
        if name.startswith("photos/"):
            raise PermissionError(13, "Permission denied", name)
        delete(storage, name)

    monkeypatch.setattr(FileSystemStorage, "delete", refusing)
    with django_capture_on_commit_callbacks(execute=True):
        photo.delete()

    root = settings.MEDIA_ROOT
    left = [p.relative_to(root).parts[0] for p in root.rglob("*") if p.is_file()]
    assert left == ["photos"]  # the thumbnail and the heat map went


def test_predictions_and_answers_are_read_only_in_the_admin(admin_client, user):
    """A deleted prediction would leave its photo done without a result; a hand-made answer would
    skip the checks on its label."""
    from classifier import services

    photo = make_photo(user, status="done", label="kue_lapis")
    feedback = services.feedback_record(photo=photo, user=user, label="kue_lapis")
    prediction = photo.predictions.get()

    for name, pk in [("prediction", prediction.pk), ("feedback", feedback.pk)]:
        change = admin_client.get(reverse(f"admin:classifier_{name}_change", args=[pk]))
        assert change.status_code == 200
        assert 'name="_save"' not in change.content.decode() and "deletelink" not in change.content.decode()
        assert admin_client.post(reverse(f"admin:classifier_{name}_change", args=[pk]),
                                 {"label": "kue_klepon"}).status_code == 403
        assert admin_client.post(reverse(f"admin:classifier_{name}_delete", args=[pk]),
                                 {"post": "yes"}).status_code == 403
        assert admin_client.get(reverse(f"admin:classifier_{name}_add")).status_code == 403
        changelist = admin_client.get(reverse(f"admin:classifier_{name}_changelist")).content.decode()
        assert 'value="delete_selected"' not in changelist
    photo.refresh_from_db()
    assert photo.predictions.get().label == "kue_lapis" and photo.feedback.label == "kue_lapis"
    # The photo's page offers no empty prediction row to add, nor its upload's key to edit.
    page = admin_client.get(reverse("admin:classifier_photo_change", args=[photo.pk])).content.decode()
    assert 'name="predictions-MAX_NUM_FORMS" value="0"' in page and 'name="client_key"' not in page


def test_the_admin_gives_confidence_as_the_site_does(admin_client, user):
    photo = make_photo(user, status="done", label="kue_lapis", confidence=0.8734123)
    page = admin_client.get(reverse("admin:classifier_photo_change", args=[photo.pk])).content.decode()
    predictions = admin_client.get(reverse("admin:classifier_prediction_changelist")).content.decode()

    for shown in (page, predictions):
        assert "87%" in shown and "0.873" not in shown and "5.0 ms" in shown
    assert "86%" in page  # the margin to the second most probable cake (1%)


def test_the_admin_rounds_a_versions_figures_as_the_staff_page_does(monkeypatch):
    """number_format cuts a float's digits off: 93.75% was 93.7% in the admin, 93.8% on the page."""
    from django.contrib import admin
    from django.utils import translation

    from classifier import selectors
    from classifier.models import ModelVersion

    monkeypatch.setattr(selectors, "benchmark_figure", lambda version, name: {"top1": 0.9375,
                                                                             "macro_f1": 0.8567}[name])
    versions = admin.site._registry[ModelVersion]
    version = ModelVersion.objects.get(is_active=True)

    assert (versions.test_top1(version), versions.test_macro_f1(version)) == ("93.8%", "0.857")
    with translation.override("id"):
        assert (versions.test_top1(version), versions.test_macro_f1(version)) == ("93,8%", "0,857")


def test_a_photos_admin_page_gives_its_answer_and_its_digest_by_name(admin_client, user):
    from classifier import services

    photo = make_photo(user, status="done", label="kue_lapis")
    before = admin_client.get(reverse("admin:classifier_photo_change", args=[photo.pk])).content.decode()
    services.feedback_record(photo=photo, user=user, label="kue_lumpur")
    page = admin_client.get(reverse("admin:classifier_photo_change", args=[photo.pk])).content.decode()

    assert "none yet" in before
    assert "corrected to Kue Lumpur by ayu" in page and "SHA-256" in page and photo.sha256 in page


def test_the_admin_lists_name_the_cakes_as_the_site_does(admin_client, user):
    from classifier import services

    photo = make_photo(user, status="done", label="kue_lapis")
    services.feedback_record(photo=photo, user=user, label="kue_lumpur")
    pages = {name: admin_client.get(reverse(f"admin:classifier_{name}")).content.decode()
             for name in ("prediction_changelist", "feedback_changelist")}
    change = reverse("admin:classifier_photo_change", args=[photo.pk])
    pages["photo"] = admin_client.get(change).content.decode()

    assert '<td class="field-label_shown">Kue Lapis</td>' in pages["prediction_changelist"]
    assert '<td class="field-answer">Kue Lumpur</td>' in pages["feedback_changelist"]
    assert '<td class="field-predicted">Kue Lapis</td>' in pages["feedback_changelist"]
    assert '<div class="readonly">Kue Lapis</div>' in pages["photo"]


def test_the_admin_states_the_auto_activation_rule_as_the_staff_page_does(admin_client, settings):
    settings.AUTO_ACTIVATE_MIN_HELDOUT = 30
    runs = admin_client.get(reverse("admin:classifier_trainingrun_changelist")).content.decode()
    runs = " ".join(html.unescape(runs).split())

    assert ("activate it if it is at least as good on the benchmark (and no cake's recall there 15 points or "
            "more lower), better on the held-out user photos (at least 30 of them), and not a repeat of the "
            "active version's training (the same answers, mode and base photos)") in runs
    assert "fast: refit the head on cached embeddings (seconds)" in runs


def test_a_version_activated_while_its_deletion_was_confirmed_is_not_deleted(admin_client, monkeypatch):
    from django.contrib.admin.models import DELETION, LogEntry

    from classifier import services
    from classifier.models import ModelVersion

    shipped = ModelVersion.objects.get(is_active=True)
    copy = ModelVersion.objects.create(name="copy", path=shipped.path, labels=shipped.labels)
    lock = services.lock_model_versions

    def an_activation_commits_first():  # after the page checked that it was not active
        ModelVersion.objects.filter(pk=shipped.pk).update(is_active=False)
        ModelVersion.objects.filter(pk=copy.pk).update(is_active=True)
        return lock()

    monkeypatch.setattr(services, "lock_model_versions", an_activation_commits_first)
    page = admin_client.post(reverse("admin:classifier_modelversion_delete", args=[copy.pk]),
                             {"post": "yes"}, follow=True).content.decode()

    assert ModelVersion.objects.filter(pk=copy.pk).exists()  # (the test's activation is rolled back with it)
    assert "Not deleted: copy is the active version" in page
    assert not LogEntry.objects.filter(object_id=str(copy.pk), action_flag=DELETION).exists()  # no "deleted"
    changelist = admin_client.get(reverse("admin:classifier_modelversion_changelist")).content.decode()
    assert 'value="delete_selected"' not in changelist  # its "Successfully deleted" would be said regardless


def test_the_runs_list_gives_a_run_time_in_tenths_of_a_second(admin_client, admin_user):
    from datetime import timedelta

    from django.utils import timezone

    from classifier.models import ModelVersion, TrainingRun

    now = timezone.now()
    TrainingRun.objects.create(started_by=admin_user, base_version=ModelVersion.objects.get(is_active=True),
                               status="succeeded", started=now, finished=now + timedelta(seconds=10.458847))

    page = admin_client.get(reverse("admin:classifier_trainingrun_changelist")).content.decode()

    assert '<td class="field-duration">10.5</td>' in page and "10.458847" not in page


def test_the_admin_writes_dates_as_the_pages_do(admin_client, user):
    from datetime import UTC, datetime

    photo = make_photo(user)
    Photo.objects.filter(pk=photo.pk).update(created=datetime(2026, 12, 7, 3, 30, tzinfo=UTC))

    listed = admin_client.get(reverse("admin:classifier_photo_changelist")).content.decode()

    assert "7 Dec 2026 03:30 UTC" in listed and "Dec. 7, 2026" not in listed


def test_a_runs_page_in_the_admin_names_the_answers_it_used_by_photo(admin_client, admin_user):
    from classifier.models import ModelVersion, TrainingRun

    shipped = ModelVersion.objects.get(is_active=True)
    used = {"trained": [[5, "kue_lapis"], [7, "kue_klepon"]], "held_out": []}
    run = TrainingRun.objects.create(started_by=admin_user, base_version=shipped, photos_used=used)

    page = admin_client.get(reverse("admin:classifier_trainingrun_change", args=[run.pk])).content.decode()

    assert "trained: 2 (photo ids 5, 7). held out: none." in page
    assert "[[5, " not in page  # (not the record itself)


def test_a_run_without_an_end_shows_no_time(admin_client, admin_user):
    from classifier.models import ModelVersion, TrainingRun

    TrainingRun.objects.create(started_by=admin_user, base_version=ModelVersion.objects.get(is_active=True))

    page = admin_client.get(reverse("admin:classifier_trainingrun_changelist")).content.decode()

    assert '<td class="field-duration">-</td>' in page


def test_a_transaction_that_rolls_back_a_deletion_keeps_the_files(user, settings):
    from django.db import transaction

    photo = make_photo(user, status="done", label="kue_lapis")
    with pytest.raises(RuntimeError), transaction.atomic():
        photo.delete()
        raise RuntimeError("something later in the same request failed")

    assert len(media_files(settings)) == 3


def test_failed_photos_are_queued_again_from_the_admin_where_nothing_is_edited_by_hand(
        admin_client, user, enqueued, django_capture_on_commit_callbacks):
    """After a model outage failed a batch of photos, staff queue them again at once, instead of
    each owner pressing retry. A photo's status and files follow the product's rules only."""
    failed = [make_photo(user, status="failed") for _ in range(2)]
    done = make_photo(user, status="done", label="kue_lapis")
    Photo.objects.filter(pk=failed[0].pk).update(
        error="No model is active yet; the photo is classified once an administrator activates one.",
        awaits_model=True)
    listed = admin_client.get(reverse("admin:classifier_photo_changelist"), {"status__exact": "failed"})
    waiting = admin_client.get(reverse("admin:classifier_photo_changelist"), {"awaits_model__exact": "1"})
    assert "No model is active yet; the photo is classified once an administrator activates…" in \
        listed.content.decode()  # why each failed, at a glance
    assert list(waiting.context["cl"].result_list) == [failed[0]]

    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(reverse("admin:classifier_photo_changelist"), {
            "action": "retry_failed", "_selected_action": [p.pk for p in [*failed, done]]}, follow=True)

    assert "2 failed photos queued again; 1 of those selected were not failed." in response.content.decode()
    assert sorted(enqueued) == sorted(p.pk for p in failed)
    statuses = dict(Photo.objects.values_list("pk", "status"))
    assert [statuses[p.pk] for p in failed] == ["queued", "queued"] and statuses[done.pk] == "done"

    assert admin_client.get(reverse("admin:classifier_photo_add")).status_code == 403
    change = admin_client.get(reverse("admin:classifier_photo_change", args=[done.pk])).content.decode()
    assert all(f'name="{field}"' not in change for field in ["status", "error", "image", "owner"])
    assert "/media/" not in change  # private files have no public address


def test_saving_a_photo_in_the_admin_keeps_what_the_worker_changed_meanwhile(admin_client, user, monkeypatch):
    from django.contrib.admin.options import ModelAdmin

    photo = make_photo(user, status="queued")
    get_object = ModelAdmin.get_object

    def loaded_then_classified(self, request, object_id, from_field=None):
        loaded = get_object(self, request, object_id, from_field)
        Photo.objects.filter(pk=photo.pk).update(status="done")  # the worker, between load and save
        return loaded

    monkeypatch.setattr(ModelAdmin, "get_object", loaded_then_classified)
    response = admin_client.post(reverse("admin:classifier_photo_change", args=[photo.pk]), {
        "original_name": "lapis.jpg", "predictions-TOTAL_FORMS": "0", "predictions-INITIAL_FORMS": "0"})

    assert response.status_code == 302
    photo.refresh_from_db()
    assert (photo.status, photo.original_name) == ("done", "lapis.jpg")


def test_the_admin_edits_a_photos_file_name_alone_not_what_the_worker_wrote(admin_client, user):
    """The predicted label is the prediction's copy (the gallery filters on it), and whether a photo
    awaits a model is the worker's to say: both were text and a box to edit."""
    photo = make_photo(user, status="done", label="kue_lapis")
    url = reverse("admin:classifier_photo_change", args=[photo.pk])

    page = admin_client.get(url).content.decode()
    admin_client.post(url, {"original_name": "lapis.jpg", "predicted_label": "kue_lumpur",
                            "awaits_model": "on", "predictions-TOTAL_FORMS": "0",
                            "predictions-INITIAL_FORMS": "0"})

    assert 'name="original_name"' in page
    assert 'name="predicted_label"' not in page and 'name="awaits_model"' not in page
    photo.refresh_from_db()
    assert (photo.original_name, photo.predicted_label, photo.awaits_model) == (
        "lapis.jpg", "kue_lapis", False)


def test_retrying_photos_one_of_which_was_deleted_meanwhile_queues_the_others(
        admin_client, user, enqueued, django_capture_on_commit_callbacks, monkeypatch):
    from classifier import services

    kept, gone = make_photo(user, status="failed"), make_photo(user, status="failed")
    retry = services.photo_retry

    def deleted_by_its_owner_meanwhile(photo):
        if photo.pk == gone.pk:
            services.photo_delete(photo)
        return retry(photo)

    monkeypatch.setattr(services, "photo_retry", deleted_by_its_owner_meanwhile)
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(reverse("admin:classifier_photo_changelist"), {
            "action": "retry_failed", "_selected_action": [kept.pk, gone.pk]}, follow=True)

    assert response.status_code == 200
    assert "1 failed photo queued again; 1 of those selected were not failed." in response.content.decode()
    assert enqueued == [kept.pk]


@pytest.mark.parametrize("changelist", ["photo", "prediction", "feedback", "modelversion", "trainingrun"])
@pytest.mark.parametrize("year", ["0", "10000", "99999999999", "-1", "2026,0"])
def test_a_year_the_admin_cannot_look_up_is_a_bad_request(admin_client, changelist, year):
    field = "updated" if changelist == "feedback" else "created"
    url = reverse(f"admin:classifier_{changelist}_changelist")
    lookup = f"{field}__year__in" if "," in year else f"{field}__year"

    assert admin_client.get(url, {lookup: year}).status_code == 400
    assert admin_client.get(url, {f"{field}__year": "2026"}).status_code == 200


@pytest.mark.parametrize("model, action", [
    ("photo", "retry_failed"), ("photo", "delete_selected"), ("modelversion", "activate"),
    ("trainingrun", "cancel_runs"), ("user", "delete_selected"),
])
@pytest.mark.parametrize("selected", ["abc", "1.5", "\x00", str(10**30)])
def test_an_admin_action_on_ids_that_are_no_ids_is_a_bad_request(admin_client, model, action, selected):
    app = "auth" if model == "user" else "classifier"

    response = admin_client.post(reverse(f"admin:{app}_{model}_changelist"),
                                 {"action": action, "_selected_action": [selected], "index": 0})

    assert response.status_code == 400



@pytest.mark.parametrize("lookup", ["auth_token_set__pk__startswith", "auth_token_set__token_key__startswith",
                                    "auth_token_set__digest", "auth_token_set"])
def test_the_account_list_is_no_oracle_for_api_tokens(client, django_user_model, user, lookup):
    """Staff who may view accounts, not tokens, cannot find what the site keeps of a token (its hash,
    its first characters) by filtering the list on it."""
    from django.contrib.auth.models import Permission

    from classifier.models import ApiToken

    key = api_token(user)
    digest = ApiToken.objects.get(user=user).digest
    support = django_user_model.objects.create_user("support", password="risoles-2026", is_staff=True)
    support.user_permissions.add(Permission.objects.get(codename="view_user"))
    client.force_login(support)

    assert client.get("/admin/classifier/apitoken/").status_code == 403  # (no view of the tokens)
    for guess in (key[:2], key[:15], digest[:2], digest):
        response = client.get(reverse("admin:auth_user_changelist"), {lookup: guess})
        assert response.status_code == 400, (lookup, guess)


def test_staff_revoke_an_accounts_api_token_in_the_admin_which_shows_none(admin_client, user):
    """A token seen where it should not be: staff delete it, and its program is signed out. The admin
    shows its first characters, never the token (the site has only its hash)."""
    from rest_framework.test import APIClient

    from classifier.models import ApiToken

    key, other = api_token(user), api_token(user)
    token = ApiToken.objects.get(token_key=key[:15])
    listed = admin_client.get(reverse("admin:classifier_apitoken_changelist")).content.decode()
    page = admin_client.get(reverse("admin:classifier_apitoken_change", args=[token.pk])).content.decode()
    assert f"{key[:8]}…" in listed and f"{key[:8]}…" in page and "ayu" in page
    assert not any(secret in shown for secret in (key[8:], other[8:]) for shown in (listed, page))
    assert admin_client.get(reverse("admin:classifier_apitoken_add")).status_code == 403

    deleted = admin_client.post(reverse("admin:classifier_apitoken_delete", args=[token.pk]), {"post": "yes"})

    assert deleted.status_code == 302
    assert APIClient(HTTP_AUTHORIZATION=f"Token {key}").get("/api/account/").status_code == 401
    assert APIClient(HTTP_AUTHORIZATION=f"Token {other}").get("/api/account/").status_code == 200


def test_staff_who_may_delete_accounts_delete_one_with_api_tokens_and_settings_without_their_permissions(
        client, django_user_model, user):
    """Its tokens and settings go with it, as when its owner deletes it: the staff who deleted
    accounts before these had models of their own (whose permissions no group has yet) still do."""
    from django.contrib.auth.models import Permission

    from classifier import services

    api_token(user)
    services.account_language_set(user, "id")
    support = django_user_model.objects.create_user("support", password="risoles-2026", is_staff=True)
    support.user_permissions.add(*Permission.objects.filter(codename__in=["view_user", "delete_user"]))
    client.force_login(support)

    asked = client.get(reverse("admin:auth_user_delete", args=[user.pk]))
    deleted = client.post(reverse("admin:auth_user_delete", args=[user.pk]), {"post": "yes"})

    assert asked.status_code == 200 and "permission to delete" not in asked.content.decode()
    assert deleted.status_code == 302 and not django_user_model.objects.filter(pk=user.pk).exists()
