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
    assert "You are signed out." in response.content.decode()
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
    assert "paused for\n  15 minutes" in locked.content.decode()
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

    assert "security" not in schema and schema["paths"]["/api/auth/token/"]["post"]["security"] == [{}]
    assert {"tokenAuth": []} in schema["paths"]["/api/auth/token/"]["delete"]["security"]
    assert {"tokenAuth": []} in schema["paths"]["/api/photos/"]["get"]["security"]


def test_there_is_no_password_reset_by_email_since_sign_up_asks_for_no_address(client):
    assert client.get("/accounts/password_reset/").status_code == 404
    assert "password_reset" not in client.get("/accounts/login/").content.decode()


def test_an_api_client_signs_out_by_deleting_its_token_and_a_new_one_is_made_on_request(user):
    from rest_framework.test import APIClient

    credentials = {"username": "ayu", "password": "kue-lapis-2026"}
    old = APIClient().post("/api/auth/token/", credentials).json()["token"]
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {old}")

    assert api.delete("/api/auth/token/").status_code == 204
    assert api.get("/api/photos/").status_code == 401
    new = APIClient().post("/api/auth/token/", credentials).json()["token"]
    api.credentials(HTTP_AUTHORIZATION=f"Token {new}")
    assert new != old and api.get("/api/photos/").status_code == 200


@pytest.mark.parametrize("where", ["website", "anywhere else"])
def test_a_new_password_signs_out_the_programs_using_the_old_token(client, user, where):
    """Whoever stole the password may have taken the token too: a new password ends both."""
    from rest_framework.authtoken.models import Token
    from rest_framework.test import APIClient

    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    assert api.get("/api/photos/").status_code == 200
    if where == "website":
        client.force_login(user)
        response = client.post(reverse("password_change"), {"old_password": "kue-lapis-2026",
                                                             "new_password1": "bika-ambon-77",
                                                             "new_password2": "bika-ambon-77"})
        assert response.status_code == 302
    else:  # the admin's form, manage.py changepassword, a script
        user.set_password("bika-ambon-77")
        user.save()

    assert api.get("/api/photos/").status_code == 401
    assert "signs out the programs that use your API token" in client.get(reverse("signup")).content.decode()


def test_disabling_a_password_in_the_admin_signs_out_the_programs_using_the_token_for_good(
        admin_client, user):
    """Disabled, the password ends the sessions (Django ties them to it); the token ends too, and
    does not come back when a password is set again later."""
    from rest_framework.authtoken.models import Token
    from rest_framework.test import APIClient

    key = Token.objects.create(user=user).key
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert api.get("/api/photos/").status_code == 200

    response = admin_client.post(reverse("admin:auth_user_password_change", args=[user.pk]),
                                 {"usable_password": "false", "unset-password": "Disable"})
    assert response.status_code == 302
    user.refresh_from_db()
    assert not user.has_usable_password()
    assert api.get("/api/photos/").status_code == 401

    user.set_password("bika-ambon-77")
    user.save()
    assert api.get("/api/photos/").status_code == 401
    assert APIClient().post("/api/auth/token/", {"username": "ayu", "password": "bika-ambon-77"}
                            ).json()["token"] != key


def test_an_api_only_account_without_a_password_keeps_its_token_through_other_changes(
        admin_client, django_user_model):
    """Staff make such an account and its token in the admin (Tokens) for a program: renaming or
    editing it is not disabling a password, and must not sign the program out."""
    from rest_framework.authtoken.models import Token
    from rest_framework.test import APIClient

    robot = django_user_model.objects.create_user("importer")  # no password: an unusable one
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=robot).key}")

    robot.first_name = "Nightly importer"
    robot.save()
    response = admin_client.post(reverse("admin:auth_user_change", args=[robot.pk]), {
        "username": "importer", "first_name": "Importer", "last_name": "", "email": "",
        "is_active": "on", "date_joined_0": "2026-12-01", "date_joined_1": "10:00:00"})

    assert response.status_code == 302
    assert api.get("/api/photos/").status_code == 200


def test_without_a_proxy_a_forged_forwarded_for_header_does_not_escape_the_throttle(settings):
    from rest_framework.test import APIClient

    assert settings.REST_FRAMEWORK["NUM_PROXIES"] == 0  # development: nothing in front
    api = APIClient()
    statuses = [api.post("/api/auth/token/", {"username": f"nobody{i}", "password": "guess"},
                         HTTP_X_FORWARDED_FOR=f"10.0.0.{i}").status_code for i in range(12)]

    assert statuses == [400] * 10 + [429, 429]  # THROTTLE_TOKEN: 10 a minute from one address


@pytest.mark.parametrize("path", ["/api/auth/token/", "/accounts/login/"])
def test_behind_a_proxy_a_lockout_is_for_the_client_the_proxy_saw_not_for_everyone(
        client, user, settings, path):
    """All requests come from the proxy's address; the client is the address it appended to
    X-Forwarded-For, whatever the client put before it."""
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}
    guesser, owner = "6.6.6.6", "10.0.0.2"
    right, wrong = {"username": "ayu", "password": "kue-lapis-2026"}, {"username": "ayu", "password": "guess"}
    for _ in range(settings.AXES_FAILURE_LIMIT):
        client.post(path, wrong, HTTP_X_FORWARDED_FOR=f"10.9.9.9, {guesser}")

    locked = client.post(path, right, HTTP_X_FORWARDED_FOR=guesser)
    forged = client.post(path, right, HTTP_X_FORWARDED_FOR=f"{owner}, {guesser}")
    allowed = client.post(path, right, HTTP_X_FORWARDED_FOR=owner)

    assert locked.status_code == 429 and forged.status_code == 429
    assert allowed.status_code == (200 if path.startswith("/api/") else 302)  # the token; logged in


def test_sign_ups_from_one_address_are_limited_and_typing_errors_do_not_count(client, django_user_model,
                                                                             monkeypatch):
    from rest_framework.throttling import SimpleRateThrottle

    monkeypatch.setattr(SimpleRateThrottle, "THROTTLE_RATES",
                        {**SimpleRateThrottle.THROTTLE_RATES, "signup": "2/hour"})

    def sign_up(name, repeat="onde-onde-wijen-9"):
        client.logout()
        return client.post(reverse("signup"), {"username": name, "password1": "onde-onde-wijen-9",
                                               "password2": repeat})

    typo = sign_up("citra", repeat="onde-onde-wijen-8")
    made = [sign_up(name).status_code for name in ["citra", "dewi"]]
    refused = sign_up("eka")

    assert typo.status_code == 200 and made == [302, 302]
    assert refused.status_code == 429 and int(refused["Retry-After"]) > 0
    assert "more new accounts from your address" in refused.content.decode()
    assert sorted(django_user_model.objects.values_list("username", flat=True)) == ["citra", "dewi"]


def test_the_token_endpoint_answers_options_without_credentials_and_revokes_only_with_them():
    from rest_framework.test import APIClient

    assert APIClient().options("/api/auth/token/").status_code == 200
    assert APIClient().delete("/api/auth/token/").status_code == 401


def test_the_sign_up_limit_is_per_address_and_says_when_to_come_back(client, monkeypatch):
    from rest_framework.throttling import SimpleRateThrottle

    monkeypatch.setattr(SimpleRateThrottle, "THROTTLE_RATES",
                        {**SimpleRateThrottle.THROTTLE_RATES, "signup": "1/hour"})

    def sign_up(name, address):
        client.logout()
        return client.post(reverse("signup"), {"username": name, "password1": "onde-onde-wijen-9",
                                               "password2": "onde-onde-wijen-9"}, REMOTE_ADDR=address)

    first, again = sign_up("citra", "10.0.0.1"), sign_up("dewi", "10.0.0.1")
    elsewhere = sign_up("eka", "10.0.0.2")

    assert (first.status_code, again.status_code, elsewhere.status_code) == (302, 429, 302)
    assert "try again in 60 min." in again.content.decode()


def test_a_browser_asking_for_favicon_ico_gets_the_sites_icon(client):
    response = client.get("/favicon.ico")

    assert response.status_code == 301 and response["Location"] == "/static/favicon.svg"
