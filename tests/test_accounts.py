"""Signing up, logging in and out, changing or resetting the password, the account page and its API:
django.contrib.auth with our pages."""

import functools
import importlib
import re
import zlib
from datetime import timedelta

import pytest
from django.apps import apps as django_apps
from django.core import signing
from django.urls import reverse
from rest_framework.test import APIClient

from classifier.models import ApiToken
from tests.conftest import api_token, make_photo, migrated_back

pytestmark = pytest.mark.django_db


def test_signing_up_logs_the_new_user_in_and_shows_their_name(client, django_user_model):
    response = client.post(reverse("signup"), {
        "username": "citra", "password1": "onde-onde-wijen-9", "password2": "onde-onde-wijen-9",
    }, follow=True)

    assert response.status_code == 200
    assert django_user_model.objects.filter(username="citra").exists()
    assert "Signed in as <strong>citra</strong>" in response.content.decode()


def test_a_password_too_short_and_not_typed_again_the_same_is_told_both_at_once(client, user):
    """Django said the rules only once the two fields matched: a second round for a password that was
    too short anyway."""
    def errors(response, *fields) -> list[str]:
        form = response.context["form"]
        return [message for field in fields for message in form.errors.get(field, [])]

    signup = client.post(reverse("signup"), {"username": "sari", "password1": "kue", "password2": "kuee"})
    client.force_login(user)
    change = client.post(reverse("password_change"), {"old_password": "kue-lapis-2026",
                                                      "new_password1": "ayu", "new_password2": "ayuu"})
    fine = client.post(reverse("password_change"), {"old_password": "kue-lapis-2026",
                                                    "new_password1": "bika-ambon-77", "new_password2": "x"})

    assert any("too short" in m for m in errors(signup, "password1"))
    assert any("didn’t match" in m for m in errors(signup, "password2"))
    assert any("too short" in m for m in errors(change, "new_password1"))
    assert any("didn’t match" in m for m in errors(change, "new_password2"))
    assert errors(fine, "new_password1") == []  # a good password: only the mismatch is said
    # the focus on the first of them, the field to type again first (not the mismatch's, said first)
    assert 'autofocus required aria-invalid="true" aria-describedby="id_password1_helptext' in (
        signup.content.decode())
    assert 'name="new_password1" autocomplete="new-password" autofocus' in change.content.decode()


def test_the_address_is_called_the_same_on_sign_up_reset_and_account_pages(client, user):
    label = '>E-mail address</label>'
    assert label in client.get(reverse("signup")).content.decode()
    assert label in client.get(reverse("password_reset")).content.decode()
    client.force_login(user)
    assert label in client.get(reverse("account")).content.decode()


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
    assert "paused for 15 minutes" in " ".join(locked.content.decode().split())
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


def test_sign_ins_are_not_kept_and_the_log_kept_before_is_deleted(client, user):
    """django-axes kept, by default and for ever, who signed in, from where and with what browser."""
    from axes.models import AccessLog

    client.post(reverse("login"), {"username": "ayu", "password": "kue-lapis-2026"})
    client.post(reverse("logout"))

    assert "_auth_user_id" not in client.session and not AccessLog.objects.exists()
    module = importlib.import_module("classifier.migrations.0019_forget_sign_ins")
    AccessLog.objects.create(username="ayu", ip_address="10.1.2.3", user_agent="Kamera/1.0")
    module.forget_sign_ins(django_apps, None)  # as `migrate` runs it
    assert not AccessLog.objects.exists()


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


def test_one_address_trying_a_password_on_many_user_names_is_refused_on_every_sign_in(
        client, user, admin_user, monkeypatch):
    """Each name's own lockout (five failures) never comes when every try is for another name. The
    failures of one address count together, on the website's, the admin's and the API's sign-in;
    successes do not count, and another address still signs in."""
    from rest_framework.test import APIClient
    from rest_framework.throttling import SimpleRateThrottle

    monkeypatch.setattr(SimpleRateThrottle, "THROTTLE_RATES",
                        {**SimpleRateThrottle.THROTTLE_RATES, "sign_in_failures": "6/hour"})
    api, right = APIClient(), {"username": "ayu", "password": "kue-lapis-2026"}
    for _ in range(10):  # successes: not counted, nor a signed-in user's password typed wrong
        assert client.post("/accounts/login/", right).status_code == 302
        assert client.post("/accounts/delete/", {"delete-password": "typo"}).status_code == 400
        client.logout()
    failed = [client.post("/accounts/login/", {"username": f"name{n}", "password": "Guess-2026!"}).status_code
              for n in range(2)]
    failed += [client.post("/admin/login/", {"username": f"staff{n}", "password": "Guess-2026!"}).status_code
               for n in range(2)]
    failed += [api.post("/api/auth/token/", {"username": f"api{n}", "password": "Guess-2026!"}).status_code
               for n in range(2)]

    refused = [client.post("/accounts/login/", right), client.post("/admin/login/", right),
               api.post("/api/auth/token/", right)]
    elsewhere = client.post("/accounts/login/", right, REMOTE_ADDR="203.0.113.9")
    # An IPv6 client has a /64 to itself: its other addresses are the same client.
    ipv6 = [client.post("/accounts/login/", {"username": f"v6{n}", "password": "Guess-2026!"},
                        REMOTE_ADDR=f"2001:db8:1:2::{n + 1}").status_code for n in range(7)]
    next_network = client.post("/accounts/login/", right, REMOTE_ADDR="2001:db8:1:3::1")

    assert failed == [200, 200, 200, 200, 400, 400]
    assert ipv6 == [200] * 6 + [429] and next_network.status_code == 302
    assert [r.status_code for r in refused] == [429] * 3 and all(int(r["Retry-After"]) > 0 for r in refused)
    assert "more failed sign-ins from your connection" in refused[0].content.decode()
    assert "more failed sign-ins from your connection" in refused[2].json()["error"]["message"]
    assert elsewhere.status_code == 302


@pytest.mark.parametrize("path, data", [
    ("/accounts/login/", {"username": "ayu", "password": "kue-lapis-2026"}),
    ("/signup/", {"username": "eka", "password1": "onde-onde-wijen-9", "password2": "onde-onde-wijen-9"}),
    ("/upload/", {}),
    ("/photos/1/feedback/", {"label": "kue_lapis"}),
    ("/photos/1/delete/", {}),
    ("/staff/training/start/", {}),
    ("/accounts/logout/", {}),
    ("/accounts/", {"email": "root@example.org", "password": "kue-bika-ambon-1"}),
    ("/accounts/token/", {}),
    ("/accounts/email/resend/", {}),
    ("/accounts/delete/", {"delete-password": "kue-bika-ambon-1"}),
    ("/accounts/password_reset/", {"email": "root@example.org"}),
    ("/staff/training/1/cancel/", {}),
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


class MailWorker:
    """The broker boundary for e-mails (reset links, confirmation links): `ask(request)` makes the
    request and commits it; the tasks it queued are in `queued` (name and first argument), and the
    worker runs them at once (unless `runs` is off)."""

    def __init__(self, capture):
        self.capture, self.queued, self.runs = capture, [], True

    def arrive(self, task, args, **_kwargs):
        self.queued.append((task.name.rsplit(".", 1)[-1], args[0]))
        if self.runs:
            task(*args)

    def ask(self, request):
        with self.capture(execute=True):
            return request()

    def reset_addresses(self) -> list[str]:
        return [arg for name, arg in self.queued if name == "send_password_reset"]


@pytest.fixture
def mail_worker(monkeypatch, django_capture_on_commit_callbacks):
    from classifier import tasks

    worker = MailWorker(django_capture_on_commit_callbacks)
    for task in (tasks.send_password_reset, tasks.send_email_confirmation, tasks.send_email_changed_notice):
        monkeypatch.setattr(task, "apply_async", functools.partial(worker.arrive, task))
    return worker


@pytest.mark.django_db(transaction=True, serialized_rollback=True)  # as a request runs: no transaction
def test_a_reset_asked_while_the_broker_is_down_says_nothing_was_sent_and_logs_no_address(
        client, user, monkeypatch, caplog):
    """Nothing would send it later (the sweep resends confirmation links, which are stored; a reset
    request is not): the person is told to try again, whether an account has the address or not."""
    from kombu.exceptions import OperationalError
    from rest_framework.test import APIClient

    from classifier import tasks

    def broker_down(*_args, **_kwargs):
        raise OperationalError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    monkeypatch.setattr(tasks.send_password_reset, "apply_async", broker_down)
    page = client.post("/accounts/password_reset/", {"email": "ayu@example.org"})
    api = APIClient().post("/api/auth/password-reset/", {"email": "ayu@example.org"})

    assert page.status_code == 503 and page["Retry-After"] == "60"
    assert "The e-mail cannot be sent just now" in page.content.decode()
    assert api.status_code == 503 and api["Retry-After"] == "60"
    assert api.json()["error"]["message"].startswith("The e-mail cannot be sent just now")
    assert "send_password_reset" in caplog.text and "ayu@example.org" not in caplog.text


def side_by_side(first, second, *, once) -> tuple:
    """Run `first` in another thread (on its own database connection) and, once it has set the event
    `once`, `second` in this one: what each returned, or the repr of what it raised (a deadlock)."""
    import threading

    from django.db import connection

    def outcome_of(call):
        try:
            return call()
        except Exception as exc:
            return repr(exc)

    outcomes = []

    def background():
        try:
            outcomes.append(outcome_of(first))
        finally:
            connection.close()

    other = threading.Thread(target=background)
    other.start()
    assert once.wait(10)
    mine = outcome_of(second)
    other.join(10)
    return (outcomes[0] if outcomes else "still running", mine)


def confirmation_link(mail) -> str:
    return re.search(r"http://testserver(/accounts/email/\S+/)", mail.body).group(1)


def readable(link: str) -> str:
    """What anyone who sees `link` can read in it: its signed token's data."""
    token = link.rstrip("/").rsplit("/", 1)[-1]
    data = signing.b64_decode(token.split(":")[0].lstrip(".").encode())
    return (zlib.decompress(data) if token.startswith(".") else data).decode()


def test_a_link_e_mailed_before_links_named_the_address_by_a_digest_still_confirms_it(client, user):
    from classifier import selectors, services

    waiting = services.account_email_set(user, "ayu@example.org", site="http://testserver")
    token = signing.dumps([waiting.pk, user.pk, "ayu@example.org"], salt=selectors.EMAIL_CONFIRM_SALT,
                          compress=True)
    assert "ayu@example.org" in readable(f"/accounts/email/{token}/")  # (the old links' format)

    client.post(reverse("email-confirm", args=[token]))

    user.refresh_from_db()
    assert user.email == "ayu@example.org"


def test_a_forgotten_password_is_reset_by_the_link_sent_to_the_address_given_at_sign_up(
        client, django_user_model, mailoutbox, mail_worker):
    from classifier.models import ApiToken

    welcome = mail_worker.ask(lambda: client.post(reverse("signup"), {
        "username": "citra", "email": "citra@example.org", "password1": "onde-onde-wijen-9",
        "password2": "onde-onde-wijen-9"}, follow=True))
    assert "We are sending a link to citra@example.org: the address is used once you open it" in \
        welcome.content.decode()
    client.post(confirmation_link(mailoutbox[0]))  # opened, and confirmed
    citra = django_user_model.objects.get(username="citra")
    ApiToken.objects.create(user=citra)
    client.post(reverse("logout"))
    assert 'href="/accounts/password_reset/"' in client.get(reverse("login")).content.decode()

    asked = mail_worker.ask(lambda: client.post("/accounts/password_reset/", {"email": "CITRA@example.org"},
                                                follow=True))

    assert "If an account has confirmed that address, a link to choose a new password is on its way" in \
        asked.content.decode() and "for 60 minutes" in asked.content.decode()
    assert [mail.to for mail in mailoutbox] == [["citra@example.org"]] * 2
    assert 'account "citra"' in mailoutbox[1].body
    link = re.search(r"http://testserver(/accounts/reset/\S+/)", mailoutbox[1].body).group(1)
    form = client.get(link, follow=True)
    assert "Choose a new password" in form.content.decode()
    done = client.post(form.redirect_chain[-1][0], {"new_password1": "klepon-gula-jawa-5",
                                                    "new_password2": "klepon-gula-jawa-5"}, follow=True)
    assert "Password set" in done.content.decode()
    citra.refresh_from_db()
    assert citra.check_password("klepon-gula-jawa-5") and not citra.check_password("onde-onde-wijen-9")
    assert not ApiToken.objects.filter(user=citra).exists()  # a program with the old token is signed out
    assert "This link no longer works" in client.get(link, follow=True).content.decode()  # once only


def test_an_address_is_used_only_once_its_owner_opens_the_link_e_mailed_to_it(client, user, mailoutbox,
                                                                              mail_worker):
    """Else an address typed wrong, or someone else's, would receive links that open the account: its
    owner asks for a reset with their own address and gets this account's."""
    client.force_login(user)
    saved = mail_worker.ask(lambda: client.post("/accounts/", {"email": "ayu@example.org",
                                                               "password": "kue-lapis-2026"}, follow=True))
    page = saved.content.decode()
    assert "We are sending a link to ayu@example.org: the address is used once you open it (it works for " \
           "3\xa0days)" in page and "You have no confirmed address" in page and "we are sending there" in page
    assert [mail.to for mail in mailoutbox] == [["ayu@example.org"]]
    assert "we sent there on" in client.get("/accounts/").content.decode()
    assert 'the account "ayu" at testserver' in mailoutbox[0].body
    mail_worker.ask(lambda: client.post("/accounts/password_reset/", {"email": "ayu@example.org"}))
    assert mail_worker.reset_addresses() == ["ayu@example.org"] and len(mailoutbox) == 1  # not yet

    client.logout()  # opened in a mail program, without the session
    link = confirmation_link(mailoutbox[0])
    assert "ayu@example.org" not in readable(link)  # links end up in access logs and histories
    shown = client.get(link)  # a mail program previewing the link confirms nothing
    user.refresh_from_db()
    assert shown.status_code == 200 and user.email == ""
    assert "Make <strong>ayu@example.org</strong> the address of the account <strong>ayu</strong>?" in \
        shown.content.decode()
    confirmed = client.post(link, follow=True)
    user.refresh_from_db()
    assert user.email == "ayu@example.org" and confirmed.redirect_chain[-1][0] == "/accounts/login/"
    assert "ayu@example.org is confirmed: it is the address of the account ayu." in confirmed.content.decode()
    again = client.post(link, follow=True)  # a second click: no failure page for what worked
    assert "That address is confirmed already." in again.content.decode()

    mail_worker.ask(lambda: client.post("/accounts/password_reset/", {"email": "ayu@example.org"}))
    assert len(mailoutbox) == 2 and "/accounts/reset/" in mailoutbox[1].body  # (no notice: no address before)


def test_the_address_an_account_had_is_told_when_another_is_confirmed(client, user, mailoutbox, mail_worker):
    """Someone who knew the password may have made the change: the reset links go to theirs now."""
    user.email = "ayu@example.org"
    user.save()
    client.force_login(user)
    asked = {"email": "new@example.org", "password": "kue-lapis-2026"}
    mail_worker.ask(lambda: client.post("/accounts/", asked))
    link = confirmation_link(mailoutbox[0])

    mail_worker.ask(lambda: client.post(link))

    user.refresh_from_db()
    notice = mailoutbox[-1]
    assert user.email == "new@example.org" and len(mailoutbox) == 2 and notice.to == ["ayu@example.org"]
    assert notice.subject == "The e-mail address of your account at testserver was changed"
    assert 'The account "ayu" at testserver has another e-mail address now' in notice.body
    assert "new@example.org" not in notice.body  # (the old address may be someone else's by now)
    assert "http://testserver/accounts/login/" in notice.body


def test_a_link_stops_working_when_another_address_is_asked_for_is_too_old_or_forged(
        client, user, mailoutbox, mail_worker, settings):
    client.force_login(user)

    def ask_for(email):
        mail_worker.ask(lambda: client.post("/accounts/", {"email": email, "password": "kue-lapis-2026"}))

    ask_for("typo@example.org")
    ask_for("ayu@example.org")
    typo, right = (confirmation_link(mail) for mail in mailoutbox)

    assert client.get(typo).status_code == 404 and client.post(typo).status_code == 404
    settings.EMAIL_CONFIRM_TIMEOUT = -1
    assert client.post(right).status_code == 404  # too old
    settings.EMAIL_CONFIRM_TIMEOUT = 3600
    assert client.post(right[:-3] + "xx/").status_code == 404  # forged
    user.refresh_from_db()
    assert user.email == ""
    assert client.post(right).status_code == 302
    user.refresh_from_db()
    assert user.email == "ayu@example.org"


def test_the_address_waiting_can_be_sent_again_withdrawn_or_removed(client, user, mailoutbox, mail_worker):
    from classifier.models import PendingEmail

    client.force_login(user)
    user.email = "ayu@example.org"
    user.save()

    def ask_for(email, **kwargs):
        data = {"email": email, "password": "kue-lapis-2026"}
        return mail_worker.ask(lambda: client.post("/accounts/", data, **kwargs))

    def link_works(mail):
        return client.post(confirmation_link(mail)).status_code != 404

    ask_for("ayu@work.example")

    again = mail_worker.ask(lambda: client.post("/accounts/email/resend/", follow=True))
    assert "We are sending a link to ayu@work.example" in again.content.decode()
    assert [mail.to for mail in mailoutbox] == [["ayu@work.example"]] * 2

    kept = ask_for("AYU@example.org", follow=True)
    user.refresh_from_db()
    assert "Your e-mail address is AYU@example.org." in kept.content.decode() and len(mailoutbox) == 2
    assert not PendingEmail.objects.exists() and not link_works(mailoutbox[1])
    assert "No address waits for you to confirm it." in client.post("/accounts/email/resend/",
                                                                    follow=True).content.decode()

    ask_for("ayu@work.example")
    removed = ask_for("", follow=True)
    user.refresh_from_db()
    assert "You have no e-mail address: a forgotten password cannot be reset. The change to " \
           "ayu@work.example is withdrawn." in removed.content.decode() and user.email == ""
    assert not PendingEmail.objects.exists() and not link_works(mailoutbox[2])


def test_a_confirmation_link_is_e_mailed_once_however_often_its_task_is_delivered(
        user, mailoutbox, django_capture_on_commit_callbacks):
    from classifier import services

    with django_capture_on_commit_callbacks():  # (the task is called here, not queued)
        pending = services.account_email_set(user, "ayu@example.org", site="http://t")

    sent = [services.email_confirmation_send(pending.pk) for _ in range(3)]  # redelivered, and swept

    assert sent == [True, False, False] and len(mailoutbox) == 1


def test_a_confirmation_link_whose_worker_died_while_sending_it_is_sent_by_the_sweep(
        user, settings, mailoutbox, django_capture_on_commit_callbacks, monkeypatch):
    """A worker killed while the mail server had the message (out of memory, the host restarted):
    its claim must not stand for a link sent."""
    from django.utils import timezone

    from classifier import services, tasks
    from classifier.models import PendingEmail

    with django_capture_on_commit_callbacks():
        pending = services.account_email_set(user, "ayu@example.org", site="http://t")

    def killed(*_args, **_kwargs):
        raise SystemExit("killed")  # (not an Exception: nothing of the task's own runs after it)

    monkeypatch.setattr(services, "email_from_templates", killed)
    with pytest.raises(SystemExit):
        services.email_confirmation_send(pending.pk)
    monkeypatch.undo()
    assert not services.email_confirmation_send(pending.pk)  # the task delivered again: being sent
    assert PendingEmail.objects.get(pk=pending.pk).sent is None  # not said to be sent
    long_ago = timezone.now() - timedelta(seconds=settings.CELERY_TASK_TIME_LIMIT + settings.REQUEUE_AFTER_S)
    PendingEmail.objects.filter(pk=pending.pk).update(asked=long_ago, sending=long_ago)

    swept = []
    monkeypatch.setattr(tasks.send_email_confirmation, "apply_async", lambda args, **_: swept.append(args[0]))
    tasks.requeue_stuck()

    assert swept == [pending.pk]
    assert services.email_confirmation_send(pending.pk) and len(mailoutbox) == 1
    assert PendingEmail.objects.get(pk=pending.pk).sent is not None


def test_confirmation_links_to_one_address_are_capped_and_leave_its_reset_links_alone(
        user, other_user, django_user_model, mailoutbox, settings, django_capture_on_commit_callbacks):
    """Anyone may type anyone's address: asking for it again and again must neither flood its inbox
    nor use up the reset links its owner may need."""
    from classifier import services
    from classifier.models import PendingEmail

    settings.EMAILS_PER_ADDRESS = 1
    django_user_model.objects.create_user("victim", email="victim@example.org", password="onde-onde-wijen-9")

    def ask(who):
        with django_capture_on_commit_callbacks():
            return services.account_email_set(who, "victim@example.org", site="http://t")

    first, second = ask(user), ask(other_user)
    sent = [services.email_confirmation_send(first.pk), services.email_confirmation_send(second.pk)]

    assert sent == [True, False] and len(mailoutbox) == 1
    assert PendingEmail.objects.get(pk=second.pk).sent is None  # the sweep tries it again later
    assert services.password_reset_send("victim@example.org", "t", False) == 1


def test_a_link_asked_for_again_past_what_one_address_gets_an_hour_is_refused_not_promised(
        client, user, settings, mail_worker, mailoutbox):
    settings.EMAILS_PER_ADDRESS, settings.EMAIL_LINKS_PER_ACCOUNT = 2, 5
    client.force_login(user)
    asked = {"email": "ayu@example.org", "password": "kue-lapis-2026"}
    mail_worker.ask(lambda: client.post("/accounts/", asked))

    again = [mail_worker.ask(lambda: client.post("/accounts/email/resend/", follow=True)).content.decode()
             for _ in range(2)]

    assert len(mailoutbox) == 2 and "We are sending a link to ayu@example.org" in again[0]
    assert "ayu@example.org got 2 links from us in the last hour, the most we send to one" in again[1]
    assert "We are sending" not in again[1] and "we are sending there" not in again[1]
    assert user.pending_email.sent is not None  # the links sent still work


def test_an_address_others_asked_for_all_hour_is_not_refused_to_its_owner_its_link_comes_after_the_hour(
        client, user, other_user, django_user_model, settings, mail_worker, mailoutbox):
    """Anyone may type anyone's address: a stranger asking for it a few times must not keep its owner
    from adding it. Their link is held while the address had its links for the hour, and said so."""
    from django.core.cache import cache
    from django.utils import timezone

    from classifier import services
    from classifier.models import PendingEmail

    settings.EMAILS_PER_ADDRESS = 1
    for stranger in (user, other_user):  # the first one's link goes, the second one's waits
        mail_worker.ask(lambda who=stranger: services.account_email_set(who, "sari@example.org", site="http://t"))
    owner = django_user_model.objects.create_user("sari", password="onde-onde-wijen-9")
    client.force_login(owner)

    page = mail_worker.ask(lambda: client.post("/accounts/", {"email": "sari@example.org",
                                                               "password": "onde-onde-wijen-9"}, follow=True))

    assert "We are sending a link to sari@example.org as soon as it may get one" in page.content.decode()
    assert len(mailoutbox) == 1 and owner.pending_email.sent is None  # held
    cache.delete(services.emails_to("sari@example.org", "confirm"))  # the hour is over
    PendingEmail.objects.update(asked=timezone.now() - timedelta(hours=1))
    for pending_id in services.email_confirmations_unsent():  # the sweep: the newest asked first
        services.email_confirmation_send(pending_id)
    assert len(mailoutbox) == 2 and mailoutbox[-1].to == ["sari@example.org"]
    assert 'account "sari"' in mailoutbox[-1].body  # the owner's, not the stranger's waiting since before


def test_an_account_asks_for_a_few_links_an_hour_at_most(client, user, settings, mail_worker, mailoutbox):
    """Each e-mail carries the account's name, which its owner chose: no relay for messages."""
    from rest_framework.test import APIClient

    settings.EMAIL_LINKS_PER_ACCOUNT = 2
    client.force_login(user)
    api = APIClient()
    api.force_authenticate(user)

    def ask_for(address):
        data = {"email": address, "password": "kue-lapis-2026"}
        return mail_worker.ask(lambda: client.post("/accounts/", data))

    asked = [ask_for(address) for address in ("a@example.org", "b@example.org", "c@example.org")]
    again = mail_worker.ask(lambda: client.post("/accounts/email/resend/", follow=True))
    patched = api.patch("/api/account/", {"email": "d@example.org", "password": "kue-lapis-2026"},
                        format="json")

    assert [a.status_code for a in asked] == [302, 302, 400]
    assert "You asked for 2 links in the last hour, the most we send; try again later." in \
        asked[2].content.decode()
    assert "You asked for 2 links" in again.content.decode() and patched.status_code == 400
    assert [mail.to for mail in mailoutbox] == [["a@example.org"], ["b@example.org"]]
    assert user.pending_email.email == "b@example.org"


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_the_sweep_sends_a_link_that_did_not_go_within_the_limit_that_its_failed_tries_count_towards(
        user, mailoutbox, settings, monkeypatch):
    """The broker or the mail server was down when it was asked for: it goes later, by itself. A try
    that failed counts: a server that took the message and then timed out has sent it all the same,
    and without the limit the sweep would send it every few minutes for days."""
    import smtplib
    from datetime import timedelta

    from django.core.mail.backends.locmem import EmailBackend
    from django.utils import timezone

    from classifier import services, tasks
    from classifier.models import PendingEmail

    settings.EMAILS_PER_ADDRESS, settings.REQUEUE_AFTER_S = 2, 60
    monkeypatch.setattr(tasks, "messages_waiting", lambda queue: 0)
    swept = []
    monkeypatch.setattr(tasks.send_email_confirmation, "apply_async", lambda args, **_: swept.append(args[0]))
    pending = services.account_email_set(user, "ayu@example.org", site="http://t")
    swept.clear()  # its message lost
    send = EmailBackend.send_messages

    def refused(*_args):
        raise smtplib.SMTPServerDisconnected("gone")

    monkeypatch.setattr(EmailBackend, "send_messages", refused)
    with pytest.raises(smtplib.SMTPServerDisconnected):
        services.email_confirmation_send(pending.pk)
    monkeypatch.setattr(EmailBackend, "send_messages", send)
    tasks.requeue_stuck()
    assert swept == []  # asked a moment ago
    PendingEmail.objects.filter(pk=pending.pk).update(asked=timezone.now() - timedelta(minutes=2))
    tasks.requeue_stuck()
    tasks.requeue_stuck()

    assert swept == [pending.pk]  # once: the next sweep waits as long again
    assert services.email_confirmation_send(pending.pk) and len(mailoutbox) == 1
    assert not services.one_more(services.emails_to("ayu@example.org", "confirm"), 2)  # both tries counted


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_link_asked_for_again_long_after_the_first_is_still_swept_when_it_does_not_go(
        user, settings, monkeypatch):
    from datetime import timedelta

    from django.utils import timezone

    from classifier import services, tasks
    from classifier.models import PendingEmail

    settings.REQUEUE_AFTER_S = 60
    monkeypatch.setattr(tasks, "messages_waiting", lambda queue: 0)
    swept = []
    monkeypatch.setattr(tasks.send_email_confirmation, "apply_async", lambda args, **_: swept.append(args[0]))
    pending = services.account_email_set(user, "ayu@example.org", site="http://t")
    days_ago = timezone.now() - timedelta(days=4)  # its first link expired unused
    PendingEmail.objects.filter(pk=pending.pk).update(created=days_ago, asked=days_ago, sent=None)
    swept.clear()
    tasks.requeue_stuck()
    assert swept == []  # no longer tried: nobody asked for it for longer than a link works

    services.account_email_resend(user, site="http://t")  # its owner asks again; the message is lost
    swept.clear()
    PendingEmail.objects.filter(pk=pending.pk).update(asked=timezone.now() - timedelta(minutes=2))
    tasks.requeue_stuck()

    assert swept == [pending.pk]


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_confirmation_racing_a_change_of_address_waits_for_it_and_finds_its_link_replaced(
        user, monkeypatch, django_capture_on_commit_callbacks):
    """Both lock the account first: in the other order PostgreSQL found a deadlock (a 500)."""
    import threading

    from classifier import services
    from tests.processes import lock_waited_for, require_services

    require_services()
    with django_capture_on_commit_callbacks():
        pending = services.account_email_set(user, "ayu@example.org", site="http://t")
    lock = services.lock_account
    locked, waited = threading.Event(), []

    def slowly(user_id):  # the first to hold the account keeps it until the other waits for it
        held = lock(user_id)
        if not locked.is_set():
            locked.set()
            waited.append(lock_waited_for())
        return held

    monkeypatch.setattr(services, "lock_account", slowly)

    outcome = side_by_side(lambda: services.account_email_set(user, "ayu@work.example", site="http://t").email,
                           lambda: services.account_email_confirm(pending), once=locked)

    assert waited == [True]
    assert outcome == ("ayu@work.example", False)
    user.refresh_from_db()
    assert user.email == "" and user.pending_email.email == "ayu@work.example"


def test_a_reset_for_an_address_no_account_has_answers_the_same_and_sends_nothing(client, user, mailoutbox,
                                                                                   mail_worker):
    """The form must not tell who has an account; an account without an address gets nothing."""
    asked = mail_worker.ask(lambda: client.post("/accounts/password_reset/", {"email": "nobody@example.org"},
                                                 follow=True))

    assert "If an account has confirmed that address" in asked.content.decode() and mailoutbox == []


def test_the_request_only_queues_the_address_so_it_takes_as_long_whether_an_account_has_it(
        client, user, mailoutbox, mail_worker):
    """Sending in the request would take a mail server's round trip for an address with an account
    and none for one without: a timing that tells who has an account."""
    mail_worker.runs = False
    user.email = "ayu@example.org"
    user.save()

    for address in ("ayu@example.org", "nobody@example.org"):
        mail_worker.ask(lambda a=address: client.post("/accounts/password_reset/", {"email": a}))

    assert mail_worker.reset_addresses() == ["ayu@example.org", "nobody@example.org"] and mailoutbox == []


def test_at_most_a_few_reset_emails_an_hour_go_to_one_address_however_many_accounts_give_it(
        django_user_model, mailoutbox, settings):
    """Nobody checks that an address given at sign-up is the giver's: someone else's inbox must not
    fill with the links of accounts made for that purpose."""
    from classifier import services

    settings.EMAILS_PER_ADDRESS = 3
    for name in ("a1", "a2"):
        django_user_model.objects.create_user(name, email="victim@example.org", password="onde-onde-wijen-9")

    sent = [services.password_reset_send("Victim@example.org", "testserver", False) for _ in range(3)]

    assert sent == [2, 1, 0] and len(mailoutbox) == 3
    assert services.password_reset_send("other@example.org", "testserver", False) == 0  # no account


def test_reset_emails_are_limited_per_address_so_the_form_cannot_flood_an_inbox(client, user, mailoutbox,
                                                                               monkeypatch, mail_worker):
    from rest_framework.throttling import SimpleRateThrottle

    monkeypatch.setattr(SimpleRateThrottle, "THROTTLE_RATES",
                        {**SimpleRateThrottle.THROTTLE_RATES, "password_reset": "2/hour"})
    user.email = "ayu@example.org"
    user.save()

    def ask():
        return client.post("/accounts/password_reset/", {"email": "ayu@example.org"})

    answers = [mail_worker.ask(ask) for _ in range(3)]

    assert [a.status_code for a in answers] == [302, 302, 429] and int(answers[2]["Retry-After"]) > 0
    assert "more reset e-mails from your connection" in answers[2].content.decode()
    assert len(mailoutbox) == 2


def test_the_account_page_changes_the_address_only_with_the_password(client, user):
    client.force_login(user)
    assert 'href="/accounts/"' in client.get(reverse("gallery")).content.decode()

    wrong = client.post("/accounts/", {"email": "thief@example.org", "password": "guess"})
    user.refresh_from_db()
    assert wrong.status_code == 400 and "That is not your password." in wrong.content.decode()
    assert user.email == ""

    asked = client.post("/accounts/", {"email": "ayu@example.org", "password": "kue-lapis-2026"}, follow=True)
    user.refresh_from_db()
    assert "We are sending a link to ayu@example.org" in asked.content.decode()
    assert user.pending_email.email == "ayu@example.org"


@pytest.mark.parametrize("where", ["website", "api"])
def test_wrong_passwords_on_the_account_page_lock_out_like_the_login_page(client, user, settings, where):
    """A session or token left open must not let someone guess the password there instead."""
    from rest_framework.test import APIClient

    if where == "website":
        client.force_login(user)
        delete = functools.partial(client.post, "/accounts/delete/")
        key = "delete-password"
    else:
        client = APIClient()
        client.force_authenticate(user)
        delete = functools.partial(client.post, "/api/account/delete/", format="json")
        key = "password"
    guesses = [delete({key: "guess"}) for _ in range(settings.AXES_FAILURE_LIMIT)]

    locked = delete({key: "kue-lapis-2026"})

    assert [g.status_code for g in guesses[:-1]] == [400] * (settings.AXES_FAILURE_LIMIT - 1)
    assert locked.status_code == 429 and "Too many wrong passwords" in locked.content.decode()
    # The last two tries before the pause say so; the first ones only that the password is wrong.
    said = [" ".join(g.content.decode().split()) for g in guesses]
    assert "That is not your password." in said[0] and "more wrong password" not in said[0]
    assert ("That is not your password. After 2 more wrong passwords in a row, entering it here and signing "
            "in from this connection are paused for 15 minutes.") in said[-3]
    assert "That is not your password. After 1 more wrong password in a row" in said[-2]
    if where == "api":
        assert int(locked["Retry-After"]) == settings.AXES_COOLOFF_TIME * 3600
    else:  # said as what it is to someone signed in: not a sign-in, and they still are
        assert "You are still signed in, and nothing was changed" in " ".join(locked.content.decode().split())
        assert client.get(reverse("gallery")).status_code == 200
    assert type(user).objects.filter(pk=user.pk).exists()


@pytest.mark.parametrize("where", ["website", "api"])
def test_the_right_password_on_the_account_page_starts_the_count_again_as_a_login_does(
        client, user, settings, where):
    from rest_framework.test import APIClient

    if where == "website":
        client.force_login(user)
        ask = functools.partial(client.post, "/accounts/")
    else:
        client = APIClient()
        client.force_authenticate(user)
        ask = functools.partial(client.patch, "/api/account/", format="json")
    answers = []
    for address in ("ayu@example.org", "ayu@example.com"):
        answers += [ask({"email": address, "password": "guess"}).status_code
                    for _ in range(settings.AXES_FAILURE_LIMIT - 1)]
        answers.append(ask({"email": address, "password": "kue-lapis-2026"}).status_code)

    right = 302 if where == "website" else 200
    assert answers == ([400] * (settings.AXES_FAILURE_LIMIT - 1) + [right]) * 2
    user.refresh_from_db()
    assert user.pending_email.email == "ayu@example.com"


def test_the_old_password_on_the_change_page_locks_out_like_the_login_page(client, user, settings):
    client.force_login(user)

    def change(old):
        return client.post(reverse("password_change"), {
            "old_password": old, "new_password1": "putri-salju-77x", "new_password2": "putri-salju-77x"})

    guesses = [change("guess") for _ in range(settings.AXES_FAILURE_LIMIT)]
    locked = change("kue-lapis-2026")

    assert guesses[0].status_code == 200 and "Your old password was entered incorrectly" not in \
        guesses[0].content.decode() and "That is not your password." in guesses[0].content.decode()
    assert locked.status_code == 429
    user.refresh_from_db()
    assert user.check_password("kue-lapis-2026")


def test_the_account_page_makes_with_the_password_shows_once_and_revokes_the_api_tokens(client, user):
    from rest_framework.test import APIClient

    from classifier.models import ApiToken

    def works(key: str) -> bool:
        return APIClient(HTTP_AUTHORIZATION=f"Token {key}").get("/api/account/").status_code == 200

    old = api_token(user)
    client.force_login(user)
    page = client.get("/accounts/").content.decode()
    assert f"<code>{old[:8]}…</code>" in page and "never used" in page and old not in page
    assert works(old) and "last used" in client.get("/accounts/").content.decode()

    refused = client.post("/accounts/token/", {"token-password": "guess"})
    assert refused.status_code == 400 and "That is not your password." in refused.content.decode()
    assert ApiToken.objects.filter(user=user).count() == 1  # a session alone does not make a token

    made = client.post("/accounts/token/", {"token-name": "<b>laptop</b>",
                                            "token-password": "kue-lapis-2026"})
    shown = client.get(made.url).content.decode()
    reloaded = client.get(made.url).content.decode()  # (a reload repeats the GET, not the form)

    new = shown.split('<code class="token" id="new-token">')[1].split("</code>")[0]
    assert made.status_code == 302 and new != old and works(new) and works(old)  # (the old one kept)
    assert new not in reloaded and f"<code>{new[:8]}…</code>" in reloaded  # shown once only
    assert "<strong>&lt;b&gt;laptop&lt;/b&gt;</strong>" in reloaded  # (what it is for, as typed)
    # One revoked by its button: its program stops working, the other goes on.
    one = client.post("/accounts/token/", {"revoke": ApiToken.objects.get(token_key=old[:15]).digest},
                      follow=True).content.decode()
    assert "The token is revoked" in one and not works(old) and works(new)
    again = client.post("/accounts/token/", {"revoke": "a" * 128}, follow=True).content.decode()
    assert "That token was revoked already." in again and works(new)
    # All at once: every program using them stops working, so the page asks to tick that first.
    api_token(user)
    kept = client.post("/accounts/token/", {"revoke": "all"}, follow=True).content.decode()
    assert "The tokens were not revoked: tick the box" in kept and works(new)
    assert 'name="revoke-confirm" required' in kept
    revoked = client.post("/accounts/token/", {"revoke": "all", "revoke-confirm": "on"}, follow=True)
    revoked = revoked.content.decode()
    assert "Your API tokens are revoked" in revoked and "You have no API token." in revoked
    assert not works(new) and not ApiToken.objects.filter(user=user).exists()


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_the_tokens_drf_kept_in_plain_text_keep_working_and_only_their_hashes_stay(user):
    """Migration 0030: every program keeps the token it had (made when, shown as before; however
    old: when it was last used is not known), and the table that held the tokens themselves goes;
    migrated back, the release before finds it again, empty."""
    from django.db import connection
    from django.db.migrations.recorder import MigrationRecorder
    from django.utils import timezone
    from rest_framework.test import APIClient

    from classifier.models import ApiToken

    key, made = "0123456789abcdef0123456789abcdef01234567", timezone.now() - timedelta(days=400)
    recorder = MigrationRecorder(connection)
    recorder.record_applied("authtoken", "0004_alter_tokenproxy_options")  # (a site DRF's app had made)
    try:
        with migrated_back("0029_pending_email_language"):
            with connection.cursor() as cursor:
                cursor.execute("SELECT count(*) FROM authtoken_token")
                assert cursor.fetchone() == (0,)
                cursor.execute("INSERT INTO authtoken_token (key, created, user_id) VALUES (%s, %s, %s)",
                               [key, made, user.pk])

        assert APIClient(HTTP_AUTHORIZATION=f"Token {key}").get("/api/account/").json()["username"] == "ayu"
        assert ApiToken.objects.get(user=user).created == made
        assert "authtoken_token" not in connection.introspection.table_names()
    finally:
        recorder.record_unapplied("authtoken", "0004_alter_tokenproxy_options")
        with connection.cursor() as cursor:
            cursor.execute("DROP TABLE IF EXISTS authtoken_token")


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_drf_token_whose_account_is_gone_does_not_stop_migration_0030(user):
    """A row left by an account deleted where the foreign key was not enforced (SQLite's shell, a
    dropped constraint) is dropped, not copied: copied, it failed the migration at commit."""
    from django.db import connection
    from django.utils import timezone

    from classifier.models import ApiToken

    try:
        with migrated_back("0029_pending_email_language"):
            with connection.cursor() as cursor:
                cursor.execute("CREATE TABLE authtoken_token (key varchar(40) PRIMARY KEY, "
                               "created timestamp with time zone NOT NULL, user_id integer NOT NULL)")
                for key, owner in (("a" * 40, user.pk), ("b" * 40, user.pk + 1000)):
                    cursor.execute("INSERT INTO authtoken_token (key, created, user_id) VALUES (%s, %s, %s)",
                                   [key, timezone.now(), owner])

        assert list(ApiToken.objects.values_list("user", "token_key")) == [(user.pk, "a" * 15)]
        assert "authtoken_token" not in connection.introspection.table_names()
    finally:
        with connection.cursor() as cursor:
            cursor.execute("DROP TABLE IF EXISTS authtoken_token")


def test_a_token_no_request_sent_for_api_token_idle_days_stops_working(client, user, settings):
    """However old, a token a program uses keeps working; one forgotten (in an old script, a lost
    laptop) stops, says why, shows as expired, and goes when a new one is made."""
    from django.utils import timezone
    from rest_framework.test import APIClient

    from classifier.models import ApiToken

    settings.API_TOKEN_IDLE_DAYS = 365
    used, forgotten = api_token(user), api_token(user)
    long_ago = timezone.now() - timedelta(days=366)
    ApiToken.objects.update(created=long_ago)
    ApiToken.objects.filter(token_key=used[:15]).update(last_used=timezone.now() - timedelta(days=364))
    client.force_login(user)

    works = APIClient(HTTP_AUTHORIZATION=f"Token {used}").get("/api/account/")
    refused = APIClient(HTTP_AUTHORIZATION=f"Token {forgotten}").get("/api/account/")
    page = client.get("/accounts/").content.decode()

    assert works.status_code == 200
    assert refused.status_code == 401 and refused.json()["error"]["message"] == (
        "This token was not used for 365 days, so it no longer works: ask for a new one (POST "
        "/api/auth/token/, or the account page).")
    assert page.count("expired: it no longer works") == 1
    assert "A token that no request sends for 365 days stops working." in page
    api_token(user)
    assert not ApiToken.objects.filter(token_key=forgotten[:15]).exists()
    assert ApiToken.objects.filter(token_key=used[:15]).exists()


def test_another_accounts_token_cannot_be_revoked_from_the_account_page(client, user, other_user):
    from classifier.models import ApiToken

    theirs = api_token(other_user)
    client.force_login(user)

    theirs_hash = ApiToken.objects.get(user=other_user).digest
    said = client.post("/accounts/token/", {"revoke": theirs_hash}, follow=True)

    assert "That token was revoked already." in said.content.decode()
    assert ApiToken.objects.filter(token_key=theirs[:15]).exists()


def test_an_account_keeps_at_most_its_limit_of_tokens_revoking_the_one_used_least_recently(user, settings):
    """A program that asks for a token at each start does not pile them up: past the limit, the one
    used least recently goes (not the one a program uses every day, though made first)."""
    from rest_framework.test import APIClient

    from classifier.models import ApiToken

    settings.API_TOKENS_PER_ACCOUNT = 3

    def works(key: str) -> bool:
        return APIClient(HTTP_AUTHORIZATION=f"Token {key}").get("/api/account/").status_code == 200

    daily, once, spare = (api_token(user) for _ in range(3))
    assert works(daily)  # (used now: the others never were)

    newest = api_token(user)

    assert works(daily) and works(spare) and works(newest) and not works(once)
    assert ApiToken.objects.filter(user=user).count() == 3


def test_deleting_an_account_takes_its_photos_and_files_and_signs_out(client, user, other_user, settings,
                                                                     django_capture_on_commit_callbacks):
    from pathlib import Path

    from classifier.models import Photo

    mine = [make_photo(user, status="done", label="kue_lapis"), make_photo(user)]
    theirs = make_photo(other_user, status="done", label="kue_lapis")

    def files():
        return {p.name for p in Path(settings.MEDIA_ROOT).rglob("*") if p.is_file()}

    kept = {Path(f.name).name for f in (theirs.image, theirs.thumbnail, theirs.predictions.get().heatmap)}
    client.force_login(user)
    page = client.get("/accounts/").content.decode()
    assert "your 2 photos, their results and your answers are deleted" in page

    wrong = client.post("/accounts/delete/", {"delete-password": "guess"})
    assert wrong.status_code == 400 and "That is not your password." in wrong.content.decode()
    assert Photo.objects.filter(owner=user).count() == 2
    # (the page is long on a phone: the field with the error has the focus, so it is in view)
    assert re.search(r'<input type="password" name="delete-password"[^>]*autofocus', wrong.content.decode())
    assert "autofocus" not in client.get("/accounts/").content.decode()

    with django_capture_on_commit_callbacks(execute=True):
        done = client.post("/accounts/delete/", {"delete-password": "kue-lapis-2026"}, follow=True)

    assert "Your account is deleted, with its 2 photos and your answers." in done.content.decode()
    assert "Signed in as" not in done.content.decode()
    assert not type(user).objects.filter(pk=user.pk).exists()
    assert not Photo.objects.filter(pk__in=[p.pk for p in mine]).exists()
    assert files() == kept  # the other user's files only
    assert client.get(reverse("gallery")).status_code == 302


def test_a_staff_account_is_not_deleted_from_its_page(client, staff):
    client.force_login(staff)
    assert "A staff account is removed by an administrator" in client.get("/accounts/").content.decode()

    refused = client.post("/accounts/delete/", {"delete-password": "serabi-solo-2026"}, follow=True)

    assert "A staff account is removed by an administrator, in the admin." in refused.content.decode()
    assert type(staff).objects.filter(pk=staff.pk).exists()


def test_the_api_reads_changes_and_deletes_the_account_with_the_password(user, staff):
    from rest_framework.test import APIClient

    make_photo(user)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {api_token(user)}")

    me = api.get("/api/account/").json()
    assert (me["username"], me["email"], me["photos"]) == ("ayu", "", 1)
    no_password = api.patch("/api/account/", {"email": "ayu@example.org"}, format="json")
    wrong = api.patch("/api/account/", {"email": "ayu@example.org", "password": "guess"}, format="json")
    bad = api.patch("/api/account/", {"email": "not an address", "password": "kue-lapis-2026"}, format="json")
    changed = api.patch("/api/account/", {"email": "ayu@example.org", "password": "kue-lapis-2026"},
                        format="json")
    assert (no_password.status_code, wrong.status_code, bad.status_code) == (400, 400, 400)
    assert "That is not your password." in str(wrong.json())
    assert changed.status_code == 200 and (changed.json()["email"], changed.json()["email_pending"]) == \
        ("", "ayu@example.org")
    assert api.get("/api/account/").json()["email_pending"] == "ayu@example.org"

    assert api.post("/api/account/delete/", {"password": "guess"}, format="json").status_code == 400
    assert api.post("/api/account/delete/", {"password": "kue-lapis-2026"}, format="json").status_code == 204
    assert not type(user).objects.filter(pk=user.pk).exists()
    assert api.get("/api/account/").status_code == 401  # its token went with it

    staff_api = APIClient()
    staff_api.force_authenticate(staff)
    refused = staff_api.post("/api/account/delete/", {"password": "serabi-solo-2026"}, format="json")
    assert refused.status_code == 403 and type(staff).objects.filter(pk=staff.pk).exists()


def test_the_api_changes_the_password_with_the_old_one_and_answers_with_a_new_token(
        user, django_capture_on_commit_callbacks):
    """As the website's form: the old password allows it (counted as a sign-in attempt), the new one
    is held to the same rules, and what a new password ends ends; the program that asked goes on."""
    from rest_framework.test import APIClient

    from classifier import services

    old_token = api_token(user)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {old_token}")
    with django_capture_on_commit_callbacks():
        services.account_email_set(user, "thief@example.org", site="http://testserver")

    def change(old, new):
        return api.post("/api/account/password/", {"password": old, "new_password": new}, format="json")

    wrong, weak = change("guess", "bika-ambon-77"), change("kue-lapis-2026", "ayu")
    assert wrong.status_code == 400 and wrong.json()["error"]["fields"]["password"] == [
        "That is not your password."]
    assert weak.status_code == 400 and "too short" in str(weak.json()["error"]["fields"]["new_password"])
    user.refresh_from_db()
    assert user.check_password("kue-lapis-2026")

    changed = change("kue-lapis-2026", "bika-ambon-77")

    new_token = changed.json()["token"]
    assert changed.status_code == 200 and new_token and new_token != old_token
    assert api.get("/api/account/").status_code == 401  # the old token ended
    api.credentials(HTTP_AUTHORIZATION=f"Token {new_token}")
    me = api.get("/api/account/").json()
    assert me["email_pending"] is None  # and the address change it may have been asked with
    asked = APIClient().post("/api/auth/token/", {"username": "ayu", "password": "bika-ambon-77"})
    assert asked.status_code == 200


def test_a_program_that_changes_the_password_keeps_its_tokens_name(user):
    """The token the answer gives replaces the program's own: the account page lists it under the
    name the program gave its old one."""
    from rest_framework.test import APIClient

    from classifier.models import ApiToken

    old = APIClient().post("/api/auth/token/", {"username": "ayu", "password": "kue-lapis-2026",
                                                "name": "kasir-toko"}).json()["token"]
    api = APIClient(HTTP_AUTHORIZATION=f"Token {old}")

    changed = api.post("/api/account/password/", {"password": "kue-lapis-2026",
                                                  "new_password": "bika-ambon-77"})

    new = changed.json()["token"]
    assert changed.status_code == 200 and ApiToken.objects.get(user=user).token_key == new[:15]
    assert ApiToken.objects.get(user=user).name == "kasir-toko"


def test_a_session_that_changes_the_password_through_the_api_stays_signed_in_without_a_token(client, user):
    from classifier.models import ApiToken

    ApiToken.objects.create(user=user)
    client.force_login(user)

    changed = client.post("/api/account/password/", content_type="application/json",
                          data={"password": "kue-lapis-2026", "new_password": "bika-ambon-77"})

    assert changed.status_code == 200 and changed.json() == {"token": None}
    assert not ApiToken.objects.filter(user=user).exists()
    assert client.get("/api/account/").status_code == 200  # this session goes on
    user.refresh_from_db()
    assert user.check_password("bika-ambon-77")


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
def test_a_new_password_ends_the_old_token_and_an_address_change_waiting(client, user, where,
                                                                         django_capture_on_commit_callbacks):
    """Whoever stole the password may have taken the token too, and asked for their own address
    (the reset links would go there once they open the link it got): a new password ends all."""
    from django.test import Client
    from rest_framework.test import APIClient

    from classifier import selectors, services

    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {api_token(user)}")
    assert api.get("/api/photos/").status_code == 200
    with django_capture_on_commit_callbacks():
        waiting = services.account_email_set(user, "thief@example.org", site="http://testserver")
    link = reverse("email-confirm", args=[selectors.email_confirmation_token(waiting)])
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
    assert Client().post(link).status_code == 404  # the link the thief got confirms nothing
    user.refresh_from_db()
    assert user.email == ""
    client.force_login(user)  # the page where a password changes says so; a new account has neither
    assert "withdraws an e-mail address change" in client.get(reverse("password_change")).content.decode()
    client.logout()
    sign_up = client.get(reverse("signup")).content.decode()
    assert "withdraws an e-mail address change" not in sign_up and "at least" in sign_up


def test_disabling_a_password_in_the_admin_signs_out_the_programs_using_the_token_for_good(
        admin_client, user):
    """Disabled, the password ends the sessions (Django ties them to it); the token ends too, and
    does not come back when a password is set again later."""
    from rest_framework.test import APIClient

    key = api_token(user)
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
    from rest_framework.test import APIClient

    robot = django_user_model.objects.create_user("importer")  # no password: an unusable one
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {api_token(robot)}")

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
    assert "more new accounts from your connection" in refused.content.decode()
    assert sorted(django_user_model.objects.values_list("username", flat=True)) == ["citra", "dewi"]


def test_sign_up_attempts_from_one_address_are_limited_so_they_cannot_list_the_user_names(
        client, user, monkeypatch):
    """A sign-up says whether a name is taken: every one sent counts, made or not, on the website and
    the API together; the page refused says nothing of the name asked for."""
    from rest_framework.test import APIClient
    from rest_framework.throttling import SimpleRateThrottle

    monkeypatch.setattr(SimpleRateThrottle, "THROTTLE_RATES",
                        {**SimpleRateThrottle.THROTTLE_RATES, "signup_attempts": "4/hour"})
    probe = {"password1": "a", "password2": "b"}
    answers = [client.post(reverse("signup"), {"username": name, **probe}) for name in ("ayu", "nobody")]
    answers += [APIClient().post("/api/account/", {"username": name, "password": "onde-onde-wijen-9"})
                for name in ("ayu", "nobody")]
    refused = [client.post(reverse("signup"), {"username": "ayu", **probe}),
               APIClient().post("/api/account/", {"username": "ayu", "password": "onde-onde-wijen-9"})]

    assert [a.status_code for a in answers] == [200, 200, 400, 201]
    assert [r.status_code for r in refused] == [429, 429] and int(refused[0]["Retry-After"]) > 0
    page = refused[0].content.decode()
    assert "more sign-up attempts from your connection" in page and "already exists" not in page
    assert "more sign-up attempts from your connection" in refused[1].json()["error"]["message"]


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


def test_the_api_signs_up_a_new_account_as_the_website_does_and_gives_its_token(user, monkeypatch):
    from rest_framework.test import APIClient
    from rest_framework.throttling import SimpleRateThrottle

    monkeypatch.setattr(SimpleRateThrottle, "THROTTLE_RATES",
                        {**SimpleRateThrottle.THROTTLE_RATES, "signup": "1/hour"})
    api = APIClient()

    taken = api.post("/api/account/", {"username": "AYU", "password": "onde-onde-wijen-9"}, format="json")
    weak = api.post("/api/account/", {"username": "citra", "password": "12345678"}, format="json")
    made = api.post("/api/account/", {"username": "citra", "password": "onde-onde-wijen-9",
                                      "email": "citra@example.org"}, format="json")
    more = api.post("/api/account/", {"username": "dewi", "password": "onde-onde-wijen-9"}, format="json")

    assert taken.status_code == 400 and "already exists" in str(taken.json()["error"])
    assert weak.status_code == 400 and "too common" in str(weak.json()["error"])
    assert made.status_code == 201
    assert {k: made.json()[k] for k in ("username", "email", "email_pending", "photos")} == \
        {"username": "citra", "email": "", "email_pending": "citra@example.org", "photos": 0}
    assert more.status_code == 429 and int(more["Retry-After"]) > 0
    api.credentials(HTTP_AUTHORIZATION=f"Token {made.json()['token']}")
    assert made["Location"] == "http://testserver/api/account/"
    assert api.get(made["Location"]).json()["username"] == "citra"


def test_the_api_sends_a_reset_link_to_an_address_and_answers_the_same_for_any(user, mailoutbox, monkeypatch,
                                                                               mail_worker):
    from rest_framework.test import APIClient
    from rest_framework.throttling import SimpleRateThrottle

    monkeypatch.setattr(SimpleRateThrottle, "THROTTLE_RATES",
                        {**SimpleRateThrottle.THROTTLE_RATES, "password_reset": "2/hour"})
    user.email = "ayu@example.org"
    user.save()
    api = APIClient()

    def ask(address):
        return mail_worker.ask(lambda: api.post("/api/auth/password-reset/", {"email": address},
                                                 format="json"))

    known, unknown = ask("ayu@example.org"), ask("nobody@example.org")
    bad, over = ask("not an address"), ask("ayu@example.org")

    assert (known.status_code, unknown.status_code, bad.status_code, over.status_code) == (202, 202, 400, 429)
    assert [mail.to for mail in mailoutbox] == [["ayu@example.org"]]
    assert re.search(r"http://testserver/accounts/reset/\S+/", mailoutbox[0].body)  # the website's page


@pytest.mark.django_db(transaction=True, serialized_rollback=True)  # (keeps the migrations' rows)
def test_an_account_deleted_while_its_owner_answers_in_another_tab_goes_after_the_answer(user):
    """The answer locks its photo, then (committing) needs its user's row; the deletion must lock in
    the same order, or PostgreSQL finds a deadlock and one of them fails."""
    import threading

    from django.db import transaction

    from classifier import services
    from classifier.models import Photo
    from tests.processes import lock_waited_for, require_services

    require_services()
    photo = make_photo(user, status="done", label="kue_lapis")
    answered, waited = threading.Event(), []

    def answer():
        with transaction.atomic():
            services.feedback_record(photo=photo, user=user, label="kue_lumpur")
            answered.set()
            waited.append(lock_waited_for())  # the deletion comes now, while the answer holds its photo
        return "committed"

    outcome = side_by_side(answer, lambda: services.account_delete(user), once=answered)

    assert waited == [True]
    assert outcome == ("committed", 1)
    assert not Photo.objects.filter(pk=photo.pk).exists()


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
@pytest.mark.parametrize("where", ["website", "api"])
def test_an_upload_landing_while_its_account_is_deleted_is_refused_and_keeps_no_file(user, settings, where):
    """The deletion locks the account; the upload's photo, committing, needs that row, waits for the
    deletion and finds the account gone: a refusal that says so, not a server error, no file kept."""
    import threading

    from django.db import transaction
    from django.test import Client
    from rest_framework.test import APIClient

    from classifier import services
    from tests.conftest import sample_photo, upload_of
    from tests.processes import lock_waited_for, require_services

    require_services()
    deleting, waited = threading.Event(), []

    def delete():
        with transaction.atomic():
            deleted = services.account_delete(user)
            deleting.set()
            waited.append(lock_waited_for())  # the upload comes now, while the deletion holds the account
        return deleted

    client = APIClient() if where == "api" else Client()
    client.force_login(user)
    photos = [upload_of(sample_photo()), upload_of(sample_photo("kue_klepon"))]
    if where == "api":
        def upload():
            return client.post("/api/photos/", {"files": photos}, format="multipart")
    else:
        def upload():
            return client.post(reverse("upload"), {"photos": photos})

    deleted, response = side_by_side(delete, upload, once=deleting)

    assert waited == [True] and deleted == 0
    assert response.status_code == 403, response
    text = response.json()["error"]["message"] if where == "api" else response.content.decode()
    assert "This account was deleted while the photos were being stored; none was kept." in text
    assert not [f for f in settings.MEDIA_ROOT.rglob("*") if f.is_file()]


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_the_cap_on_reset_emails_to_one_address_holds_for_workers_sending_at_once(
        django_user_model, mailoutbox, settings, monkeypatch):
    import threading
    import time

    from django.db import connection

    from classifier import services
    from classifier.forms import ResetEmails

    settings.EMAILS_PER_ADDRESS = 3
    for name in ("a1", "a2", "a3"):
        django_user_model.objects.create_user(name, email="victim@example.org", password="onde-onde-wijen-9")
    send = ResetEmails.send_mail

    def slowly(self, *args, **kwargs):  # a mail server's round trip
        time.sleep(0.2)
        send(self, *args, **kwargs)

    monkeypatch.setattr(ResetEmails, "send_mail", slowly)
    sent = []

    def worker():
        sent.append(services.password_reset_send("victim@example.org", "testserver", False))
        connection.close()

    workers = [threading.Thread(target=worker) for _ in range(4)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join(10)

    assert sum(sent) == 3 and len(mailoutbox) == 3


def test_expired_sessions_and_long_forgotten_unconfirmed_addresses_are_removed_every_hour(
        client, user, django_user_model):
    from django.conf import settings
    from django.contrib.sessions.models import Session
    from django.utils import timezone

    from classifier import tasks
    from classifier.models import PendingEmail

    client.force_login(user)
    Session.objects.create(session_key="e" * 32, session_data="", expire_date=timezone.now() - timedelta(1))
    link_expired = timezone.now() - timedelta(seconds=settings.EMAIL_CONFIRM_TIMEOUT)
    for name, age in [("old", timedelta(days=31)), ("recent", timedelta(days=29))]:
        pending = PendingEmail.objects.create(user=django_user_model.objects.create_user(name),
                                              email=f"{name}@example.org", site="http://testserver")
        PendingEmail.objects.filter(pk=pending.pk).update(created=link_expired - age)

    outcome = tasks.remove_expired()

    assert outcome == "expired sessions and 1 forgotten unconfirmed addresses removed"
    assert Session.objects.count() == 1 and "Signed in as" in client.get(reverse("account")).content.decode()
    assert list(PendingEmail.objects.values_list("email", flat=True)) == ["recent@example.org"]
    assert settings.CELERY_BEAT_SCHEDULE["remove-expired"] == {"task": "classifier.tasks.remove_expired",
                                                                "schedule": 3600.0}


def test_a_form_shown_again_with_its_errors_focuses_the_field_in_error(client, user):
    """Not the first field (Django's autofocus): a screen reader reads the field and its error, tied
    to it; an error of the whole form (a wrong password at sign-in) is tied to the password field."""
    import re

    def focused(response) -> list[str]:
        return [re.search(r'name="([^"]+)"', tag).group(1)
                for tag in re.findall(r"<input[^>]*>", response.content.decode()) if "autofocus" in tag]

    signup = client.post("/signup/", {"username": "bima", "password1": "kue-lapis-2026",
                                      "password2": "kue-lapis-2027"})
    sign_in = client.post("/accounts/login/", {"username": "ayu", "password": "guess"})
    client.force_login(user)
    change = client.post("/accounts/password_change/", {
        "old_password": "kue-lapis-2026", "new_password1": "serabi-kuah-2026", "new_password2": "serabi"})

    assert focused(client.get("/accounts/password_change/")) == ["old_password"]  # (a fresh form: Django's)
    assert focused(signup) == ["password2"] and 'aria-invalid="true"' in signup.content.decode()
    assert focused(change) == ["new_password2"]
    assert focused(sign_in) == ["password"]
    tied = re.search(r'<input type="password" name="password"[^>]*>', sign_in.content.decode()).group(0)
    assert 'aria-describedby="form-errors"' in tied and '<div id="form-errors">' in sign_in.content.decode()


def outdated(user):
    """Give `user` a hash that its next successful check replaces (a rehash, not a new password)."""
    from django.contrib.auth.hashers import make_password

    # MD5PasswordHasher.must_update: a salt of too little entropy; a real site meets the same on a
    # Django upgrade that raises PBKDF2's iterations (every major release does).
    user.password = make_password("kue-lapis-2026", salt="a", hasher="md5")
    user.save(update_fields=["password"])


def test_a_token_from_the_api_with_a_password_rehashed_on_its_check(user):
    """A password rehashed on a successful check (a Django upgrade raises the hasher's work factor)
    is no password change: the token is made."""
    outdated(user)
    answer = APIClient().post("/api/auth/token/", {"username": "ayu", "password": "kue-lapis-2026"},
                              format="json")
    assert answer.status_code == 200, answer.content


def test_a_token_from_the_account_page_with_a_password_rehashed_on_its_check(client, user):
    """The account page checks the password on a copy of the account: its rehash is the account's
    too, and the session, tied to the hash, stays signed in."""
    outdated(user)
    client.force_login(user)  # (a session from before the upgrade: the hash not checked since)
    made = client.post("/accounts/token/", {"token-name": "laptop", "token-password": "kue-lapis-2026"})
    assert made.status_code == 302, made.content[:300]
    assert ApiToken.objects.filter(user=user).count() == 1
    assert client.get("/accounts/").status_code == 200  # still signed in after the rehash
    assert "laptop" in client.get("/accounts/").content.decode()
