"""Reads: what a user may see, filtered and ordered. Views and the API call these."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path, PurePosixPath
from statistics import NormalDist

from django.conf import settings
from django.core import signing
from django.core.exceptions import PermissionDenied
from django.core.files.storage import default_storage
from django.core.paginator import Page, Paginator
from django.db import connection
from django.db.models import Count, Exists, F, FileField, Max, Min, OuterRef, Prefetch, Q, QuerySet, Subquery
from django.http import Http404
from django.shortcuts import get_object_or_404
from django.utils import timezone
from django.utils.crypto import constant_time_compare, salted_hmac
from django.utils.translation import gettext as _
from django_otp.plugins.otp_email.models import EmailDevice
from django_otp.plugins.otp_static.models import StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from classifier.models import (
    AccountSettings,
    ApiToken,
    Feedback,
    ModelVersion,
    PendingEmail,
    Photo,
    Prediction,
    TrainingRun,
)
from training.runtime import CONFIG_FILE, LABELS_FILE


def latest_predictions() -> QuerySet[Prediction]:
    return Prediction.objects.select_related("model_version").order_by("-created", "-id")


def unanswered() -> Exists:
    """The photo (of an outer Photo query) has no answer. Negated Exists (NOT EXISTS: an anti-join
    the planner estimates right) instead of feedback__isnull=True (a LEFT JOIN ... IS NULL
    PostgreSQL estimates at one row)."""
    return ~Exists(Feedback.objects.filter(photo=OuterRef("pk")))


def shows_label(label: str) -> Q:
    """The photo shows `label`: its answer, where there is one, else its prediction's label (the
    photo's copy). An uncorrelated subquery (hashed once per query) for the answers, instead of a
    COALESCE evaluated for every photo."""
    answered = Feedback.objects.filter(label=label).values("photo_id")
    return Q(pk__in=answered) | (Q(predicted_label=label) & unanswered())


def photos_for_user(user, *, label: str | None = None, status: str | None = None, answer: str | None = None,
                    action: str = "view") -> QuerySet[Photo]:
    """The photos `user` may `action` ("view", "change" or "delete"), newest first, each with its
    predictions (latest first).

    Owners may do everything with their own photos; others' photos need staff status and the model
    permission (`classifier.view_photo` and so on, given through groups, implied for superusers).
    Checking staff status first spares ordinary users' requests the two permission queries.
    `label` filters on the cake the user sees: the answer given, where there is one (a photo
    answered "none of these" is no cake), else the latest prediction's label; `answer` on the
    answer: "unanswered" (none yet), "confirmed" or "corrected" (to another cake or to none).
    """
    if may_act_on_others_photos(user, action):
        photos = Photo.objects.all()
    else:
        photos = Photo.objects.filter(owner=user)
    if label:
        photos = photos.filter(shows_label(label))
    if status:
        photos = photos.filter(status=status)
    if answer:
        photos = photos.filter(unanswered() if answer == "unanswered"
                               else Q(feedback__is_correction=answer == "corrected"))
    return with_results(photos)


def with_results(photos: QuerySet[Photo]) -> QuerySet[Photo]:
    """`photos` with what a photo's page shows: its owner, its answer, its predictions (latest first)."""
    return photos.select_related("owner", "feedback", "feedback__user").prefetch_related(
        Prefetch("predictions", queryset=latest_predictions(), to_attr="prediction_list")
    )


def photo_page(photos: QuerySet[Photo], number, size: int) -> tuple[Page, list[Photo]]:
    """Page `number` of `photos` (Django's get_page: a bad number gives the first or the last), and
    its photos: the page's ids first, then their rows, as the API pages (a deep page's OFFSET skips
    index entries, not rows joined to their owner and answer)."""
    page = Paginator(photos.values_list("pk", flat=True), size).get_page(number)
    return page, in_order(photos, list(page))


def id_text(text) -> bool:
    """Whether `text` (from a request) is an id: ASCII digits (str.isdigit also takes other
    scripts') that fit a 64-bit id column."""
    return isinstance(text, str) and text.isascii() and text.isdigit() and len(text) < 19


def in_order(queryset: QuerySet, ids: list[int]) -> list:
    """The rows of `queryset` with these ids, in the ids' order (a page's, read first: the site's
    pages and the API's lists); one deleted meanwhile is left out."""
    rows = queryset.in_bulk(ids)
    return [rows[pk] for pk in ids if pk in rows]


def own_photos(user) -> QuerySet[Photo]:
    """The photos `user` uploaded (whatever else staff may see), oldest first, with their results."""
    return with_results(Photo.objects.filter(owner=user).order_by("pk"))


def may_act_on_others_photos(user, action: str = "view") -> bool:
    """Whether `user` may `action` other users' photos: staff with the model permission."""
    return user.is_staff and user.has_perm(f"classifier.{action}_photo")


def may_act_on(user, photo: Photo, action: str) -> bool:
    """Whether `user` may `action` `photo`: its owner, or staff with the permission (what
    photo_for_user(action=...) lets through)."""
    return photo.owner_id == user.pk or may_act_on_others_photos(user, action)


def may_review(user, photo: Photo) -> bool:
    """Whether `user` may confirm or correct `photo`'s label, or classify it again."""
    return may_act_on(user, photo, "change")


def photo_for_user(user, pk: int, action: str = "view") -> Photo:
    """One photo the user may `action`, or 404: another user's photo is indistinguishable from none
    (but see refuse_if_visible)."""
    try:
        return get_object_or_404(photos_for_user(user, action=action), pk=pk)
    except Http404:
        refuse_if_visible(user, pk, action)
        raise


def refuse_if_visible(user, pk: int | set[int], action: str) -> None:
    """A 403 for a photo (or any of several) `user` may see but not `action` (staff allowed to view
    others' photos only): a 404 would deny what they can see."""
    matching = Q(pk=pk) if isinstance(pk, int) else Q(pk__in=pk)  # (pk= takes ids past the column's range)
    if action != "view" and photos_for_user(user).filter(matching).exists():
        raise PermissionDenied(
            _("You may see other users' photos, but not delete them.") if action == "delete"
            else _("You may see other users' photos, but not answer or retry them."))


PHOTOS_DELETED_AT_ONCE = 100  # the most photos one request deletes (the website's page shows 24)


def photos_to_delete(user, ids: set[int]) -> set[int]:
    """The ids among `ids` of photos that `user` may delete. An id of no such photo is left out: gone
    (deleted in another tab, say) or another user's, which are no different (as photo_for_user's
    404); but one of a photo `user` may see and not delete (staff) is refused (refuse_if_visible)."""
    allowed = set(photos_for_user(user, action="delete").filter(pk__in=ids).prefetch_related(None)
                  .values_list("pk", flat=True))
    if missing := ids - allowed:
        refuse_if_visible(user, missing, "delete")
    return allowed


POLL_STEP_S = 0.02  # without notifications: how often a waiting request reads the photo's status


def photo_to_classify(photo_id: int) -> Photo | None:
    """The photo a classification task works on, or None once it is deleted; in the same query,
    `active_version_id` (None while no version is active) and `already_predicted`, whether a version
    has labelled it (a redelivered task, also after another version was activated meanwhile)."""
    active = ModelVersion.objects.filter(is_active=True)
    predicted = Prediction.objects.filter(photo=OuterRef("pk"))
    return Photo.objects.filter(pk=photo_id).annotate(
        active_version_id=Subquery(active.values("pk")[:1]), already_predicted=Exists(predicted),
    ).first()


def settled_channel(photo_id: int) -> str:
    """The PostgreSQL notification channel on which a photo's classification announces its end."""
    return f"photo_settled_{int(photo_id)}"


def photo_state(photo_id: int, photos: QuerySet[Photo] | None = None) -> tuple[datetime, str] | None:
    """(updated, status) of a photo, or None once it is gone (or not among `photos`, say the ones a
    user may see): one indexed query."""
    photos = Photo.objects.all() if photos is None else photos
    return photos.filter(pk=photo_id).values_list("updated", "status").first()


def photo_tag(photo_id: int, photos: QuerySet[Photo]) -> tuple[datetime, tuple] | None:
    """(updated, names) of a photo among `photos`, or None: one query. The names are those
    its representation shows that change without touching the photo (an account renamed or deleted,
    a model version renamed): its owner's, its answer's author's, its latest result's version's, as
    photo_names gives them of a photo already read."""
    version = latest_predictions().filter(photo=OuterRef("pk")).values("model_version__name")[:1]
    row = (photos.filter(pk=photo_id)
           .values_list("updated", "owner__username", "feedback__user__username", Subquery(version))
           .first())
    return None if row is None else (row[0], row[1:])


def photo_names(photo: Photo) -> tuple:
    """photo_tag's names, of a photo read with its results (with_results): no query."""
    feedback = getattr(photo, "feedback", None)
    prediction = latest_prediction(photo)
    return (photo.owner.username, feedback.user.username if feedback and feedback.user else None,
            prediction.model_version.name if prediction else None)


@contextmanager
def settling(photo_id: int, listen: bool = True) -> Iterator[Callable[[float], None]]:
    """Inside the block, `wait(seconds)` returns once the photo is done, failed or deleted, or when
    `seconds` have passed (the caller then reads the photo).

    On PostgreSQL (with `listen`) the block LISTENs first, so a status read inside it misses
    nothing, and `wait` sleeps until the notification that `services.announce_settled` sends in
    the transaction that settles the photo: no query while it waits. Elsewhere (SQLite in
    development, or inside a transaction, where LISTEN would only start at its commit) `wait`
    reads the status every POLL_STEP_S.
    """
    if not listen or connection.vendor != "postgresql" or connection.in_atomic_block:
        def poll(seconds: float) -> None:
            deadline = time.monotonic() + seconds
            while (left := deadline - time.monotonic()) > 0:
                time.sleep(min(POLL_STEP_S, left))
                state = photo_state(photo_id)
                if state is None or state[1] not in Photo.PENDING:
                    return

        yield poll
        return

    def notified(seconds: float) -> None:
        for note in connection.connection.notifies(timeout=seconds):
            if note.channel == channel:
                return

    channel = settled_channel(photo_id)
    with connection.cursor() as cursor:
        cursor.execute(f'LISTEN "{channel}"')
        try:
            yield notified
        finally:
            cursor.execute(f'UNLISTEN "{channel}"')
            # A notification that came while no one waited (during the status read, or after the
            # wait ended) stays queued on the connection, which the thread's next request reuses:
            # drop it, or that request's wait would end at once.
            for _ in connection.connection.notifies(timeout=0):
                pass


def as_just_created(photo: Photo) -> Photo:
    """`photo`, which the caller has just stored, marked as having no prediction and no feedback yet:
    showing it then needs no further query. (Its status is the one it was stored with.)"""
    photo.prediction_list = []
    Photo.feedback.related.set_cached_value(photo, None)
    return photo


def latest_prediction(photo: Photo) -> Prediction | None:
    predictions = getattr(photo, "prediction_list", None)
    if predictions is None:
        return latest_predictions().filter(photo=photo).first()
    return predictions[0] if predictions else None


def top_k(prediction: Prediction, k: int = 3) -> list[dict]:
    """The k most probable classes with display names, most probable first."""
    ranked = sorted(prediction.probabilities.items(), key=lambda kv: kv[1], reverse=True)[:k]
    return [{"slug": slug, "name": prediction.model_version.display_name(slug), "probability": p}
            for slug, p in ranked]


def active_version() -> ModelVersion | None:
    return ModelVersion.objects.filter(is_active=True).first()


def known_labels() -> list[dict]:
    """The active model's classes, for filters and forms."""
    version = active_version()
    return version.labels if version else []


def labelled_photos() -> list[tuple[int, str, bool, str, str]]:
    """(photo id, label, corrected?, sha256, the answering account's name) of every photo users
    confirmed or corrected to a known cake; not the answers of accounts staff disabled (an answer is
    read-only in the admin: disabling its author is how staff take back what an abuser taught)."""
    return list(
        Feedback.objects.exclude(label=Feedback.NONE).exclude(user__is_active=False).order_by("photo_id")
        .values_list("photo_id", "label", "is_correction", "photo__sha256", "user__username")
    )


def answers_learnt(version: ModelVersion) -> set[tuple[int, str]] | None:
    """The users' answers, as (photo id, label), that the run which made `version` trained on; none
    for a version made by hand (`training.train`, which reads no answers); None if unknown (its run
    predates the record, or was deleted)."""
    run = getattr(version, "training_run", None)
    if run is None:
        return None if made_by_a_run(version) is not False else set()
    trained = run.photos_used.get("trained")
    return None if trained is None else {(pk, label) for pk, label in trained}


def made_by_a_run(version: ModelVersion) -> bool | None:
    """Whether a training run made `version` (its folder's config records the retrain), run deleted
    since or not; None if its folder cannot be read."""
    try:
        config = json.loads((version.folder / "config.json").read_text())
    except (OSError, ValueError):
        return None
    return "retrain" in config if isinstance(config, dict) else None


def answers_since(version: ModelVersion) -> int | None:
    """Answers given or changed (to a cake or to "none of these") since the run that made `version`
    began, or since a version made by hand was registered; None if unknown."""
    run = TrainingRun.objects.filter(result_version=version).values_list("started", flat=True)[:1]
    if run:  # (the start alone, not the run's answers)
        since = run[0]
    elif made_by_a_run(version) is False:
        since = version.created
    else:
        return None
    return Feedback.objects.filter(updated__gte=since).count() if since else None


def review_queue_for_user(user) -> QuerySet[Photo]:
    """Classified photos with no feedback yet, least certain first (own; with permission: all).

    Uncertainty is the margin between the two most probable cakes: a photo the model nearly gave
    to another class is where it is most often wrong (bench.queue_order: four times as many wrong
    labels in the first 20 as in random order, and a better retrain from their answers at 20, not
    clearly at 10 or 40; entropy measured the same, within a photo).
    """
    # the photo's copy of its prediction's margin: the planner walks its index and stops at the page
    unanswered_photos = photos_for_user(user, status=Photo.Status.DONE).filter(unanswered())
    # (nulls last on SQLite too, as PostgreSQL's index gives them and queue_place counts them)
    return unanswered_photos.order_by(F("margin").asc(nulls_last=True), "-created", "-id")


def answer_just_given(user, photo_id: str | None) -> Feedback | None:
    """`user`'s own answer to photo `photo_id` (the review queue's "answered" parameter), if it
    stands and they may still change it: what the queue offers to undo."""
    if not id_text(photo_id):
        return None
    return (Feedback.objects.filter(photo__in=photos_for_user(user, action="change"), photo_id=int(photo_id),
                                    user=user)
            .select_related("photo", "model_version").first())


def queue_place(photos: list[Photo], photo: Photo) -> int:
    """Where `photo` stood among a page of the review queue's `photos` (its order: margin, newest,
    highest id): the index of the first photo that comes after it."""
    def key(p: Photo) -> tuple:
        return (p.margin if p.margin is not None else math.inf, -p.created.timestamp(), -p.pk)
    return next((i for i, other in enumerate(photos) if key(other) > key(photo)), len(photos))


def feedback_stats(user) -> dict:
    """Counters of the photos `user` may see, and the accuracy users measured per model version."""
    photos = photos_for_user(user)
    # Every answer is on a photo: who may see every photo sees every answer, with no join to photos.
    reviewed = (Feedback.objects.all() if may_act_on_others_photos(user)
                else Feedback.objects.filter(photo__owner=user))
    per_version = (
        reviewed.exclude(model_version=None)
        .values("model_version__name")
        .annotate(reviewed=Count("pk"), confirmed=Count("pk", filter=Q(is_correction=False)))
        .order_by("model_version__name")
    )
    answers = reviewed.aggregate(reviewed=Count("pk"), corrected=Count("pk", filter=Q(is_correction=True)))
    return {
        "photos": photos.count(),
        **answers,
        "per_version": [
            {"version": row["model_version__name"], "reviewed": row["reviewed"],
             "confirmed": row["confirmed"], "accuracy": row["confirmed"] / row["reviewed"],
             **accuracy_interval(row["confirmed"], row["reviewed"])}
            for row in per_version
        ],
    }


def accuracy_interval(confirmed: int, reviewed: int, z: float = NormalDist().inv_cdf(0.975)) -> dict:
    """The 95% Wilson score interval of an accuracy measured on `reviewed` answers: after a few
    answers it is wide, which the figure alone does not say. (scipy's binomtest(...).proportion_ci
    gives the same, tests/test_feedback.py checks, but importing scipy.stats costs a web process
    0.75 s and tens of MB.)"""
    p, n = confirmed / reviewed, reviewed
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    # At 0 of n (n of n) the low (high) end is exactly 0 (1), which centre - half (centre + half)
    # misses by a rounding error for many n: 2.8e-17 at 0 of 5, 0.9999999999999999 at 13 of 13,
    # which the percent filter shows as "1" and "99" (never 0 above 0, nor 100 short of 1).
    low = 0.0 if confirmed == 0 else max(0.0, centre - half)
    high = 1.0 if confirmed == reviewed else min(1.0, centre + half)
    return {"accuracy_low": low, "accuracy_high": high}


def feedback_accuracy_by_day() -> list[dict]:
    """Per model version and day (UTC, as the API's times) of the answer: how many photos users
    reviewed and confirmed, the accuracy and its 95% confidence interval. (Not the visitor's zone:
    the database may not know its name.)"""
    from datetime import UTC

    from django.db.models.functions import TruncDate

    rows = (Feedback.objects.exclude(model_version=None).annotate(day=TruncDate("updated", tzinfo=UTC))
            .values("model_version__name", "day")
            .annotate(reviewed=Count("pk"), confirmed=Count("pk", filter=Q(is_correction=False)))
            .order_by("day", "model_version__name"))
    return [{"version": r["model_version__name"], "day": r["day"], "reviewed": r["reviewed"],
             "confirmed": r["confirmed"], "accuracy": r["confirmed"] / r["reviewed"],
             **accuracy_interval(r["confirmed"], r["reviewed"])} for r in rows]


def split_order(name: str) -> tuple[int, str]:
    """The benchmark first, then the users' held-out photos, validation, and any other, by name
    (PostgreSQL's jsonb keeps no key order)."""
    known = ["test", "user_heldout", "validation"]
    return (known.index(name) if name in known else len(known), name)


def benchmark_figure(version: ModelVersion, name: str):
    """One of `version`'s figures on the benchmark split ("top1", "macro_f1", "n" photos, their
    "digest"), or None if unknown (never measured there, or a metrics.json of another shape)."""
    test = version.metrics.get("test")
    return test.get(name) if isinstance(test, dict) else None


def other_benchmark(version: ModelVersion, active: ModelVersion) -> bool:
    """Whether the two were measured on other photos (the split changed between them, or a run read
    another CAKESITE_BENCHMARK_DIR): then their top-1 are not comparable. Known by the photos' digest
    where both have one, else (figures from before digests were kept) only by their number."""
    for name in ("digest", "n"):
        mine, theirs = benchmark_figure(version, name), benchmark_figure(active, name)
        if mine is not None and theirs is not None:
            return mine != theirs
    return False


# Longer than a working classifier makes any photo wait, even behind a large batch: a photo waiting
# this long is late (its page says so), and a backlog whose oldest waited this long with nothing
# classified meanwhile looks stopped.
LATE_AFTER = timedelta(minutes=2)


def classification_backlog(*, ask_broker: bool = False) -> dict:
    """Photos waiting for the classification worker: how many, since when the oldest waits,
    whether the worker looks stopped (the oldest waited over LATE_AFTER, and none was classified
    meanwhile), and how many failed for want of a model that loads (queued again by themselves
    once one does). With `ask_broker`, whether a stop is the broker's, which cannot be reached
    (asked only when it looks stopped: a broker that refuses costs 2 s)."""
    from classifier import tasks

    backlog = Photo.objects.filter(status__in=Photo.PENDING).aggregate(count=Count("pk"),
                                                                       oldest=Min("waiting_since"))
    since = timezone.now() - LATE_AFTER  # and nothing classified since: a long backlog moves
    backlog["stalled"] = (backlog["oldest"] is not None and backlog["oldest"] < since
                          and not Prediction.objects.filter(created__gte=since).exists())
    backlog["awaiting_model"] = Photo.objects.filter(status=Photo.Status.FAILED, awaits_model=True).count()
    backlog["broker_unreachable"] = (ask_broker and backlog["stalled"]
                                     and tasks.messages_waiting(settings.CELERY_TASK_DEFAULT_QUEUE) is None)
    return backlog


def photos_that_may_carry_metadata() -> QuerySet[Photo]:
    """Photos in the formats that hold metadata (a BMP has none), by id; not those waiting for the
    worker, which may be about to open the file that `manage.py strip_metadata` would replace."""
    return Photo.objects.exclude(status__in=Photo.PENDING).filter(
        image_format__in=["jpg", "png", "webp", "gif"]).order_by("pk")


def training_runs() -> QuerySet[TrainingRun]:
    """Training runs, newest first, with the versions and account their lists name (not the long list
    of photos each used)."""
    return TrainingRun.objects.select_related("started_by", "base_version", "result_version").defer(
        "photos_used")


def live_run() -> TrainingRun | None:
    """The run queued or running, if any (one at a time: services.training_run_start)."""
    return TrainingRun.objects.filter(status__in=TrainingRun.LIVE).defer("photos_used").first()


def run_to_train(run_id: int) -> TrainingRun | None:
    """The run a training task works on, with its base version; None once it is deleted."""
    return TrainingRun.objects.filter(pk=run_id).select_related("base_version").first()


def versions_state() -> str:
    """Changes whenever a version is registered, deleted or activated: the staff page reloads on it."""
    state = ModelVersion.objects.aggregate(count=Count("id"), newest=Max("id"),
                                           active=Max("id", filter=Q(is_active=True)))
    return f"{state['count']}-{state['newest']}-{state['active']}"


# What makes a run a repeat of its base's training (retraining.repeats_base), in words.
REPEAT = "the same users' answers (none new, none dropped), the same mode, as many base photos"


def points_between(a: float, b: float) -> float:
    """How many percentage points `a` is above `b`, as the difference of the two as the pages show
    them (to a tenth): 87.7% against 86.4% is 1.3 points, not the 1.2 of the unrounded figures."""
    return round(round(100 * a, 1) - round(100 * b, 1), 1)


def activation_warning(version: ModelVersion, active: ModelVersion | None) -> str:
    """Why activating `version` in place of `active` needs a second thought; empty if it does not."""
    if active is None or version.pk == active.pk:
        return ""
    warnings = []
    new, old = benchmark_figure(version, "top1"), benchmark_figure(active, "top1")
    if new is None:
        warnings.append(_("It was not measured on the benchmark split."))
    elif other_benchmark(version, active):
        sizes = benchmark_figure(version, "n"), benchmark_figure(active, "n")
        warnings.append(
            _("It was measured on another benchmark than the active version (%(n)s photos against "
              "%(active)s): their top-1 cannot be compared.") % {"n": sizes[0], "active": sizes[1]}
            if sizes[0] != sizes[1] else
            _("It was measured on another benchmark than the active version (as many photos, %(n)s, but "
              "not the same ones): their top-1 cannot be compared.") % {"n": sizes[0]})
    else:
        if old is not None and new < old:
            warnings.append(_("It is %(points).1f points below the active version on the benchmark split "
                              "(top-1 %(new).1f%% against %(old).1f%%).") % {
                "points": points_between(old, new), "new": 100 * new, "old": 100 * old})
        for slug, mine, theirs in recall_drops(version.metrics["test"], active.metrics.get("test")):
            warnings.append(_("Its recall of %(cake)s on the benchmark is %(points).1f points below the "
                              "active version's (%(mine).1f%% against %(theirs).1f%%).") % {
                "cake": version.display_name(slug), "points": points_between(theirs, mine),
                "mine": 100 * mine, "theirs": 100 * theirs})
    run = getattr(version, "training_run", None)
    if run is not None and run.base_version_id == active.pk and run.data.get("repeats_base"):
        # (REPEAT's words, in a whole sentence that can be translated)
        warnings.append(_("It repeats the active version's training: the same users' answers (none new, none "
                          "dropped), the same mode, as many base photos. What differs between them comes "
                          "from training again on the same data, not from what users taught."))
    return " ".join(warnings)


# A cake whose recall on the benchmark is this many points or more below the active version's, by
# RECALL_DROP_PHOTOS photos or more, is named when the version is activated, and stops an
# auto-activation. One account's answers that teach one cake as another took that cake's recall down
# by 15 to 30 points while top-1 fell by 0.6 to 4 (its 100 kue klepon photos answered as kue dadar
# gulung: -15 and -0.6; 250 kue lumpur as kue serabi among 240 honest answers: -25 and -1.2, serabi
# gaining 15), which other users' good answers may make up for (+2.5 to +3.7 in bench.adaptation).
# Honest runs lost at most 1 photo of a cake on the 162 photos, and 2 in bench.adaptation (2 of 11
# kue kastengel on half of them: 18 points; hence the photos too).
RECALL_DROP_POINTS = 15
RECALL_DROP_PHOTOS = 3


def recall_drops(new: dict, old: dict | None) -> list[tuple[str, float, float]]:
    """(slug, new recall, old recall) of each cake whose recall in `new` (a version's figures on the
    benchmark) is RECALL_DROP_POINTS or more below that in `old`, by RECALL_DROP_PHOTOS or more."""
    after = new.get("per_class") if isinstance(new, dict) else None
    before = old.get("per_class") if isinstance(old, dict) else None
    if not (isinstance(after, dict) and isinstance(before, dict)):  # (figures of another shape)
        return []
    drops = []
    for slug, figures in after.items():
        then = before.get(slug)
        if not (isinstance(figures, dict) and isinstance(then, dict) and figures.get("support")
                and "recall" in figures and "recall" in then):
            continue
        fall = then["recall"] - figures["recall"]  # (rounded: 0.95 - 0.8 is 14.99... points)
        lost = round(fall * figures["support"])  # photos
        if round(100 * fall, 1) >= RECALL_DROP_POINTS and lost >= RECALL_DROP_PHOTOS:
            drops.append((slug, figures["recall"], then["recall"]))
    return drops


def auto_activation_rule() -> str:
    """The rule `retraining.decide` applies, in words, for the forms that offer it."""
    return _("at least as good on the benchmark (and no cake's recall there %(points)s points or more "
             "lower), better on the held-out user photos (at least %(heldout)s of them), and not a repeat of "
             "the active version's training (the same answers, mode and base photos)") % {
        "points": RECALL_DROP_POINTS, "heldout": settings.AUTO_ACTIVATE_MIN_HELDOUT}


def model_versions_compared() -> list[dict]:
    """Every version with the figures a comparison needs, newest first; with what activating it
    would mean: whether it served photos before (a roll back), and why it needs a second thought."""
    rows = []
    active = active_version()
    versions = ModelVersion.objects.select_related("training_run__base_version").defer(
        "training_run__photos_used").annotate(
        served=Exists(Prediction.objects.filter(model_version=OuterRef("pk")))).order_by("-created", "-id")
    on_benchmark = benchmark_figure(active, "top1") if active else None
    for version in versions:
        run = getattr(version, "training_run", None)
        names = [item["name"] for item in version.labels]
        mine = benchmark_figure(version, "top1")
        apart = not version.is_active and active is not None and other_benchmark(version, active)
        rows.append({
            "version": version,
            "warning": activation_warning(version, active),
            # it classified photos before, so it was active once, before the active one
            "rolls_back": version.served and active is not None and version.created < active.created,
            # points of top-1 on the benchmark against the active version's (the other splits differ
            # from version to version: each run holds out its own user photos)
            "benchmark_change": (None if version.is_active or None in (mine, on_benchmark) or apart
                                 else points_between(mine, on_benchmark)),
            "other_benchmark": apart,
            "splits": [
                {"name": split, "top1": m["top1"], "top1_percent": round(100 * m["top1"], 1),
                 "macro_f1": m["macro_f1"], "n": m["n"],
                 # by the cakes' names, as the confusion matrix (a class the labels lack: its slug);
                 # sorted here: PostgreSQL's jsonb keeps the keys shortest first (Lapis before Dadar)
                 "per_class": sorted(((version.display_name(slug), figures)
                                      for slug, figures in m["per_class"].items()), key=lambda row: row[0]),
                 "classes": names,
                 # the matrix in words too (rows: the true cake), for who cannot see the picture
                 "confusion": (list(zip(names, m["confusion_matrix"]))
                               if len(m.get("confusion_matrix") or []) == len(names) else [])}
                for split, m in sorted(version.metrics.items(), key=lambda item: split_order(item[0]))
                if isinstance(m, dict) and "top1" in m
            ],
            "run": run,
            "curves": (version.folder / "training_curves.png").is_file(),
        })
    return rows


def training_history(version: ModelVersion) -> list | None:
    """The version's training phases with their figures per epoch (what its curves plot), as its
    folder records them; None for one not trained epoch by epoch (a head refit) or unreadable."""
    try:  # (NaN, as Keras records a diverged loss, becomes None: JSON has no NaN)
        phases = json.loads((version.folder / "history.json").read_text(),
                            parse_constant=lambda _constant: None)
    except (OSError, ValueError):
        return None
    return phases if isinstance(phases, list) else None


def api_tokens(user) -> list[ApiToken]:
    """The account's API tokens, the newest first, each with when it `expires` (None: no fixed time)
    and whether it has `expired`."""
    tokens = list(ApiToken.objects.filter(user=user).order_by("-created"))
    for token in tokens:
        token.expires, token.expired = token_expires(token, user), token_expired(token, user)
    return tokens


def photo_count(user) -> int:
    return Photo.objects.filter(owner=user).count()


def account_full(user) -> bool:
    """Whether `user` keeps MAX_PHOTOS_PER_ACCOUNT photos already (0: no limit): no more uploads."""
    return bool(settings.MAX_PHOTOS_PER_ACCOUNT) and photo_count(user) >= settings.MAX_PHOTOS_PER_ACCOUNT


def second_factor_required(user) -> bool:
    """Whether `user` signs in with a second factor: a staff account, with STAFF_TWO_FACTOR."""
    return settings.STAFF_TWO_FACTOR and user.is_staff


def token_expires(token: ApiToken, user) -> datetime | None:
    """When `user`'s API `token` stops working: a staff token (with STAFF_TWO_FACTOR), after
    STAFF_TOKEN_DAYS; None for others, and where STAFF_TOKEN_DAYS is 0."""
    if not (second_factor_required(user) and settings.STAFF_TOKEN_DAYS):
        return None
    return token.created + timedelta(days=settings.STAFF_TOKEN_DAYS)


def token_unused_too_long(token: ApiToken) -> bool:
    """Whether `token` went API_TOKEN_IDLE_DAYS without a request (counted from when it was made if
    it never had one): it no longer works (0: it always does). A program that uses it keeps it."""
    days = settings.API_TOKEN_IDLE_DAYS
    return bool(days) and (token.last_used or token.created) + timedelta(days=days) <= timezone.now()


def token_expired(token: ApiToken, user) -> bool:
    """Whether `token` no longer works: a staff token past its life, or any unused too long."""
    expires = token_expires(token, user)
    return (expires is not None and expires <= timezone.now()) or token_unused_too_long(token)


def has_second_factor(user) -> bool:
    """Whether `user` has set up an authenticator app (backup codes alone do not count: an
    authenticator deleted in the admin is set up again)."""
    return TOTPDevice.objects.filter(user=user, confirmed=True).exists()


def second_factor_wait_s(*devices) -> int:
    """Seconds before the last of `devices` takes a code again after wrong ones in a row (django-otp
    doubles the wait at each); 0 if each takes one now."""
    waits = [0]
    for device in devices:
        allowed, info = device.verify_is_allowed()
        if until := None if allowed else (info or {}).get("locked_until"):
            waits.append(max(1, math.ceil((until - timezone.now()).total_seconds())))
    return max(waits)


ADDRESS_CHECK_LASTS_S = 3600  # a session that typed the e-mailed code has this long to set the app up


def address_check_needed(user, checked) -> bool:
    """Whether a session must type a code e-mailed to `user`'s address before it sets up an
    authenticator: the account has an address, and `checked` (the session's record of the code it
    typed: its address, when) is not of that address, or is over ADDRESS_CHECK_LASTS_S old."""
    if not user.email:
        return False
    checked = checked if isinstance(checked, dict) else {}
    return not (time.time() - checked.get("at", 0) < ADDRESS_CHECK_LASTS_S
                and str(checked.get("address", "")).casefold() == user.email.casefold())


def address_code_wait_s(user) -> int:
    """Seconds before the account's e-mailed code is taken again after wrong ones (0: now)."""
    return second_factor_wait_s(*EmailDevice.objects.filter(user=user, confirmed=False))


def address_hint(email: str) -> str:
    """`email` as a page shows it to a session not yet past the second factor: its first letter
    and its domain ("a…@example.org")."""
    name, _, domain = email.rpartition("@")
    return f"{name[:1]}…@{domain}"


def backup_codes_left(user) -> int:
    return StaticToken.objects.filter(device__user=user, device__confirmed=True).count()


EMAIL_CONFIRM_SALT = "cakesite.email-confirm"


def language_offered(language: str | None) -> bool:
    """Whether the website is written in `language` (a code of LANGUAGES)."""
    return language in dict(settings.LANGUAGES)


def account_language(user) -> str | None:
    """The language `user` chose for the website (services.account_language_set), if it still has
    it (LANGUAGES); None if none."""
    language = AccountSettings.objects.filter(user_id=user.pk).values_list("language", flat=True).first()
    return language if language_offered(language) else None


def pending_email(user) -> PendingEmail | None:
    """The address `user` asked for and has not confirmed yet, if any."""
    return PendingEmail.objects.filter(user=user).first()


def email_confirmation_token(pending: PendingEmail) -> str:
    """What the link e-mailed to an address waiting carries: signed, good for EMAIL_CONFIRM_TIMEOUT,
    and for this request only (an address withdrawn and asked for again gets a new one). It names
    the address by a keyed digest, not in the clear: links end up in access logs and histories."""
    return signing.dumps([pending.pk, pending.user_id, address_digest(pending.email)],
                         salt=EMAIL_CONFIRM_SALT)


def address_digest(email: str) -> str:
    return salted_hmac(EMAIL_CONFIRM_SALT, email, algorithm="sha256").hexdigest()[:32]


def email_confirmation_claim(token: str) -> tuple[int, int, str] | None:
    """(address waiting's id, account's id, address digest) that `token` says, if it is genuine and
    not too old. (Links sent before 2026-12-06 carry the address itself.)"""
    try:
        pk, user_id, address = signing.loads(token, salt=EMAIL_CONFIRM_SALT,
                                             max_age=settings.EMAIL_CONFIRM_TIMEOUT)
    except (signing.BadSignature, ValueError, TypeError):
        return None
    return pk, user_id, address_digest(address) if "@" in str(address) else str(address)


def pending_email_for_token(token: str) -> PendingEmail | None:
    """The address waiting that `token` confirms; None if the token is forged or too old, or the
    address was confirmed, replaced or withdrawn since."""
    claim = email_confirmation_claim(token)
    if claim is None:
        return None
    pk, user_id, digest = claim
    pending = PendingEmail.objects.select_related("user").filter(pk=pk, user_id=user_id).first()
    return pending if pending and constant_time_compare(address_digest(pending.email), digest) else None


def email_confirmed_by(token: str) -> bool:
    """Whether the address `token` confirms is its account's already."""
    from django.contrib.auth import get_user_model

    claim = email_confirmation_claim(token)
    user = claim and get_user_model().objects.filter(pk=claim[1]).first()
    return bool(user and user.email and constant_time_compare(address_digest(user.email), claim[2]))


def run_is_running(run_id: int) -> bool:
    """Whether a training run is still running (not cancelled, failed or done meanwhile)."""
    return TrainingRun.objects.filter(pk=run_id, status=TrainingRun.Status.RUNNING).exists()


# Files no row names are left alone this long: an upload, a heat map, a page's copy of a photo is
# written before the row that names it commits, and none takes nearly this long.
ORPHAN_AFTER = timedelta(hours=1)


def media_file_fields() -> list[tuple[type, list[str]]]:
    """The models that name files in the media storage, each with its file fields."""
    found = [(model, [f.name for f in model._meta.get_fields() if isinstance(f, FileField)])
             for model in (Photo, Prediction)]
    return [(model, names) for model, names in found if names]


def media_folders() -> list[str]:
    """The folders of the media storage the file fields store into (photos, thumbnails, ...)."""
    return sorted({str(PurePosixPath(model._meta.get_field(name).generate_filename(model(), "x")).parent)
                   for model, names in media_file_fields() for name in names})


@dataclass
class MediaCheck:
    orphans: list[tuple[str, int]] = field(default_factory=list)  # (name, bytes), older than the safe age
    young: int = 0  # files no row names yet, younger than it: left alone (an upload under way?)
    missing: list[tuple[str, int, str, str]] = field(default_factory=list)  # (model, id, field, name)


def media_files(storage) -> Iterator[str]:
    """The names of the files in the media folders, as the storage lists them (links not followed:
    nothing outside the storage is ever named)."""
    folders = [folder for folder in media_folders() if storage.exists(folder)]
    while folders:
        folder = folders.pop()
        subfolders, files = storage.listdir(folder)
        for sub in subfolders:
            if not is_link(storage, f"{folder}/{sub}"):
                folders.append(f"{folder}/{sub}")
        yield from (f"{folder}/{name}" for name in files)


def is_link(storage, name: str) -> bool:
    """Whether `name` is a symbolic link, on a storage with local paths (a link could lead out of it)."""
    try:
        return Path(storage.path(name)).is_symlink()
    except NotImplementedError:  # (a remote storage: no links)
        return False


def model_versions_missing_files() -> list[tuple[ModelVersion, str]]:
    """The versions whose folder, or the files a version is read from, are not there, with what is
    missing."""
    missing = []
    for version in ModelVersion.objects.only("name", "path"):
        if not version.folder.is_dir():
            missing.append((version, f"its folder {version.folder}"))
        elif lacking := [name for name in (LABELS_FILE, CONFIG_FILE)
                         if not (version.folder / name).is_file()]:
            missing.append((version, f"{', '.join(lacking)} in {version.folder}"))
    return missing


def media_check(older_than: timedelta = ORPHAN_AFTER) -> MediaCheck:
    """The files in the media folders that no row names (once older than `older_than`), and the rows
    that name a file that is not there. The files are listed first and the rows read after, in
    chunks (their names only): a row committed meanwhile names a file young or listed, never an old
    one unlisted. Only the few files no row names are looked at one by one."""
    storage = default_storage
    unnamed = set(media_files(storage))
    missing = []
    for model, fields in media_file_fields():
        rows = model.objects.values_list("pk", *fields).order_by().iterator(chunk_size=5000)
        for pk, *names in rows:
            for field_name, name in zip(fields, names, strict=True):
                if name in unnamed:
                    unnamed.discard(name)
                elif name:  # (or written after the list: looked at again below)
                    missing.append((str(model._meta.verbose_name), pk, field_name, name))
    check, cutoff = MediaCheck(), timezone.now() - older_than
    for name in sorted(unnamed):
        try:
            if storage.get_modified_time(name) > cutoff:
                check.young += 1
            else:
                check.orphans.append((name, storage.size(name)))
        except FileNotFoundError:  # deleted meanwhile (with its row)
            pass
    check.missing = [row for row in missing if not storage.exists(row[3])]  # (not written after the list)
    return check
