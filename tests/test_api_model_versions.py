"""The REST API for model versions: everyone reads, staff activate."""

import pytest
from rest_framework.test import APIClient

from classifier.models import ModelVersion

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


def test_a_version_is_retrieved_by_id_and_a_wrong_id_is_a_404(user, other_version):
    client = as_user(user)

    assert client.get(f"/api/model-versions/{other_version.pk}/").json()["name"] == "kue-v2"
    assert client.get("/api/model-versions/99999/").status_code == 404


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
    client.post(f"/api/model-versions/{shipped.pk}/activate/")
    assert list(ModelVersion.objects.filter(is_active=True)) == [shipped]
