"""Staff sign in with a second factor (STAFF_TWO_FACTOR, on in production): an authenticator app's
code after the password, set up at the first sign-in; backup codes; the API's token for staff."""

import base64
import re
import time
from datetime import datetime, timedelta

import pytest
from django.core.management import call_command
from django.test import Client
from django_otp import DEVICE_ID_SESSION_KEY
from django_otp.oath import TOTP
from django_otp.plugins.otp_totp.models import TOTPDevice
from rest_framework.test import APIClient

from classifier.models import ApiToken
from tests.conftest import api_token, make_photo

pytestmark = pytest.mark.django_db
PASSWORD = "serabi-solo-2026"  # (the staff fixture's)


@pytest.fixture(autouse=True)
def two_factor_on(settings):
    settings.STAFF_TWO_FACTOR = True


def code_of(device: TOTPDevice, steps_later: int = 0, *, at: float | None = None) -> str:
    """What the authenticator app shows now (or that many 30-second steps later, or at time `at`)."""
    device.refresh_from_db()
    totp = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift)
    totp.time = (time.time() if at is None else at) + steps_later * device.step
    return f"{totp.token():06d}"


def last_code_of(device: TOTPDevice) -> str:
    """The code the device took last (its time step: django-otp keeps it, to take each once)."""
    device.refresh_from_db()
    return code_of(device, at=device.t0 + device.last_t * device.step)


def signed_in_with_password(username: str, password: str = PASSWORD) -> Client:
    browser = Client()
    assert browser.post("/accounts/login/", {"username": username, "password": password}).status_code == 302
    return browser


def set_up(browser: Client, staff) -> list[str]:
    """Set the authenticator up on the first sign-in's page: the backup codes it shows."""
    page = browser.get("/accounts/two-factor/")
    assert page.status_code == 200 and "Set it up" in page.content.decode()
    device = TOTPDevice.objects.get(user=staff)
    done = browser.post("/accounts/two-factor/", {"code": code_of(device)})
    assert done.status_code == 200, done.content.decode()
    return re.findall(r"<li><code>([a-z2-7]{8})</code></li>", done.content.decode())


def test_a_staff_member_signed_in_with_the_password_alone_is_sent_to_set_up_an_authenticator(staff, user):
    photo = make_photo(user)
    browser = signed_in_with_password("admin")

    for path in ("/photos/", f"/photos/{photo.pk}/", "/admin/", "/accounts/"):
        response = browser.get(path)
        assert response.status_code == 302, path
        assert response["Location"].startswith("/accounts/two-factor/?next="), path
    api = browser.get("/api/photos/")
    assert api.status_code == 403 and api.json()["error"]["code"] == "second_factor_needed"
    page = browser.get("/accounts/two-factor/?next=/staff/models/").content.decode()
    device = TOTPDevice.objects.get(user=staff, confirmed=False)
    secret = re.search(r'id="secret">([A-Z2-7 ]+)<', page).group(1)
    assert secret.replace(" ", "") == base64.b32encode(device.bin_key).decode()
    assert "<svg" in page and "QR code of the secret" in page
    # Its header offers signing out, not pages that would only lead back here.
    assert 'href="/upload/"' not in page and 'href="/admin/"' not in page and "Signed in as" not in page
    assert '<button type="submit" class="link">Sign out</button>' in page
    assert f'href="otpauth://totp/cakesite%3Aadmin?secret={secret.replace(" ", "")}' in page

    wrong_code = "000000" if code_of(device) != "000000" else "111111"
    wrong = browser.post("/accounts/two-factor/", {"code": wrong_code})
    assert wrong.status_code == 400 and "That code is not right" in wrong.content.decode()
    assert browser.get("/admin/").status_code == 302
    time.sleep(1.1)  # (django-otp makes the next try wait a second after a wrong code, doubling each time)

    done = browser.post("/accounts/two-factor/", {"code": code_of(device), "next": "/admin/"})

    codes = re.findall(r"<li><code>([a-z2-7]{8})</code></li>", done.content.decode())
    assert done.status_code == 200 and len(set(codes)) == 10
    assert 'href="/admin/"' in done.content.decode()
    assert browser.get("/admin/").status_code == 200
    assert browser.get(f"/photos/{photo.pk}/").status_code == 200  # (staff see everyone's photos)
    assert browser.get("/api/photos/").status_code == 200
    account = browser.get("/accounts/").content.decode()
    assert "10 backup codes left" in account and 'href="/upload/"' in account and 'href="/admin/"' in account


def test_later_sign_ins_ask_for_a_code_of_the_app_or_a_backup_code_each_good_once(staff):
    codes = set_up(signed_in_with_password("admin"), staff)
    device = TOTPDevice.objects.get(user=staff, confirmed=True)

    browser = signed_in_with_password("admin")
    page = browser.get("/accounts/two-factor/").content.decode()
    assert "Set it up" not in page and "backup codes" in page
    replayed = last_code_of(device)  # the one that set it up: right for its time, and used
    assert TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift).verify(int(replayed), 1)
    used = browser.post("/accounts/two-factor/", {"code": replayed})
    assert used.status_code == 400 and browser.get("/admin/").status_code == 302
    time.sleep(1.1)
    assert browser.post("/accounts/two-factor/", {"code": code_of(device, steps_later=1),
                                                  "next": "/admin/"})["Location"] == "/admin/"
    assert browser.get("/admin/").status_code == 200

    with_backup = signed_in_with_password("admin")
    assert with_backup.post("/accounts/two-factor/", {"code": codes[0].upper()}).status_code == 302
    assert with_backup.get("/admin/").status_code == 200
    again = signed_in_with_password("admin")
    assert again.post("/accounts/two-factor/", {"code": codes[0]}).status_code == 400
    assert "9 backup codes left" in with_backup.get("/accounts/").content.decode()


def test_backup_codes_are_kept_as_digests_a_copy_of_the_database_cannot_use(staff):
    from django_otp.plugins.otp_static.models import StaticToken

    from classifier.services import backup_code_digest

    codes = set_up(signed_in_with_password("admin"), staff)
    kept = set(StaticToken.objects.filter(device__user=staff).values_list("token", flat=True))

    assert len(codes) == len(kept) == 10 and not kept & set(codes)
    browser = signed_in_with_password("admin")
    assert browser.post("/accounts/two-factor/", {"code": codes[0]}).status_code == 302
    assert APIClient().post("/api/auth/token/", {"username": "admin", "password": PASSWORD,
                                                 "otp": codes[1]}).status_code == 200
    copied = backup_code_digest(codes[2])  # the password, and the database's copy of an unused code
    assert copied in kept
    assert signed_in_with_password("admin").post("/accounts/two-factor/", {"code": copied}).status_code == 400
    assert APIClient().post("/api/auth/token/", {"username": "admin", "password": PASSWORD,
                                                 "otp": copied}).status_code == 400
    assert StaticToken.objects.filter(device__user=staff).count() == 8


def test_backup_codes_outlive_a_new_secret_key_while_the_old_one_is_a_fallback(staff, settings):
    codes = set_up(signed_in_with_password("admin"), staff)
    old = settings.SECRET_KEY

    settings.SECRET_KEY, settings.SECRET_KEY_FALLBACKS = "a-new-key-" + "x" * 50, [old]
    taken = signed_in_with_password("admin").post("/accounts/two-factor/", {"code": codes[0]})
    settings.SECRET_KEY_FALLBACKS = []
    refused = signed_in_with_password("admin").post("/accounts/two-factor/", {"code": codes[1]})

    assert (taken.status_code, refused.status_code) == (302, 400)


@pytest.mark.django_db(transaction=True, serialized_rollback=True)  # (migrating back: SQLite too)
def test_backup_codes_kept_in_plain_text_before_the_upgrade_still_sign_in_once(staff):
    from django_otp.plugins.otp_static.models import StaticDevice, StaticToken

    from tests.conftest import migrated_back

    set_up(signed_in_with_password("admin"), staff)
    StaticDevice.objects.filter(user=staff).delete()
    with migrated_back("0031_account_settings"):  # django-otp's way: the codes as they are
        device = StaticDevice.objects.create(user=staff, name="backup codes", confirmed=True)
        StaticToken.objects.create(device=device, token="abcd2345")

    assert StaticToken.objects.get(device=device).token != "abcd2345"
    browser = signed_in_with_password("admin")
    assert browser.post("/accounts/two-factor/", {"code": "ABCD 2345"}).status_code == 302
    again = signed_in_with_password("admin")
    assert again.post("/accounts/two-factor/", {"code": "abcd2345"}).status_code == 400  # once


def test_a_wrong_backup_code_counts_once_and_a_waiting_device_refuses_a_right_one_and_keeps_it(
        staff, settings):
    from django_otp.plugins.otp_static.models import StaticDevice, StaticToken

    from classifier.services import second_factor_match

    codes = set_up(signed_in_with_password("admin"), staff)
    settings.SECRET_KEY_FALLBACKS = ["an-older-key-" + "y" * 50]  # (two digests looked up: still once)

    assert second_factor_match(staff, "zzzzzzzz") is None
    assert StaticDevice.objects.get(user=staff).throttling_failure_count == 1
    assert second_factor_match(staff, codes[0]) is None  # the wait after a wrong code: refused
    assert StaticDevice.objects.get(user=staff).throttling_failure_count == 1
    assert StaticToken.objects.filter(device__user=staff).count() == 10
    time.sleep(1.1)
    assert isinstance(second_factor_match(staff, codes[0]), StaticDevice)
    assert StaticDevice.objects.get(user=staff).throttling_failure_count == 0
    # backup codes, right or wrong, are not wrong codes of the authenticator: its wait does not grow
    assert TOTPDevice.objects.get(user=staff, confirmed=True).throttling_failure_count == 0


def test_the_page_of_backup_codes_goes_on_to_the_gallery_when_next_is_another_site(staff):
    browser = signed_in_with_password("admin")
    browser.get("/accounts/two-factor/")
    device = TOTPDevice.objects.get(user=staff, confirmed=False)

    done = browser.post("/accounts/two-factor/", {"code": code_of(device), "next": "https://evil.example.org/"})

    assert done.status_code == 200
    assert 'href="/photos/"' in done.content.decode() and "evil.example.org" not in done.content.decode()


def test_users_who_are_not_staff_never_see_the_step(user):
    browser = signed_in_with_password("ayu", "kue-lapis-2026")

    assert browser.get("/photos/").status_code == 200
    assert browser.get("/accounts/two-factor/")["Location"] == "/photos/"
    assert not TOTPDevice.objects.exists()


def test_without_the_setting_staff_sign_in_with_the_password_alone(staff, settings):
    settings.STAFF_TWO_FACTOR = False

    assert signed_in_with_password("admin").get("/admin/").status_code == 200


def test_a_staff_api_token_needs_the_second_factor_set_up_and_a_code_to_be_asked_for(staff, user):
    old = api_token(staff)  # made before two-factor sign-in was turned on
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {old}")
    refused = api.get("/api/photos/")
    assert refused.status_code == 401
    assert "has not set up two-factor sign-in" in refused.json()["error"]["message"]
    no_setup = APIClient().post("/api/auth/token/", {"username": "admin", "password": PASSWORD})
    assert no_setup.status_code == 400 and "has not set up two-factor" in str(no_setup.json())

    set_up(signed_in_with_password("admin"), staff)
    assert not ApiToken.objects.filter(user=staff).exists()  # (setting it up revoked the one made without it)
    device = TOTPDevice.objects.get(user=staff, confirmed=True)
    without_code = APIClient().post("/api/auth/token/", {"username": "admin", "password": PASSWORD})
    assert without_code.status_code == 400 and "send `otp` too" in str(without_code.json())
    wrong = APIClient().post("/api/auth/token/", {"username": "admin", "password": PASSWORD, "otp": "12345x"})
    assert wrong.status_code == 400
    time.sleep(1.1)

    given = APIClient().post("/api/auth/token/", {"username": "admin", "password": PASSWORD,
                                                  "otp": code_of(device, steps_later=1)})

    assert given.status_code == 200
    expires = datetime.fromisoformat(given.json()["expires"])  # (STAFF_TOKEN_DAYS after it was made)
    assert abs(expires - ApiToken.objects.get(user=staff).created - timedelta(days=30)) < timedelta(seconds=1)
    api.credentials(HTTP_AUTHORIZATION=f"Token {given.json()['token']}")
    assert api.get("/api/photos/").status_code == 200
    member = APIClient().post("/api/auth/token/", {"username": "ayu", "password": "kue-lapis-2026"})
    assert member.status_code == 200  # (no second factor for other accounts)


def test_an_operator_can_reset_a_lost_authenticator_and_the_next_sign_in_sets_one_up(staff, capsys):
    set_up(signed_in_with_password("admin"), staff)

    call_command("second_factor_reset", "admin")

    assert "forgotten" in capsys.readouterr().out
    assert not TOTPDevice.objects.filter(user=staff).exists()
    browser = signed_in_with_password("admin")
    assert "Set it up" in browser.get("/accounts/two-factor/").content.decode()


def test_wrong_codes_in_a_row_are_answered_with_the_growing_wait(staff):
    set_up(signed_in_with_password("admin"), staff)
    browser = signed_in_with_password("admin")

    first = browser.post("/accounts/two-factor/", {"code": "12345x"}).content.decode()
    time.sleep(1.1)
    second = browser.post("/accounts/two-factor/", {"code": "12345x"}).content.decode()

    assert "That code is not right" in first and "wait" not in first
    assert "After several wrong ones, wait 2 seconds before the next." in second


def test_the_steps_pages_are_sound_for_assistive_technology(staff):
    from tests.test_accessibility import Page

    browser = signed_in_with_password("admin")
    pages = [browser.get("/accounts/two-factor/"), browser.post("/accounts/two-factor/", {"code": "x"})]
    time.sleep(1.1)
    pages.append(browser.post("/accounts/two-factor/", {"code": code_of(TOTPDevice.objects.get(user=staff))}))
    later = signed_in_with_password("admin")
    pages += [later.get("/accounts/two-factor/"), later.post("/accounts/two-factor/", {"code": "x"})]

    for response in pages:
        html = response.content.decode()
        assert Page(html).problems() == [] and '<main id="main"' in html, html
    assert "<title>QR code of the secret</title>" in pages[0].content.decode()
    assert 'aria-describedby="id_code_helptext id_code_error"' in pages[1].content.decode()  # (read with it)


def test_new_backup_codes_need_the_password_and_end_the_earlier_ones(staff):
    browser = signed_in_with_password("admin")
    old = set_up(browser, staff)

    refused = browser.post("/accounts/two-factor/backup-codes/", {"codes-password": "wrong"})
    assert refused.status_code == 400 and "10 backup codes left" in refused.content.decode()
    renewed = browser.post("/accounts/two-factor/backup-codes/", {"codes-password": PASSWORD})

    new = re.findall(r"<li><code>([a-z2-7]{8})</code></li>", renewed.content.decode())
    assert len(set(new)) == 10 and not set(new) & set(old)
    assert "the earlier ones no longer work" in renewed.content.decode()
    assert signed_in_with_password("admin").post("/accounts/two-factor/", {"code": old[0]}).status_code == 400
    time.sleep(1.1)
    assert signed_in_with_password("admin").post("/accounts/two-factor/", {"code": new[0]}).status_code == 302


def test_the_admin_removes_a_colleagues_authenticator_without_showing_its_secret_or_backup_codes(
        staff, django_user_model):
    codes = set_up(signed_in_with_password("admin"), staff)
    device = TOTPDevice.objects.get(user=staff)
    chief = django_user_model.objects.create_superuser("chief", password="lapis-legit-2026")
    superuser = Client()
    superuser.force_login(chief)
    session = superuser.session  # (as if it had signed in with a second factor of its own)
    session[DEVICE_ID_SESSION_KEY] = TOTPDevice.objects.create(user=chief, name="app").persistent_id
    session.save()

    pages = [superuser.get(f"/admin/otp_totp/totpdevice/{device.pk}/change/"),
             superuser.get("/admin/otp_totp/totpdevice/"),
             superuser.get(f"/admin/otp_static/staticdevice/{staff.staticdevice_set.get().pk}/change/")]

    assert [page.status_code for page in pages] == [200, 200, 200]
    assert not any(device.key in page.content.decode() or codes[0] in page.content.decode() for page in pages)
    assert "qrcode" not in pages[1].content.decode()
    superuser.post(f"/admin/otp_totp/totpdevice/{device.pk}/delete/", {"post": "yes"})
    assert not TOTPDevice.objects.filter(pk=device.pk).exists()


def test_the_admin_neither_takes_backup_codes_nor_filters_on_an_authenticators_secret(
        staff, django_user_model):
    """A code typed in the admin would be kept as it is, and never work (the database keeps digests);
    `?key__startswith=` would read a secret a character at a time."""
    set_up(signed_in_with_password("admin"), staff)
    chief = django_user_model.objects.create_superuser("chief", password="lapis-legit-2026")
    superuser = Client(raise_request_exception=False)
    superuser.force_login(chief)
    session = superuser.session
    session[DEVICE_ID_SESSION_KEY] = TOTPDevice.objects.create(user=chief, name="app").persistent_id
    session.save()
    key = TOTPDevice.objects.get(user=staff, confirmed=True).key

    assert "token_set-" not in superuser.get("/admin/otp_static/staticdevice/add/").content.decode()
    assert superuser.get(f"/admin/otp_totp/totpdevice/?key__startswith={key[:2]}").status_code == 400
    assert superuser.get("/admin/otp_totp/totpdevice/?confirmed__exact=1").status_code == 200


def test_the_accounts_address_is_told_when_two_factor_sign_in_is_set_up(
        staff, mailoutbox, monkeypatch, django_capture_on_commit_callbacks):
    """Whoever knows the password alone could set it up before the account's owner does."""
    from classifier import tasks

    for task in (tasks.send_second_factor_notice, tasks.send_second_factor_code):  # (the worker at once)
        monkeypatch.setattr(task, "apply_async", lambda args, task=task, **_kwargs: task.run(*args))
    staff.email = "admin@example.org"
    staff.save()
    browser = signed_in_with_password("admin")
    with django_capture_on_commit_callbacks(execute=True):
        browser.get("/accounts/two-factor/")  # (first, a code e-mailed to the address: its own tests)
    code = re.search(r"^\s+(\d{6})$", mailoutbox[0].body, re.MULTILINE).group(1)
    assert browser.post("/accounts/two-factor/", {"code": code}).status_code == 302

    with django_capture_on_commit_callbacks(execute=True):
        set_up(browser, staff)

    assert [mail.to for mail in mailoutbox] == [["admin@example.org"]] * 2
    assert 'the account "admin" at testserver' in mailoutbox[1].body
    assert "http://testserver/accounts/password_change/" in mailoutbox[1].body


def test_a_staff_token_works_for_staff_token_days_and_the_endpoint_then_gives_a_new_one(
        staff, user, settings):
    from django.utils import timezone

    settings.STAFF_TOKEN_DAYS = 30
    codes = set_up(browser := signed_in_with_password("admin"), staff)
    device = TOTPDevice.objects.get(user=staff, confirmed=True)
    asked = {"username": "admin", "password": PASSWORD, "otp": code_of(device, steps_later=1)}
    first = APIClient().post("/api/auth/token/", asked).json()["token"]
    assert "works until" in browser.get("/accounts/").content.decode()
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {first}")
    assert api.get("/api/photos/").status_code == 200
    ApiToken.objects.filter(token_key=first[:15]).update(
        created=timezone.now() - timedelta(days=30, minutes=1))
    member_token = api_token(user)
    ApiToken.objects.filter(token_key=member_token[:15]).update(created=timezone.now() - timedelta(days=400),
                                                              last_used=timezone.now() - timedelta(days=2))

    expired = api.get("/api/photos/")
    assert "expired: it no longer works" in browser.get("/accounts/").content.decode()
    asked["otp"] = codes[0]  # (the app's next code comes in 30 s)
    renewed = APIClient().post("/api/auth/token/", asked).json()["token"]

    assert expired.status_code == 401 and "more than 30 days old" in expired.json()["error"]["message"]
    assert renewed != first
    assert not ApiToken.objects.filter(token_key=first[:15]).exists()  # (the expired one goes)
    api.credentials(HTTP_AUTHORIZATION=f"Token {renewed}")
    assert api.get("/api/photos/").status_code == 200
    member = APIClient()
    member.credentials(HTTP_AUTHORIZATION=f"Token {member_token}")
    assert member.get("/api/photos/").status_code == 200  # (no fixed life for others: used lately, it works)
