"""The delivery webhook: HTTP in → :func:`delivery.receive_webhook` → HTTP out.

Routed by ``delivery/urls.py``.

``POST <prefix>/<alias>/``. Providers that sign their callbacks (Twilio's
``X-Twilio-Signature``, Vonage's signed JWT, Amazon SNS's certificate-based
signature) are checked by their own method (``BaseProvider.verify_webhook``)
and need no shared secret. For the others, the alias's secret from
``SMS2FA["WEBHOOK_SECRETS"]``. Neither iP1 (``deliveryReportUrl``) nor GoSMS
(a URL entered in its panel) can add a header or sign a request: all they
call is a URL. So the secret travels in the URL's query, ``?secret=…``. Where
a proxy or another caller can do better, the secret is also taken from an
``X-Sms2fa-Secret`` header or as the password of HTTP Basic auth; the first
of header, Basic auth and query that is present is the one compared.

Answers (JSON, ``{"error": {"code", "message"}}`` for errors):

* 404 ``not_found``: no such alias, no secret for it (unsigned providers), or
  a provider that sends no reports (the same answer for all three);
* 403 ``forbidden``: missing or wrong secret, or a signature that is missing,
  forged, for another URL or body, or stale; nothing more is said;
* 413 ``request_too_large``: a body over 64 KiB;
* 400 ``malformed_report`` / ``too_many_reports``: not a report of this
  provider;
* 200 ``{"received", "updated", "unknown", "deferred"}`` otherwise, also for
  unknown message ids and repeated reports (which change nothing). Providers
  retry anything but a 200 (iP1: every 10 minutes, 10 times), so a report we
  cannot use must still get one.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
from urllib.parse import urlencode

from django.http import HttpRequest, JsonResponse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.debug import sensitive_variables
from django.views.decorators.http import require_POST

from .. import delivery
from ..conf import app_settings
from ..providers.base import WebhookCall

# The logger keeps the name it had before the module moved: logging configs name it.
logger = logging.getLogger("django_sms2fa.webhooks")

#: Larger bodies are refused unread (413). A report is a few hundred bytes.
MAX_BODY_BYTES = 64 * 1024
#: The query parameter that carries the secret.
SECRET_PARAM = "secret"
#: The header that may carry it instead (``request.META`` name).
SECRET_HEADER = "HTTP_X_SMS2FA_SECRET"


@csrf_exempt  # called by a provider's servers: no browser, no CSRF token
@require_POST
@sensitive_variables("given", "secret")
def delivery_report(request: HttpRequest, alias: str) -> JsonResponse:
    provider = delivery.report_provider(alias)
    if provider is None:
        return _error(404, "not_found", _("Not found."))
    signed = provider.signs_webhooks()
    if not signed:
        given = _take_secret(request)
        secret = app_settings.WEBHOOK_SECRETS.get(alias)
        if not secret:
            return _error(404, "not_found", _("Not found."))
        if not _secret_matches(given, secret):
            # Neither the given value nor the reason (missing or wrong) is logged.
            logger.warning("sms2fa: delivery webhook for %s refused: bad or missing secret", alias)
            return _error(403, "forbidden", _("Forbidden."))
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0
    # Refused before reading a byte of it; without a Content-Length (ASGI,
    # chunked) the read itself stops one byte past the limit.
    body = b"" if declared > MAX_BODY_BYTES else request.read(MAX_BODY_BYTES + 1)
    if declared > MAX_BODY_BYTES or len(body) > MAX_BODY_BYTES:
        return _error(413, "request_too_large", _("The request is too large."))
    if signed:
        call = WebhookCall(
            url=request.build_absolute_uri(),
            method=request.method or "POST",
            headers={name.lower(): value for name, value in request.headers.items()},
            body=body,
            content_type=request.content_type or "",
            received_at=timezone.now(),
        )
        try:
            provider.verify_webhook(call)
        except delivery.InvalidDeliveryReport as err:
            # The reason (bad_signature, stale) goes to the log, not the caller.
            logger.warning("sms2fa: delivery webhook for %s refused (%s)", alias, err.code)
            return _error(403, "forbidden", _("Forbidden."))
    try:
        outcome = delivery.receive_webhook(alias, body, request.content_type or "")
    except delivery.InvalidDeliveryReport as err:
        logger.info("sms2fa: delivery webhook for %s: unreadable body (%s)", alias, err.code)
        return _error(400, err.code, _("The body is not a delivery report."))
    return JsonResponse(
        {
            "received": outcome.received,
            "updated": outcome.updated,
            "unknown": outcome.unknown,
            "deferred": outcome.deferred,
        }
    )


@sensitive_variables("given", "header", "auth", "decoded")
def _take_secret(request: HttpRequest) -> str | None:
    """The presented secret, taken out of the request so nothing reports it later.

    Django's error reports (500 e-mails, debug pages) print ``request.GET``
    and the query string; both are rewritten without ``secret``. Headers are
    safe there: Django masks ``META`` keys that contain SECRET or AUTH.
    """
    given: str | None = None
    header = request.META.get(SECRET_HEADER)
    auth = request.META.get("HTTP_AUTHORIZATION", "")
    if header is not None:
        given = header
    elif auth[:6].lower() == "basic ":
        try:
            decoded = base64.b64decode(auth[6:].strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            decoded = ""
        given = decoded.partition(":")[2]  # the password; the user name is ignored
    if SECRET_PARAM in request.GET:
        values = request.GET.getlist(SECRET_PARAM)
        if given is None:
            # Given twice, it is ambiguous: compare something that cannot match.
            given = values[0] if len(values) == 1 else ""
        query = request.GET.copy()
        del query[SECRET_PARAM]
        request.GET = query
        request.META["QUERY_STRING"] = urlencode(list(query.lists()), doseq=True)
    return given


@sensitive_variables("given", "secret")
def _secret_matches(given: str | None, secret: str) -> bool:
    """Constant-time comparison of fixed-length digests (hides the length too)."""
    if given is None:
        given = ""
    presented = hashlib.sha256(given.encode("utf-8", "backslashreplace")).digest()
    expected = hashlib.sha256(secret.encode("utf-8", "backslashreplace")).digest()
    return hmac.compare_digest(presented, expected) and bool(given)


def _error(status: int, code: str, message: str) -> JsonResponse:
    return JsonResponse({"error": {"code": code, "message": str(message)}}, status=status)
