"""A test provider that keeps every SMS in a module-level ``outbox``.

Like ``django.core.mail.outbox``: tests read ``locmem.outbox`` to find the code
a user would have received. It can play each provider mode
(``mode="text"`` — we make the code and it delivers our text; ``"code"`` — it
takes only our code; ``"returns_code"`` — it makes the code and returns it;
``"verifies_code"`` — it makes the code and checks it itself), and it can be
told to fail, so tests can simulate an outage::

    from django_sms2fa.providers import locmem
    locmem.fail_next(locmem.ProviderUnavailable("down"), times=2)
"""

from __future__ import annotations

import dataclasses
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any

from django.db import connection

from ..codes import generate_code
from ..exceptions import ProviderError, ProviderUnavailable, Sms2faConfigurationError
from ..types import SENT, Capabilities, OutgoingSms, SendResult
from .base import BaseProvider

__all__ = ["LocmemProvider", "outbox", "maybe_sent", "fail_next", "reset", "ProviderUnavailable"]


@dataclass
class SentSms:
    """One SMS in the outbox. ``code`` is what the phone's owner would read."""

    alias: str
    to: str
    text: str = field(repr=False)
    code: str = field(repr=False)
    message_id: str
    purpose: str
    # Whether a DB transaction was open when the provider was called; tests use
    # it to prove the flows never call a provider inside one.
    in_transaction: bool
    channel: str = "sms"


outbox: list[SentSms] = []
#: SMS whose send failed with ``may_have_sent`` (a timeout after sending): the
#: phone may or may not have got them. Tests use it to check that what may
#: arrive carries the same code as what surely arrives.
maybe_sent: list[SentSms] = []
_failures: list[ProviderError] = []
# (phone, message id) -> code, for the "verifies_code" mode
_provider_codes: dict[tuple[str, str], str] = {}
_lock = threading.Lock()

MODES = {
    "text": Capabilities(delivers_text=True),
    "code": Capabilities(accepts_code=True),
    "returns_code": Capabilities(returns_code=True),
    "verifies_code": Capabilities(verifies_code=True),
}


def fail_next(error: ProviderError, times: int = 1) -> None:
    """Make the next ``times`` sends (by any locmem provider) raise ``error``."""
    with _lock:
        _failures.extend([error] * times)


def reset() -> None:
    """Empty the outbox and forget pending failures and provider-kept codes."""
    with _lock:
        outbox.clear()
        maybe_sent.clear()
        _failures.clear()
        _provider_codes.clear()


def _in_transaction() -> bool:
    # Ignore the atomic blocks Django's TestCase wraps every test in.
    return any(not getattr(block, "_from_testcase", False) for block in connection.atomic_blocks)


class LocmemProvider(BaseProvider):
    provider_name = "Local memory"

    def __init__(
        self,
        *,
        alias: str = "default",
        mode: str = "text",
        code_length: int = 6,
        channels: tuple[str, ...] = ("sms",),
        **options: Any,
    ) -> None:
        super().__init__(alias=alias, **options)
        if mode not in MODES:
            raise Sms2faConfigurationError(
                f"LocmemProvider's mode option must be one of {sorted(MODES)}.",
                check_id="sms2fa.E002",
            )
        self.mode = mode
        self.code_length = code_length
        # Per instance: the class attribute is the "text" default.
        try:
            self.capabilities = dataclasses.replace(MODES[mode], channels=frozenset(channels))
        except (TypeError, ValueError) as err:
            raise Sms2faConfigurationError(
                f"LocmemProvider's channels option: {err}", check_id="sms2fa.E002"
            ) from None

    def _send(self, sms: OutgoingSms) -> SendResult:
        with _lock:
            failure = _failures.pop(0) if _failures else None
        if failure is not None:
            if getattr(failure, "may_have_sent", False) and sms.code:
                with _lock:
                    maybe_sent.append(self._sms(sms, sms.code, "", sms.text))
            raise failure
        code = sms.code
        returned = ""
        if self.mode in ("returns_code", "verifies_code"):
            code = generate_code(self.code_length)
            returned = code if self.mode == "returns_code" else ""
        message_id = uuid.uuid4().hex
        text = sms.text if self.mode == "text" else f"Your code: {code}"
        with _lock:
            if self.mode == "verifies_code":
                _provider_codes[(sms.to, message_id)] = code
            outbox.append(self._sms(sms, code, message_id, text))
        return SendResult(message_id=message_id, status=SENT, returned_code=returned)

    def _sms(self, sms: OutgoingSms, code: str, message_id: str, text: str) -> SentSms:
        return SentSms(
            alias=self.alias,
            to=sms.to,
            text=text,
            code=code,
            message_id=message_id,
            purpose=sms.purpose,
            in_transaction=_in_transaction(),
            channel=sms.channel,
        )

    def check_code(self, *, phone: str, code: str, message_id: str = "") -> bool:
        if self.mode != "verifies_code":
            return super().check_code(phone=phone, code=code, message_id=message_id)
        with _lock:
            failure = _failures.pop(0) if _failures else None
            if failure is not None:
                raise failure
            # One-time, as real provider-side checks are. Like iP1, it keeps
            # every live code of a phone; a message id narrows it to one SMS.
            for (to, sent_id), kept in list(_provider_codes.items()):
                if to == phone and kept == code and message_id in ("", sent_id):
                    del _provider_codes[(to, sent_id)]
                    return True
            return False
