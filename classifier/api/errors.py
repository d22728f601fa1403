"""One error shape for every API error: {"error": {"status", "code", "message", "fields"}}."""

import re

from django.core.exceptions import RequestDataTooBig, TooManyFilesSent
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from django.utils.text import capfirst
from django.utils.translation import gettext, gettext_lazy, gettext_noop
from rest_framework import exceptions, status
from rest_framework.serializers import as_serializer_error
from rest_framework.views import exception_handler as drf_exception_handler

from classifier.forms import too_many_files_message

# The words of DRF's and django-rest-knox's own errors that the API can answer with and that their
# Indonesian catalogues lack (DRF's has 45 of its messages; knox has none), translated in locale/
# (which comes before theirs), and one of DRF's mended ("akfif"). Listed for makemessages to find them.
API_LIBRARY_WORDING = (
    gettext_noop("A valid number is required."),
    gettext_noop("Datetime value out of range."),
    gettext_noop("Ensure this field has at least {min_length} elements."),
    gettext_noop("Ensure this field has no more than {max_length} elements."),
    gettext_noop('Expected a list of items but got type "{input_type}".'),
    # Two messages, not a plural: DRF formats each (gettext) before it calls ngettext on the results
    # (exceptions.Throttled), so a plural entry would only ever give its singular, for "1 second".
    gettext_noop("Expected available in {wait} second."),
    gettext_noop("Expected available in {wait} seconds."),
    gettext_noop("Integer value too large to convert to float"),
    gettext_noop("Invalid data. Expected a dictionary, but got {datatype}."),
    gettext_noop('Invalid datetime for the timezone "{timezone}".'),
    gettext_noop("Invalid input."),
    gettext_noop("Invalid page."),
    gettext_noop("Invalid token header. No credentials provided."),
    gettext_noop("Invalid token header. Token string should not contain spaces."),
    gettext_noop("Invalid token."),
    gettext_noop("Invalid value."),
    gettext_noop("Malformed request."),
    gettext_noop('Method "{method}" not allowed.'),
    gettext_noop("Must be a valid boolean."),
    gettext_noop("No filename could be determined."),
    gettext_noop("Not a valid string."),
    gettext_noop("String value too large."),
    gettext_noop("Surrogate characters are not allowed: U+{code_point:X}."),
    gettext_noop("The submitted data was not a file. Check the encoding type on the form."),
    gettext_noop("This dictionary may not be empty."),
    gettext_noop("This list may not be empty."),
    gettext_noop("This value does not match the required pattern."),
    gettext_noop("User inactive or deleted."),
)


class PayloadTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = gettext_lazy("The request is too large.")
    default_code = "too_large"


class Conflict(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = gettext_lazy("The request conflicts with the current state.")
    default_code = "conflict"


def error_body(status: int, code: str, message: str, fields: dict | None = None) -> dict:
    """The one error shape of the API, wherever the answer is made (here, or a middleware)."""
    return {"error": {"status": status, "code": code, "message": message, "fields": fields or {}}}


DJANGO_NOT_FOUND = re.compile(r"No \w+ matches the given query\.")  # get_object_or_404's


def not_found(view) -> exceptions.NotFound:
    """A 404 says what was not found in the request's language ("Photo not found."), not Django's
    "No Photo matches the given query." (English, naming the class)."""
    queryset = view.get_queryset() if hasattr(view, "get_queryset") else None
    if queryset is None:
        return exceptions.NotFound()  # ("Not found.")
    return exceptions.NotFound(gettext("%(thing)s not found.") % {
        "thing": capfirst(queryset.model._meta.verbose_name)})


def exception_handler(exc, context):
    if isinstance(exc, DjangoValidationError):  # raised by services
        exc = exceptions.ValidationError(detail=as_serializer_error(exc))
    elif isinstance(exc, TooManyFilesSent):  # Django's count, met while parsing: ours is one less
        exc = exceptions.ValidationError(detail={"files": [too_many_files_message()]})
    elif isinstance(exc, RequestDataTooBig):  # Django's own limit on the non-file fields
        exc = PayloadTooLarge()
    elif isinstance(exc, Http404) and (not exc.args or DJANGO_NOT_FOUND.fullmatch(str(exc.args[0]))):
        exc = not_found(context.get("view"))  # (one with words of ours keeps them)
    response = drf_exception_handler(exc, context)
    if response is None:
        return None  # a bug: Django's 500 handling logs it
    fields = {}
    if isinstance(exc, exceptions.ValidationError):
        fields = response.data if isinstance(response.data, dict) else {"non_field_errors": response.data}
        # a refusal of the request as a whole (a service's): its reason is the message
        whole = fields.get("non_field_errors") if list(fields) == ["non_field_errors"] else None
        message = " ".join(map(str, whole)) if whole else gettext("The request has invalid fields.")
        code = "invalid"
    else:
        detail = response.data.get("detail", "") if isinstance(response.data, dict) else response.data
        message = str(detail)
        code = getattr(detail, "code", None) or getattr(exc, "default_code", "error")
    response.data = error_body(response.status_code, code, message, fields)
    return response
