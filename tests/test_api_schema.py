"""Schemathesis, a third-party API client, drives every documented operation from the OpenAPI schema
with generated requests (valid and invalid) and authentication: no 5xx, every status code is
documented, and every response matches its schema and content type."""

import os

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from rest_framework.authtoken.models import Token
from schemathesis import checks

# The schema view reads no database, so it can be loaded while pytest collects.
schema = schemathesis.openapi.from_wsgi("/api/schema/", get_wsgi_application())


@pytest.fixture(autouse=True)
def keep_the_test_connection():
    """Django's own test client keeps the test's database connection open across requests;
    schemathesis calls the WSGI app directly, so do what the test client does."""
    for signal in (request_started, request_finished):
        signal.disconnect(close_old_connections)
    yield
    for signal in (request_started, request_finished):
        signal.connect(close_old_connections)


@pytest.fixture
def token(django_user_model, enqueued):
    user = django_user_model.objects.create_user("schemathesis", password="generated-requests-2026")
    from tests.test_photo_pages import make_photo

    make_photo(user, status="done", label="kue_lapis")
    make_photo(user, status="failed")
    return Token.objects.create(user=user).key


@pytest.mark.django_db
@schema.parametrize()
# CI replays the same generated requests every run (derandomized), so it is never red by chance;
# SCHEMATHESIS_EXPLORE=1 SCHEMATHESIS_EXAMPLES=200 explores new ones by hand.
@settings(max_examples=int(os.environ.get("SCHEMATHESIS_EXAMPLES", 15)), deadline=None,
          derandomize=os.environ.get("SCHEMATHESIS_EXPLORE") != "1",
          suppress_health_check=list(HealthCheck))
def test_every_operation_answers_within_its_schema(case, token):
    response = case.call(headers={"Authorization": f"Token {token}"})
    case.validate_response(response, checks=[
        checks.not_a_server_error,
        checks.status_code_conformance,
        checks.content_type_conformance,
        checks.response_schema_conformance,
    ])


def test_the_schema_gives_parameters_the_types_and_ranges_the_server_takes(client):
    paths = client.get("/api/schema/?format=json").json()["paths"]
    listing = {p["name"]: p["schema"] for p in paths["/api/photos/"]["get"]["parameters"]}
    versions = {p["name"]: p["schema"] for p in paths["/api/model-versions/"]["get"]["parameters"]}
    wait = {p["name"]: p["schema"] for p in paths["/api/photos/{id}/"]["get"]["parameters"]}["wait"]

    assert listing["reviewed"] == listing["corrected"] == versions["is_active"] == {"type": "boolean"}
    assert (wait["type"], wait["minimum"], wait["maximum"]) == ("number", 0, 30)


def test_head_is_answered_wherever_get_is(client, user):
    client.force_login(user)

    for path in ("/api/stats/", "/api/photos/", "/api/model-versions/"):
        assert client.head(path).status_code == 200, path
