"""Before a staff account with an address sets up its authenticator, the session types a code e-mailed
to that address: the password alone no longer lets someone else set one up first and sign in as
its owner for ever after."""

import functools
import re
import time
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone, translation
from django_otp.plugins.otp_email.models import EmailDevice
from django_otp.plugins.otp_totp.models import TOTPDevice

from tests.test_two_factor import code_of, signed_in_with_password

pytestmark = pytest.mark.django_db
PAGE = "/accounts/two-factor/"


@pytest.fixture(autouse=True)
def two_factor_on(settings):
    settings.STAFF_TWO_FACTOR = True


@pytest.fixture
def staff_with_address(staff):
    staff.email = "admin@example.org"
    staff.save()
    return staff


@pytest.fixture
def mail_worker(monkeypatch, django_capture_on_commit_callbacks, settings, task_apply):
    """The broker boundary: the worker sends the e-mails a request queued as it commits (in its own
    language, reading the message's). Returns `ask(request)`, which makes the request and commits it."""
    from classifier import tasks

    def worker(task, args, headers=None, **_kwargs):
        with translation.override(settings.LANGUAGE_CODE):
            task.apply(args, headers=headers, throw=True)

    for task in (tasks.send_second_factor_code, tasks.send_second_factor_notice):
        monkeypatch.setattr(task, "apply_async", functools.partial(worker, task))

    def ask(request):
        with django_capture_on_commit_callbacks(execute=True):
            return request()
    return ask


def code_in(mail) -> str:
    return re.search(r"^\s+(\d{6})$", mail.body, re.MULTILINE).group(1)


def other_than(code: str) -> str:
    return "000000" if code != "000000" else "111111"


def test_the_authenticator_is_set_up_only_after_a_code_e_mailed_to_the_accounts_address(
        staff_with_address, mailoutbox, mail_worker):
    browser = signed_in_with_password("admin")

    first = mail_worker(lambda: browser.get(PAGE + "?next=/admin/"))

    page = first.content.decode()
    assert first.status_code == 200 and "a…@example.org" in page and "A code was sent just now" in page
    assert "QR code of the secret" not in page and "Secret:" not in page
    assert not TOTPDevice.objects.filter(user=staff_with_address).exists()  # (no secret made yet)
    assert [mail.to for mail in mailoutbox] == [["admin@example.org"]]
    assert mailoutbox[0].subject == "Your code to set up two-factor sign-in at testserver"
    assert 'the account "admin" at testserver' in mailoutbox[0].body
    assert "http://testserver/accounts/password_reset/" in mailoutbox[0].body
    code = code_in(mailoutbox[0])
    assert code not in page

    reload = mail_worker(lambda: browser.get(PAGE + "?next=/admin/"))
    assert "still works" in reload.content.decode() and len(mailoutbox) == 1  # (not one for each reload)
    wrong = mail_worker(lambda: browser.post(PAGE, {"code": other_than(code), "next": "/admin/"}))
    assert wrong.status_code == 400 and "That code is not right" in wrong.content.decode()
    assert "QR code of the secret" not in wrong.content.decode() and browser.get("/admin/").status_code == 302
    time.sleep(1.1)  # (django-otp makes the next try wait a second after a wrong code)

    checked = browser.post(PAGE, {"code": f"{code[:3]} {code[3:]}", "next": "/admin/"})

    assert checked.status_code == 302 and checked["Location"] == PAGE + "?next=%2Fadmin%2F"
    setting_up = browser.get(checked["Location"]).content.decode()
    assert "QR code of the secret" in setting_up and "Code from the e-mail" not in setting_up
    device = TOTPDevice.objects.get(user=staff_with_address, confirmed=False)
    done = mail_worker(lambda: browser.post(PAGE, {"code": code_of(device), "next": "/admin/"}))
    assert done.status_code == 200 and "Two-factor sign-in is set up" in done.content.decode()
    assert browser.get("/admin/").status_code == 200
    assert len(mailoutbox) == 2 and "Two-factor sign-in was set up" in mailoutbox[1].subject


def test_a_code_typed_in_one_session_does_not_let_another_set_up_an_authenticator(
        staff_with_address, mailoutbox, mail_worker):
    """Someone who knows the password signs in beside the owner: the owner's typed code is the
    owner's session's alone, and each code works once."""
    owner, intruder = signed_in_with_password("admin"), signed_in_with_password("admin")
    mail_worker(lambda: owner.get(PAGE))
    code = code_in(mailoutbox[0])
    assert owner.post(PAGE, {"code": code}).status_code == 302

    asked = mail_worker(lambda: intruder.get(PAGE)).content.decode()
    reused = intruder.post(PAGE, {"code": code})

    assert "Code from the e-mail" in asked and "QR code of the secret" not in asked
    assert reused.status_code == 400 and "That code is not right" in reused.content.decode()
    assert not TOTPDevice.objects.filter(user=staff_with_address).exists()
    assert len(mailoutbox) == 2 and mailoutbox[1].to == ["admin@example.org"]  # (the intruder's: the owner's)
    assert "QR code of the secret" in owner.get(PAGE).content.decode()


def test_a_typed_code_lets_its_session_set_the_app_up_for_an_hour_then_another_is_asked(
        staff_with_address, mailoutbox, mail_worker):
    browser = signed_in_with_password("admin")
    mail_worker(lambda: browser.get(PAGE))
    assert browser.post(PAGE, {"code": code_in(mailoutbox[0])}).status_code == 302
    assert "QR code of the secret" in browser.get(PAGE).content.decode()

    session = browser.session
    session["second_factor_address_checked"]["at"] -= 3600
    session.save()
    later = mail_worker(lambda: browser.get(PAGE)).content.decode()

    assert "Code from the e-mail" in later and "QR code of the secret" not in later and len(mailoutbox) == 2


def test_an_operators_reset_forgets_the_code_and_its_wait(staff_with_address, mailoutbox, mail_worker):
    from django.core.management import call_command

    mail_worker(lambda: signed_in_with_password("admin").get(PAGE))
    EmailDevice.objects.filter(user=staff_with_address).update(
        throttling_failure_count=10, throttling_failure_timestamp=timezone.now())

    call_command("second_factor_reset", "admin")
    browser = signed_in_with_password("admin")
    mail_worker(lambda: browser.get(PAGE))

    assert len(mailoutbox) == 2 and browser.post(PAGE, {"code": code_in(mailoutbox[1])}).status_code == 302


def test_another_code_is_sent_on_asking_after_a_minute_and_replaces_the_one_before(
        staff_with_address, mailoutbox, mail_worker):
    browser = signed_in_with_password("admin")
    mail_worker(lambda: browser.get(PAGE))

    too_soon = mail_worker(lambda: browser.post(PAGE, {"resend": "1"}))
    assert too_soon.status_code == 400 and "wait a minute" in too_soon.content.decode()
    assert len(mailoutbox) == 1
    EmailDevice.objects.filter(user=staff_with_address).update(
        last_generated_timestamp=timezone.now() - timedelta(seconds=61))
    again = mail_worker(lambda: browser.post(PAGE, {"resend": "1"}))

    assert again.status_code == 200 and "A code was sent just now" in again.content.decode()
    old, new = (code_in(mail) for mail in mailoutbox)
    if old != new:  # (one chance in a million of the same six digits)
        assert browser.post(PAGE, {"code": old}).status_code == 400
        time.sleep(1.1)
    assert browser.post(PAGE, {"code": new}).status_code == 302


def test_a_code_no_longer_works_after_its_minutes_and_the_page_then_sends_a_new_one(
        staff_with_address, mailoutbox, mail_worker, settings):
    browser = signed_in_with_password("admin")
    mail_worker(lambda: browser.get(PAGE))
    old = code_in(mailoutbox[0])
    EmailDevice.objects.filter(user=staff_with_address).update(
        valid_until=timezone.now() - timedelta(seconds=1),
        last_generated_timestamp=timezone.now() - timedelta(seconds=settings.OTP_EMAIL_TOKEN_VALIDITY))

    late = browser.post(PAGE, {"code": old})
    fresh = mail_worker(lambda: browser.get(PAGE))

    assert late.status_code == 400 and "no longer works" in late.content.decode()
    assert "A code was sent just now" in fresh.content.decode() and len(mailoutbox) == 2
    time.sleep(1.1)
    assert browser.post(PAGE, {"code": code_in(mailoutbox[1])}).status_code == 302


def test_wrong_codes_make_a_wait_a_new_code_does_not_end_and_a_new_password_does(
        staff_with_address, mailoutbox, mail_worker):
    """Someone with the password guessing codes for days would otherwise hold its owner off as long."""
    browser = signed_in_with_password("admin")
    mail_worker(lambda: browser.get(PAGE))
    EmailDevice.objects.filter(user=staff_with_address).update(  # 17 wrong codes in a row: 2**16 s
        throttling_failure_count=17, throttling_failure_timestamp=timezone.now(),
        last_generated_timestamp=timezone.now() - timedelta(seconds=61))
    mail_worker(lambda: browser.post(PAGE, {"resend": "1"}))

    waiting = browser.post(PAGE, {"code": code_in(mailoutbox[1])})  # right, but within the wait

    assert waiting.status_code == 400
    assert "wait 18\xa0hours, 12\xa0minutes before the next, or sign out" in waiting.content.decode()
    staff_with_address.set_password("a-new-one-2026")  # (by the reset link e-mailed to its owner)
    staff_with_address.save()
    browser = signed_in_with_password("admin", "a-new-one-2026")
    page = mail_worker(lambda: browser.get(PAGE))
    assert "A code was sent just now" in page.content.decode() and len(mailoutbox) == 3
    assert browser.post(PAGE, {"code": code_in(mailoutbox[2])}).status_code == 302


def test_no_more_than_emails_per_address_codes_go_to_an_address_in_an_hour(
        staff_with_address, mailoutbox, mail_worker, settings):
    """Whoever knows the password cannot flood the owner's mailbox by signing in again and again."""
    settings.EMAILS_PER_ADDRESS = 2
    for _ in range(3):
        EmailDevice.objects.filter(user=staff_with_address).update(token=None, last_generated_timestamp=None)
        last = mail_worker(lambda: signed_in_with_password("admin").get(PAGE))

    assert len(mailoutbox) == 2
    assert last.status_code == 429 and last["Retry-After"] == "3600"
    assert "No more codes are sent to a…@example.org this hour" in last.content.decode()


def test_without_an_address_the_authenticator_is_set_up_at_once_as_before(staff, mailoutbox, mail_worker):
    page = mail_worker(lambda: signed_in_with_password("admin").get(PAGE)).content.decode()

    assert "QR code of the secret" in page and "Code from the e-mail" not in page and mailoutbox == []


def test_the_code_is_e_mailed_in_the_language_of_the_page_that_asked(
        staff_with_address, mailoutbox, mail_worker):
    browser = signed_in_with_password("admin")
    browser.cookies["django_language"] = "id"

    page = mail_worker(lambda: browser.get(PAGE)).content.decode()

    assert '<html lang="id">' in page and "a…@example.org" in page
    assert mailoutbox[0].subject == "Kode Anda untuk menyiapkan masuk dua faktor di testserver"
    assert 'Seseorang masuk ke akun "admin" di testserver' in mailoutbox[0].body and code_in(mailoutbox[0])


@pytest.mark.django_db(transaction=True, serialized_rollback=True)  # as a request runs: no transaction
def test_a_code_asked_for_while_the_broker_is_down_says_nothing_was_sent_and_the_next_goes_at_once(
        staff_with_address, monkeypatch):
    from kombu.exceptions import OperationalError

    from classifier import tasks

    sent = []

    def broker_down(*_args, **_kwargs):
        raise OperationalError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    browser: Client = signed_in_with_password("admin")
    monkeypatch.setattr(tasks.send_second_factor_code, "apply_async", broker_down)
    down = browser.get(PAGE)
    monkeypatch.setattr(tasks.send_second_factor_code, "apply_async",
                        lambda args, **_kwargs: sent.append(tuple(args)))
    up = browser.get(PAGE)

    assert down.status_code == 503 and down["Retry-After"] == "60"
    assert "The e-mail cannot be sent just now" in down.content.decode()
    assert up.status_code == 200 and "A code was sent just now" in up.content.decode()
    assert sent == [(staff_with_address.pk, "http://testserver")]


def test_the_admin_offers_no_e_mailed_codes_to_mark_as_a_sign_in_factor(django_user_model, settings):
    """Marked confirmed there, the address check would become a way to sign in."""
    settings.STAFF_TWO_FACTOR = False
    browser = Client()
    browser.force_login(django_user_model.objects.create_superuser("root", password="serabi-solo-2026"))

    assert browser.get("/admin/otp_email/emaildevice/").status_code == 404
    assert "TOTP devices" in browser.get("/admin/").content.decode()  # (the authenticators still are)
