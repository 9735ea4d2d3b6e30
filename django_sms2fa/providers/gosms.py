"""GoSMS (gosms.ru): SMS sent from the customer's own Android phone(s).

GoSMS has no SMS gateway of its own. The customer installs the GoSMS app on
one or more Android phones, registers them in the panel (cms.gosms.ru), and
every message the API accepts is queued in the GoSMS cloud until one of those
phones picks it up and sends it from its own SIM card. So there is no sender
name, and the price and reach are those of the phone's SIM tariff.

Mode: (a) only. GoSMS delivers *our* text; it has no code or verify API, so
the flows make the code, keep its keyed hash and check it locally
(``capabilities.delivers_text``).

API (``https://api.gosms.ru/v1``, JSON, ``Authorization: Bearer <JWT>``):

* ``POST /sms/send`` ``{"message", "phone_number", "device_id"?, "to_sim"?,
  "callback_id"?}`` → ``200 {"id": "6654a4e8f1527149588c89f2"}``;
* ``POST /sms/get`` ``{"id"}`` → ``200 {id, message, status, callback_id,
  device_id, phone_number, message_status, time_create}``;
* errors: ``{"errors": {"code": int, "message": str, "hash": str}}`` with
  HTTP 400, 401, 403, 404, 429 or 500.

The quirks this client depends on are quoted where the code handles them.
"""

from __future__ import annotations

import re
from typing import Any

from ..exceptions import ProviderRejected, ProviderUnavailable, Sms2faConfigurationError
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
from .base import InvalidDeliveryReport
from .http import HttpAnswer, HttpProvider, summarize_body

__all__ = ["GoSMSProvider", "STATUS_MAP"]

# "Both are 24-hex ObjectIDs (the pattern ^[0-9a-fA-F]{24}$ is enforced:
# codes 2004/2005)". Checked when the provider is built, so a typo in settings
# fails at start-up (system check sms2fa.E002), not on a user's first login.
_OBJECT_ID = re.compile(r"[0-9a-fA-F]{24}")

# E.164 as flows hand it over. GoSMS wants "digits only, 3–30 characters, e.g.
# 79999999999 (no +)" (error 2001); every E.164 number fits once the "+" goes.
# [0-9], not \d: \d also matches non-ASCII digits.
_E164 = re.compile(r"\+([1-9][0-9]{2,29})")

# "message: 1–300 characters; backticks are rejected" (error 2002).
MAX_MESSAGE_LENGTH = 300

# GoSMS `status` (POST /sms/get) → our normalized status. The docs say:
# 0 waiting for processing, 1 processing (a phone took it), 2 sent,
# 3 send error, 4 delivered, 5 delivery error.
STATUS_MAP: dict[int, str] = {
    0: QUEUED,
    1: QUEUED,
    2: SENT,
    3: FAILED,
    4: DELIVERED,
    5: FAILED,
}

# Error codes that mean the token cannot do what we ask: the API instance is
# inactive (1002) or deleted (1003), or lacks the "send" (1005) or "read"
# (1007) permission. On 401, or on any of these, the token is at fault: a
# permanent refusal, never retried (docs/providers/gosms.md, "Errors").
AUTH_CODES = frozenset({"1002", "1003", "1005", "1007"})
# "Maximum number of SMS on your tariff plan" (1006): GoSMS sends nothing more
# until the monthly limit resets or the plan changes, but another provider
# can; reported as unavailable (not sent) so that flows fail over.
QUOTA_CODES = frozenset({"1006"})
# Fields of GoSMS answers never kept in SendResult.raw: ``message`` is our
# text, with the code in it; the number is already on the Message row.
_DROPPED_FIELDS = frozenset({"message", "text", "code", "phone_number", "phone"})
# Where a callback may carry the message id. GoSMS does not document the
# webhook payload (docs/providers/gosms.md, "Limits": no documented
# payload), so the usual names are tried, at the top level and inside one
# wrapping object. ``message`` is GoSMS's name for the text, so a string there
# is never read as an id.
_CALLBACK_ID_KEYS = ("id", "sms_id", "smsId", "message_id", "messageId")
_CALLBACK_WRAPPERS = ("sms", "data", "message", "payload", "object")
# "more than 10 requests/s to one endpoint → 429". The docs do not say
# whether GoSMS sends Retry-After; one second is enough to get under 10/s.
DEFAULT_RETRY_AFTER = 1


class GoSMSProvider(HttpProvider):
    """Sends our text through GoSMS (customer's Android phones).

    Options (keyword-only):

    :param token: the API instance's JWT from cms.gosms.ru → "API интеграция"
        (required; needs the "send" permission, and "read" for
        :meth:`get_status`).
    :param device_id: the ObjectID of the phone that must send (default: any
        of the account's active phones).
    :param callback_id: the ObjectID of the webhook that receives status
        events (default: every webhook subscribed to SMS events).
    :param to_sim: SIM slot on ``device_id`` to send from; needs ``device_id``.
    """

    provider_name = "GoSMS"
    default_base_url = "https://api.gosms.ru/v1"
    capabilities = Capabilities(delivers_text=True)

    def __init__(
        self,
        *,
        token: str,
        device_id: str | None = None,
        callback_id: str | None = None,
        to_sim: int | str | None = None,
        **options: Any,
    ) -> None:
        alias = options.get("alias", "default")
        self._token = _check_token(token, alias)
        self.device_id = _check_object_id(device_id, "device_id", alias)
        self.callback_id = _check_object_id(callback_id, "callback_id", alias)
        self.to_sim = _check_to_sim(to_sim, self.device_id, alias)
        super().__init__(**options)
        self.add_secrets(self._token)

    # ------------------------------------------------------------------ send

    def _send(self, sms: OutgoingSms) -> SendResult:
        body = {"message": self._message(sms), "phone_number": self._phone(sms.to)}
        if self.device_id:
            body["device_id"] = self.device_id
            # As the vendor's CLI (gosms.sh) does: to_sim only with device_id.
            if self.to_sim is not None:
                body["to_sim"] = self.to_sim
        if self.callback_id:
            body["callback_id"] = self.callback_id
        answer = self.call("POST", "/sms/send", json_body=body, headers=self._headers())
        data = self._parse(answer)
        message_id = _message_id(data)
        if not message_id:
            raise self.malformed(answer, "no message id in GoSMS's answer")
        # 200 means GoSMS stored the message with status 0 ("waiting for
        # processing"): it sits in the GoSMS cloud until one of the customer's
        # phones is online and takes it. Nothing has left a SIM yet, so the
        # truthful status is "queued", not "sent"; get_status() tells more.
        return SendResult(
            message_id=message_id, status=QUEUED, provider_status="", raw=_clean(data)
        )

    def _phone(self, e164: str) -> str:
        match = _E164.fullmatch(e164 or "")
        if match is None:
            # The number itself is kept out of the text (no phones in the audit
            # text or in logs); the Message row has it.
            raise self.rejected(
                None,
                "unsupported_number",
                "GoSMS needs an E.164 number of 3 to 30 digits (sent without the +).",
            )
        return match.group(1)

    def _message(self, sms: OutgoingSms) -> str:
        # Error 2002: "Backtick symbols are not allowed". A backtick is only
        # ever template punctuation, never part of a code, so it is swapped
        # for an apostrophe rather than losing the SMS.
        text = (sms.text or "").replace("`", "'")
        if not text.strip():
            raise self.rejected(None, "empty_message", "GoSMS needs a message text.")
        if len(text) > MAX_MESSAGE_LENGTH:
            # Cutting the text could cut the code off: refuse before sending.
            raise self.rejected(
                None,
                "message_too_long",
                f"GoSMS takes at most {MAX_MESSAGE_LENGTH} characters; the SMS "
                f"template renders {len(text)}.",
            )
        return text

    # ---------------------------------------------------------------- status

    def get_status(self, message_id: str) -> SendResult:
        """Look up a message with ``POST /sms/get``.

        :returns: a :class:`SendResult` whose ``status`` is GoSMS's ``status``
            normalized (0, 1 → queued; 2 → sent; 4 → delivered; 3, 5 → failed;
            anything else → unknown) and whose ``provider_status`` is GoSMS's
            own value as a string (``"4"``).
        :raises ProviderRejected: unknown id (1008), a token without the
            "read" permission (``provider_code="auth"``), other refusals.
        :raises ProviderUnavailable: GoSMS could not answer (timeouts, 429, 5xx,
            an answer we cannot read).
        """
        message_id = str(message_id or "").strip()
        if not message_id:
            raise self.rejected(None, "invalid_message_id", "No GoSMS message id to look up.")
        answer = self.call(
            "POST", "/sms/get", json_body={"id": message_id}, headers=self._headers()
        )
        data = self._parse(answer)
        raw_status = data.get("status")
        if raw_status is None:
            raise self.malformed(answer, "no status in GoSMS's answer")
        number = _as_int(raw_status)
        status = STATUS_MAP.get(number, UNKNOWN) if number is not None else UNKNOWN
        return SendResult(
            message_id=_message_id(data) or message_id,
            status=status,
            provider_status=str(raw_status)[:64],
            raw=_clean(data),
        )

    # -------------------------------------------------------------- webhooks

    def parse_delivery_report(self, body: bytes, content_type: str) -> list[DeliveryReport]:
        """Read a GoSMS webhook call: only the message ids in it.

        The payload is undocumented, so nothing in it is trusted but the id:
        each report has ``needs_lookup`` set and the flows read the status
        with :meth:`get_status` (``POST /sms/get``). A status in the body,
        whatever it says, changes nothing.

        :raises InvalidDeliveryReport: not JSON or a form, or no message id.
        """
        ids: list[str] = []
        for record in reports.records(reports.decode_body(body, content_type)):
            message_id = _callback_message_id(record)
            if not message_id:
                raise InvalidDeliveryReport("no message id in the callback")
            if message_id not in ids:
                ids.append(message_id)
        return [DeliveryReport(message_id=i, needs_lookup=True) for i in ids]

    # --------------------------------------------------------------- helpers

    def _headers(self) -> dict[str, str]:
        # Per request rather than on the shared session, so the token exists
        # in exactly one attribute of this object.
        return {"Authorization": f"Bearer {self._token}", "Accept": "application/json"}

    def _parse(self, answer: HttpAnswer) -> dict[str, Any]:
        """The JSON object of a 2xx answer; every other answer raises."""
        if not 200 <= answer.status < 300:
            raise self._error(answer)
        data = answer.json()
        if not isinstance(data, dict):
            raise self.malformed(answer, "GoSMS's answer is not a JSON object")
        if data.get("errors"):
            # Not documented for 2xx, but an answer that says "errors" is a
            # refusal whatever its status.
            raise self._error(answer)
        return data

    def _error(self, answer: HttpAnswer) -> ProviderRejected | ProviderUnavailable:
        """Map one of GoSMS's error answers to a provider error.

        The HTTP status decides permanent vs transient; GoSMS's ``code`` only
        refines it. Its docs disagree with themselves (the 400 example shows
        2008 for a bad phone, the table says 2001), so an unknown code is kept
        for the audit and otherwise ignored.
        """
        code, text = _error_detail(answer)
        text = text or f"HTTP {answer.status}: {summarize_body(answer.text)}"
        status = answer.status
        transient = status == 429 or status >= 500
        if status == 401 or (code in AUTH_CODES and not transient):
            return self.rejected(answer, "auth", text)
        if code in QUOTA_CODES and not transient:
            return ProviderUnavailable(
                provider=self.alias,
                provider_code=code,
                provider_text=self.redact(text),
                http_status=status,
                may_have_sent=False,
            )
        if 200 <= status < 300:
            return self.rejected(answer, code or "error", text)
        error = self.http_error(answer, provider_code=code, provider_text=text)
        if status == 429 and isinstance(error, ProviderUnavailable) and error.retry_after is None:
            error.context["retry_after"] = DEFAULT_RETRY_AFTER
        return error


# ------------------------------------------------------------------ helpers


def _check_token(token: object, alias: str) -> str:
    # Whitespace around the value is forgiven (a trailing newline from an env
    # file); whitespace inside it is not: it would end up in a header, and a
    # "Bearer " prefix pasted into the setting would be sent twice. A JWT is
    # ASCII; anything else could not even be encoded into the header.
    value = token.strip() if isinstance(token, str) else ""
    if (
        not value
        or not value.isascii()
        or any(ch.isspace() or not ch.isprintable() for ch in value)
    ):
        raise Sms2faConfigurationError(
            f"SMS provider {alias!r}: GoSMSProvider's 'token' option must be the "
            f"API instance's JWT from cms.gosms.ru (without 'Bearer ').",
            check_id="sms2fa.E002",
        )
    return value


def _check_object_id(value: object, option: str, alias: str) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str) or _OBJECT_ID.fullmatch(value) is None:
        # The value is not echoed: error texts end up in logs and check output.
        raise Sms2faConfigurationError(
            f"SMS provider {alias!r}: GoSMSProvider's {option!r} option must be a "
            f"24-character hexadecimal ObjectID (as shown in the GoSMS panel).",
            check_id="sms2fa.E002",
        )
    return value


def _check_to_sim(value: object, device_id: str | None, alias: str) -> int | None:
    if value is None or value == "":
        return None
    number = _as_int(value)
    if number is None or number < 0:
        raise Sms2faConfigurationError(
            f"SMS provider {alias!r}: GoSMSProvider's 'to_sim' option must be a "
            f"SIM slot number (a whole number, 0 or more).",
            check_id="sms2fa.E002",
        )
    if device_id is None:
        # GoSMS's CLI refuses --sim without --device; an option that would be
        # silently dropped is a mistake in settings.
        raise Sms2faConfigurationError(
            f"SMS provider {alias!r}: GoSMSProvider's 'to_sim' option needs "
            f"'device_id' (a SIM slot only means something on one phone).",
            check_id="sms2fa.E002",
        )
    return number


def _as_int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        return int(value.strip())
    return None


def _message_id(data: dict[str, Any]) -> str:
    value = data.get("id")
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return ""
    return str(value).strip()[:128]


def _callback_message_id(record: dict[str, Any]) -> str:
    message_id = reports.first_message_id(record, _CALLBACK_ID_KEYS)
    if message_id:
        return message_id
    for key in _CALLBACK_WRAPPERS:
        inner = record.get(key)
        if isinstance(inner, dict):
            message_id = reports.first_message_id(inner, _CALLBACK_ID_KEYS)
            if message_id:
                return message_id
    return ""


def _clean(data: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in data.items() if key not in _DROPPED_FIELDS}


def _error_detail(answer: HttpAnswer) -> tuple[str, str]:
    """GoSMS's error ``code`` (as text) and a one-line text for the audit."""
    data = answer.json()
    errors = data.get("errors") if isinstance(data, dict) else None
    if isinstance(errors, list) and errors:
        errors = errors[0]
    if not isinstance(errors, dict):
        return "", ""
    code = errors.get("code")
    code = "" if code is None or isinstance(code, bool) else str(code).strip()[:16]
    message = " ".join(str(errors.get("message") or "").split())
    reference = str(errors.get("hash") or "").strip()[:32]
    text = f"GoSMS error {code or '?'}: {message or '(no message)'}"
    if reference:
        text += f" (hash {reference})"
    return code, text
