"""One error shape for the whole API, and the status of every domain error.

``{"error": {"code": "<stable code>", "message": "<translated text>"}}`` plus,
with 429, ``"retry_after"`` (seconds) in the body and a ``Retry-After`` header;
with validation errors, ``"fields"`` (field name → list of messages).
"""

from __future__ import annotations

import logging
from typing import Any

from rest_framework import exceptions as drf
from rest_framework.response import Response

from django.core.exceptions import (
    PermissionDenied,
    RequestDataTooBig,
    TooManyFieldsSent,
    TooManyFilesSent,
)
from django.http import Http404
from django.utils.translation import gettext as _

from .. import exceptions as domain

logger = logging.getLogger("django_sms2fa.api")

#: Domain error code → HTTP status. Anything not listed answers 400.
STATUS_BY_CODE: dict[str, int] = {
    domain.InvalidPhone.code: 400,
    domain.InvalidCode.code: 400,
    domain.IncorrectCode.code: 400,
    domain.InvalidCredentials.code: 400,
    domain.InvalidPhoneToken.code: 400,
    domain.PhoneAlreadyEnrolled.code: 409,
    domain.SecondFactorRequired.code: 403,
    domain.StepUpRequired.code: 403,
    domain.MethodUnavailable.code: 400,
    domain.MethodAlreadyEnrolled.code: 409,
    domain.PasswordlessDisabled.code: 404,
    domain.ChallengeNotFound.code: 404,
    domain.DeviceNotFound.code: 404,
    domain.ChallengeExpired.code: 410,
    domain.ChallengeAlreadyUsed.code: 410,
    domain.ChallengeCancelled.code: 410,
    domain.ChallengeUndeliverable.code: 410,
    domain.ChallengeQueued.code: 409,
    domain.LoginExpired.code: 410,
    domain.TooManyAttempts.code: 429,
    domain.RateLimited.code: 429,
    domain.VerificationLocked.code: 429,
    domain.DestinationSuspended.code: 429,
    domain.NumberNotAllowed.code: 400,
    domain.DeliveryFailed.code: 503,
    domain.ChannelUnavailable.code: 400,
    domain.ProviderError.code: 503,
    domain.ProviderRejected.code: 503,
    domain.ProviderUnavailable.code: 503,
    domain.LimitsUnavailable.code: 503,
}


def error_response(
    code: str, message: Any, http_status: int, *, retry_after: int | None = None, **extra: Any
) -> Response:
    body: dict[str, Any] = {"code": code, "message": str(message), **extra}
    headers = {}
    if http_status == 429:
        retry_after = max(int(retry_after or 0), 0)
        body["retry_after"] = retry_after
        headers["Retry-After"] = str(retry_after)
    return Response({"error": body}, status=http_status, headers=headers)


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF exception handler for the sms2fa views (set on the views, so a
    site's own ``EXCEPTION_HANDLER`` is left alone)."""
    if isinstance(exc, domain.Sms2faError):
        http_status = STATUS_BY_CODE.get(exc.code, 400)
        extra: dict[str, Any] = {}
        if isinstance(exc, domain.IncorrectCode) and exc.attempts_left is not None:
            extra["attempts_left"] = exc.attempts_left
        retry_after = None
        if isinstance(exc, (domain.RateLimited, domain.ProviderLimited)):
            retry_after = exc.retry_after
        elif isinstance(exc, domain.ProviderUnavailable) and exc.retry_after:
            retry_after = exc.retry_after
        if isinstance(exc, domain.ProviderError):
            # The provider's text is for the audit, not for clients.
            return error_response(
                "delivery_failed", domain.DeliveryFailed.default_message, http_status
            )
        return error_response(exc.code, exc.message, http_status, retry_after=retry_after, **extra)
    if isinstance(exc, (RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent)):
        return error_response("request_too_large", _("The request is too large."), 413)
    if isinstance(exc, Http404):
        exc = drf.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = drf.PermissionDenied()
    if isinstance(exc, drf.ValidationError):
        return error_response(
            "invalid", _("The request is not valid."), 400, fields=_flatten(exc.detail)
        )
    if isinstance(exc, drf.Throttled):
        return error_response("rate_limited", exc.detail, 429, retry_after=int(exc.wait or 1))
    if isinstance(exc, drf.APIException):
        code = exc.get_codes() if isinstance(exc.get_codes(), str) else exc.default_code
        return error_response(str(code), exc.detail, exc.status_code)
    return None  # a bug: let Django report it


def _flatten(detail: Any) -> Any:
    if isinstance(detail, dict):
        return {_text(key): _flatten(value) for key, value in detail.items()}
    if isinstance(detail, list):
        return [
            _flatten(item) if isinstance(item, (dict, list)) else _text(item) for item in detail
        ]
    return [_text(detail)]


def _text(value: Any) -> str:
    # Lone surrogates from a client's JSON cannot be encoded as UTF-8; escape
    # them rather than fail while answering.
    return str(value).encode("utf-8", "backslashreplace").decode("utf-8")
