"""Writes: one verb each, transactions here. Views, the API and tasks call these and nothing lower."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import shutil
import time
import uuid
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import UploadedFile
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.db.models import Exists, F, OuterRef, Q, Subquery, Value
from django.db.models.functions import Concat, Now
from django.http import Http404
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.crypto import salted_hmac
from django.utils.formats import number_format
from django.utils.translation import gettext, gettext_lazy
from django_otp import devices_for_user
from django_otp.plugins.otp_email.models import EmailDevice
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice
from PIL import Image

from classifier import cakes, images, metadata, selectors, storage
from classifier.models import (
    AccountSettings,
    ApiToken,
    Feedback,
    ModelVersion,
    PendingEmail,
    Photo,
    Prediction,
    TrainingRun,
    version_name,
)
from training import runtime
from training.preprocess import orientation
from training.runtime import CONFIG_FILE, LABELS_FILE, METRICS_FILE

log = logging.getLogger(__name__)


def photo_create(*, owner, upload: UploadedFile, client_key: str = "") -> Photo:
    """Store a validated photo as `queued` and enqueue its classification once committed. With a
    `client_key` already used by `owner`: the photo stored under it, if it is the same file (the
    request was sent again, its answer lost on the way), else refused."""
    from classifier import tasks

    if client_key and (stored := Photo.objects.filter(owner=owner, client_key=client_key).first()):
        return same_upload(stored, upload)
    checked = images.validate_image(upload)
    photo = Photo(owner=owner, image_format=checked.extension, sha256=checked.sha256,
                  original_name=Path(upload.name or "").name[:255], client_key=client_key)

    def classify() -> None:
        tasks.enqueue(tasks.classify_photo, photo.pk, swept=True)

    try:
        with transaction.atomic():
            if settings.MAX_PHOTOS_PER_ACCOUNT:  # one account's uploads at once count in turn
                if not lock_account(owner.pk):
                    raise PermissionDenied(ACCOUNT_GONE)
                refuse_when_account_full(owner)
            photo.image.save("upload", checked.converted or upload, save=False)
            photo.thumbnail.save("thumbnail", checked.thumbnail, save=False)
            if checked.display:
                photo.display.save("display", checked.display, save=False)
            photo.width, photo.height = checked.width, checked.height  # upright, not as stored
            photo.save()
            # robust: a publish that fails after the commit (any error) only logs; the photo stays
            # queued for the sweep and keeps its files.
            transaction.on_commit(classify, robust=True)
    except Exception as exc:
        # A commit that went through with its answer lost (the connection dropped on the way back):
        # the photo is stored, so it is the answer, and its classification is sent now (the commit's
        # callback never ran), as that callback would: a publish that fails only logs, and inside an
        # outer transaction the send waits for its commit.
        stored = is_stored(photo)
        if stored:
            log.warning("photo %s: stored, though its commit answered %r", photo.pk, exc)
            transaction.on_commit(classify, robust=True)
            return photo
        # Leave no orphan file behind a row that was never written, also when the commit itself
        # fails (foreign keys are checked there: an owner deleted meanwhile). A row the database
        # cannot say of keeps its files: an unused file only takes room (manage.py storage finds
        # it), a row without its files is a photo lost.
        if stored is False:
            photo.image.delete(save=False)
            photo.thumbnail.delete(save=False)
            photo.display.delete(save=False)
        if isinstance(exc, IntegrityError) and not get_user_model().objects.filter(pk=owner.pk).exists():
            raise PermissionDenied(ACCOUNT_GONE) from exc  # (account_delete took the photos stored before)
        if isinstance(exc, IntegrityError) and client_key and (
                earlier := Photo.objects.filter(owner=owner, client_key=client_key).first()):
            return same_upload(earlier, upload)  # the same request, sent again while this one ran
        raise
    return photo


def refuse_when_account_full(owner) -> None:
    """Refuse (ValidationError) a photo more than MAX_PHOTOS_PER_ACCOUNT (0: no limit)."""
    if selectors.account_full(owner):
        raise ValidationError(account_full_message(), code="account_full")


def account_full_message() -> str:
    return gettext("This account has %(n)s photos, the most one account may keep: delete some to upload "
                   "more.") % {"n": number_format(settings.MAX_PHOTOS_PER_ACCOUNT, force_grouping=True)}


def is_stored(row: Photo | Prediction) -> bool | None:
    """Whether `row` is in the database after its transaction failed (its commit went through, the
    answer was lost); None when the database cannot say."""
    if row.pk is None:
        return False
    try:
        return type(row).objects.filter(pk=row.pk).exists()
    except DatabaseError:
        return None


def same_upload(stored: Photo, upload: UploadedFile) -> Photo:
    """`stored`, if `upload` is the file it was stored from; a client key used again for another
    file is refused."""
    if images.sha256_of(upload) != stored.sha256:  # (of the file as sent, also when stored converted)
        raise ValidationError(gettext("This Idempotency-Key was already used for another file."),
                              code="key_reused")
    stored.sent_again = True  # (not stored now: its prediction may be there already)
    return stored


def photo_metadata_strip(photo: Photo) -> bool:
    """Store `photo`'s file again without its metadata, if it has any: photos uploaded before every
    photo was (`manage.py strip_metadata`). Whether it did; a file that cannot be read is left."""
    try:
        with photo.image.open("rb") as source:
            data = source.read()
        with Image.open(io.BytesIO(data)) as img:
            fmt, turned = img.format, orientation(img)
        bare = metadata.without_metadata(data, fmt, turned)
    except images.STORED_FILE_UNREADABLE as exc:
        log.warning("photo %s left as it is: %s", photo.pk, exc)
        return False
    old = photo.image.name
    if bare == data or not stored_in_place_of(photo, "image", old, ContentFile(bare)):
        return False  # (none, or the photo was deleted or stored again meanwhile)
    photo.image.storage.delete(old)
    return True


def stored_in_place_of(photo: Photo, field: str, was: str, content: ContentFile) -> str | None:
    """Store `content` as the file of `photo`'s `field`, if the row still names `was` there; its
    name, or None (nothing kept) if another request stored its own, or deleted the photo, meanwhile."""
    file = getattr(photo, field)
    name = file.storage.save(file.field.generate_filename(photo, field), content)
    if Photo.objects.filter(pk=photo.pk, **{field: was}).update(**{field: name}):
        return name
    file.storage.delete(name)
    return None


def photo_display(photo: Photo) -> Photo:
    """`photo` with the copy its page shows (images.make_display), made now if it is larger than
    images.DISPLAY_SIZE and has none yet. Made when its page first asks, not at upload (except a
    smaller one stored turned: images.validate_image): many photos are only ever seen in a gallery,
    and making it takes a phone's photo 40 ms. Two requests at once may each make one: the first to
    name its copy in the row is kept. A file that cannot be read, or a copy the disk refuses (full), gets
    none: the page shows the photo itself."""
    if photo.display or max(photo.width, photo.height) <= images.DISPLAY_SIZE:
        return photo
    try:
        with photo.image.open("rb") as source, Image.open(source) as img:
            decoded = images.drafted(img, images.DISPLAY_SIZE)
            with images.DECODING.decoding(decoded[0] * decoded[1]):
                copy = images.make_display(img)
    except images.STORED_FILE_UNREADABLE as exc:
        log.warning("photo %s: no copy for its page: %s", photo.pk, exc)
        return photo
    try:
        name = stored_in_place_of(photo, "display", "", copy)
    except OSError as exc:  # (storage removes what it wrote of it)
        log.error("photo %s: its copy for its page could not be stored: %s", photo.pk, exc)
        return photo
    if name is None:  # another request's copy (or none: the photo was deleted)
        name = Photo.objects.filter(pk=photo.pk).values_list("display", flat=True).first() or ""
    photo.display = name
    return photo


ACCOUNT_GONE = gettext_lazy("This account was deleted while the photos were being stored; none was kept.")


NOT_STORED = gettext_lazy("Not stored: the server could not store it just now (nothing of it was kept); "
                          "send it again.")


def photos_create(*, owner, uploads: list[UploadedFile], key: str = ""
                  ) -> list[tuple[UploadedFile, Photo | None, list[str]]]:
    """Store each upload on its own: (upload, photo or None, error messages). One bad file never
    loses the good ones. Nor does the server failing midway (the database gone, a full disk): the
    photos stored so far are reported as stored, this one and the rest as not (an error for the
    whole request would have the client send the stored ones again). Failing on the first photo,
    it raises: nothing was stored. With the request's Idempotency-Key `key`, the request sent
    again gets the photos it stored, each once."""
    results = []
    for i, upload in enumerate(uploads):
        try:
            client_key = f"{key}:{i}" if key else ""
            results.append((upload, photo_create(owner=owner, upload=upload, client_key=client_key), []))
        except ValidationError as exc:
            results.append((upload, None, exc.messages))
        except (DatabaseError, OSError):
            if not any(photo for _, photo, _ in results):
                raise
            log.exception("storing upload %s of %s failed; the rest is not stored", i + 1, len(uploads))
            results += [(rest, None, [str(NOT_STORED)]) for rest in uploads[i:]]
            break
    return results


def photo_set_status(photo: Photo, status: str, error: str = "", *, if_pending: bool = False, **also) -> None:
    """Change the status, and the fields in `also`, with one UPDATE (`if_pending`: only of a queued or
    processing photo); `updated` moves too, so pollers see the change. Done or failed is also
    announced to requests waiting for it (`selectors.settling`)."""
    photos = Photo.objects.filter(pk=photo.pk)
    if if_pending:
        photos = photos.filter(status__in=Photo.PENDING)
    changed = photos.update(status=status, error=error[:2000], updated=timezone.now(), **also)
    if changed and status not in Photo.PENDING:
        announce_settled(photo.pk)


def announce_settled(*photo_ids: int) -> None:
    """Wake the requests waiting for these photos (on PostgreSQL; delivered at commit): one statement
    however many."""
    if connection.vendor == "postgresql" and photo_ids:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_notify(channel, '') FROM unnest(%s::text[]) AS channel",
                           [[selectors.settled_channel(photo_id) for photo_id in photo_ids]])


# A second delivery of a photo's task may run beside the first, or read the photo just before the
# first one finished: it never turns a result (or a reason for none) back into `processing` or
# `failed`. (A failed photo it then classifies after all becomes done when its prediction lands.)
def photo_start(photo: Photo) -> None:
    """Processing, by one more start (see tasks.classify_photo's CLASSIFY_MAX_STARTS)."""
    photo_set_status(photo, Photo.Status.PROCESSING, if_pending=True, starts=F("starts") + 1)


def photo_start_ended(photo: Photo) -> None:
    """Take back a start that ended in an error the task handles by retrying: `starts` counts the
    starts that ended without a word (the worker died on them) or on a lost database."""
    Photo.objects.filter(pk=photo.pk, starts__gt=0).update(starts=F("starts") - 1)


def photo_mark_done(photo: Photo, prediction: Prediction | None = None) -> None:
    """Done; with the `prediction` just recorded, its label, confidence and margin copied onto the
    photo in the same UPDATE (what the API's list filters and orders on)."""
    copies = {} if prediction is None else {
        "predicted_label": prediction.label, "confidence": prediction.confidence, "margin": prediction.margin}
    photo_set_status(photo, Photo.Status.DONE, awaits_model=False, **copies)


def copies_fill() -> int:
    """Copy their prediction onto the done photos that lack the copies (photo_mark_done): those a
    worker of the release before them classified while this one was being deployed. How many."""
    latest = Prediction.objects.filter(photo=OuterRef("pk")).order_by("-created", "-id")
    lacking = Photo.objects.filter(Exists(latest), status=Photo.Status.DONE, confidence__isnull=True)
    return lacking.update(**{field: Subquery(latest.values(column)[:1]) for field, column in (
        ("predicted_label", "label"), ("confidence", "confidence"), ("margin", "margin"))})


def photo_fail(photo: Photo, reason: str, *, awaits_model: bool = False) -> None:
    """Failed, saying why; `awaits_model`: for want of a model that loads, and queued again by itself
    once one is active (photos_awaiting_model_requeue)."""
    photo_set_status(photo, Photo.Status.FAILED, reason, if_pending=True, awaits_model=awaits_model)


def photos_awaiting_model_requeue() -> list[int]:
    """Queue again the photos that failed for want of a model (photo_fail's `awaits_model`), in the
    order they came; their ids, to send to the workers."""
    with transaction.atomic():  # (in id order, as account_remove locks them: the two never deadlock)
        waiting = list(Photo.objects.select_for_update().filter(  # (waits for a row being changed)
            status=Photo.Status.FAILED, awaits_model=True).order_by("pk").values_list("pk", flat=True))
        Photo.objects.filter(pk__in=waiting).update(**queued_afresh())
    return waiting


def queued_afresh() -> dict:
    """The fields of a failed photo sent to the workers again as if new: no error, no starts counted,
    not awaiting a model, waiting from now (photo_retry, photos_awaiting_model_requeue)."""
    return {"status": Photo.Status.QUEUED, "error": "", "starts": 0, "awaits_model": False,
            "updated": timezone.now(), "waiting_since": Now()}


def photo_retry(photo: Photo) -> None:
    """Queue a failed photo again (once, however many retries arrive together)."""
    from classifier import tasks

    with transaction.atomic():
        retried = Photo.objects.filter(pk=photo.pk, status=Photo.Status.FAILED).update(**queued_afresh())
        if not retried:
            if not Photo.objects.filter(pk=photo.pk).exists():
                raise Http404(gettext("The photo no longer exists."))
            raise ValidationError(gettext("Only a failed photo can be retried."), code="not_failed")
        transaction.on_commit(lambda: tasks.enqueue(tasks.classify_photo, photo.pk, swept=True), robust=True)


# While the classification queue holds a backlog, a queued photo is sent again only after this many
# times REQUEUE_AFTER_S: it most likely waits in that backlog, yet one never sent (the broker was
# down when it came) must not wait for a backlog that never empties.
BACKLOG_PATIENCE = 10


def stuck_photos_requeue(*, queue_empty: bool = True) -> list[int]:
    """The photos to send to the workers again: those a worker started and lost (`processing`
    without a change for REQUEUE_AFTER_S; of those lost more than once, one a sweep), and those
    `queued` as long (BACKLOG_PATIENCE times as long unless `queue_empty`), all put back to `queued`
    so that the next sweep waits as long again."""
    now = timezone.now()
    after = timedelta(seconds=settings.REQUEUE_AFTER_S)
    cutoff = now - after
    queued_cutoff = cutoff if queue_empty else now - BACKLOG_PATIENCE * after
    with transaction.atomic():
        stuck = Photo.objects.select_for_update(skip_locked=True).order_by("pk")  # in the order they came
        started = Q(status=Photo.Status.PROCESSING, updated__lt=cutoff)
        photos = list(stuck.filter(
            (started & Q(starts__lt=2)) | Q(status=Photo.Status.QUEUED, updated__lt=queued_cutoff),
        ).values_list("pk", flat=True))
        # One lost more than once may be what kills its worker: one such a sweep, so that it runs
        # beside no other lost photo, whose start would be counted with its own when it kills the
        # whole worker again (see tasks.classify_photo, CLASSIFY_MAX_STARTS).
        photos += list(stuck.filter(started & Q(starts__gte=2)).values_list("pk", flat=True)[:1])
        Photo.objects.filter(pk__in=photos).update(status=Photo.Status.QUEUED, updated=now)
    return photos


def stuck_runs_requeue(*, training_queue_empty: bool = True) -> list[int]:
    """The training runs to send again: queued for REQUEUE_AFTER_S, unless the training queue holds
    a message (most likely the run's own, waiting for a trainer that is down: one more each sweep
    would pile up); sent again only after as long again."""
    if not training_queue_empty:
        return []
    now = timezone.now()
    with transaction.atomic():
        runs = list(TrainingRun.objects.select_for_update(skip_locked=True).filter(
            status=TrainingRun.Status.QUEUED, sent__lt=now - timedelta(seconds=settings.REQUEUE_AFTER_S),
        ).values_list("pk", flat=True))
        TrainingRun.objects.filter(pk__in=runs).update(sent=now)
    return runs


def lost_runs_fail() -> None:
    """A run `running` for longer than its hard time limit (and a sweep's delay) lost its worker:
    marked failed, which frees the way for a new run."""
    lost = timezone.now() - timedelta(seconds=settings.TRAINING_TIME_LIMIT_S + settings.REQUEUE_AFTER_S)
    for run in TrainingRun.objects.filter(status=TrainingRun.Status.RUNNING, started__lt=lost):
        training_run_fail(run, "The training worker stopped during the run (killed or restarted).")


def lock_photo(photo: Photo) -> str | None:
    """Inside a transaction: lock the photo's row until it ends (a deletion, a prediction being
    recorded and an answer being written wait for each other); its status now, None if it is gone."""
    return Photo.objects.select_for_update().filter(pk=photo.pk).values_list("status", flat=True).first()


def photo_delete(photo: Photo) -> None:
    """Delete the photo with its predictions and feedback; its files go once that is committed
    (classifier.signals). Locked first: a prediction the worker is recording meanwhile is either
    in (and deleted with its heat map) or waits and finds the photo gone. The row deleted is the
    one read under the lock: the caller's copy may predate a display copy made since, whose file
    (its name chosen by the storage) would be left behind."""
    with transaction.atomic():
        locked = Photo.objects.select_for_update().filter(pk=photo.pk).first()
        if locked is None:
            raise Http404(gettext("The photo no longer exists."))  # deleted a moment ago
        announce_settled(photo.pk)  # a request waiting for it answers 404 at once
        locked.delete()


def photos_delete(ids: set[int]) -> list[int]:
    """Delete the photos with these `ids` together, each as photo_delete deletes one, in one
    transaction: all or none. The ids deleted: one deleted meanwhile (another tab) is left out."""
    with transaction.atomic():
        # (one order for every request: two never wait for each other)
        deleted = list(Photo.objects.select_for_update().filter(pk__in=ids).order_by("pk")
                       .values_list("pk", flat=True))
        announce_settled(*deleted)
        # One collector for them all: a few statements, not five a photo. It reads the rows again
        # under the locks (as photo_delete does: a display copy made since is deleted with them) and
        # sends each one's post_delete, so their files go once this commits.
        Photo.objects.filter(pk__in=deleted).delete()
    return deleted


def prediction_record(*, photo: Photo, version_id: int, probabilities: dict[str, float],
                      label: str, confidence: float, inference_ms: float,
                      heatmap: np.ndarray | None = None) -> bool:
    """Store the prediction of model version `version_id` for `photo` (with its heat map drawn once,
    here) and mark the photo done. A photo gets one prediction: a second delivery of the same task,
    even one that ran at the same time under another active version, adds nothing (the photo row is
    locked first, then its predictions are counted: in one statement PostgreSQL would count them as
    they were before the lock was granted) and removes the heat map it drew. False when nothing was
    recorded (a duplicate, or the photo was deleted meanwhile)."""
    from classifier.heatmaps import overlay_png

    top_two = sorted(probabilities.values(), reverse=True)[:2] + [0.0]
    prediction = Prediction(
        photo=photo, model_version_id=version_id, label=label, confidence=confidence,
        probabilities=probabilities, margin=round(top_two[0] - top_two[1], 6), inference_ms=inference_ms,
    )
    try:  # the heat map's file too: a time limit may strike right after it is written
        if heatmap is not None:
            picture = overlay_png(heatmap, photo.width, photo.height)
            try:
                prediction.heatmap.save("heatmap", picture, save=False)
            except OSError:  # a full disk, an unwritable folder: the label matters more than the picture
                log.exception("photo %s: its heat map could not be stored; recorded without one", photo.pk)
        with transaction.atomic():
            recorded = lock_photo(photo) is not None and not Prediction.objects.filter(photo=photo).exists()
            if recorded:
                prediction.save(force_insert=True)
                photo_mark_done(photo, prediction)
    except Exception:
        if is_stored(prediction) is False:  # (as photo_create's files)
            prediction.heatmap.delete(save=False)
        raise
    if not recorded:
        prediction.heatmap.delete(save=False)  # the earlier prediction stands (or the photo is gone)
    return recorded


def feedback_record(*, photo: Photo, user, label: str) -> Feedback:
    """Confirm or correct a classified photo's label (or say it is none of the cakes); replaces
    earlier feedback.

    The label must be one of the classes of the model that labelled the photo, or `Feedback.NONE`.
    A photo still waiting for its result (or failed) has no label to confirm or correct: refused.
    A photo deleted meanwhile is a 404.
    """
    with transaction.atomic():
        status = lock_photo(photo)  # so it cannot be deleted under the answer being written
        if status is None:
            raise Http404(gettext("The photo no longer exists."))
        prediction = selectors.latest_prediction(photo)
        if status != Photo.Status.DONE or prediction is None:
            raise ValidationError(gettext("The photo has no result yet to confirm or correct."),
                                  code="not_classified")
        known = {item["slug"] for item in prediction.model_version.labels}
        if label != Feedback.NONE and label not in known:
            raise ValidationError({"label": cakes.unknown(label, known, Feedback.NONE)}, code="unknown_label")
        feedback, _ = Feedback.objects.update_or_create(
            photo=photo,
            defaults={"user": user, "label": label, "predicted_label": prediction.label,
                      "model_version": prediction.model_version, "is_correction": label != prediction.label},
        )
        Photo.objects.filter(pk=photo.pk).update(updated=timezone.now())
    return feedback


def feedback_withdraw(*, photo: Photo, label: str | None = None, by=None) -> bool:
    """Take back a photo's answer (an undo): the photo goes back to the review queue and the next
    retraining does not learn from it. Whether there was an answer to take back.

    With `label`, only if the answer is still that one, and with `by`, only if that user gave it:
    a page shown before someone changed it (or gave it again) must not withdraw an answer it never
    showed. A photo deleted meanwhile is a 404.
    """
    with transaction.atomic():
        if lock_photo(photo) is None:
            raise Http404(gettext("The photo no longer exists."))
        feedback = Feedback.objects.filter(photo=photo).select_related("model_version").first()
        if feedback is None:
            return False
        answer = feedback.answer_name(feedback.model_version)
        if label is not None and feedback.label != label:
            raise ValidationError(gettext("The answer has changed: it is now %(answer)s. Nothing was "
                                          "withdrawn.") % {"answer": answer}, code="answer_changed")
        if by is not None and feedback.user_id != by.pk:
            raise ValidationError(gettext("Someone else has given the answer since (%(answer)s): theirs was "
                                          "not withdrawn.") % {"answer": answer}, code="answer_changed")
        feedback.delete()
        Photo.objects.filter(pk=photo.pk).update(updated=timezone.now())
    return True


def api_token_revoke(user, digest: str | None = None) -> int:
    """Sign `user`'s API programs out: every token of the account stops working, or the one whose
    hash is `digest`. How many were revoked."""
    tokens = ApiToken.objects.filter(user=user)
    if digest is not None:
        tokens = tokens.filter(digest=digest)
    return tokens.delete()[0]


def password_changed(user) -> None:
    """What a new or disabled password ends besides the sessions (which Django ties to the password):
    the API tokens, an address change waiting for its link to be opened, and the e-mailed code that
    sets up an authenticator. Whoever knew the old password may have asked for them; a confirmed
    address of theirs would get the reset links."""
    api_token_revoke(user)
    PendingEmail.objects.filter(user=user).delete()
    # The e-mailed code before an authenticator is set up (a new one may be sent at once), and the
    # growing wait that wrong codes made: whoever sent them with the old password could otherwise
    # hold its owner off for days.
    EmailDevice.objects.filter(user=user).update(
        token=None, last_generated_timestamp=None,
        throttling_failure_count=0, throttling_failure_timestamp=None)


def password_change(user, new_password: str, *, new_token: bool, token_name: str = "") -> str | None:
    """Set `user`'s new password (checked by the caller: the old one, the rules). What a new password
    ends follows (classifier.accounts: the sessions, the tokens, an address change waiting); with
    `new_token`, a new token for the program that asked (named as its old one, `token_name`), made
    once the old ones are gone."""
    with transaction.atomic():
        lock_live_account(user.pk)
        user.set_password(new_password)
        user.save(update_fields=["password"])
        return api_token_new(user, token_name)[1] if new_token else None


def api_token_new(user, name: str = "") -> tuple[ApiToken, str]:
    """A new API token for `user`, for one program: the account's other tokens keep working. Its row
    and the token itself, known only here (the database keeps its hash). Made when the account has
    API_TOKENS_PER_ACCOUNT already, it revokes the one used least recently (a token never used counts
    from when it was made); so do those that no longer work (a staff token past STAFF_TOKEN_DAYS, any
    unused for API_TOKEN_IDLE_DAYS). The account locked: two made at once (two programs, a double
    click) each see the other. `name`: what it is for. Refused (PermissionDenied) if the password
    checked for it (`user`'s, as read then) has changed since: a token asked for with the old
    password must not outlive the change, which revoked the others."""
    with transaction.atomic():
        lock_live_account(user.pk)
        password = get_user_model().objects.filter(pk=user.pk).values_list("password", flat=True).get()
        if password != user.password:
            raise PermissionDenied(gettext("The password was changed a moment ago: ask again with the new "
                                           "one."))
        live = sorted((token for token in ApiToken.objects.filter(user=user)
                       if not selectors.token_expired(token, user)),
                      key=lambda token: token.last_used or token.created)
        keep = live[max(0, len(live) - (settings.API_TOKENS_PER_ACCOUNT - 1)):]  # (room for the new one)
        ApiToken.objects.filter(user=user).exclude(pk__in=[token.pk for token in keep]).delete()
        return ApiToken.objects.create(user=user, name=name)


def api_token_used(token: ApiToken) -> None:
    """Note that a request sent `token`, to the minute (one write a minute at most, not one a request)."""
    now = timezone.now()
    if token.last_used is None or now - token.last_used >= timedelta(minutes=1):
        ApiToken.objects.filter(pk=token.pk).update(last_used=now)


BACKUP_CODES = 10
BACKUP_CODE_SALT = "cakesite.backup-code"  # (migration 0032 has it too)


def backup_code_digest(code: str, secret: str | None = None) -> str:
    """What the database keeps of a backup code: its HMAC under the site's SECRET_KEY (or `secret`),
    16 hex digits (django-otp's column), so that a copy of the database holds no backup code."""
    return salted_hmac(BACKUP_CODE_SALT, code, secret=secret, algorithm="sha256").hexdigest()[:16]


def second_factor_match(user, code: str):
    """The device of `user` that takes `code` (an authenticator's code, or a backup code, compared by
    its digest under SECRET_KEY or one of SECRET_KEY_FALLBACKS), or None: as django-otp's
    match_token, a code once, and a growing wait after wrong ones on each device (an authenticator
    is asked only for a code of its own shape: a backup code does not count against it)."""
    with transaction.atomic():
        for device in devices_for_user(user, for_verify=True):  # (locked)
            if isinstance(device, StaticDevice):
                digests = [backup_code_digest(code, key)
                           for key in (settings.SECRET_KEY, *settings.SECRET_KEY_FALLBACKS)]
                kept = device.token_set.filter(token__in=digests).values_list("token", flat=True).first()
                taken = device.verify_token(kept or digests[0])  # (its wait, its count of wrong codes)
            elif (isinstance(device, TOTPDevice)
                  and code.isascii() and code.isdigit() and len(code) == device.digits):
                taken = device.verify_token(code)
            else:  # a backup code: not counted as a wrong code of the authenticator (its growing wait)
                taken = False  # (nor any other kind of device: none signs in here)
            if taken:
                return device
    return None


def second_factor_device(user, pk: int | None = None) -> TOTPDevice:
    """The authenticator `user` is setting up in this session: the one not confirmed yet whose id
    the session keeps (`pk`), else a new one (a new secret, shown until a code of it confirms it).
    Never another session's: whoever signed in with the password alone before the account's owner
    would otherwise have read the secret its owner then confirms, and made its codes for ever."""
    return ((pk and TOTPDevice.objects.filter(user=user, confirmed=False, pk=pk).first())
            or TOTPDevice.objects.create(user=user, name="authenticator app", confirmed=False))


def second_factor_address_code(user, *, site: str, again: bool = False) -> str:
    """E-mail `user`'s address a code that a session types to show it reads that address, before it
    sets up an authenticator (second_factor_address_check): "sent". Unless `again`, none if the last
    one sent still works ("waiting"); none within a minute of the last ("too soon"), nor beyond
    EMAILS_PER_ADDRESS an hour ("limit"). A new code replaces the one before. The worker sends it
    (`site`: where it was asked), in the request's language; "not sent" if the broker cannot be
    reached (no code then waits)."""
    from classifier import tasks

    with transaction.atomic():
        lock_live_account(user.pk)  # (one code at a time: two tabs asking at once send one)
        # (locked: saved whole below, it would otherwise undo a wrong code counted meanwhile)
        device = (EmailDevice.objects.select_for_update().filter(user=user, confirmed=False).first()
                  or EmailDevice.objects.create(user=user, name="address check", confirmed=False))
        if not again and address_code_works(device) and device.email == user.email:
            return "waiting"
        if not device.generate_is_allowed()[0]:  # (django-otp's cooldown: OTP_EMAIL_COOLDOWN_DURATION)
            return "too soon"
        if not one_more(emails_to(user.email, "second-factor"), settings.EMAILS_PER_ADDRESS):
            return "limit"
        device.email = user.email  # (the address it proves: the account's may change meanwhile)
        device.cooldown_set(commit=False)
        device.generate_token(valid_secs=settings.OTP_EMAIL_TOKEN_VALIDITY)
        language = request_language()
        queued = []  # (a request commits at once: whether the broker took it is known before returning)
        transaction.on_commit(lambda: queued.append(
            tasks.enqueue(tasks.send_second_factor_code, user.pk, site, language=language)), robust=True)
    if queued == [False]:  # the broker down: no code waits, and another may be asked at once
        EmailDevice.objects.filter(pk=device.pk).update(token=None, last_generated_timestamp=None)
        return "not sent"
    return "sent"


def second_factor_code_send(user_id: int, site: str) -> bool:
    """E-mail the code second_factor_address_code made, if it still works (a code is never in the
    broker's messages); whether it was sent."""
    device = EmailDevice.objects.select_related("user").filter(user_id=user_id, confirmed=False).first()
    if device is None or not address_code_works(device):
        return False
    context = {"user": device.user, "code": device.token, "site": urlsplit(site).netloc,
               "minutes": settings.OTP_EMAIL_TOKEN_VALIDITY // 60,
               "link": site + reverse("password_reset")}
    email_from_templates("second_factor_code", context, device.email)
    return True


def address_code_works(device: EmailDevice) -> bool:
    """Whether the code second_factor_address_code last made is still to be typed: sent to an
    address, not used, not expired."""
    return bool(device.token and device.email) and device.valid_until > timezone.now()


def second_factor_address_check(user, code: str) -> str | None:
    """The address that `code`, e-mailed by second_factor_address_code, was sent to, if it is right
    (each code once; django-otp's growing wait after wrong ones), else None."""
    with transaction.atomic():
        device = EmailDevice.objects.select_for_update().filter(user=user, confirmed=False).first()
        if device is None or not device.email or not device.verify_token(code):
            return None
        return device.email


def second_factor_confirm(device: TOTPDevice, code: str, *, site: str) -> list[str] | None:
    """Confirm the authenticator `device` with a code it shows: `device` replaces the ones other
    sessions were setting up, the API tokens made before it stop working (made without it),
    and new backup codes are made; they are returned, to be shown once. None, changing nothing, if
    the code is wrong, or another session confirmed one meanwhile (or `device` was removed). The
    account's address is told (`site`: where it was done), as whoever knew the password alone could
    set one up first and sign in for ever after."""
    from classifier import tasks

    if not device.verify_token(code):  # (django-otp: a code once, and a growing wait after wrong ones)
        return None
    with transaction.atomic():
        lock_live_account(device.user_id)
        if selectors.has_second_factor(device.user) or not TOTPDevice.objects.filter(pk=device.pk).exists():
            return None
        TOTPDevice.objects.filter(user_id=device.user_id).exclude(pk=device.pk).delete()
        TOTPDevice.objects.filter(pk=device.pk).update(confirmed=True)
        api_token_revoke(device.user)
        if device.user.email:
            language = request_language()  # (the e-mail's, as the worker has no request)
            transaction.on_commit(lambda: tasks.enqueue(tasks.send_second_factor_notice, device.user_id,
                                                        site, language=language), robust=True)
        return backup_codes_renew(device.user)


def backup_codes_renew(user) -> list[str]:
    """New backup codes for `user` (each signs in once, in place of an authenticator's code); the
    earlier ones stop working. The database keeps their digests: the codes are shown once."""
    with transaction.atomic():
        StaticDevice.objects.filter(user=user).delete()
        device = StaticDevice.objects.create(user=user, name="backup codes", confirmed=True)
        codes = [StaticToken.random_token() for _ in range(BACKUP_CODES)]
        StaticToken.objects.bulk_create(StaticToken(device=device, token=backup_code_digest(code))
                                        for code in codes)
    return codes


def second_factor_reset(user) -> bool:
    """Forget `user`'s authenticator and backup codes (a lost phone): the next sign-in sets one up
    again, after the password. Their API tokens go too. Whether there was any."""
    with transaction.atomic():
        had = selectors.has_second_factor(user) or selectors.backup_codes_left(user) > 0
        TOTPDevice.objects.filter(user=user).delete()
        StaticDevice.objects.filter(user=user).delete()
        EmailDevice.objects.filter(user=user).delete()
        api_token_revoke(user)
    return had


def one_more(key: str, limit: int) -> bool:
    """Reserve one more of `limit` an hour under `key`, in the cache (Redis counts atomically for all
    processes); while the cache is away, as the throttles do, count nothing."""
    from django.core.cache import cache

    cache.add(key, 0, timeout=3600)
    try:
        count = cache.incr(key)
    except ValueError:
        return True
    if count == 1:  # the hour starts; or the key expired between add and incr, and Redis's INCR made
        cache.touch(key, 3600)  # one that would never expire, refusing the address for good
    return count <= limit


def emails_to(email: str, kind: str) -> str:
    """The key that counts the e-mails of `kind` ("reset", "confirm", "second-factor") to `email`: at most
    EMAILS_PER_ADDRESS an hour of each, whoever asks (anyone may type anyone's address), and the one
    kind cannot use up the other's."""
    return f"emails-to:{kind}:" + hashlib.sha256(email.casefold().encode()).hexdigest()


def password_reset_send(email: str, domain: str, use_https: bool) -> int:
    """E-mail a link to choose a new password to each active account whose confirmed address this is
    (Django's form and templates), within EMAILS_PER_ADDRESS; how many were sent."""
    from classifier.forms import ResetEmails

    form = ResetEmails({"email": email}, reserve=lambda: one_more(emails_to(email, "reset"),
                                                                   settings.EMAILS_PER_ADDRESS))
    return form.save(domain_override=domain, use_https=use_https) if form.is_valid() else 0


def account_create(form, *, site: str):
    """A new account from a valid SignUpForm, signed up without a confirmed address: the one given,
    if any, waits for its owner to open the link sent to it (see account_email_set)."""
    try:
        with transaction.atomic():
            user = form.save(commit=False)
            email, user.email = user.email, ""
            user.save()
            account_email_set(user, email, site=site)
    except IntegrityError as exc:  # the name was free when the form checked, and taken a moment later
        raise ValidationError({"username": gettext("A user with that username already exists.")},
                              code="unique") from exc
    return user


def account_language_set(user, language: str) -> None:
    """Keep `language` (a code in LANGUAGES) as the account's: each session it signs in to shows
    the website in it, on any device (the API follows each request's Accept-Language)."""
    if not selectors.language_offered(language):
        raise ValidationError(gettext("This website is not written in that language."), code="invalid")
    with transaction.atomic():
        lock_live_account(user.pk)
        AccountSettings.objects.update_or_create(user_id=user.pk, defaults={"language": language})


def account_email_set(user, email: str, *, site: str) -> PendingEmail | None:
    """Ask for `email` as `user`'s address: it is used once its owner opens the link that the worker
    e-mails to it (pointing at `site`, the scheme and host the request that asked saw). "" removes
    the address; the address the account has already withdraws a change asked for. The address
    waiting, if any. At most EMAIL_LINKS_PER_ACCOUNT links an hour (each to any address: the
    e-mails say the account's name, which its owner chose)."""
    email = get_user_model().objects.normalize_email(email)
    with transaction.atomic():
        # The account locked first (as confirming and deleting it lock it): a form sent twice at once
        # would otherwise make two rows for one account.
        lock_live_account(user.pk)  # (refused if it was deleted in another tab)
        earlier = selectors.pending_email(user)
        PendingEmail.objects.filter(user=user).delete()  # an earlier one's link stops working
        if not email or email.casefold() == user.email.casefold():
            user.email = email
            user.save(update_fields=["email"])
            return None
        email_links_reserve(user, email, earlier)
        pending = PendingEmail.objects.create(user=user, email=email, site=site, language=request_language())
        email_confirmation_queue(pending)
    return pending


def lock_account(user_id: int) -> bool:
    """Lock the account's row until the transaction ends; False if it is gone."""
    return get_user_model().objects.select_for_update().filter(pk=user_id).exists()


def lock_live_account(user_id: int) -> None:
    """lock_account, for a change to the account: refused (PermissionDenied) if it is gone, deleted
    meanwhile in another tab, say, rather than a database error at commit on a row of no account."""
    if not lock_account(user_id):
        raise PermissionDenied(gettext("This account no longer exists (it was deleted meanwhile)."))


def email_links_reserve(user, email: str, earlier: PendingEmail | None) -> None:
    """One more of the account's EMAIL_LINKS_PER_ACCOUNT links an hour, to `email`; refused, saying
    so, when that is spent, or when `email` had its EMAILS_PER_ADDRESS for the hour and the account's
    `earlier` link went there in that hour (it still works). Where other accounts' requests spent the
    address's hour, its link is not refused but held until the hour is over (the sweep sends it; the
    page says so): refused, anyone could keep an address from being added by asking for it a few
    times an hour."""
    most = settings.EMAILS_PER_ADDRESS
    if address_busy(email) and earlier is not None and earlier.email == email and earlier.sent is not None \
            and earlier.sent > timezone.now() - timedelta(hours=1):
        raise ValidationError({"email": gettext(
            "%(email)s got %(most)s links from us in the last hour, the most we send to one address. A link "
            "sent to it for this account still works; if none came, ask again in an hour.") % {
                "email": email, "most": most}}, code="too_many")
    if not one_more(f"email-links:{user.pk}", settings.EMAIL_LINKS_PER_ACCOUNT):
        raise ValidationError({"email": gettext(
            "You asked for %(most)s links in the last hour, the most we send; try again later.") % {
                "most": settings.EMAIL_LINKS_PER_ACCOUNT}}, code="too_many")


def address_busy(email: str) -> bool:
    """Whether `email` had its EMAILS_PER_ADDRESS confirmation links for the hour: one more waits."""
    from django.core.cache import cache

    return (cache.get(emails_to(email, "confirm")) or 0) >= settings.EMAILS_PER_ADDRESS


def account_email_resend(user, *, site: str) -> PendingEmail | None:
    """Send the link for the address waiting again (a new one, for as long again); None if none."""
    with transaction.atomic():
        lock_live_account(user.pk)
        pending = selectors.pending_email(user)
        if pending is not None:
            email_links_reserve(user, pending.email, pending)
            now = timezone.now()
            # (a send under way for the link before no longer marks this one sent)
            PendingEmail.objects.filter(pk=pending.pk).update(site=site, created=now, asked=now, sent=None,
                                                              sending=None, language=request_language())
            email_confirmation_queue(pending)
    return pending


def request_language() -> str:
    """The language of the request under way: the e-mails it asks for are written in it."""
    return translation.get_language() or settings.LANGUAGE_CODE


def email_confirmation_queue(pending: PendingEmail) -> None:
    """Have the worker e-mail a link for `pending` once the transaction commits (the sweep sends it
    again while it has not gone: the broker down, the mail server down). In `pending.language`, so
    the task takes the id alone, as a worker of the release before languages does."""
    from classifier import tasks

    transaction.on_commit(lambda: tasks.enqueue(tasks.send_email_confirmation, pending.pk), robust=True)


def email_confirmations_unsent() -> list[int]:
    """The addresses waiting whose link has not gone after REQUEUE_AFTER_S (the broker or the mail
    server was down, or the limit of e-mails to the address held it), for the sweep to send again;
    each is sent again only after as long again. Tried for EMAIL_CONFIRM_TIMEOUT after its owner
    last asked for it. Newest asked first: where an address had its links for the hour, links others
    asked for earlier do not keep its owner's waiting behind them."""
    now = timezone.now()
    with transaction.atomic():
        pending = list(PendingEmail.objects.select_for_update(skip_locked=True).filter(
            sent=None, asked__lt=now - timedelta(seconds=settings.REQUEUE_AFTER_S),
            created__gt=now - timedelta(seconds=settings.EMAIL_CONFIRM_TIMEOUT),
        ).order_by("-created", "-pk").values_list("pk", flat=True))
        PendingEmail.objects.filter(pk__in=pending).update(asked=now)
    return pending


def email_confirm_period() -> str:
    """How long a confirmation link works, in words ("3 days")."""
    return duration_in_words(settings.EMAIL_CONFIRM_TIMEOUT)


def duration_in_words(seconds: int) -> str:
    """`seconds` as Django's timesince words them, to the minute ("3 days", "18 hours, 12 minutes")."""
    from django.utils.timesince import timesince

    now = timezone.now()
    return timesince(now - timedelta(seconds=seconds), now)


# An address asked for and never confirmed is forgotten this long after its link stopped working.
FORGET_UNCONFIRMED_AFTER = timedelta(days=30)


def expired_remove() -> int:
    """Remove what has expired and would otherwise stay for good: the sessions past their expiry
    (what `manage.py clearsessions` does) and the addresses asked for whose link stopped working
    over FORGET_UNCONFIRMED_AFTER ago (perhaps someone else's address, typed in by mistake). How
    many addresses."""
    from importlib import import_module

    import_module(settings.SESSION_ENGINE).SessionStore.clear_expired()
    expired = timezone.now() - timedelta(seconds=settings.EMAIL_CONFIRM_TIMEOUT) - FORGET_UNCONFIRMED_AFTER
    return PendingEmail.objects.filter(created__lt=expired).delete()[0]


def email_from_templates(name: str, context: dict, to: str) -> None:
    """Send `to` the e-mail whose subject and body are the templates registration/<name>_subject.txt
    and registration/<name>_email.txt."""
    from django.core.mail import send_mail
    from django.template.loader import render_to_string

    send_mail(render_to_string(f"registration/{name}_subject.txt", context).strip(),
              render_to_string(f"registration/{name}_email.txt", context), None, [to])


def email_confirmation_send(pending_id: int) -> bool:
    """E-mail a link to the address waiting, once (a second delivery of its task sends nothing),
    within EMAILS_PER_ADDRESS; whether it was sent."""
    # Claimed first, so that two deliveries of one task send one e-mail; released if none was sent.
    # A claim older than the task's time limit is a worker that died while sending: taken over (a
    # worker that died after the mail server took the message sends it twice, rather than never).
    now = timezone.now()
    dead = now - timedelta(seconds=settings.CELERY_TASK_TIME_LIMIT)
    if not PendingEmail.objects.filter(Q(sending=None) | Q(sending__lt=dead), pk=pending_id,
                                       sent=None).update(sending=now):
        return False  # confirmed, replaced or deleted meanwhile, already sent, or being sent
    pending = PendingEmail.objects.select_related("user").filter(pk=pending_id).first()
    claimed = PendingEmail.objects.filter(pk=pending_id, sending=now)  # (not a later claim's)
    if pending is None or not one_more(emails_to(pending.email, "confirm"), settings.EMAILS_PER_ADDRESS):
        claimed.update(sending=None)
        return False
    link = pending.site + reverse("email-confirm", args=[selectors.email_confirmation_token(pending)])
    try:
        with translation.override(pending.language):  # (the sweep's task has no language of its own)
            context = {"user": pending.user, "email": pending.email, "link": link,
                       "site": urlsplit(link).netloc, "period": email_confirm_period()}  # ("3 hari")
            email_from_templates("email_confirm", context, pending.email)
    except Exception:
        # The sweep tries again, within the limit: a try counts, as a server that took the message
        # and then timed out has sent it all the same.
        claimed.update(sending=None)
        raise
    claimed.update(sending=None, sent=timezone.now())
    return True


def account_email_confirm(pending: PendingEmail) -> bool:
    """Make the address waiting the account's own (its link was opened); False if it was confirmed,
    replaced or withdrawn meanwhile. The account is locked first, as changing or deleting it does.
    The address it had, if any, is told (someone who knew the password could have made the change,
    and the reset links go to the new address now)."""
    from classifier import tasks

    with transaction.atomic():
        if not lock_account(pending.user_id):
            return False
        locked = PendingEmail.objects.select_for_update().filter(pk=pending.pk, email=pending.email).first()
        if locked is None:
            return False
        old = get_user_model().objects.filter(pk=locked.user_id).values_list("email", flat=True).get()
        get_user_model().objects.filter(pk=locked.user_id).update(email=locked.email)
        locked.delete()
        if old and old.casefold() != locked.email.casefold():
            language = request_language()  # (the e-mail's, as the worker has no request)
            transaction.on_commit(lambda: tasks.enqueue(tasks.send_email_changed_notice, locked.user_id, old,
                                                        locked.site, language=language), robust=True)
    return True


def email_changed_notice_send(user_id: int, old: str, site: str) -> bool:
    """E-mail `old`, an account's former address, that the account has another one now (not which:
    `old` may no longer be its owner's to read); whether it was sent (the account may be gone)."""
    user = get_user_model().objects.filter(pk=user_id).first()
    if user is None or user.email.casefold() == old.casefold():
        return False
    context = {"user": user, "old": old, "site": urlsplit(site).netloc, "link": site + reverse("login")}
    email_from_templates("email_changed", context, old)
    return True


def second_factor_notice_send(user_id: int, site: str) -> bool:
    """E-mail an account's address that two-factor sign-in was set up for it; whether it was sent
    (the account may be gone, or have no address)."""
    user = get_user_model().objects.filter(pk=user_id).first()
    if user is None or not user.email:
        return False
    context = {"user": user, "site": urlsplit(site).netloc, "link": site + reverse("password_change")}
    email_from_templates("second_factor", context, user.email)
    return True


def account_delete(user) -> int:
    """Delete an account with its photos, their files, predictions and answers; the number of
    photos deleted. A staff account is refused: an administrator removes it in the admin (the last
    one would lock everyone out of it)."""
    if user.is_staff or user.is_superuser:
        raise ValidationError(gettext("A staff account is removed by an administrator, in the admin."),
                              code="staff")
    return account_remove(user)


def account_remove(user) -> int:
    """Delete any account (the admin's deletion, staff included) as account_delete does; the number
    of photos deleted."""
    # (in id order, as every lock of several photos is taken: two never deadlock)
    photos = Photo.objects.select_for_update().filter(owner=user).order_by("pk").values_list("pk")
    with transaction.atomic():
        # Locked first, so that nothing adds a row that makes the whole deletion fail at commit: the
        # photos (in the order the photo's own writes take: an answer or a prediction being written
        # finishes first, or waits and then finds its photo gone), then the account (an upload under
        # way then waits, and fails: its account is gone), then the photos again (one that an upload
        # committed in between).
        list(photos)
        lock_account(user.pk)
        count = len(photos.all())
        user.delete()  # the photos' files go once this commits (classifier.signals)
    return count


def model_version_files(path: str | Path) -> dict:
    """A version's fields read from the exported model folder at `path` (under MODELS_DIR): its
    labels, metrics and the fingerprint of its files."""
    folder = Path(settings.MODELS_DIR) / path
    if not (folder / CONFIG_FILE).exists() or not (folder / LABELS_FILE).exists():
        raise ValidationError(f"{folder} is not an exported model folder", code="not_model")
    labels = json.loads((folder / LABELS_FILE).read_text())
    if any(item["slug"] == Feedback.NONE for item in labels):
        raise ValidationError(f"{folder} has a class named {Feedback.NONE!r}, the site's answer \"none of "
                              "these\": its users could not confirm a photo of it. Rename the class "
                              "and train again.", code="reserved_class")
    metrics = json.loads((folder / METRICS_FILE).read_text()) if (folder / METRICS_FILE).exists() else {}
    return {"labels": labels, "metrics": metrics, "fingerprint": runtime.fingerprint(folder)}


def shipped_models_install() -> list[str]:
    """Copy the model folders the repository ships into MODELS_DIR where it lacks them (Docker keeps
    MODELS_DIR in a volume, which holds only what it was given): each whole, under a temporary name
    renamed when complete. A folder already there is never replaced, as versions may be registered
    from it. The names copied."""
    shipped, target = Path(settings.BASE_DIR) / "models", Path(settings.MODELS_DIR)
    if not shipped.is_dir() or target.resolve() == shipped.resolve():
        return []
    target.mkdir(parents=True, exist_ok=True)
    for stale in target.glob(".*.partial-*"):  # a copy killed midway, long ago
        if time.time() - stale.stat().st_mtime > storage.ABANDONED_AFTER_S:
            shutil.rmtree(stale, ignore_errors=True)
    copied = []
    for folder in sorted(shipped.iterdir()):  # (not the versions runs made there: .gitignore's)
        if folder.is_dir() and "+run" not in folder.name and not (target / folder.name).exists():
            partial = target / f".{folder.name}.partial-{uuid.uuid4().hex}"
            try:
                shutil.copytree(folder, partial)
                partial.rename(target / folder.name)
                copied.append(folder.name)
            except OSError:
                if not (target / folder.name).is_dir():  # else another web process installed it first
                    raise
            finally:
                shutil.rmtree(partial, ignore_errors=True)
    return copied


def model_version_register(*, name: str, path: str | Path, activate: bool = False) -> ModelVersion:
    """Register an exported model folder (labels and metrics read from it) as a version."""
    version_name(name)
    fields = model_version_files(path)
    with transaction.atomic():
        version = ModelVersion.objects.create(name=name, path=str(path), **fields)
        if activate:
            model_version_activate(version)
    return version


def lock_model_versions() -> ModelVersion | None:
    """Inside a transaction: wait for any other activation or run start to commit, and hold them off
    until this transaction ends (every version row is locked, in one order, so two never deadlock);
    returns the active version as it is now."""
    versions = list(ModelVersion.objects.select_for_update().order_by("pk"))
    return next((v for v in versions if v.is_active), None)


def model_version_activate(version: ModelVersion, *, replacing: ModelVersion | None = None,
                           confirmed: bool = False) -> ModelVersion:
    """Make `version` the one active version, atomically; workers pick it up on their next task.

    Refused, with the reason, when its files cannot be loaded and run (a broken version is never
    what the workers switch to); unless `confirmed`, when it is lower than the active version on
    the benchmark, was never measured on it (or on other photos), or repeats the active
    version's training (selectors.activation_warning; code "needs_confirmation"); or, with
    `replacing`, when that is no longer the active version (a training run's automatic activation,
    which has its own rule, never overrules staff who activated another meanwhile). The photos that
    failed for want of a model are then queued again.
    """
    from classifier import tasks

    try:
        runtime.check(version.folder, version.fingerprint)
    except ValueError as exc:
        raise ValidationError(
            gettext("%(name)s cannot be activated: its model files do not load (%(error)s).")
            % {"name": version.name, "error": exc}, code="broken_model") from exc
    with transaction.atomic():
        active = lock_model_versions()
        warning = selectors.activation_warning(version, active)
        if warning and not confirmed and replacing is None:
            raise ValidationError(gettext("%(name)s was not activated. %(warning)s") % {
                "name": version.name, "warning": warning}, code="needs_confirmation")
        if replacing is not None and active != replacing:
            raise ValidationError(
                gettext("%(name)s was not activated: the active version is no longer %(replaced)s but "
                        "%(active)s.") % {"name": version.name, "replaced": replacing.name,
                                          "active": active.name if active else "none"},
                code="active_changed")
        ModelVersion.objects.filter(is_active=True).exclude(pk=version.pk).update(is_active=False)
        if not ModelVersion.objects.filter(pk=version.pk).update(is_active=True):  # rolls back the above
            raise ValidationError(gettext("%(name)s was not activated: it was deleted meanwhile.") % {
                "name": version.name}, code="gone")
        transaction.on_commit(lambda: tasks.enqueue(tasks.classify_photos_awaiting_model), robust=True)
    version.refresh_from_db()
    log.info("model version %s is now active", version.name)
    return version


def model_version_delete(version: ModelVersion) -> None:
    """Delete a version that is not active, with the activations held off (one that commits first
    makes it active, and then it stays). The folder a training run made for it goes too (~20 MB),
    unless another version is registered from it; a folder registered by hand stays on disk (it
    may be the repository's own, or another version's)."""
    with transaction.atomic():
        lock_model_versions()
        if ModelVersion.objects.filter(pk=version.pk, is_active=True).exists():
            raise ValidationError(gettext("%(name)s is the active version: activate another one first.") % {
                "name": version.name}, code="active")
        made_by = TrainingRun.objects.filter(result_version=version.pk).values_list("pk", flat=True).first()
        version.delete()
        if made_by is not None:
            transaction.on_commit(lambda: remove_unregistered_folder(made_by))


def training_run_start(*, user, mode: str = TrainingRun.Mode.FAST,
                       auto_activate: bool = False) -> TrainingRun:
    """Queue a retraining of the active version; refused while another run is queued or running."""
    from classifier import tasks

    if mode not in TrainingRun.Mode.values:
        raise ValidationError(gettext("Unknown training mode %(mode)s.") % {"mode": repr(mode)}, code="mode")
    with transaction.atomic():
        # Concurrent starts and activations serialise here, so the check below cannot let two
        # through, and the run retrains the version that is active once an activation has committed.
        active = lock_model_versions()
        if active is None:
            raise ValidationError(gettext("No model version is active to retrain."), code="no_model")
        if TrainingRun.objects.filter(status__in=TrainingRun.LIVE).exists():
            raise ValidationError(gettext("A training run is already queued or running; wait for it to "
                                          "finish."), code="busy")
        run = TrainingRun.objects.create(started_by=user, mode=mode, base_version=active,
                                         auto_activate=auto_activate)
        transaction.on_commit(lambda: tasks.enqueue(tasks.train_model, run.pk), robust=True)
    return run


class RunStopped(Exception):
    """The run was cancelled (or given up on) while it trained: stop, and register nothing."""


def log_line(when, text: str) -> str:
    """A line of a run's log: its time of day (`when`, UTC) and what happened."""
    return f"{when:%H:%M:%S} UTC {text}\n"


def training_run_progress(run: TrainingRun, stage: str, percent: int) -> None:
    """Show how far a running run is; RunStopped if it is no longer running (cancelled meanwhile)."""
    run.stage, run.progress, run.stepped = stage, percent, timezone.now()
    run.log += log_line(run.stepped, stage)
    if not TrainingRun.objects.filter(pk=run.pk, status=TrainingRun.Status.RUNNING).update(
            stage=stage, progress=percent, stepped=run.stepped, log=run.log):
        raise RunStopped(f"training run {run.pk} is no longer running")


def training_run_cancel(run: TrainingRun, *, user) -> TrainingRun:
    """Cancel a queued or running run, and free the way for the next one at once (its worker may be
    gone). A queued run never starts; a running one stops at its next step (the next epoch, or before
    it registers its version) and leaves no model folder. One that has registered its version already
    keeps it, and does not activate it."""
    with transaction.atomic():  # waits for a registration or activation under way
        locked = TrainingRun.objects.select_for_update().filter(pk=run.pk).first()
        if locked is None:
            raise Http404(gettext("The training run no longer exists."))
        if locked.status not in TrainingRun.LIVE:
            raise ValidationError(gettext("Training run %(id)s has already ended (%(status)s).") % {
                "id": run.pk, "status": locked.status}, code="ended")
        now = timezone.now()
        locked.status, locked.finished = TrainingRun.Status.CANCELLED, now
        locked.error = f"Cancelled by {user.get_username()}."
        if locked.result_version:
            locked.error += (f" It had registered {locked.result_version.name}, which stays, and was not "
                             "activated by the run.")
        locked.log += log_line(now, f"cancelled by {user.get_username()}")
        locked.save(update_fields=["status", "finished", "error", "log"])
        transaction.on_commit(lambda: remove_unregistered_folder(run.pk))
    return locked


def training_run_folder(run: TrainingRun, name: str) -> None:
    """Note the model folder (under MODELS_DIR) a running run is about to write, so that it can be
    removed if the run ends without registering it."""
    run.folder = name
    TrainingRun.objects.filter(pk=run.pk).update(folder=name)


def remove_unregistered_folder(run_id: int) -> None:
    """Remove the model folder of a run once no version is registered from it: ~20 MB that looks
    like a version, left when its worker was killed (a run that fails removes its own), cut short
    when it is still going after a cancel (it then fails at its next step, changing nothing), or
    the folder of its version once that is deleted."""
    folder = TrainingRun.objects.filter(pk=run_id).values_list("folder", flat=True).first()
    if not folder:
        return
    target = (Path(settings.MODELS_DIR) / folder).resolve()
    if target.is_dir() and not any(same_folder(version.folder, target)
                                   for version in ModelVersion.objects.only("path")):
        shutil.rmtree(target, ignore_errors=True)  # (a version registered by hand, however spelt, stays)


def same_folder(one: Path, other: Path) -> bool:
    """Whether two paths name one folder: however spelt (a link, another case on a disk that
    ignores case, a bind mount), where both exist."""
    try:
        return os.path.samefile(one, other)
    except OSError:  # (one of them is not there)
        return False


def training_run_stopped(run: TrainingRun) -> None:
    """Say in the log of a run no longer running (cancelled) when its worker stopped working on it."""
    line = log_line(timezone.now(), "its worker stopped")
    TrainingRun.objects.filter(pk=run.pk).update(log=Concat("log", Value(line)))


def lock_running(run: TrainingRun) -> None:
    """Inside a transaction: lock the run's row until it ends (a cancellation waits); RunStopped if
    the run is no longer running (cancelled meanwhile)."""
    if not TrainingRun.objects.select_for_update().filter(pk=run.pk, status=TrainingRun.Status.RUNNING
                                                          ).exists():
        raise RunStopped(f"training run {run.pk} is no longer running")


def training_run_register(run: TrainingRun, name: str) -> ModelVersion:
    """Register the version a running run made (its folder `name` under MODELS_DIR) as the run's
    result, with the data it used (the answers by photo id too) and the figures it measured (kept
    should it be cancelled before it ends); RunStopped if the run was cancelled meanwhile."""
    with transaction.atomic():
        lock_running(run)
        version = model_version_register(name=name, path=name)
        TrainingRun.objects.filter(pk=run.pk).update(result_version=version, data=run.data,
                                                     metrics=run.metrics, photos_used=run.photos_used)
    run.result_version = version
    return version


def training_run_activate(run: TrainingRun, version: ModelVersion, *, replacing: ModelVersion) -> None:
    """Activate a running run's version in place of `replacing` (model_version_activate) and record
    the run's success, at once: a cancel waiting meanwhile finds it ended. RunStopped if the run was
    cancelled before."""
    with transaction.atomic():
        lock_running(run)
        model_version_activate(version, replacing=replacing)
        training_run_succeed(run, version)


def training_run_begin(run: TrainingRun, task_id: str = "") -> bool:
    """Mark a queued run running, by the task `task_id`; False if it is not queued (a duplicate)."""
    now = timezone.now()
    taken = TrainingRun.objects.filter(pk=run.pk, status=TrainingRun.Status.QUEUED).update(
        status=TrainingRun.Status.RUNNING, started=now, stepped=now, task_id=task_id)
    if taken:  # keep the in-memory run in step
        run.status, run.started, run.stepped, run.task_id = TrainingRun.Status.RUNNING, now, now, task_id
    return bool(taken)


def training_run_succeed(run: TrainingRun, version: ModelVersion) -> None:
    """Record the run's result, unless it is no longer running (marked failed meanwhile)."""
    run.status, run.result_version, run.finished = TrainingRun.Status.SUCCEEDED, version, timezone.now()
    run.stage, run.progress = "done", 100
    fields = ["status", "result_version", "finished", "stage", "progress", "data", "metrics", "decision",
              "log"]
    TrainingRun.objects.filter(pk=run.pk, status=TrainingRun.Status.RUNNING).update(
        **{field: getattr(run, field) for field in fields})


def training_run_fail(run: TrainingRun, error: str) -> None:
    """Mark a queued or running run failed (a cancelled one stays cancelled), and remove the model
    folder it leaves unregistered."""
    TrainingRun.objects.filter(pk=run.pk, status__in=TrainingRun.LIVE).update(
        status=TrainingRun.Status.FAILED, error=error[:5000], finished=timezone.now())
    transaction.on_commit(lambda: remove_unregistered_folder(run.pk))


def media_orphans_remove(names: list[str], older_than: timedelta = selectors.ORPHAN_AFTER) -> tuple[int, int]:
    """Remove the files `names` (selectors.media_check's orphans), a batch at a time, each only if
    no row names it now, it is older than `older_than` and it lies in the storage's media folders
    (a link is removed, never what it leads to); how many were removed, and their bytes."""
    removed = size = 0
    folders, cutoff = tuple(f"{folder}/" for folder in selectors.media_folders()), timezone.now() - older_than
    for start in range(0, len(names), 500):
        batch = [name for name in names[start:start + 500]
                 if name.startswith(folders) and ".." not in name.split("/")]
        for model, fields in selectors.media_file_fields():
            named = Q()
            for field in fields:
                named |= Q(**{f"{field}__in": batch})
            for row in model.objects.filter(named).values_list(*fields):
                batch = [name for name in batch if name not in row]
        for name in batch:
            try:
                if default_storage.get_modified_time(name) > cutoff:
                    continue
                bytes_ = default_storage.size(name)
                default_storage.delete(name)
            except FileNotFoundError:
                continue
            removed, size = removed + 1, size + bytes_
    return removed, size
