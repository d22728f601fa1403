"""Ways around a staff account's second factor for someone who knows its password but not its
authenticator's secret (STAFF_TWO_FACTOR)."""

import base64
import re
import time

import pytest
from django_otp.oath import TOTP
from django_otp.plugins.otp_totp.models import TOTPDevice
from rest_framework.test import APIClient

from tests.conftest import make_photo
from tests.test_two_factor import PASSWORD, code_of, set_up, signed_in_with_password

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def two_factor_on(settings):
    settings.STAFF_TWO_FACTOR = True


def secret_shown(page) -> str:
    return re.search(r'id="secret">([A-Z2-7 ]+)<', page.content.decode()).group(1).replace(" ", "")


def code_of_secret(secret: str, steps_later: int = 0) -> str:
    totp = TOTP(base64.b32decode(secret), 30, 0, 6, 0)
    totp.time = time.time() + steps_later * 30
    return f"{totp.token():06d}"


def test_a_secret_shown_to_a_session_with_the_password_alone_is_never_the_one_its_owner_sets_up(
        staff, user):
    photo = make_photo(user)
    attacker = signed_in_with_password("admin")  # before the staff member's first sign-in since the upgrade
    stolen = secret_shown(attacker.get("/accounts/two-factor/"))
    owner = signed_in_with_password("admin")
    page = owner.get("/accounts/two-factor/")
    assert secret_shown(page) != stolen
    assert secret_shown(owner.get("/accounts/two-factor/")) == secret_shown(page)  # (a reload: the same)

    done = owner.post("/accounts/two-factor/", {"code": code_of_secret(secret_shown(page))})
    assert done.status_code == 200

    later = signed_in_with_password("admin")
    assert later.post("/accounts/two-factor/", {"code": code_of_secret(stolen, 1)}).status_code == 400
    assert later.get(f"/photos/{photo.pk}/").status_code == 302
    assert TOTPDevice.objects.filter(user=staff).count() == 1


def test_a_session_still_on_the_set_up_page_cannot_replace_the_authenticator_confirmed_meanwhile(staff):
    from classifier import services

    set_up(signed_in_with_password("admin"), staff)  # the owner's, in another session
    ours = TOTPDevice.objects.get(user=staff, confirmed=True)
    # another session's, whose request with a right code began before the owner's confirmed theirs
    theirs = TOTPDevice.objects.create(user=staff, name="authenticator app", confirmed=False)

    assert services.second_factor_confirm(theirs, code_of(theirs), site="http://testserver") is None
    assert list(TOTPDevice.objects.filter(user=staff, confirmed=True)) == [ours]


def test_an_api_token_asked_for_while_the_account_was_not_staff_stops_when_it_is_made_staff_again(
        staff, user):
    make_photo(user)
    set_up(signed_in_with_password("admin"), staff)
    staff.is_staff = False
    staff.save()
    token = APIClient().post("/api/auth/token/", {"username": "admin", "password": PASSWORD})
    assert token.status_code == 200  # (no second factor asked of an account that is not staff)

    again = type(staff).objects.get(pk=staff.pk)
    again.is_staff = True
    again.save()

    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {token.json()['token']}")
    assert api.get("/api/photos/").status_code == 401


def test_the_sites_log_keeps_no_token_of_a_reset_link_opened_while_the_database_is_down(monkeypatch):
    import io
    import logging

    from django.db import OperationalError
    from django.test import Client

    # settings.LOGGING's handler (pytest's own are subclasses)
    handler = next(h for h in logging.getLogger().handlers if type(h) is logging.StreamHandler)
    stream = io.StringIO()
    monkeypatch.setattr(handler, "stream", stream)
    def database_gone(*_args, **_kwargs):
        raise OperationalError("server closed the connection")

    monkeypatch.setattr("django.contrib.auth.views.PasswordResetConfirmView.dispatch", database_gone)

    response = Client().get("/accounts/reset/MQ/cxyz-0123456789abcdef0123456789abcdef/")

    assert response.status_code == 503
    assert "database unavailable for GET /accounts/reset/MQ/[token]/" in stream.getvalue()
    assert "0123456789abcdef" not in stream.getvalue()
