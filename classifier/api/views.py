"""API views: thin. Parse, call a service or selector, serialize."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC

import django_filters
from django.conf import settings
from django.contrib.auth import update_session_auth_hash
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.db import transaction
from django.http import Http404
from django.template.defaultfilters import filesizeformat
from django.urls import reverse
from django.utils.cache import parse_etags
from django.utils.crypto import salted_hmac
from django.utils.functional import lazy
from django.utils.translation import get_language, gettext, override
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    PolymorphicProxySerializer,
    extend_schema,
    extend_schema_field,
    extend_schema_view,
)
from drf_spectacular.views import SCHEMA_KWARGS, SpectacularAPIView
from rest_framework import exceptions, mixins, parsers, status, viewsets
from rest_framework.authentication import SessionAuthentication
from rest_framework.decorators import (
    action,
    api_view,
    authentication_classes,
    content_negotiation_class,
    permission_classes,
)
from rest_framework.exceptions import NotFound
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.serializers import CharField, Serializer
from rest_framework.throttling import ScopedRateThrottle
from rest_framework.views import APIView

from classifier import cakes, exports, files, images, selectors, services
from classifier.accounts import (
    ACCOUNT_LANGUAGE,
    PasswordResetRateThrottle,
    SignUpAttemptThrottle,
    SignUpRateThrottle,
    UploadRateThrottle,
    site_of,
)
from classifier.api import serializers
from classifier.api.errors import Conflict, error_body
from classifier.api.permissions import StaffModelPermissions, staff_with
from classifier.forms import RESET_NOT_QUEUED, RESET_RETRY_AFTER_S, PasswordResetForm, too_many_files_message
from classifier.models import ApiToken, Feedback, ModelVersion, Photo

ERROR = serializers.ErrorSerializer
MAX_WAIT_S = 30  # a long poll; below common proxy timeouts
IDEMPOTENCY_KEY = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # (anchored for the schema's readers)
LONG_POLL_RETRY_S = 5  # Retry-After of a long poll beyond LONG_POLLS_PER_USER or _PER_PROCESS


def upload_description() -> str:
    """The upload's description in the schema: what it takes, from the settings."""
    return ("Each file becomes a queued photo or gets its own errors; good files are kept when others "
            "fail. 201 when at least one photo was stored, 400 when none was.\n\n"
            f"Taken: {images.FORMATS_TAKEN} (HEIC and AVIF are stored as a JPEG), every file stored "
            f"without its metadata; up to {settings.MAX_FILES_PER_UPLOAD} files a request, each of at "
            f"most {filesizeformat(settings.MAX_UPLOAD_BYTES)} and "
            f"{settings.MAX_IMAGE_PIXELS // 1_000_000} megapixels and at least "
            f"{images.MIN_IMAGE_SIDE} pixels a side."
            + (f" An account keeps at most {settings.MAX_PHOTOS_PER_ACCOUNT:,} photos: a file beyond that is "
               "refused with its own error." if settings.MAX_PHOTOS_PER_ACCOUNT else ""))


class AuthTokenSerializer(Serializer):
    token = CharField()

COMMON_ERRORS = {401: ERROR, 404: ERROR, 429: ERROR}
LIST_ERRORS = {400: ERROR, **COMMON_ERRORS}  # 400: a bad filter value; 404: a page past the end
WRITE_ERRORS = {403: ERROR, **COMMON_ERRORS}  # 403: a session's write without its CSRF token


class AnyAccept(BaseContentNegotiation):
    """For the views that answer with a file: whatever the client accepts, errors come as JSON."""

    def select_parser(self, request, parsers):
        return parsers[0]

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


# An offset's "+" sent unencoded in a query string arrives as a space (every Indonesian offset is
# positive): after a time of day, a space and an offset are that offset.
SPACED_OFFSET = re.compile(r"(\d\d:\d\d(?::\d\d(?:[.,]\d+)?)?) (\d\d(?::?\d\d)?)$")


class UTCDateTimeField(django_filters.fields.IsoDateTimeField):
    """In UTC: a client may send offsets (say -16:13) that PostgreSQL refuses to parse."""

    def to_python(self, value):
        if isinstance(value, str):
            value = SPACED_OFFSET.sub(r"\1+\2", value.strip())
        value = super().to_python(value)
        try:
            return value and value.astimezone(UTC)
        except OverflowError as exc:
            raise ValidationError(gettext("Date out of range."), code="invalid") from exc


class UTCDateTimeFilter(django_filters.IsoDateTimeFilter):
    field_class = UTCDateTimeField


class StrictBooleanFilter(django_filters.TypedChoiceFilter):
    """`true` or `false` (also `True`/`False`, `1`/`0`, as django-filter takes them); anything else is
    a 400 (django-filter's BooleanFilter ignores it silently)."""

    def __init__(self, *, help_text: str, **kwargs):
        values = ["true", "false", "True", "False", "1", "0"]
        super().__init__(choices=[(v, v) for v in values], coerce=lambda v: v in ("true", "True", "1"),
                         help_text=help_text, **kwargs)
        # In the schema a boolean (not the enum of strings its choices would say), with its meaning.
        extend_schema_field({"type": "boolean", "description": help_text})(self)


class ModelVersionFilter(django_filters.FilterSet):
    is_active = StrictBooleanFilter(help_text="true: the active version only; false: the others")

    class Meta:
        model = ModelVersion
        fields = ["is_active"]


def known_cake(label: str) -> None:
    """A cake the active model knows, or `none` (as the website's filter offers), else a 400."""
    known = {item["slug"] for item in selectors.known_labels()}
    if label != Feedback.NONE and label not in known:
        # (the words as a parameter: django-filter formats the message with its parameters, and the
        # label is the client's, "%" and all)
        raise ValidationError("%(unknown)s", code="unknown_label",
                              params={"unknown": cakes.unknown(label, known, Feedback.NONE)})


class PhotoFilter(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=Photo.Status.choices)
    label = django_filters.CharFilter(
        method="filter_label", validators=[known_cake], help_text="the cake the photo shows, as the "
        "website's filter: the answer given where there is one (`none`: none of the cakes), else the "
        "predicted class slug (another is a 400)")
    predicted_label = django_filters.CharFilter(field_name="predicted_label",
                                                help_text="predicted class slug")
    corrected = StrictBooleanFilter(field_name="feedback__is_correction", help_text=(
        "true: photos whose label was corrected; false: photos whose label was confirmed (photos "
        "without an answer are in neither: see `reviewed`)"))
    reviewed = StrictBooleanFilter(method="filter_reviewed", help_text=(
        "true: photos with an answer (confirmed or corrected); false: photos without one"))
    confidence_min = django_filters.NumberFilter(field_name="confidence", lookup_expr="gte",
                                                 help_text="the prediction's confidence is at least this")
    confidence_max = django_filters.NumberFilter(field_name="confidence", lookup_expr="lte",
                                                 help_text="the prediction's confidence is at most this")
    created_after = UTCDateTimeFilter(field_name="created", lookup_expr="gte", help_text=(
        "uploaded at or after this time: ISO 8601, such as 2026-12-07T06:30:00+07:00 (without an "
        "offset, UTC)"))
    created_before = UTCDateTimeFilter(field_name="created", lookup_expr="lt", help_text=(
        "uploaded before this time (not at it): ISO 8601 (without an offset, UTC)"))

    class Meta:
        model = Photo
        fields = ["status"]

    def filter_label(self, queryset, name, value):
        return queryset.filter(selectors.shows_label(value))

    def filter_reviewed(self, queryset, name, value):
        unanswered = selectors.unanswered()
        return queryset.filter(~unanswered if value else unanswered)


@extend_schema(exclude=True)
@api_view(["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"])
@permission_classes([AllowAny])
def not_found(request, *args, **kwargs):
    raise NotFound()


class SchemaView(SpectacularAPIView):
    """The OpenAPI schema in English whatever the request's language (Accept-Language, or the language
    cookie a browser that chose Indonesian sends): one document for every client, for code generated
    from it and diffs between releases. (drf-spectacular's own `?lang=id` still asks for another.)"""

    @extend_schema(**SCHEMA_KWARGS)  # (as drf-spectacular's own: not in the schema it serves)
    def get(self, request, *args, **kwargs):
        with override(settings.LANGUAGE_CODE):  # (the schema's lazy texts are made strings inside)
            return super().get(request, *args, **kwargs)

    def perform_content_negotiation(self, request, force=False):
        """An error's answer (a 406 for a client that takes neither YAML nor JSON) in JSON, as the
        API's others; DRF would draw it with the first renderer, YAML."""
        if force:
            return JSONRenderer(), JSONRenderer.media_type
        return super().perform_content_negotiation(request, force)


class FiltersOnLists:
    # Filters and ordering shape lists; one item's own URL, and its actions, are answered whatever
    # the query string (a stray `?is_active=false` is no 404 for the active version). (A comment:
    # the schema would give a docstring as the description of every operation of the views.)

    def filter_queryset(self, queryset):
        return super().filter_queryset(queryset) if self.action == "list" else queryset


class OpenToAnyone:
    # A view whose requests of some methods need no account: those are not authenticated at all, so
    # a token no longer valid in their header (revoked, or its account deleted) makes no 401 there.
    # (A comment, as the schema gives a mixin's docstring as its views' descriptions.)

    @staticmethod
    def open_to_anyone(method: str) -> bool:
        raise NotImplementedError

    def initialize_request(self, request, *args, **kwargs):
        self.open = self.open_to_anyone(request.method)
        return super().initialize_request(request, *args, **kwargs)

    def get_authenticators(self):
        return [] if self.open else super().get_authenticators()

    def get_permissions(self):
        return [AllowAny()] if self.open else super().get_permissions()


@extend_schema_view(
    post=extend_schema(summary="Get a new API token for a username and password (one for each program)",
                       description="Each call makes a new token; the account's others keep working. An "
                                   "account keeps at most API_TOKENS_PER_ACCOUNT (25): one more revokes "
                                   "the one used least recently. The token is shown only in this answer "
                                   "(the site keeps its hash).",
                       request=serializers.TokenCredentialsSerializer,
                       # 403: the password was changed between its check and the token
                       responses={200: serializers.IssuedTokenSerializer, 400: ERROR, 403: ERROR, 415: ERROR,
                                  429: ERROR}),
    delete=extend_schema(summary="Revoke the token this request sends (sign this program out)",
                         description="Signed in by the website's session instead, it revokes all of the "
                                     "account's tokens.",
                         request=None, responses={204: None, 401: ERROR, 403: ERROR, 429: ERROR}),
)
class TokenView(OpenToAnyone, APIView):
    """Exchange a username and password for a new API token (throttled: password guessing), or revoke
    one. A new password revokes them all."""

    parser_classes = [parsers.FormParser, parsers.MultiPartParser, parsers.JSONParser]  # (as DRF's own)
    throttle_classes = [ScopedRateThrottle]
    throttle_scope = "token"

    @staticmethod
    def open_to_anyone(method: str) -> bool:
        # POST: the credentials are in the body, no token or session needed; DELETE: whose token
        return method != "DELETE"  # (and OPTIONS: what the endpoint takes)

    def delete(self, request, *args, **kwargs):
        sent = request.auth if isinstance(request.auth, ApiToken) else None  # (None: a session's request)
        services.api_token_revoke(request.user, digest=sent and sent.digest)
        return Response(status=status.HTTP_204_NO_CONTENT)

    def post(self, request, *args, **kwargs):
        credentials = serializers.TokenCredentialsSerializer(data=request.data, context={"request": request})
        try:
            credentials.is_valid(raise_exception=True)
        except exceptions.ValidationError:
            # django-axes marks the request it refused; its middleware only sees Django's request.
            if getattr(request, "axes_locked_out", False):
                raise exceptions.Throttled(
                    wait=round(settings.AXES_COOLOFF_TIME * 3600),
                    detail=gettext("Too many failed sign-in attempts for this username; try again later."),
                ) from None
            raise
        user = credentials.validated_data["user"]
        token, key = services.api_token_new(user, credentials.validated_data.get("name", ""))
        return Response({"token": key, "expires": selectors.token_expires(token, user)})


def photo_etag(pk: int, updated, names: tuple) -> str:
    """A photo's ETag: its last change, and the names from other rows it shows (selectors.photo_tag),
    keyed by the site's secret: an owner, who is not shown which staff member answered, must not
    find the name by hashing likely ones. And the language it is written in (its `error`): an answer
    in English is not the one a client that now asks for Indonesian holds."""
    keyed = salted_hmac("photo-etag", repr(names)).hexdigest()[:16]
    return f'"{pk}-{updated.timestamp():.6f}-{keyed}-{get_language()}"'


def located(what: str) -> OpenApiParameter:
    """The Location header of a 201, in the schema."""
    return OpenApiParameter("Location", str, OpenApiParameter.HEADER, response=[201],
                            description=f"the URL of {what}")


ACCOUNT_ERRORS = {401: ERROR, 403: ERROR, 429: ERROR}  # 403: a staff account, or a session without CSRF


@extend_schema_view(
    post=extend_schema(summary="Sign up: a new account, with its API token", auth=[],
                       request=serializers.AccountCreateSerializer, parameters=[located("the account")],
                       responses={201: serializers.NewAccountSerializer, 400: ERROR, 415: ERROR, 429: ERROR}),
    get=extend_schema(summary="Your account", responses={200: serializers.AccountSerializer, 401: ERROR,
                                                          429: ERROR}),
    patch=extend_schema(summary="Change your e-mail address (your password allows it, the link e-mailed to "
                                "the new address confirms it), your language, or both",
                        request=serializers.AccountChangeSerializer,
                        responses={200: serializers.AccountSerializer, 400: ERROR, 415: ERROR,
                                   **ACCOUNT_ERRORS}),
)
class AccountView(OpenToAnyone, APIView):
    """Your account: sign up (no account needed), read it, change its e-mail address or language."""

    @staticmethod
    def open_to_anyone(method: str) -> bool:
        return method == "POST"  # signing up

    def post(self, request):
        SignUpAttemptThrottle().refuse_if_over(request)  # every one: it says whether a name is taken
        data = serializers.AccountCreateSerializer(data=request.data, context={"request": request})
        data.is_valid(raise_exception=True)
        SignUpRateThrottle().refuse_if_over(request)  # counts the accounts made, not typing errors
        user = data.save()
        body = {**serializers.AccountSerializer(user).data, "token": services.api_token_new(user)[1]}
        where = request.build_absolute_uri(reverse("api:account"))
        return Response(body, status=status.HTTP_201_CREATED, headers={"Location": where})

    def get(self, request):
        return Response(serializers.AccountSerializer(request.user).data)

    def patch(self, request):
        data = serializers.AccountChangeSerializer(data=request.data, context={"request": request})
        data.is_valid(raise_exception=True)
        with transaction.atomic():  # (both or neither)
            if "language" in data.validated_data:
                services.account_language_set(request.user, data.validated_data["language"])
            if "email" in data.validated_data:
                services.account_email_set(request.user, data.validated_data["email"], site=site_of(request))
        if "language" in data.validated_data and isinstance(request.successful_authenticator,
                                                            SessionAuthentication):
            request.session[ACCOUNT_LANGUAGE] = data.validated_data["language"]  # (its pages too, once kept)
        return Response(serializers.AccountSerializer(request.user).data)



@extend_schema(summary="Your photos and answers as one zip file", operation_id="account_export",
               description="Your photos as stored (without their metadata), named after the files you "
                           "uploaded, under `photos/`; `photos.json`, each photo as `GET /api/photos/{id}/` "
                           "shows it plus `file`, its path in the archive (null if its file is gone); and "
                           "`account.json`. Streamed as it is written: it has no Content-Length.",
               responses={(200, "application/zip"): OpenApiTypes.BINARY, 401: ERROR, 429: ERROR})
@api_view(["GET"])
@permission_classes([IsAuthenticated])
@content_negotiation_class(AnyAccept)
def account_export(request):
    return exports.account_archive_response(request)


@extend_schema(summary="Change your password (send the current one too)",
               operation_id="account_password_change",
               description="As on the website, the new password signs out your sessions elsewhere, revokes "
                           "your API tokens and withdraws an e-mail address change waiting for its link; "
                           "a program that asked with its token gets a new one in the answer. A session "
                           "that asked stays signed in.",
               request=serializers.PasswordChangeSerializer,
               responses={200: serializers.NewTokenSerializer, 400: ERROR, 415: ERROR, **ACCOUNT_ERRORS})
@api_view(["POST"])
@permission_classes([IsAuthenticated])
def account_password(request):
    data = serializers.PasswordChangeSerializer(data=request.data, context={"request": request})
    data.is_valid(raise_exception=True)
    token = services.password_change(request.user, data.validated_data["new_password"],
                                     new_token=isinstance(request.auth, ApiToken),
                                     token_name=getattr(request.auth, "name", ""))
    if isinstance(request.successful_authenticator, SessionAuthentication):
        update_session_auth_hash(request, request.user)  # as the website's form does
    return Response({"token": token})


@extend_schema(summary="Delete your account, its photos and answers (your password confirms it)",
               operation_id="account_delete",
               description="A staff account is a 403: an administrator removes it.",
               request=serializers.PasswordConfirmSerializer,
               responses={204: None, 400: ERROR, 415: ERROR, **ACCOUNT_ERRORS})
@api_view(["POST"])  # (a DELETE with a body: OpenAPI tools and proxies drop the body)
@permission_classes([IsAuthenticated])
def account_delete(request):
    serializers.PasswordConfirmSerializer(data=request.data, context={"request": request}
                                          ).is_valid(raise_exception=True)
    try:
        services.account_delete(request.user)
    except ValidationError as exc:  # a staff account
        raise exceptions.PermissionDenied(exc.messages[0]) from exc
    return Response(status=status.HTTP_204_NO_CONTENT)


@extend_schema(operation_id="auth_password_reset",
               summary="Send a link to choose a new password to this address, if an account has "
                       "confirmed it (the answer is the same either way)", auth=[],
               request=serializers.PasswordResetSerializer, responses={
                   202: None, 400: ERROR, 415: ERROR, 429: ERROR,
                   503: OpenApiResponse(ERROR, description="the database or the mail queue does not answer "
                                                           "(nothing is sent): ask again after `Retry-After` "
                                                           "seconds")})
@api_view(["POST"])
@authentication_classes([])
@permission_classes([AllowAny])
def password_reset(request):
    data = serializers.PasswordResetSerializer(data=request.data)
    data.is_valid(raise_exception=True)
    form = PasswordResetForm(data.validated_data)
    if not form.is_valid():  # (the serializer checks the same: never expected)
        raise ValidationError(form.errors.as_data())
    PasswordResetRateThrottle().refuse_if_over(request)
    form.save(request=request, use_https=request.is_secure())  # the worker sends the website's link
    if form.queued is False:
        return Response(error_body(503, "unavailable", str(RESET_NOT_QUEUED)), status=503,
                        headers={"Retry-After": str(RESET_RETRY_AFTER_S)})
    return Response(status=status.HTTP_202_ACCEPTED)


class ProcessWaits:
    """The requests this web process holds open waiting, all users together: one more than
    LONG_POLLS_PER_PROCESS is a 429, so that the process keeps threads for its other pages however
    many people wait on a backlog (each user's own count does not stop a dozen users)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.held = 0

    @contextmanager
    def slot(self) -> Iterator[None]:
        with self.lock:
            if self.held >= settings.LONG_POLLS_PER_PROCESS:
                raise exceptions.Throttled(wait=LONG_POLL_RETRY_S, detail=gettext(
                    "The server is holding as many requests waiting for results as it can; ask again "
                    "in a moment."))
            self.held += 1
        try:
            yield
        finally:
            with self.lock:
                self.held -= 1


process_waits = ProcessWaits()


@contextmanager
def waiting_slot(user_id: int) -> Iterator[None]:
    """Counts the user's requests held open waiting (in the cache: across web processes where it is
    shared); one more than LONG_POLLS_PER_USER is a 429, so one user cannot hold every web thread;
    so is one more than the process holds for everyone (ProcessWaits)."""
    key = f"long-polls:{user_id}"
    try:
        held = cache.incr(key)
    except ValueError:  # none held: start the count
        held = 1 if cache.add(key, 1, timeout=2 * MAX_WAIT_S) else cache.incr(key)
    else:  # it lives two waits past the last one begun: one lost with a killed thread does not last
        cache.touch(key, 2 * MAX_WAIT_S)
    try:
        if held > settings.LONG_POLLS_PER_USER:  # (one of them ends within MAX_WAIT_S: when, unknown)
            raise exceptions.Throttled(wait=LONG_POLL_RETRY_S, detail=gettext(
                "You already have %(n)s requests waiting for results; wait for one of them.") % {
                    "n": settings.LONG_POLLS_PER_USER})
        with process_waits.slot():
            yield
    finally:
        try:
            cache.decr(key)
        except ValueError:  # expired meanwhile
            pass


@extend_schema(summary="Counters of the photos you may see: how many, reviewed, corrected, and "
                       "the accuracy users measured per model version (the review page's figures)",
               responses={200: serializers.StatsSerializer, **COMMON_ERRORS})
@api_view(["GET", "HEAD"])
def stats(request):
    return Response(serializers.StatsSerializer(selectors.feedback_stats(request.user)).data)


@extend_schema_view(
    list=extend_schema(summary="List photos (own; staff with permission: all)", responses={
        200: serializers.PhotoSerializer(many=True), **LIST_ERRORS}),
    retrieve=extend_schema(
        summary="A photo with its status and latest prediction",
        parameters=[OpenApiParameter(
            "wait", {"type": "number", "minimum": 0, "maximum": MAX_WAIT_S},
            description="While the photo is queued or processing, wait up to this many "
            f"seconds (at most {MAX_WAIT_S}) for its result before answering: one request instead of "
            "many polls. A user may have a few such requests open at once (LONG_POLLS_PER_USER, "
            "4 by default), and a web process holds a few for everyone (LONG_POLLS_PER_PROCESS); one more "
            "is a 429 with Retry-After.",
        ), OpenApiParameter(
            "If-None-Match", str, OpenApiParameter.HEADER,
            description="the ETag of an earlier answer: a 304 without a body while the photo is unchanged",
        ), OpenApiParameter(
            "ETag", str, OpenApiParameter.HEADER, response=[200, 304],
            description="the photo's version: send it back as If-None-Match",
        )],
        responses={200: serializers.PhotoSerializer, 400: ERROR, **COMMON_ERRORS,
                   304: OpenApiResponse(description="unchanged since the ETag")}),
    destroy=extend_schema(summary="Delete a photo: your own, or, as staff with the delete permission, "
                                  "anyone's", responses={204: None, **WRITE_ERRORS}),
)
class PhotoViewSet(FiltersOnLists, mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.DestroyModelMixin,
                   viewsets.GenericViewSet):
    serializer_class = serializers.PhotoSerializer
    filterset_class = PhotoFilter
    ordering_fields = ["created", "confidence", "margin"]
    ordering = ["-created", "-id"]
    lookup_value_converter = "int"  # ASCII digits only (str.isdigit also takes other scripts')

    def get_throttles(self):
        throttles = super().get_throttles()
        return [*throttles, UploadRateThrottle()] if self.action == "create" else throttles

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation: no user
            return Photo.objects.none()
        return selectors.photos_for_user(self.request.user, action=self.permission)

    @property
    def permission(self) -> str:
        return {"destroy": "delete", "retry": "change", "feedback": "change",
                "feedback_withdraw": "change"}.get(self.action, "view")

    def get_object(self):
        try:
            return super().get_object()
        except Http404:
            selectors.refuse_if_visible(self.request.user, int(self.kwargs["pk"]), self.permission)
            raise

    def retrieve(self, request, *args, **kwargs):
        """Cheap to poll: one small query answers 304 when nothing changed since the client's ETag;
        `?wait=` holds the request until the photo is done or failed (or the wait ends)."""
        wait, pk, photo = self.wait_seconds(request), int(kwargs["pk"]), None
        if wait > 0:  # the status alone (a small query), then the photo as it is after any wait
            with selectors.settling(pk) as settled:
                row = selectors.photo_state(pk, self.get_queryset())
                if row is not None and row[1] in Photo.PENDING:
                    with waiting_slot(request.user.pk):
                        settled(wait)
            photo = self.get_object()  # (a 404 if it is not there, or was deleted while we waited)
            etag = photo_etag(pk, photo.updated, selectors.photo_names(photo))
        else:  # a poll without a wait: what its ETag needs, in one query
            row = selectors.photo_tag(pk, self.get_queryset())
            if row is None:
                raise Http404  # (as get_object's: errors.not_found words it)
            etag = photo_etag(pk, *row)
        sent = {tag.removeprefix("W/") for tag in parse_etags(request.headers.get("If-None-Match", ""))}
        if etag in sent or "*" in sent:  # (a weak comparison, as Django's: a proxy may weaken the tag)
            return Response(status=status.HTTP_304_NOT_MODIFIED, headers={"ETag": etag})
        return Response(self.get_serializer(photo or self.get_object()).data, headers={"ETag": etag})

    @staticmethod
    def wait_seconds(request) -> float:
        raw = request.query_params.get("wait", "0")
        try:
            wait = float(raw)
        except ValueError:
            wait = -1.0
        if not 0 <= wait <= MAX_WAIT_S:  # also refuses nan
            raise exceptions.ValidationError({"wait": [gettext("A number of seconds from 0 to %(most)s.") % {
                "most": MAX_WAIT_S}]})
        return wait

    def perform_destroy(self, instance):
        services.photo_delete(instance)

    @extend_schema(
        summary="Upload one or several photos (multipart, in the field files)",
        description=lazy(upload_description, str)(),  # (the settings when the schema is made)
        parameters=[OpenApiParameter(
            "Idempotency-Key", str, OpenApiParameter.HEADER, pattern=IDEMPOTENCY_KEY.pattern,
            description="Any new key (a UUID, say) for each upload, the same when it is sent again: a "
                        "request whose answer was lost gets, sent again with its key, the photos it "
                        "stored, not copies (a key sent with another file is refused for that file).")],
        request={"multipart/form-data": serializers.PhotoUploadSerializer},
        responses={
            201: serializers.UploadResponseSerializer,
            400: PolymorphicProxySerializer(
                component_name="UploadRefused",
                serializers=[serializers.UploadResponseSerializer, ERROR],
                resource_type_field_name=None,
            ),
            403: ERROR, 413: ERROR, 415: ERROR, 401: ERROR, 429: ERROR,
        },
    )
    def create(self, request, *args, **kwargs):
        """Each file becomes a queued photo or gets its own errors (the schema's description)."""
        files = request.FILES.getlist("files")  # (a body larger than we take: UploadTooLargeMiddleware)
        if not files:
            raise ValidationError({"files": gettext("Send one or more image files in the `files` field.")})
        if len(files) > settings.MAX_FILES_PER_UPLOAD:
            raise ValidationError({"files": too_many_files_message()})
        key = request.headers.get("Idempotency-Key", "")
        if key and not IDEMPOTENCY_KEY.fullmatch(key):
            raise ValidationError({"Idempotency-Key": gettext(
                "Up to 64 letters, digits, - and _ (a UUID, say).")})
        stored = services.photos_create(owner=request.user, uploads=files, key=key)
        results = [
            {"file": upload.name, "errors": errors,
             "photo": self.get_serializer(self.read_again(photo) if getattr(photo, "sent_again", False)
                                          else selectors.as_just_created(photo)).data if photo else None}
            for upload, photo, errors in stored
        ]
        created = any(r["photo"] for r in results)
        return Response({"results": results},
                        status=status.HTTP_201_CREATED if created else status.HTTP_400_BAD_REQUEST)

    @extend_schema(summary="Confirm or correct the label (or say it is none of the cakes)",
                   operation_id="photos_feedback",
                   request=serializers.FeedbackInputSerializer,
                   responses={200: serializers.PhotoSerializer, 400: ERROR, 415: ERROR, **WRITE_ERRORS})
    @action(detail=True, methods=["put"])
    def feedback(self, request, pk=None):
        photo = self.get_object()  # the owner's, or any with the change permission
        data = serializers.FeedbackInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        services.feedback_record(photo=photo, user=request.user, label=data.validated_data["label"])
        return Response(self.get_serializer(self.read_again(photo)).data)

    @extend_schema(
        summary="Withdraw the answer: the photo goes back to the review queue",
        operation_id="photos_feedback_withdraw",
        description="The answer (confirmation, correction or none of these) is taken back, whoever gave "
                    "it, and the next retraining does not learn from it. A photo with no answer is "
                    "answered the same (sent again, a request whose answer was lost changes nothing).",
        parameters=[OpenApiParameter(
            "label", str, description="Withdraw only if the answer is still this label: if someone "
                                      "changed it since you read it, a 409 (code `answer_changed`) says "
                                      "what it is now and nothing is withdrawn.")],
        request=None, responses={200: serializers.PhotoSerializer, 409: ERROR, **WRITE_ERRORS})
    @feedback.mapping.delete
    def feedback_withdraw(self, request, pk=None):
        photo = self.get_object()  # the owner's, or any with the change permission
        try:
            services.feedback_withdraw(photo=photo, label=request.query_params.get("label"))
        except ValidationError as exc:
            raise Conflict(exc.messages[0], code=exc.code) from exc
        return Response(self.get_serializer(self.read_again(photo)).data)

    @extend_schema(summary="Delete several photos at once: all or none", operation_id="photos_delete_many",
                   description="Each as `DELETE /api/photos/{id}/` deletes one, in one transaction. An id of "
                               "no photo of yours is listed in `not_found` (sent again, a request whose "
                               "answer was lost finds all its ids there); one of another user's photo that "
                               "staff may see but not delete is a 403, and nothing is deleted.",
                   request=serializers.PhotoIdsSerializer, responses={
                       200: serializers.PhotosDeletedSerializer, 400: ERROR, 415: ERROR, **WRITE_ERRORS})
    @action(detail=False, methods=["post"], url_path="delete", filter_backends=[])
    def delete_many(self, request):
        data = serializers.PhotoIdsSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        ids = set(data.validated_data["ids"])
        deleted = services.photos_delete(selectors.photos_to_delete(request.user, ids))
        return Response({"deleted": deleted, "not_found": sorted(ids - set(deleted))})

    @extend_schema(summary="Queue a failed photo again", request=None, operation_id="photos_retry",
                   responses={202: serializers.PhotoSerializer, 400: ERROR, **WRITE_ERRORS})
    @action(detail=True, methods=["post"])
    def retry(self, request, pk=None):
        photo = self.get_object()
        services.photo_retry(photo)
        return Response(self.get_serializer(self.read_again(photo)).data, status=status.HTTP_202_ACCEPTED)

    def read_again(self, photo: Photo) -> Photo:
        """The photo as a write left it, for the answer; a 404 if it was deleted just after (in
        another tab, say), as any later request would say."""
        photo = self.get_queryset().filter(pk=photo.pk).first()
        if photo is None:
            raise NotFound(gettext("The photo no longer exists."))
        return photo

    @extend_schema(summary="Photos still without feedback, least certain first: the review queue",
                   operation_id="photos_review_queue",
                   description="Done photos with no confirmation or correction yet, ordered by the "
                   "margin between the two most probable cakes (smallest first), as the website's "
                   "review page (own photos; staff allowed to see others': everyone's).",
                   responses={200: serializers.PhotoSerializer(many=True), **LIST_ERRORS})
    @action(detail=False, url_path="review-queue", filter_backends=[])
    def review_queue(self, request):
        page = self.paginate_queryset(selectors.review_queue_for_user(request.user))
        return self.get_paginated_response(self.get_serializer(page, many=True).data)

    @extend_schema(summary="The photo's file, as uploaded", operation_id="photos_image", responses={
        (200, "image/*"): OpenApiTypes.BINARY, **COMMON_ERRORS})
    @action(detail=True, content_negotiation_class=AnyAccept)
    def image(self, request, pk=None):
        return files.photo_file_response(self.get_object(), "image")

    @extend_schema(operation_id="photos_display",
                   summary="The photo at the size its page shows it: a photo over 1600 px on its "
                           "long side as an upright JPEG of 1600 to 3200 px, made at the first request; "
                           "a photo no larger, itself", responses={
        (200, "image/*"): OpenApiTypes.BINARY, **COMMON_ERRORS})
    @action(detail=True, content_negotiation_class=AnyAccept)
    def display(self, request, pk=None):
        return files.photo_file_response(self.get_object(), "display")

    @extend_schema(summary="The photo's thumbnail (JPEG, at most 320 px)", operation_id="photos_thumbnail",
                   responses={
        (200, "image/jpeg"): OpenApiTypes.BINARY, **COMMON_ERRORS})
    @action(detail=True, content_negotiation_class=AnyAccept)
    def thumbnail(self, request, pk=None):
        return files.photo_file_response(self.get_object(), "thumbnail")

    @extend_schema(operation_id="photos_heatmap",
                   summary="Where the model looked for its latest prediction (PNG); 404 until there "
                           "is one", responses={(200, "image/png"): OpenApiTypes.BINARY, **COMMON_ERRORS})
    @action(detail=True, content_negotiation_class=AnyAccept)
    def heatmap(self, request, pk=None):
        return files.photo_file_response(self.get_object(), "heatmap")


@extend_schema_view(
    list=extend_schema(summary="Model versions, newest first", responses={
        200: serializers.ModelVersionSerializer(many=True), **LIST_ERRORS}),
    retrieve=extend_schema(summary="A model version", responses={
        200: serializers.ModelVersionSerializer, **COMMON_ERRORS}),
)
class ModelVersionViewSet(FiltersOnLists, viewsets.ReadOnlyModelViewSet):
    queryset = ModelVersion.objects.all()
    serializer_class = serializers.ModelVersionSerializer
    filterset_class = ModelVersionFilter
    ordering_fields = ["created", "name"]
    lookup_value_converter = "int"

    @extend_schema(summary="Make this the active version (staff)", request=serializers.ActivateSerializer,
                   operation_id="model_versions_activate",
                   responses={200: serializers.ModelVersionSerializer, 400: ERROR, 403: ERROR, 415: ERROR,
                              **COMMON_ERRORS})
    @action(detail=True, methods=["post"], permission_classes=[staff_with("classifier.change_modelversion")])
    def activate(self, request, pk=None):
        data = serializers.ActivateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        confirmed = data.validated_data["confirm"]
        try:
            version = services.model_version_activate(self.get_object(), confirmed=confirmed)
        except ValidationError as exc:
            if exc.code == "needs_confirmation":
                message = gettext("%(refusal)s Send true to activate it all the same.") % {
                    "refusal": exc.messages[0]}
                raise exceptions.ValidationError({"confirm": [message]}) from exc
            raise
        return Response(self.get_serializer(version).data)

    @extend_schema(operation_id="model_versions_history",
                   summary="The version's training, phase by phase, epoch by epoch (staff): what the staff "
                           "page plots as its curves",
                   responses={200: serializers.TrainingPhaseSerializer(many=True), 403: ERROR,
                              **COMMON_ERRORS})
    @action(detail=True, pagination_class=None, filter_backends=[],
            permission_classes=[staff_with("classifier.view_modelversion")])
    def history(self, request, pk=None):
        phases = selectors.training_history(self.get_object())
        if phases is None:
            raise NotFound(gettext("This version was not trained epoch by epoch (a head refit has no "
                                   "curves)."))
        return Response(serializers.TrainingPhaseSerializer(phases, many=True).data)

    @extend_schema(summary="Users' accuracy per version and day of their answers (staff)",
                   operation_id="model_versions_accuracy_by_day",
                   responses={200: serializers.AccuracyDaySerializer(many=True), 403: ERROR, **COMMON_ERRORS})
    @action(detail=False, url_path="accuracy-by-day", pagination_class=None, filter_backends=[],
            permission_classes=[staff_with("classifier.view_modelversion")])
    def accuracy_by_day(self, request):
        days = selectors.feedback_accuracy_by_day()
        return Response(serializers.AccuracyDaySerializer(days, many=True).data)


@extend_schema_view(
    list=extend_schema(summary="Training runs, newest first (staff)", responses={
        200: serializers.TrainingRunSerializer(many=True), 403: ERROR, **LIST_ERRORS}),
    retrieve=extend_schema(summary="A training run with its live progress (staff)", responses={
        200: serializers.TrainingRunSerializer, 403: ERROR, **COMMON_ERRORS}),
    create=extend_schema(summary="Start a training run on the active version (staff)",
                         request=serializers.TrainingRunStartSerializer, parameters=[located("the run")],
                         responses={201: serializers.TrainingRunSerializer, 400: ERROR, 403: ERROR,
                                    409: ERROR, 415: ERROR, 401: ERROR, 429: ERROR}),
)
class TrainingRunViewSet(FiltersOnLists, mixins.CreateModelMixin, viewsets.ReadOnlyModelViewSet):
    queryset = selectors.training_runs()
    serializer_class = serializers.TrainingRunSerializer
    permission_classes = [StaffModelPermissions]
    filterset_fields = ["status", "mode"]
    ordering_fields = ["created"]
    lookup_value_converter = "int"

    def create(self, request, *args, **kwargs):
        data = serializers.TrainingRunStartSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            run = services.training_run_start(user=request.user, **data.validated_data)
        except ValidationError as exc:
            if exc.code == "busy":
                raise Conflict(exc.messages[0]) from exc
            raise
        where = request.build_absolute_uri(reverse("api:trainingrun-detail", args=[run.pk]))
        return Response(self.get_serializer(run).data, status=status.HTTP_201_CREATED,
                        headers={"Location": where})

    @extend_schema(operation_id="training_runs_cancel",
                   summary="Cancel a queued or running run (staff): a queued one never starts, a running "
                           "one stops at its next step and registers no version (one that registered "
                           "it already keeps it, not activated)", request=None,
                   responses={200: serializers.TrainingRunSerializer, 403: ERROR, 409: ERROR,
                              **COMMON_ERRORS})
    @action(detail=True, methods=["post"], permission_classes=[staff_with("classifier.add_trainingrun")])
    def cancel(self, request, pk=None):
        try:
            run = services.training_run_cancel(self.get_object(), user=request.user)
        except ValidationError as exc:  # it has ended
            raise Conflict(exc.messages[0]) from exc
        return Response(self.get_serializer(run).data)
