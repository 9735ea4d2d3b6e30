"""iP1 SMS (ip1sms.com, Sweden): provider-side codes through the v1 authentications API.

Mode (d) only: iP1 makes the code, texts it, keeps it and checks it
(``POST /api/authentications/validate``). It never tells us the code, so
challenges armed for this provider have ``checked_by == "provider"`` and no
``code_hash``. Our own limits (expiry, attempts, single use) still apply on top
of iP1's: the flows refuse a guess before this module is ever asked.

The API, as its ASP.NET Web API help pages describe it (docs/providers/ip1.md):

* ``https://api.ip1sms.com``, JSON bodies, HTTP Basic auth with
  ``accountId:apiKey`` (e.g. ``ip1-12345:key``). The newer ``/v2`` API uses a
  Bearer token instead and has no authentications endpoints.
* ``POST /api/authentications`` with ``{"Phone", "From", "MessageFormat",
  "Length", "ExpirationTime", "NumericOnly"}`` -- only ``Phone`` is required --
  answers 200 with an ``AuthenticationDTO {ID, Phone, Created, HasExpired,
  Expires, IsUsed, Used}``. "The code is not returned."
* ``POST /api/authentications/validate`` with ``{"Phone", "Code"}`` answers 200
  ``{"Valid": bool, "Authentication": AuthenticationDTO|null, "Phone", "Code"}``;
  a successful validation marks the authentication used (one-time).
* Errors are undocumented; ASP.NET Web API answers 400 ``{"Message": "The
  request is invalid.", "ModelState": {"authentication.Phone": [...]}}`` for bad
  fields and 401 ``{"Message": "Authorization has been denied for this
  request."}`` for bad credentials.

Quirks the code depends on are quoted where they matter.
"""

from __future__ import annotations

import base64
import json
import logging
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

logger = logging.getLogger("django_sms2fa.providers")

CREATE_PATH = "/api/authentications"
VALIDATE_PATH = "/api/authentications/validate"

DEFAULT_MESSAGE_FORMAT = "Your verification code is {0}"

# "Length": "SMS authentication code length, default 5", minimum 3, maximum 25.
MIN_LENGTH, MAX_LENGTH = 3, 25
# "ExpirationTime": "Amount of time (in seconds) until the SMS authentication
# expires, default 1200", minimum 1, maximum 86400.
MIN_EXPIRATION, MAX_EXPIRATION = 1, 86400
# E.164 allows at most 15 digits; iP1's v2 API refuses longer recipients too.
MAX_PHONE_DIGITS = 15
# A GSM alphanumeric sender id holds at most 11 characters; a numeric one is
# a phone number (at most 15 digits).
MAX_ALPHA_SENDER = 11

_CODE_KEYS = frozenset({"code"})

# iP1's message status codes (ip1sms.com support: "When you send SMS they get
# different statuses, what do these mean?"). Four blocks: 1xx "Info" (where
# along the pipeline the message is), 2xx "Success" (it ended in a defined
# way, which includes Expired and Canceled), 4xx "Rejection" (something is
# wrong with the message itself), 5xx "Error" (undeliverable and other
# errors). Named codes keep their name in ``provider_status``.
STATUS_CODES: dict[int, tuple[str, str]] = {
    101: ("Accepted", QUEUED),
    102: ("Queued", QUEUED),
    103: ("Funded", QUEUED),
    104: ("Refunded", QUEUED),
    110: ("Sending", QUEUED),
    111: ("DeliveredToGateway", SENT),
    112: ("DeliveredToCarrier", SENT),
    113: ("DeliveredToGSM", SENT),
    114: ("QueuedAtGateway", SENT),
    201: ("DeliveredToHandset", DELIVERED),
    202: ("Expired", FAILED),
    203: ("Canceled", FAILED),
    402: ("InsufficientFunds", FAILED),
}


class IP1Provider(HttpProvider):
    """iP1's v1 SMS authentications: iP1 makes, sends and checks the code.

    :param account_id: the iP1 account id (``ip1-12345``), the Basic-auth user.
    :param api_key: the account's API key, the Basic-auth password.
    :param sender: ``From``, a name (at most 11 characters) or a number; iP1's
        default (``iP1``) when empty.
    :param message_format: the SMS text; ``{0}`` is replaced by the code.
    """

    provider_name = "iP1"
    default_base_url = "https://api.ip1sms.com"
    capabilities = Capabilities(verifies_code=True)

    def __init__(
        self,
        *,
        account_id: str,
        api_key: str,
        sender: str = "",
        message_format: str = DEFAULT_MESSAGE_FORMAT,
        alias: str = "default",
        **options: Any,
    ) -> None:
        super().__init__(alias=alias, **options)
        for name, value in (("account_id", account_id), ("api_key", api_key)):
            if not isinstance(value, str) or not value.strip():
                # Name the option, never its value.
                raise Sms2faConfigurationError(
                    f"IP1Provider (provider {alias!r}) needs a non-empty {name} option.",
                    check_id="sms2fa.E002",
                )
        self.sender = _check_sender(sender, alias)
        self.message_format = _check_message_format(message_format, alias)
        token = base64.b64encode(f"{account_id}:{api_key}".encode()).decode("ascii")
        # The base64 token is as good as the key itself: redact it too.
        self.add_secrets(api_key, account_id, token)
        self._headers = {
            "Authorization": f"Basic {token}",
            # ASP.NET Web API negotiates the answer's format; ask for JSON
            # rather than risk its XML formatter.
            "Accept": "application/json",
        }

    # ------------------------------------------------------------- sending

    def _send(self, sms: OutgoingSms) -> SendResult:
        body: dict[str, Any] = {
            "Phone": self._msisdn(sms.to),
            "MessageFormat": self.message_format,
            "Length": _clamp(sms.code_length, MIN_LENGTH, MAX_LENGTH),
            "ExpirationTime": _clamp(sms.ttl, MIN_EXPIRATION, MAX_EXPIRATION),
            # iP1's default is false: letters would make codes nobody can
            # type into a digits-only field (codes.clean_submitted_code).
            "NumericOnly": True,
        }
        if self.sender:
            body["From"] = self.sender
        answer = self.call("POST", CREATE_PATH, json_body=body, headers=self._headers)
        if not 200 <= answer.status < 300:
            raise self._error(answer)
        data = answer.json()
        if not isinstance(data, dict):
            raise self.malformed(answer, "not an AuthenticationDTO")
        auth_id = data.get("ID")
        if isinstance(auth_id, bool) or auth_id is None or not str(auth_id).strip():
            raise self.malformed(answer, "no authentication ID")
        return SendResult(
            message_id=str(auth_id).strip(),
            status=SENT,
            provider_status="created",
            raw=_without_codes(data),
        )

    # ------------------------------------------------------------- checking

    def check_code(self, *, phone: str, code: str, message_id: str = "") -> bool:
        """Ask iP1 whether ``code`` is the one it sent to ``phone``.

        :param message_id: the authentication ``ID`` the SMS was sent under;
            when given and iP1 names another authentication, the code is
            refused (it belongs to another challenge for the same phone).
        :returns: ``True`` only when iP1 answers ``"Valid": true``; ``False``
            for ``Valid: false`` and for 4xx answers other than 401/403/429.
        :raises ProviderUnavailable: network failure, 429, 5xx, an answer we
            cannot read.
        :raises ProviderRejected: 401/403 (the credentials are wrong: no code
            could ever be checked, so this is not the user's mistake).
        """
        msisdn = self._msisdn(phone)
        answer = self.call(
            "POST",
            VALIDATE_PATH,
            json_body={"Phone": msisdn, "Code": code},
            headers=self._headers,
        )
        # The validate answer echoes "Code" (and the phone): scrub both before
        # any of it reaches an error text or a log line.
        scrubbed = _scrub_answer(answer, code=code, phone=msisdn)
        if 400 <= answer.status < 500 and answer.status not in (401, 403, 429):
            # docs/providers/ip1.md, "Errors": a 4xx answer is a verdict on the
            # code. 401/403 (credentials) and 429 (throttled) are not.
            logger.info(
                "sms2fa: iP1 (%s) answered HTTP %s to a code check; counted as a wrong code: %s",
                self.alias,
                answer.status,
                self.redact(_error_text(scrubbed) or summarize_body(scrubbed.text)),
            )
            return False
        if not 200 <= answer.status < 300:
            # 401/403 permanent, 429/5xx transient, a 3xx (never followed) permanent.
            raise self._error(scrubbed)
        data = answer.json()
        valid = data.get("Valid") if isinstance(data, dict) else None
        if not isinstance(valid, bool):
            raise self.malformed(scrubbed, "no Valid flag in the validation answer")
        if not valid:
            return False
        authentication = data.get("Authentication")
        checked_id = authentication.get("ID") if isinstance(authentication, dict) else None
        if message_id and checked_id is not None and str(checked_id) != str(message_id):
            # iP1 validates by phone and keeps several authentications active
            # per phone (ConcurrentLimit, default 5): the code was right for
            # another one, not for the SMS this challenge sent.
            logger.warning(
                "sms2fa: iP1 (%s) accepted a code of another authentication; refused",
                self.alias,
            )
            return False
        return True

    # ------------------------------------------------------ delivery reports

    def parse_delivery_report(self, body: bytes, content_type: str) -> list[DeliveryReport]:
        """Read a v2 delivery report POSTed to a ``deliveryReportUrl``.

        ``{"id"|"messageId", "batchId", "recipient", "code", "duration",
        "created", "segments", "price", "currency", "reference"}``: the docs
        name the message id ``id`` on one page and ``messageId`` on another, so
        both are read. A list of such objects is accepted too.

        :raises InvalidDeliveryReport: not JSON, no message id, no status code.
        """
        found: list[DeliveryReport] = []
        for record in reports.records(reports.decode_body(body, content_type)):
            message_id = reports.first_message_id(record, ("messageId", "id"))
            if not message_id:
                raise InvalidDeliveryReport("no message id in the report")
            code = reports.as_int(record.get("code"))
            if code is None:
                raise InvalidDeliveryReport("no status code in the report")
            found.append(
                DeliveryReport(
                    message_id=message_id,
                    status=status_of_code(code),
                    provider_status=_code_label(code),
                    at=reports.parse_time(record.get("created")),
                )
            )
        return found

    # ------------------------------------------------------------- helpers

    def _msisdn(self, e164: str) -> str:
        """``+46701234567`` -> ``46701234567``: iP1 wants digits, no ``+``."""
        digits = e164[1:] if e164.startswith("+") else e164
        if not (digits.isascii() and digits.isdigit()) or not 7 <= len(digits) <= MAX_PHONE_DIGITS:
            raise ProviderRejected(
                provider=self.alias,
                provider_code="unsupported_number",
                provider_text="iP1 takes international numbers of 7 to 15 digits",
            )
        return digits

    def _error(self, answer: HttpAnswer) -> ProviderRejected | ProviderUnavailable:
        """The error for a non-2xx answer (ASP.NET ``HttpError`` bodies understood)."""
        text = _error_text(answer)
        summary = text or summarize_body(answer.text)
        if answer.status in (401, 403):
            # Bad account id or API key, or an account without the service.
            return self.http_error(
                answer, provider_code="auth", provider_text=f"HTTP {answer.status}: {summary}"
            )
        if answer.status == 400:
            data = answer.json()
            state = data.get("ModelState") if isinstance(data, dict) else None
            if isinstance(state, dict) and any("phone" in str(k).lower() for k in state):
                return self.http_error(
                    answer, provider_code="invalid_number", provider_text=summary
                )
            return self.http_error(answer, provider_code="invalid_request", provider_text=summary)
        return self.http_error(answer, provider_text=text)


def status_of_code(code: int) -> str:
    """Our status for an iP1 status code; unnamed codes go by their block."""
    if code in STATUS_CODES:
        return STATUS_CODES[code][1]
    if 400 <= code < 600:
        # "Rejection" and "Error": the message will not be delivered.
        return FAILED
    # An unnamed "Info" or "Success" code says too little to act on.
    return UNKNOWN


def _code_label(code: int) -> str:
    name = STATUS_CODES.get(code, ("", ""))[0]
    return f"{code} {name}".strip()[:64]


def _clamp(value: Any, low: int, high: int) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = low
    return max(low, min(high, number))


def _check_sender(sender: Any, alias: str) -> str:
    if sender is None or sender == "":
        return ""
    value = sender.strip() if isinstance(sender, str) else ""
    numeric = value.removeprefix("+")
    fits = (numeric.isascii() and numeric.isdigit() and len(numeric) <= MAX_PHONE_DIGITS) or (
        0 < len(value) <= MAX_ALPHA_SENDER
    )
    if not fits:
        raise Sms2faConfigurationError(
            f"IP1Provider (provider {alias!r}): sender must be a name of at most "
            f"{MAX_ALPHA_SENDER} characters or a number of at most {MAX_PHONE_DIGITS} digits.",
            check_id="sms2fa.E002",
        )
    return value


def _check_message_format(message_format: Any, alias: str) -> str:
    """Refuse a ``MessageFormat`` iP1 would refuse, or fail on, for every SMS.

    The API page gives the pattern ``^(?=.*\\{0\\}).*$``: ``{0}`` must occur,
    and since ``.`` does not match a line feed the text must be one line. iP1
    is .NET, so the text goes through ``String.Format``: any brace other than
    ``{0}`` must be doubled (``{{``, ``}}``) or formatting fails on their side.
    """
    problem = ""
    if not isinstance(message_format, str):
        problem = "must be a string"
    else:
        # .NET reads escapes left to right, as str.replace does.
        bare = message_format.replace("{{", "").replace("}}", "")
        if "{0}" not in bare:
            problem = "must contain {0}, where iP1 puts the code"
        elif "{" in bare.replace("{0}", "") or "}" in bare.replace("{0}", ""):
            problem = "may hold no braces other than {0} (write {{ and }} for literal ones)"
        elif "\n" in message_format:
            problem = "must be a single line (iP1's pattern ^(?=.*\\{0\\}).*$ stops at a line feed)"
    if problem:
        raise Sms2faConfigurationError(
            f"IP1Provider (provider {alias!r}): message_format {problem}.",
            check_id="sms2fa.E002",
        )
    return message_format


def _without_codes(value: Any) -> Any:
    """``value`` with every ``Code`` field removed, at any depth."""
    if isinstance(value, dict):
        return {k: _without_codes(v) for k, v in value.items() if str(k).lower() not in _CODE_KEYS}
    if isinstance(value, list):
        return [_without_codes(v) for v in value]
    return value


def _scrub_answer(answer: HttpAnswer, *, code: str, phone: str) -> HttpAnswer:
    """The answer with the submitted code and the phone taken out of its text."""
    data = answer.json()
    text = answer.text
    if isinstance(data, (dict, list)):
        text = json.dumps(_without_codes(data), ensure_ascii=False)
    for value, mask in ((code, "[code]"), (phone, "[phone]")):
        if value:
            text = text.replace(value, mask)
    return HttpAnswer(status=answer.status, headers=answer.headers, text=text)


def _error_text(answer: HttpAnswer) -> str:
    """The readable part of an ASP.NET ``HttpError`` body, or ``""``.

    ``{"Message": ..., "MessageDetail": ..., "ExceptionMessage": ...,
    "ModelState": {"authentication.Phone": ["The Phone field is required."]}}``
    """
    data = answer.json()
    if not isinstance(data, dict):
        return ""
    parts = [
        str(data[key]).strip()
        for key in ("Message", "MessageDetail", "ExceptionMessage")
        if isinstance(data.get(key), (str, int, float)) and str(data[key]).strip()
    ]
    state = data.get("ModelState")
    if isinstance(state, dict):
        for field_name, errors in state.items():
            items = errors if isinstance(errors, list) else [errors]
            for error in items:
                parts.append(f"{field_name}: {error}")
    return "; ".join(parts)[:500]
