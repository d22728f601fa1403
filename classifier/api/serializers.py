"""API representations. Reading only: writes go through classifier.services."""

from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from django.urls import reverse
from django.utils.functional import lazy
from django.utils.translation import gettext
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.authtoken.serializers import AuthTokenSerializer

from classifier import selectors, services
from classifier.api.authentication import NO_SECOND_FACTOR
from classifier.api.permissions import staff_with
from classifier.forms import EMAIL_MAX_LENGTH, one_time_code
from classifier.models import TOKEN_NAME_MAX_LENGTH, Feedback, ModelVersion, Photo, Prediction, TrainingRun


# A model as the API answers it, never as it is sent: every field is read-only, so the schema says
# each one is in every answer (required), as it is. (A comment: the schema would take a docstring
# for every subclass's description.)
class Representation(serializers.ModelSerializer):
    def get_fields(self):
        fields = super().get_fields()
        for field in fields.values():
            field.read_only = True
        return fields


class ErrorBodySerializer(serializers.Serializer):
    status = serializers.IntegerField()
    code = serializers.CharField(help_text=(
        "what went wrong, for programs: invalid (see `fields`), parse_error, not_authenticated, "
        "authentication_failed, permission_denied, not_found, method_not_allowed, not_acceptable, "
        "unsupported_media_type, too_large, conflict, throttled, unavailable (503), server_error (500)"))
    message = serializers.CharField(help_text="what went wrong, for people")
    fields = serializers.DictField(child=serializers.ListField(child=serializers.CharField()),
                                   help_text="field name -> messages, for 400s")


class ErrorSerializer(serializers.Serializer):
    """An error: every 4xx and 5xx answer has this shape, except an upload whose files were all
    refused (400 with each file's errors, as a 201 gives them)."""

    error = ErrorBodySerializer()


class LabelProbabilitySerializer(serializers.Serializer):
    slug = serializers.CharField()
    name = serializers.CharField()
    probability = serializers.FloatField()


def absolute(serializer: serializers.Serializer, path: str) -> str:
    request = serializer.context.get("request")
    return request.build_absolute_uri(path) if request else path


class PredictionSerializer(Representation):
    display_name = serializers.SerializerMethodField()
    top_k = serializers.SerializerMethodField()
    model_version = serializers.CharField(source="model_version.name")
    heatmap_url = serializers.SerializerMethodField()

    class Meta:
        model = Prediction
        fields = ["label", "display_name", "confidence", "margin", "top_k", "heatmap_url", "model_version",
                  "inference_ms", "created"]
        extra_kwargs = {
            "confidence": {"help_text": "the model's probability for `label`, 0 to 1, among the cakes it "
                                        "knows (a photo of anything else gets one of them too)"},
            "margin": {"help_text": "top probability minus the second: small means unsure"},
        }

    def get_display_name(self, obj: Prediction) -> str:
        return obj.label_name

    def get_heatmap_url(self, obj: Prediction) -> str | None:
        """Where the model looked (PNG), or null for a prediction made without one."""
        return absolute(self, reverse("api:photo-heatmap", args=[obj.photo_id])) if obj.heatmap else None

    @extend_schema_field(LabelProbabilitySerializer(many=True))
    def get_top_k(self, obj: Prediction) -> list[dict]:
        return selectors.top_k(obj, k=3)


class FeedbackSerializer(Representation):
    user = serializers.CharField(source="user.username", allow_null=True, default=None,
                                 help_text="who answered: your username; for staff, anyone's; null for "
                                           "someone else (staff, when you are not) or a deleted account")

    class Meta:
        model = Feedback
        fields = ["label", "is_correction", "predicted_label", "user", "updated"]

    def to_representation(self, feedback: Feedback) -> dict:
        data = super().to_representation(feedback)
        request = self.context.get("request")
        if not (request and (request.user.is_staff or feedback.user_id == request.user.pk)):
            data["user"] = None  # staff's user names are not shown to the users whose photos they answer
        return data


class FeedbackInputSerializer(serializers.Serializer):
    label = serializers.CharField(
        max_length=100, help_text='The right class slug (the prediction\'s to confirm it), or "none".'
    )


class WhileWaiting(serializers.DateTimeField):
    """A time of a photo's wait for the classifier: null once it is classified or failed."""

    def get_attribute(self, instance: Photo):
        return super().get_attribute(instance) if instance.status in Photo.PENDING else None


class PhotoSerializer(Representation):
    url = serializers.HyperlinkedIdentityField(view_name="api:photo-detail")
    owner = serializers.CharField(source="owner.username")
    image_url = serializers.SerializerMethodField()
    display_url = serializers.SerializerMethodField(help_text="the photo at the size its page shows it")
    thumbnail_url = serializers.SerializerMethodField()
    prediction = serializers.SerializerMethodField()
    feedback = serializers.SerializerMethodField()
    # (stored in English: the reason in the request's language, Photo.error_message)
    error = serializers.CharField(source="error_message", read_only=True)
    waiting_since = WhileWaiting(read_only=True, allow_null=True, help_text=(
        "while it is queued or processing: since when it waits for the classifier (from its upload, or from "
        "when it was retried); null otherwise. The site says a photo waiting over "
        f"{selectors.LATE_AFTER.seconds // 60} minutes is taking longer than usual"))

    class Meta:
        model = Photo
        fields = ["id", "url", "owner", "status", "error", "original_name", "width", "height", "sha256",
                  "image_url", "display_url", "thumbnail_url", "prediction", "feedback", "created", "updated",
                  "waiting_since"]
        extra_kwargs = {"sha256": {"help_text": "of the file as it was sent (what is stored, and served at "
                                                "image_url, is that file without its metadata)"}}

    def get_image_url(self, obj: Photo) -> str:
        return absolute(self, reverse("api:photo-image", args=[obj.pk]))

    def get_display_url(self, obj: Photo) -> str:
        return absolute(self, reverse("api:photo-display", args=[obj.pk]))

    def get_thumbnail_url(self, obj: Photo) -> str:
        return absolute(self, reverse("api:photo-thumbnail", args=[obj.pk]))

    @extend_schema_field(PredictionSerializer(allow_null=True))
    def get_prediction(self, obj: Photo) -> dict | None:
        prediction = selectors.latest_prediction(obj)
        return PredictionSerializer(prediction, context=self.context).data if prediction else None

    @extend_schema_field(FeedbackSerializer(allow_null=True))
    def get_feedback(self, obj: Photo) -> dict | None:
        feedback = getattr(obj, "feedback", None)
        return FeedbackSerializer(feedback, context=self.context).data if feedback else None


class PhotoUploadSerializer(serializers.Serializer):
    """Documentation of the multipart upload: one or several `files` parts."""

    files = serializers.ListField(child=serializers.FileField(), min_length=1)


class UploadResultSerializer(serializers.Serializer):
    file = serializers.CharField(help_text="the uploaded file's name")
    photo = PhotoSerializer(allow_null=True, help_text="the stored photo, or null if refused")
    errors = serializers.ListField(child=serializers.CharField(), help_text="why it was refused")


class UploadResponseSerializer(serializers.Serializer):
    results = UploadResultSerializer(many=True)


class FlatListField(serializers.ListField):
    """A ListField whose items' errors are one list of messages (each once), as every field's are in
    the error body's `fields`; not DRF's dict of them by item."""

    def run_child_validation(self, data):
        try:
            return super().run_child_validation(data)
        except serializers.ValidationError as exc:
            raise serializers.ValidationError(list(dict.fromkeys(
                message for messages in exc.detail.values() for message in messages))) from exc


class PhotoIdsSerializer(serializers.Serializer):
    ids = FlatListField(
        child=serializers.IntegerField(min_value=1, max_value=2**63 - 1), min_length=1,
        max_length=selectors.PHOTOS_DELETED_AT_ONCE, help_text=(
            f"the photos to delete, at most {selectors.PHOTOS_DELETED_AT_ONCE}: your own, or, as staff "
            "with the delete permission, anyone's"))


class PhotosDeletedSerializer(serializers.Serializer):
    deleted = serializers.ListField(child=serializers.IntegerField(), help_text="the photos deleted (ids)")
    not_found = serializers.ListField(child=serializers.IntegerField(), help_text=(
        "the ids of no photo of yours: deleted already (sending the request again finds them so), or "
        "never yours"))


class LabelSerializer(serializers.Serializer):
    slug = serializers.CharField(help_text="what predictions, answers and filters call the cake")
    name = serializers.CharField(help_text="what people call it")


class ModelVersionSerializer(Representation):
    labels = LabelSerializer(many=True, help_text="the cakes the version knows, in its output order")
    metrics = serializers.DictField(help_text="its figures by split: on the benchmark (`test`), its base "
                                              "photos' `validation` and, for staff who may view versions, "
                                              "the users' held-out photos (`user_heldout`)")
    answers_since = serializers.IntegerField(allow_null=True, default=None, help_text=(
        "for staff who may view versions, on the active version: the answers given or changed since it "
        "was trained, what a run started now could learn (as the staff page says); null otherwise, or "
        "if unknown"))

    class Meta:
        model = ModelVersion
        fields = ["id", "name", "labels", "metrics", "fingerprint", "is_active", "created", "answers_since"]

    def to_representation(self, version: ModelVersion) -> dict:
        data = super().to_representation(version)
        request = self.context.get("request")
        staff = request and staff_with("classifier.view_modelversion")().has_permission(request, None)
        if not staff:  # (as for the staff page) what other users uploaded, if only in counts
            data["metrics"].pop("user_heldout", None)
        data["answers_since"] = selectors.answers_since(version) if staff and version.is_active else None
        return data


class TrainingPhaseSerializer(serializers.Serializer):
    name = serializers.CharField(help_text='e.g. "head (frozen backbone)", "fine-tune (48 layers from ...)"')
    epochs_run = serializers.IntegerField()
    best_epoch = serializers.IntegerField(help_text="the epoch with the lowest `val_loss`, from 1")
    seconds = serializers.FloatField()
    history = serializers.DictField(
        child=serializers.ListField(child=serializers.FloatField(allow_null=True)), help_text=(
            "per epoch: `loss` and `accuracy` on the training photos, `val_loss` and `val_accuracy` on the "
            "validation photos; null where it was not a number (a diverged epoch's loss)"))


class VersionAccuracySerializer(serializers.Serializer):
    version = serializers.CharField()
    reviewed = serializers.IntegerField()
    confirmed = serializers.IntegerField()
    accuracy = serializers.FloatField(help_text="confirmed / reviewed")
    accuracy_low = serializers.FloatField(help_text="the 95% (Wilson score) interval of the accuracy: its "
                                                    "low end")
    accuracy_high = serializers.FloatField(help_text="its high end (answers come mostly from the least "
                                                     "certain photos: the accuracy on all photos is "
                                                     "probably higher)")


class StatsSerializer(serializers.Serializer):
    photos = serializers.IntegerField()
    reviewed = serializers.IntegerField(help_text="photos with a confirmation or a correction")
    corrected = serializers.IntegerField()
    per_version = VersionAccuracySerializer(many=True, help_text="by the version whose label was judged")


class AccuracyDaySerializer(VersionAccuracySerializer):
    day = serializers.DateField(help_text="the day the answers were given, from midnight to midnight UTC")


class TrainingRunSerializer(Representation):
    started_by = serializers.CharField(source="started_by.username", allow_null=True, default=None)
    base_version = serializers.CharField(source="base_version.name")
    result_version = serializers.CharField(source="result_version.name", allow_null=True, default=None)
    seconds = serializers.FloatField(allow_null=True, read_only=True)
    data = serializers.DictField(help_text="photos used, per class and source")
    metrics = serializers.DictField(help_text="new and base version, side by side")

    class Meta:
        model = TrainingRun
        fields = ["id", "mode", "status", "stage", "progress", "started_by", "base_version", "result_version",
                  "auto_activate", "decision", "data", "metrics", "error", "log", "created", "started",
                  "stepped", "finished", "seconds"]


class ActivateSerializer(serializers.Serializer):
    confirm = serializers.BooleanField(default=False, help_text=(
        "activate it even if it is lower than the active version on the benchmark split, was never "
        "measured on it or measured on other photos, or repeats the active version's training: the "
        "same answers, mode and base photos (without it: a 400 saying which)"))


class TrainingRunStartSerializer(serializers.Serializer):
    mode = serializers.ChoiceField(choices=TrainingRun.Mode.choices, default=TrainingRun.Mode.FAST)
    auto_activate = serializers.BooleanField(  # (the rule as the staff page and the admin state it)
        default=False, help_text=lazy(lambda: "activate the new version if it is "
                                      + selectors.auto_activation_rule(), str)())


USERNAME_MAX_LENGTH = 150  # the column's (User.username)


class AccountSerializer(serializers.Serializer):
    username = serializers.CharField(source="get_username", read_only=True)
    email = serializers.CharField(read_only=True, help_text="the confirmed address, where a reset link for a "
                                                            "forgotten password goes; empty if none")
    email_pending = serializers.CharField(
        source="pending_email.email", read_only=True, allow_null=True, default=None,
        help_text="an address asked for and not confirmed yet: it becomes `email` once its owner opens the "
                  "link e-mailed to it; null if none")
    date_joined = serializers.DateTimeField(read_only=True)
    photos = serializers.IntegerField(source="photos.count", read_only=True)
    photo_limit = serializers.SerializerMethodField(
        help_text="the most photos an account may keep (uploads beyond it are refused); null if no limit")
    language = serializers.SerializerMethodField(help_text=(
        "the website's language for this account, on any device it signs in to (LANGUAGES: `en`, `id`); "
        "null if it chose none, and each browser's own holds"))

    def get_photo_limit(self, user) -> int | None:
        return settings.MAX_PHOTOS_PER_ACCOUNT or None

    @extend_schema_field(serializers.ChoiceField(choices=settings.LANGUAGES, allow_null=True))
    def get_language(self, user) -> str | None:
        return selectors.account_language(user)


class PasswordConfirmSerializer(serializers.Serializer):
    password = serializers.CharField(write_only=True, trim_whitespace=False, style={"input_type": "password"},
                                     help_text="your password, again: a token alone is not enough for this")

    def validate_password(self, password: str) -> str:
        from rest_framework.exceptions import Throttled

        from classifier.accounts import password_confirmed, wrong_password

        request = self.context["request"]
        if not password_confirmed(request, password):
            if getattr(request, "axes_locked_out", False):
                raise Throttled(wait=round(settings.AXES_COOLOFF_TIME * 3600),
                                detail=gettext("Too many wrong passwords for this account; try again later."))
            raise serializers.ValidationError(wrong_password(request), code="password_incorrect")
        return password


class PasswordChangeSerializer(PasswordConfirmSerializer):
    new_password = serializers.CharField(
        write_only=True, trim_whitespace=False, style={"input_type": "password"},
        help_text="held to the website's rules (the errors say which it breaks)")

    def validate_new_password(self, new_password: str) -> str:
        from django.contrib.auth.password_validation import validate_password

        try:
            validate_password(new_password, self.context["request"].user)
        except DjangoValidationError as exc:
            raise serializers.ValidationError(exc.messages) from exc
        return new_password


class NewTokenSerializer(serializers.Serializer):
    token = serializers.CharField(allow_null=True, help_text=(
        "the new password revoked the API tokens: a new one for the program that changed it (asked "
        "with a token); null when asked in a browser's session (POST /api/auth/token/ makes one)"))


class AccountChangeSerializer(PasswordConfirmSerializer):
    """What PATCH /api/account/ changes: the e-mail address (the password again allows it), the
    language (nothing more needed), or both."""

    password = serializers.CharField(
        required=False, write_only=True, trim_whitespace=False, style={"input_type": "password"},
        help_text="your password, again, to change `email`: a token alone is not enough for that")
    email = serializers.EmailField(required=False, allow_blank=True, max_length=EMAIL_MAX_LENGTH, help_text=(
        "the new address, used once its owner opens the link e-mailed to it (asking again sends a new "
        "link); the confirmed address withdraws a change asked for; empty removes the address"))
    language = serializers.ChoiceField(required=False, choices=settings.LANGUAGES, help_text=(
        "the website's language for this account, on any device it signs in to"))

    def validate(self, attrs: dict) -> dict:
        if "email" in attrs and "password" not in attrs:
            raise serializers.ValidationError({"password": [gettext("Give your password again to change the "
                                                                    "e-mail address.")]}, code="required")
        if "email" not in attrs and "language" not in attrs:
            raise serializers.ValidationError(gettext("Send what to change: `email` (with `password`), "
                                                      "`language`, or both."), code="required")
        return attrs


class AccountCreateSerializer(serializers.Serializer):
    """A new account, checked as the website's sign-up form checks it (the same form underneath)."""

    username = serializers.CharField(max_length=USERNAME_MAX_LENGTH)
    password = serializers.CharField(write_only=True, trim_whitespace=False, style={"input_type": "password"})
    email = serializers.EmailField(required=False, allow_blank=True, max_length=EMAIL_MAX_LENGTH,
                                   help_text="optional: where a reset link for a forgotten password goes, "
                                             "once its owner opens the link e-mailed to it")

    def validate(self, attrs):
        from classifier.forms import SignUpForm

        form = SignUpForm(data={"username": attrs["username"], "email": attrs.get("email", ""),
                                "password1": attrs["password"], "password2": attrs["password"]})
        if not form.is_valid():  # the form's password1/password2 are this one's password
            errors: dict[str, list[str]] = {}
            for field, messages in form.errors.items():
                errors.setdefault("password" if field.startswith("password") else field, []).extend(messages)
            raise serializers.ValidationError(errors)
        self.form = form
        return attrs

    def create(self, validated_data):
        from classifier import services
        from classifier.accounts import site_of

        return services.account_create(self.form, site=site_of(self.context["request"]))


class IssuedTokenSerializer(serializers.Serializer):
    token = serializers.CharField(help_text="the new API token: programs send it as `Authorization: Token "
                                            "<token>`; shown only here")
    expires = serializers.DateTimeField(allow_null=True, help_text=(
        "when it stops working: a staff token's, STAFF_TOKEN_DAYS after it is made; null for others "
        "(any token stops working once API_TOKEN_IDLE_DAYS go by without a request that sends it)"))


class NewAccountSerializer(AccountSerializer):
    token = serializers.CharField(read_only=True, help_text="the new account's API token")


class TokenCredentialsSerializer(AuthTokenSerializer):
    """DRF's, with a user name no longer than an account's may be: django-axes writes the name of a
    failed sign-in to a column of 255 characters, and a longer one was a 500 instead of a 400."""

    username = serializers.CharField(label="Username", write_only=True, max_length=USERNAME_MAX_LENGTH)
    otp = serializers.CharField(
        label="Code", write_only=True, required=False, max_length=16,
        help_text="staff accounts, where the site asks for two-factor sign-in: a code of their authenticator "
                  "app, or a backup code")
    name = serializers.CharField(
        label="Name", write_only=True, required=False, allow_blank=True, max_length=TOKEN_NAME_MAX_LENGTH,
        help_text="what the token is for (a program, a computer): the account page lists it")

    def validate(self, attrs):
        attrs = super().validate(attrs)
        user = attrs["user"]
        if selectors.second_factor_required(user):
            if not selectors.has_second_factor(user):
                raise serializers.ValidationError(NO_SECOND_FACTOR, code="second_factor")
            code = one_time_code(attrs.get("otp", ""))
            if not code or not services.second_factor_match(user, code):
                raise serializers.ValidationError(gettext(
                    "This is a staff account: send `otp` too, the code your authenticator app shows now "
                    "(or a backup code)."), code="second_factor")
        return attrs


class PasswordResetSerializer(serializers.Serializer):
    email = serializers.EmailField(max_length=EMAIL_MAX_LENGTH)
