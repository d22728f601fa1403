"""The REST API for model versions: everyone reads, staff activate."""

import functools
import threading

import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from rest_framework.test import APIClient

from classifier import services, tasks
from classifier.models import ModelVersion, TrainingRun
from tests.conftest import make_photo
from tests.test_api_photos import needs_postgresql
from training import runtime

pytestmark = pytest.mark.django_db


@pytest.fixture
def other_version():
    shipped = ModelVersion.objects.get(is_active=True)
    # the shipped files under another name: activation loads and runs a version's files first
    return ModelVersion.objects.create(name="kue-v2", path=shipped.path, labels=shipped.labels,
                                       metrics={"test": {"top1": 0.9}})


def as_user(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def test_users_list_versions_with_labels_metrics_and_the_active_flag(user, other_version):
    body = as_user(user).get("/api/model-versions/").json()

    by_name = {v["name"]: v for v in body["results"]}
    assert by_name["kue-mobilenetv2"]["is_active"] is True
    assert by_name["kue-v2"]["is_active"] is False
    assert by_name["kue-mobilenetv2"]["labels"][0] == {"slug": "kue_dadar_gulung", "name": "Kue Dadar Gulung"}
    assert by_name["kue-mobilenetv2"]["metrics"]["test"]["n"] == 162
    shipped = ModelVersion.objects.get(name="kue-mobilenetv2")
    assert by_name["kue-mobilenetv2"]["fingerprint"] == runtime.fingerprint(shipped.folder)


def test_figures_on_the_users_held_out_photos_are_for_staff_only(user, admin_user, other_version):
    """They count what other users uploaded, class by class."""
    held_out = {"n": 2, "top1": 0.5,
                "per_class": {"kue_klepon": {"support": 1}, "kue_lumpur": {"support": 1}}}
    ModelVersion.objects.filter(pk=other_version.pk).update(
        metrics={"test": {"top1": 0.9}, "user_heldout": held_out})

    for who, shown in [(user, {"test"}), (admin_user, {"test", "user_heldout"})]:
        listed = {v["name"]: v for v in as_user(who).get("/api/model-versions/").json()["results"]}
        one = as_user(who).get(f"/api/model-versions/{other_version.pk}/").json()
        assert set(listed["kue-v2"]["metrics"]) == set(one["metrics"]) == shown


def test_staff_read_how_many_answers_came_since_the_active_version_was_trained(user, admin_user,
                                                                              other_version):

    for label in ("kue_lapis", "kue_klepon"):
        services.feedback_record(photo=make_photo(user, "done", "kue_lapis"), user=user, label=label)

    for who, since in [(admin_user, 2), (user, None)]:
        listed = {v["name"]: v for v in as_user(who).get("/api/model-versions/").json()["results"]}
        assert listed["kue-mobilenetv2"]["answers_since"] == since  # (the shipped version, made by hand)
        assert listed["kue-v2"]["answers_since"] is None  # not the active one


def test_versions_registered_at_the_same_moment_list_newest_first(user, admin_user, client):
    shipped = ModelVersion.objects.get(is_active=True)
    for name in ["kue-v2", "kue-v3", "kue-v4"]:
        ModelVersion.objects.create(name=name, path=shipped.path, labels=shipped.labels)
    ModelVersion.objects.update(created=shipped.created)
    client.force_login(admin_user)

    listed = [v["name"] for v in as_user(user).get("/api/model-versions/").json()["results"]]
    page = client.get("/staff/models/").content.decode()

    assert listed == ["kue-v4", "kue-v3", "kue-v2", "kue-mobilenetv2"]
    shown = [page.index(f"<h2>{name}") for name in listed]
    assert shown == sorted(shown)


def test_a_version_is_retrieved_by_id_and_a_wrong_id_is_a_404(user, other_version):
    client = as_user(user)

    assert client.get(f"/api/model-versions/{other_version.pk}/").json()["name"] == "kue-v2"
    missing = client.get("/api/model-versions/99999/")
    assert missing.status_code == 404 and missing.json()["error"]["message"] == "Model version not found."
    # The list's filters and ordering are the list's: one version's URL answers whatever they say.
    for query in ("is_active=true", "is_active=maybe", "ordering=bogus"):
        assert client.get(f"/api/model-versions/{other_version.pk}/?{query}").json()["name"] == "kue-v2"


def test_a_stray_list_filter_does_not_stop_staff_activating_or_cancelling(admin_user, other_version):
    from classifier.models import TrainingRun

    client = as_user(admin_user)
    run = TrainingRun.objects.create(started_by=admin_user, base_version=other_version)

    activated = client.post(f"/api/model-versions/{other_version.pk}/activate/?is_active=true",
                            {"confirm": True}, format="json")
    cancelled = client.post(f"/api/training-runs/{run.pk}/cancel/?status=succeeded&ordering=x")

    assert activated.status_code == 200 and activated.json()["is_active"] is True
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert client.get(f"/api/training-runs/{run.pk}/?mode=full").json()["id"] == run.pk


def test_a_user_who_is_not_staff_cannot_activate_a_version(user, other_version):
    response = as_user(user).post(f"/api/model-versions/{other_version.pk}/activate/")

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "permission_denied"
    assert ModelVersion.objects.get(is_active=True).name == "kue-mobilenetv2"


def test_staff_with_the_change_permission_activate_a_version_and_roll_back(staff, other_version):
    from django.contrib.auth.models import Permission

    readonly = as_user(staff).post(f"/api/model-versions/{other_version.pk}/activate/")
    staff.user_permissions.add(Permission.objects.get(codename="change_modelversion"))
    staff = type(staff).objects.get(pk=staff.pk)  # fresh permission cache
    client = as_user(staff)
    assert readonly.status_code == 403
    shipped = ModelVersion.objects.get(name="kue-mobilenetv2")

    assert client.post(f"/api/model-versions/{other_version.pk}/activate/").json()["is_active"] is True
    assert list(ModelVersion.objects.filter(is_active=True)) == [other_version]
    lower = client.post(f"/api/model-versions/{shipped.pk}/activate/")  # 86.4% against 90% on the benchmark
    assert lower.status_code == 400 and lower.json()["error"]["fields"]["confirm"] == [
        "kue-mobilenetv2 was not activated. It is 3.6 points below the active version on the benchmark "
        "split (top-1 86.4% against 90.0%). Send true to activate it all the same."]
    assert list(ModelVersion.objects.filter(is_active=True)) == [other_version]
    client.post(f"/api/model-versions/{shipped.pk}/activate/", {"confirm": True}, format="json")
    assert list(ModelVersion.objects.filter(is_active=True)) == [shipped]


def test_a_version_whose_files_changed_is_refused_with_the_reason_as_the_message(admin_user, other_version):
    ModelVersion.objects.filter(pk=other_version.pk).update(fingerprint="0" * 64)  # files since changed

    response = as_user(admin_user).post(f"/api/model-versions/{other_version.pk}/activate/")

    error = response.json()["error"]
    assert response.status_code == 400 and error["code"] == "invalid"
    assert error["message"].startswith("kue-v2 cannot be activated: its model files do not load")
    assert error["fields"] == {"non_field_errors": [error["message"]]}


def test_an_automatic_activation_in_place_of_a_version_no_longer_active_is_refused(other_version):
    """A training run activates its version only in place of the one it was compared with: staff who
    activated another version while it ran are not overruled."""
    shipped = ModelVersion.objects.get(is_active=True)
    chosen = ModelVersion.objects.create(name="kue-v3", path=shipped.path, labels=shipped.labels)
    services.model_version_activate(chosen, confirmed=True)  # staff, while the run trains on `shipped`

    with pytest.raises(ValidationError, match="no longer kue-mobilenetv2 but kue-v3"):
        services.model_version_activate(other_version, replacing=shipped)

    assert list(ModelVersion.objects.filter(is_active=True)) == [chosen]
    assert services.model_version_activate(other_version, replacing=chosen).is_active


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_activations_and_run_starts_at_the_same_moment_leave_one_active_version(staff, other_version,
                                                                                monkeypatch):
    needs_postgresql()
    shipped = ModelVersion.objects.get(is_active=True)
    monkeypatch.setattr(tasks.train_model, "apply_async", lambda *_, **__: None)  # the broker boundary
    check, together = runtime.check, threading.Barrier(3)

    def check_then_wait(*args):  # the real check, then both activations reach the database at once
        check(*args)
        together.wait(10)

    monkeypatch.setattr(runtime, "check", check_then_wait)
    outcomes = []

    def run(action):
        try:
            outcomes.append(action())
        except Exception as exc:  # noqa: BLE001 - the outcome under test
            outcomes.append(exc)
        finally:
            connection.close()

    def start():
        together.wait(10)
        return services.training_run_start(user=staff)

    activate = functools.partial(services.model_version_activate, confirmed=True)  # (staff, sure)
    for _ in range(5):
        outcomes.clear()
        threads = [threading.Thread(target=run, args=(lambda v=v: activate(v),))
                   for v in (other_version, shipped)] + [threading.Thread(target=run, args=(start,))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)

        assert not [o for o in outcomes if isinstance(o, Exception)], outcomes
        active = list(ModelVersion.objects.filter(is_active=True))
        assert len(active) == 1
        run_started = next(o for o in outcomes if isinstance(o, TrainingRun))
        assert run_started.base_version in (other_version, shipped)
        TrainingRun.objects.all().delete()


def test_activating_needs_staff_status_not_only_the_permission(django_user_model, other_version):
    from django.contrib.auth.models import Permission

    member = django_user_model.objects.create_user("former", password="x-kue-2026-x")
    member.user_permissions.add(Permission.objects.get(codename="change_modelversion"))

    response = as_user(member).post(f"/api/model-versions/{other_version.pk}/activate/")

    assert response.status_code == 403
    assert ModelVersion.objects.get(is_active=True).name == "kue-mobilenetv2"


def test_staff_read_users_accuracy_per_version_and_day(user, admin_user):
    right, wrong = (make_photo(user, status="done", label="kue_lapis") for _ in range(2))
    services.feedback_record(photo=right, user=user, label="kue_lapis")
    services.feedback_record(photo=wrong, user=user, label="kue_klepon")
    api = APIClient()
    api.force_authenticate(admin_user)

    rows = api.get("/api/model-versions/accuracy-by-day/").json()

    assert [(r["version"], r["reviewed"], r["confirmed"]) for r in rows] == [("kue-mobilenetv2", 2, 1)]
    api.force_authenticate(user)
    assert api.get("/api/model-versions/accuracy-by-day/").status_code == 403


def test_staff_read_a_versions_training_epoch_by_epoch(user, admin_user):
    shipped = ModelVersion.objects.get(is_active=True)
    refit = ModelVersion.objects.create(name="kue-refit", path="kue-refit-elsewhere", labels=shipped.labels)
    api = as_user(admin_user)

    phases = api.get(f"/api/model-versions/{shipped.pk}/history/").json()
    none = api.get(f"/api/model-versions/{refit.pk}/history/")

    assert [p["name"].split(" (")[0] for p in phases] == ["head", "fine-tune"]
    head = phases[0]
    assert len(head["history"]["val_accuracy"]) == head["epochs_run"] and 1 <= head["best_epoch"] <= 15
    assert none.status_code == 404 and "not trained epoch by epoch" in none.json()["error"]["message"]
    assert as_user(user).get(f"/api/model-versions/{shipped.pk}/history/").status_code == 403


def test_a_diverged_epoch_reads_as_null_in_a_versions_training(admin_user, settings, tmp_path):
    """Keras records a diverged loss as NaN, which JSON cannot carry."""
    settings.MODELS_DIR = tmp_path
    (tmp_path / "diverged").mkdir()
    (tmp_path / "diverged" / "history.json").write_text(
        '[{"name": "head", "epochs_run": 2, "best_epoch": 1, "seconds": 3.0,'
        ' "history": {"loss": [1.5, NaN], "val_loss": [1.2, Infinity]}}]')
    version = ModelVersion.objects.create(name="kue-diverged", path="diverged", labels=[])

    answer = as_user(admin_user).get(f"/api/model-versions/{version.pk}/history/")

    assert answer.status_code == 200
    assert answer.json()[0]["history"] == {"loss": [1.5, None], "val_loss": [1.2, None]}


def test_an_answer_counts_on_the_day_it_was_last_changed(user, admin_user):
    """A photo confirmed days ago and corrected today is today's correction: the chart follows what
    users think of a version now, not when they first looked."""
    from datetime import timedelta

    from django.utils import timezone

    from classifier.models import Feedback

    photo = make_photo(user, status="done", label="kue_lapis")
    services.feedback_record(photo=photo, user=user, label="kue_lapis")
    days_ago = timezone.now() - timedelta(days=3)
    Feedback.objects.update(created=days_ago, updated=days_ago)  # confirmed three days ago
    services.feedback_record(photo=photo, user=user, label="kue_klepon")  # corrected today
    api = APIClient()
    api.force_authenticate(admin_user)

    rows = api.get("/api/model-versions/accuracy-by-day/").json()

    assert rows == [{"version": "kue-mobilenetv2", "day": timezone.localdate().isoformat(),
                     "reviewed": 1, "confirmed": 0, "accuracy": 0.0, "accuracy_low": 0.0,
                     "accuracy_high": pytest.approx(0.7935, abs=1e-4)}]
