"""The staff page of model versions: side by side, confusion matrices, activation and rollback."""

import pytest
from django.urls import reverse

from classifier import tasks
from classifier.models import ModelVersion, TrainingRun

pytestmark = pytest.mark.django_db


@pytest.fixture
def root(django_user_model):
    return django_user_model.objects.create_superuser("root", password="kue-bika-ambon-1")


def test_staff_see_every_version_with_its_figures_and_confusion_matrices(client, root):
    client.force_login(root)

    page = client.get(reverse("model-versions")).content.decode()
    shipped = ModelVersion.objects.get(is_active=True)
    image = client.get(reverse("model-version-confusion", args=[shipped.pk, "test"]))

    assert "kue-mobilenetv2" in page and "active" in page
    assert "test (162 photos): top-1 86%" in page
    assert image.status_code == 200 and image["Content-Type"] == "image/png"
    assert client.get(reverse("model-version-confusion", args=[shipped.pk, "nope"])).status_code == 404


def test_people_who_are_not_staff_are_sent_to_the_admin_login(client, user):
    client.force_login(user)

    response = client.get(reverse("model-versions"))

    assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_activating_and_rolling_back_from_the_page(client, root):
    shipped = ModelVersion.objects.get(is_active=True)
    newer = ModelVersion.objects.create(name="kue-v2", path=shipped.path, labels=shipped.labels)
    client.force_login(root)

    response = client.post(reverse("model-version-activate", args=[newer.pk]), follow=True)
    assert "kue-v2 is now the active model" in response.content.decode()
    client.post(reverse("model-version-activate", args=[shipped.pk]))

    assert list(ModelVersion.objects.filter(is_active=True)) == [shipped]


def test_starting_a_run_from_the_page(client, root, monkeypatch, django_capture_on_commit_callbacks):
    sent = []
    monkeypatch.setattr(tasks.train_model, "apply_async", lambda args, **_: sent.append(args[0]))
    client.force_login(root)

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("training-run-start"), {"auto_activate": "on", "mode": "fast"},
                               follow=True)

    run = TrainingRun.objects.get()
    assert run.auto_activate and sent == [run.pk]
    page = response.content.decode()
    assert f"Training run {run.pk} is queued" in page and 'http-equiv="refresh"' in page
