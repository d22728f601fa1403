"""Deleting several photos at once: on the website (a page of the gallery with a box to tick for each)
and through the API (POST /api/photos/delete/)."""

import re
from pathlib import Path

import pytest
from django.contrib.messages import get_messages
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from classifier.models import Feedback, Photo, Prediction
from classifier.selectors import PHOTOS_DELETED_AT_ONCE
from tests.conftest import api_token, make_photo

pytestmark = pytest.mark.django_db


def files_of(photo: Photo) -> list[Path]:
    return [Path(photo.image.path), Path(photo.thumbnail.path),
            *(Path(p.heatmap.path) for p in photo.predictions.all() if p.heatmap)]


def said(response) -> list[str]:
    return [str(message) for message in get_messages(response.wsgi_request)]


def test_a_user_ticks_photos_on_a_page_of_their_gallery_and_deletes_them_with_their_files(
        client, user, other_user, django_capture_on_commit_callbacks):
    from classifier import services

    lapis, klepon, kept = (make_photo(user, "done", cake)
                           for cake in ("kue_lapis", "kue_klepon", "kue_serabi"))
    services.feedback_record(photo=klepon, user=user, label="kue_klepon")
    theirs = make_photo(other_user, "done", "kue_lapis")
    files = files_of(lapis) + files_of(klepon)
    client.force_login(user)

    gallery = client.get(reverse("gallery")).content.decode()
    page = client.get(reverse("photos-delete") + "?page=1")
    html = page.content.decode()
    asked = client.post(reverse("photos-delete") + "?page=1", {"photo": [lapis.pk, klepon.pk]})
    kept_until_confirmed = Photo.objects.count()
    with django_capture_on_commit_callbacks(execute=True):
        deleted = client.post(reverse("photos-delete") + "?page=1", {"photo": [lapis.pk, klepon.pk],
                                                                      "confirm": "1"})

    assert f'href="{reverse("photos-delete")}?page=1"' in gallery
    assert page.status_code == 200
    assert [card["photo"].pk for card in page.context["cards"]] == [kept.pk, klepon.pk, lapis.pk]
    for photo in (lapis, klepon, kept):  # each box named by its own label (its photo, its name)
        assert f'<input type="checkbox" name="photo" value="{photo.pk}" id="pick-{photo.pk}">' in html
        assert f'<label for="pick-{photo.pk}">' in html
    assert f'value="{theirs.pk}"' not in html
    assert "Kue Serabi · uploaded" in " ".join(html.split())  # what each is, to choose by
    confirm = " ".join(asked.content.decode().split())  # (as one photo's deletion, it asks first)
    assert asked.status_code == 200 and kept_until_confirmed == 4
    assert '<h1 id="confirm-heading">Delete these 2 photos?</h1>' in confirm
    assert ">Delete 2 photos</button>" in confirm
    # the list scrolls past a few photos: focusable, named, as axe-core's scrollable-region-focusable asks
    assert '<ul class="picked" tabindex="0" aria-labelledby="confirm-heading">' in confirm
    assert [card["photo"].pk for card in asked.context["cards"]] == [klepon.pk, lapis.pk]
    assert deleted.status_code == 302 and deleted.url == reverse("gallery") + "?page=1"
    assert said(deleted) == ["2 photos deleted."]
    assert list(Photo.objects.order_by("pk")) == [kept, theirs]
    assert not Prediction.objects.filter(photo_id__in=[lapis.pk, klepon.pk]).exists()
    assert not Feedback.objects.exists()
    assert files and not any(path.exists() for path in files)
    assert all(path.exists() for path in files_of(kept) + files_of(theirs))


def test_the_page_keeps_the_gallerys_filters_and_can_tick_them_all(client, user):
    failed = [make_photo(user, "failed") for _ in range(2)]
    done = make_photo(user, "done", "kue_lapis")
    client.force_login(user)

    gallery = client.get(reverse("gallery") + "?status=failed").content.decode()
    everything = client.get(reverse("photos-delete") + "?status=failed&page=1&all=1")
    deleted = client.post(reverse("photos-delete") + "?status=failed&page=1",
                          {"photo": [photo.pk for photo in failed], "confirm": "1"})

    assert f'href="{reverse("photos-delete")}?status=failed&amp;page=1"' in gallery
    assert [card["photo"].pk for card in everything.context["cards"]] == [failed[1].pk, failed[0].pk]
    assert everything.content.decode().count(" checked>") == 2
    assert deleted.url == reverse("gallery") + "?status=failed&page=1"
    assert list(Photo.objects.all()) == [done]


@pytest.mark.parametrize("ticked", [[], ["x"], ["-1"], ["١٢"]])
def test_nothing_ticked_or_a_tampered_box_says_so_and_deletes_nothing(client, user, ticked):
    photo = make_photo(user)
    client.force_login(user)

    refused = client.post(reverse("photos-delete"), {"photo": ticked})

    assert refused.status_code == 400 and Photo.objects.filter(pk=photo.pk).exists()
    assert 'role="alert"' in refused.content.decode()
    # the focus goes to the boxes the error is about (it stayed on the page's body)
    box = f'id="pick-{photo.pk}" aria-invalid="true" aria-describedby="id_photo_error" autofocus>'
    assert box in refused.content.decode()
    if not ticked:
        assert "Tick the photos to delete first." in refused.content.decode()


def test_a_choice_sent_from_a_page_whose_photos_are_all_gone_still_says_what_is_wrong(client, user):
    client.force_login(user)  # (no photos left: deleted in another tab)

    refused = client.post(reverse("photos-delete"), {})

    assert refused.status_code == 400 and "Tick the photos to delete first." in refused.content.decode()


def test_more_photos_than_one_request_deletes_are_refused_all_of_them(client, user):
    photos = [make_photo(user) for _ in range(PHOTOS_DELETED_AT_ONCE + 1)]
    client.force_login(user)

    refused = client.post(reverse("photos-delete"), {"photo": [photo.pk for photo in photos]})

    assert refused.status_code == 400 and Photo.objects.count() == len(photos)
    assert f"At most {PHOTOS_DELETED_AT_ONCE} photos are deleted at once." in refused.content.decode()


def test_changing_the_choice_goes_back_to_the_list_with_the_photos_still_ticked(client, user):
    first, second, third = (make_photo(user) for _ in range(3))
    client.force_login(user)

    back = client.post(reverse("photos-delete") + "?page=1", {"photo": [first.pk, third.pk], "back": "1"})

    html = back.content.decode()
    assert back.status_code == 200 and Photo.objects.count() == 3
    assert f'value="{first.pk}" id="pick-{first.pk}" checked>' in html
    assert f'value="{third.pk}" id="pick-{third.pk}" checked>' in html
    assert f'value="{second.pk}" id="pick-{second.pk}">' in html


def test_photos_deleted_elsewhere_before_the_choice_is_confirmed_are_said_to_be_gone(client, user):
    photo = make_photo(user)
    client.force_login(user)
    asked = client.post(reverse("photos-delete"), {"photo": [photo.pk]})
    Photo.objects.filter(pk=photo.pk).delete()  # (another tab)

    confirmed = client.post(reverse("photos-delete"), {"photo": [photo.pk], "confirm": "1"}, follow=True)
    asked_again = client.post(reverse("photos-delete"), {"photo": [photo.pk]})

    assert asked.status_code == 200
    assert "Those photos were deleted already." in confirmed.content.decode()
    assert asked_again.status_code == 302 and said(asked_again) == ["Those photos were deleted already."]


def test_another_users_photo_ticked_by_a_tampered_form_is_left_as_one_already_gone(client, user, other_user):
    mine, theirs = make_photo(user), make_photo(other_user)
    client.force_login(user)

    asked = client.post(reverse("photos-delete"), {"photo": [mine.pk, theirs.pk, 999999]})
    deleted = client.post(reverse("photos-delete"), {"photo": [mine.pk, theirs.pk, 999999], "confirm": "1"})

    assert [card["photo"].pk for card in asked.context["cards"]] == [mine.pk]
    assert said(deleted) == ["1 photo deleted. 2 were deleted already."]
    assert list(Photo.objects.all()) == [theirs]


def test_staff_who_may_see_but_not_delete_others_photos_delete_none_of_a_choice_with_one(client, staff, user):
    own, others = make_photo(staff), make_photo(user)
    client.force_login(staff)

    page = client.get(reverse("photos-delete"))
    refused = client.post(reverse("photos-delete"), {"photo": [own.pk, others.pk]})

    assert [card["photo"].pk for card in page.context["cards"]] == [own.pk]  # their own only
    assert refused.status_code == 403 and Photo.objects.count() == 2


def test_a_signed_out_visitor_is_sent_to_sign_in(client, user):
    photo = make_photo(user)

    assert client.get(reverse("photos-delete")).url.startswith(reverse("login"))
    assert client.post(reverse("photos-delete"), {"photo": [photo.pk]}).url.startswith(reverse("login"))
    assert Photo.objects.filter(pk=photo.pk).exists()


@pytest.fixture
def api(user):
    return APIClient(HTTP_AUTHORIZATION=f"Token {api_token(user)}")


def test_a_program_deletes_several_photos_and_sending_it_again_finds_them_gone(
        api, user, other_user, django_capture_on_commit_callbacks):
    first, second, kept = make_photo(user), make_photo(user), make_photo(user)
    theirs = make_photo(other_user)
    files = files_of(first) + files_of(second)
    sent = {"ids": [second.pk, first.pk, theirs.pk, 999999, first.pk]}

    with django_capture_on_commit_callbacks(execute=True):
        deleted = api.post("/api/photos/delete/", sent, format="json")
    again = api.post("/api/photos/delete/", sent, format="json")

    assert deleted.status_code == 200
    assert deleted.json() == {"deleted": [first.pk, second.pk], "not_found": [theirs.pk, 999999]}
    assert again.json() == {"deleted": [], "not_found": sorted([first.pk, second.pk, theirs.pk, 999999])}
    assert list(Photo.objects.order_by("pk")) == [kept, theirs]
    assert not any(path.exists() for path in files)


@pytest.mark.parametrize("sent", [
    {}, {"ids": []}, {"ids": "1"}, {"ids": ["x"]}, {"ids": [0]}, {"ids": [2**63]},
    {"ids": list(range(1, PHOTOS_DELETED_AT_ONCE + 2))},
])
def test_a_bad_list_of_ids_is_a_400_and_deletes_nothing(api, user, sent):
    photo = make_photo(user)

    refused = api.post("/api/photos/delete/", sent, format="json")

    assert refused.status_code == 400
    assert all(isinstance(message, str) for message in refused.json()["error"]["fields"]["ids"])
    assert Photo.objects.filter(pk=photo.pk).exists()


def test_staff_who_may_not_delete_others_photos_get_a_403_and_nothing_is_deleted(staff, user):
    own, others = make_photo(staff), make_photo(user)
    api = APIClient(HTTP_AUTHORIZATION=f"Token {api_token(staff)}")

    refused = api.post("/api/photos/delete/", {"ids": [own.pk, others.pk]}, format="json")

    assert refused.status_code == 403
    assert refused.json()["error"]["message"] == "You may see other users' photos, but not delete them."
    assert Photo.objects.count() == 2


def test_staff_with_the_delete_permission_delete_anyones(django_user_model, user, other_user):
    from django.contrib.auth.models import Permission

    moderator = django_user_model.objects.create_user("moderator", password="x-kue-2026-x", is_staff=True)
    moderator.user_permissions.add(*Permission.objects.filter(codename__in=["view_photo", "delete_photo"]))
    photos = [make_photo(user), make_photo(other_user)]
    api = APIClient(HTTP_AUTHORIZATION=f"Token {api_token(moderator)}")

    browser = Client()
    browser.force_login(moderator)
    asked = " ".join(browser.post(reverse("photos-delete"), {"photo": [photo.pk for photo in photos]})
                     .content.decode().split())
    deleted = api.post("/api/photos/delete/", {"ids": [photo.pk for photo in photos]}, format="json")

    assert "ayu's photo" in asked and "budi's photo" in asked  # whose each is, before it goes
    assert deleted.json()["deleted"] == sorted(photo.pk for photo in photos) and not Photo.objects.exists()


def test_deleting_a_hundred_photos_takes_a_few_queries_not_some_for_each(
        api, user, django_assert_max_num_queries, django_capture_on_commit_callbacks):
    photos = [make_photo(user, "done", "kue_lapis") for _ in range(PHOTOS_DELETED_AT_ONCE)]
    for photo in photos[::2]:
        Feedback.objects.create(photo=photo, user=user, label="kue_lapis", is_correction=False)
    files = [path for photo in photos for path in files_of(photo)]

    with django_assert_max_num_queries(15), django_capture_on_commit_callbacks(execute=True):
        deleted = api.post("/api/photos/delete/", {"ids": [photo.pk for photo in photos]}, format="json")

    assert deleted.json()["deleted"] == sorted(photo.pk for photo in photos)
    assert not Photo.objects.exists() and not Prediction.objects.exists() and not Feedback.objects.exists()
    assert not any(path.exists() for path in files)


def test_a_failure_part_way_deletes_none_of_them_and_keeps_every_file(
        client, user, django_capture_on_commit_callbacks):
    from django.db.models.signals import post_delete

    photos = [make_photo(user, "done", "kue_lapis") for _ in range(3)]
    files = [path for photo in photos for path in files_of(photo)]

    def fail_on_the_second(sender, instance, **_kwargs):
        if instance.pk == photos[1].pk:
            raise RuntimeError("the disk, the database: anything")

    post_delete.connect(fail_on_the_second, sender=Photo)
    client.force_login(user)
    client.raise_request_exception = True
    try:
        with django_capture_on_commit_callbacks(execute=True) as callbacks, pytest.raises(RuntimeError):
            client.post(reverse("photos-delete"), {"photo": [photo.pk for photo in photos], "confirm": "1"})
    finally:
        post_delete.disconnect(fail_on_the_second, sender=Photo)

    assert callbacks == [] and Photo.objects.count() == 3 and Prediction.objects.count() == 3
    assert all(path.exists() for path in files)


def test_no_photo_has_id_0_on_the_website_either(client, user):
    photo = make_photo(user)
    client.force_login(user)

    refused = client.post(reverse("photos-delete"), {"photo": ["0", str(photo.pk)]})

    assert refused.status_code == 400 and Photo.objects.filter(pk=photo.pk).exists()
    html = refused.content.decode()
    assert f'value="{photo.pk}" id="pick-{photo.pk}" checked aria-invalid="true"' in html  # ticked as sent


def test_staff_who_see_more_photos_than_they_may_delete_are_not_sent_to_a_page_of_other_photos(
        client, staff, user):
    [make_photo(staff) for _ in range(2)]
    [make_photo(user) for _ in range(30)]  # the gallery's second page shows some of these
    client.force_login(staff)

    gallery = client.get(reverse("gallery") + "?page=2").content.decode()

    assert f'href="{reverse("photos-delete")}" class="more"' in gallery  # its own photos, from the first


def test_the_photos_are_locked_in_one_statement_in_id_order(user):
    """What keeps two requests (or one and an account's deletion) from deadlocking: every lock on
    several photos is taken by one statement, in id order (the race test cannot tell the order)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from classifier import services

    photos = [make_photo(user) for _ in range(3)]
    with CaptureQueriesContext(connection) as queries:
        services.photos_delete({photo.pk for photo in photos})

    locks = [q["sql"] for q in queries.captured_queries if "FOR UPDATE" in q["sql"]]
    if connection.vendor == "postgresql":  # (SQLite takes no row locks)
        assert len(locks) == 1
        assert re.search(r'ORDER BY (1|"classifier_photo"."id") ASC FOR UPDATE$', locks[0])


def test_a_page_of_another_site_cannot_delete_photos_through_the_browsers_session(user):
    """The website's session reaches the API too: without the page's CSRF token, a cross-site form
    (or script) that the browser sends with the session's cookie is refused, and nothing goes."""
    photo = make_photo(user)
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(user)

    forged_api = browser.post("/api/photos/delete/", {"ids": [photo.pk]}, content_type="application/json")
    forged_page = browser.post(reverse("photos-delete"), {"photo": [photo.pk], "confirm": "1"})

    assert forged_api.status_code == 403 and forged_page.status_code == 403
    assert forged_api.json()["error"]["code"] == "csrf_failed"  # (what the upload page's script looks for)
    assert Photo.objects.filter(pk=photo.pk).exists()
