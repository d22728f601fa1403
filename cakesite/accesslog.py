"""Logs without the secrets two of the site's links carry in their path: a password-reset link's
token (anyone who reads it in the log before it is used, within PASSWORD_RESET_TIMEOUT, can choose
the account's password) and an e-mail confirmation link's token. Gunicorn's access log (every field
of a line: the request line, the path, the Referer a page's stylesheet is fetched with, the
environ) and the site's own. The URLs are those of cakesite/urls.py (tests/test_deployment.py)."""

import logging
import re

from gunicorn.glogging import Logger

SECRET_IN_PATH = re.compile(r"(/accounts/(?:reset/[^/\s?]+|email)/)(?!set-password/|resend/)[^/\s?]+")


def redacted(text: str) -> str:
    return SECRET_IN_PATH.sub(r"\1[token]", text)


class AccessLogger(Logger):
    def atoms(self, resp, req, environ, request_time) -> dict:
        atoms = super().atoms(resp, req, environ, request_time)
        return {key: redacted(value) if isinstance(value, str) else value for key, value in atoms.items()}


class RedactingFormatter(logging.Formatter):
    """The same for the site's own log (settings.LOGGING's handler): a reset link opened while the
    database is down, or one that fails with a 500, is logged with its path (classifier.middleware,
    django.request), and its token still works. (The line written, not the record: other handlers
    see it as it was.) Except what a worker prints: without EMAIL_HOST (development) that is the
    e-mails themselves, whose links are there to be opened."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        return line if record.name == PRINTED else redacted(line)


PRINTED = "celery.redirected"  # (the logger of a worker's standard output, CELERY_WORKER_REDIRECT_STDOUTS)
