"""The one place where domain errors become HTTP answers, all in the same shape:

{"error": {"status": 400, "code": "invalid", "message": "...", "fields": {"start": ["..."]}}}
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ObjectDoesNotExist, SuspiciousOperation
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from accounts.errors import TenantAccessDenied
from alerts.errors import AlertsError
from billing.errors import BillingError
from devices.errors import ClaimRateLimited
from firmware.errors import FirmwareError
from readings.errors import IngestUnavailable, ReadingsError, ReadingsQueryError

# Each domain's errors, most specific first: (exception class, HTTP status, code).
DOMAIN_ERRORS: list[tuple[type[Exception], int, str]] = [
    (ClaimRateLimited, 429, "rate_limited"),
    (ReadingsQueryError, 400, "invalid_query"),
    (IngestUnavailable, 503, "unavailable"),
    (ReadingsError, 400, "readings_error"),
    (FirmwareError, 400, "firmware_error"),
    (BillingError, 400, "billing_error"),
    (AlertsError, 400, "alerts_error"),
]


def _flatten(detail: Any) -> Any:
    if isinstance(detail, dict):
        return {str(key): _flatten(value) for key, value in detail.items()}
    if isinstance(detail, list):
        return [_flatten(item) if isinstance(item, dict | list) else str(item) for item in detail]
    return [str(detail)]


def _convert(exc: Exception) -> Exception:
    if isinstance(exc, DjangoValidationError):
        if hasattr(exc, "error_dict"):
            return exceptions.ValidationError(exc.message_dict)
        return exceptions.ValidationError({"non_field_errors": exc.messages})
    if isinstance(exc, SuspiciousOperation):
        # e.g. a query string with broken %-escapes, which the token check refuses to parse
        return exceptions.ParseError(str(exc) or "The request is malformed.")
    if isinstance(exc, TenantAccessDenied | DjangoPermissionDenied):
        return exceptions.PermissionDenied(str(exc) or None)
    # Out of reach and missing look the same, so a foreign id never confirms that it exists.
    if isinstance(exc, ObjectDoesNotExist | Http404):
        return exceptions.NotFound()
    for error_class, http_status, code in DOMAIN_ERRORS:
        if isinstance(exc, error_class):
            converted = exceptions.APIException(str(exc), code=code)
            converted.status_code = http_status
            return converted
    return exc


def error_body(*, http_status: int, code: str, message: str, fields: dict[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"status": http_status, "code": code, "message": message}
    if fields:
        body["fields"] = fields
    return {"error": body}


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    exc = _convert(exc)
    response = drf_exception_handler(exc, context)
    if response is None:
        return None  # a bug: let Django log it and answer 500
    assert isinstance(exc, exceptions.APIException)
    if isinstance(exc, exceptions.ValidationError):
        detail = _flatten(exc.detail)
        if isinstance(detail, dict):
            fields = {k: v for k, v in detail.items() if k != "non_field_errors"}
            general = detail.get("non_field_errors", [])
            message = " ".join(general) if general else "Some parameters are invalid: " + ", ".join(fields) + "."
        else:
            fields, message = {}, " ".join(detail)
        response.data = error_body(
            http_status=status.HTTP_400_BAD_REQUEST, code="invalid", message=message, fields=fields
        )
        return response
    codes = exc.get_codes()
    code = codes if isinstance(codes, str) else "error"
    detail = exc.detail
    message = str(detail) if not isinstance(detail, dict | list) else str(_flatten(detail))
    response.data = error_body(http_status=response.status_code, code=code, message=message)
    return response
