"""Seeing photos: own photos only (staff: all), 404 for anything else, gallery filters and polling."""

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from django.urls import reverse

from classifier import services
from classifier.models import ModelVersion, Photo
from tests.conftest import api_token, make_photo, migrated_back

pytestmark = pytest.mark.django_db


def test_percentages_never_claim_certainty_or_rule_out_a_cake_the_model_did_not(client, user):
    """99.6% is shown as 99%, not "100% sure"; 0.3% as 1%, not 0%; 12.5% as 13% everywhere (the
    upload page's script rounds half up)."""
    version = ModelVersion.objects.get(is_active=True)
    slugs = [item["slug"] for item in version.labels]
    photo = make_photo(user)
    probabilities = {slug: 0.0 for slug in slugs} | {"kue_lapis": 0.996, "kue_klepon": 0.003}
    services.prediction_record(photo=photo, version_id=version.pk, probabilities=probabilities,
                               label="kue_lapis", confidence=0.996, inference_ms=5.0)
    halfway = make_photo(user, label="kue_lumpur", confidence=0.125)
    client.force_login(user)

    page = client.get(photo.get_absolute_url()).content.decode()
    gallery = client.get("/photos/").content.decode()

    assert "99% sure" in page and "100%" not in page
    assert '<span class="bar-value">1%</span>' in page and '<span class="bar-value">0%</span>' in page
    assert "Kue Lapis · 99%" in gallery and "Not sure: Kue Lumpur? · 13%" in gallery
    assert "only at 13%" in client.get(halfway.get_absolute_url()).content.decode()


def test_the_shipped_model_is_registered_as_the_active_version():
    version = ModelVersion.objects.get(is_active=True)

    assert version.name == "kue-mobilenetv2"
    assert version.display_name("kue_putri_salju") == "Kue Putri Salju"
    assert version.metrics["test"]["n"] == 162


def test_the_photo_page_shows_the_cake_in_words_with_the_top_three(client, user):
    photo = make_photo(user, label="kue_putri_salju", confidence=0.87)
    client.force_login(user)

    page = client.get(photo.get_absolute_url()).content.decode()

    assert "Kue Putri Salju" in page and "87% sure" in page
    assert page.count('class="bar-label"') == 3
    assert "kue-mobilenetv2" in page
    assert "Show where the model looked for Kue Putri Salju</label>" in page  # (its top guess only)
    assert "It knows 8 cakes only: a photo of anything else gets one of their names too." in page
    assert "data-pending" not in page
    heading = re.search(r"<h1>(.*?)</h1>", page)[1]
    assert re.sub(r"<[^>]+>", "", heading) == f"Photo {photo.pk}: Prediction"  # (what a screen reader says)


def test_the_gallery_lists_own_photos_newest_first_with_label_and_confidence(client, user, other_user):
    older = make_photo(user, status="done", label="kue_lapis", confidence=0.95)
    newer = make_photo(user)
    make_photo(other_user, status="done", label="kue_klepon")
    client.force_login(user)

    response = client.get(reverse("gallery"))

    cards = response.context["cards"]
    assert [c["photo"].pk for c in cards] == [newer.pk, older.pk]
    assert "Kue Lapis · 95%" in response.content.decode()
    assert "Kue Klepon ·" not in response.content.decode()


def test_the_gallery_filters_by_predicted_label_and_status(client, user):
    lapis = make_photo(user, status="done", label="kue_lapis")
    make_photo(user, status="done", label="kue_serabi")
    failed = make_photo(user, status="failed")
    client.force_login(user)

    by_label = client.get(reverse("gallery"), {"label": "kue_lapis"})
    by_status = client.get(reverse("gallery"), {"status": "failed"})

    assert [c["photo"].pk for c in by_label.context["cards"]] == [lapis.pk]
    assert [c["photo"].pk for c in by_status.context["cards"]] == [failed.pk]
    show_all = '<a href="/photos/">Show all</a>'
    assert show_all in by_status.content.decode()  # the way back
    assert show_all not in client.get(reverse("gallery")).content.decode()


def test_the_gallery_is_paginated(client, user):
    photos = [make_photo(user).pk for _ in range(26)]
    client.force_login(user)

    first = client.get(reverse("gallery"))
    second = client.get(reverse("gallery"), {"page": 2})
    past = client.get(reverse("gallery"), {"page": 99})  # a page that is no longer there: the last

    assert len(first.context["cards"]) == 24 and len(second.context["cards"]) == 2
    assert "Page 2 of 2" in second.content.decode() and "Page 2 of 2" in past.content.decode()
    Photo.objects.filter(pk__in=photos[:25]).delete()
    assert "Page 1 of" not in client.get(reverse("gallery")).content.decode()  # one page: no pages
    shown = [c["photo"].pk for c in first.context["cards"] + second.context["cards"]]
    assert shown == photos[::-1]  # newest first, each once


def test_the_review_queue_is_paginated_least_certain_first(client, user):
    photos = {make_photo(user, "done", "kue_lapis", confidence=0.3 + i / 100).pk: i for i in range(26)}
    client.force_login(user)

    pages = [client.get(reverse("review"), {"page": n}).context["cards"] for n in (1, 2)]

    assert [len(cards) for cards in pages] == [24, 2]
    assert [c["photo"].pk for c in pages[0] + pages[1]] == sorted(photos, key=photos.get)
    make_photo(user)  # not classified yet: not in the queue, but one of the photos
    page = client.get(reverse("review")).content.decode()
    assert "<dt>To review</dt><dd>26</dd>" in page and "<dt>Photos</dt><dd>27</dd>" in page


@pytest.mark.parametrize("url, params", [
    ("gallery", {}), ("gallery", {"label": "kue_klepon"}), ("gallery", {"answer": "unanswered"}),
    ("gallery", {"label": "kue_klepon", "answer": "unanswered"}), ("review", {}),
    ("api:photo-list", {}), ("api:photo-list", {"label": "kue_klepon"}),
])
def test_a_page_of_photos_costs_the_same_queries_for_2_or_20_photos(client, user, url, params):
    """Answered or not: each answer's author is read with its photo, not one query per answer."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    client.force_login(user)

    def queries_for_page() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert client.get(reverse(url), params).status_code == 200
        return len(captured)

    for _ in range(2):
        make_photo(user, status="done", label="kue_klepon")
    few = queries_for_page()
    for i in range(18):
        photo = make_photo(user, status="done", label="kue_klepon")
        if i % 2:
            answer = "kue_klepon" if i % 4 == 1 else "kue_lapis"
            services.feedback_record(photo=photo, user=user, label=answer)
    many = queries_for_page()

    assert many == few


@pytest.mark.parametrize("name, method", [
    ("photo-detail", "get"), ("photo-image", "get"), ("photo-thumbnail", "get"),
    ("photo-retry", "post"), ("photo-delete", "post"),
])
def test_another_users_photo_is_a_404_everywhere(client, user, other_user, name, method):
    photo = make_photo(other_user, status="failed")
    client.force_login(user)

    response = getattr(client, method)(reverse(name, args=[photo.pk]))

    assert response.status_code == 404
    assert Photo.objects.filter(pk=photo.pk, status="failed").exists()


def test_a_photo_id_that_does_not_exist_is_a_404(client, user):
    client.force_login(user)

    assert client.get(reverse("photo-detail", args=[999999])).status_code == 404


def test_staff_with_the_view_permission_see_everyones_photos_but_cannot_delete_them(client, staff, user):
    photo = make_photo(user, status="done", label="kue_lumpur")
    failed = make_photo(user, status="failed")
    client.force_login(staff)

    page = client.get(photo.get_absolute_url())
    assert page.status_code == 200 and "by ayu</figcaption>" in " ".join(page.content.decode().split())
    assert client.get(reverse("photo-image", args=[photo.pk])).status_code == 200
    gallery = client.get(reverse("gallery"))
    assert [c["photo"].pk for c in gallery.context["cards"]] == [failed.pk, photo.pk]
    assert "<h1>All photos</h1>" in gallery.content.decode()
    assert gallery.content.decode().count("ayu's photo") == 2  # whose each photo is, as in the queue
    assert 'aria-current="page">All photos</a>' in gallery.content.decode()  # the menu says so too
    assert client.post(reverse("photo-delete", args=[photo.pk])).status_code == 403
    assert Photo.objects.filter(pk=photo.pk).exists()
    # Nor are they offered what they may not do: no link to delete, no button to classify it again.
    assert reverse("photo-delete", args=[photo.pk]) not in page.content.decode()
    failed_page = client.get(failed.get_absolute_url()).content.decode()
    assert reverse("photo-retry", args=[failed.pk]) not in failed_page
    client.force_login(user)
    assert reverse("photo-delete", args=[photo.pk]) in client.get(photo.get_absolute_url()).content.decode()
    assert reverse("photo-retry", args=[failed.pk]) in client.get(failed.get_absolute_url()).content.decode()


def test_staff_without_the_permission_see_only_their_own_photos(client, django_user_model, user):
    make_photo(user)
    member = django_user_model.objects.create_user("intern", password="x-kue-2026-x", is_staff=True)
    client.force_login(member)

    assert client.get(reverse("gallery")).context["cards"] == []


def test_the_image_is_served_to_its_owner_only_with_its_type(client, user):
    photo = make_photo(user)
    client.force_login(user)

    response = client.get(reverse("photo-image", args=[photo.pk]))

    assert response.status_code == 200 and response["Content-Type"] == "image/png"
    assert b"".join(response.streaming_content) == photo.image.open("rb").read()
    client.logout()
    assert client.get(reverse("photo-image", args=[photo.pk])).status_code == 302


def test_the_status_view_reports_own_photos_only_with_their_rendered_result(client, user, other_user):
    mine = make_photo(user, status="done", label="kue_kastengel")
    theirs = make_photo(other_user, status="done", label="kue_kastengel")
    client.force_login(user)

    body = client.get(reverse("photo-status"), {"ids": f"{mine.pk},{theirs.pk}"}).json()

    assert [p["id"] for p in body["photos"]] == [mine.pk]
    assert body["photos"][0]["status"] == "done"
    assert "Kue Kastengel" in body["photos"][0]["html"]


def test_the_gallery_s_first_page_gets_photos_uploaded_elsewhere_as_they_come(client, user, other_user):
    """Its script asks for the newest photos after the newest it showed when it was opened
    (data-after), every time: the owner's only, newest first, a page at most, as the gallery's cards.
    Asking from the same photo each time, it also gets one committed after a newer one."""
    shown = make_photo(user, status="done", label="kue_lapis")
    client.force_login(user)
    page = client.get(reverse("gallery")).content.decode()
    assert f'data-after="{shown.pk}" data-page-size="24"' in page

    def new_after(after):
        body = client.get(reverse("photo-status"), {"view": "card", "after": after}).json()
        assert body["photos"] == []
        return [p["id"] for p in body["new"]], body["new"]

    assert new_after(shown.pk)[0] == []
    later = [make_photo(user) for _ in range(26)]
    make_photo(other_user)
    ids, cards = new_after(shown.pk)

    assert ids == [p.pk for p in reversed(later)][:24]
    assert cards[0]["status"] == "queued"
    assert cards[0]["html"].startswith(f'<li class="tile" data-photo="{later[-1].pk}" data-pending')
    assert new_after(later[-1].pk)[0] == []


def test_only_the_gallery_s_first_unfiltered_page_waits_for_new_photos(client, user):
    for _ in range(25):
        make_photo(user, status="done", label="kue_lapis")
    client.force_login(user)

    def waits(**params) -> bool:
        return "data-after=" in client.get(reverse("gallery"), params).content.decode()

    assert waits() and not waits(page=2) and not waits(label="kue_lapis") and not waits(status="done")
    assert not waits(answer="confirmed") and not waits(label="none")


def test_an_empty_gallery_waits_for_the_first_photo(client, user):
    client.force_login(user)

    page = client.get(reverse("gallery")).content.decode()

    assert "No photos here yet" in page and 'data-after="0"' in page


def test_filters_that_match_none_of_the_photos_say_so_and_lead_back_to_all(client, user):
    make_photo(user, "done", "kue_lapis")
    client.force_login(user)

    page = client.get(reverse("gallery"), {"label": "kue_klepon", "status": ""}).content.decode()

    assert "No photos match these filters" in page and "No photos here yet" not in page
    assert page.count(">Show all") == 1  # the message's link, not the filters' too
    assert f'<a href="{reverse("gallery")}">Show all your photos</a>' in page


def test_a_result_that_arrives_while_the_page_is_open_brings_the_answer_form(client, user, staff):
    photo = make_photo(user)  # queued when the page opens
    client.force_login(user)
    opened = client.get(photo.get_absolute_url()).content.decode()
    version = ModelVersion.objects.get(is_active=True)
    services.prediction_record(photo=photo, version_id=version.pk, label="kue_lapis", confidence=0.9,
                               probabilities={"kue_lapis": 0.9, "kue_lumpur": 0.1}, inference_ms=5.0)

    swapped_in = client.get(reverse("photo-status"), {"ids": photo.pk, "view": "result"}).json()["photos"][0]
    client.force_login(staff)  # may view everyone's photos, not change them
    for_staff = client.get(reverse("photo-status"), {"ids": photo.pk, "view": "result"}).json()["photos"][0]

    assert "Is it right?" not in opened
    assert "Is it right?" in swapped_in["html"]
    assert reverse("photo-feedback", args=[photo.pk]) in swapped_in["html"]
    assert f'name="next" value="{photo.get_absolute_url()}#answer"' in swapped_in["html"]
    assert "Kue Lapis" in for_staff["html"] and "Is it right?" not in for_staff["html"]


def test_the_status_view_refuses_ids_that_are_not_photo_ids(client, user):
    client.force_login(user)

    for ids in ("1,x", "99999999999999999999999", "-1"):
        assert client.get(reverse("photo-status"), {"ids": ids}).status_code == 400, ids
    for after in ("x", "-1", "99999999999999999999999", ""):
        assert client.get(reverse("photo-status"), {"after": after}).status_code == 400, after


def test_a_failed_photo_shows_its_reason_and_can_be_retried(client, user, enqueued,
                                                           django_capture_on_commit_callbacks):
    photo = make_photo(user, status="failed")
    Photo.objects.filter(pk=photo.pk).update(error="The photo could not be read: boom")
    client.force_login(user)

    page = client.get(photo.get_absolute_url()).content.decode()
    assert "Failed: The photo could not be read: boom" in page
    with django_capture_on_commit_callbacks(execute=True):
        retried = client.post(reverse("photo-retry", args=[photo.pk]))

    photo.refresh_from_db()
    assert photo.status == "queued" and photo.error == "" and enqueued == [photo.pk]
    assert retried["Location"] == f"/photos/{photo.pk}/#result"  # its result panel takes the focus
    assert 'class="result" id="result" tabindex="-1"' in client.get(photo.get_absolute_url()).content.decode()


def test_deleting_a_photo_removes_the_row_and_its_files(client, user, django_capture_on_commit_callbacks):
    photo = make_photo(user)
    paths = [photo.image.path, photo.thumbnail.path]
    client.force_login(user)

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("photo-delete", args=[photo.pk]))

    assert response.status_code == 302
    assert not Photo.objects.filter(pk=photo.pk).exists()
    assert not any(Path(p).exists() for p in paths)


def test_deleting_from_the_photo_page_asks_first_and_keeps_the_photo_until_confirmed(client, user):
    photo = make_photo(user, status="done", label="kue_lapis")
    client.force_login(user)
    delete_url = reverse("photo-delete", args=[photo.pk])

    page = client.get(photo.get_absolute_url()).content.decode()
    confirm = client.get(delete_url)

    assert f'href="{delete_url}"' in page and f'action="{delete_url}"' not in page
    assert confirm.status_code == 200
    assert "cannot be undone" in confirm.content.decode()
    assert '<form method="post">' in confirm.content.decode()
    assert Photo.objects.filter(pk=photo.pk).exists()


def test_when_the_model_is_unsure_the_page_says_so_instead_of_naming_a_cake(client, user, settings):
    settings.UNSURE_BELOW = 0.6
    sure = make_photo(user, status="done", label="kue_lapis", confidence=0.9)
    unsure = make_photo(user, status="done", label="kue_serabi", confidence=0.41)
    client.force_login(user)

    sure_page = client.get(sure.get_absolute_url()).content.decode()
    unsure_page = client.get(unsure.get_absolute_url()).content.decode()

    assert "90% sure" in sure_page and "Not sure" not in sure_page
    assert "Not sure. The best guess is" in unsure_page and "only at 41%" in unsure_page
    assert "% sure</span>" not in unsure_page
    gallery = client.get(reverse("gallery")).content.decode()
    assert "Not sure: Kue Serabi? · 41%" in gallery and "Kue Lapis · 90%" in gallery


def test_without_javascript_a_page_with_photos_in_the_queue_offers_a_reload(client, user):
    """(Not a timed refresh: that would reload under a screen reader's feet every few seconds.)"""
    refresh = '<a href="">reload this page</a>'
    queued = make_photo(user)
    client.force_login(user)

    assert refresh in client.get(queued.get_absolute_url()).content.decode()
    assert refresh in client.get(reverse("gallery")).content.decode()
    services.prediction_record(photo=queued, version_id=ModelVersion.objects.get(is_active=True).pk,
                               label="kue_lapis", probabilities={"kue_lapis": 1.0}, confidence=1.0,
                               inference_ms=5.0)
    assert refresh not in client.get(queued.get_absolute_url()).content.decode()
    assert refresh not in client.get(reverse("gallery")).content.decode()


def test_a_photo_being_classified_is_shown_as_on_its_way_like_a_queued_one(client, user):
    """The page keeps asking for the result (and offers a reload without JavaScript) until it is there."""
    photo = make_photo(user)
    services.photo_start(photo)
    client.force_login(user)

    page = client.get(photo.get_absolute_url()).content.decode()
    gallery = client.get(reverse("gallery")).content.decode()

    assert 'data-status="processing" data-pending' in page and "Being classified…" in page
    assert '<a href="">reload this page</a>' in page and '<a href="">reload this page</a>' in gallery
    assert f'data-photo="{photo.pk}" data-pending' in gallery


def test_a_photo_waiting_longer_than_usual_says_so_and_that_its_result_still_comes(client, user):
    """A stopped worker, or a long backlog: "Waiting…" for ever would look broken."""
    from datetime import timedelta

    from django.utils import timezone

    photo = make_photo(user)
    client.force_login(user)
    fresh = client.get(photo.get_absolute_url()).content.decode()
    Photo.objects.filter(pk=photo.pk).update(waiting_since=timezone.now() - timedelta(minutes=3))

    late = client.get(photo.get_absolute_url()).content.decode()
    polled = client.get("/photos/status/", {"ids": photo.pk, "view": "result"}).json()["photos"][0]["html"]

    assert "longer than usual" not in fresh and "data-late" not in fresh
    for html in (late, polled):
        assert "data-pending data-late" in html and "Waiting…" in html
        assert "This is taking longer than usual" in " ".join(html.split())


def test_a_photo_is_late_from_when_it_began_to_wait_not_from_its_upload_or_a_resend(client, user, settings):
    """Retried a day after its upload, a photo is not late at once; sent again by the sweep while it
    waits (a lost worker, the broker down), it stays late: it has waited all that time."""
    from datetime import timedelta

    from django.utils import timezone

    long_ago = timezone.now() - timedelta(days=1)
    retried, resent = make_photo(user, status="failed"), make_photo(user)
    Photo.objects.filter(pk__in=[retried.pk, resent.pk]).update(created=long_ago, updated=long_ago,
                                                                  waiting_since=long_ago)
    client.force_login(user)

    services.photo_retry(retried)
    settings.REQUEUE_AFTER_S = 60
    assert services.stuck_photos_requeue() == [resent.pk]  # (its `updated` moves: it is sent again)

    pages = {photo.pk: client.get(photo.get_absolute_url()).content.decode() for photo in (retried, resent)}
    assert 'data-status="queued" data-pending\n' in pages[retried.pk]
    assert "longer than usual" not in pages[retried.pk]
    assert "data-pending data-late" in pages[resent.pk]


def test_a_photo_whose_file_is_gone_is_a_404_and_one_lost_from_the_disk_is_logged(client, user, caplog,
                                                                                   monkeypatch):
    """Deleted between reading its row and opening its file: a plain 404. Its row still there
    (a restore without the files): the same 404 for the visitor, and an error in the log."""
    from classifier import selectors

    lost, deleted = make_photo(user), make_photo(user)
    client.force_login(user)
    name = lost.image.name
    lost.image.delete(save=False)
    deleted.image.delete(save=False)
    photo_for_user = selectors.photo_for_user

    def read_then_deleted(viewer, pk, **kwargs):  # the row read, then the photo deleted elsewhere
        photo = photo_for_user(viewer, pk, **kwargs)
        if pk == deleted.pk:
            Photo.objects.filter(pk=pk).delete()
        return photo

    monkeypatch.setattr(selectors, "photo_for_user", read_then_deleted)

    assert client.get(reverse("photo-image", args=[lost.pk])).status_code == 404
    assert client.get(reverse("photo-image", args=[deleted.pk])).status_code == 404
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert errors == [f"photo {lost.pk}: its image file {name} is missing"]


def test_the_landing_page_shows_each_cake_with_a_photo_and_a_line_about_it(client):
    page = client.get(reverse("home")).content.decode()

    version = ModelVersion.objects.get(is_active=True)
    for label in version.labels:
        assert f'alt="A photo of {label["name"]}"' in page
        assert f'/static/img/cakes/{label["slug"]}.jpg' in page
    assert page.count('<li class="cake card">') == 8 and "palm-sugar syrup" in page


def test_the_upload_page_offers_drag_and_drop_and_works_without_javascript(client, user):
    client.force_login(user)

    page = client.get(reverse("upload")).content.decode()

    assert "data-upload" in page and 'class="dropzone"' in page and "js/upload.js" in page
    assert 'type="file"' in page and "multiple" in page and 'enctype="multipart/form-data"' in page


def test_the_review_queue_explains_its_keys_and_numbers_the_cakes(client, user):
    make_photo(user, status="done", label="kue_lapis", confidence=0.5)
    client.force_login(user)

    page = client.get(reverse("review")).content.decode()

    version = ModelVersion.objects.get(is_active=True)
    assert 'data-labels="' + ",".join(label["slug"] for label in version.labels) + '"' in page
    assert "<kbd>1</kbd> Kue Dadar Gulung" in page and "js/review.js" in page
    assert 'tabindex="0" data-prediction="kue_lapis"' in page


def test_photo_permissions_without_staff_status_give_no_access_to_others_photos(client, django_user_model,
                                                                             other_user):
    """The model permissions alone (granted by mistake, or left from a former staff role) are not
    enough: acting on others' photos needs staff status too, on the pages and in the API."""
    from django.contrib.auth.models import Permission
    from rest_framework.test import APIClient

    member = django_user_model.objects.create_user("former", password="x-kue-2026-x")
    member.user_permissions.add(*Permission.objects.filter(codename__in=[
        "view_photo", "change_photo", "delete_photo"]))
    photo = make_photo(other_user, status="done", label="kue_lapis")
    client.force_login(member)
    api = APIClient()
    api.force_authenticate(member)

    assert client.get(photo.get_absolute_url()).status_code == 404
    gallery = client.get(reverse("gallery"))
    assert gallery.context["cards"] == [] and "<h1>My photos</h1>" in gallery.content.decode()
    assert client.get(reverse("review")).context["cards"] == []
    assert client.post(reverse("photo-feedback", args=[photo.pk]), {"label": "kue_lapis"}).status_code == 404
    assert api.get("/api/photos/").json()["count"] == 0
    assert api.delete(f"/api/photos/{photo.pk}/").status_code == 404
    assert Photo.objects.filter(pk=photo.pk).exists()


def test_a_photo_that_is_gone_gets_the_sites_own_not_found_page(client, user):
    photo = make_photo(user)
    url = photo.get_absolute_url()
    services.photo_delete(photo)
    client.force_login(user)

    response = client.get(url)

    page = response.content.decode()
    assert response.status_code == 404
    assert "<h1>Not found</h1>" in page and "A photo deleted (perhaps in another tab) is gone" in page
    assert 'href="/photos/">My photos</a>' in page and "Signed in as <strong>ayu</strong>" in page


def test_an_answer_sent_after_the_session_ended_leads_back_to_the_photo_once_logged_in(client, user):
    """The login page sends the user back to the form's address with a GET: the photo, not a 405."""
    photo = make_photo(user, status="done", label="kue_lapis")

    response = client.post(reverse("photo-feedback", args=[photo.pk]), {"label": "kue_lapis"})
    login = response["Location"]
    page = client.post(login, {"username": "ayu", "password": "kue-lapis-2026"}, follow=True)

    assert login == f"/accounts/login/?next=/photos/{photo.pk}/feedback/"
    assert page.status_code == 200 and page.redirect_chain[-1][0] == photo.get_absolute_url()
    assert "Nothing was changed (you were signed out" in page.content.decode()
    photo.refresh_from_db()
    assert not hasattr(photo, "feedback")


@pytest.mark.parametrize("cookie, shown", [
    ("Asia/Jakarta", "7 Dec 2026 03:30 WIB"),
    ("Asia/Jayapura", "7 Dec 2026 05:30 WIT"),
    ("Europe/Amsterdam", "6 Dec 2026 21:30 CET"),
    (None, "6 Dec 2026 20:30 UTC"),  # a browser that named no zone (yet)
    ("Nowhere/Town", "6 Dec 2026 20:30 UTC"),
    ("../../../etc/passwd", "6 Dec 2026 20:30 UTC"),
])
def test_the_photo_page_gives_the_upload_time_in_the_time_zone_the_browser_names(client, user, cookie, shown):
    photo = make_photo(user, label="kue_lapis")
    Photo.objects.filter(pk=photo.pk).update(created=datetime(2026, 12, 6, 20, 30, tzinfo=UTC))
    if cookie is not None:
        client.cookies["tz"] = cookie
    client.force_login(user)

    page = client.get(reverse("photo-detail", args=[photo.pk])).content.decode()

    assert f"uploaded {shown}" in page


def test_the_api_answers_in_utc_whatever_time_zone_the_browser_names(client, user):
    photo = make_photo(user, label="kue_lapis")
    Photo.objects.filter(pk=photo.pk).update(created=datetime(2026, 12, 6, 20, 30, tzinfo=UTC))
    client.cookies["tz"] = "Asia/Jakarta"
    client.force_login(user)

    answer = client.get(f"/api/photos/{photo.pk}/").json()

    assert answer["created"] == "2026-12-06T20:30:00Z"


def test_what_a_signed_in_user_is_shown_is_never_cached_but_a_photo_file_is_for_them_a_day(client, user):
    """Someone at the same computer after them, pressing Back, must not see their photos; nor may a
    shared cache keep them. A photo's file, unchanging, is kept a day by their own browser only."""
    photo = make_photo(user, "done", "kue_lapis")
    client.force_login(user)

    for path in ("/photos/", f"/photos/{photo.pk}/", "/review/", "/upload/", "/api/photos/",
                 f"/photos/status/?ids={photo.pk}"):
        cache_control = client.get(path)["Cache-Control"]
        assert {"private", "no-store"} <= set(cache_control.replace(" ", "").split(",")), path
    assert client.get(f"/photos/{photo.pk}/image/")["Cache-Control"] == "private, max-age=86400"
    client.logout()
    by_token = client.get("/api/photos/", headers={"Authorization": f"Token {api_token(user)}"})
    assert by_token.status_code == 200 and "no-store" in by_token["Cache-Control"]
    assert not client.get("/").has_header("Cache-Control")  # (a visitor's: nothing of anyone's)


def test_the_menu_marks_the_page_it_is_on_and_the_upload_page_gives_the_limits_before_a_file_is_picked(
        client, user, settings):
    settings.MAX_FILES_PER_UPLOAD, settings.MAX_UPLOAD_BYTES = 20, 15 * 1024 * 1024
    client.force_login(user)

    gallery = client.get(reverse("gallery")).content.decode()
    upload = client.get(reverse("upload")).content.decode()

    assert f'<a href="{reverse("gallery")}" aria-current="page">My photos</a>' in gallery
    assert gallery.count('aria-current="page"') == 1
    assert f'<a href="{reverse("upload")}" aria-current="page">Upload</a>' in upload
    # (the page's script sends any number, one a request; the form without it, 20 together)
    assert "15.0\xa0MB each.<noscript> Up to 20 at once (without JavaScript).</noscript>" in upload


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_photos_waiting_through_the_upgrade_wait_since_their_upload_and_new_ones_since_stored(user):
    """Migration 0028: photos queued or processing then keep their wait (from upload, as before);
    those settled have none; a photo stored afterwards gets the database's time."""
    from datetime import timedelta

    from django.utils import timezone

    with migrated_back("0027_photo_state_only") as apps:  # rows as they were then
        old = apps.get_model("classifier", "Photo")
        photos = [old.objects.create(owner_id=user.pk, image=f"photos/{i}.png", image_format="png",
                                     sha256=f"{i}" * 64, width=48, height=36, status=status)
                  for i, status in enumerate(["queued", "processing", "done"])]
        old.objects.filter(pk=photos[0].pk).update(created=timezone.now() - timedelta(hours=1))
    stored = make_photo(user)

    since = dict(Photo.objects.values_list("pk", "waiting_since"))
    created = dict(Photo.objects.values_list("pk", "created"))
    assert since[photos[0].pk] == created[photos[0].pk] and since[photos[1].pk] == created[photos[1].pk]
    assert since[photos[2].pk] is None
    assert abs(since[stored.pk] - created[stored.pk]) < timedelta(seconds=5)
