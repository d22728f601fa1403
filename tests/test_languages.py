"""The site in English and Indonesian: the browser's language, the one chosen at the foot of a page,
e-mails written by the worker, the API's messages, and translations that are complete and compiled."""

import re
import shutil
from pathlib import Path

import polib
import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.test import Client
from django.urls import reverse
from django.utils import translation
from django.utils.translation import gettext_noop
from rest_framework.test import APIClient

from classifier import selectors, services, tasks
from classifier.models import AccountSettings
from tests.conftest import api_token, make_photo, services_required

pytestmark = pytest.mark.django_db

LOCALE = Path(settings.BASE_DIR) / "locale" / "id" / "LC_MESSAGES"


def test_a_browser_that_asks_for_indonesian_gets_the_site_in_indonesian(client, user):
    client.force_login(user)

    indonesian = client.get("/photos/", HTTP_ACCEPT_LANGUAGE="id-ID,id;q=0.9,en;q=0.8").content.decode()
    english = client.get("/photos/", HTTP_ACCEPT_LANGUAGE="en-GB,en;q=0.9").content.decode()
    anything_else = client.get("/photos/", HTTP_ACCEPT_LANGUAGE="fr").content.decode()

    assert '<html lang="id">' in indonesian and "Foto saya" in indonesian and "Keluar" in indonesian
    assert "My photos" not in indonesian and "Sign out" not in indonesian
    assert '<html lang="en">' in english and "My photos" in english and "Sign out" in english
    assert '<html lang="en">' in anything_else and "Sign out" in anything_else


def test_what_the_site_says_of_each_cake_and_its_numbers_are_written_the_indonesian_way(client, user):
    home = client.get("/", HTTP_ACCEPT_LANGUAGE="id").content.decode()
    client.force_login(user)
    account = {language: client.get("/accounts/", HTTP_ACCEPT_LANGUAGE=language).content.decode()
               for language in ("en", "id")}

    assert "Bola-bola ketan hijau" in home and "glutinous" not in home
    assert "at most 10,000)" in account["en"] and "paling banyak 10.000)" in account["id"]


def test_django_own_words_on_the_sign_up_form_are_the_sites_words(client):
    """Django's Indonesian says "Sandi anda" where the site says "Kata sandi Anda" (accounts.py)."""
    page = client.get("/signup/", HTTP_ACCEPT_LANGUAGE="id").content.decode()

    assert "Kata sandi Anda tidak boleh hanya terdiri dari angka." in page
    assert "Konfirmasi kata sandi" in page and "Paling banyak 150 karakter" in page
    assert "Sandi" not in page and " anda " not in page


def test_the_language_chosen_at_the_foot_of_a_page_is_kept_whatever_the_browser_asks(client):
    page = client.get("/accounts/login/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert f'action="{reverse("set_language")}"' in page and 'value="id" lang="id">Bahasa Indonesia' in page

    chosen = client.post(reverse("set_language"), {"language": "id", "next": "/accounts/login/"})
    assert chosen.status_code == 302 and chosen.url == "/accounts/login/"
    assert chosen.cookies[settings.LANGUAGE_COOKIE_NAME]["httponly"]

    page = client.get("/accounts/login/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert '<html lang="id">' in page and "Masuk" in page and "Sign in" not in page
    assert '<option value="id" lang="id" selected>' in page

    client.post(reverse("set_language"), {"language": "en", "next": "/accounts/login/"})
    assert '<html lang="en">' in client.get("/accounts/login/", HTTP_ACCEPT_LANGUAGE="id").content.decode()


def test_the_chooser_never_sends_the_browser_to_another_site(client):
    answer = client.post(reverse("set_language"), {"language": "id", "next": "https://evil.example/"})

    assert answer.status_code == 302 and answer.url == "/"


def test_a_staff_member_still_to_give_the_second_factor_can_choose_the_language(client, staff, settings):
    settings.STAFF_TWO_FACTOR = True
    client.force_login(staff)

    chosen = client.post(reverse("set_language"), {"language": "id", "next": reverse("two-factor")})
    catalog = client.get(reverse("javascript-catalog"))

    assert chosen.status_code == 302 and chosen.url == reverse("two-factor")
    assert catalog.status_code == 200 and catalog["Content-Type"].startswith("text/javascript")


def sign_in(browser_language: str) -> Client:
    """A browser that never chose a language, its own asking for `browser_language`, signed in as ayu
    through the sign-in page."""
    device = Client(HTTP_ACCEPT_LANGUAGE=browser_language)
    signed_in = device.post("/accounts/login/", {"username": "ayu", "password": "kue-lapis-2026"})
    assert signed_in.status_code == 302
    return device


def test_a_language_chosen_while_signed_in_follows_the_account_to_another_device(client, user):
    client.force_login(user)
    before = client.get("/accounts/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    chosen = client.post(reverse("set_language"), {"language": "id", "next": "/photos/"}, follow=True)

    laptop = sign_in("en-GB,en;q=0.9")
    photos = laptop.get("/photos/")
    account = laptop.get("/accounts/").content.decode()
    laptop.post(reverse("logout"))
    signed_out = laptop.get("/accounts/login/")

    assert "Kept with your account, for wherever you sign in" in before
    assert "Bahasa situs disimpan bersama akun Anda" in chosen.content.decode()  # (said in it)
    assert '<select id="account-language" name="language"' in before
    assert '<html lang="id">' in photos.content.decode() and "Foto saya" in photos.content.decode()
    assert photos["Content-Language"] == "id"
    assert "Situs ini berbahasa Indonesia di mana pun Anda masuk ke akun ini." in account
    assert '<option value="id" lang="id" selected>' in account.split('id="account-language"')[1]
    assert '<html lang="en">' in signed_out.content.decode()  # the device's own language again


def test_the_account_keeps_the_last_language_chosen_and_other_accounts_keep_theirs(client, user, other_user):
    client.force_login(user)
    client.post(reverse("set_language"), {"language": "id", "next": "/"})
    client.post(reverse("set_language"), {"language": "en", "next": "/"})
    client.post(reverse("set_language"), {"language": "fr", "next": "/"})  # not offered: not kept
    other = Client()
    other.force_login(other_user)
    other.post(reverse("set_language"), {"language": "id", "next": "/"})

    assert '<html lang="en">' in sign_in("id").get("/photos/").content.decode()
    assert selectors.account_language(user) == "en" and selectors.account_language(other_user) == "id"


def test_a_language_chosen_signed_out_is_the_devices_alone(client, user):
    chosen = client.post(reverse("set_language"), {"language": "id", "next": "/"}, follow=True)
    client.post(reverse("set_language"), {"language": "fr", "next": "/"})  # not offered: changes nothing

    assert AccountSettings.objects.count() == 0 and "disimpan bersama akun" not in chosen.content.decode()
    assert '<html lang="en">' in sign_in("en").get("/photos/").content.decode()


def test_a_language_chosen_before_signing_up_is_the_new_accounts(client):
    client.post(reverse("set_language"), {"language": "id", "next": "/signup/"})
    signed_up = client.post("/signup/", {"username": "citra", "password1": "Serabi-solo-2026",
                                         "password2": "Serabi-solo-2026"})
    elsewhere = Client(HTTP_ACCEPT_LANGUAGE="en")
    elsewhere.post("/accounts/login/", {"username": "citra", "password": "Serabi-solo-2026"})

    assert signed_up.status_code == 302
    assert '<html lang="id">' in elsewhere.get("/photos/").content.decode()


def test_a_language_the_site_no_longer_offers_is_ignored(user):
    AccountSettings.objects.create(user=user, language="fr")  # (kept when a release drops a language)

    assert '<html lang="en">' in sign_in("en").get("/photos/").content.decode()
    api = APIClient(HTTP_AUTHORIZATION=f"Token {api_token(user)}")
    assert api.get("/api/account/").json()["language"] is None


def test_a_program_sets_the_accounts_language_and_still_gets_answers_in_the_language_it_asks_for(user):
    api = APIClient(HTTP_AUTHORIZATION=f"Token {api_token(user)}", HTTP_ACCEPT_LANGUAGE="en")
    assert api.get("/api/account/").json()["language"] is None

    changed = api.patch("/api/account/", {"language": "id"}, format="json")
    read = api.get("/api/account/")

    assert changed.status_code == 200 and changed.json()["language"] == "id"
    assert read.json()["language"] == "id" and read["Content-Language"] == "en"
    assert "Set-Cookie" not in changed  # (no session for a program)
    assert '<html lang="id">' in sign_in("en").get("/photos/").content.decode()


@pytest.mark.parametrize(("sent", "field"), [
    ({"language": "fr"}, "language"),
    ({}, "non_field_errors"),
    ({"email": "ayu@example.com"}, "password"),  # (the address still needs the password)
    ({"language": "id", "email": "ayu@example.com", "password": "wrong"}, "password"),
])
def test_an_account_change_the_api_refuses_changes_nothing(user, sent, field):
    api = APIClient(HTTP_AUTHORIZATION=f"Token {api_token(user)}")

    refused = api.patch("/api/account/", sent, format="json")

    assert refused.status_code == 400 and field in refused.json()["error"]["fields"]
    assert selectors.account_language(user) is None and selectors.pending_email(user) is None


def test_the_website_calls_the_api_in_the_accounts_language(client, user):
    """upload.js shows the API's messages on the page: in the page's language, not the browser's."""
    services.account_language_set(user, "id")
    client.force_login(user)

    answer = client.get("/api/photos/999999/", HTTP_ACCEPT_LANGUAGE="en")

    assert answer.status_code == 404 and answer["Content-Language"] == "id"


def sign_in_on(device: Client) -> Client:
    """`device` (its cookies as they are) signed in as ayu through the sign-in page."""
    signed_in = device.post("/accounts/login/", {"username": "ayu", "password": "kue-lapis-2026"})
    assert signed_in.status_code == 302
    return device


def test_a_signed_in_request_while_the_database_is_down_is_still_the_503(client, user, monkeypatch):
    """AccountLanguageMiddleware reads the session (a database row) outside
    ServiceUnavailableMiddleware, whose process_exception only sees the view's errors: unguarded,
    a 500."""
    from django.contrib.sessions.backends.db import SessionStore
    from django.db import OperationalError

    client.force_login(user)

    def down(self):
        raise OperationalError("connection refused")

    monkeypatch.setattr(SessionStore, "_get_session_from_db", down)
    client.raise_request_exception = False
    page = client.get("/photos/")
    api = client.get("/api/photos/")

    assert page.status_code == 503 and "briefly unavailable" in page.content.decode()
    assert api.status_code == 503 and api["Retry-After"] == "5"


def scripts_key(device: Client, page: str) -> tuple[str, str]:
    """What a browser's cache keys /jsi18n/ on: the script's URL in the page, and the Cookie header
    it sends (Vary: Cookie; Accept-Language is the same throughout)."""
    html = device.get(page).content.decode()
    src = re.search(r'<script src="([^"]*jsi18n[^"]*)"', html).group(1)
    cookies = "; ".join(f"{k}={m.value}" for k, m in sorted(device.cookies.items()))
    return src, cookies


def test_the_scripts_translations_a_browser_keeps_are_never_of_another_language(user):
    """A device that chose Indonesian signed out; the account chose English elsewhere. Signed in,
    the page and its scripts are English; choosing Indonesian again at the foot changes the page,
    but not one cookie (the device's was already `id`), so a browser answers /jsi18n/ from its
    cache: unless the script's URL names the language, the scripts stay English for up to an hour."""
    services.account_language_set(user, "en")
    device = Client(HTTP_ACCEPT_LANGUAGE="en")
    device.post(reverse("set_language"), {"language": "id", "next": "/"})
    sign_in_on(device)

    before = scripts_key(device, "/photos/")
    english = device.get(before[0]).content.decode()
    device.post(reverse("set_language"), {"language": "id", "next": "/photos/"})
    after = scripts_key(device, "/photos/")
    indonesian = device.get(after[0]).content.decode()

    assert '"Open": "Buka"' not in english and '"Open": "Buka"' in indonesian
    assert after != before  # else the browser's copy (English) is used


def test_the_api_changed_over_a_session_keeps_its_pages_in_step_with_the_account(user, settings):
    """PATCH {"language", "email"} whose address is refused changes neither, the session's copy
    (which the website's pages follow) included."""
    settings.EMAIL_LINKS_PER_ACCOUNT = 0
    browser = APIClient(HTTP_ACCEPT_LANGUAGE="en")
    browser.force_login(user)

    refused = browser.patch("/api/account/", {"language": "id", "email": "ayu@example.com",
                                              "password": "kue-lapis-2026"}, format="json")

    assert refused.status_code == 400 and selectors.account_language(user) is None
    assert '<html lang="en">' in browser.get("/photos/").content.decode()


def test_a_staff_session_still_to_give_its_second_factor_changes_only_its_own_device(
        client, staff, settings):
    """The password alone opens the language chooser (the second-factor step's page offers it), not
    a setting every later session of the account takes."""
    settings.STAFF_TWO_FACTOR = True
    client.force_login(staff)

    client.post(reverse("set_language"), {"language": "id", "next": reverse("two-factor")})

    assert selectors.account_language(staff) is None


def test_signing_out_says_so_in_the_language_of_the_page_that_shows_it(user):
    services.account_language_set(user, "id")
    device = sign_in_on(Client(HTTP_ACCEPT_LANGUAGE="en"))

    home = device.post(reverse("logout"), follow=True).content.decode()

    assert '<html lang="en">' in home and "You are signed out." in home


def test_a_page_drawn_without_its_request_offers_no_chooser_that_would_be_refused(rf):
    """The 503 page (the database down) is drawn with no request, so with no CSRF token: its chooser's
    form was refused (403) whenever it was used."""
    from django.db import OperationalError

    from classifier.middleware import ServiceUnavailableMiddleware

    page = ServiceUnavailableMiddleware(lambda _: None).process_exception(
        rf.get("/photos/"), OperationalError("gone")).content.decode()

    assert page.count("<form") == page.count('name="csrfmiddlewaretoken"')
    assert reverse("set_language") not in page


def test_the_scripts_speak_the_pages_language(client):
    indonesian = client.get(reverse("javascript-catalog"), HTTP_ACCEPT_LANGUAGE="id").content.decode()
    english = client.get(reverse("javascript-catalog"), HTTP_ACCEPT_LANGUAGE="en").content.decode()

    assert '"Open": "Buka"' in indonesian
    assert '"Open"' not in english


def test_a_password_reset_asked_for_in_indonesian_is_e_mailed_in_indonesian(
        client, user, mailoutbox, monkeypatch, settings, django_capture_on_commit_callbacks, task_apply):
    sent = []

    def worker(args, headers=None, **_kwargs):  # the broker, and a worker at once, in its own language
        sent.append(args)
        with translation.override(settings.LANGUAGE_CODE):
            tasks.send_password_reset.apply(args, headers=headers, throw=True)

    monkeypatch.setattr(tasks.send_password_reset, "apply_async", worker)
    user.email = "ayu@example.org"
    user.save()
    with django_capture_on_commit_callbacks(execute=True):
        asked = client.post("/accounts/password_reset/", {"email": "ayu@example.org"}, follow=True,
                            HTTP_ACCEPT_LANGUAGE="id")

    assert asked.status_code == 200 and '<html lang="id">' in asked.content.decode()
    # (the arguments a worker of the release before languages takes: the language is in a header)
    assert sent == [("ayu@example.org", "testserver", False)]
    [mail] = mailoutbox
    assert mail.to == ["ayu@example.org"]
    assert mail.subject == "Pilih kata sandi baru untuk testserver"
    assert 'Seseorang meminta kata sandi baru untuk akun Anda "ayu" di testserver.' in mail.body
    assert "Someone asked" not in mail.body
    assert re.search(r"http://testserver/accounts/reset/\S+/", mail.body)  # the link, as in English


def test_a_confirmation_link_the_sweep_sends_again_is_in_the_language_it_was_asked_in(
        user, mailoutbox, monkeypatch, django_capture_on_commit_callbacks):
    """Its message lost (the broker down), the sweep sends it again with no request to ask: it was
    written in English. And the message holds the id alone, which a worker of the release before
    languages takes (one more argument was a TypeError there, during an upgrade)."""
    queued = []
    monkeypatch.setattr(tasks.send_email_confirmation, "apply_async", lambda args, **_: queued.append(args))
    with translation.override("id"), django_capture_on_commit_callbacks(execute=True):
        pending = services.account_email_set(user, "ayu@example.org", site="http://testserver")

    with translation.override(settings.LANGUAGE_CODE):  # the worker's, running the sweep's message
        tasks.send_email_confirmation(pending.pk)

    assert queued == [(pending.pk,)]
    [mail] = mailoutbox
    assert mail.subject == "Konfirmasikan alamat email Anda untuk testserver"
    assert "3\xa0hari" in mail.body and "days" not in mail.body  # (its period too: timesince's)


def test_the_notice_to_a_former_address_is_written_in_the_language_of_the_confirmation(
        user, mailoutbox, monkeypatch, django_capture_on_commit_callbacks, task_apply):
    def worker(args, headers=None, **_kwargs):  # the broker, and a worker at once, in its own language
        assert len(args) == 3  # (user, old address, site: as a worker of the release before takes them)
        with translation.override(settings.LANGUAGE_CODE):
            tasks.send_email_changed_notice.apply(args, headers=headers, throw=True)

    monkeypatch.setattr(tasks.send_email_changed_notice, "apply_async", worker)
    change_address_in_indonesian(user, monkeypatch, django_capture_on_commit_callbacks)

    [mail] = mailoutbox
    assert mail.to == ["old@example.org"]
    assert mail.subject == "Alamat email akun Anda di testserver telah diubah"


def change_address_in_indonesian(user, monkeypatch, capture) -> None:
    """`user`'s address from old@ to new@example.org, the link opened in Indonesian (and the
    notice to the old address queued, after the commit)."""
    monkeypatch.setattr(tasks.send_email_confirmation, "apply_async", lambda args, **_: None)
    user.email = "old@example.org"
    user.save()
    pending = services.account_email_set(user, "new@example.org", site="http://testserver")
    with translation.override("id"), capture(execute=True):
        assert services.account_email_confirm(pending)


def test_a_notice_the_mail_server_did_not_take_is_sent_again_in_its_language(
        user, mailoutbox, monkeypatch, django_capture_on_commit_callbacks, task_apply):
    """No row keeps a notice for the sweep: its task tries again (here at once, as eager tasks do)."""
    import smtplib

    from django.core.mail.backends.locmem import EmailBackend

    send, tries = EmailBackend.send_messages, []

    def down_once(backend, messages):
        tries.append(len(messages))
        if len(tries) == 1:
            raise smtplib.SMTPServerDisconnected("Connection unexpectedly closed")
        return send(backend, messages)

    def worker(args, headers=None, **_kwargs):  # the broker, and a worker at once, in its own language
        with translation.override(settings.LANGUAGE_CODE):  # (its retry applied at once, by apply)
            assert tasks.send_email_changed_notice.apply(args, headers=headers).get() == "sent"

    monkeypatch.setattr(EmailBackend, "send_messages", down_once)
    monkeypatch.setattr(tasks.send_email_changed_notice, "apply_async", worker)
    change_address_in_indonesian(user, monkeypatch, django_capture_on_commit_callbacks)

    [mail] = mailoutbox
    assert tries == [1, 1] and mail.to == ["old@example.org"]
    assert mail.subject == "Alamat email akun Anda di testserver telah diubah"


@pytest.fixture
def api(user):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {api_token(user)}")
    return client


def upload(api, language: str, files):
    return api.post("/api/photos/", {"files": files}, format="multipart", HTTP_ACCEPT_LANGUAGE=language)


def test_a_photo_not_found_is_said_in_the_language_asked_for(api, other_user):
    for photo_id in (99999, make_photo(other_user).pk):  # none, or another's: the same words
        for wait in ("0", "5"):  # (a poll, and a long poll: each looks the photo up its own way)
            answers = {language: api.get(f"/api/photos/{photo_id}/", {"wait": wait},
                                         HTTP_ACCEPT_LANGUAGE=language) for language in ("en", "id")}

            assert answers["en"].json()["error"]["message"] == "Photo not found."
            assert answers["id"].json()["error"]["message"] == "Foto tidak ditemukan."


def test_an_ordering_the_list_cannot_give_is_explained_in_the_language_asked_for(api):
    refused = api.get("/api/photos/", {"ordering": "name"}, HTTP_ACCEPT_LANGUAGE="id")

    assert refused.status_code == 400
    assert refused.json()["error"]["fields"]["ordering"] == [
        "Urutkan menurut created, confidence, margin; tanda - di depan membalik urutan sebuah isian; "
        "beberapa, dipisahkan koma, diurutkan menurut yang pertama, lalu yang berikutnya. Yang tanpa "
        "confidence atau margin selalu di akhir, ke arah mana pun."]


def test_a_refused_upload_is_explained_in_indonesian_with_the_same_code(api, enqueued):
    not_an_image = lambda: SimpleUploadedFile("letter.jpg", b"%PDF-1.4 not a photo at all", "image/jpeg")  # noqa: E731

    english, indonesian = upload(api, "en", [not_an_image()]), upload(api, "id", [not_an_image()])

    assert english.status_code == indonesian.status_code == 400
    assert english.json()["results"][0]["errors"] == ["The file is not an image we can read."]
    assert indonesian.json()["results"][0]["errors"] == ["Berkas ini bukan gambar yang dapat kami baca."]
    assert indonesian["Content-Language"] == "id"

    # A request without files: the error shape's message and field error in Indonesian, its code not.
    english, indonesian = upload(api, "en", []), upload(api, "id", [])
    assert english.json()["error"]["code"] == indonesian.json()["error"]["code"] == "invalid"
    assert english.json()["error"]["message"] == "The request has invalid fields."
    assert indonesian.json()["error"]["message"] == "Permintaan memiliki isian yang tidak valid."
    assert indonesian.json()["error"]["fields"] == {
        "files": ["Kirim satu atau beberapa berkas gambar di isian `files`."]}


def test_a_failed_photo_says_why_in_the_language_asked_for(api, user):
    """Photo.error is stored in English and translated when it is read (Photo.error_message); a text
    the catalogue does not know is given as it is."""
    photo, other = make_photo(user), make_photo(user)
    services.photo_fail(photo, gettext_noop("Classification took too long."))
    services.photo_fail(other, "Some older reason")

    assert api.get(f"/api/photos/{photo.pk}/", HTTP_ACCEPT_LANGUAGE="en").json()["error"] == \
        "Classification took too long."
    assert api.get(f"/api/photos/{photo.pk}/", HTTP_ACCEPT_LANGUAGE="id").json()["error"] == \
        "Klasifikasi memakan waktu terlalu lama."
    assert api.get(f"/api/photos/{other.pk}/", HTTP_ACCEPT_LANGUAGE="id").json()["error"] == \
        "Some older reason"


def test_a_photo_held_in_english_is_sent_again_when_indonesian_is_asked_for(api, user):
    photo = make_photo(user)
    services.photo_fail(photo, gettext_noop("Classification took too long."))
    english = api.get(f"/api/photos/{photo.pk}/", HTTP_ACCEPT_LANGUAGE="en")

    same = api.get(f"/api/photos/{photo.pk}/", HTTP_ACCEPT_LANGUAGE="en", HTTP_IF_NONE_MATCH=english["ETag"])
    indonesian = api.get(f"/api/photos/{photo.pk}/", HTTP_ACCEPT_LANGUAGE="id",
                         HTTP_IF_NONE_MATCH=english["ETag"])

    assert same.status_code == 304
    assert indonesian.status_code == 200
    assert indonesian.json()["error"] == "Klasifikasi memakan waktu terlalu lama."
    assert "Accept-Language" in indonesian["Vary"]


def test_the_frameworks_own_api_errors_are_in_indonesian_too(api):
    """DRF's Indonesian lacks most of its messages, and django-rest-knox has none: locale/ has them."""
    wrong_token = APIClient(HTTP_AUTHORIZATION="Token kue_not-a-token", HTTP_ACCEPT_LANGUAGE="id")

    assert wrong_token.get("/api/photos/").json()["error"]["message"] == "Token tidak valid."
    not_a_list = api.post("/api/photos/delete/", {"ids": 7}, format="json", HTTP_ACCEPT_LANGUAGE="id").json()
    assert not_a_list["error"]["fields"]["ids"] == ['Isi bidang ini harus berupa daftar (list), bukan "int".']
    wrong_method = api.put("/api/account/", {}, format="json", HTTP_ACCEPT_LANGUAGE="id").json()
    assert wrong_method["error"]["message"] == 'Metode "PUT" tidak diizinkan.'


def test_the_api_schema_is_the_same_document_whatever_the_language(client):
    """README: the API's messages change with Accept-Language, its schema does not (its choices'
    labels and the upload's limits, "15.0 MB", were Indonesian, "15,0 MB", for such a request)."""
    english = client.get("/api/schema/").content
    indonesian = client.get("/api/schema/", HTTP_ACCEPT_LANGUAGE="id").content
    client.cookies[settings.LANGUAGE_COOKIE_NAME] = "id"  # a browser that chose Indonesian on a page

    assert b"`queued` - Waiting" in english and b"of at most 15.0" in english
    assert b"/api/schema/" not in english  # (drf-spectacular leaves its own view out)
    assert indonesian == english
    assert client.get("/api/schema/").content == english


def test_the_admin_names_our_models_and_their_fields_in_indonesian(client, user, django_user_model):
    """Django's admin is translated; the names of our models and fields it shows were English."""
    from classifier.models import TrainingRun

    photo = make_photo(user, status="done", label="kue_lapis")
    services.feedback_record(photo=photo, user=user, label="kue_lapis")
    chef = django_user_model.objects.create_superuser("chef", password="bika-ambon-77")
    run = TrainingRun.objects.create(started_by=chef, base_version=photo.predictions.get().model_version)
    client.force_login(chef)

    def page(path: str) -> str:
        return client.get(path, HTTP_ACCEPT_LANGUAGE="id").content.decode()

    index, photos = page("/admin/"), page("/admin/classifier/photo/")
    answers = page("/admin/classifier/feedback/")
    run_page = page(f"/admin/classifier/trainingrun/{run.pk}/change/")

    assert all(name in index for name in ("Versi model", "Foto", "Prediksi", "Jawaban", "Proses pelatihan",
                                          "Token API"))
    assert "Model versions" not in index and "Training runs" not in index
    assert all(f">{name}</a>" in photos for name in ("Pemilik", "Lebar", "Tinggi", "Diunggah"))
    assert ">Diberikan oleh</a>" in answers and ">Koreksi</a>" in answers
    assert "Dimulai oleh" in run_page and "apa yang sedang dikerjakan proses" in run_page
    assert "Started by" in client.get(f"/admin/classifier/trainingrun/{run.pk}/change/").content.decode()


def entries(po: polib.POFile) -> dict[tuple[str, str], polib.POEntry]:
    return {(entry.msgctxt or "", entry.msgid): entry for entry in po if not entry.obsolete}


@pytest.mark.parametrize("domain", ["django", "djangojs"])
def test_every_text_the_site_shows_is_translated_and_compiled(domain, tmp_path, monkeypatch, settings):
    """What `make messages` would find in the code today is in the committed catalogue, translated
    and not fuzzy, and nothing else is; the compiled .mo says the same."""
    if not (shutil.which("xgettext") and shutil.which("msgfmt")):
        reason = "needs GNU gettext's xgettext and msgfmt (apt-get install gettext; .ci/run does)"
        if services_required():
            pytest.fail(reason)
        pytest.skip(reason)
    # makemessages reads the folder it runs in, and writes beside the files it reads: a copy of
    # what holds text, so that the committed catalogues are only read.
    for folder in ("cakesite", "classifier", "templates", "static"):
        shutil.copytree(Path(settings.BASE_DIR) / folder, tmp_path / folder,
                        ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "locale").mkdir()
    monkeypatch.chdir(tmp_path)
    settings.LOCALE_PATHS = [tmp_path / "locale"]
    call_command("makemessages", locale=["id"], domain=domain, no_location=True, verbosity=0)
    found = entries(polib.pofile(str(tmp_path / "locale" / "id" / "LC_MESSAGES" / f"{domain}.po")))
    committed = entries(polib.pofile(str(LOCALE / f"{domain}.po")))
    compiled = entries(polib.mofile(str(LOCALE / f"{domain}.mo")))

    assert found, "no text marked for translation was found"
    assert sorted(set(found) - set(committed)) == [], "new text: run `make messages` and translate it"
    assert sorted(set(committed) - set(found)) == [], "text no longer used: run `make messages`"
    assert [key for key, entry in committed.items() if not entry.translated()] == []
    assert [key for key, entry in committed.items() if "fuzzy" in entry.flags] == []
    assert {key: (entry.msgstr, entry.msgstr_plural) for key, entry in committed.items()} == {
        key: (entry.msgstr, entry.msgstr_plural) for key, entry in compiled.items() if key[1]
    }, "the .mo is out of date: run `make messages`"


def test_the_throttles_wait_is_in_indonesian_whatever_the_number_of_seconds():
    """DRF formats "Expected available in {wait} second(s)." (gettext of each) before its ngettext:
    a plural entry in locale/ gave Indonesian for 1 second only, English for any other wait."""
    from django.utils import translation
    from rest_framework.exceptions import Throttled

    with translation.override("id"):
        for wait in (1, 30, 3600):
            said = str(Throttled(wait=wait).detail)
            assert said == f"Permintaan ini telah dibatasi. Tersedia lagi dalam {wait} detik."
