"""Website views: thin. Parse the request, call a service or selector, render."""

from __future__ import annotations

import base64
import functools
import math
import sys
import time
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import django_otp
import segno
from django.conf import settings
from django.contrib import messages
from django.contrib.admin.views.decorators import staff_member_required
from django.contrib.auth import login, logout
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required, permission_required
from django.core.exceptions import TooManyFilesSent, ValidationError
from django.core.paginator import Page
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.middleware import csrf
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.formats import number_format
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.safestring import mark_safe
from django.utils.translation import gettext, ngettext
from django.views import defaults, i18n
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import requires_csrf_token
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_GET, require_http_methods

from classifier import exports, files, images, plots, selectors, services
from classifier.accounts import (
    ACCOUNT_LANGUAGE,
    PasswordResetRateThrottle,
    PerAddressThrottle,
    SignUpAttemptThrottle,
    SignUpRateThrottle,
    UploadRateThrottle,
    site_of,
)
from classifier.cakes import catalogue
from classifier.forms import (
    RESET_NOT_QUEUED,
    RESET_RETRY_AFTER_S,
    AddressCodeForm,
    ApiTokenForm,
    EmailForm,
    GalleryFilterForm,
    PasswordChangeForm,
    PasswordConfirmForm,
    PasswordResetForm,
    PhotoChoiceForm,
    SecondFactorForm,
    SignUpForm,
    UploadForm,
    too_many_files_message,
)
from classifier.middleware import full_disk_refusal, refusal, second_factor_pending
from classifier.models import Feedback, ModelVersion, Photo, TrainingRun

PAGE_SIZE = 24


def staff_with(*permissions: str):
    """A view for staff (others go to the admin's login) holding `permissions` (else 403): the same
    rule as the API's and the admin's for the same data."""
    def decorator(view):
        return staff_member_required(permission_required(permissions, raise_exception=True)(view))
    return decorator


SEE_RUNS = ("classifier.view_modelversion", "classifier.view_trainingrun")


def post_only(back: str, *, with_id: bool = True):
    """A form's target: POST does the work. A GET (a signed-out user whom the login page sends back
    to the form's URL, or a link) goes to the page `back` (a URL name, given the view's id when
    `with_id`) saying nothing was done, instead of a bare 405 that loses the answer without a word."""
    def decorator(view):
        @functools.wraps(view)
        def wrapper(request, *args, **kwargs):
            if request.method != "POST":
                messages.info(request, gettext("Nothing was changed (you were signed out, or followed a link "
                                               "to a button's address): do it again here."))
                return redirect(back, *args, **(kwargs if with_id else {}))
            return view(request, *args, **kwargs)
        return wrapper
    return decorator


def home(request: HttpRequest) -> HttpResponse:
    return render(request, "classifier/home.html", {"cakes": catalogue(selectors.known_labels())})


def refused_over_rate(request: HttpRequest, throttle: PerAddressThrottle, page) -> HttpResponse | None:
    """Count this request against `throttle`: None within its rate, else `page(refusal)`, the form's
    page saying when to come back, as a 429 with Retry-After."""
    wait = throttle.wait_if_over(request)
    if not wait:
        return None
    response = page(throttle.refusal_after(wait))
    response.status_code = 429
    response["Retry-After"] = str(wait)
    return response


def language_set(request: HttpRequest) -> HttpResponse:
    """Django's set_language (the device's language cookie, then back to the page it came from); a
    signed-in account keeps the language chosen too, for its sessions on other devices."""
    response = i18n.set_language(request)
    language = request.POST.get(i18n.LANGUAGE_QUERY_PARAMETER)
    if request.method == "POST" and request.user.is_authenticated and selectors.language_offered(language):
        if not second_factor_pending(request):  # (a password alone: this session's, not the account's)
            services.account_language_set(request.user, language)
            with translation.override(language):  # (the page that says it is in it)
                messages.success(request, gettext("The website's language is saved with your account, "
                                                  "for wherever you sign in."))
        request.session[ACCOUNT_LANGUAGE] = language
    return response


def signup(request: HttpRequest) -> HttpResponse:
    form = SignUpForm(request.POST or None)
    if request.method == "POST" and (refused := refused_over_rate(
            request, SignUpAttemptThrottle(),
            lambda refusal: render(request, "registration/signup.html", {"form": SignUpForm(),
                                                                         "refusal": refusal}))):
        return refused
    if request.method == "POST" and form.is_valid():
        refused = refused_over_rate(  # counts the accounts made, not typing errors
            request, SignUpRateThrottle(),
            lambda refusal: render(request, "registration/signup.html", {"form": form, "refusal": refusal}))
        if refused:
            return refused
        try:
            user = services.account_create(form, site=site_of(request))
        except ValidationError as exc:  # the name taken a moment ago
            form.add_error(None, exc)
            return render(request, "registration/signup.html", {"form": form})
        if selectors.language_offered(chosen := request.COOKIES.get(settings.LANGUAGE_COOKIE_NAME)):
            services.account_language_set(user, chosen)  # (chosen on this device before signing up)
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        pending = selectors.pending_email(user)
        if pending:
            welcome = gettext("Welcome, %(username)s. %(email_sent)s Upload a cake photo to start.") % {
                "username": user.username, "email_sent": email_sent_message(pending)}
        else:
            welcome = gettext("Welcome, %(username)s. Upload a cake photo to start.") % {
                "username": user.username}
        messages.success(request, welcome)
        return redirect("upload")
    return render(request, "registration/signup.html", {"form": form})


class PasswordResetView(auth_views.PasswordResetView):
    """Django's: a link to the account's address, if an account has it (the answer is the same, and
    as quick, either way, so the form tells nobody which addresses have accounts)."""

    form_class = PasswordResetForm

    def form_valid(self, form):
        refused = refused_over_rate(self.request, PasswordResetRateThrottle(), lambda refusal: (
            self.render_to_response(self.get_context_data(form=form, refusal=refusal))))
        if refused:
            return refused
        response = super().form_valid(form)
        if form.queued is False:  # (the same for every address: it tells nobody which have accounts)
            response = self.render_to_response(self.get_context_data(form=form, refusal=RESET_NOT_QUEUED),
                                               status=503, headers={"Retry-After": str(RESET_RETRY_AFTER_S)})
        return response


class PasswordChangeView(auth_views.PasswordChangeView):
    """Django's, with the old password checked as a sign-in attempt (forms.PasswordChangeForm)."""

    form_class = PasswordChangeForm

    def get_form_kwargs(self):
        return {**super().get_form_kwargs(), "request": self.request}


def account_page(request: HttpRequest, *, status: int = 200, **forms) -> HttpResponse:
    """The account page, with the forms given (bound, showing their errors) or fresh ones. The field
    of the first error has the focus (forms.FocusOnError): on a phone the page is long, and the error
    far down."""
    user = request.user
    context = {
        "email_form": EmailForm(request=request, initial={"email": user.email}),
        "pending_email": selectors.pending_email(user),
        "account_language": selectors.account_language(user),
        "token_form": ApiTokenForm(request=request, prefix="token"),
        "delete_form": PasswordConfirmForm(request=request, prefix="delete"),
        "codes_form": PasswordConfirmForm(request=request, prefix="codes"),
        "tokens": selectors.api_tokens(user),
        "token_limit": settings.API_TOKENS_PER_ACCOUNT,
        "token_idle_days": settings.API_TOKEN_IDLE_DAYS,
        "photos": selectors.photo_count(user),
        "photo_limit": (number_format(settings.MAX_PHOTOS_PER_ACCOUNT, force_grouping=True)
                        if settings.MAX_PHOTOS_PER_ACCOUNT else ""),
        "backup_codes_left": (selectors.backup_codes_left(user) if selectors.second_factor_required(user)
                              else None),
        **forms,
    }
    return render(request, "registration/account.html", context, status=status)


@login_required
def account_export(request: HttpRequest) -> HttpResponse | StreamingHttpResponse:
    """The signed-in user's photos and answers, as one zip file (classifier.exports)."""
    return exports.account_archive_response(request)


@sensitive_post_parameters("password")
@never_cache
@login_required
def account(request: HttpRequest) -> HttpResponse:
    """The account: its e-mail address (where a reset link goes), its API tokens, deleting it."""
    if request.method != "POST":
        return account_page(request, new_token=request.session.pop(NEW_TOKEN, None))
    form = EmailForm(request.POST, request=request)
    if not form.is_valid():
        return account_page(request, email_form=form, status=400)
    waiting = selectors.pending_email(request.user)
    try:
        pending = services.account_email_set(request.user, form.cleaned_data["email"], site=site_of(request))
    except ValidationError as exc:  # too many links asked for
        form.add_error(None, exc)
        return account_page(request, email_form=form, status=400)
    email = request.user.email  # (as account_email_set left it)
    if pending:
        messages.success(request, email_sent_message(pending))
    else:
        said = (gettext("Your e-mail address is %(email)s.") % {"email": email} if email
                else gettext("You have no e-mail address: a forgotten password cannot be reset."))
        if waiting:
            said += " " + gettext("The change to %(email)s is withdrawn.") % {"email": waiting.email}
        messages.success(request, said)
    return redirect("account")


def email_sent_message(pending) -> str:
    """(A whole sentence, ending in its full stop; no space after it.)"""
    values = {"email": pending.email, "period": services.email_confirm_period()}
    if services.address_busy(pending.email):
        return gettext("We are sending a link to %(email)s as soon as it may get one (it got several "
                       "links from us lately, the most we send to one address in an hour): the address is "
                       "used once you open it (it works for %(period)s).") % values
    return gettext("We are sending a link to %(email)s: the address is used once you open it (it works for "
                   "%(period)s).") % values


@never_cache
@login_required
@post_only("account", with_id=False)
def account_email_resend(request: HttpRequest) -> HttpResponse:
    try:
        pending = services.account_email_resend(request.user, site=site_of(request))
    except ValidationError as exc:  # too many links asked for
        messages.error(request, " ".join(exc.messages))
        return redirect("account")
    messages.success(request, email_sent_message(pending) if pending
                     else gettext("No address waits for you to confirm it."))
    return redirect("account")


@never_cache
@require_http_methods(["GET", "POST"])
def email_confirm(request: HttpRequest, token: str) -> HttpResponse:
    """The page the link e-mailed to an address opens: a button (POST) confirms it, so that a mail
    program that fetches the link to preview it confirms nothing."""
    pending = selectors.pending_email_for_token(token)
    onwards = "account" if request.user.is_authenticated else "login"
    if pending is not None and request.method == "POST":
        if services.account_email_confirm(pending):
            messages.success(request, gettext("%(email)s is confirmed: it is the address of the account "
                                              "%(username)s.") % {"email": pending.email,
                                                                  "username": pending.user.get_username()})
            return redirect(onwards)
        pending = None  # confirmed, replaced or withdrawn a moment ago
    if pending is None and selectors.email_confirmed_by(token):  # (a second click, a second tab)
        messages.info(request, gettext("That address is confirmed already."))
        return redirect(onwards)
    return render(request, "registration/email_confirm.html",
                  {"pending": pending, "period": services.email_confirm_period()},
                  status=200 if pending else 404)


NEW_TOKEN = "new_api_token"  # in the session from making a token to the page that shows it


@sensitive_post_parameters("token-password")
@never_cache
@login_required
@post_only("account", with_id=False)
def account_token(request: HttpRequest) -> HttpResponse:
    """A new API token (the password asked again, as the API's token endpoint asks it), shown once on
    the account page this redirects to (so reloading that page neither shows it again nor makes
    another); or, with `revoke`, none: the one it names (its hash), or `all` with its box ticked."""
    if "revoke" in request.POST:
        if request.POST["revoke"] != "all":
            revoked = services.api_token_revoke(request.user, digest=request.POST["revoke"])
            messages.success(request, gettext("The token is revoked: the program that used it is signed out.")
                             if revoked else gettext("That token was revoked already."))
        elif request.POST.get("revoke-confirm") != "on":  # (the box is required: a browser asks first)
            messages.error(request, gettext("The tokens were not revoked: tick the box that says the "
                                            "programs using them stop working."))
        else:
            services.api_token_revoke(request.user)
            messages.success(request, gettext("Your API tokens are revoked: the programs that used them are "
                                              "signed out."))
        return redirect("account")
    form = ApiTokenForm(request.POST, request=request, prefix="token")
    if not form.is_valid():
        return account_page(request, token_form=form, status=400)
    request.session[NEW_TOKEN] = services.api_token_new(request.user, form.cleaned_data["name"])[1]
    return redirect("account")


SETTING_UP = "second_factor_setting_up"  # in the session: the id of the authenticator it sets up
ADDRESS_CHECKED = "second_factor_address_checked"  # in the session: whose e-mailed code it typed, when


def wrong_code(*devices) -> str:
    wait = selectors.second_factor_wait_s(*devices)
    if wait > 1:
        return gettext("That code is not right (or no longer): type the one your app shows now, or a backup "
                       "code. After several wrong ones, wait %(wait)s before the next.") % {
            "wait": wait_in_words(wait)}
    return gettext("That code is not right (or no longer): type the one your app shows now, or a backup "
                   "code.")


def wrong_address_code(user) -> str:
    wait = selectors.address_code_wait_s(user)
    if wait > 1:
        return gettext(
            "That code is not right (or no longer works): type the last one e-mailed, or send another. After "
            "several wrong ones, wait %(wait)s before the next, or sign out and choose a new password "
            "(Forgot your password? on the sign-in page): that ends the wait."
        ) % {"wait": wait_in_words(wait)}
    return gettext("That code is not right (or no longer works): type the last one e-mailed, or send "
                   "another.")


def wait_in_words(seconds: int) -> str:
    """A wait in words: "45 seconds", else to the minute ("2 days, 3 hours")."""
    if seconds < 120:
        return ngettext("%(n)s second", "%(n)s seconds", seconds) % {"n": seconds}
    return services.duration_in_words(seconds)


@sensitive_post_parameters("code")
@never_cache
@login_required
@require_http_methods(["GET", "POST"])
def two_factor(request: HttpRequest) -> HttpResponse:
    """A staff account's second step of signing in (STAFF_TWO_FACTOR): a code of its authenticator
    app or a backup code; the first time, setting the app up (its secret as a QR code and as text,
    confirmed by a code it shows), after which its backup codes are shown, once."""
    onwards = request.POST.get("next", request.GET.get("next", ""))
    if not url_has_allowed_host_and_scheme(onwards, allowed_hosts={request.get_host()},
                                           require_https=request.is_secure()):
        onwards = reverse("gallery")
    user = request.user
    if not selectors.second_factor_required(user) or user.is_verified():
        return redirect(onwards)
    form = SecondFactorForm(request.POST if request.method == "POST" else None)
    if selectors.has_second_factor(user):
        if form.is_valid():
            if device := services.second_factor_match(user, form.cleaned_data["code"]):
                django_otp.login(request, device)
                return redirect(onwards)
            form.add_error("code", wrong_code(*django_otp.devices_for_user(user)))  # (its app, its codes)
        return render(request, "registration/two_factor.html", {"form": form, "next": onwards},
                      status=400 if form.errors else 200)
    if selectors.address_check_needed(user, request.session.get(ADDRESS_CHECKED)):
        return address_check(request, onwards)
    device = services.second_factor_device(user, request.session.get(SETTING_UP))
    request.session[SETTING_UP] = device.pk  # (this session's secret: no other session is shown it)
    if form.is_valid():
        codes = services.second_factor_confirm(device, form.cleaned_data["code"], site=site_of(request))
        if codes is not None:
            request.session.pop(SETTING_UP, None)
            request.session.pop(ADDRESS_CHECKED, None)
            django_otp.login(request, device)
            return render(request, "registration/two_factor_backup_codes.html",
                          {"codes": codes, "next": onwards})
        form.add_error("code", wrong_code(device))
    secret = base64.b32encode(device.bin_key).decode()
    return render(request, "registration/two_factor.html", {
        "form": form, "next": onwards, "setting_up": True, "otpauth": device.config_url,
        "secret": " ".join(secret[i:i + 4] for i in range(0, len(secret), 4)),
        "qr": mark_safe(segno.make(device.config_url, error="m").svg_inline(  # noqa: S308 - segno's own markup
            # (a viewBox: the CSS sizes it)
            omitsize=True, title=gettext("QR code of the secret"), svgclass="qr")),
    }, status=400 if form.errors else 200)


def address_check(request: HttpRequest, onwards: str) -> HttpResponse:
    """Setting up an authenticator on an account with an address, the step before: a code e-mailed
    to that address (sent on arriving, or again on asking), so that someone who knows the password
    alone cannot set one up before the account's owner (and sign in as them for ever after)."""
    user = request.user
    resend = request.method == "POST" and "resend" in request.POST
    form = AddressCodeForm(request.POST if request.method == "POST" and not resend else None)
    if form.is_valid():
        if checked := services.second_factor_address_check(user, form.cleaned_data["code"]):
            request.session[ADDRESS_CHECKED] = {"address": checked, "at": time.time()}
            return redirect(with_query(reverse("two-factor"), next=onwards))
        form.add_error("code", wrong_address_code(user))
        sent = None
    else:
        sent = services.second_factor_address_code(user, site=site_of(request), again=resend)
    response = render(request, "registration/two_factor.html", {
        "form": form, "next": onwards, "checking_address": True, "sent": sent, "not_queued": RESET_NOT_QUEUED,
        "address": selectors.address_hint(user.email), "minutes": settings.OTP_EMAIL_TOKEN_VALIDITY // 60,
    }, status={"not sent": 503, "limit": 429, "too soon": 400}.get(sent, 400 if form.errors else 200))
    if sent in ("not sent", "limit"):
        response["Retry-After"] = str(RESET_RETRY_AFTER_S if sent == "not sent" else 3600)
    return response


@sensitive_post_parameters("codes-password")
@never_cache
@login_required
@post_only("account", with_id=False)
def backup_codes_renew(request: HttpRequest) -> HttpResponse:
    """New backup codes (the password asked again), shown once; the earlier ones stop working."""
    if not (selectors.second_factor_required(request.user) and selectors.has_second_factor(request.user)):
        return redirect("account")
    form = PasswordConfirmForm(request.POST, request=request, prefix="codes")
    if not form.is_valid():
        return account_page(request, codes_form=form, status=400)
    return render(request, "registration/two_factor_backup_codes.html",
                  {"codes": services.backup_codes_renew(request.user), "next": reverse("account"),
                   "renewed": True})


@sensitive_post_parameters("delete-password")
@never_cache
@login_required
@post_only("account", with_id=False)
def account_delete(request: HttpRequest) -> HttpResponse:
    form = PasswordConfirmForm(request.POST, request=request, prefix="delete")
    if not form.is_valid():
        return account_page(request, delete_form=form, status=400)
    try:
        photos = services.account_delete(request.user)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
        return redirect("account")
    logout(request)
    messages.success(request, ngettext("Your account is deleted, with its %(n)s photo and your answers.",
                                       "Your account is deleted, with its %(n)s photos and your answers.",
                                       photos) % {"n": photos})
    return redirect("home")


@login_required
def upload(request: HttpRequest) -> HttpResponse:
    """(A body larger than we take is refused by UploadTooLargeMiddleware, too many files by
    bad_request: both before this view.)"""
    throttle = UploadRateThrottle()
    if request.method == "POST" and not throttle.allow_request(request, None):
        wait = math.ceil(throttle.wait() or 1)
        refused = {"form": UploadForm(), "refusal": gettext(
            "That is more uploads than we take in a minute; try again in %(wait)s s.") % {"wait": wait}}
        response = upload_page(request, refused, status=429)
        response["Retry-After"] = str(wait)
        return response
    form = UploadForm(request.POST, request.FILES) if request.method == "POST" else UploadForm()
    if form.is_bound and form.is_valid():
        results = services.photos_create(owner=request.user, uploads=form.cleaned_data["photos"])
        created = [photo for _, photo, _ in results if photo]
        for upload, _, errors in results:
            if errors:
                messages.error(request, gettext("%(file)s: %(errors)s") % {"file": upload.name,
                                                                           "errors": " ".join(errors)})
        if created:
            messages.success(request, ngettext("%(n)s photo uploaded; classification is under way.",
                                               "%(n)s photos uploaded; classification is under way.",
                                               len(created)) % {"n": len(created)})
            return redirect(created[0] if len(created) == 1 else "gallery")
        form.add_error("photos", gettext("None of the files could be stored."))
    return upload_page(request, {"form": form}, status=400 if form.errors else 200)


def upload_page(request: HttpRequest, context: dict, status: int) -> HttpResponse:
    """The upload page; its script words a result below UNSURE_BELOW as the gallery does, and refuses
    a file over the size limit as the server would, before sending it."""
    return render(request, "classifier/upload.html", {
        **context, "unsure_below": settings.UNSURE_BELOW, "max_bytes": settings.MAX_UPLOAD_BYTES,
        "max_files": settings.MAX_FILES_PER_UPLOAD,
        "too_large": images.file_too_large_message(),
        "account_full": services.account_full_message() if selectors.account_full(request.user) else ""},
        status=status)


@requires_csrf_token  # as Django's own: its page may show a form
def server_error(request: HttpRequest) -> HttpResponse:
    """Django's 500 (the error is logged as ever), as the site's page, and in the API's error shape
    under /api/. The signed-in user is not looked up: the database may be why it failed. A full
    disk met before the view (an upload spooled to a file) is the 503 the view's would be."""
    if (full := full_disk_refusal(request, sys.exc_info()[1])) is not None:
        return full
    message = gettext("Something went wrong on our side; it has been logged. Try again in a moment.")
    return refusal(request, 500, "server_error", message, "500.html", with_user=False)


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    """Django's refusal of a form without its CSRF token (CSRF_FAILURE_VIEW), in words a person can
    act on: mostly a page opened before signing in or out in another tab (the token changed then)."""
    if reason == csrf.REASON_NO_CSRF_COOKIE:
        message = gettext("Your browser did not send this site's cookie with the form, so nothing was "
                          "changed. Allow cookies for this site, then reload the page and send the form "
                          "again.")
    else:
        message = gettext("Nothing was changed: the form came from a page opened before you signed in or out "
                          "(perhaps in another tab). Go back, reload the page, and send the form again.")
    return refusal(request, 403, "csrf_failed", message, "403_csrf.html")


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    """Django's 400 page, except for an upload of more files than we take at once: the upload page
    says what the limit is. (The API's views say it in its own error shape.)"""
    if not isinstance(exception, TooManyFilesSent):
        return defaults.bad_request(request, exception)
    refused = {"form": UploadForm(), "refusal": too_many_files_message()}
    return upload_page(request, refused, status=400)


@login_required
def gallery(request: HttpRequest) -> HttpResponse:
    filters, filtered, page, shown = gallery_page(request, "view")
    query = gallery_query(request, page=False)
    cards = [card(photo) for photo in shown]
    # 'Delete several…' opens this page of the gallery where it lists the same photos: not for staff
    # who see others' photos they may not delete (or delete those they do not see), whose pages differ.
    same = (selectors.may_act_on_others_photos(request.user, "view")
            == selectors.may_act_on_others_photos(request.user, "delete"))
    return render(request, "classifier/gallery.html", {
        "page": page, "cards": cards, "filters": filters, "query": query, "filtered": filtered,
        "delete_query": "&".join(part for part in (query, same and f"page={page.number}") if part),
        "pending": any(c["pending"] for c in cards),
        # The first page, unfiltered, shows photos uploaded elsewhere (another tab, the phone, the
        # API) as they come: newer than the newest one shown (see photo_status's `after`).
        "newer_than": max((c["photo"].pk for c in cards), default=0)
        if page.number == 1 and not filtered else None,
    })


def gallery_page(request: HttpRequest, action: str) -> tuple[GalleryFilterForm, bool, Page, list[Photo]]:
    """The gallery's filters (from the query string), whether they filter, and the page asked for
    of the photos that `request.user` may `action` which they let through, with its photos."""
    filters = GalleryFilterForm(request.GET or None, labels=selectors.known_labels())
    # Each filter on its own: an unknown value (an old link's cake, a mistyped answer) is left out,
    # not the other filters with it (while their selects still showed them chosen).
    filters.is_valid()  # (cleaned_data keeps the valid fields' values; an unbound form has none)
    valid = getattr(filters, "cleaned_data", {})
    chosen = {name: valid.get(name) or None for name in GalleryFilterForm.base_fields}
    photos = selectors.photos_for_user(request.user, **chosen, action=action)
    return (filters, any(chosen.values()), *selectors.photo_page(photos, request.GET.get("page"), PAGE_SIZE))


def gallery_query(request: HttpRequest, *, page: bool) -> str:
    """The gallery's filters in the query string (and its page number, if `page`), to link to the
    same photos from another page."""
    keys = [*GalleryFilterForm.base_fields, "page"] if page else GalleryFilterForm.base_fields
    return urlencode([(key, request.GET[key]) for key in keys if request.GET.get(key)])


@login_required
@require_http_methods(["GET", "POST"])
def photos_delete(request: HttpRequest) -> HttpResponse:
    """Delete several photos at once. GET: the gallery's page (its filters and page number), of the
    photos the user may delete, with a box to tick for each (`all=1`: all ticked). POST: the ticked
    ones to confirm, as one photo's deletion asks first; `back`: the list again, them ticked;
    `confirm`: delete them, together, and go back to that page of the gallery."""
    form = PhotoChoiceForm(request.POST if request.method == "POST" else None)  # (none ticked: an empty POST)
    back_to_gallery = f"{reverse('gallery')}?{gallery_query(request, page=True)}".removesuffix("?")
    if form.is_valid() and "back" not in request.POST:
        ids = form.cleaned_data["photo"]
        if "confirm" not in request.POST:
            chosen = selectors.photos_to_delete(request.user, ids)  # (a 403 for one staff may only see)
            if not chosen:
                messages.info(request, gettext("Those photos were deleted already."))
                return redirect(back_to_gallery)
            photos = selectors.photos_for_user(request.user, action="delete").filter(pk__in=chosen)
            return render(request, "classifier/photos_delete_confirm.html", {
                "cards": [card(photo) for photo in photos], "here": gallery_query(request, page=True)})
        deleted = services.photos_delete(selectors.photos_to_delete(request.user, ids))
        if not deleted:
            messages.info(request, gettext("Those photos were deleted already."))
            return redirect(back_to_gallery)
        said = ngettext("%(count)d photo deleted.", "%(count)d photos deleted.", len(deleted)) % {
            "count": len(deleted)}
        if gone := len(ids) - len(deleted):  # (in another tab, say)
            said += " " + ngettext("%(count)d was deleted already.", "%(count)d were deleted already.",
                                   gone) % {"count": gone}
        messages.success(request, said)
        return redirect(back_to_gallery)
    _, filtered, page, shown = gallery_page(request, "delete")
    return render(request, "classifier/photos_delete.html", {
        "form": form, "page": page, "cards": [card(photo) for photo in shown], "filtered": filtered,
        "all": request.GET.get("all") == "1",
        "ticked": {int(value) for value in request.POST.getlist("photo")  # (a refused or changed choice)
                   if form.fields["photo"].valid_value(value)},
        "query": gallery_query(request, page=False), "here": gallery_query(request, page=True),
    }, status=400 if form.errors else 200)


@login_required
def photo_detail(request: HttpRequest, pk: int) -> HttpResponse:
    photo = selectors.photo_for_user(request.user, pk)
    return render(request, "classifier/photo_detail.html", {
        "card": card(photo), "can_review": selectors.may_review(request.user, photo),
        "can_delete": selectors.may_act_on(request.user, photo, "delete")})


@login_required
@require_GET
def photo_image(request: HttpRequest, pk: int, kind: str) -> FileResponse:
    """The photo, its display copy, thumbnail or heat map, to its owner (and staff) only: media is
    never public."""
    return files.photo_file_response(selectors.photo_for_user(request.user, pk), kind)


@login_required
@require_GET
def photo_status(request: HttpRequest) -> JsonResponse:
    """Status of some of the user's photos with their rendered result, for the pages to poll; with
    `after` (a photo id, or 0), also as `new` the gallery's cards of the newest photos (at most a
    page) after it. The gallery asks with the newest it showed when it was opened, every time: a
    photo whose id came before another's but whose upload was committed after it still turns up."""
    ids = [i for i in request.GET.get("ids", "").split(",") if i][:100]
    after = request.GET.get("after")
    if not all(selectors.id_text(i) and int(i) > 0 for i in ids):
        return JsonResponse({"error": gettext("ids must be comma-separated photo ids")}, status=400)
    if after is not None and not selectors.id_text(after):
        return JsonResponse({"error": gettext("after must be a photo id, or 0")}, status=400)
    template = "classifier/_card.html" if request.GET.get("view") == "card" else "classifier/_result.html"

    def rendered(photos, template_name: str) -> list[dict]:
        return [{"id": photo.pk, "status": photo.status, "html": render_to_string(
            template_name, {"card": card(photo), "can_review": selectors.may_review(request.user, photo)},
            request=request)} for photo in photos]

    body = {"photos": rendered(selectors.photos_for_user(request.user).filter(pk__in=ids), template)}
    if after is not None:
        newer = selectors.photos_for_user(request.user).filter(pk__gt=after)[:PAGE_SIZE]
        body["new"] = rendered(newer, "classifier/_card.html")
    return JsonResponse(body)


@login_required
@post_only("photo-detail")
def photo_retry(request: HttpRequest, pk: int) -> HttpResponse:
    photo = selectors.photo_for_user(request.user, pk, action="change")
    try:
        services.photo_retry(photo)
        messages.success(request, gettext("The photo is queued again."))
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    return redirect(f"{photo.get_absolute_url()}#result")  # (its result panel has the focus)


@login_required
@require_http_methods(["GET", "POST"])
def photo_delete(request: HttpRequest, pk: int) -> HttpResponse:
    """GET asks to confirm (a deletion cannot be undone); POST deletes."""
    photo = selectors.photo_for_user(request.user, pk, action="delete")
    if request.method == "GET":
        return render(request, "classifier/photo_confirm_delete.html", {"photo": photo})
    services.photo_delete(photo)
    messages.success(request, gettext("The photo is deleted."))
    return redirect("gallery")


@login_required
def review_queue(request: HttpRequest) -> HttpResponse:
    queue = selectors.review_queue_for_user(request.user)
    page, photos = selectors.photo_page(queue, request.GET.get("page"), PAGE_SIZE)
    # An answer comes back to the photo after the one answered (it takes that one's place), not to
    # the top of the queue past the photos skipped.
    here = with_query(request.get_full_path(), answered=None)
    then = [f"{here}#review-{after.pk}" for after in photos[1:]] + [here]
    # Just answered here: thanked in the photo's place, with an Undo that brings it back there.
    answered = selectors.answer_just_given(request.user, request.GET.get("answered"))
    return render(request, "classifier/review.html", {
        "page": page,
        "cards": [card(photo) | {"can_review": selectors.may_review(request.user, photo), "then": back}
                  for photo, back in zip(photos, then)],
        "stats": selectors.feedback_stats(request.user), "labels": selectors.known_labels(),
        "answered": answered,
        "answered_at": selectors.queue_place(photos, answered.photo) if answered else None,
        "answered_name": answered.answer_name(answered.model_version) if answered else "",
        "undo_next": f"{here}#review-{answered.photo_id}" if answered else "",
    })


@login_required
@post_only("photo-detail")
def photo_feedback(request: HttpRequest, pk: int) -> HttpResponse:
    """Confirm or correct a photo's label (the owner, or staff allowed to change photos); back to
    where the form was (review queue or photo page)."""
    photo = selectors.photo_for_user(request.user, pk, action="change")
    # "Yes, it is ..." sends `label`; the list of cakes, with its Save button, `correction`.
    label = request.POST.get("label") or request.POST.get("correction", "")
    next_url = back_to(request, photo)
    try:
        services.feedback_record(photo=photo, user=request.user, label=label)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
        return redirect(next_url)
    if request.POST.get("in_queue"):  # the queue thanks in the photo's place, with an Undo
        return redirect(with_query(next_url, answered=photo.pk))
    messages.success(request, gettext("Thank you: noted as none of our cakes, so the next model version "
                                      "does not learn from this photo.") if label == Feedback.NONE
                     else gettext("Thank you: your answer will teach the next model version."))
    return redirect(next_url)


@login_required
@post_only("photo-detail")
def photo_feedback_withdraw(request: HttpRequest, pk: int) -> HttpResponse:
    """Take back a photo's answer (the review queue's Undo, the photo page's Withdraw): only the
    answer the page showed (`label`; `own`: the user's own); back to where the form was."""
    photo = selectors.photo_for_user(request.user, pk, action="change")
    try:
        if services.feedback_withdraw(photo=photo, label=request.POST.get("label"),
                                      by=request.user if request.POST.get("own") else None):
            messages.success(request, gettext("Answer withdrawn: photo %(pk)s is back in the review queue.")
                             % {"pk": photo.pk})
        else:
            messages.info(request, gettext("Photo %(pk)s has no answer to withdraw.") % {"pk": photo.pk})
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    return redirect(back_to(request, photo))


def back_to(request: HttpRequest, photo: Photo) -> str:
    """Where a photo's form came from (its `next`, on this site), else the photo's page."""
    next_url = request.POST.get("next", "")
    if url_has_allowed_host_and_scheme(next_url, allowed_hosts={request.get_host()}):
        return next_url
    return photo.get_absolute_url()


def with_query(url: str, **params) -> str:
    """`url` with `params` set in its query (replacing any of the same name; None: removed), its
    fragment kept."""
    parts = urlsplit(url)
    query = [(key, value) for key, value in parse_qsl(parts.query, keep_blank_values=True)
             if key not in params]
    query += [(key, value) for key, value in params.items() if value is not None]
    return urlunsplit(parts._replace(query=urlencode(query)))


@staff_with(*SEE_RUNS)
def model_versions(request: HttpRequest) -> HttpResponse:
    """Versions side by side (metrics, confusion matrices, data used, which is active) and runs;
    `?part=runs`: the runs table alone, which the page's script fetches while a run is live."""
    runs = {
        "runs": selectors.training_runs()[:10],
        "live": selectors.live_run(),
        "versions_state": selectors.versions_state(),
    }
    if request.GET.get("part") == "runs":
        return render(request, "classifier/_runs.html", runs)
    active = selectors.active_version()
    return render(request, "classifier/model_versions.html", {
        **runs,
        "answers_since": selectors.answers_since(active) if active else None,
        "accuracy_by_day": selectors.feedback_accuracy_by_day(),  # the chart's figures, as a table
        "backlog": selectors.classification_backlog(ask_broker=True),
        "versions": selectors.model_versions_compared(),
        "modes": TrainingRun.Mode.choices,
        "auto_rule": selectors.auto_activation_rule(),
    })


@staff_with("classifier.view_modelversion")
@require_GET
def model_version_confusion(request: HttpRequest, pk: int, split: str) -> FileResponse:
    version = get_object_or_404(ModelVersion, pk=pk)
    if split not in version.metrics:
        raise Http404(gettext("No such evaluation."))
    return version_png(version, f"confusion_{split}.png",
                       gettext("No confusion matrix was drawn for this evaluation."))


@staff_with("classifier.view_modelversion")
@require_GET
def model_version_curves(request: HttpRequest, pk: int) -> FileResponse:
    return version_png(get_object_or_404(ModelVersion, pk=pk), "training_curves.png",
                       gettext("This version was not trained epoch by epoch (a head refit has no curves)."))


def version_png(version: ModelVersion, name: str, missing: str) -> FileResponse:
    """A plot drawn into the version's folder when it was made; 404 with `missing` if there is none."""
    path = version.folder / name
    if not path.is_file():
        raise Http404(missing)
    return FileResponse(path.open("rb"), content_type="image/png")


@staff_with("classifier.view_modelversion")
@require_GET
def feedback_accuracy_plot(request: HttpRequest) -> HttpResponse:
    png = plots.feedback_accuracy_png(selectors.feedback_accuracy_by_day())
    return HttpResponse(png, content_type="image/png", headers={"Cache-Control": "private, max-age=60"})


@staff_with("classifier.change_modelversion")
@post_only("model-versions", with_id=False)
def model_version_activate(request: HttpRequest, pk: int) -> HttpResponse:
    try:
        version = services.model_version_activate(get_object_or_404(ModelVersion, pk=pk),
                                                  confirmed=request.POST.get("confirm") == "on")
    except ValidationError as exc:
        also = (" " + gettext("Tick the box to activate it all the same.")
                if exc.code == "needs_confirmation" else "")
        messages.error(request, " ".join(exc.messages) + also)
        return redirect("model-versions")
    messages.success(request, gettext("%(name)s is now the active version; workers use it from the next "
                                      "photo.") % {"name": version.name})
    return redirect("model-versions")


@staff_with("classifier.add_trainingrun")
@post_only("model-versions", with_id=False)
def training_run_start(request: HttpRequest) -> HttpResponse:
    try:
        run = services.training_run_start(user=request.user, mode=request.POST.get("mode", "fast"),
                                          auto_activate=request.POST.get("auto_activate") == "on")
        messages.success(request, gettext("Training run %(id)s is queued (%(mode)s mode).") % {
            "id": run.pk, "mode": run.mode})
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    return redirect("model-versions")


@staff_with("classifier.add_trainingrun")
@post_only("model-versions", with_id=False)
def training_run_cancel(request: HttpRequest, pk: int) -> HttpResponse:
    try:
        run = services.training_run_cancel(get_object_or_404(TrainingRun, pk=pk), user=request.user)
        messages.success(request, cancelled_message(run))
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    return redirect("model-versions")


def cancelled_message(run: TrainingRun) -> str:
    """What staff are told on the staff page once they cancelled `run`."""
    if run.started is None:
        return gettext("Training run %(id)s is cancelled; it will not start. A new run can start now.") % {
            "id": run.pk}
    return gettext("Training run %(id)s is cancelled: it stops at its next step and activates nothing. A new "
                   "run can start now (it begins once the trainer is free).") % {"id": run.pk}


def card(photo: Photo) -> dict:
    """What the templates show of a photo: the photo, its status and its latest prediction."""
    prediction = selectors.latest_prediction(photo)
    feedback = getattr(photo, "feedback", None)
    answer_name = ""  # what the photo was answered to be, in words (the gallery's caption, the form's note)
    if feedback and prediction:
        answer_name = feedback.answer_name(prediction.model_version)
    return {
        "photo": photo,
        "pending": photo.status in Photo.PENDING,
        # waiting longer than selectors.LATE_AFTER (its page says so)
        "late": photo.status in Photo.PENDING and photo.waiting_since is not None
                and timezone.now() - photo.waiting_since > selectors.LATE_AFTER,
        "prediction": prediction,
        "label_name": prediction.label_name if prediction else "",
        "answer_name": answer_name,
        "top": selectors.top_k(prediction) if prediction else [],
        "feedback": feedback,
        "labels": prediction.model_version.labels if prediction else [],
        "unsure": bool(prediction) and prediction.confidence < settings.UNSURE_BELOW,
        "shown_smaller": max(photo.width, photo.height) > images.DISPLAY_SIZE,  # (services.photo_display)
    }
