"""A database that does not answer is a 503 the user can read, not a 500; the next request retries."""

from __future__ import annotations

import logging

from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.loader import render_to_string

log = logging.getLogger(__name__)
RETRY_AFTER_S = 5


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
        if request.path.startswith("/api/"):
            response = JsonResponse({"error": {"status": 503, "code": "unavailable", "message": message,
                                               "fields": {}}}, status=503)
        else:
            response = HttpResponse(render_to_string("503.html", {"message": message}), status=503)
        response["Retry-After"] = str(RETRY_AFTER_S)
        return response
