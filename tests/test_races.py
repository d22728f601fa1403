"""Two requests, or a request and the worker, at the same time. Where the outcome depends on
PostgreSQL's row locks the test runs there (CI); each holds one side back (until the other waits
for its lock, where it can tell), so that the two overlap every time instead of now and then."""

import threading
import time

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.files.base import ContentFile
from django.db import connection
from django.test import Client

from classifier import images, selectors, services
from classifier.models import ApiToken, ModelVersion, PendingEmail, Photo, Prediction, display_upload_to
from tests.conftest import make_photo, sample_photo, upload_of
from tests.test_api_photos import needs_postgresql

TOGETHER = pytest.mark.django_db(transaction=True, serialized_rollback=True)


def at_once(*actions) -> list:
    """Run the actions in threads started together; each one's result, or the exception it raised."""
    outcomes: list = [None] * len(actions)

    def run(i, action):
        try:
            outcomes[i] = action()
        except Exception as exc:  # noqa: BLE001 - the outcome under test
            outcomes[i] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i, action)) for i, action in enumerate(actions)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return outcomes


@TOGETHER
def test_two_tokens_made_at_once_keep_the_account_within_its_limit(user, monkeypatch, settings):
    """Each new token counts the account's tokens and revokes the one used least recently if it has
    its limit: unlocked, two made at once (a double click, two programs starting) both counted the
    same tokens, and the account kept one more than its limit."""
    needs_postgresql()
    settings.API_TOKENS_PER_ACCOUNT = 2
    ApiToken.objects.create(user=user)
    expired = selectors.token_expired

    def expired_slowly(token, account):  # the window between counting the tokens and making one
        time.sleep(0.3)
        return expired(token, account)

    monkeypatch.setattr(selectors, "token_expired", expired_slowly)

    def click():
        browser = Client(raise_request_exception=False)
        browser.force_login(user)
        return browser.post("/accounts/token/", {"token-password": "kue-lapis-2026"}).status_code

    assert at_once(click, click) == [302, 302]
    assert ApiToken.objects.filter(user=user).count() == 2


def worker_recording_slowly(photo: Photo, monkeypatch):
    """The worker's recording of `photo`'s result, its transaction held open once the result is in
    until another connection waits for one of its locks (or 10 s). The recording; an event set once
    the result is in; and whether someone waited (a sleep would let a late other party pass the test
    without any overlap, on a busy machine)."""
    from tests.processes import lock_waited_for

    mark_done = services.photo_mark_done
    recorded, waited = threading.Event(), []

    def mark_done_holding(*args, **kwargs):
        mark_done(*args, **kwargs)
        recorded.set()
        waited.append(lock_waited_for())

    monkeypatch.setattr(services, "photo_mark_done", mark_done_holding)
    version = ModelVersion.objects.get(is_active=True)
    probabilities = {item["slug"]: 1 / len(version.labels) for item in version.labels}
    def record():
        return services.prediction_record(photo=photo, version_id=version.pk, probabilities=probabilities,
                                          label="kue_lapis", confidence=0.9, inference_ms=5.0)
    return record, recorded, waited


def deleting_in_the_admin(admin_user, path: str, after: threading.Event):
    """The admin's deletion confirmed once the worker's result is in (`after`), its transaction open."""
    def delete():
        after.wait(10)
        browser = Client(raise_request_exception=False)
        browser.force_login(admin_user)
        return browser.post(path, {"post": "yes"}).status_code
    return delete


@TOGETHER
def test_a_photo_deleted_in_the_admin_while_the_worker_records_its_result_is_deleted(user, admin_user,
                                                                                  monkeypatch):
    """The admin's deletion used to read the photo's results before the worker's commit, then fail at
    its own commit on the result it had not seen (a 500, the photo kept)."""
    needs_postgresql()
    photo = make_photo(user)
    record, recorded, waited = worker_recording_slowly(photo, monkeypatch)
    delete = deleting_in_the_admin(admin_user, f"/admin/classifier/photo/{photo.pk}/delete/", recorded)

    assert at_once(record, delete) == [True, 302]
    assert waited == [True]  # the deletion waited for the worker's commit
    assert not Photo.objects.exists() and not Prediction.objects.exists()


@TOGETHER
def test_an_account_deleted_in_the_admin_while_the_worker_records_a_result_is_deleted(
        user, admin_user, monkeypatch):
    needs_postgresql()
    record, recorded, waited = worker_recording_slowly(make_photo(user), monkeypatch)
    delete = deleting_in_the_admin(admin_user, f"/admin/auth/user/{user.pk}/delete/", recorded)

    assert at_once(record, delete) == [True, 302]
    assert waited == [True]
    assert not Photo.objects.exists() and not type(user).objects.filter(pk=user.pk).exists()


def test_a_display_copy_made_after_the_deletion_read_the_photo_goes_with_it(
        user, monkeypatch, django_capture_on_commit_callbacks):
    """Two first views of a large photo's page each make its display copy; the second's file gets
    another name from the storage, and may be the one kept. A deletion that read the photo before
    either used to delete the first's name only, and leave the kept copy on disk for good."""
    monkeypatch.setattr(images, "DISPLAY_SIZE", 16)  # (the photo, 48 px wide, is "large")
    photo = make_photo(user)
    stale = Photo.objects.get(pk=photo.pk)  # the deletion's read, before any copy
    storage = photo.image.storage
    first = storage.save(display_upload_to(photo, ""), ContentFile(b"the first view's copy, not kept"))
    kept = services.photo_display(Photo.objects.get(pk=photo.pk)).display.name
    assert kept != first and storage.exists(kept)

    with django_capture_on_commit_callbacks(execute=True):
        services.photo_delete(stale)

    assert not Photo.objects.exists() and not storage.exists(kept)


@pytest.mark.parametrize("change", [
    lambda account: services.account_email_set(account, "new@example.org", site="http://testserver"),
    lambda account: services.api_token_new(account),
], ids=["e-mail address", "token"])
def test_a_change_asked_for_in_a_tab_after_the_account_was_deleted_in_another_is_refused(user, change):
    """Not a database error at commit on a row of a deleted account."""
    stale = type(user).objects.get(pk=user.pk)
    services.account_delete(user)

    with pytest.raises(PermissionDenied, match="no longer exists"):
        change(stale)
    assert not PendingEmail.objects.exists() and not ApiToken.objects.exists()


@TOGETHER
def test_an_account_deleted_while_its_photos_waiting_for_a_model_are_queued_again_never_deadlocks(user):
    """Both lock several of the account's photos: in the same order, or each could hold one the other
    waits for (PostgreSQL then aborts one: the deletion a 503, or the photos left failed)."""
    from django.db import transaction

    from tests.processes import lock_waited_for

    needs_postgresql()
    photos = [make_photo(user, status="failed") for _ in range(3)]
    Photo.objects.filter(pk__in=[photo.pk for photo in photos]).update(awaits_model=True)
    held, waited = threading.Event(), []

    def hold_the_middle_one():  # until both others wait: each then has the lock it got first
        with transaction.atomic():
            Photo.objects.select_for_update().get(pk=photos[1].pk)
            held.set()
            waited.append(lock_waited_for(waiting=2))

    def after_it(action):
        def act():
            held.wait(10)
            return action()
        return act

    outcomes = at_once(hold_the_middle_one, after_it(lambda: services.account_remove(user)),
                       after_it(services.photos_awaiting_model_requeue))

    assert waited == [True]
    assert outcomes[1] == 3 and outcomes[2] in ([], [photo.pk for photo in photos]), outcomes
    assert not Photo.objects.exists()


@TOGETHER
def test_two_uploads_at_once_for_an_accounts_last_room_store_one_photo(user, settings, enqueued, monkeypatch):
    """Each counts the account's photos before storing its own: unlocked, both counted one and
    both were stored."""
    from tests.processes import lock_waited_for

    needs_postgresql()
    settings.MAX_PHOTOS_PER_ACCOUNT = 2
    make_photo(user)
    check, held, waited = services.refuse_when_account_full, threading.Event(), []

    def check_then_hold(owner):
        check(owner)
        if not held.is_set():  # the first upload's (under the account's lock)
            held.set()
            waited.append(lock_waited_for(waiting=1))  # until the second one waits to count

    monkeypatch.setattr(services, "refuse_when_account_full", check_then_hold)

    def upload(name, after=None):
        def act():
            if after:
                after.wait(10)
            return services.photo_create(owner=user, upload=upload_of(sample_photo(), name))
        return act

    first, second = at_once(upload("first.jpg"), upload("second.jpg", after=held))

    assert waited == [True]
    assert isinstance(first, Photo), first
    assert isinstance(second, ValidationError) and "the most one account may keep" in second.messages[0]
    assert Photo.objects.filter(owner=user).count() == 2


@TOGETHER
def test_two_tabs_deleting_overlapping_photos_at_once_delete_each_once(user, monkeypatch):
    """Each request locks its photos: two that share some take turns, and the second finds the
    shared ones gone and says so (unlocked, both said they deleted them). The order of the locks is
    test_the_photos_are_locked_in_one_statement_in_id_order's."""
    from rest_framework.test import APIClient

    from tests.conftest import api_token

    needs_postgresql()
    one, two, three, four = (make_photo(user).pk for _ in range(4))
    announce = services.announce_settled

    def announce_slowly(*photo_ids):  # holding the locks taken: the other request's turn to ask
        time.sleep(0.3)
        announce(*photo_ids)

    monkeypatch.setattr(services, "announce_settled", announce_slowly)
    token = api_token(user)

    def tab(ids):
        return lambda: APIClient(HTTP_AUTHORIZATION=f"Token {token}").post(
            "/api/photos/delete/", {"ids": ids}, format="json").json()

    first, second = at_once(tab([one, two, three]), tab([four, three, two]))

    assert sorted(first["deleted"] + second["deleted"]) == [one, two, three, four]
    assert sorted(first["deleted"] + first["not_found"]) == [one, two, three]
    assert sorted(second["deleted"] + second["not_found"]) == [two, three, four]
    assert not Photo.objects.exists()


@TOGETHER
def test_two_first_choices_at_once_keep_one_row_and_raise_nothing(user):
    """Two tabs (or a tab and a program) choosing the account's first language together, on
    PostgreSQL: the account's row lock orders them, the later one wins."""
    from classifier.models import AccountSettings

    needs_postgresql()
    outcomes = at_once(*(lambda language=language: services.account_language_set(user, language)
                         for language in ("id", "en") * 4))

    assert outcomes == [None] * 8 and AccountSettings.objects.filter(user=user).count() == 1


@TOGETHER
def test_a_token_asked_for_with_the_password_just_changed_is_refused(user, monkeypatch):
    """The password is checked, then the token made: a change committed in between (its owner
    changing a stolen password, say) revokes the account's tokens, and must not miss the one made
    just after it with the old password."""
    from rest_framework.test import APIClient

    needs_postgresql()
    token_new = services.api_token_new

    def token_new_slowly(*args, **kwargs):  # the window between checking the password and the token
        time.sleep(0.4)
        return token_new(*args, **kwargs)

    monkeypatch.setattr(services, "api_token_new", token_new_slowly)

    def ask():
        answer = APIClient().post("/api/auth/token/", {"username": "ayu", "password": "kue-lapis-2026"},
                                  format="json")
        return answer.status_code, answer.json()

    def change():
        time.sleep(0.2)
        owner = type(user).objects.get(pk=user.pk)
        owner.set_password("Kue-lapis-baru-2027")
        owner.save()

    (status, body), _ = at_once(ask, change)

    assert status == 403 and "password was changed a moment ago" in body["error"]["message"]
    assert not ApiToken.objects.filter(user=user).exists()


@TOGETHER
def test_one_backup_code_sent_twice_at_once_signs_in_once(staff, monkeypatch, settings):
    """services.second_factor_match looks the code's digest up, then django-otp takes it: unlocked,
    both requests found it before either deleted it, and both signed in."""
    from django_otp.plugins.otp_static.models import StaticDevice
    from django_otp.plugins.otp_totp.models import TOTPDevice

    from tests.test_two_factor import set_up, signed_in_with_password

    needs_postgresql()
    settings.STAFF_TWO_FACTOR = True
    codes = set_up(signed_in_with_password("admin"), staff)
    TOTPDevice.objects.filter(user=staff).delete()  # (its count of wrong codes would serialize the two)
    verify = StaticDevice.verify_token

    def verify_slowly(device, token):  # the window between the look-up and the deletion
        time.sleep(0.3)
        return verify(device, token)

    monkeypatch.setattr(StaticDevice, "verify_token", verify_slowly)

    outcomes = at_once(*[lambda: services.second_factor_match(staff, codes[0])] * 2)

    assert sorted(isinstance(outcome, StaticDevice) for outcome in outcomes) == [False, True], outcomes
