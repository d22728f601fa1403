"""What users store and see: photos, predictions, and the model versions that made them."""

import copy
import uuid
from datetime import timedelta
from pathlib import Path, PurePath

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models
from django.db.models import Q
from django.db.models.functions import Now
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import mark_safe
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _
from knox.models import AbstractAuthToken


class EmptyLastIndex(models.Index):
    """An index whose descending fields keep empty values (NULL) last, as the API's lists read them.
    PostgreSQL puts them first in a descending index unless told otherwise; SQLite puts them last
    already (and cannot say NULLS LAST in an index)."""

    def create_sql(self, model, schema_editor, using="", **kwargs):
        index = self
        if schema_editor.connection.vendor == "postgresql":
            index = copy.copy(self)
            index.fields_orders = [(name, f"{order} NULLS LAST" if order else order)
                                   for name, order in self.fields_orders]
        return super(EmptyLastIndex, index).create_sql(model, schema_editor, using=using, **kwargs)


def photo_upload_to(instance: "Photo", filename: str) -> str:
    """A generated name: nothing of the user's file name reaches the disk."""
    return f"photos/{uuid.uuid4().hex}.{instance.image_format}"


def thumbnail_upload_to(instance: "Photo", filename: str) -> str:
    return f"thumbnails/{uuid.uuid4().hex}.jpg"


def display_upload_to(instance: "Photo", filename: str) -> str:
    """Named after the photo's own file: a deletion that read the photo before its display copy was
    made still knows the copy's name (classifier.signals)."""
    return f"displays/{PurePath(instance.image.name).stem}.jpg"


def heatmap_upload_to(instance: "Prediction", filename: str) -> str:
    return f"heatmaps/{uuid.uuid4().hex}.png"


# A version's name also names the folders of the runs retrained from it: one plain path component.
version_name = RegexValidator(r"\A[A-Za-z0-9][A-Za-z0-9._+-]*\Z",
                              _("Use letters, digits and . _ + - only, starting with a letter or a digit."))


class ModelVersion(models.Model):
    """A trained model folder the worker can serve; exactly one is active."""

    name = models.CharField(_("name"), max_length=100, unique=True, validators=[version_name])
    path = models.CharField(_("path"), max_length=500,
                            help_text=_("model folder, relative to MODELS_DIR or absolute"))
    labels = models.JSONField(_("labels"),
                              help_text=_('[{"slug": ..., "name": ...}] in the model\'s output order'))
    metrics = models.JSONField(_("metrics"), default=dict, blank=True)
    fingerprint = models.CharField(
        _("fingerprint"),
        max_length=64, blank=True, default="", db_default="",  # (a worker of a release before it: empty)
        help_text=_("SHA-256 of its files when registered (training.runtime.fingerprint): files changed "
                    "afterwards are neither activated nor served; empty: not checked"))
    is_active = models.BooleanField(_("active"), default=False)
    created = models.DateTimeField(_("registered"), auto_now_add=True)

    class Meta:
        verbose_name = _("model version")
        verbose_name_plural = _("model versions")
        ordering = ["-created", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["is_active"], condition=Q(is_active=True),
                                    name="one_active_model_version"),
        ]

    def __str__(self) -> str:
        return gettext("%(name)s (active)") % {"name": self.name} if self.is_active else self.name

    @property
    def folder(self) -> Path:
        return Path(settings.MODELS_DIR) / self.path

    def display_name(self, slug: str) -> str:
        return next((item["name"] for item in self.labels if item["slug"] == slug), slug)


class Photo(models.Model):
    class Status(models.TextChoices):  # named as the upload page names them
        QUEUED = "queued", _("Waiting")
        PROCESSING = "processing", _("Being classified")
        DONE = "done", _("Classified")
        FAILED = "failed", _("Failed")

    PENDING = (Status.QUEUED, Status.PROCESSING)  # not classified yet: waiting for or in the worker

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, verbose_name=_("owner"), on_delete=models.CASCADE,
                              related_name="photos")
    # (no width_field/height_field: width and height are the photo upright, set at upload, where Django
    # would read them from the file as stored, turned or not)
    image = models.ImageField(_("image"), upload_to=photo_upload_to)
    thumbnail = models.ImageField(_("thumbnail"), upload_to=thumbnail_upload_to, blank=True)
    # What the photo's page shows of a photo larger than images.DISPLAY_SIZE (none: the photo itself)
    display = models.ImageField(_("display copy"), upload_to=display_upload_to, blank=True, db_default="",
                                default="")
    image_format = models.CharField(_("image format"), max_length=8)
    original_name = models.CharField(_("file name"), max_length=255, blank=True)
    sha256 = models.CharField(_("SHA-256"), max_length=64)  # (nothing looks photos up by it: no index)
    width = models.PositiveIntegerField(_("width"), default=0)
    height = models.PositiveIntegerField(_("height"), default=0)
    status = models.CharField(_("status"), max_length=12, choices=Status, default=Status.QUEUED,
                              db_index=True)
    error = models.TextField(_("error"), blank=True)
    starts = models.PositiveSmallIntegerField(_("tries"), default=0,
                                              help_text=_("times a worker started classifying it"))
    # Failed for want of a model that loads: queued again when a version is activated (and at worker
    # start), services.photos_awaiting_model_requeue; the owner need not retry it.
    awaits_model = models.BooleanField(_("awaits a model that loads"), default=False, db_default=False)
    created = models.DateTimeField(_("uploaded"), auto_now_add=True, db_index=True)
    updated = models.DateTimeField(_("updated"), auto_now=True)
    # Since when it waits for the classifier: set by the database when the photo is stored (by a web
    # process of any release) and when it is queued again after failing; not by the sweep's resend of
    # a photo still waiting. Read only while it waits (its page's "late", the backlog's oldest), against
    # the web process's clock (the database's host's in Compose); empty for photos settled before it
    # was kept.
    waiting_since = models.DateTimeField(_("waiting since"), null=True, blank=True, db_default=Now())
    # Its prediction's label, confidence and margin, copied by services.prediction_record in the
    # transaction that records it (empty until then): the API's list filters and orders on them with
    # an index instead of a subquery per photo. (A worker of the release before them, still running
    # while this one is deployed, leaves them empty: the sweep fills them, services.copies_fill.)
    predicted_label = models.CharField(_("predicted label"), max_length=100, blank=True, default="",
                                       db_default="")
    confidence = models.FloatField(_("confidence"), null=True, blank=True)
    margin = models.FloatField(_("margin"), null=True, blank=True)
    # The Idempotency-Key of the API request that stored it and the file's place in that request:
    # the same request sent again (its answer was lost on the way) gets this photo, not a copy.
    client_key = models.CharField(_("idempotency key"), max_length=80, blank=True, default="", db_default="")

    class Meta:
        verbose_name = _("photo")
        verbose_name_plural = _("photos")
        ordering = ["-created", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["owner", "client_key"], condition=~models.Q(client_key=""),
                                    name="photo_client_key_once_per_owner"),
        ]
        indexes = [
            # "My photos" and everyone's (staff, admin), newest first: read in index order, no sort
            models.Index(fields=["owner", "-created", "-id"], name="photo_owner_newest"),
            models.Index(fields=["-created", "-id"], name="photo_newest"),
            # the API's list ordered by confidence or margin, photos without one last either way: an
            # index for each direction (read backwards, one would put them first descending)
            models.Index(fields=["owner", "confidence"], name="photo_owner_confidence"),
            EmptyLastIndex(fields=["owner", "-confidence"], name="photo_owner_confidence_down"),
            models.Index(fields=["confidence"], name="photo_confidence"),
            EmptyLastIndex(fields=["-confidence"], name="photo_confidence_down"),
            models.Index(fields=["owner", "margin"], name="photo_owner_margin"),
            EmptyLastIndex(fields=["owner", "-margin"], name="photo_owner_margin_down"),
            models.Index(fields=["margin"], name="photo_margin"),
            EmptyLastIndex(fields=["-margin"], name="photo_margin_down"),
            # the sweep's look for photos done without their copies (nearly always none)
            models.Index(fields=["id"], condition=models.Q(status="done", confidence__isnull=True),
                         name="photo_done_without_copies"),
        ]

    def __str__(self) -> str:
        return gettext("photo %(id)s of %(owner)s") % {"id": self.pk, "owner": self.owner}

    def get_absolute_url(self) -> str:
        return reverse("photo-detail", args=[self.pk])

    @property
    def error_message(self) -> str:
        """`error` in the request's language: it is stored in English (a fixed sentence marked with
        gettext_noop where it is set); an older or unknown text is shown as it is."""
        return gettext(self.error) if self.error else ""


class Prediction(models.Model):
    photo = models.ForeignKey(Photo, verbose_name=_("photo"), on_delete=models.CASCADE,
                              related_name="predictions")
    model_version = models.ForeignKey(ModelVersion, verbose_name=_("model version"),
                                      on_delete=models.PROTECT, related_name="predictions")
    label = models.CharField(_("label"), max_length=100, db_index=True)
    confidence = models.FloatField(_("confidence"))
    probabilities = models.JSONField(_("probabilities"), help_text=_("{slug: probability} for every class"))
    margin = models.FloatField(_("margin"), default=1.0,  # (the review queue orders by the photo's copy)
                               help_text=_("top probability minus the second: small means unsure"))
    inference_ms = models.FloatField(_("inference (ms)"))
    heatmap = models.ImageField(_("heat map"), upload_to=heatmap_upload_to, blank=True,
                                help_text=_("where the model looked (Grad-CAM), a transparent overlay"))
    created = models.DateTimeField(_("made"), auto_now_add=True)

    @property
    def label_name(self) -> str:
        """The label in words, as its version names the cake ("Kue Lapis")."""
        return self.model_version.display_name(self.label)

    class Meta:
        verbose_name = _("prediction")
        verbose_name_plural = _("predictions")
        ordering = ["-created", "-id"]
        indexes = [
            # a photo's latest prediction (the subqueries and the prefetch) without a sort
            models.Index(fields=["photo", "-created", "-id"], name="prediction_photo_latest"),
            models.Index(fields=["-created", "-id"], name="prediction_newest"),  # the admin's list
        ]
        constraints = [
            # A redelivered task never records a second prediction for the same photo and model.
            models.UniqueConstraint(fields=["photo", "model_version"], name="one_prediction_per_version"),
        ]

    def __str__(self) -> str:
        from classifier.templatetags.percents import percent  # (as the pages round it: never 100 short of 1)

        return gettext("%(label)s (%(percent)s%%) for photo %(id)s") % {
            "label": self.label, "percent": percent(self.confidence), "id": self.photo_id}


class Feedback(models.Model):
    """A person's verdict on a photo's label: confirmed, corrected, or none of the known cakes."""

    NONE = "none"  # the photo shows none of the classes the model knows

    photo = models.OneToOneField(Photo, verbose_name=_("photo"), on_delete=models.CASCADE,
                                 related_name="feedback")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, verbose_name=_("given by"), on_delete=models.SET_NULL,
                             null=True, related_name="feedback_given")
    label = models.CharField(_("answer"), max_length=100, help_text=_('the right class slug, or "none"'))
    predicted_label = models.CharField(_("predicted label"), max_length=100, blank=True,
                                       help_text=_("what the model said when the feedback was given"))
    model_version = models.ForeignKey(ModelVersion, verbose_name=_("model version"),
                                      on_delete=models.SET_NULL, null=True, blank=True,
                                      related_name="feedback", help_text=_("whose prediction was judged"))
    is_correction = models.BooleanField(_("correction"), help_text=_("the label differs from the prediction"))
    created = models.DateTimeField(_("first given"), auto_now_add=True)
    updated = models.DateTimeField(_("given"), auto_now=True, db_index=True)

    class Meta:  # (what the site calls it: the user's answer about the photo's cake)
        verbose_name = _("answer")
        verbose_name_plural = _("answers")

    def answer_name(self, version: ModelVersion | None) -> str:
        """The answer in words: "none of these", or the cake's name as `version` gives it."""
        if self.label == self.NONE:
            return gettext("none of these")
        return version.display_name(self.label) if version else self.label

    def __str__(self) -> str:
        if self.is_correction:
            return gettext("photo %(id)s corrected to %(label)s") % {"id": self.photo_id, "label": self.label}
        return gettext("photo %(id)s confirmed as %(label)s") % {"id": self.photo_id, "label": self.label}


class TrainingRun(models.Model):
    """A retraining job: what it trained on, how far it is, and the version it produced."""

    class Status(models.TextChoices):
        QUEUED = "queued", _("Queued")
        RUNNING = "running", _("Running")
        SUCCEEDED = "succeeded", _("Succeeded")
        FAILED = "failed", _("Failed")
        CANCELLED = "cancelled", _("Cancelled")

    class Mode(models.TextChoices):
        FAST = "fast", _("fast: refit the head on cached embeddings (seconds)")
        FULL = "full", _("full: fine-tune the top blocks on the base photos too (minutes)")

    LIVE = (Status.QUEUED, Status.RUNNING)

    started_by = models.ForeignKey(settings.AUTH_USER_MODEL, verbose_name=_("started by"),
                                   on_delete=models.SET_NULL, null=True, related_name="training_runs")
    mode = models.CharField(_("mode"), max_length=10, choices=Mode, default=Mode.FAST)
    status = models.CharField(_("status"), max_length=12, choices=Status, default=Status.QUEUED,
                              db_index=True)
    base_version = models.ForeignKey(ModelVersion, verbose_name=_("base version"), on_delete=models.PROTECT,
                                     related_name="runs_based_on")
    result_version = models.OneToOneField(ModelVersion, verbose_name=_("new version"),
                                          on_delete=models.SET_NULL, null=True, blank=True,
                                          related_name="training_run")
    stage = models.CharField(_("stage"), max_length=100, blank=True, help_text=_("what the run is doing now"))
    progress = models.PositiveSmallIntegerField(_("progress"), default=0, help_text=_("percent done"))
    data = models.JSONField(_("data"), default=dict, blank=True,
                            help_text=_("photos used, per class and source"))
    metrics = models.JSONField(_("metrics"), default=dict, blank=True,
                               help_text=_("new and base version, side by side"))
    photos_used = models.JSONField(_("photos used"), default=dict, db_default={}, blank=True, help_text=_(
        '{"trained": [[photo id, label], ...], "held_out": [...]}: the users\' answers it learnt from and '
        "those it measured on ({} for runs before it was recorded)"))
    auto_activate = models.BooleanField(_("activate automatically"), default=False)
    decision = models.TextField(_("decision"), blank=True,
                                help_text=_("whether the new version was activated, and why"))
    log = models.TextField(_("log"), blank=True)
    error = models.TextField(_("error"), blank=True)
    created = models.DateTimeField(_("queued"), auto_now_add=True)
    sent = models.DateTimeField(_("sent"), default=timezone.now,
                                help_text=_("when its task was last sent to the workers"))
    task_id = models.CharField(_("task id"), max_length=50, blank=True,
                               help_text=_("the Celery task that runs it"))
    folder = models.CharField(_("folder"), max_length=500, blank=True,
                              help_text=_("the model folder it writes (under MODELS_DIR), once it is named"))
    started = models.DateTimeField(_("started"), null=True, blank=True)
    stepped = models.DateTimeField(_("last step"), null=True, blank=True, help_text=_(
        "when it last began a step (its worker was alive then): one killed leaves it running until "
        "the sweep gives up on it"))
    finished = models.DateTimeField(_("finished"), null=True, blank=True)

    class Meta:
        verbose_name = _("training run")
        verbose_name_plural = _("training runs")
        ordering = ["-created", "-id"]

    def __str__(self) -> str:
        return gettext("training run %(id)s (%(mode)s, %(status)s)") % {
            "id": self.pk, "mode": self.mode, "status": self.get_status_display()}

    @property
    def seconds(self) -> float | None:
        if self.started and self.finished:
            return (self.finished - self.started).total_seconds()
        return None

    @property
    def waiting_long(self) -> bool:
        """Queued for over a minute: a training worker takes a run within seconds when one is up."""
        return self.status == self.Status.QUEUED and timezone.now() - self.created > timedelta(minutes=1)

    def data_in_words(self) -> str:
        """What the run trained on and left out (`data`, written by classifier.retraining), as the
        staff page's runs table says it; empty before a run got that far. Of the figures an older
        run did not record, the counts always said are blank and the others left out."""
        data = self.data
        if not data:
            return ""
        said = [format_html("{} base", data.get("base_photos", ""))]
        if data.get("user_photos_trained") is not None:
            said.append(format_html(" + {} user photos", data["user_photos_trained"]))
        if data.get("validation_photos"):
            said.append(format_html(" ({} base photos to choose the best epoch)", data["validation_photos"]))
        said.append(format_html(", {} held out;", data.get("user_photos_heldout", "")))
        if data.get("user_photos_new") is not None:
            said.append(format_html(" {} of the user photos new to its base;", data["user_photos_new"]))
        if data.get("user_photos_dropped"):
            said.append(format_html(" {} its base trained on not trained on this time (changed, taken back, "
                                    "deleted, held out now, or left out);", data["user_photos_dropped"]))
        said.append(format_html(" {} of the users' labels corrected", data.get("corrected", "")))
        for key, words in (("benchmark_copies", "left out as copies of benchmark photos"),
                           ("validation_copies", "left out as copies of the base's validation photos"),
                           ("disagreeing", "left out as copies of one picture with different labels"),
                           ("unreadable", "skipped as unreadable (the worker's log names them)")):
            if data.get(key):
                said.append(format_html("; {} " + words, data[key]))  # (words: no braces)
        if largest := data.get("largest_account"):  # (its mistakes, careless or not, are what is taught)
            trained, held = data.get("user_photos_trained") or 0, data.get("user_photos_heldout") or 0
            said.append(format_html("; {} of the {} trained on ({}%)", largest["trained"], trained,
                                    round(100 * largest["trained"] / max(trained, 1))))
            if held:
                said.append(format_html(" and {} of the {} held out", largest["held_out"], held))
            said.append(format_html(" from one account, {}", largest["account"]))
        return mark_safe("".join(said))  # (each piece escaped its figure)


class PendingEmail(models.Model):
    """An e-mail address an account asked for and has not confirmed yet. A reset link for a forgotten
    password goes only to the account's own address (`User.email`), which is set from here when its
    owner opens the link e-mailed to it: an address typed wrong, or someone else's, never receives
    links that open the account."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                                related_name="pending_email")
    email = models.EmailField()
    site = models.CharField(max_length=300, help_text="the site's address as the request that asked saw it "
                                                      "(scheme and host): where its link points")
    created = models.DateTimeField(auto_now_add=True, help_text="when its owner last asked for its link")
    asked = models.DateTimeField(default=timezone.now, help_text="when its link was last asked for (or the "
                                                                 "sweep sent it again)")
    sent = models.DateTimeField(null=True, blank=True, help_text="when its link was last e-mailed")
    # A worker's claim while it e-mails the link, so that a second delivery of the task sends nothing;
    # one older than the task's time limit was a worker that died sending, and the sweep's task retakes it.
    sending = models.DateTimeField(null=True, blank=True, help_text="when a worker began e-mailing its link "
                                                                    "(empty once sent, or not)")
    # (kept, not only given to the task: the sweep sends the link again with no request to ask; a
    # row a web process of a release before it writes: English)
    language = models.CharField(max_length=16, default=settings.LANGUAGE_CODE,
                                db_default=settings.LANGUAGE_CODE, help_text=(
                                    "the language of the request that last asked for its link: the e-mail's"))

    def __str__(self) -> str:
        return f"{self.email} (not confirmed)"


class AccountSettings(models.Model):
    """What an account chose for itself: the website's language, applied to every session it signs
    in (the language cookie is the device's own choice, for anyone at it)."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, primary_key=True,
                                related_name="account_settings")
    language = models.CharField(max_length=16, help_text="the language code chosen (LANGUAGES)")

    class Meta:
        verbose_name = verbose_name_plural = "account settings"

    def __str__(self) -> str:
        return f"{self.user}'s settings"


TOKEN_NAME_MAX_LENGTH = 50


class ApiToken(AbstractAuthToken):
    """A program's API token (django-rest-knox's, with when it was last used). The database keeps
    the token's hash (`digest`) and its first characters (`token_key`, to find the row): the token
    itself is shown once, when it is made."""

    last_used = models.DateTimeField(_("last used"), null=True, blank=True,
                                     help_text=_("when a request last sent it (to the minute)"))
    name = models.CharField(_("name"), max_length=TOKEN_NAME_MAX_LENGTH, blank=True,
                            help_text=_("what its owner said it is for (a program, a computer)"))

    class Meta:
        verbose_name = _("API token")  # (no default ordering: knox finds a token's row at every request)
        verbose_name_plural = _("API tokens")

    def __str__(self) -> str:
        return f"{self.start} ({self.user}{', ' + self.name if self.name else ''})"

    @property
    def start(self) -> str:
        """What the account page and the admin show of it: its first characters, not enough to use."""
        return f"{self.token_key[:8]}…"
