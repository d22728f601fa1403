"""Token authentication, with STAFF_TWO_FACTOR: a staff account's token works only once the account
has set up its second factor, and for STAFF_TOKEN_DAYS. Its token is then one made after it (setting
it up revokes the one before), with a code (the token endpoint) or in a session that signed in with
one (the account page)."""

from django.conf import settings
from django.utils.translation import gettext, gettext_lazy
from rest_framework import authentication, exceptions

from classifier import selectors

NO_SECOND_FACTOR = gettext_lazy("This staff account has not set up two-factor sign-in: sign in on the "
                                "website to set it up, then ask for a new token.")


class TokenAuthentication(authentication.TokenAuthentication):
    def authenticate_credentials(self, key):
        user, token = super().authenticate_credentials(key)
        if selectors.second_factor_required(user) and not selectors.has_second_factor(user):
            raise exceptions.AuthenticationFailed(NO_SECOND_FACTOR)
        if selectors.token_expired(token, user):
            raise exceptions.AuthenticationFailed(
                gettext("This staff token is more than %(days)s days old: ask for a new one (POST "
                        "/api/auth/token/ with a code, or the account page).") % {
                    "days": settings.STAFF_TOKEN_DAYS})
        return user, token
