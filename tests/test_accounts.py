"""Signing up, logging in and out, changing the password: django.contrib.auth with our pages."""

import pytest
from django.urls import reverse

pytestmark = pytest.mark.django_db


def test_signing_up_logs_the_new_user_in_and_shows_their_name(client, django_user_model):
    response = client.post(reverse("signup"), {
        "username": "citra", "password1": "onde-onde-wijen-9", "password2": "onde-onde-wijen-9",
    }, follow=True)

    assert response.status_code == 200
    assert django_user_model.objects.filter(username="citra").exists()
    assert "Signed in as <strong>citra</strong>" in response.content.decode()


def test_signing_up_with_a_weak_password_is_refused_with_a_reason(client, django_user_model):
    response = client.post(reverse("signup"), {
        "username": "dewi", "password1": "12345678", "password2": "12345678",
    })

    assert response.status_code == 200
    assert "too common" in response.content.decode()
    assert not django_user_model.objects.filter(username="dewi").exists()


def test_logging_in_and_out(client, user):
    response = client.post(reverse("login"), {"username": "ayu", "password": "kue-lapis-2026"}, follow=True)
    assert "Signed in as <strong>ayu</strong>" in response.content.decode()

    response = client.post(reverse("logout"), follow=True)
    assert "Signed in as" not in response.content.decode()
    assert 'href="/accounts/login/"' in response.content.decode()
    assert client.get(reverse("gallery")).status_code == 302


def test_a_wrong_password_does_not_log_in(client, user):
    response = client.post(reverse("login"), {"username": "ayu", "password": "wrong"})

    assert response.status_code == 200
    assert "Please enter a correct username and password" in response.content.decode()


def test_changing_the_password(client, user):
    client.force_login(user)

    response = client.post(reverse("password_change"), {
        "old_password": "kue-lapis-2026",
        "new_password1": "putri-salju-77x",
        "new_password2": "putri-salju-77x",
    }, follow=True)

    assert "Password changed" in response.content.decode()
    user.refresh_from_db()
    assert user.check_password("putri-salju-77x")


def test_pages_for_members_send_visitors_to_the_login_page(client):
    for name in ["upload", "gallery"]:
        response = client.get(reverse(name))
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("login"))


@pytest.mark.parametrize("login_url", ["/accounts/login/", "/admin/login/"])
def test_password_guessing_is_locked_out_after_five_failures_even_with_the_right_password(
        client, user, settings, login_url):
    statuses = [client.post(login_url, {"username": "ayu", "password": "guess"}).status_code
                for _ in range(settings.AXES_FAILURE_LIMIT)]

    locked = client.post(login_url, {"username": "ayu", "password": "kue-lapis-2026"})

    assert statuses == [200] * (settings.AXES_FAILURE_LIMIT - 1) + [429]
    assert locked.status_code == 429
    assert "Too many failed sign-in attempts" in locked.content.decode()
    assert "_auth_user_id" not in client.session


def test_a_lockout_is_for_that_username_only_and_a_success_resets_the_count(client, user, other_user,
                                                                           settings):
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        client.post(reverse("login"), {"username": "ayu", "password": "guess"})
    client.post(reverse("login"), {"username": "ayu", "password": "kue-lapis-2026"})
    client.post(reverse("logout"))
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):  # counting starts again after the success
        client.post(reverse("login"), {"username": "ayu", "password": "guess"})

    response = client.post(reverse("login"), {"username": "ayu", "password": "kue-lapis-2026"}, follow=True)
    other = client.post(reverse("login"), {"username": "budi", "password": "klepon-hijau-2026"}, follow=True)

    assert "Signed in as <strong>ayu</strong>" in response.content.decode()
    assert "Signed in as <strong>budi</strong>" in other.content.decode()


def test_the_api_token_endpoint_locks_out_and_throttles_password_guessing(user, settings):
    from rest_framework.test import APIClient

    api = APIClient()
    statuses = [api.post("/api/auth/token/", {"username": "ayu", "password": "guess"}).status_code
                for _ in range(settings.AXES_FAILURE_LIMIT)]
    locked = api.post("/api/auth/token/", {"username": "ayu", "password": "kue-lapis-2026"})

    assert statuses == [400] * (settings.AXES_FAILURE_LIMIT - 1) + [429]  # as the login pages
    assert locked.status_code == 429 and "token" not in locked.json()
    assert "Too many failed sign-in attempts" in locked.json()["error"]["message"]
    assert int(locked["Retry-After"]) == settings.AXES_COOLOFF_TIME * 3600


@pytest.mark.parametrize("path, data", [
    ("/accounts/login/", {"username": "ayu", "password": "kue-lapis-2026"}),
    ("/signup/", {"username": "eka", "password1": "onde-onde-wijen-9", "password2": "onde-onde-wijen-9"}),
    ("/upload/", {}),
    ("/photos/1/feedback/", {"label": "kue_lapis"}),
    ("/photos/1/delete/", {}),
    ("/staff/training/start/", {}),
    ("/accounts/logout/", {}),
])
def test_every_form_refuses_a_post_without_the_csrf_token(user, admin_user, path, data):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)

    assert client.post(path, data).status_code == 403


def test_the_schema_says_the_token_endpoint_needs_no_authentication(client):
    """Generated clients must not ask for a token to get one."""
    import yaml

    schema = yaml.safe_load(client.get("/api/schema/").content)

    assert "security" not in schema and "security" not in schema["paths"]["/api/auth/token/"]["post"]
    assert {"tokenAuth": []} in schema["paths"]["/api/photos/"]["get"]["security"]


def test_there_is_no_password_reset_by_email_since_sign_up_asks_for_no_address(client):
    assert client.get("/accounts/password_reset/").status_code == 404
    assert "password_reset" not in client.get("/accounts/login/").content.decode()
