"""Vonage Verify v2 (api.nexmo.com/v2/verify): Vonage makes, sends and checks the code.

Mode (d) only, like iP1: Vonage makes the code, sends it along a *workflow* of
channels (an SMS, then a voice call if the SMS code was not used in time),
keeps it and checks it. Challenges armed for this provider have
``checked_by == "provider"`` and no ``code_hash``; the app's own expiry,
attempt limit and single use still apply before Vonage is asked.

What Vonage documents, and where (docs/providers/vonage.md repeats this):

* Requests (Vonage's Python SDK ``vonage_verify``, github.com/Vonage/vonage-python-sdk,
  ``verify/src/vonage_verify/{verify,requests}.py``; the Java SDK's
  ``Verify2Client``): ``POST /v2/verify`` with ``{"brand" (1-16 chars),
  "workflow": [{"channel": "sms"|"voice"|"whatsapp", "to": <E.164 without +>,
  "from"?}], "locale"?, "channel_timeout"? (15-900 s), "client_ref"? (1-16
  chars), "code_length"? (4-10)}`` answers ``202 {"request_id"}``;
  ``POST /v2/verify/{request_id}`` with ``{"code"}`` answers ``200
  {"request_id", "status": "completed"}``; ``DELETE /v2/verify/{request_id}``
  answers 204. A WhatsApp step needs a ``from`` (a WhatsApp Business number).
* Auth (https://developer.vonage.com/en/getting-started/concepts/authentication):
  Verify v2 takes a JWT (``Authorization: Bearer``, RS256 with the
  application's private key, claims ``application_id``, ``iat``, ``jti``,
  ``exp`` as the SDK's ``vonage_jwt`` mints them) or the API key and secret as
  HTTP Basic; "Basic authentication does not support webhooks".
* Errors are RFC 7807 problem JSON ``{"type", "title", "detail", "instance"}``
  (https://developer.vonage.com/en/api-errors and
  https://developer.vonage.com/en/api-errors/verify-v2): 400 ``invalid-code``
  ("The code you provided does not match the expected value."), 409
  ``concurrent`` on a new request ("Concurrent verifications to the same number
  are not allowed"; the body also names the in-flight ``request_id``), 410
  ``expired`` on a check ("An incorrect code has been provided too many times.
  Workflow terminated."), 404 on a check for an unknown, finished or expired
  request, 409 ``no-code`` on a check of a step without a code, 401/403
  credentials, 402 low balance, 422 invalid parameters, 429 rate limit, 5xx.
* Callbacks (the Java SDK's ``VerificationCallback``, the Node SDK's
  ``EventCallback``/``RequestStatusCallback``;
  https://developer.vonage.com/en/verify/concepts/webhooks): ``{"request_id",
  "type": "event", "channel", "status": "completed"|"failed"|"user_rejected"|
  "rejected", "triggered_at", "finalized_at", "client_ref"?}`` per event and
  ``{"request_id", "type": "summary", "status": "completed"|"failed"|"expired",
  "submitted_at", "workflow": [{"channel", "initiated_at", "status"}]}`` for a
  request. They are signed: ``Authorization: Bearer <JWT>``, HS256 with the
  account's signature secret, with ``iat`` and ``payload_hash`` (SHA-256 of the
  payload) among the claims.

What is inferred, not documented (and handled conservatively):

* ``completed`` means the user proved the code, so it reached them: the
  message is ``delivered``. A ``summary`` that ``failed`` means no step got
  the code through: ``failed``. An ``event`` that ``failed`` is one step of the
  workflow; the next step may still succeed, and a final status never changes,
  so it changes nothing (nor does ``expired``: the code may have arrived and
  gone unused).
* ``payload_hash`` is compared with the SHA-256 of the raw body, and else of
  the body's JSON re-serialised compactly (Vonage's support pages describe the
  hash over a compact JSON string).
* The 409 ``concurrent`` refusal lasts until the in-flight request ends: at
  most ``channel_timeout`` seconds per workflow step, our ``retry_after`` when
  Vonage sends no ``Retry-After``.
* The mapping of ``OutgoingSms.language`` to Vonage's locales.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import re
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

from ..exceptions import ProviderRejected, ProviderUnavailable, Sms2faConfigurationError
from ..types import (
    CALL,
    DELIVERED,
    FAILED,
    SENT,
    SMS,
    UNKNOWN,
    WHATSAPP,
    Capabilities,
    DeliveryReport,
    OutgoingSms,
    SendResult,
)
from . import reports
from .base import InvalidDeliveryReport, WebhookCall
from .http import HttpAnswer, HttpProvider, summarize_body
from .redaction import blank_known_codes

try:  # the optional extra "vonage": PyJWT with cryptography
    import jwt
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
    from cryptography.hazmat.primitives.serialization import load_pem_private_key
except ImportError:  # pragma: no cover - exercised only without the extra
    jwt = None  # type: ignore[assignment]

__all__ = ["VonageVerifyProvider", "status_of_callback"]

_T = TypeVar("_T")

logger = logging.getLogger("django_sms2fa.providers")

VERIFY_PATH = "/v2/verify"

#: Vonage's step names; ``OutgoingSms.channel`` "call" is the "voice" step.
VOICE = "voice"
STEP_CHANNELS = (SMS, VOICE, WHATSAPP)
DEFAULT_WORKFLOW = (SMS, VOICE)

# The SDK's field limits (vonage_verify.requests.VerifyRequest).
MAX_BRAND = 16
MIN_CODE_LENGTH, MAX_CODE_LENGTH = 4, 10
MIN_CHANNEL_TIMEOUT, MAX_CHANNEL_TIMEOUT = 15, 900
MAX_CLIENT_REF = 16
# SmsChannel/WhatsappChannel "from": a number without + or 00, or 3-11 letters and digits.
_SENDER = re.compile(r"[0-9]{7,15}|[A-Za-z0-9]{3,11}")
_MSISDN = re.compile(r"[1-9][0-9]{6,14}")
# Request ids are UUIDs; anything else never goes into a URL path.
_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,63}")

#: Locales of the SDK's ``Locale`` enum.
LOCALES = frozenset(
    {
        "en-us",
        "en-gb",
        "es-es",
        "es-mx",
        "es-us",
        "it-it",
        "fr-fr",
        "de-de",
        "ru-ru",
        "hi-in",
        "pt-br",
        "pt-pt",
        "id-id",
    }
)
# A bare language code goes to its first locale (inferred, not Vonage's rule).
_LANGUAGE_LOCALE = {
    "en": "en-us",
    "es": "es-es",
    "it": "it-it",
    "fr": "fr-fr",
    "de": "de-de",
    "ru": "ru-ru",
    "hi": "hi-in",
    "pt": "pt-pt",
    "id": "id-id",
}

#: Lifetime of the JWTs minted for API calls (the SDK's default, 15 minutes).
JWT_LIFETIME = 15 * 60
#: A webhook signed longer ago than this is refused as stale.
WEBHOOK_MAX_AGE = 5 * 60
#: How far in the future a webhook's ``iat`` may be (clocks differ a little).
WEBHOOK_FUTURE_SKEW = 60
# A JWT in a header is a few hundred bytes; a huge one is not Vonage's.
MAX_TOKEN_LENGTH = 8192


class VonageVerifyProvider(HttpProvider):
    """Vonage Verify v2: Vonage makes, sends (SMS, voice, WhatsApp) and checks the code.

    Authenticate with *either* ``application_id`` and ``private_key`` (a JWT
    per call; needed for webhooks) *or* ``api_key`` and ``api_secret``.

    :param brand: the name Vonage puts in its message ("Your <brand> code is
        ..."), 1 to 16 characters. Required.
    :param workflow: the steps for an ``sms`` challenge, from ``"sms"``,
        ``"voice"`` and ``"whatsapp"``; by default an SMS, then a voice call.
    :param channel_timeout: seconds between steps (15-900); by default the
        challenge's lifetime shared among the steps.
    :param locale: Vonage's locale when the user's language has none (``en-us``).
    :param sms_from: the SMS sender (a number, or 3-11 letters and digits).
    :param whatsapp_from: the WhatsApp Business number; without it, no
        ``whatsapp`` channel.
    :param signature_secret: the account's signature secret, to check webhooks.
    """

    provider_name = "Vonage Verify"
    default_base_url = "https://api.nexmo.com"
    capabilities = Capabilities(verifies_code=True, channels=frozenset({SMS, CALL, WHATSAPP}))

    def __init__(
        self,
        *,
        brand: str,
        application_id: str = "",
        private_key: str = "",
        api_key: str = "",
        api_secret: str = "",
        workflow: Sequence[str] = DEFAULT_WORKFLOW,
        channel_timeout: int | None = None,
        locale: str = "en-us",
        sms_from: str = "",
        whatsapp_from: str = "",
        signature_secret: str = "",
        alias: str = "default",
        **options: Any,
    ) -> None:
        super().__init__(alias=alias, **options)
        name = type(self).__name__
        self.brand = _check_brand(brand, name, alias)
        self.sms_from = _check_sender(sms_from, "sms_from", name, alias)
        self.whatsapp_from = _check_sender(whatsapp_from, "whatsapp_from", name, alias)
        self.workflow = _check_workflow(workflow, self.whatsapp_from, name, alias)
        self.channel_timeout = _check_channel_timeout(channel_timeout, name, alias)
        self.locale = _check_locale(locale, name, alias)
        if not self.whatsapp_from:
            # No WhatsApp Business number: the flows must not offer WhatsApp.
            self.capabilities = Capabilities(verifies_code=True, channels=frozenset({SMS, CALL}))

        jwt_mode = bool(application_id or private_key)
        basic_mode = bool(api_key or api_secret)
        if jwt_mode == basic_mode:
            raise _config_error(
                name,
                alias,
                "needs either application_id and private_key (JWT) or api_key and "
                "api_secret (Basic), not both",
            )
        if (jwt_mode or signature_secret) and jwt is None:
            raise _config_error(
                name, alias, "needs PyJWT and cryptography: pip install django-sms2fa[vonage]"
            )
        self.application_id = ""
        self._private_key: Any = None
        self._basic = ""
        if jwt_mode:
            _require(application_id, "application_id", name, alias)
            _require(private_key, "private_key", name, alias)
            self.application_id = application_id.strip()
            pem = _unescape_pem(private_key)
            self.add_secrets(private_key, pem, *_pem_lines(pem))
            self._private_key = _load_private_key(pem, name, alias)
        else:
            _require(api_key, "api_key", name, alias)
            _require(api_secret, "api_secret", name, alias)
            token = base64.b64encode(f"{api_key}:{api_secret}".encode()).decode("ascii")
            # The base64 pair is as good as the secret itself: redacted too.
            self.add_secrets(api_secret, token)
            self._basic = f"Basic {token}"
        if signature_secret is not None and not isinstance(signature_secret, str):
            raise _config_error(name, alias, "signature_secret must be a string")
        self._signature_secret = signature_secret or ""
        self.add_secrets(self._signature_secret)

    # ------------------------------------------------------------- sending

    def _send(self, sms: OutgoingSms) -> SendResult:
        msisdn = self._msisdn(sms.to)
        steps = self._steps(sms.channel)
        timeout = self._timeout_for(sms, len(steps))
        body: dict[str, Any] = {
            "brand": self.brand,
            "workflow": [self._step(channel, msisdn) for channel in steps],
            "locale": _locale_for(sms.language) or self.locale,
            "code_length": _clamp(sms.code_length, MIN_CODE_LENGTH, MAX_CODE_LENGTH),
            "channel_timeout": timeout,
        }
        client_ref = _client_ref(sms.reference)
        if client_ref:
            body["client_ref"] = client_ref
        retry_after = timeout * len(steps)
        return self._call(
            "POST", VERIFY_PATH, body, lambda answer: self._started(answer, steps, retry_after)
        )

    def _started(self, answer: HttpAnswer, steps: Sequence[str], retry_after: int) -> SendResult:
        """The result of ``POST /v2/verify`` (read while the call's JWT is still redacted)."""
        if not 200 <= answer.status < 300:
            raise self._send_error(answer, retry_after=retry_after)
        data = answer.json()
        request_id = data.get("request_id") if isinstance(data, dict) else None
        if not isinstance(request_id, str) or not _REQUEST_ID.fullmatch(request_id.strip()):
            raise self.malformed(answer, "no request_id in the answer")
        return SendResult(
            message_id=request_id.strip(),
            status=SENT,
            provider_status="accepted",
            raw={"request_id": request_id.strip(), "workflow": list(steps)},
        )

    def _steps(self, channel: str) -> tuple[str, ...]:
        if channel == CALL:
            return (VOICE,)
        if channel == WHATSAPP:
            if not self.whatsapp_from:
                # capabilities.channels leaves WhatsApp out then; a caller that
                # asks anyway is refused before any request.
                raise ProviderRejected(
                    provider=self.alias,
                    provider_code="unsupported_channel",
                    provider_text="no whatsapp_from number is configured",
                    failover=True,
                )
            return (WHATSAPP,)
        return self.workflow

    def _step(self, channel: str, msisdn: str) -> dict[str, str]:
        step = {"channel": channel, "to": msisdn}
        if channel == SMS and self.sms_from:
            step["from"] = self.sms_from
        elif channel == WHATSAPP:
            step["from"] = self.whatsapp_from
        return step

    def _timeout_for(self, sms: OutgoingSms, steps: int) -> int:
        if self.channel_timeout is not None:
            return self.channel_timeout
        # The whole workflow within the challenge's lifetime: past it our own
        # expiry refuses every code anyway, and a voice call would be wasted.
        share = _as_int(sms.ttl, 300) // max(steps, 1)
        return _clamp(share, MIN_CHANNEL_TIMEOUT, MAX_CHANNEL_TIMEOUT)

    # ------------------------------------------------------------- checking

    def check_code(self, *, phone: str, code: str, message_id: str = "") -> bool:
        """Ask Vonage whether ``code`` is right for the request ``message_id``.

        :returns: ``True`` only for ``200 {"status": "completed"}``; ``False``
            for a wrong code (400), an unknown, finished or expired request
            (404) and a request that takes no code now (409).
        :raises ProviderRejected: 401/403 (``auth``, credentials), 410 (Vonage's
            own attempt limit, ``provider_limit="check"``), no usable request id.
        :raises ProviderUnavailable: 429, 5xx, network failure, an unreadable answer.
        """
        request_id = (message_id or "").strip()
        if not _REQUEST_ID.fullmatch(request_id):
            # Vonage checks by request, never by phone: without one there is
            # nothing to ask, and an id that is not one never goes in a path.
            raise ProviderRejected(
                provider=self.alias,
                provider_code="no_request_id",
                provider_text="the challenge has no Vonage request_id to check against",
            )
        return self._call(
            "POST",
            f"{VERIFY_PATH}/{request_id}",
            {"code": code},
            lambda answer: self._checked(answer, request_id, code),
        )

    def _checked(self, answer: HttpAnswer, request_id: str, code: str) -> bool:
        """The verdict of ``POST /v2/verify/{request_id}``."""
        # Vonage does not echo the code in its answers; should it ever, the
        # code never reaches an error text or a log line.
        scrubbed = HttpAnswer(
            status=answer.status,
            headers=answer.headers,
            text=blank_known_codes(answer.text, [code]),
        )
        if answer.status in (400, 404, 409, 422):
            logger.info(
                "sms2fa: Vonage (%s) answered HTTP %s to a code check; the code is not "
                "accepted: %s",
                self.alias,
                answer.status,
                summarize_body(self.redact(_problem_text(scrubbed))),
            )
            return False
        if answer.status == 410:
            raise ProviderRejected(
                provider=self.alias,
                provider_code="too_many_attempts",
                provider_text=summarize_body(self.redact(_problem_text(scrubbed))),
                http_status=410,
                provider_limit="check",
            )
        if not 200 <= answer.status < 300:
            raise self._auth_or_http_error(scrubbed)
        data = answer.json()
        status = data.get("status") if isinstance(data, dict) else None
        if not isinstance(status, str):
            raise self.malformed(scrubbed, "no status in the check answer")
        answered_id = data.get("request_id")
        if isinstance(answered_id, str) and answered_id.strip() != request_id:
            logger.warning("sms2fa: Vonage (%s) answered a check for another request", self.alias)
            return False
        return status == "completed"

    def cancel(self, message_id: str) -> bool:
        """The flows' name for :meth:`cancel_verification`."""
        return self.cancel_verification(message_id)

    def cancel_verification(self, request_id: str) -> bool:
        """End an in-flight request (``DELETE /v2/verify/{request_id}``).

        Vonage refuses a second request to a number while one is in flight
        (409); cancelling the request of a superseded challenge frees the number.

        :returns: ``True`` when Vonage cancelled it, ``False`` when it was
            already over (404).
        :raises ProviderError: anything else.
        """
        request_id = (request_id or "").strip()
        if not _REQUEST_ID.fullmatch(request_id):
            return False
        return self._call("DELETE", f"{VERIFY_PATH}/{request_id}", None, self._cancelled)

    def _cancelled(self, answer: HttpAnswer) -> bool:
        if answer.status == 404:
            return False
        if not 200 <= answer.status < 300:
            raise self._auth_or_http_error(answer)
        return True

    # ------------------------------------------------------ delivery reports

    def verify_webhook(self, call: WebhookCall) -> None:
        """Check the JWT Vonage signs its callbacks with (HS256, signature secret).

        The token must be signed with ``signature_secret`` (HS256 only: no
        other algorithm, never ``none``), carry ``iat`` no older than five
        minutes and not in the future beyond a minute, and carry a
        ``payload_hash`` equal to the SHA-256 of this very body.

        :raises InvalidDeliveryReport: ``bad_signature`` or ``stale``.
        """
        secret = self._signature_secret
        if not secret or jwt is None:
            # Fail closed: without the secret nothing can be proved.
            raise InvalidDeliveryReport("no signature secret configured", code="bad_signature")
        scheme, _, token = call.headers.get("authorization", "").strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token or len(token) > MAX_TOKEN_LENGTH:
            raise InvalidDeliveryReport("no bearer token", code="bad_signature")
        try:
            claims = jwt.decode(
                token,
                secret,
                algorithms=["HS256"],
                options={
                    "require": ["iat", "payload_hash"],
                    # Our own window, on the time the call arrived (below).
                    "verify_iat": False,
                    # No audience is documented; one would not make it ours.
                    "verify_aud": False,
                },
            )
        except jwt.ExpiredSignatureError as err:
            # PyJWT checks the signature before exp: a genuine but old token.
            raise InvalidDeliveryReport("token expired", code="stale") from err
        except jwt.InvalidTokenError as err:
            raise InvalidDeliveryReport("token not signed by Vonage", code="bad_signature") from err
        issued = claims.get("iat")
        if isinstance(issued, bool) or not isinstance(issued, (int, float)):
            raise InvalidDeliveryReport("iat is not a time", code="bad_signature")
        age = call.received_at.timestamp() - float(issued)
        if age > WEBHOOK_MAX_AGE or age < -WEBHOOK_FUTURE_SKEW:
            raise InvalidDeliveryReport("token outside the accepted time window", code="stale")
        if not _payload_matches(claims.get("payload_hash"), call.body):
            raise InvalidDeliveryReport("payload_hash is not this body's", code="bad_signature")

    def parse_delivery_report(self, body: bytes, content_type: str) -> list[DeliveryReport]:
        """Read a Verify v2 callback: an ``event`` or a ``summary`` (or a list).

        :raises InvalidDeliveryReport: not JSON, no ``request_id``, no ``status``.
        """
        found: list[DeliveryReport] = []
        for record in reports.records(reports.decode_body(body, content_type)):
            request_id = reports.first_message_id(record, ("request_id",))
            if not request_id:
                raise InvalidDeliveryReport("no request_id in the callback")
            status = record.get("status")
            if not isinstance(status, str) or not status.strip():
                raise InvalidDeliveryReport("no status in the callback")
            status = status.strip().lower()
            kind = record.get("type")
            kind = kind.strip().lower() if isinstance(kind, str) else ""
            channel = record.get("channel")
            label = status
            if isinstance(channel, str) and channel.strip():
                label = f"{status} ({channel.strip()[:20]})"
            when = next(
                (
                    moment
                    for moment in (
                        reports.parse_time(record.get(key))
                        for key in ("finalized_at", "triggered_at", "submitted_at")
                    )
                    if moment is not None
                ),
                None,
            )
            found.append(
                DeliveryReport(
                    message_id=request_id,
                    status=status_of_callback(kind, status),
                    provider_status=label[:64],
                    at=when,
                )
            )
        return found

    # ------------------------------------------------------------- helpers

    def _call(self, method: str, path: str, body: Any, read: Callable[[HttpAnswer], _T]) -> _T:
        """One API call with fresh credentials (a new JWT each time, as the SDK does).

        ``read`` turns the answer into the result or the error while the JWT
        is still registered for redaction: an answer that echoes it is
        redacted before any text is made of it.
        """
        headers = {"Accept": "application/json"}
        token = ""
        if self._private_key is not None:
            token = self._mint_jwt()
            headers["Authorization"] = f"Bearer {token}"
            self.add_secrets(token)
        else:
            headers["Authorization"] = self._basic
        try:
            return read(self.call(method, path, json_body=body, headers=headers))
        finally:
            # Forgotten once every text of this call is made, so the
            # process-wide registry does not grow with every request.
            if token:
                self.forget_secrets(token)

    def _mint_jwt(self) -> str:
        now = int(time.time())
        claims = {
            "application_id": self.application_id,
            "iat": now,
            "exp": now + JWT_LIFETIME,
            "jti": str(uuid.uuid4()),
        }
        return jwt.encode(claims, self._private_key, algorithm="RS256", headers={"typ": "JWT"})

    def _msisdn(self, e164: str) -> str:
        """``+447700900000`` -> ``447700900000``: Vonage wants E.164 without ``+``."""
        digits = e164[1:] if e164.startswith("+") else e164
        if not _MSISDN.fullmatch(digits):
            raise ProviderRejected(
                provider=self.alias,
                provider_code="unsupported_number",
                provider_text="Vonage takes international numbers of 7 to 15 digits",
            )
        return digits

    def _auth_or_http_error(self, answer: HttpAnswer) -> ProviderRejected | ProviderUnavailable:
        text = _problem_text(answer)
        if answer.status in (401, 403):
            # Wrong key, secret, application or private key: our configuration,
            # so another provider may take it (failover).
            return self.http_error(
                answer, provider_code="auth", provider_text=f"HTTP {answer.status}: {text}"
            )
        return self.http_error(answer, provider_code=_problem_kind(answer), provider_text=text)

    def _send_error(
        self, answer: HttpAnswer, *, retry_after: int
    ) -> ProviderRejected | ProviderUnavailable:
        """The error for a refused ``POST /v2/verify``."""
        text = _problem_text(answer)
        kind = _problem_kind(answer)
        if answer.status == 402:
            # "low-balance": the account, not the message; a fallback may send it.
            return self.rejected(answer, "low_balance", text, failover=True)
        if answer.status == 409 and (kind == "concurrent" or "concurrent" in text.lower()):
            # Vonage's own limit: one request in flight per number. Told as
            # this app's rate limit until the in-flight request can be over.
            return ProviderRejected(
                provider=self.alias,
                provider_code="concurrent",
                provider_text=summarize_body(self.redact(text)),
                http_status=409,
                provider_limit="send",
                retry_after=answer.retry_after or retry_after,
            )
        if answer.status == 422:
            detail = text.lower()
            # "Invalid value for `to`", "... is not a valid phone number" (inferred).
            words = ("number", "phone", "msisdn", "`to`", "'to'", '"to"', ".to")
            number = any(word in detail for word in words)
            return self.rejected(answer, "invalid_number" if number else "invalid_request", text)
        return self._auth_or_http_error(answer)


# ----------------------------------------------------------------- mapping


def status_of_callback(kind: str, status: str) -> str:
    """Our message status for a callback's ``type`` and ``status``.

    ``completed``: the user proved the code, so it arrived. A ``summary`` that
    ``failed``: no step got it through. Anything else (one step that failed,
    ``expired``, ``user_rejected``, ``action_pending``) changes nothing.
    """
    if status == "completed":
        return DELIVERED
    if kind == "summary" and status == "failed":
        return FAILED
    return UNKNOWN


def _payload_matches(claimed: Any, body: bytes) -> bool:
    if not isinstance(claimed, str) or len(claimed) != 64:
        return False
    claimed = claimed.lower().encode("ascii", "replace")
    if hmac.compare_digest(claimed, hashlib.sha256(body).hexdigest().encode()):
        return True
    # The same JSON, compact: what Vonage's pages say the hash is taken over.
    try:
        compact = json.dumps(
            json.loads(body.decode("utf-8")), separators=(",", ":"), ensure_ascii=False
        ).encode("utf-8")
    except (ValueError, RecursionError):
        return False
    return hmac.compare_digest(claimed, hashlib.sha256(compact).hexdigest().encode())


def _problem(answer: HttpAnswer) -> dict[str, Any]:
    data = answer.json()
    return data if isinstance(data, dict) else {}


def _problem_kind(answer: HttpAnswer) -> str:
    """The tail of a problem's ``type`` URL (``…/verify-v2#concurrent`` -> ``concurrent``)."""
    kind = _problem(answer).get("type")
    if not isinstance(kind, str) or "#" not in kind:
        # "https://developer.vonage.com/api-errors" alone names no error.
        return ""
    tail = kind.strip().rsplit("#", 1)[1]
    return tail[:64] if re.fullmatch(r"[A-Za-z0-9_.-]+", tail) else ""


def _problem_text(answer: HttpAnswer) -> str:
    """``title: detail`` of an RFC 7807 body, or the whole body.

    Never shortened here: a text is redacted first and shortened after, or a
    secret cut in half would slip past the redaction.
    """
    problem = _problem(answer)
    parts = [
        str(problem[key]).strip()
        for key in ("title", "detail")
        if isinstance(problem.get(key), (str, int, float)) and str(problem[key]).strip()
    ]
    return ": ".join(parts) if parts else answer.text


# ----------------------------------------------------------------- options


def _config_error(name: str, alias: str, problem: str) -> Sms2faConfigurationError:
    # Names the option, never its value.
    return Sms2faConfigurationError(
        f"{name} (provider {alias!r}) {problem}.", check_id="sms2fa.E002"
    )


def _require(value: Any, option: str, name: str, alias: str) -> None:
    if not isinstance(value, str) or not value.strip():
        raise _config_error(name, alias, f"needs a non-empty {option} option")


def _check_brand(brand: Any, name: str, alias: str) -> str:
    if not isinstance(brand, str) or not 0 < len(brand.strip()) <= MAX_BRAND:
        raise _config_error(name, alias, f"needs a brand of 1 to {MAX_BRAND} characters")
    return brand.strip()


def _check_sender(value: Any, option: str, name: str, alias: str) -> str:
    if value is None or value == "":
        return ""
    text = value.strip().removeprefix("+") if isinstance(value, str) else ""
    if not _SENDER.fullmatch(text):
        raise _config_error(
            name,
            alias,
            f"{option} must be a number of 7 to 15 digits or 3 to 11 letters and digits",
        )
    return text


def _check_workflow(workflow: Any, whatsapp_from: str, name: str, alias: str) -> tuple[str, ...]:
    steps = (workflow,) if isinstance(workflow, str) else workflow
    if not isinstance(steps, Iterable):
        raise _config_error(name, alias, "workflow must be a list of channels")
    steps = tuple(steps)
    if (
        not steps
        or len(steps) > len(STEP_CHANNELS)
        or any(step not in STEP_CHANNELS for step in steps)
        or len(set(steps)) != len(steps)
    ):
        raise _config_error(
            name,
            alias,
            f"workflow must list 1 to {len(STEP_CHANNELS)} different channels of "
            f"{', '.join(STEP_CHANNELS)}",
        )
    if WHATSAPP in steps and not whatsapp_from:
        raise _config_error(name, alias, "workflow has a whatsapp step but no whatsapp_from")
    return steps


def _check_channel_timeout(value: Any, name: str, alias: str) -> int | None:
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or not MIN_CHANNEL_TIMEOUT <= value <= MAX_CHANNEL_TIMEOUT
    ):
        raise _config_error(
            name,
            alias,
            f"channel_timeout must be {MIN_CHANNEL_TIMEOUT} to {MAX_CHANNEL_TIMEOUT} seconds",
        )
    return value


def _check_locale(value: Any, name: str, alias: str) -> str:
    locale = value.strip().lower() if isinstance(value, str) else ""
    if locale not in LOCALES:
        raise _config_error(name, alias, f"locale must be one of {', '.join(sorted(LOCALES))}")
    return locale


def _locale_for(language: str) -> str:
    """Vonage's locale for a language code (``de``, ``pt-BR``, ``en_GB``), or ``""``."""
    code = (language or "").strip().lower().replace("_", "-")
    if code in LOCALES:
        return code
    return _LANGUAGE_LOCALE.get(code.split("-")[0], "")


def _client_ref(reference: str) -> str:
    """Our reference (a challenge UUID) cut to Vonage's 16 characters, for its dashboard."""
    text = re.sub(r"[^A-Za-z0-9]", "", reference or "")
    return text[:MAX_CLIENT_REF]


def _unescape_pem(value: str) -> str:
    # A PEM pasted into an environment variable often arrives with literal
    # "\n" instead of line breaks.
    text = value.strip()
    if "\n" not in text and "\\n" in text:
        text = text.replace("\\n", "\n")
    return text


def _pem_lines(pem: str) -> list[str]:
    return [line.strip() for line in pem.splitlines() if line.strip() and "-----" not in line]


def _load_private_key(pem: str, name: str, alias: str) -> Any:
    try:
        key = load_pem_private_key(pem.encode("utf-8"), password=None)
    except (ValueError, TypeError, UnicodeError):
        key = None
    except Exception:  # cryptography's UnsupportedAlgorithm and friends
        key = None
    if not isinstance(key, RSAPrivateKey):
        raise _config_error(
            name, alias, "private_key must be the application's RSA private key (PEM, no password)"
        )
    return key


def _as_int(value: Any, default: int) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _clamp(value: Any, low: int, high: int) -> int:
    return max(low, min(high, _as_int(value, low)))
