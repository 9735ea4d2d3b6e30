"""telefon-ip.ru "authcalls": login codes by SMS through ``get_sms_code``.

Modes (b) and (c) (docs/providers/modes.md; the API: docs/providers/telefonip.md):

* **(b) our code** -- ``GET …/get_sms_code/{phone}/?code=NNNN``: "Если нужно
  отправить свой код, необходимо его передать в параметре code", and "Длина кода
  не должна превышать 4 символа" (at most 4 characters). The flows pass our
  code only when it fits (``max_code_length=4``); with the default
  ``CODE_LENGTH`` of 6 it never does, so in practice:
* **(c) its code** -- ``GET …/get_sms_code/{phone}/`` without ``code``:
  "Генерируется случайный четырех значный код" (a random 4-digit code is made).
  The answer carries it in ``data.code``; we return it in
  :attr:`SendResult.returned_code` and the flows hash it on arrival. It is
  never kept anywhere else (not in ``raw``, not in error texts).

There is no verify endpoint, so codes are always checked by us (no mode (d)).

The API (quirks the code depends on):

* ``https://api.telefon-ip.ru/api/v1/authcalls/{token}/{action}/{params}``,
  GET or POST. **The token sits in the URL path**, so every request line is a
  secret: urllib3 prints request paths at DEBUG and puts the URL into its
  exception texts. The shared :class:`~.http.HttpProvider` redacts registered
  secrets (the token); this module also installs a log filter and a
  :meth:`TelefonIPProvider.redact` that blank out everything after
  ``/authcalls/`` except the action name (the token, the phone and
  ``?code=``), and ``"code": …`` fields of echoed bodies.
* Success: HTTP 200 ``{"success": true, "error": "", "data": {"phone":
  "79244501003", "code": "1003", "id": 168}}``. As docs/providers/telefonip.md
  says, we accept a send only with HTTP 2xx, ``success is
  True``, ``data.status`` not ``False``, a message id, and ``data.code`` equal
  to the code we sent (or, when the provider made it, 4 ASCII digits).
* Errors: the same envelope with ``"success": false, "error": "<text>",
  "data": {}``; the docs show 400 ("id record not found") and 401 (bad token).
  There are no error codes, only text: a text mentioning the token means a
  credential problem, reported as the permanent error ``"auth"``.
* Phones: ``8`` + 10 digits (the docs' and every public client's format), so
  only Russian numbers are served (``+7XXXXXXXXXX`` → ``8XXXXXXXXXX``).
* Status: ``GET …/get_status/{id}/`` → ``data {id, created_at, phone, status
  (1 = ok), status_info ("Ok: SIP 200 OK"), price}``.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any
from urllib.parse import quote

from ..exceptions import ProviderError, ProviderRejected, Sms2faConfigurationError
from ..phones import region_of
from ..types import DELIVERED, FAILED, QUEUED, SENT, UNKNOWN, Capabilities, OutgoingSms, SendResult
from .http import REDACTED, HttpAnswer, HttpProvider, summarize_body

__all__ = ["TelefonIPProvider"]

API_PREFIX = "/api/v1/authcalls"
# "Длина кода не должна превышать 4 символа": at most 4 characters.
MAX_CODE_LENGTH = 4
# "Генерируется случайный четырех значный код": the provider's codes have 4 digits.
PROVIDER_CODE_LENGTH = 4

_E164_RU = re.compile(r"\+7([0-9]{10})")
_OUR_CODE = re.compile(rf"[0-9]{{1,{MAX_CODE_LENGTH}}}")
_PROVIDER_CODE = re.compile(rf"[0-9]{{{PROVIDER_CODE_LENGTH}}}")
# Ids are numbers in every example; anything path-safe is tolerated.
_MESSAGE_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")

# Words that mark an error text as a credential problem ("token" as the
# production client checks; "токен" in case the text is Russian).
_AUTH_WORDS = ("token", "токен")

# --------------------------------------------------------------- redaction
#
# Everything after ".../authcalls/" is secret or personal: the token, then the
# action (kept: it says what was done), then the phone or id and ``?code=``.
_PATH = re.compile(r"(/api/v1/authcalls/)([^\s\"'<>?#]*)(\?[^\s\"'<>#]*)?")
_ACTION = re.compile(r"[a-z_]{1,40}")
# ``code=1234`` in a query string that got separated from its path.
_CODE_PARAM = re.compile(r"([?&]code=)[^&\s\"'<>#]*", re.IGNORECASE)
# ``"code": "1003"`` or ``"code": 1003`` in an echoed JSON body.
_CODE_FIELD = re.compile(r"(\"code\"\s*:\s*)(\"[^\"]*\"|-?[0-9][0-9.eE+-]*)", re.IGNORECASE)


def _scrub_path(match: re.Match[str]) -> str:
    parts = match.group(2).split("/")
    action = parts[1] if len(parts) > 1 and _ACTION.fullmatch(parts[1]) else ""
    tail = f"/{action}/{REDACTED}" if action else ""
    return f"{match.group(1)}{REDACTED}{tail}"


def scrub(text: str) -> str:
    """``text`` without authcalls URL paths, ``code=`` parameters or code fields."""
    text = _PATH.sub(_scrub_path, text)
    text = _CODE_PARAM.sub(rf"\1{REDACTED}", text)
    return _CODE_FIELD.sub(rf'\1"{REDACTED}"', text)


def _without_codes(value: Any, redact: Any) -> Any:
    """A copy of a parsed answer with every ``code`` key dropped and strings redacted."""
    if isinstance(value, dict):
        return {
            key: _without_codes(item, redact)
            for key, item in value.items()
            if str(key).lower() != "code"
        }
    if isinstance(value, list):
        return [_without_codes(item, redact) for item in value]
    if isinstance(value, str):
        return redact(value)
    return value


def _blank_codes(text: str, codes: list[str]) -> str:
    for code in codes:
        if code:
            text = re.sub(rf"(?<![0-9]){re.escape(code)}(?![0-9])", REDACTED, text)
    return text


def _status_of(status: Any, info: str) -> str:
    """Our normalized status for ``get_status``'s ``status`` and ``status_info``.

    Only ``status == 1`` ("1 = ok") is documented; the rest is read from the
    text, failure words first ("не доставлено" contains "доставлено").
    """
    text = info.lower()
    if any(word in text for word in ("error", "fail", "ошибк", "не доставл", "reject")):
        return FAILED
    ok = status is not True and str(status).strip() == "1"
    if ok:
        if any(word in text for word in ("deliver", "доставлен")):
            return DELIVERED
        return SENT
    if any(word in text for word in ("queue", "pending", "очеред", "ожида")):
        return QUEUED
    return UNKNOWN


class TelefonIPProvider(HttpProvider):
    """telefon-ip.ru ``get_sms_code``: 4-digit SMS codes, ours or its own.

    Options: ``token`` (required, the API key from the personal account), plus
    the :class:`~.http.HttpProvider` options (``base_url``, ``connect_timeout``,
    ``read_timeout``, ``ca_bundle``, ``connect_retries``,
    ``max_response_bytes``).
    """

    provider_name = "telefon-ip"
    default_base_url = "https://api.telefon-ip.ru"
    capabilities = Capabilities(
        accepts_code=True, returns_code=True, max_code_length=MAX_CODE_LENGTH
    )

    def __init__(self, *, token: str, **options: Any) -> None:
        alias = options.get("alias", "default")
        # Whitespace around it (a trailing newline from an env file) is ignored.
        token = token.strip() if isinstance(token, str) else ""
        if not token:
            raise Sms2faConfigurationError(
                f"TelefonIPProvider (provider {alias!r}): the 'token' option must be a "
                "non-empty string.",
                check_id="sms2fa.E002",
            )
        super().__init__(**options)
        # "https://api.telefon-ip.ru/api/v1/authcalls" as base_url is a natural
        # mistake (it is the documented URL prefix); accept it.
        if self.base_url.endswith(API_PREFIX):
            self.base_url = self.base_url[: -len(API_PREFIX)]
        # The token goes into a path segment; quoted, it may look different
        # from the raw value, and both forms must be redacted.
        self._path_token = quote(token, safe="")
        self.add_secrets(token, self._path_token)

    # ------------------------------------------------------------ redaction

    def redact(self, text: str) -> str:
        """Registered secrets, authcalls URL paths and code fields removed."""
        return scrub(super().redact(text))

    # ------------------------------------------------------------ sending

    def _send(self, sms: OutgoingSms) -> SendResult:
        phone = self.phone_for(sms.to)
        code = sms.code
        if code and not _OUR_CODE.fullmatch(code):
            raise ProviderRejected(
                provider=self.alias,
                provider_code="code_not_accepted",
                provider_text=f"get_sms_code takes codes of 1 to {MAX_CODE_LENGTH} ASCII digits",
            )
        seen = [code]
        try:
            return self._send_code(phone, code, seen)
        except ProviderError as err:
            # Belt and braces: no code we sent or saw survives in the audit text.
            err.provider_text = _blank_codes(err.provider_text, seen)
            raise

    def _send_code(self, phone: str, code: str, seen: list[str]) -> SendResult:
        params = {"code": code} if code else None
        answer, body, data = self._get("get_sms_code", phone, params=params)
        got = data.get("code")
        if isinstance(got, (str, int)) and not isinstance(got, bool):
            seen.append(str(got))
        if data.get("status") is False:
            # The production client: `json?.data?.status === false` is a failure.
            info = data.get("status_info")
            raise self.rejected(answer, "not_sent", str(info) if info else "data.status is false")
        message_id = self._message_id(answer, data)
        if code:
            # We sent our code: the provider must confirm that very code, or the
            # user may receive one we cannot check.
            if got is None or isinstance(got, bool) or str(got) != code:
                raise self.malformed(answer, "data.code is not the code we sent")
            returned = ""
        else:
            if not isinstance(got, str) or not _PROVIDER_CODE.fullmatch(got):
                raise self.malformed(
                    answer, f"data.code is not a {PROVIDER_CODE_LENGTH}-digit code"
                )
            returned = got
        info = data.get("status_info")
        return SendResult(
            message_id=message_id,
            status=SENT,
            provider_status=self.redact(str(info))[:64] if info else "",
            raw=_without_codes(body, self.redact),
            returned_code=returned,
        )

    def get_status(self, message_id: str) -> SendResult:
        """Look up a sent message with ``get_status/{id}/``.

        ``status`` 1 means ok ("Ok: SIP 200 OK"); ``provider_status`` keeps the
        provider's ``status`` and ``status_info`` as they came.

        :raises ProviderRejected: not a message id of this API, unknown id
            (400 "id record not found"), or bad credentials (``"auth"``).
        :raises ProviderUnavailable: the API could not be reached or answered
            something we cannot read.
        """
        message_id = str(message_id)
        if not _MESSAGE_ID.fullmatch(message_id):
            # It goes into the URL path: letters, digits, "-" and "_" only.
            raise ProviderRejected(
                provider=self.alias,
                provider_code="invalid_message_id",
                provider_text="not a telefon-ip message id",
            )
        _answer, body, data = self._get("get_status", message_id)
        status, info = data.get("status"), data.get("status_info")
        info_text = self.redact(str(info)) if info is not None else ""
        raw_status = f"{status} ({info_text})" if info_text else str(status)
        return SendResult(
            message_id=str(data.get("id", message_id)),
            status=_status_of(status, info_text),
            provider_status=raw_status[:64],
            raw=_without_codes(body, self.redact),
        )

    # ------------------------------------------------------------ helpers

    def phone_for(self, e164: str) -> str:
        """``+79244501003`` → ``89244501003``; anything but a Russian number is refused."""
        match = _E164_RU.fullmatch(e164 or "")
        if match is None or region_of(e164) != "RU":
            raise ProviderRejected(
                provider=self.alias,
                provider_code="unsupported_number",
                provider_text="telefon-ip sends to Russian numbers (+7, region RU) only",
            )
        return "8" + match.group(1)

    def _get(
        self, action: str, arg: str, *, params: dict[str, str] | None = None
    ) -> tuple[HttpAnswer, dict[str, Any], dict[str, Any]]:
        """Call ``action`` and return (redacted answer, body, ``data``) of a success."""
        path = f"{API_PREFIX}/{self._path_token}/{action}/{arg}/"
        answer = self.call("GET", path, params=params)
        body = answer.json()
        # Error helpers summarize the body and cut it to length: redact first,
        # so that a secret cut in half by the summary cannot slip through.
        safe = dataclasses.replace(answer, text=self.redact(answer.text))
        error = body.get("error") if isinstance(body, dict) else None
        error_text = self.redact(str(error)).strip() if error else ""
        if not 200 <= answer.status < 300:
            transient = answer.status == 429 or answer.status >= 500
            if not transient and (answer.status in (401, 403) or _mentions_token(error_text)):
                raise self._auth_error(safe, error_text)
            raise self.http_error(safe, provider_text=error_text)
        if not isinstance(body, dict):
            raise self.malformed(safe, "not a JSON object")
        if "success" not in body:
            raise self.malformed(safe, "no 'success' field")
        if body["success"] is False:
            # {"success": false, "error": "<text>", "data": {}}: refused.
            if _mentions_token(error_text):
                raise self._auth_error(safe, error_text)
            raise self.rejected(safe, "refused", error_text or summarize_body(safe.text))
        if body["success"] is not True:
            # "true", 1, null: not what the API promises; the SMS may have gone.
            raise self.malformed(safe, "'success' is not a boolean")
        data = body.get("data")
        if not isinstance(data, dict):
            raise self.malformed(safe, "no 'data' object")
        return safe, body, data

    def _auth_error(self, answer: HttpAnswer, error_text: str) -> ProviderRejected:
        text = error_text or summarize_body(answer.text)
        return self.rejected(answer, "auth", f"HTTP {answer.status}: {text}")

    def _message_id(self, answer: HttpAnswer, data: dict[str, Any]) -> str:
        value = data.get("id")
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise self.malformed(answer, "no message id")
        text = str(value).strip()
        if not _MESSAGE_ID.fullmatch(text):
            raise self.malformed(answer, "no message id")
        return text


def _mentions_token(text: str) -> bool:
    lowered = text.lower()
    return any(word in lowered for word in _AUTH_WORDS)
