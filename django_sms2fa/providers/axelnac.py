"""AxelNAC: the code travels as a guest password, sent by SMS by the NAC.

AxelNAC is a network access control system (a PacketFence derivative) run on
the customer's own premises. It is not an OTP API. What it offers is "send a
guest user's credentials by SMS" (docs.axel.pro, entry 188;
docs/providers/axelnac.md): we give it a guest account (``pid``) and a password,
and the NAC texts that password, through its own SMS gateway and auth source
(``source_id``), to the telephone number stored on the guest's record. This
client uses that as mode (b) of docs/providers/modes.md: **we make the code, the
NAC carries it as the guest password, and we check it locally**
(``Capabilities(accepts_code=True)``). The NAC never checks our codes.

Consequences the code below depends on:

* **The number is the NAC's, not ours.** ``sms.to`` is never sent; the SMS
  goes to whatever phone the guest record holds. A code delivered that way
  proves possession of the NAC-registered phone, never of the number the user
  typed, so this provider refuses the phone-enrolment purposes
  (``verify_phone``, ``change_phone``) instead of "verifying" a number it
  cannot reach.
* **The code is a password here.** It must not reach ``raw``, logs or error
  texts. It is scrubbed from every text this module builds; the API password
  and every API token are registered with :meth:`add_secrets`. (Codes are not
  registered there: that registry is process-wide and never shrinks, so one
  entry per SMS would grow without bound and blank out unrelated numbers.)
* **The guest account comes from ``pid_resolver``** (a dotted path to a
  callable ``(sms) -> str``), by default the Django username
  (``sms.username``). No pid, no HTTP call: ``ProviderRejected("no_pid")``.

The API, quoted where the code depends on it (PacketFence's API, as
docs/providers/axelnac.md describes it; AxelNAC-only facts from entry 188):

* ``POST /api/v1/login`` ``{"username", "password"}`` → ``200 {"token": …}``;
  ``401 {"message": "Wasn't able to authenticate those credentials"}``;
  ``400`` with a plain-text body for malformed JSON.
* ``Authorization: Bearer <token>`` on every other call. "the token stays
  valid up to 12 hours with continuous use; use is continuous when requests
  are at most 15 minutes apart" (entry 188, translated). So the token is cached
  and renewed once it has been idle 14 minutes or is 11.5 hours old; each
  successful call refreshes its idle timer (PacketFence's TouchTokenInfo).
* A missing or expired token → ``401 {"message": "Invalid token. Login again
  using /api/v1/login"}``, answered by the auth layer *before* the handler
  runs: the request was not processed, so logging in again and repeating it
  once is not a blind re-send. A second 401 is a permanent ``auth`` error.
* ``POST /api/v1/sms_gateways/send_user_credentials`` with
  ``{"args": {"pid", "password", "source_id"}}``. Its answer is undocumented
  [guess]: any 2xx means accepted; errors are expected in PacketFence's
  ``render_error`` shape ``{"message", "errors": [{"field", "message"}],
  "status"}`` with 400/404/422/500.
* Self-signed certificates are the norm on premises: point ``ca_bundle`` at
  the NAC's CA. TLS verification cannot be switched off.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from django.utils.module_loading import import_string

from ..exceptions import (
    ProviderError,
    ProviderRejected,
    ProviderUnavailable,
    Sms2faConfigurationError,
)
from ..types import SENT, Capabilities, OutgoingSms, SendResult
from .http import REDACTED, HttpAnswer, HttpProvider, summarize_body

__all__ = ["AxelNACProvider"]

LOGIN_PATH = "/api/v1/login"
SEND_PATH = "/api/v1/sms_gateways/send_user_credentials"

#: The NAC drops a token after 15 minutes idle and 12 hours in all (entry
#: 188); renew a little before either, so a call never races the expiry.
TOKEN_IDLE_RENEWAL = 14 * 60.0
TOKEN_MAX_AGE_RENEWAL = 11.5 * 3600.0

#: A code sent to the NAC's number proves nothing about the number the user
#: typed, so the purposes that verify a typed number are refused.
REFUSED_PURPOSES = frozenset({"verify_phone", "change_phone"})

#: Keys dropped from ``raw`` whatever their value.
_SECRET_KEYS = frozenset({"password", "passwd", "pass", "token", "secret", "api_key"})

PidResolver = Callable[[OutgoingSms], str]


class AxelNACProvider(HttpProvider):
    """Sends our code as an AxelNAC guest's password; the NAC texts it.

    Options (keyword-only): ``base_url`` (required, e.g.
    ``https://nac.example:9999``), ``username``, ``password``, ``source_id``
    (all required), ``pid_resolver`` (dotted path, default: the username),
    plus the :class:`HttpProvider` options (``ca_bundle``, timeouts …).
    """

    provider_name = "AxelNAC"
    # On premises: there is no public default, so base_url is required.
    default_base_url = ""
    capabilities = Capabilities(accepts_code=True)

    def __init__(
        self,
        *,
        username: str,
        password: str,
        source_id: str,
        base_url: str | None = None,
        pid_resolver: str | PidResolver | None = None,
        alias: str = "default",
        **options: Any,
    ) -> None:
        if not base_url:
            raise Sms2faConfigurationError(
                f"SMS provider {alias!r} (AxelNAC): the base_url option is required: "
                f"the NAC's API address, e.g. https://nac.example:9999.",
                check_id="sms2fa.E002",
            )
        for name, value in (("username", username), ("password", password)):
            if not isinstance(value, str) or not value:
                raise Sms2faConfigurationError(
                    f"SMS provider {alias!r} (AxelNAC): the {name} option must be a "
                    f"non-empty string.",
                    check_id="sms2fa.E002",
                )
        if isinstance(source_id, int) and not isinstance(source_id, bool):
            source_id = str(source_id)
        if not isinstance(source_id, str) or not source_id:
            raise Sms2faConfigurationError(
                f"SMS provider {alias!r} (AxelNAC): the source_id option must name the "
                f"NAC's SMS authentication source.",
                check_id="sms2fa.E002",
            )
        if pid_resolver is not None and not (
            callable(pid_resolver) or isinstance(pid_resolver, str)
        ):
            raise Sms2faConfigurationError(
                f"SMS provider {alias!r} (AxelNAC): pid_resolver must be a dotted path "
                f"to a callable.",
                check_id="sms2fa.E002",
            )
        super().__init__(alias=alias, base_url=base_url, **options)
        # Paths below start with /api/v1; accept a base_url that already has it.
        if self.base_url.endswith("/api/v1"):
            self.base_url = self.base_url[: -len("/api/v1")]
        self.username = username
        self._password = password
        self.source_id = source_id
        self.add_secrets(password)
        self._pid_resolver_option = pid_resolver or ""
        self._pid_resolver: PidResolver | None = pid_resolver if callable(pid_resolver) else None

        # The API token, shared by every thread using this (cached) instance.
        # Times come from _clock, which tests replace to move time.
        self._clock: Callable[[], float] = time.monotonic
        self._token_lock = threading.Lock()
        self._token = ""
        self._token_born = 0.0
        self._token_used = 0.0

    # ------------------------------------------------------------- sending

    def _send(self, sms: OutgoingSms) -> SendResult:
        if sms.purpose in REFUSED_PURPOSES:
            raise self.rejected(
                None,
                "unsupported_purpose",
                f"AxelNAC texts the phone stored on the guest record, so it cannot "
                f"verify a typed number ({sms.purpose}).",
            )
        if not sms.code:
            raise self.rejected(None, "no_code", "AxelNAC only carries a code made by us.")
        pid = self._pid_for(sms)
        if not pid:
            raise self.rejected(
                None,
                "no_pid",
                "No AxelNAC guest account (pid) for this SMS: no username, and no "
                "pid_resolver answer.",
            )
        body = {"args": {"pid": pid, "password": sms.code, "source_id": self.source_id}}
        try:
            answer = self._authorised_post(SEND_PATH, body)
            return self._result(answer, sms.code)
        except ProviderError as err:
            # Every text we raise has been scrubbed already; this also covers
            # transport errors raised inside call().
            err.provider_text = self._scrub(err.provider_text, sms.code)[:500]
            raise

    def _result(self, answer: HttpAnswer, code: str) -> SendResult:
        if not 200 <= answer.status < 300:
            raise self._answer_error(answer, code)
        # [guess] The success body is undocumented: JSON object or nothing at
        # all means accepted; an HTML page or other text means we did not
        # reach the API as expected (may have sent: the challenge stays open).
        data: Any = {}
        if answer.text.strip():
            data = answer.json()
            if not isinstance(data, dict):
                raise self._scrubbed(self.malformed(answer, "not a JSON object"), code)
        if _embedded_error(data):
            # A 2xx that carries a render_error body: the NAC says it refused.
            raise self.rejected(answer, _embedded_status(data), self._message(answer, code))
        message_id = _message_id(data)
        if code and code in message_id:
            message_id = ""
        return SendResult(
            message_id=message_id,
            status=SENT,
            provider_status="accepted",
            raw=self._clean(data, code),
        )

    def _answer_error(self, answer: HttpAnswer, code: str) -> ProviderError:
        """A non-2xx answer to the send call (401 handled before this)."""
        text = self._message(answer, code)
        if answer.status == 403:
            # Token valid, but the NAC admin role lacks this action.
            return self.http_error(answer, provider_code="auth", provider_text=f"forbidden: {text}")
        return self.http_error(answer, provider_text=text)

    def _authorised_post(self, path: str, body: Any) -> HttpAnswer:
        """POST with the cached token; on 401 log in again and repeat once."""
        token = self._current_token()
        started = self._clock()
        answer = self._post_with(token, path, body)
        if answer.status == 401:
            # 401 comes from the auth layer before the handler runs: nothing
            # was processed, so one repeat with a fresh token cannot double-send.
            token = self._current_token(stale=token)
            started = self._clock()
            answer = self._post_with(token, path, body)
            if answer.status == 401:
                self._drop_token(token)
                raise ProviderRejected(
                    provider=self.alias,
                    provider_code="auth",
                    provider_text=self.redact(
                        f"token refused twice after a fresh login: {self._message(answer, '')}"
                    ),
                    http_status=401,
                    # Our credentials, not the message: another provider may
                    # well take this SMS.
                    failover=True,
                )
        if 200 <= answer.status < 300:
            self._touch_token(token, started)
        return answer

    def _post_with(self, token: str, path: str, body: Any) -> HttpAnswer:
        return self.call("POST", path, json_body=body, headers={"Authorization": f"Bearer {token}"})

    # ------------------------------------------------------------- the token

    def _current_token(self, *, stale: str = "") -> str:
        """A live token: the cached one, or a new one from /api/v1/login.

        ``stale`` is a token the NAC just refused; if another thread has
        already replaced it, its replacement is used without a new login.
        """
        with self._token_lock:
            now = self._clock()
            token = self._token
            if (
                token
                and token != stale
                and now - self._token_used < TOKEN_IDLE_RENEWAL
                and now - self._token_born < TOKEN_MAX_AGE_RENEWAL
            ):
                return token
            old, self._token = token, ""
            # Held during the login: other threads need its result anyway,
            # and this way only one of them logs in.
            token = self._login()
            if old and old != token:
                # A token travels only in a header, which nothing logs; once
                # replaced it is dead, so the redaction registry can let it go.
                self.forget_secrets(old)
            # Times from before the login: its lifetime may have started then.
            self._token, self._token_born, self._token_used = token, now, now
            return token

    def _touch_token(self, token: str, at: float) -> None:
        with self._token_lock:
            if token == self._token and at > self._token_used:
                self._token_used = at

    def _drop_token(self, token: str) -> None:
        with self._token_lock:
            if token == self._token:
                self._token = ""

    def _login(self) -> str:
        """POST /api/v1/login. No SMS can have gone: every error says so."""
        try:
            answer = self.call(
                "POST",
                LOGIN_PATH,
                json_body={"username": self.username, "password": self._password},
            )
        except ProviderUnavailable as err:
            raise _not_sent(err, "login: ") from None
        if 200 <= answer.status < 300:
            data = answer.json()
            token = data.get("token") if isinstance(data, dict) else None
            if not isinstance(token, str) or not token.strip():
                raise _not_sent(self.malformed(answer, "login answer without a token"), "")
            self.add_secrets(token)
            return token
        text = self._message(answer, "")
        if answer.status == 429 or answer.status >= 500:
            raise _not_sent(self.http_error(answer, provider_text=f"login failed: {text}"), "")
        # 401 bad credentials, 400 malformed request, 403/404/3xx: we cannot
        # log in until an administrator fixes the options. Permanent.
        raise ProviderRejected(
            provider=self.alias,
            provider_code="auth",
            provider_text=self.redact(f"login refused (HTTP {answer.status}): {text}"),
            http_status=answer.status,
            failover=True,  # about this provider's options, not the message
        )

    # ------------------------------------------------------------- the pid

    def _pid_for(self, sms: OutgoingSms) -> str:
        resolver = self._resolver()
        pid = resolver(sms) if resolver is not None else sms.username
        if pid is None:
            return ""
        if not isinstance(pid, str):
            raise Sms2faConfigurationError(
                f"SMS provider {self.alias!r} (AxelNAC): pid_resolver returned "
                f"{type(pid).__name__}, not a str.",
                check_id="sms2fa.E002",
            )
        return pid.strip()

    def _resolver(self) -> PidResolver | None:
        # Imported on first use, not at build time: the resolver's module may
        # import this app (flows, models) itself.
        if self._pid_resolver is None and self._pid_resolver_option:
            path = self._pid_resolver_option
            try:
                resolver = import_string(path)
            except ImportError as err:
                raise Sms2faConfigurationError(
                    f"SMS provider {self.alias!r} (AxelNAC): pid_resolver {path!r} "
                    f"could not be imported: {err}",
                    check_id="sms2fa.E002",
                ) from err
            if not callable(resolver):
                raise Sms2faConfigurationError(
                    f"SMS provider {self.alias!r} (AxelNAC): pid_resolver {path!r} "
                    f"is not callable.",
                    check_id="sms2fa.E002",
                )
            self._pid_resolver = resolver
        return self._pid_resolver

    # ------------------------------------------------------------- texts

    def _scrub(self, text: str, code: str) -> str:
        """``text`` without credentials, tokens or ``code``."""
        text = self.redact(text)
        return text.replace(code, REDACTED) if code else text

    def _scrubbed(self, err: ProviderError, code: str) -> ProviderError:
        err.provider_text = self._scrub(err.provider_text, code)[:500]
        return err

    def _message(self, answer: HttpAnswer, code: str) -> str:
        """The NAC's own words: render_error's message and field errors."""
        data = answer.json()
        parts: list[str] = []
        if isinstance(data, dict):
            if isinstance(data.get("message"), str):
                parts.append(data["message"])
            errors = data.get("errors")
            if isinstance(errors, list):
                for item in errors[:10]:
                    if isinstance(item, dict):
                        field, message = item.get("field", ""), item.get("message", "")
                        parts.append(f"{field}: {message}" if field else str(message))
                    else:
                        parts.append(str(item))
        text = "; ".join(p for p in parts if p) or summarize_body(answer.text)
        return self._scrub(text, code)[:500]

    def _clean(self, value: Any, code: str) -> Any:
        """A copy of an answer for ``raw``: no secret keys, no code, no token."""
        if isinstance(value, dict):
            return {
                str(k): self._clean(v, code)
                for k, v in value.items()
                if str(k).lower() not in _SECRET_KEYS
            }
        if isinstance(value, list):
            return [self._clean(v, code) for v in value]
        if isinstance(value, str):
            return self._scrub(value, code)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and code:
            # An echoed code that lost its leading zeros on the way.
            if str(value).zfill(len(code)) == code:
                return REDACTED
        return value


def _not_sent(err: ProviderError, prefix: str) -> ProviderError:
    """A login error: whatever it was, no SMS went out, so failover is safe."""
    err.may_have_sent = False
    err.provider_text = f"{prefix}{err.provider_text}"[:500]
    return err


def _embedded_error(data: dict[str, Any]) -> bool:
    status = data.get("status")
    errors = data.get("errors")
    return (isinstance(status, int) and not isinstance(status, bool) and status >= 400) or (
        isinstance(errors, list) and bool(errors)
    )


def _embedded_status(data: dict[str, Any]) -> str:
    status = data.get("status")
    if isinstance(status, int) and not isinstance(status, bool) and status >= 400:
        return str(status)
    return "refused"


def _message_id(data: dict[str, Any]) -> str:
    """[guess] An id if the answer carries one (``id``/``message_id``, or in
    ``item``); otherwise empty: the NAC is not known to return one."""
    for holder in (data, data.get("item")):
        if not isinstance(holder, dict):
            continue
        for key in ("id", "message_id"):
            value = holder.get(key)
            if isinstance(value, (str, int)) and not isinstance(value, bool):
                return str(value)[:128]
    return ""
