"""One error shape for every API error: {"error": {"status", "code", "message", "fields"}}."""

from django.core.exceptions import RequestDataTooBig, TooManyFilesSent
from django.core.exceptions import ValidationError as DjangoValidationError
from django.utils.translation import gettext, gettext_lazy
from rest_framework import exceptions, status
from rest_framework.serializers import as_serializer_error
from rest_framework.views import exception_handler as drf_exception_handler

from classifier.forms import too_many_files_message


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


def exception_handler(exc, context):
    if isinstance(exc, DjangoValidationError):  # raised by services
        exc = exceptions.ValidationError(detail=as_serializer_error(exc))
    elif isinstance(exc, TooManyFilesSent):  # Django's count, met while parsing: ours is one less
        exc = exceptions.ValidationError(detail={"files": [too_many_files_message()]})
    elif isinstance(exc, RequestDataTooBig):  # Django's own limit on the non-file fields
        exc = PayloadTooLarge()
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
