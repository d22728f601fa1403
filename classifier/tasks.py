"""Celery tasks: thin. They take ids (or, for e-mails with no row behind them, the address), re-fetch,
and are safe to run twice."""

from __future__ import annotations

import logging
import time

from celery import current_app, shared_task
from celery.exceptions import SoftTimeLimitExceeded
from celery.signals import task_postrun, task_prerun, worker_process_init, worker_ready
from django import db
from django.conf import settings
from django.template.defaultfilters import pluralize
from django.utils import translation
from django.utils.translation import gettext_noop
from kombu.exceptions import OperationalError

from classifier import inference, selectors, services, storage
from training.preprocess import ImageDecodeError

log = logging.getLogger(__name__)


# Publishing gives up quickly when the broker is down: the upload is stored and stays queued,
# and the sweep below sends it once the broker is back.
PUBLISH_RETRY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.25, "interval_max": 0.5}


# After a message could not be sent, this process sends no photo to the broker for this long: one that
# hangs costs each message some 3.5 s (PUBLISH_RETRY on its socket timeout), so an upload of twenty
# photos would wait over a minute (past a proxy's timeout) for photos that are stored anyway, and
# that the sweep sends once the broker is back (the cache's outages are skipped alike:
# cakesite/cache.py); so do the sweep's own messages. The others (a run or a link someone just asked
# for, e-mails no sweep sends, the worker's start-up tasks) are always tried.
SKIP_AFTER_FAILURE_S = 5.0
broker_down_until = 0.0  # time.monotonic()


def enqueue(task, *args, swept: bool = False, priority: int | None = None,
            language: str | None = None) -> bool:
    """Send `task(*args)`; False (logged) when the broker cannot be reached, or, for a message the
    sweep sends again (`swept`: a photo's, or the sweep's own), could not a moment ago
    (SKIP_AFTER_FAILURE_S). `priority`: on Redis, a message of priority 9 (BEHIND) is taken only
    while none of priority 0 (the default) waits in its queue. `language`: an e-mail's (language_of)."""
    global broker_down_until
    ids = [arg for arg in args if type(arg) is int]  # (not the e-mail addresses some tasks take)
    if swept and time.monotonic() < broker_down_until:
        log.warning("broker unreachable a moment ago, %s%s not sent", task.name, ids)
        return False
    try:
        task.apply_async(args, retry=True, retry_policy=PUBLISH_RETRY, priority=priority,
                         headers={"language": language} if language else None)
    except OperationalError as exc:  # kombu's "cannot reach the broker"
        broker_down_until = time.monotonic() + SKIP_AFTER_FAILURE_S
        log.warning("broker unreachable, %s%s not sent: %s", task.name, ids, exc)
        return False
    return True


@worker_ready.connect
def sweep_at_start(sender=None, **_kwargs) -> None:
    """A worker that starts (again) picks up what a killed worker or a broker outage left behind."""
    enqueue(requeue_stuck)
    enqueue(remove_abandoned_files)
    enqueue(remove_expired)  # (also hourly; a worker restarted more often would never get to it)
    enqueue(classify_photos_awaiting_model)  # (the model's files may have been mended meanwhile)


def messages_waiting(queue: str) -> int | None:
    """How many messages wait in `queue` on the broker (Redis or the filesystem one); None when
    the broker cannot be asked."""
    with current_app.connection_for_read() as connection:
        try:
            connection.ensure_connection(max_retries=1)
            return connection.default_channel.queue_declare(queue=queue, passive=True).message_count
        except connection.channel_errors:  # Redis drops a queue's list when it empties
            return 0
        except (OperationalError, *connection.connection_errors) as exc:  # kombu's, and the transport's
            log.warning("cannot count the messages in %s: %s", queue, exc)
            return None


@shared_task
def requeue_stuck() -> str:
    """Send again the photos, training runs and confirmation e-mails that waited too long (see
    settings.REQUEUE_AFTER_S): a message lost with a killed worker or never sent while the broker
    was down; and fill in the copies of predictions that a worker of an earlier release left out
    (see Photo.predicted_label). Safe to repeat: each task does its work once. While the
    classification queue holds a backlog, a queued photo most likely still waits in it: it is sent
    again only after much longer (a backlog that takes longer than REQUEUE_AFTER_S would otherwise
    be sent again at every sweep, growing the queue)."""
    backlog = messages_waiting(current_app.conf.task_default_queue)
    # (a broker that could not be asked once is not asked again: one that hangs would cost 6 s more)
    training_waiting = None if backlog is None else messages_waiting(settings.TRAINING_QUEUE)
    photos = services.stuck_photos_requeue(queue_empty=backlog == 0)
    runs = services.stuck_runs_requeue(training_queue_empty=not training_waiting)
    services.lost_runs_fail()
    for pk in photos:  # (swept: on a broker that hangs, the rest wait for the next sweep, not 3.5 s each)
        enqueue(classify_photo, pk, swept=True)
    for pk in runs:
        enqueue(train_model, pk, swept=True)
    emails = services.email_confirmations_unsent()
    for pk in emails:
        enqueue(send_email_confirmation, pk, swept=True)
    copied = services.copies_fill()
    onto = pluralize(copied, "its photo,their photos")
    return (f"{sent(photos, 'photo')}, {sent(runs, 'training run')}, {sent(emails, 'confirmation e-mail')}"
            + (f", {copied} prediction{pluralize(copied)} copied onto {onto}" if copied else ""))


def sent(ids: list[int], noun: str) -> str:
    """How many of `noun` the sweep sent again, with their ids when few (for the worker's log)."""
    which = f" ({', '.join(map(str, ids))})" if 0 < len(ids) <= 10 else ""
    return f"{len(ids)} {noun}{pluralize(len(ids))}{which}"


# On Redis (kombu's priority_steps: 0, 3, 6, 9; 0 first), the priority of the photos sent again after
# waiting for a model: behind every upload made since, which would otherwise wait for all of them (a
# thousand photos are some 40 s of one worker process). The filesystem broker ignores it.
BEHIND = 9


@shared_task
def classify_photos_awaiting_model() -> str:
    """Send again the photos that failed for want of a model: a version was just activated, or a
    worker started (again), perhaps after its files were mended. Sent each on its own, as uploads
    are; one that still finds no model that loads fails again, awaiting the next."""
    photos = services.photos_awaiting_model_requeue()
    for pk in photos:
        # (one never sent waits in `queued` for the sweep)
        enqueue(classify_photo, pk, swept=True, priority=BEHIND)
    return f"{len(photos)} photo{pluralize(len(photos))}"


@shared_task
def remove_expired() -> str:
    """Hourly: expired sessions, and addresses never confirmed long after their link expired."""
    return f"expired sessions and {services.expired_remove()} forgotten unconfirmed addresses removed"


@shared_task
def remove_abandoned_files() -> str:
    """Remove the partial files of writes killed midway (classifier.storage); at every worker start,
    not in the periodic sweep, as it reads every folder of the media."""
    return f"{storage.remove_abandoned(settings.MEDIA_ROOT)} abandoned partial files removed"


@task_prerun.connect
@task_postrun.connect
def database_as_for_a_request(**_kwargs) -> None:
    """Around each task what Django does around each request: a connection that broke or outlived
    CONN_MAX_AGE is closed, and the next query opens a new one (see CELERY_DB_REUSE_MAX)."""
    db.close_old_connections()


@worker_process_init.connect
def load_model_at_process_start(**_kwargs) -> None:
    """Each worker process loads the active model once, before its first task. (This receiver runs
    before Celery's Django fixup's, which then drops the process's connections without a word to the
    server: warm_up's query is safe only because the pool's parent holds no database connection when
    it forks; the fixup closed it at worker start.)"""
    inference.warm_up()


# A database that drops the worker's connection (a restart, a failover) delays a photo by a retry,
# on a new connection (database_as_for_a_request closes the broken one after the failed try).
@shared_task(bind=True, max_retries=3, default_retry_delay=5, acks_late=True,
             autoretry_for=(db.OperationalError, db.InterfaceError))
def classify_photo(self, photo_id: int) -> str:
    """Classify a photo with the active model and record the prediction (once per version). What it
    returns, the worker's log line of the task, names the photo: "photo 12: kue_lapis"."""
    return f"photo {photo_id}: {classify(self, photo_id)}"


def classify(task, photo_id: int) -> str:
    """classify_photo's work: the label recorded, or what came of the photo instead."""
    photo = selectors.photo_to_classify(photo_id)
    if photo is None:
        return "gone"  # deleted before the worker got to it: nothing to do
    if photo.active_version_id is None:
        fail_for_want_of_a_model(photo, gettext_noop("No model is active yet; the photo is classified once "
                                                     "an administrator activates one."))
        return "no model"
    if photo.already_predicted:
        services.photo_mark_done(photo)
        return "already done"
    if photo.starts >= settings.CLASSIFY_MAX_STARTS:
        # Its starts ended without a word: most likely the worker process died on it (killed, out of
        # memory, a crash in a native library), and the broker handed the task back
        # (reject_on_worker_lost) or the sweep sent it again. A photo that kills its worker would do
        # so for ever. (A lost database's retries count too: at most 4, below the limit.)
        log.error("photo %s was started %s times and never finished; giving up", photo_id, photo.starts)
        # (stored in English, shown in the reader's language: Photo.error_message; the count is logged)
        services.photo_fail(photo, gettext_noop("Classifying this photo was started several times and never "
                                                "finished; it is not tried again unless you retry it."))
        return "given up"
    services.photo_start(photo)
    try:
        with photo.image.open("rb") as source:
            result = inference.classify(photo.active_version_id, source)
        # result.version_id is the active version's, or, when that one does not load, the one still
        # served. Recording can fail too (the time limit; a heat map the disk refuses is left out):
        # the same retries, then a failed photo that says so, never one left processing.
        recorded = services.prediction_record(
            photo=photo, version_id=result.version_id, probabilities=result.probabilities,
            label=result.label, confidence=result.confidence, inference_ms=result.inference_ms,
            heatmap=result.heatmap,
        )
    except (db.OperationalError, db.InterfaceError):
        raise  # the database: autoretry_for sends it again on a new connection
    except (ImageDecodeError, FileNotFoundError) as exc:
        log.warning("photo %s cannot be classified: %s", photo_id, exc)  # (the error names the file)
        services.photo_fail(photo, gettext_noop(
            "The photo could not be read: its file on the server is missing. Delete it and upload it "
            "again.") if isinstance(exc, FileNotFoundError) else gettext_noop(
            "The photo could not be read: its file on the server is damaged. Delete it and upload it "
            "again."))
        return "failed"
    except inference.ModelUnavailable as exc:
        log.error("photo %s: %s", photo_id, exc)
        fail_for_want_of_a_model(photo, gettext_noop("The model cannot be loaded right now; the photo is "
                                                     "classified once a working version is active."))
        return "failed"
    except SoftTimeLimitExceeded:
        services.photo_fail(photo, gettext_noop("Classification took too long."))
        return "failed"
    except Exception as exc:
        if task.request.retries < task.max_retries:
            log.exception("classifying photo %s failed; retrying", photo_id)
            services.photo_start_ended(photo)  # this start ended (in an error): it is no lost one
            raise task.retry(exc=exc) from exc
        log.exception("classifying photo %s failed for good", photo_id)
        services.photo_fail(photo, gettext_noop("Classification failed; please retry later."))
        return "failed"
    if inference.served_again():  # the model's files were mended: the photos that waited for it
        enqueue(classify_photos_awaiting_model)
    if not recorded:  # deleted by its owner while the model ran, or a duplicate delivery
        return "gone" if selectors.photo_state(photo_id) is None else "already done"
    return result.label


def fail_for_want_of_a_model(photo, reason: str) -> None:
    """Fail the photo until a model is active (services.photo_fail's `awaits_model`). A version
    activated since the photo was read may have sent its classify_photos_awaiting_model before the
    photo was failed (another worker process ran it), which found the photo still processing: then
    one more is sent (each photo is queued again once, however many arrive)."""
    services.photo_fail(photo, reason, awaits_model=True)
    active = selectors.active_version()
    if active is not None and active.pk != photo.active_version_id:
        enqueue(classify_photos_awaiting_model)


# The e-mail tasks write their e-mail in the language of the request that asked (the worker has
# none), which enqueue(..., language=...) puts in the message's headers, not among its arguments: an
# upgrade runs the new web process beside the worker of the release before for a while (the worker
# starts once the web process is healthy), and an argument more was a TypeError there, the e-mail
# lost; a header it does not know, it leaves alone (and writes the e-mail in English). A confirmation
# link is written in its PendingEmail's language (the sweep sends it again with none).

def language_of(task) -> str:
    """The language the message running `task` names (enqueue's `language`), else the site's."""
    return (task.request.headers or {}).get("language") or settings.LANGUAGE_CODE


@shared_task(bind=True)
def send_password_reset(task, email: str, domain: str, use_https: bool) -> str:
    """E-mail a reset link to the accounts with this address (the request that asked only queued it)."""
    with translation.override(language_of(task)):
        return f"{services.password_reset_send(email, domain, use_https)} e-mails"


@shared_task
def send_email_confirmation(pending_id: int) -> str:
    """E-mail the link that confirms an address an account asked for (once, whatever the deliveries)."""
    return "sent" if services.email_confirmation_send(pending_id) else "not sent"


# A security notice the mail server did not take (down, refusing, a timeout: smtplib's errors are
# OSErrors) is tried again a minute later, then after twice as long each time, up to an hour, six
# times: no row keeps it for the sweep (a confirmation link's does; a reset link's owner asks again).
# A server that took it and then timed out gets it twice.
NOTICE_RETRIES = {"autoretry_for": (OSError,), "retry_backoff": 60, "retry_backoff_max": 3600,
                  "retry_jitter": False, "max_retries": 6}  # (with Celery's jitter: any wait up to those)


@shared_task(bind=True, **NOTICE_RETRIES)
def send_email_changed_notice(task, user_id: int, old: str, site: str) -> str:
    """Tell an account's former address that the account has another one now."""
    with translation.override(language_of(task)):
        return "sent" if services.email_changed_notice_send(user_id, old, site) else "not sent"


@shared_task(bind=True, **NOTICE_RETRIES)
def send_second_factor_notice(task, user_id: int, site: str) -> str:
    """Tell an account's address that two-factor sign-in was set up for it."""
    with translation.override(language_of(task)):
        return "sent" if services.second_factor_notice_send(user_id, site) else "not sent"


@shared_task(bind=True)
def send_second_factor_code(task, user_id: int, site: str) -> str:
    """E-mail an account's address the code that sets up two-factor sign-in (read from the database)."""
    with translation.override(language_of(task)):
        return "sent" if services.second_factor_code_send(user_id, site) else "not sent"


@shared_task(bind=True, acks_late=True, time_limit=settings.TRAINING_TIME_LIMIT_S,
             soft_time_limit=settings.TRAINING_TIME_LIMIT_S - 300)
def train_model(self, run_id: int) -> str:
    """Run a queued training run (on the training queue, so classification never waits on it)."""
    from classifier import retraining
    from classifier.models import TrainingRun

    run = selectors.run_to_train(run_id)
    if run is None or not services.training_run_begin(run, self.request.id or ""):
        # Redis hands the very task that runs a run back, marked redelivered, when the pool process
        # running it died (killed, out of memory): that run will never finish, and would hold off
        # new runs until the sweep gives up on it (an hour). (A whole worker killed leaves its task
        # unacknowledged: that waits for the sweep.)
        if run is not None and run.status == TrainingRun.Status.RUNNING and run.task_id == self.request.id \
                and (self.request.delivery_info or {}).get("redelivered"):
            log.error("training run %s: its worker process died during the run; marked failed", run_id)
            services.training_run_fail(run, "The training worker stopped during the run (killed or out of "
                                            "memory); start a new run.")
            return "worker lost"
        return "not queued"  # gone, or already taken by an earlier delivery
    try:
        version = retraining.execute(run)
    except Exception as exc:
        # Cancelled: found at its next step (RunStopped), or before it, by whatever the cancel did to
        # it (removing the folder it was writing into).
        if isinstance(exc, services.RunStopped) or not on_a_working_connection(selectors.run_is_running,
                                                                               run.pk):
            if isinstance(exc, services.RunStopped):
                log.info("training run %s is no longer running (cancelled); it stopped", run_id)
            else:  # most likely what a cancel did to it; but say what, in case it was not
                log.warning("training run %s is no longer running; it stopped on an error", run_id,
                            exc_info=True)
            on_a_working_connection(services.training_run_stopped, run)
            return "cancelled"
        log.exception("training run %s failed", run_id)
        on_a_working_connection(services.training_run_fail, run, f"{type(exc).__name__}: {exc}")
        return "failed"
    on_a_working_connection(services.training_run_succeed, run, version)
    return version.name


# Seconds between tries of a run's last write while the database is away.
LAST_WRITE_WAITS_S = (0, 1, 5, 15, 30, 60)


def on_a_working_connection(write, *args) -> None:
    """A run's last write, tried again on a new connection while the database is away. The
    connection a long run held may have been cut meanwhile (a restart, a failover; Django does not
    reconnect inside a task): a write that failed on it would leave the run `running`, refusing new
    runs, until the sweep gives up on it an hour later."""
    for wait in (*LAST_WRITE_WAITS_S, None):
        try:
            return write(*args)
        except (db.OperationalError, db.InterfaceError) as exc:
            if wait is None or db.connection.in_atomic_block:  # a transaction cannot go on elsewhere
                raise
            log.warning("the database is unreachable (%s); trying again in %s s", exc, wait)
            db.close_old_connections()  # closes the connection that failed; the next query opens one
            time.sleep(wait)
