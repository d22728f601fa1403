"""Token authentication: django-rest-knox's (the database keeps the tokens' hashes). A token stops
working once API_TOKEN_IDLE_DAYS go by without a request that sends it. With STAFF_TWO_FACTOR, a
staff account's token works only once the account has set up its second factor, and for
STAFF_TOKEN_DAYS. Its token is then one made after it (setting it up revokes the ones before), with
a code (the token endpoint) or in a session that signed in with one (the account page)."""

from django.conf import settings
from django.utils.translation import gettext, gettext_lazy
from drf_spectacular.authentication import SessionScheme as SpectacularSessionScheme
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.plumbing import build_bearer_security_scheme_object
from knox import auth
from rest_framework import authentication, exceptions

from classifier import selectors, services

NO_SECOND_FACTOR = gettext_lazy("This staff account has not set up two-factor sign-in: sign in on the "
                                "website to set it up, then ask for a new token.")


class TokenAuthentication(auth.TokenAuthentication):
    def authenticate_credentials(self, key):
        try:
            key.decode("utf-8")
        except UnicodeDecodeError:  # (knox's decodes it unguarded: a 500, where DRF's said 401)
            raise exceptions.AuthenticationFailed() from None
        if b"\x00" in key:  # (PostgreSQL refuses it in a query: a 500; gunicorn refuses it before us)
            raise exceptions.AuthenticationFailed()
        user, token = super().authenticate_credentials(key)
        if selectors.second_factor_required(user) and not selectors.has_second_factor(user):
            raise exceptions.AuthenticationFailed(NO_SECOND_FACTOR)
        if selectors.token_unused_too_long(token):
            raise exceptions.AuthenticationFailed(
                gettext("This token was not used for %(days)s days, so it no longer works: ask for a new "
                        "one (POST /api/auth/token/, or the account page).") % {
                    "days": settings.API_TOKEN_IDLE_DAYS})
        if selectors.token_expired(token, user):
            raise exceptions.AuthenticationFailed(
                gettext("This staff token is more than %(days)s days old: ask for a new one (POST "
                        "/api/auth/token/ with a code, or the account page).") % {
                    "days": settings.STAFF_TOKEN_DAYS})
        services.api_token_used(token)
        return user, token

    def _cleanup_token(self, auth_token) -> bool:
        # knox's deletes the account's tokens past their `expiry`, reading them all at each request;
        # ours have none (TOKEN_TTL None: a staff token's life is counted above, from when it was made).
        return False


class SessionAuthentication(authentication.SessionAuthentication):
    """DRF's (the website's session), whose CSRF refusal has its own code, `csrf_failed`: a client
    (the upload page's script) tells it from the other 403s without reading the words."""

    def enforce_csrf(self, request):
        try:
            super().enforce_csrf(request)
        except exceptions.PermissionDenied as refused:
            raise exceptions.PermissionDenied(str(refused.detail), code="csrf_failed") from None


class TokenScheme(OpenApiAuthenticationExtension):
    """The scheme in the OpenAPI schema (drf-spectacular's own for knox matches knox's class only)."""

    target_class = TokenAuthentication
    name = "tokenAuth"

    def get_security_definition(self, auto_schema):
        return build_bearer_security_scheme_object(header_name="Authorization", token_prefix="Token")


class SessionScheme(SpectacularSessionScheme):
    """drf-spectacular's for DRF's session authentication, for ours (it matches DRF's class only)."""

    target_class = SessionAuthentication
