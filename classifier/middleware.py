"""Answers given before the view: a database that does not answer (a 503 the user can read, not a
500), and an upload larger than we take (a 413 before its body is read)."""

from __future__ import annotations

import logging

from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.loader import render_to_string
from django.urls import reverse

from classifier.forms import too_large_message, upload_too_large

log = logging.getLogger(__name__)
RETRY_AFTER_S = 5


def refusal(request: HttpRequest, status: int, code: str, message: str, template: str) -> HttpResponse:
    """The API's error shape under /api/, else `template` showing `message` (rendered without the
    request's context: neither the user nor the database may be at hand here)."""
    if request.path.startswith("/api/"):
        return JsonResponse({"error": {"status": status, "code": code, "message": message, "fields": {}}},
                            status=status)
    return HttpResponse(render_to_string(template, {"message": message}), status=status)


class UploadTooLargeMiddleware:
    """An upload whose declared length is more than we take at once is refused before anything
    reads its body: placed before the CSRF middleware, which would parse all of it for its token."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if (request.method == "POST" and request.path in (reverse("upload"), reverse("api:photo-list"))
                and upload_too_large(request)):
            return refusal(request, 413, "too_large", too_large_message(), "413.html")
        return self.get_response(request)


class DatabaseUnavailableMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not isinstance(exception, OperationalError | InterfaceError):
            return None
        # Django closes the broken connection when the request ends; the next one reconnects.
        log.error("database unavailable for %s %s: %s", request.method, request.path, exception)
        message = "The service is briefly unavailable (its database is not answering). Try again shortly."
        response = refusal(request, 503, "unavailable", message, "503.html")
        response["Retry-After"] = str(RETRY_AFTER_S)
        return response
