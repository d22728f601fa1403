"""Accounts: what follows a password change, wherever it happens (the website, the admin,
`manage.py changepassword`, a script's `set_password`), or a disabled password, a logout, and whose
address a request comes from, how many accounts, reset e-mails and failed sign-ins an address
gets, and the password asked again before a step that a session left open must not be enough for."""

import ipaddress
import math

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.db.models.signals import post_init, post_save
from django.dispatch import receiver
from django.utils import translation
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, gettext_noop, ngettext
from rest_framework.exceptions import Throttled
from rest_framework.throttling import BaseThrottle, SimpleRateThrottle, UserRateThrottle

from classifier import selectors, services

# django.contrib.auth's own words on the sign-up, sign-in and password pages, translated again in
# locale/ (which comes before Django's catalogues): Django's Indonesian says "sandi" and "anda"
# beside the site's "kata sandi" and "Anda" on the same form, and "150 karakter atau sedikit" ("or
# few") for "or fewer". Listed only for makemessages to find them.
DJANGO_WORDING = (
    gettext_noop("Password"),
    gettext_noop("Password confirmation"),
    gettext_noop("Old password"),
    gettext_noop("New password"),
    gettext_noop("New password confirmation"),
    gettext_noop("Enter the same password as before, for verification."),
    gettext_noop("The two password fields didn’t match."),
    gettext_noop("Your old password was entered incorrectly. Please enter it again."),
    gettext_noop("Please enter a correct %(username)s and password. Note that both fields may be "
                 "case-sensitive."),
    gettext_noop("Required. 150 characters or fewer. Letters, digits and @/./+/-/_ only."),
    gettext_noop("Your password can’t be too similar to your other personal information."),
    gettext_noop("Your password can’t be a commonly used password."),
    gettext_noop("Your password can’t be entirely numeric."),
)


class EndAccessOnPasswordChange:
    """Listed in AUTH_PASSWORD_VALIDATORS for Django's own hook: after a user is saved with a new
    password, Django calls every validator's `password_changed`. It checks nothing itself; its help
    text (one item of the password's help list) says what it does.

    A new password signs out the sessions elsewhere (Django checks the password hash); this signs
    out the API clients too, and withdraws an address change waiting for confirmation: an old token
    or an address asked for with a stolen password could otherwise outlive the password.
    """

    def validate(self, password, user=None):
        pass

    def password_changed(self, password, user=None):
        if user is not None and user.pk is not None:
            services.password_changed(user)

    def get_help_text(self):
        return _("A new password also signs out the programs that use your API tokens, and withdraws "
                 "an e-mail address change not confirmed yet.")


@receiver(post_init, sender=settings.AUTH_USER_MODEL)
def remember_the_password_loaded(sender, instance, **_kwargs) -> None:
    instance._password_loaded = instance.__dict__.get("password")  # (a deferred one is not fetched)
    instance._is_staff_loaded = instance.__dict__.get("is_staff")


@receiver(post_save, sender=settings.AUTH_USER_MODEL)
def end_access_of_a_disabled_password(sender, instance, update_fields=None, **_kwargs) -> None:
    """A password disabled (the admin's "Password-based authentication: Disabled", or a script's
    `set_unusable_password`) is no password change to Django's hook above, yet it ends the user's
    sessions (Django ties them to the password): it ends what a new password ends too. Only then: an
    API-only account, which never had a password, keeps its tokens through other changes."""
    password = instance.__dict__.get("password")
    if (update_fields is not None and "password" not in update_fields) or password is None:
        return
    if password != instance._password_loaded and not instance.has_usable_password():
        services.password_changed(instance)
    instance._password_loaded = password


@receiver(post_save, sender=settings.AUTH_USER_MODEL)
def end_api_access_of_new_staff(sender, instance, created=False, update_fields=None, **_kwargs) -> None:
    """An account made staff (or made staff again) loses the API tokens it held: they were asked
    for without a second factor (classifier.api.authentication lets a staff token through once the
    account has an authenticator, and one set up before its staff status was removed still counts);
    a new one needs a code."""
    is_staff = instance.__dict__.get("is_staff")
    if (update_fields is not None and "is_staff" not in update_fields) or is_staff is None:
        return
    if is_staff and instance._is_staff_loaded is False and not created:
        services.api_token_revoke(instance)
    instance._is_staff_loaded = is_staff


def password_confirmed(request, password: str) -> bool:
    """Whether `password` is the signed-in user's, asked before a step that a session left open must
    not be enough for. It counts as a sign-in attempt: guesses lock out as on the login page, and the
    right password starts the count again, as a login does (AXES_RESET_ON_SUCCESS)."""
    from axes.handlers.proxy import AxesProxyHandler
    from django.contrib.auth import HASH_SESSION_KEY, authenticate, update_session_auth_hash

    username = request.user.get_username()
    checked = authenticate(request, username=username, password=password)
    if checked is None:
        return False
    if checked.password != request.user.password:
        # Rehashed by its check (a hasher's work factor raised by a Django upgrade), on the row
        # authenticate read, not on request.user: the hash checked is the one a step compares
        # (api_token_new), and the session, tied to the hash, stays signed in (as login() keeps it).
        request.user.password = checked.password
        if request.session.get(HASH_SESSION_KEY):
            update_session_auth_hash(request, request.user)
    AxesProxyHandler.update_request(request)  # (done already by authenticate; the client's address)
    AxesProxyHandler.reset_attempts(ip_address=request.axes_ip_address, username=username)  # any handler
    return True


def wrong_password(request) -> str:
    """What a signed-in user who typed a wrong password is told; with how many tries are left when
    the lockout is two tries away or less (a typo more than the count allows would lock them out of
    these steps, and of signing in from their address, with no warning)."""
    from axes.handlers.proxy import AxesProxyHandler

    failures = AxesProxyHandler.get_failures(request, {"username": request.user.get_username()})
    left = settings.AXES_FAILURE_LIMIT - failures
    if not 0 < left <= 2:
        return _("That is not your password.")
    minutes = round(settings.AXES_COOLOFF_TIME * 60)
    duration = ngettext("%(n)s minute", "%(n)s minutes", minutes) % {"n": minutes}
    return ngettext(
        "That is not your password. After %(left)s more wrong password in a row, entering it here and "
        "signing in from this connection are paused for %(duration)s.",
        "That is not your password. After %(left)s more wrong passwords in a row, entering it here and "
        "signing in from this connection are paused for %(duration)s.",
        left) % {"left": left, "duration": duration}


class PerAddressThrottle(SimpleRateThrottle):
    """A rate per client address (the scope's THROTTLE_... setting), counted where the caller says:
    what was done, not typing errors. `refusal` says what was refused, on the website and the API."""

    refusal = ""

    def get_cache_key(self, request, view):
        return self.cache_format % {"scope": self.scope, "ident": client_ip(request)}

    def refusal_after(self, wait: int) -> str:
        return _("%(refusal)s; try again in %(minutes)s min.") % {"refusal": self.refusal,
                                                                 "minutes": math.ceil(wait / 60)}

    def wait_if_full(self, request) -> int | None:
        """Without counting this request: None if one more is within the rate, else the seconds to
        wait."""
        self.key, self.now = self.get_cache_key(request, None), self.timer()
        self.history = [at for at in self.cache.get(self.key, []) if at > self.now - self.duration]
        return math.ceil(self.wait() or 1) if len(self.history) >= self.num_requests else None

    def wait_if_over(self, request) -> int | None:
        """Count this request: None within the rate, else the seconds to wait."""
        return None if self.allow_request(request, None) else math.ceil(self.wait() or 1)

    def refuse_if_over(self, request) -> None:
        """Count this request; over the rate, the API's 429 (with Retry-After)."""
        wait = self.wait_if_over(request)
        if wait:
            raise Throttled(wait=wait, detail=_("%(refusal)s.") % {"refusal": self.refusal})


class SignUpRateThrottle(PerAddressThrottle):
    """New accounts (THROTTLE_SIGNUP), on the website and the API: each account has its own upload
    budget, and each sign-up costs a password hash."""

    scope = "signup"
    refusal = gettext_lazy("That is more new accounts from your connection than we make in an hour")


class SignUpAttemptThrottle(PerAddressThrottle):
    """Sign-up forms sent (THROTTLE_SIGNUP_ATTEMPTS), made or refused, on the website and the API:
    a sign-up says whether a user name is taken, which must not be a way to list the users."""

    scope = "signup_attempts"
    refusal = gettext_lazy("That is more sign-up attempts from your connection than we take in an hour")


class PasswordResetRateThrottle(PerAddressThrottle):
    """Reset e-mails asked for (THROTTLE_PASSWORD_RESET), on the website and the API: the form must
    not be a way to flood someone's inbox."""

    scope = "password_reset"
    refusal = gettext_lazy("That is more reset e-mails from your connection than we send in an hour")


class SignInFailureThrottle(PerAddressThrottle):
    """Failed sign-ins per client address (THROTTLE_SIGN_IN_FAILURES), whatever user names they
    try, counted on the website's, the admin's and the API's: django-axes locks out one user name at
    one address after a few; this stops one address trying a password on every account. Checked
    before a sign-in by SignInFailuresMiddleware; successful sign-ins do not count."""

    scope = "sign_in_failures"
    refusal = gettext_lazy("That is more failed sign-ins from your connection than we take in an hour")


@receiver(user_login_failed)
def count_a_failed_sign_in(sender, credentials, request=None, **_kwargs) -> None:
    """On the sign-in pages only: a signed-in user's password typed wrong before deleting their
    account (`password_confirmed`) is no guess at other accounts."""
    from classifier.middleware import sign_in_paths

    if request is not None and request.path in sign_in_paths():
        SignInFailureThrottle().wait_if_over(request)


class UploadRateThrottle(UserRateThrottle):
    """Photos uploaded a minute (THROTTLE_UPLOADS), through the API and the website's form in one
    budget (the cache key of the scope "uploads"). It counts photos, not requests: a request of 20
    files costs 20, and is refused when they do not all fit (one in a minute with nothing before it
    goes whatever it holds, or a rate below 20 would refuse it for ever). Each photo is a
    classification job: the queue is shared with every other user."""

    scope = "uploads"

    def allow_request(self, request, view) -> bool:  # SimpleRateThrottle's, counting each file
        self.key = self.get_cache_key(request, view)
        if self.rate is None or self.key is None:
            return True
        self.history, self.now = self.cache.get(self.key, []), self.timer()
        while self.history and self.history[-1] <= self.now - self.duration:
            self.history.pop()
        photos = max(1, sum(len(files) for _, files in request.FILES.lists()))
        if self.history and len(self.history) + photos > self.num_requests:
            return self.throttle_failure()
        self.history[:0] = [self.now] * photos
        self.cache.set(self.key, self.history, self.duration)
        return True


def client_ip(request) -> str:
    """The client's address, as the API's throttles see it (REST_FRAMEWORK["NUM_PROXIES"]): django-axes
    calls this too (AXES_CLIENT_IP_CALLABLE), so a lockout is per user name and real client, never
    per proxy, nor per address a client wrote into X-Forwarded-For. An IPv6 address stands for its
    /64, which one client gets whole: every address in it is the same client to the limits (named by
    its first address, an address still, as django-axes stores it in an address field)."""
    ident = BaseThrottle().get_ident(request)
    try:
        address = ipaddress.ip_address(ident)
    except ValueError:
        return ident
    if address.version == 4:
        return ident
    return str(ipaddress.ip_network(f"{address}/64", strict=False).network_address)


# The session's copy of its account's language (selectors.account_language), read by
# middleware.AccountLanguageMiddleware at each request: put there at sign-in, and by the language
# switch while signed in. Another session of the account takes a new choice at its next sign-in.
ACCOUNT_LANGUAGE = "account_language"


@receiver(user_logged_in)
def take_account_language(sender, request, user, **_kwargs) -> None:
    """A session signed in shows the website in the language its account chose, if it chose one;
    from this request on (what it says after signing in, too)."""
    if request is None or not hasattr(request, "session"):
        return
    language = selectors.account_language(user)
    if language is None:
        request.session.pop(ACCOUNT_LANGUAGE, None)
        return
    request.session[ACCOUNT_LANGUAGE] = language
    translation.activate(language)
    request.LANGUAGE_CODE = language


@receiver(user_logged_out)
def say_signed_out(sender, request, user, **_kwargs) -> None:
    """Logging out lands on the home page: it says so (the messages outlive the ended session)."""
    if request is not None and user is not None:
        # In the language of the page that shows it: the device's, no longer the account's.
        with translation.override(translation.get_language_from_request(request)):
            messages.info(request, _("You are signed out."), fail_silently=True)  # (a test client has none)


def site_of(request) -> str:
    """The site's address as `request` reached it (scheme and host: ALLOWED_HOSTS checked the host),
    for links that the worker e-mails later."""
    return f"{request.scheme}://{request.get_host()}"
