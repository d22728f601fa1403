"""Token authentication, with STAFF_TWO_FACTOR: a staff account's token works only once the account
has set up its second factor. Its token is then one made after it (setting it up revokes the one
before), with a code (the token endpoint) or in a session that signed in with one (the account page)."""

from rest_framework import authentication, exceptions

from classifier import selectors

NO_SECOND_FACTOR = ("This staff account has not set up two-factor sign-in: sign in on the website to set "
                    "it up, then ask for a new token.")


class TokenAuthentication(authentication.TokenAuthentication):
    def authenticate_credentials(self, key):
        user, token = super().authenticate_credentials(key)
        if selectors.second_factor_required(user) and not selectors.has_second_factor(user):
            raise exceptions.AuthenticationFailed(NO_SECOND_FACTOR)
        return user, token
