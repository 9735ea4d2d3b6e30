"""Twilio Programmable Messaging: we make the code, Twilio delivers our text.

Mode (a), ``delivers_text``: the flows make the code, hash it and check it
locally; Twilio only carries the SMS. Delivery reports arrive as signed status
callbacks (``X-Twilio-Signature``), so the webhook needs no entry in
``SMS2FA["WEBHOOK_SECRETS"]``.

Documented by Twilio (docs/providers/twilio.md has the details):

* Sending, ``POST /2010-04-01/Accounts/{AccountSid}/Messages.json``,
  form-encoded ``To``, ``Body``, ``From`` and/or ``MessagingServiceSid``,
  optional ``StatusCallback``; answers 201 with a Message resource
  (``sid``, ``status`` ``queued``/``accepted``/``scheduled``, ...).
  https://www.twilio.com/docs/messaging/api/message-resource
* Authentication, HTTP Basic with the Account SID and auth token, or an API
  key SID and secret (the Account SID then stays in the path).
  https://www.twilio.com/docs/usage/requests-to-twilio and
  https://www.twilio.com/docs/iam/api-keys
* Errors, a JSON body ``{"code", "message", "more_info", "status"}``.
  https://www.twilio.com/docs/usage/twilios-response and the pages of the
  error dictionary, https://www.twilio.com/docs/api/errors (20003
  authentication, 20404 not found, 20429 too many requests, 21211 invalid
  ``To``, 21610 unsubscribed recipient, ...).
* Message status values and status callbacks (form-encoded ``MessageSid``,
  ``MessageStatus``, ``ErrorCode``, ...), and that no callback is sent for
  the initial status.
  https://www.twilio.com/docs/messaging/guides/track-outbound-message-status
  https://www.twilio.com/docs/messaging/guides/outbound-message-status-in-status-callbacks
* Webhook signatures: base64(HMAC-SHA1(auth token, URL + every POST parameter
  as name and value, sorted by name)); JSON bodies are covered by a
  ``bodySHA256`` query parameter instead.
  https://www.twilio.com/docs/usage/webhooks/webhooks-security

Inferred, and why:

* That the signed URL may carry the default port or not: twilio-python's
  ``RequestValidator`` accepts both ("sig generation on back end is
  inconsistent"), so we do too.
* ``partially_delivered`` (some segments delivered) is taken as ``sent``,
  not ``delivered``: the part with the code may be the one that is missing.
* Which refusals are about our account rather than the message (failover):
  21408 (region not enabled), 21606 / 21659 / 21212 (our sender), 21608
  (trial account), 20003 / 20005 / 20008 (credentials, suspended account).
  The error pages describe the causes; the split is ours.
* The official SDK (twilio-python) is not used: it pulls in aiohttp,
  aiohttp-retry and PyJWT for two form POSTs and a GET, and its HTTP client
  would bypass the shared base (no blind re-send, total deadline, address
  guard, redaction).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, parse_qsl, urlsplit, urlunsplit

from ..exceptions import (
    ProviderRejected,
    ProviderUnavailable,
    Sms2faConfigurationError,
)
from ..types import (
    DELIVERED,
    FAILED,
    QUEUED,
    SENT,
    UNKNOWN,
    Capabilities,
    DeliveryReport,
    OutgoingSms,
    SendResult,
)
from . import reports
from .base import InvalidDeliveryReport, WebhookCall
from .http import HttpAnswer, HttpProvider, summarize_body

logger = logging.getLogger("django_sms2fa.providers")

API_VERSION = "2010-04-01"
SIGNATURE_HEADER = "x-twilio-signature"
# A Webhooks Rule signs with its own SharedKey (and maybe HMAC-SHA256) and
# says so in this header; we only hold the auth token.
SIGNATURE_SETTINGS_HEADER = "x-twilio-webhooks-signature-settings"

# SIDs are two letters and 32 hex digits. They go into URL paths, so they are
# checked, never just interpolated (a "/" or ".." would change the path).
ACCOUNT_SID = re.compile(r"AC[0-9a-fA-F]{32}")
API_KEY_SID = re.compile(r"SK[0-9a-fA-F]{32}")
MESSAGING_SERVICE_SID = re.compile(r"MG[0-9a-fA-F]{32}")
RESOURCE_SID = re.compile(r"[A-Z]{2}[0-9a-fA-F]{32}")
E164 = re.compile(r"\+[1-9][0-9]{6,14}")
# A GSM alphanumeric sender id: at most 11 characters, letters, digits, spaces.
ALPHA_SENDER = re.compile(r"(?=.*[A-Za-z])[A-Za-z0-9 ]{1,11}")
SHORT_CODE = re.compile(r"[0-9]{3,8}")

# Message status values, https://www.twilio.com/docs/messaging/api/message-resource
STATUS_MAP: dict[str, str] = {
    "queued": QUEUED,
    "accepted": QUEUED,
    "scheduled": QUEUED,
    "sending": QUEUED,
    "sent": SENT,
    "partially_delivered": SENT,  # inferred, see the module docstring
    "delivered": DELIVERED,
    "read": DELIVERED,
    "failed": FAILED,
    "undelivered": FAILED,
    "canceled": FAILED,
}

# Credentials refused, or an account that cannot send at all: about this
# provider, not the message, so the flows try the fallbacks.
AUTH_CODES = frozenset({20003, 20005, 20008})
# Refusals caused by our own configuration (sender, region permissions, trial
# account): another provider may well take the same SMS.
CONFIG_CODES = frozenset({21212, 21408, 21606, 21608, 21659})
# The number itself: no provider will do better.
NUMBER_CODES = frozenset({21211, 21614, 21265, 21612})
RATE_LIMIT_CODES = frozenset({20429})


def status_of(value: Any) -> str:
    """Our status for a Twilio message status; anything unknown is ``unknown``."""
    return STATUS_MAP.get(str(value or "").strip().lower(), UNKNOWN)


# ------------------------------------------------------------------ errors


@dataclass(frozen=True)
class TwilioError:
    """What a Twilio error body says (``code`` is ``None`` when it says nothing)."""

    code: int | None
    message: str
    more_info: str

    @property
    def text(self) -> str:
        parts = [f"{self.code}" if self.code is not None else "", self.message]
        text = ": ".join(p for p in parts if p)
        if self.more_info:
            text = f"{text} ({self.more_info})" if text else self.more_info
        return text


def read_error(answer: HttpAnswer) -> TwilioError:
    """The ``code``/``message``/``more_info`` of an error answer.

    The classic body is ``{"code", "message", "more_info", "status"}``; newer
    APIs answer RFC 9457 problem details (``type``, ``title``, ``detail``,
    ``code``), which twilio-python also reads. Anything else: no code.
    """
    data = answer.json()
    if not isinstance(data, dict):
        return TwilioError(None, "", "")
    code = reports.as_int(data.get("code"))
    message = next(
        (
            str(data[key]).strip()
            for key in ("message", "detail", "title")
            if isinstance(data.get(key), str) and data[key].strip()
        ),
        "",
    )
    more_info = data.get("more_info") or data.get("type") or ""
    return TwilioError(code, message[:300], str(more_info)[:120])


# ------------------------------------------------------------------ base


class TwilioBase(HttpProvider):
    """Credentials and error mapping shared by the Twilio providers.

    :param account_sid: ``AC…``, always in the URL path of Programmable
        Messaging; with an auth token also the Basic-auth user.
    :param auth_token: the account's auth token. Also the key of webhook
        signatures: without it signed webhooks cannot be checked.
    :param api_key_sid: ``SK…``, an API key to authenticate with instead of
        the auth token (revocable, can be scoped); needs ``api_key_secret``.
    :param api_key_secret: the API key's secret.
    """

    def require_e164(self, to: str) -> None:
        """Refuse, before any request, a number Twilio would not take."""
        if not E164.fullmatch(to or ""):
            raise ProviderRejected(
                provider=self.alias,
                provider_code="unsupported_number",
                provider_text=f"{self.provider_name} takes E.164 numbers (+ and 7 to 15 digits)",
            )

    def __init__(
        self,
        *,
        account_sid: str,
        auth_token: str = "",
        api_key_sid: str = "",
        api_key_secret: str = "",
        alias: str = "default",
        **options: Any,
    ) -> None:
        super().__init__(alias=alias, **options)
        if not isinstance(account_sid, str) or not ACCOUNT_SID.fullmatch(account_sid.strip()):
            raise self._config_error("account_sid must be an Account SID (AC and 32 hex digits)")
        self.account_sid = account_sid.strip()
        for option, value in (
            ("auth_token", auth_token),
            ("api_key_sid", api_key_sid),
            ("api_key_secret", api_key_secret),
        ):
            if not isinstance(value, str):
                raise self._config_error(f"{option} must be a string")
        auth_token, api_key_sid = auth_token.strip(), api_key_sid.strip()
        api_key_secret = api_key_secret.strip()
        if bool(api_key_sid) != bool(api_key_secret):
            raise self._config_error("api_key_sid and api_key_secret go together")
        if api_key_sid and not API_KEY_SID.fullmatch(api_key_sid):
            raise self._config_error("api_key_sid must be an API key SID (SK and 32 hex digits)")
        if not auth_token and not api_key_sid:
            raise self._config_error("needs auth_token, or api_key_sid and api_key_secret")
        # An API key is preferred for calls when both are given: it can be
        # revoked alone. The auth token is then kept only to check webhooks.
        user, password = (
            (api_key_sid, api_key_secret) if api_key_sid else (self.account_sid, auth_token)
        )
        self.auth_token = auth_token
        self.uses_api_key = bool(api_key_sid)
        token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
        # The base64 form is as good as the secret itself.
        self.add_secrets(auth_token, api_key_secret, token)
        self._headers = {"Authorization": f"Basic {token}", "Accept": "application/json"}

    def _config_error(self, what: str) -> Sms2faConfigurationError:
        # Names the option, never its value.
        return Sms2faConfigurationError(
            f"{type(self).__name__} (provider {self.alias!r}): {what}.", check_id="sms2fa.E002"
        )

    # ------------------------------------------------------------- errors

    def twilio_error(
        self, answer: HttpAnswer, *, text: str | None = None
    ) -> ProviderRejected | ProviderUnavailable:
        """The error for a non-2xx answer of any Twilio API.

        By Twilio's ``code`` first (a Verify 60203 comes as HTTP 429 but is
        not a transient throttle), then by the HTTP status through
        :meth:`HttpProvider.http_error` (429, 502, 503: not processed; 500,
        504: may have sent; other 4xx: refused).

        :param text: the error text to keep instead of the answer's (a caller
            that had to scrub something out of it).
        """
        error = read_error(answer)
        if text is None:
            text = error.text or summarize_body(answer.text)
        text = self.redact(text)
        code = error.code
        if code in AUTH_CODES or (code is None and answer.status in (401, 403)):
            return self.rejected(answer, "auth", f"HTTP {answer.status}: {text}", failover=True)
        if code in RATE_LIMIT_CODES or answer.status == 429:
            # "Requests that receive 429 responses aren't processed" (20429).
            return ProviderUnavailable(
                provider=self.alias,
                provider_code=str(code or 429),
                provider_text=summarize_body(text),
                http_status=answer.status,
                may_have_sent=False,
                retry_after=answer.retry_after,
            )
        if answer.status >= 500 or code is None:
            return self.http_error(answer, provider_code=str(code or ""), provider_text=text)
        if code in CONFIG_CODES:
            return self.rejected(answer, str(code), text, failover=True)
        if code in NUMBER_CODES:
            return self.rejected(answer, str(code), text, failover=False)
        return self.http_error(answer, provider_code=str(code), provider_text=text)

    def _json_object(self, answer: HttpAnswer, what: str) -> dict[str, Any]:
        data = answer.json()
        if not isinstance(data, dict):
            raise self.malformed(answer, f"not a {what}")
        return data


# ------------------------------------------------------------------ messaging


class TwilioProvider(TwilioBase):
    """Twilio Programmable Messaging (mode a: we make and check the code).

    :param account_sid: ``AC…``.
    :param auth_token: the auth token (Basic auth, and the key of webhook
        signatures).
    :param api_key_sid: / ``api_key_secret``: an API key for the calls
        instead of the auth token; give ``auth_token`` too to receive status
        callbacks (only it can check their signatures).
    :param messaging_service_sid: ``MG…``; Twilio picks the sender from the
        service's pool. Either this or ``sender`` (or both).
    :param sender: ``From``: a Twilio number in E.164, a short code, or an
        alphanumeric sender id (at most 11 characters).
    :param status_callback: the absolute URL of this alias's delivery webhook,
        sent as ``StatusCallback`` with every SMS and used as the signed URL
        when a callback is checked.
    """

    provider_name = "Twilio"
    default_base_url = "https://api.twilio.com"
    capabilities = Capabilities(delivers_text=True)

    def __init__(
        self,
        *,
        account_sid: str,
        auth_token: str = "",
        api_key_sid: str = "",
        api_key_secret: str = "",
        messaging_service_sid: str = "",
        sender: str = "",
        status_callback: str = "",
        alias: str = "default",
        **options: Any,
    ) -> None:
        super().__init__(
            account_sid=account_sid,
            auth_token=auth_token,
            api_key_sid=api_key_sid,
            api_key_secret=api_key_secret,
            alias=alias,
            **options,
        )
        self.messaging_service_sid = _clean_str(messaging_service_sid)
        if self.messaging_service_sid and not MESSAGING_SERVICE_SID.fullmatch(
            self.messaging_service_sid
        ):
            raise self._config_error(
                "messaging_service_sid must be a Messaging Service SID (MG and 32 hex digits)"
            )
        self.sender = _clean_str(sender)
        if self.sender and not (
            E164.fullmatch(self.sender)
            or SHORT_CODE.fullmatch(self.sender)
            or ALPHA_SENDER.fullmatch(self.sender)
        ):
            raise self._config_error(
                "sender must be an E.164 number, a short code or an alphanumeric sender id "
                "of at most 11 characters"
            )
        if not self.sender and not self.messaging_service_sid:
            raise self._config_error("needs messaging_service_sid or sender")
        self.status_callback = _clean_str(status_callback)
        if self.status_callback:
            parts = urlsplit(self.status_callback)
            if parts.scheme not in ("https", "http") or not parts.hostname:
                raise self._config_error("status_callback must be an absolute http(s) URL")
            if not self.auth_token:
                # Twilio signs callbacks with the auth token only: every one
                # would be refused.
                raise self._config_error(
                    "status_callback needs auth_token: Twilio signs callbacks with it, "
                    "and an API key cannot check them"
                )
        self._messages_path = f"/{API_VERSION}/Accounts/{self.account_sid}/Messages"

    # ------------------------------------------------------------- sending

    def _send(self, sms: OutgoingSms) -> SendResult:
        self.require_e164(sms.to)
        if not sms.text:
            raise ProviderRejected(
                provider=self.alias,
                provider_code="empty_text",
                provider_text="Twilio delivers a text: the SMS has none",
            )
        form: dict[str, str] = {"To": sms.to, "Body": sms.text}
        if self.messaging_service_sid:
            form["MessagingServiceSid"] = self.messaging_service_sid
        if self.sender:
            form["From"] = self.sender
        if self.status_callback:
            form["StatusCallback"] = self.status_callback
        answer = self.call("POST", f"{self._messages_path}.json", data=form, headers=self._headers)
        if not 200 <= answer.status < 300:
            raise self.twilio_error(answer)
        data = self._json_object(answer, "Message resource")
        sid = reports.clean_message_id(data.get("sid"))
        if not sid:
            raise self.malformed(answer, "no Message sid")
        raw_status = str(data.get("status") or "")
        return SendResult(
            message_id=sid,
            # The create answer says queued/accepted/scheduled: Twilio has
            # it, nothing more. A missing status is read as queued.
            status=status_of(raw_status) if raw_status else QUEUED,
            provider_status=raw_status[:64],
            raw=_public_fields(data),
        )

    # ------------------------------------------------------------- status

    def get_status(self, message_id: str) -> SendResult:
        """``GET /2010-04-01/Accounts/{AC}/Messages/{SM}.json``.

        :raises ProviderRejected: an id that is not a Message SID, 20404
            (unknown message), credentials refused (``auth``).
        :raises ProviderUnavailable: 429, 5xx, an answer we cannot read.
        """
        sid = str(message_id or "").strip()
        if not RESOURCE_SID.fullmatch(sid):
            raise self.rejected(None, "invalid_message_id", "not a Twilio Message SID")
        answer = self.call("GET", f"{self._messages_path}/{sid}.json", headers=self._headers)
        if not 200 <= answer.status < 300:
            raise self.twilio_error(answer)
        data = self._json_object(answer, "Message resource")
        raw_status = data.get("status")
        if not isinstance(raw_status, str) or not raw_status:
            raise self.malformed(answer, "no status in the Message resource")
        return SendResult(
            message_id=reports.clean_message_id(data.get("sid")) or sid,
            status=status_of(raw_status),
            provider_status=_status_label(raw_status, data.get("error_code")),
            raw=_public_fields(data),
        )

    # ------------------------------------------------------------- webhooks

    def parse_delivery_report(self, body: bytes, content_type: str) -> list[DeliveryReport]:
        """Read a status callback: form-encoded ``MessageSid``, ``MessageStatus``,
        ``ErrorCode`` (``SmsSid`` / ``SmsStatus`` are the older names of the
        same fields).

        :raises InvalidDeliveryReport: not a form body, no sid, no status.
        """
        fields = reports.decode_body(body, content_type)
        if not isinstance(fields, dict):
            raise InvalidDeliveryReport("not a Twilio status callback")
        sid = reports.first_message_id(fields, ("MessageSid", "SmsSid"))
        if not sid:
            raise InvalidDeliveryReport("no MessageSid in the callback")
        raw_status = fields.get("MessageStatus") or fields.get("SmsStatus")
        if not isinstance(raw_status, str) or not raw_status.strip():
            raise InvalidDeliveryReport("no MessageStatus in the callback")
        return [
            DeliveryReport(
                message_id=sid,
                status=status_of(raw_status),
                provider_status=_status_label(raw_status, fields.get("ErrorCode")),
            )
        ]

    def verify_webhook(self, call: WebhookCall) -> None:
        """Check ``X-Twilio-Signature`` (HMAC-SHA1 with the auth token).

        The signed URL is ``status_callback`` when it is set (Twilio signs the
        URL it called, which behind a proxy may differ from what Django
        rebuilds), else ``call.url``; with or without the default port, as
        twilio-python accepts. Form bodies are signed parameter by parameter;
        any other body only through a ``bodySHA256`` query parameter, which
        must then match the body. Twilio does not date its calls: a replayed
        callback passes here, and changes nothing (statuses only move forward).

        :raises InvalidDeliveryReport: ``bad_signature``.
        """
        signature = call.headers.get(SIGNATURE_HEADER, "")
        if not self.auth_token or not signature:
            raise InvalidDeliveryReport("no signature to check", code="bad_signature")
        if SIGNATURE_SETTINGS_HEADER in call.headers:
            # Signed with a Webhooks Rule's SharedKey, which we do not hold.
            raise InvalidDeliveryReport("signed with a shared key", code="bad_signature")
        url = self.status_callback or call.url
        params = _signed_params(url, call.body, call.content_type)
        key = self.auth_token.encode("utf-8")
        given = signature.strip().encode("utf-8", "replace")
        matched = False
        for candidate in _url_variants(url):
            expected = _signature(key, candidate, params)
            # Every variant is compared (no early exit), in constant time.
            matched |= hmac.compare_digest(expected, given)
        if not matched:
            raise InvalidDeliveryReport("signature does not match", code="bad_signature")


# ------------------------------------------------------------------ signatures


def _signed_params(url: str, body: bytes, content_type: str) -> list[tuple[str, str]]:
    """The POST parameters the signature covers (``[]`` for a hashed body).

    :raises InvalidDeliveryReport: a body the signature would not cover.
    """
    query = parse_qs(urlsplit(url).query, keep_blank_values=True)
    if "bodySHA256" in query:
        digest = hashlib.sha256(body).hexdigest().encode("ascii")
        if not hmac.compare_digest(digest, query["bodySHA256"][0].strip().lower().encode()):
            raise InvalidDeliveryReport("body hash does not match", code="bad_signature")
        return []
    if (content_type or "").split(";")[0].strip().lower() != "application/x-www-form-urlencoded":
        # A JSON body without bodySHA256 is covered by no signature: anyone
        # could change it under a valid header.
        raise InvalidDeliveryReport("body not covered by the signature", code="bad_signature")
    try:
        text = body.decode("utf-8")
        return parse_qsl(text, keep_blank_values=True, max_num_fields=200)
    except (UnicodeDecodeError, ValueError) as err:
        raise InvalidDeliveryReport("not a form body", code="bad_signature") from err


def _signature(key: bytes, url: str, params: list[tuple[str, str]]) -> bytes:
    """Twilio's signature: the URL, then each name followed by its value, sorted
    by name (and, for a repeated name, by value), HMAC-SHA1, base64."""
    values: dict[str, set[str]] = {}
    for name, value in params:
        values.setdefault(name, set()).add(value)
    signed = url + "".join(
        name + value for name in sorted(values) for value in sorted(values[name])
    )
    digest = hmac.new(key, signed.encode("utf-8"), hashlib.sha1).digest()
    return base64.b64encode(digest)


def _url_variants(url: str) -> list[str]:
    """``url`` as given, without its port, and with the default port added
    (twilio-python's ``remove_port`` / ``add_port``)."""
    parts = urlsplit(url)
    variants = [url]
    host = parts.netloc.rpartition("@")[2]
    try:
        port = parts.port
    except ValueError:
        return variants
    if port is not None:
        bare = host.rsplit(":", 1)[0]
        variants.append(urlunsplit(parts._replace(netloc=bare)))
    else:
        default = 443 if parts.scheme == "https" else 80
        variants.append(urlunsplit(parts._replace(netloc=f"{host}:{default}")))
    return list(dict.fromkeys(variants))


# ------------------------------------------------------------------ helpers


def _clean_str(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""


def _status_label(status: Any, error_code: Any) -> str:
    label = str(status or "").strip()
    code = reports.as_int(error_code)
    if code:
        label = f"{label} {code}"
    return label[:64]


# The Message resource echoes our Body, which holds the code: only these
# fields are kept for the audit.
_PUBLIC_FIELDS = (
    "sid",
    "status",
    "error_code",
    "error_message",
    "num_segments",
    "price",
    "price_unit",
    "messaging_service_sid",
    "date_created",
    "date_sent",
)


def _public_fields(data: dict[str, Any]) -> dict[str, Any]:
    return {key: data[key] for key in _PUBLIC_FIELDS if key in data}
