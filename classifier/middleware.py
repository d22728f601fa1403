"""Answers given before the view: a database that does not answer or a full disk (a 503 the user
can read, not a 500), an upload larger than we take (a 413 before its body is read), a sign-in
from an address that failed too many (a 429), a staff session without its second factor (that
step); the visitor's time zone for the pages' dates and times; and what a signed-in user is shown
kept out of caches."""

from __future__ import annotations

import errno
import functools
import logging
import zoneinfo

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.db import DatabaseError, InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.defaultfilters import filesizeformat
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.cache import add_never_cache_headers
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from classifier import selectors
from classifier.accounts import ACCOUNT_LANGUAGE, SignInFailureThrottle
from classifier.api.errors import error_body

log = logging.getLogger(__name__)
RETRY_AFTER_S = 5
TIME_ZONE_COOKIE = "tz"  # set by static/js/timezone.js


def declared_length(request) -> int:
    """The length a request declares for its body; 0 for none (chunked: the proxy's body limit caps
    those) or for one that is no number (Django reads such a body as empty: a 400 follows)."""
    try:
        return int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return 0


def upload_too_large(request) -> bool:
    """Whether a request's declared body is more than the most photos we take at once can be
    (each at the size limit, plus room for the multipart headers): refused before it is read."""
    return declared_length(request) > settings.MAX_FILES_PER_UPLOAD * (settings.MAX_UPLOAD_BYTES + 8192)


def too_large_message() -> str:
    return _("That is more than we take at once: at most %(n)s photos of %(size)s each.") % {
        "n": settings.MAX_FILES_PER_UPLOAD, "size": filesizeformat(settings.MAX_UPLOAD_BYTES)}


def refusal(request: HttpRequest, status: int, code: str, message: str, template: str,
            with_user: bool = True) -> HttpResponse:
    """The API's error shape under /api/, else `template` showing `message` (with the signed-in
    user's menu, unless `with_user` is false: when the database is down it cannot be read)."""
    if request.path.startswith("/api/"):
        return JsonResponse(error_body(status, code, message), status=status)
    try:
        page = render_to_string(template, {"message": message}, request=request if with_user else None)
    except DatabaseError:  # the user's session and menu come from the database: without them, then
        page = render_to_string(template, {"message": message})
    return HttpResponse(page, status=status)


class UploadTooLargeMiddleware:
    """A POST, PUT or PATCH whose declared length is more than we take there is refused before
    anything reads its body: the CSRF check (in process_view, after every middleware's __call__,
    this one's included) parses the whole body for its token, and Django and DRF spool file parts
    to disk. Photo uploads take up to a full upload (the API's from anyone: it reads no body before
    it knows who sends it; the page's form from the signed-in); anything else, which never carries
    a file, no more than DATA_UPLOAD_MAX_MEMORY_SIZE: no one has the server write 300 MB to disk
    for a login page."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.method in ("POST", "PUT", "PATCH"):
            if upload_too_large(request):
                return refusal(request, 413, "too_large", too_large_message(), "413.html")
            if declared_length(request) > settings.DATA_UPLOAD_MAX_MEMORY_SIZE and not takes_photos(request):
                message = _("That is more than we take here: at most %(size)s.") % {
                    "size": filesizeformat(settings.DATA_UPLOAD_MAX_MEMORY_SIZE)}
                return refusal(request, 413, "too_large", message, "413.html")
        return self.get_response(request)


@functools.cache
def photo_upload_paths() -> dict[str, bool]:
    """The paths that take photos (as `request.path`, with the site's prefix if it has one), and
    whether only from a signed-in session (the page's form)."""
    return {reverse("upload"): True, reverse("api:photo-list"): False}


def takes_photos(request: HttpRequest) -> bool:
    if request.path not in photo_upload_paths():
        return False
    return not photo_upload_paths()[request.path] or signed_in(request)


class SignInFailuresMiddleware:
    """A sign-in (the website's, the admin's, the API's token) from an address that has failed too
    many, whatever the user names, is refused before the password is checked: a 429 that says when
    to come back (accounts.SignInFailureThrottle)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.method == "POST" and request.path in sign_in_paths():
            throttle = SignInFailureThrottle()
            if wait := throttle.wait_if_full(request):
                response = refusal(request, 429, "throttled", throttle.refusal_after(wait), "429.html")
                response["Retry-After"] = str(wait)
                return response
        return self.get_response(request)


@functools.cache
def sign_in_paths() -> frozenset[str]:
    """As `request.path`: with the site's prefix, as reverse() gives them."""
    return frozenset(reverse(name) for name in ("login", "admin:login", "api:token"))


# A full disk (or a quota met) where the server writes what it is sent: photos, their thumbnails
FULL_DISK = (errno.ENOSPC, errno.EDQUOT)
FULL_DISK_RETRY_AFTER_S = 300  # (someone must make room first)


class ServiceUnavailableMiddleware:
    """A 503 the user can read, not a 500, when the database does not answer or the disk is full:
    nothing was half-saved (a transaction rolled back; a file written in part is removed,
    classifier.storage), and it is worth trying again later."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not isinstance(exception, OperationalError | InterfaceError):
            return full_disk_refusal(request, exception)
        # Django closes the broken connection when the request ends; the next one reconnects.
        log.error("database unavailable for %s %s: %s", request.method, printable(request.path), exception)
        message = _("The service is briefly unavailable (its database is not answering). Try again shortly.")
        return unavailable(request, message, RETRY_AFTER_S)


SECOND_FACTOR_NEEDED = gettext_lazy("Staff accounts sign in with a second factor: finish signing in on the "
                                    "website (Two-factor sign-in), or use an API token.")


class StaffSecondFactorMiddleware:
    """With STAFF_TWO_FACTOR, a staff account's session that has not signed in with its second factor
    opens nothing but that step (its setting up, the first time) and signing out: every page sends
    it there, and the API (the browser's session) answers 403. A staff API token is checked by
    classifier.api.authentication instead. (Choosing the language, and the scripts' translations,
    are open too: that step's page offers one and loads the other.)"""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        try:
            held = second_factor_pending(request)
        except DatabaseError:  # (the view's query fails too: ServiceUnavailableMiddleware's 503)
            held = False
        if not held or request.path in second_factor_paths():
            return self.get_response(request)
        if request.path.startswith("/api/"):
            return JsonResponse(error_body(403, "second_factor_needed", str(SECOND_FACTOR_NEEDED)),
                                status=403)
        return redirect_to_login(request.get_full_path(), reverse("two-factor"))


def second_factor_pending(request: HttpRequest) -> bool:
    """Whether the session is a staff account's that signed in with its password and not yet with
    its second factor (STAFF_TWO_FACTOR)."""
    return bool(settings.STAFF_TWO_FACTOR and request.user.is_staff and not request.user.is_verified())


@functools.cache
def second_factor_paths() -> frozenset[str]:
    return frozenset(reverse(name) for name in ("two-factor", "logout", "set_language", "javascript-catalog"))


def printable(path: str) -> str:
    """A request's path for a log line, its control characters escaped (as Django's own request log
    does): a decoded %0A in a path would start a forged line."""
    return path.encode("unicode_escape").decode("ascii")


def unavailable(request: HttpRequest, message: str, wait: int) -> HttpResponse:
    """The 503 saying `message`; its cause is logged by the caller, so Django does not log it again."""
    response = refusal(request, 503, "unavailable", message, "503.html", with_user=False)
    response["Retry-After"] = str(wait)
    response._has_been_logged = True  # (django.utils.log.log_response's mark)
    return response


def full_disk_refusal(request: HttpRequest, exception: BaseException | None) -> HttpResponse | None:
    """The 503 for `exception` if it is a full disk (logged as critical, with its traceback), else
    None. Also asked by the 500 handler: a form's upload that Django spools to a temporary file is
    read by the CSRF check, before the view, where an error never reaches process_exception."""
    if not (isinstance(exception, OSError) and exception.errno in FULL_DISK):
        return None
    log.critical("disk full for %s %s: %s", request.method, printable(request.path), exception,
                 exc_info=exception)
    message = _("The server has no room to store more just now; nothing you sent was stored. Try again "
                "later.")
    return unavailable(request, message, FULL_DISK_RETRY_AFTER_S)


@functools.cache
def known_time_zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


class BrowserTimeZoneMiddleware:
    """Pages (the admin's included) show dates and times in the visitor's own time zone: the one
    their browser names in the `tz` cookie, else settings.TIME_ZONE. Only names from the time zone
    database count. Times are stored in UTC either way, and the API always answers in UTC: a program
    gets the same answer whatever cookie it carries."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        name = request.COOKIES.get(TIME_ZONE_COOKIE, "")
        if name in known_time_zones() and not request.path_info.startswith("/api/"):
            timezone.activate(zoneinfo.ZoneInfo(name))
        try:
            return self.get_response(request)
        finally:
            timezone.deactivate()


class AccountLanguageMiddleware:
    """A signed-in session shows the website, the admin and the API's answers to its pages in the
    language its account chose (accounts.ACCOUNT_LANGUAGE), over LocaleMiddleware's choice from the
    device's cookie or the browser's Accept-Language, which stands for everyone else: a program
    with a token (no session) gets the language it asks for."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        try:
            language = request.session.get(ACCOUNT_LANGUAGE)
            chosen = selectors.language_offered(language) and request.user.is_authenticated
        except DatabaseError:  # (the view's query fails too: ServiceUnavailableMiddleware's 503)
            chosen = False
        if chosen:
            translation.activate(language)  # (LocaleMiddleware's response says it: Content-Language)
            request.LANGUAGE_CODE = language
        return self.get_response(request)


class SignedInNeverCachedMiddleware:
    """What a signed-in user is shown (pages, the API) is theirs, as in Django's admin: no shared
    cache keeps it, and no browser keeps it for the next person at the computer, who after they
    sign out would see their photos on pressing Back. Responses that say how they may be cached
    (the photos' files: private, for a day) keep their own word."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if not response.has_header("Cache-Control") and signed_in(request):
            add_never_cache_headers(response)
        return response


def signed_in(request: HttpRequest) -> bool:
    """Whether the request is a signed-in user's (the session's, or the one DRF authenticated by
    token for the view); where the database cannot say, as if it were."""
    try:
        return request.user.is_authenticated
    except DatabaseError:
        return True
