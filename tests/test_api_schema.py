"""Schemathesis, a third-party API client, drives every documented operation from the OpenAPI schema
with generated requests (valid and invalid) and authentication: no 5xx, every status code is
documented, and every response matches its schema and content type."""

import json
import os

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from schemathesis import checks

from tests.conftest import api_token, make_photo

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
    make_photo(user, status="done", label="kue_lapis")
    make_photo(user, status="failed")
    return api_token(user)


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
    described = {p["name"]: p.get("description", "") for p in paths["/api/photos/"]["get"]["parameters"]}
    assert described["corrected"].startswith("true: photos whose label was corrected; false:")
    assert described["created_before"] == ("uploaded before this time (not at it): ISO 8601 (without an "
                                           "offset, UTC)")
    assert (wait["type"], wait["minimum"], wait["maximum"]) == ("number", 0, 30)


def test_head_is_answered_wherever_get_is(client, user):
    client.force_login(user)

    for path in ("/api/stats/", "/api/photos/", "/api/model-versions/"):
        assert client.head(path).status_code == 200, path


def test_the_schema_is_valid_openapi_and_says_what_every_answer_holds(client):
    """What a generated client relies on: a schema its tools accept (OpenAPI 3.1: null is a type,
    where 3.0's `nullable` beside a reference means nothing to strict validators), every field of
    an answer marked as always there, and the answers any request may get documented everywhere."""
    from openapi_spec_validator import validate

    document = client.get("/api/schema/?format=json").json()
    validate(document)
    assert document["openapi"].startswith("3.1") and '"nullable"' not in json.dumps(document)
    components = document["components"]["schemas"]
    photo = components["Photo"]
    assert photo["properties"]["prediction"]["oneOf"][1] == {"type": "null"}
    for name, component in components.items():
        if "properties" in component and not name.endswith("Request"):  # answers, not what is sent
            assert set(component["required"]) == set(component["properties"]), name
    change = components["AccountChangeRequest"]  # the PATCH: the address (with the password), the language
    assert set(change["properties"]) == {"email", "password", "language"} and "required" not in change

    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            answers = operation["responses"]
            assert "503" in answers and ("413" in answers) == ("requestBody" in operation), (method, path)
            a_file = path.endswith(("/image/", "/display/", "/thumbnail/", "/heatmap/", "/export/"))
            assert ("406" in answers) != a_file, (method, path)
            for code in ("429", "503"):
                assert code not in answers or "Retry-After" in answers[code]["headers"], (method, path, code)
    detail = document["paths"]["/api/photos/{id}/"]["get"]
    assert "If-None-Match" in {p["name"] for p in detail["parameters"]}
    assert "ETag" in detail["responses"]["200"]["headers"] and "ETag" in detail["responses"]["304"]["headers"]
    assert "X-CSRFToken" in document["components"]["securitySchemes"]["cookieAuth"]["description"]


def test_the_schema_says_what_the_server_takes_in_words_for_its_users(client, settings):
    """A JSON Schema pattern matches anywhere in a value (as re.search does), and descriptions come
    from docstrings: the schema's pattern refuses what the server refuses, and no description is a
    note on the code or DRF's example of a URL the API does not have."""
    import re

    document = client.get("/api/schema/?format=json").json()
    upload = {p["name"]: p for p in document["paths"]["/api/photos/"]["post"]["parameters"]}
    key = upload["Idempotency-Key"]["schema"]["pattern"]
    text = json.dumps(document)

    assert re.search(key, "3f2a-b_9") and not re.search(key, "abc!!") and not re.search(key, "a" * 65)
    taken = document["paths"]["/api/photos/"]["post"]["description"]
    assert "JPEG, PNG, GIF, BMP, WebP, HEIC or AVIF" in taken and "up to 20 files a request" in taken
    assert "at most 15.0\xa0MB and 40 megapixels and at least 32 pixels a side" in taken

    settings.MAX_FILES_PER_UPLOAD, settings.MAX_UPLOAD_BYTES = 3, 2 * 1024 * 1024  # (as from the environment)
    taken = client.get("/api/schema/?format=json").json()["paths"]["/api/photos/"]["post"]["description"]
    assert "up to 3 files a request, each of at most 2.0\xa0MB" in taken
    assert "(classifier." not in text and "api.example.org" not in text
    prediction = document["components"]["schemas"]["Prediction"]["properties"]
    assert "among the cakes it knows" in prediction["confidence"]["description"]
    assert "small means unsure" in prediction["margin"]["description"]
    # drf-spectacular describes a view by the first docstring up its classes: a mixin's is a note on
    # the code, not what the operation does
    import inspect

    from rest_framework.views import APIView

    from classifier.api import views
    mixins = [c for c in vars(views).values() if inspect.isclass(c) and c.__module__ == views.__name__
              and not issubclass(c, APIView) and c.__doc__]
    described = [operation.get("description", "") for operations in document["paths"].values()
                 for operation in operations.values()]
    assert not [(c.__name__, d) for c in mixins for d in described
                if d and d.split()[:8] == inspect.getdoc(c).split()[:8]]
    # what a generated client calls an action: account_delete(), not account_delete_create()
    ids = {operation["operationId"] for operations in document["paths"].values()
           for operation in operations.values()}
    crud = ("_list", "_create", "_retrieve", "_partial_update", "_destroy")  # DRF's own, on its routes
    assert {"account_delete", "account_password_change", "photos_retry", "model_versions_activate",
            "training_runs_cancel", "photos_feedback", "photos_image"} <= ids
    assert not {i for i in ids if i.endswith(("_update", *crud))} - {
        "account_create", "account_retrieve", "account_partial_update", "auth_token_create",
        "auth_token_destroy", "photos_list", "photos_create", "photos_retrieve", "photos_destroy",
        "model_versions_list", "model_versions_retrieve", "training_runs_list", "training_runs_create",
        "training_runs_retrieve", "stats_retrieve"}


def test_a_token_no_longer_valid_does_not_stop_what_needs_no_account(client, user):
    """A client that kept the header of a revoked token (or of an account it deleted) may still sign
    up, get a token and read the schema."""
    stale = {"HTTP_AUTHORIZATION": "Token 0123456789abcdef0123456789abcdef01234567"}

    signed_up = client.post("/api/account/", {"username": "dewi", "password": "kue-lapis-2026"}, **stale)
    token = client.post("/api/auth/token/", {"username": "dewi", "password": "kue-lapis-2026"}, **stale)

    assert signed_up.status_code == 201 and token.status_code == 200
    assert client.get("/api/schema/", **stale).status_code == 200
    assert client.get("/api/account/", **stale).status_code == 401  # what needs one still says so
