"""What assistive technology needs from every page: ids that the labels and descriptions point at
exist (once), images have text, results arriving later are said in a live region, and the keyboard
can skip to the content. Checked on the rendered HTML of each page, in the states users meet."""

from html.parser import HTMLParser

import pytest
from django.urls import reverse

from classifier.models import Feedback, ModelVersion, PendingEmail, TrainingRun
from classifier.selectors import email_confirmation_token
from tests.conftest import make_photo

pytestmark = pytest.mark.django_db


class Page(HTMLParser):
    """The ids, the references to ids, the images and the live regions of one HTML document."""

    def __init__(self, html: str):
        super().__init__()
        self.ids: list[str] = []
        self.references: list[tuple[str, str]] = []  # (attribute, id)
        self.images: list[dict] = []
        self.live: list[dict] = []
        self.in_body = False
        self.meta_in_body: list[dict] = []
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "body":
            self.in_body = True
        if "id" in attrs:
            self.ids.append(attrs["id"])
        if tag == "label" and attrs.get("for"):
            self.references.append(("for", attrs["for"]))
        for name in ("aria-describedby", "aria-labelledby"):
            self.references += [(name, ref) for ref in (attrs.get(name) or "").split()]
        if tag == "img":
            self.images.append(attrs)
        if attrs.get("aria-live") or attrs.get("role") in ("status", "alert"):
            self.live.append(attrs)
        if tag == "meta" and self.in_body:
            self.meta_in_body.append(attrs)

    def problems(self) -> list[str]:
        found = [f"id {i!r} is used twice" for i in sorted({i for i in self.ids if self.ids.count(i) > 1})]
        found += [f"{attr} points at a missing id {ref!r}" for attr, ref in self.references
                  if ref not in self.ids]
        found += [f"an img without alt: {img}" for img in self.images if "alt" not in img]
        found += [f"an img without src: {img}" for img in self.images if not img.get("src")]
        found += [f"a meta element in the body: {meta}" for meta in self.meta_in_body]
        return found


def page(client, url, method="get", status=200, **data):
    response = getattr(client, method)(url, data)
    assert response.status_code == status, url
    return response.content.decode()


def test_forms_with_errors_point_their_fields_at_the_error_and_the_help(client, user):
    signup = page(client, reverse("signup"), "post", username="", password1="kue", password2="lapis")
    client.force_login(user)
    password = page(client, reverse("password_change"), "post", old_password="wrong")
    upload = page(client, reverse("upload"), "post", status=400)  # no files
    email = page(client, reverse("account"), "post", status=400, email="x", password="wrong")
    delete = page(client, reverse("account-delete"), "post", status=400, **{"delete-password": "wrong"})
    make_photo(user)
    several = page(client, reverse("photos-delete"), "post", status=400)  # none ticked

    for html in (signup, password, upload, email, delete, several):
        parsed = Page(html)
        assert parsed.problems() == []
        assert 'aria-invalid="true"' in html
    assert 'id="id_password2_error"' in signup and 'id="id_password1_helptext"' in signup
    assert 'id="id_photos_error"' in upload and 'id="id_photos_helptext"' in upload
    assert 'aria-describedby="id_photo_error"' in several and 'id="id_photo_error"' in several


def test_every_page_a_user_sees_has_sound_references_images_and_a_skip_link(client, user, admin_user):
    done = make_photo(user, status="done", label="kue_lapis", confidence=0.93)
    pending = make_photo(user)
    failed = make_photo(user, status="failed")
    unsure = make_photo(user, status="done", label="kue_serabi", confidence=0.3)
    Feedback.objects.create(photo=done, user=user, label="kue_lapis", is_correction=False)
    waiting = PendingEmail.objects.create(user=user, email="ayu@example.org")  # shown on the account page
    client.force_login(user)
    urls = [reverse("home"), reverse("upload"), reverse("gallery"), reverse("review"),
            done.get_absolute_url(), pending.get_absolute_url(), failed.get_absolute_url(),
            unsure.get_absolute_url(), reverse("photo-delete", args=[done.pk]), reverse("photos-delete"),
            reverse("photos-delete") + "?all=1", reverse("account"),
            reverse("password_reset"), reverse("password_reset_done"), reverse("password_reset_complete"),
            reverse("password_reset_confirm", args=["MQ", "set-password"]),  # (a link that no longer works)
            reverse("email-confirm", args=[email_confirmation_token(waiting)])]

    for url in urls:
        html = page(client, url)
        assert Page(html).problems() == [], url
        assert '<a class="skip" href="#main">' in html and '<main id="main"' in html, url
        assert '<p id="announce" class="visually-hidden" role="status" aria-live="polite">' in html, url
    assert Page(page(client, reverse("email-confirm", args=["forged"]), status=404)).problems() == []

    client.force_login(admin_user)
    assert Page(page(client, reverse("model-versions"))).problems() == []
    TrainingRun.objects.create(started_by=admin_user, base_version=ModelVersion.objects.get(is_active=True))
    live = page(client, reverse("model-versions"))  # with the form that cancels the live run
    assert Page(live).problems() == [] and "Cancel run" in live


def test_a_result_that_arrives_later_carries_the_sentence_the_live_region_says(client, user):
    photo = make_photo(user, status="done", label="kue_klepon", confidence=0.88)
    failed = make_photo(user, status="failed")
    client.force_login(user)

    body = client.get(reverse("photo-status"), {"ids": f"{photo.pk},{failed.pk}", "view": "card"}).json()
    fragments = {item["id"]: item["html"] for item in body["photos"]}

    assert f'data-announce="Photo {photo.pk}: Kue Klepon, 88% sure."' in fragments[photo.pk]
    assert f'data-announce="Photo {failed.pk} failed: ' in fragments[failed.pk]
    assert all(Page(html).problems() == [] for html in fragments.values())


def test_each_photo_page_has_its_own_title(client, user):
    first = make_photo(user, status="done", label="kue_lapis")
    second = make_photo(user, status="done", label="kue_lapis")
    client.force_login(user)

    titles = {page(client, p.get_absolute_url()).split("<title>")[1].split("</title>")[0]
              for p in (first, second)}

    assert titles == {f"Photo {first.pk}: Kue Lapis · Cakesite", f"Photo {second.pk}: Kue Lapis · Cakesite"}


def test_controls_that_do_different_things_have_different_names(client, user, admin_user):
    """A screen reader's list of a page's fields or buttons shows their names alone: three "Your
    password" fields, or two "Activate" buttons, would not say which is which."""
    import re

    shipped = ModelVersion.objects.get(is_active=True)
    ModelVersion.objects.create(name="kue-v2", path=shipped.path, labels=shipped.labels)
    ModelVersion.objects.create(name="kue-v3", path=shipped.path, labels=shipped.labels)
    client.force_login(user)
    account = client.get(reverse("account")).content.decode()
    client.force_login(admin_user)
    staff = client.get(reverse("model-versions")).content.decode()

    labels = re.findall(r"<label for=\"[^\"]*password\">([^<]+)</label>", account)
    assert labels == ["Your password, to change the address", "Your password, for a new API token",
                      "Your password, to delete the account"]
    buttons = re.findall(r'<button type="submit" class="button">(Activate.*?)</button>', staff)
    buttons = [re.sub(r"<[^>]+>", "", button) for button in buttons]
    assert sorted(buttons) == ["Activate kue-v2", "Activate kue-v3"]
