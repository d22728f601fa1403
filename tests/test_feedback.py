"""Confirming and correcting labels on the website, the review queue and the feedback counters."""

import re
import threading

import pytest
from django.db import connection
from django.http import Http404
from django.urls import reverse
from rest_framework.test import APIClient

from classifier import selectors, services
from classifier.models import Feedback, ModelVersion, Photo
from tests.conftest import make_photo, migrated_back
from tests.test_api_photos import needs_postgresql

pytestmark = pytest.mark.django_db


def test_the_owner_confirms_a_prediction_from_the_photo_page(client, user):
    photo = make_photo(user, status="done", label="kue_klepon", confidence=0.8)
    client.force_login(user)

    page = client.get(photo.get_absolute_url()).content.decode()
    response = client.post(reverse("photo-feedback", args=[photo.pk]),
                           {"label": "kue_klepon", "next": photo.get_absolute_url() + "#answer"}, follow=True)

    assert "Yes, it is Kue Klepon" in page
    # It comes back to the answer, which takes the focus, not to the page's top.
    assert f'name="next" value="/photos/{photo.pk}/#answer"' in page
    assert '<h2 id="answer" tabindex="-1">' in page
    assert response.redirect_chain == [(f"/photos/{photo.pk}/#answer", 302)]
    feedback = Feedback.objects.get(photo=photo)
    assert (feedback.label, feedback.is_correction, feedback.user) == ("kue_klepon", False, user)
    assert "Your answer: <strong>Kue Klepon</strong>" in response.content.decode()
    # said once: no "Yes" again, which looked as if the answer had not been saved; it can be changed
    assert "Yes, it is Kue Klepon" not in response.content.decode()
    assert f'<label for="label-{photo.pk}">Change it to</label>' in response.content.decode()


def test_an_answer_from_a_page_opened_before_signing_in_again_is_refused_with_what_to_do(user):
    import re

    from django.test import Client

    def form_token(page) -> str:
        return re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.content.decode()).group(1)

    def log_in():  # (a real login: it gives the browser a new CSRF secret)
        token = form_token(tab.get("/accounts/login/"))
        tab.post("/accounts/login/", {"username": user.username, "password": "kue-lapis-2026",
                                      "csrfmiddlewaretoken": token})

    photo = make_photo(user, status="done", label="kue_klepon", confidence=0.8)
    tab = Client(enforce_csrf_checks=True)
    log_in()
    token = form_token(tab.get(photo.get_absolute_url()))
    tab.logout()
    log_in()  # in another tab

    stale = tab.post(reverse("photo-feedback", args=[photo.pk]),
                     {"label": "kue_klepon", "next": photo.get_absolute_url(), "csrfmiddlewaretoken": token})

    assert stale.status_code == 403 and "This page was out of date" in stale.content.decode()
    assert "Go back, reload the page, and send the form again." in stale.content.decode()
    assert not Feedback.objects.filter(photo=photo).exists()


def test_a_correction_replaces_the_earlier_answer(client, user):
    photo = make_photo(user, status="done", label="kue_serabi")
    client.force_login(user)
    url = reverse("photo-feedback", args=[photo.pk])

    client.post(url, {"label": "kue_serabi"})
    page = client.post(url, {"label": "kue_lumpur", "next": photo.get_absolute_url()}, follow=True)

    feedback = Feedback.objects.get(photo=photo)
    assert (feedback.label, feedback.predicted_label) == ("kue_lumpur", "kue_serabi")
    assert feedback.is_correction
    assert '<option value="kue_lumpur" selected>' in page.content.decode()  # the answer shown, to change


def test_a_corrected_photos_page_leads_with_the_answer_and_gives_the_models_guess_second(client, user):
    photo = make_photo(user, status="done", label="kue_serabi", confidence=0.8)
    client.force_login(user)
    before = client.get(photo.get_absolute_url()).content.decode()

    page = client.post(reverse("photo-feedback", args=[photo.pk]), {"correction": "kue_lumpur",
                       "next": photo.get_absolute_url()}, follow=True).content.decode()

    assert f"<title>Photo {photo.pk}: Kue Serabi · Cakesite</title>" in before
    assert ">Prediction</h1>" in before
    assert f"<title>Photo {photo.pk}: Kue Lumpur · Cakesite</title>" in page and ">Answer</h1>" in page
    result = page.split('id="result"')[1]
    assert (result.index("Kue Lumpur") < result.index("What the model said:")
            < result.index('<span class="bar-label">Kue Serabi</span>'))
    assert "80% sure</span>" not in result  # (the guess is no longer the headline)
    assert ">Change the answer</h2>" in result and "Is it right?" not in result


def test_none_of_these_is_thanked_for_what_it_does(client, user):
    """Such photos are left out of training: the answer must not say it teaches the next version."""
    photo = make_photo(user, status="done", label="kue_serabi")
    client.force_login(user)

    page = client.post(reverse("photo-feedback", args=[photo.pk]),
                       {"correction": "none", "next": photo.get_absolute_url()}, follow=True).content.decode()

    assert "noted as none of our cakes, so the next model version does not learn from this photo" in page
    assert "will teach" not in page and '<option value="none" selected>' in page


def test_yes_wins_over_a_cake_chosen_in_the_list_and_save_sends_the_chosen_one(client, user):
    photo = make_photo(user, status="done", label="kue_lapis")
    client.force_login(user)
    url = reverse("photo-feedback", args=[photo.pk])

    client.post(url, {"label": "kue_lapis", "correction": "kue_klepon"})  # chose, then clicked Yes
    confirmed = Feedback.objects.get(photo=photo)
    client.post(url, {"correction": "kue_klepon"})  # chose, then clicked Save

    assert (confirmed.label, confirmed.is_correction) == ("kue_lapis", False)
    corrected = Feedback.objects.get(photo=photo)
    assert (corrected.label, corrected.is_correction) == ("kue_klepon", True)


def test_an_unknown_label_is_refused_with_a_message(client, user):
    photo = make_photo(user, status="done", label="kue_serabi")
    client.force_login(user)

    response = client.post(reverse("photo-feedback", args=[photo.pk]), {"label": "brownies"}, follow=True)

    assert "Unknown cake" in response.content.decode()
    assert not Feedback.objects.exists()


def test_only_the_owner_and_staff_allowed_to_change_photos_give_feedback(client, other_user, staff, user):
    from django.contrib.auth.models import Permission

    photo = make_photo(user, status="done", label="kue_lapis")
    url = reverse("photo-feedback", args=[photo.pk])

    client.force_login(other_user)
    assert client.post(url, {"label": "kue_lapis"}).status_code == 404
    client.force_login(staff)  # may view everyone's photos, not change them
    assert client.post(url, {"label": "kue_lapis"}).status_code == 403
    assert not Feedback.objects.exists()
    staff.user_permissions.add(Permission.objects.get(codename="change_photo"))
    assert client.post(url, {"label": "kue_lumpur"}).status_code == 302
    assert Feedback.objects.get(photo=photo).user == staff


def test_feedback_never_redirects_off_site(client, user):
    photo = make_photo(user, status="done", label="kue_lapis")
    client.force_login(user)

    response = client.post(reverse("photo-feedback", args=[photo.pk]),
                           {"label": "kue_lapis", "next": "https://evil.example/"})

    assert response["Location"] == photo.get_absolute_url()


def test_the_review_queue_puts_the_least_certain_photos_first(client, user, other_user):
    sure = make_photo(user, status="done", label="kue_lapis", confidence=0.97)
    torn = make_photo(user, status="done", label="kue_serabi", confidence=0.45)  # 0.45 vs 0.01: margin .44
    reviewed = make_photo(user, status="done", label="kue_klepon", confidence=0.3)
    Feedback.objects.create(photo=reviewed, user=user, label="kue_klepon", is_correction=False)
    make_photo(user)  # not classified yet
    make_photo(other_user, status="done", label="kue_lapis", confidence=0.2)
    client.force_login(user)

    response = client.get(reverse("review"))

    assert [c["photo"].pk for c in response.context["cards"]] == [torn.pk, sure.pk]
    assert 'Not sure: <span class="name">Kue Serabi?</span>' in response.content.decode()  # (0.45)
    assert '<p class="verdict"><span class="name">Kue Lapis?</span>' in response.content.decode()


def test_the_queue_shows_each_photos_second_guess_it_is_ordered_by(client, user):
    """Ordered by the gap between the two most likely cakes, the queue looked unsorted by the one
    figure it showed (85% before 84%): each card gives the second guess too."""
    from classifier.models import Prediction

    torn = make_photo(user, status="done", label="kue_lapis", confidence=0.85)
    Prediction.objects.filter(photo=torn).update(probabilities={"kue_lapis": 0.85, "kue_lumpur": 0.14,
                                                                "kue_klepon": 0.01})
    Photo.objects.filter(pk=torn.pk).update(margin=0.71)
    sure = make_photo(user, status="done", label="kue_serabi", confidence=0.84)  # 0.84 vs 0.01: margin .83
    client.force_login(user)

    page = client.get(reverse("review")).content.decode()

    assert [c["photo"].pk for c in client.get(reverse("review")).context["cards"]] == [torn.pk, sure.pk]
    assert '<span class="runner-up">or Kue Lumpur, 14%</span>' in page
    assert "its second guess comes closest to its first" in page


def test_an_answer_in_the_queue_comes_back_to_the_photo_after_it_not_to_the_top(client, user):
    """Photos skipped at the top of the queue stay there: scrolling past them after every answer
    would wear out anyone reviewing on a phone."""
    skipped, answered, after = (make_photo(user, status="done", label="kue_lapis", confidence=c)
                                for c in (0.40, 0.50, 0.60))
    client.force_login(user)
    page = client.get(reverse("review")).content.decode()
    assert f'id="review-{after.pk}"' in page
    assert f'name="next" value="/review/#review-{answered.pk}"' in page  # (the skipped one's form)
    assert f'name="next" value="/review/#review-{after.pk}"' in page
    assert 'name="next" value="/review/"' in page  # the last one's: no photo after it

    response = client.post(reverse("photo-feedback", args=[answered.pk]),
                           {"label": "kue_lapis", "next": f"/review/#review-{after.pk}"})

    assert response.status_code == 302 and response["Location"] == f"/review/#review-{after.pk}"
    assert f'id="review-{after.pk}"' in client.get(reverse("review")).content.decode()


def test_the_margin_is_the_gap_between_the_two_most_likely_cakes(user):
    photo = make_photo(user, status="done", label="kue_lapis", confidence=0.6)

    assert photo.predictions.get().margin == pytest.approx(0.59)


def test_the_counters_measure_the_active_models_accuracy_by_feedback(user):
    photos = [make_photo(user, status="done", label="kue_lapis") for _ in range(4)]
    make_photo(user)
    for photo, label in zip(photos[:3], ["kue_lapis", "kue_lapis", "kue_lumpur"]):
        Feedback.objects.create(photo=photo, user=user, label=label, predicted_label="kue_lapis",
                                is_correction=label != "kue_lapis",
                                model_version=photo.predictions.get().model_version)

    stats = selectors.feedback_stats(user)

    assert (stats["photos"], stats["reviewed"], stats["corrected"]) == (5, 3, 1)
    assert stats["per_version"] == [{"version": "kue-mobilenetv2", "reviewed": 3, "confirmed": 2,
                                     "accuracy": pytest.approx(2 / 3),
                                     "accuracy_low": pytest.approx(0.208, abs=1e-3),
                                     "accuracy_high": pytest.approx(0.939, abs=1e-3)}]


@pytest.mark.parametrize(("confirmed", "reviewed"), [(0, 1), (1, 2), (2, 2), (2, 3), (93, 100), (0, 50)])
def test_the_accuracys_interval_is_scipys_wilson_interval(confirmed, reviewed):
    from scipy.stats import binomtest

    expected = binomtest(confirmed, reviewed).proportion_ci(confidence_level=0.95, method="wilson")

    assert selectors.accuracy_interval(confirmed, reviewed) == {
        "accuracy_low": pytest.approx(expected.low, abs=1e-9),
        "accuracy_high": pytest.approx(expected.high, abs=1e-9)}


@pytest.mark.parametrize("reviewed", [5, 10, 13, 17, 10**9])
def test_the_accuracys_interval_reaches_0_and_1_exactly_at_none_and_all_confirmed(reviewed):
    """Not a rounding error short of them, which the percent filter would show as 1 and 99."""
    assert selectors.accuracy_interval(0, reviewed)["accuracy_low"] == 0.0
    assert selectors.accuracy_interval(reviewed, reviewed)["accuracy_high"] == 1.0


def test_the_review_page_s_interval_holds_the_accuracy_when_every_answer_confirmed(client, user):
    for _ in range(13):
        photo = make_photo(user, status="done", label="kue_lapis")
        services.feedback_record(photo=photo, user=user, label="kue_lapis")
    client.force_login(user)

    page = client.get(reverse("review")).content.decode()

    assert "100% (13 of 13; 95% confidence interval 77 to 100%)" in page


def test_the_review_page_says_how_far_a_few_answers_are_from_telling_the_accuracy(client, user):
    """"50% (1 of 2)" after two answers reads as a verdict on the model; its interval says it is not."""
    right, wrong = (make_photo(user, status="done", label="kue_lapis") for _ in range(2))
    services.feedback_record(photo=right, user=user, label="kue_lapis")
    services.feedback_record(photo=wrong, user=user, label="kue_lumpur")
    client.force_login(user)

    page = client.get(reverse("review")).content.decode()

    assert "50% (1 of 2; 95% confidence interval 9 to 91%)" in page
    assert ("Most answers are for the photos it was least sure of: on the others it probably does "
            "better.") in page


def test_a_photo_without_a_result_cannot_be_confirmed_or_corrected(client, user):
    """Its answer would count as a correction of a label it never had."""
    queued, failed = make_photo(user), make_photo(user, status="failed")
    client.force_login(user)

    page = client.post(reverse("photo-feedback", args=[queued.pk]), {"label": "kue_lapis"}, follow=True)
    api_client = APIClient()
    api_client.force_authenticate(user)
    api = api_client.put(f"/api/photos/{failed.pk}/feedback/", {"label": "none"}, format="json")

    assert "no result yet" in page.content.decode()
    assert api.status_code == 400 and "no result yet" in str(api.json()["error"]["fields"])
    assert not Feedback.objects.exists()


def test_an_answer_for_a_photo_deleted_since_it_was_read_is_a_404_and_stores_nothing(user):
    photo = make_photo(user, status="done", label="kue_lapis")
    Photo.objects.filter(pk=photo.pk).delete()  # by its owner in another tab, as the answer arrives

    with pytest.raises(Http404):
        services.feedback_record(photo=photo, user=user, label="kue_lumpur")
    assert not Feedback.objects.exists()


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_answers_stored_before_their_photo_had_a_result_are_repaired_by_a_migration(user):
    # rows as they were then, through the models as they were then (later fields do not exist yet)
    with migrated_back("0007_prediction_heatmap") as old:
        version = old.get_model("classifier", "ModelVersion").objects.get(is_active=True)
        photos = [old.get_model("classifier", "Photo").objects.create(
            owner_id=user.pk, image=f"photos/{status}.png", image_format="png", sha256=status * 8,
            width=48, height=36, status=status) for status in ("done", "queued")]
        old.get_model("classifier", "Prediction").objects.create(
            photo=photos[0], model_version=version, label="kue_lapis", confidence=0.9,
            probabilities={"kue_lapis": 0.9}, inference_ms=5.0)
        for photo in photos:  # as feedback_record stored them then
            old.get_model("classifier", "Feedback").objects.create(
                photo=photo, user_id=user.pk, label="kue_lapis", predicted_label="", is_correction=True)

    repaired = Feedback.objects.get()
    assert repaired.photo_id == photos[0].pk
    assert (repaired.predicted_label, repaired.is_correction) == ("kue_lapis", False)
    assert repaired.model_version_id == version.pk


def classified(owner, probabilities: dict) -> Photo:
    """A done photo whose prediction has exactly these probabilities (the rest of the cakes 0)."""
    photo = make_photo(owner)
    version = ModelVersion.objects.get(is_active=True)
    label = max(probabilities, key=probabilities.get)
    services.prediction_record(photo=photo, version_id=version.pk, probabilities=probabilities, label=label,
                               confidence=probabilities[label], inference_ms=5.0)
    return photo


def test_the_queue_orders_by_the_margin_between_the_top_two_not_by_confidence_or_age(client, user):
    torn = classified(user, {"kue_lapis": 0.60, "kue_lumpur": 0.35, "kue_klepon": 0.05})  # margin .25
    unsure = classified(user, {"kue_serabi": 0.50, "kue_klepon": 0.05})  # less confident, margin .45
    sure = classified(user, {"kue_risoles": 0.97, "kue_lapis": 0.03})  # the newest
    client.force_login(user)

    cards = client.get(reverse("review")).context["cards"]

    assert [c["photo"].pk for c in cards] == [torn.pk, unsure.pk, sure.pk]


def test_the_counters_count_only_the_photos_the_user_may_see(user, other_user):
    mine = make_photo(user, status="done", label="kue_lapis")
    theirs = [make_photo(other_user, status="done", label="kue_lapis") for _ in range(2)]
    Feedback.objects.create(photo=mine, user=user, label="kue_lapis", is_correction=False)
    for photo in theirs:
        Feedback.objects.create(photo=photo, user=other_user, label="kue_lumpur", is_correction=True)

    stats = selectors.feedback_stats(user)

    assert (stats["photos"], stats["reviewed"], stats["corrected"]) == (1, 1, 0)


def test_the_gallery_shows_and_filters_on_the_answer_once_there_is_one(client, user):
    from classifier import services

    corrected = make_photo(user, status="done", label="kue_putri_salju", confidence=0.57)
    nothing = make_photo(user, status="done", label="kue_klepon", confidence=0.86)
    unanswered = make_photo(user, status="done", label="kue_serabi", confidence=0.9)
    confirmed = make_photo(user, status="done", label="kue_lapis", confidence=0.55)
    services.feedback_record(photo=corrected, user=user, label="kue_serabi")
    services.feedback_record(photo=nothing, user=user, label="none")
    services.feedback_record(photo=confirmed, user=user, label="kue_lapis")
    client.force_login(user)

    page = client.get("/photos/").content.decode()
    serabi = client.get("/photos/", {"label": "kue_serabi"}).content.decode()
    klepon = client.get("/photos/", {"label": "kue_klepon"}).content.decode()

    assert "Kue Serabi · corrected" in page and "None of these · corrected" in page  # as the filter says
    assert "Kue Lapis · confirmed" in page and "Not sure: Kue Lapis?" not in page
    assert "Kue Putri Salju ·" not in page and "Kue Klepon ·" not in page  # (the filter lists them)
    assert f'data-photo="{corrected.pk}"' in serabi and f'data-photo="{unanswered.pk}"' in serabi
    assert f'data-photo="{nothing.pk}"' not in klepon  # answered: none of these cakes

    def shown(**filters) -> set[int]:
        page = client.get("/photos/", filters).content.decode()
        return {int(pk) for pk in re.findall(r'data-photo="(\d+)"', page)}

    assert shown(answer="unanswered") == {unanswered.pk}
    assert shown(answer="confirmed") == {confirmed.pk}
    assert shown(answer="corrected") == {corrected.pk, nothing.pk}  # to another cake, or to none
    assert shown(label="none") == {nothing.pk}
    assert shown(label="kue_serabi", answer="corrected") == {corrected.pk}
    assert shown(answer="maybe") == {corrected.pk, nothing.pk, unanswered.pk, confirmed.pk}  # (no such one)
    assert shown(label="kue_serabi", answer="maybe") == {corrected.pk, unanswered.pk}  # (the cake filters)
    filtered = client.get("/photos/", {"answer": "unanswered"}).content.decode()
    assert '<option value="unanswered" selected>not answered yet</option>' in filtered
    assert 'href="/photos/delete/?answer=unanswered&amp;page=1"' in filtered  # the same photos to delete
    to_delete = client.get("/photos/delete/?answer=unanswered").content.decode()
    assert re.findall(r'name="photo" value="(\d+)"', to_delete) == [str(unanswered.pk)]


def test_an_answer_by_staff_is_not_called_the_owners(client, user, django_user_model):
    from classifier import services

    photo = make_photo(user, status="done", label="kue_lapis")
    chef = django_user_model.objects.create_superuser("chef", password="bika-ambon-77")
    services.feedback_record(photo=photo, user=chef, label="kue_lumpur")
    client.force_login(user)

    page = client.get(photo.get_absolute_url()).content.decode()
    review = client.get("/review/").content.decode()

    assert "Answer by staff: <strong>Kue Lumpur</strong>" in page and "Your answer:" not in page
    assert "chef" not in page  # staff's user names are theirs to give
    assert "on your answered photos" in review
    assert as_api(user).get(f"/api/photos/{photo.pk}/").json()["feedback"]["user"] is None
    client.force_login(chef)
    assert "on everyone's answered photos" in client.get("/review/").content.decode()
    other = django_user_model.objects.create_superuser("pak-budi", password="bika-ambon-77")
    client.force_login(other)
    seen = client.get(photo.get_absolute_url()).content.decode()
    assert "Answer by chef: <strong>Kue Lumpur</strong>" in seen
    assert as_api(other).get(f"/api/photos/{photo.pk}/").json()["feedback"]["user"] == "chef"


def as_api(user):
    from rest_framework.test import APIClient

    client = APIClient()
    client.force_authenticate(user)
    return client


def test_staff_who_may_only_view_photos_get_no_answer_form_on_others_photos(client, user, staff):
    """They would only be refused on sending it; the owner gets the form, on the photo's page and in
    the review queue."""
    photo = make_photo(user, status="done", label="kue_lapis", confidence=0.5)
    form = f'action="{reverse("photo-feedback", args=[photo.pk])}"'

    client.force_login(staff)
    staff_page = client.get(photo.get_absolute_url()).content.decode()
    staff_queue = client.get(reverse("review")).content.decode()
    client.force_login(user)
    owner_page = client.get(photo.get_absolute_url()).content.decode()
    owner_queue = client.get(reverse("review")).content.decode()

    assert "Kue Lapis" in staff_page and f'href="/photos/{photo.pk}/"' in staff_queue  # they see it
    assert form not in staff_page and "Is it right?" not in staff_page
    assert form not in staff_queue and "Yes, it is Kue Lapis" not in staff_queue
    assert form in owner_page and "Is it right?" in owner_page
    assert form in owner_queue and "Yes, it is Kue Lapis" in owner_queue


@pytest.mark.django_db(transaction=True, serialized_rollback=True)  # two requests at once: threads
def test_an_answer_racing_the_photos_deletion_is_never_a_server_error(client, user, monkeypatch):
    """The owner deletes the photo in one tab while the answer from another is being written: the
    answer is stored and goes with the photo, or finds it gone (404); never a 500 from an answer
    written for a photo deleted under it."""
    needs_postgresql()
    photo = make_photo(user, status="done", label="kue_lapis")
    answer_checked, deleted = threading.Event(), threading.Event()
    latest_prediction = selectors.latest_prediction

    def answer_checked_then_slow(photo_):  # the answer has read the photo; the deletion comes now
        if threading.current_thread() is answering:
            answer_checked.set()
            deleted.wait(2)  # it cannot come while the answer holds the photo
        return latest_prediction(photo_)

    monkeypatch.setattr(selectors, "latest_prediction", answer_checked_then_slow)
    outcomes = {}

    def request(name, path, data):
        tab = type(client)()
        tab.force_login(user)
        try:
            outcomes[name] = tab.post(path, data).status_code
        except Exception as exc:  # noqa: BLE001 - the outcome under test
            outcomes[name] = exc
        finally:
            if name == "delete":
                deleted.set()
            connection.close()

    answering = threading.Thread(target=request, args=(
        "answer", reverse("photo-feedback", args=[photo.pk]), {"label": "kue_lumpur"}))
    deleting = threading.Thread(target=request, args=("delete", reverse("photo-delete", args=[photo.pk]), {}))
    answering.start()
    assert answer_checked.wait(10)
    deleting.start()
    answering.join(30)
    deleting.join(30)

    assert outcomes["answer"] in (302, 404) and outcomes["delete"] == 302, outcomes
    assert not Photo.objects.filter(pk=photo.pk).exists() and not Feedback.objects.exists()
