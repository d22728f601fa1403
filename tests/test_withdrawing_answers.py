"""Taking an answer back: the review queue's Undo, the photo page's Withdraw, and the API's DELETE."""

import re

import pytest
from django.urls import reverse

from classifier import services
from classifier.models import Feedback
from tests.conftest import api_token, make_photo

pytestmark = pytest.mark.django_db


def queue_order(page: str) -> list[str]:
    """The queue's entries as the page lists them: review-<id> for a photo, answered for the thanks."""
    return re.findall(r'<li class="(?:card review-item|answered)" id="([\w-]+)"', page)


def messages_of(response) -> list[str]:
    return [str(message) for message in response.context["messages"]]


def test_an_answer_in_the_queue_is_thanked_in_its_place_with_an_undo_that_brings_it_back(client, user):
    """Reviewing on a phone, the thanks at the top of the page are out of view, and a slip of the
    thumb was for good: now the line in the photo's place says what was saved and can undo it."""
    skipped, answered, after = (make_photo(user, status="done", label="kue_lapis", confidence=c)
                                for c in (0.40, 0.50, 0.60))
    client.force_login(user)
    form = client.get(reverse("review")).content.decode()
    assert form.count('name="in_queue" value="1"') == 3

    response = client.post(reverse("photo-feedback", args=[answered.pk]),
                           {"label": "kue_lapis", "next": f"/review/#review-{after.pk}", "in_queue": "1"})
    assert response["Location"] == f"/review/?answered={answered.pk}#review-{after.pk}"
    queue = client.get(response["Location"])
    page = queue.content.decode()

    assert queue_order(page) == [f"review-{skipped.pk}", "answered", f"review-{after.pk}"]
    assert f"Photo {answered.pk}: your answer, <strong>Kue Lapis</strong>, will teach" in page
    assert messages_of(queue) == []  # said there, not again at the top
    undo = re.search(r'<li class="answered".*?</li>', page, re.S).group(0)
    assert f'action="/photos/{answered.pk}/feedback/withdraw/"' in undo
    assert f'name="next" value="/review/#review-{answered.pk}"' in undo  # back to its place
    assert 'name="label" value="kue_lapis"' in undo
    # The photo after it comes back to the queue as it was, without the answered photo's thanks.
    assert f'name="next" value="/review/#review-{after.pk}"' in page

    undone = client.post(f"/photos/{answered.pk}/feedback/withdraw/",
                         {"next": f"/review/#review-{answered.pk}", "label": "kue_lapis"}, follow=True)

    assert undone.redirect_chain == [(f"/review/#review-{answered.pk}", 302)]
    assert not Feedback.objects.filter(photo=answered).exists()
    assert queue_order(undone.content.decode()) == [f"review-{skipped.pk}", f"review-{answered.pk}",
                                                    f"review-{after.pk}"]
    assert messages_of(undone) == [f"Answer withdrawn: photo {answered.pk} is back in the review queue."]


def test_the_thanks_stand_where_the_photo_stood_first_or_last_and_when_the_queue_is_empty(client, user):
    first, last = (make_photo(user, status="done", label="kue_lapis", confidence=c) for c in (0.40, 0.60))
    client.force_login(user)

    def answer(photo, label="kue_lapis") -> str:
        response = client.post(reverse("photo-feedback", args=[photo.pk]),
                               {"label": label, "next": "/review/", "in_queue": "1"}, follow=True)
        return response.content.decode()

    assert queue_order(answer(first)) == ["answered", f"review-{last.pk}"]
    services.feedback_withdraw(photo=first)
    assert queue_order(answer(last)) == [f"review-{first.pk}", "answered"]
    answer(first, "none")  # the last photo of the queue: nothing left to review, but it can be undone
    empty = client.get(f"/review/?answered={first.pk}").content.decode()

    assert "Nothing to review" in empty and '<div class="answered" id="answered">' in empty
    assert f"Photo {first.pk}: noted as none of our cakes" in empty
    assert f'action="/photos/{first.pk}/feedback/withdraw/"' in empty


def test_the_thanks_stand_in_the_photos_place_on_a_later_page_among_ties_and_photos_without_a_margin(
        client, user):
    from datetime import timedelta

    from django.utils import timezone

    from classifier.models import Photo
    from classifier.views import PAGE_SIZE

    photos = [make_photo(user, status="done", label="kue_lapis") for _ in range(PAGE_SIZE + 4)]  # one margin
    long_ago = timezone.now() - timedelta(days=1)  # the oldest of the margin: page 2, a tie: -id
    Photo.objects.filter(pk__in=[p.pk for p in photos[-4:-2]]).update(created=long_ago)
    Photo.objects.filter(pk__in=[p.pk for p in photos[-2:]]).update(margin=None)  # (last, as in PostgreSQL)
    client.force_login(user)
    page_two = queue_order(client.get("/review/?page=2").content.decode())
    assert page_two == [f"review-{p.pk}" for p in (photos[-3], photos[-4], photos[-1], photos[-2])]

    for place, entry in enumerate(page_two):
        photo = int(entry.removeprefix("review-"))
        response = client.post(reverse("photo-feedback", args=[photo]),
                               {"label": "kue_lapis", "next": "/review/?page=2", "in_queue": "1"})
        assert response["Location"] == f"/review/?page=2&answered={photo}"
        page = client.get(response["Location"]).content.decode()
        assert queue_order(page) == page_two[:place] + ["answered"] + page_two[place + 1:]
        assert f'name="next" value="/review/?page=2#review-{photo}"' in page  # the Undo: back there
        queue = page[page.index('<ol class="queue"'):page.index("</ol>")]
        assert "answered=" not in queue  # no answer nor Undo carries it on
        services.feedback_withdraw(photo=Photo.objects.get(pk=photo))


def test_the_queue_offers_to_undo_only_your_own_answer_still_standing(client, user, other_user,
                                                                      django_user_model):
    """The address can be shared, reloaded or made up: it shows no one else's answer, and no Undo
    for an answer someone else gave since."""
    mine = make_photo(user, status="done", label="kue_lapis", confidence=0.5)
    theirs = make_photo(other_user, status="done", label="kue_lapis", confidence=0.5)
    services.feedback_record(photo=theirs, user=other_user, label="kue_lapis")
    chef = django_user_model.objects.create_superuser("chef", password="bika-ambon-77")
    services.feedback_record(photo=mine, user=chef, label="kue_lumpur")
    client.force_login(user)

    for answered in (mine.pk, theirs.pk, "", "x", "٣", "9" * 30):
        page = client.get(f"/review/?answered={answered}").content.decode()
        assert 'id="answered"' not in page and "Undo" not in page, answered

    services.feedback_record(photo=mine, user=user, label="kue_lapis")
    assert 'id="answered"' in client.get(f"/review/?answered={mine.pk}").content.decode()


def test_an_undo_from_a_page_shown_before_the_answer_changed_leaves_the_new_answer(client, user):
    photo = make_photo(user, status="done", label="kue_lapis")
    services.feedback_record(photo=photo, user=user, label="kue_lapis")
    client.force_login(user)
    stale = client.get(f"/review/?answered={photo.pk}")
    services.feedback_record(photo=photo, user=user, label="kue_lumpur")  # changed in another tab

    response = client.post(f"/photos/{photo.pk}/feedback/withdraw/",
                           {"label": "kue_lapis", "next": "/review/"}, follow=True)

    assert 'id="answered"' in stale.content.decode()
    assert Feedback.objects.get(photo=photo).label == "kue_lumpur"
    assert messages_of(response) == [
        "The answer has changed: it is now Kue Lumpur. Nothing was withdrawn."]


def test_an_undo_leaves_the_same_answer_given_again_since_by_someone_else(client, user, django_user_model):
    photo = make_photo(user, status="done", label="kue_lapis")
    services.feedback_record(photo=photo, user=user, label="kue_lapis")
    client.force_login(user)
    page = client.get(f"/review/?answered={photo.pk}").content.decode()
    chef = django_user_model.objects.create_superuser("chef", password="bika-ambon-77")
    services.feedback_record(photo=photo, user=chef, label="kue_lapis")  # the same cake, theirs now
    undo = re.search(r'class="answered".*?</form>', page, re.S).group(0)
    sent = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', undo))

    response = client.post(f"/photos/{photo.pk}/feedback/withdraw/", sent, follow=True)

    assert Feedback.objects.get(photo=photo).user == chef
    assert messages_of(response) == [
        "Someone else has given the answer since (Kue Lapis): theirs was not withdrawn."]


def test_the_photo_page_withdraws_the_answer_it_shows(client, user):
    photo = make_photo(user, status="done", label="kue_lapis")
    services.feedback_record(photo=photo, user=user, label="kue_lumpur")
    client.force_login(user)
    page = client.get(photo.get_absolute_url()).content.decode()

    response = client.post(f"/photos/{photo.pk}/feedback/withdraw/",
                           {"label": "kue_lumpur", "next": photo.get_absolute_url() + "#answer"}, follow=True)
    again = client.post(f"/photos/{photo.pk}/feedback/withdraw/", {"label": "kue_lumpur"}, follow=True)

    assert re.search(r'<button type="submit" name="label" value="kue_lumpur" class="link" formnovalidate\s+'
                     rf'formaction="/photos/{photo.pk}/feedback/withdraw/">Withdraw it</button>', page)
    assert response.redirect_chain == [(f"/photos/{photo.pk}/#answer", 302)]
    assert not Feedback.objects.filter(photo=photo).exists()
    shown = response.content.decode()
    assert "Your answer:" not in shown and "Withdraw it" not in shown and "Yes, it is Kue Lapis" in shown
    assert messages_of(again) == [f"Photo {photo.pk} has no answer to withdraw."]  # a second click: no harm
    assert 'name="in_queue"' not in page  # its answers are thanked at the top, as before


def test_only_those_who_may_answer_a_photo_withdraw_its_answer(client, user, other_user, staff):
    from django.contrib.auth.models import Permission

    photo = make_photo(user, status="done", label="kue_lapis")
    services.feedback_record(photo=photo, user=user, label="kue_lapis")
    url = f"/photos/{photo.pk}/feedback/withdraw/"

    client.force_login(other_user)
    assert client.post(url).status_code == 404
    assert client.post("/photos/999999/feedback/withdraw/").status_code == 404
    client.force_login(staff)  # may view everyone's photos, not change them
    assert client.post(url).status_code == 403
    client.force_login(user)
    assert client.get(url).status_code == 302  # a link to the button's address changes nothing
    assert Feedback.objects.filter(photo=photo).exists()
    staff.user_permissions.add(Permission.objects.get(codename="change_photo"))
    client.force_login(staff)
    assert client.post(url, {"next": "https://evil.example/"})["Location"] == photo.get_absolute_url()
    assert not Feedback.objects.filter(photo=photo).exists()


def test_the_api_withdraws_an_answer_and_the_photo_is_back_in_the_queue(client, user, other_user, staff):
    from rest_framework.test import APIClient

    photo = make_photo(user, status="done", label="kue_lapis")
    services.feedback_record(photo=photo, user=user, label="kue_lumpur")
    api = APIClient(HTTP_AUTHORIZATION=f"Token {api_token(user)}")
    tag = api.get(f"/api/photos/{photo.pk}/")["ETag"]

    changed = api.delete(f"/api/photos/{photo.pk}/feedback/?label=kue_lapis")
    withdrawn = api.delete(f"/api/photos/{photo.pk}/feedback/?label=kue_lumpur")
    again = api.delete(f"/api/photos/{photo.pk}/feedback/")

    assert changed.status_code == 409
    assert changed.json()["error"]["message"] == (
        "The answer has changed: it is now Kue Lumpur. Nothing was withdrawn.")
    assert changed.json()["error"]["code"] == "answer_changed"
    assert withdrawn.status_code == 200 and withdrawn.json()["feedback"] is None
    assert again.status_code == 200 and again.json()["feedback"] is None
    assert not Feedback.objects.filter(photo=photo).exists()
    assert api.get(f"/api/photos/{photo.pk}/", HTTP_IF_NONE_MATCH=tag).status_code == 200  # not a stale 304
    assert [p["id"] for p in api.get("/api/photos/review-queue/").json()["results"]] == [photo.pk]
    services.feedback_record(photo=photo, user=user, label="kue_lapis")
    other = APIClient(HTTP_AUTHORIZATION=f"Token {api_token(other_user)}")
    assert other.delete(f"/api/photos/{photo.pk}/feedback/").status_code == 404
    viewer = APIClient(HTTP_AUTHORIZATION=f"Token {api_token(staff)}")  # may see it, not change it
    assert viewer.delete(f"/api/photos/{photo.pk}/feedback/").status_code == 403
    assert Feedback.objects.filter(photo=photo).exists()
