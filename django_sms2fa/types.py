"""Plain values passed between flows and providers.

Providers know nothing of models or settings: they receive an
:class:`OutgoingSms` and return a :class:`SendResult`. Fields that may carry a
code are excluded from ``repr`` so that a value printed in a traceback or a log
line never shows one.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

# The closed list of normalized message statuses (docs/howto/webhooks.md).
QUEUED = "queued"
SENT = "sent"
DELIVERED = "delivered"
FAILED = "failed"
UNKNOWN = "unknown"
MESSAGE_STATUSES = (QUEUED, SENT, DELIVERED, FAILED, UNKNOWN)
# Statuses after which a provider has nothing more to say about a message.
FINAL_STATUSES = (DELIVERED, FAILED)

# How a code reaches the phone. "sms" everywhere; "call" (a voice call that
# reads the code) and "whatsapp" only through providers that declare them.
SMS = "sms"
CALL = "call"
WHATSAPP = "whatsapp"
CHANNELS = (SMS, CALL, WHATSAPP)


@dataclass(frozen=True)
class Capabilities:
    """What a provider can do; flows pick the strongest mode from this.

    - ``delivers_text``: sends the text we give it (we make and check the code).
    - ``accepts_code``: takes our code and writes its own text around it.
    - ``returns_code``: makes a code itself and tells us what it was.
    - ``verifies_code``: keeps the code and checks it (``check_code``).
    - ``max_code_length``: the longest code the provider accepts from us.
    - ``channels``: how it can reach the phone (:data:`CHANNELS`); ``sms``
      unless the provider also calls or writes on WhatsApp.
    """

    delivers_text: bool = False
    accepts_code: bool = False
    returns_code: bool = False
    verifies_code: bool = False
    max_code_length: int | None = None
    channels: frozenset[str] = frozenset({SMS})

    def __post_init__(self) -> None:
        unknown = set(self.channels) - set(CHANNELS)
        if unknown or not self.channels:
            raise ValueError(f"Capabilities.channels must be a non-empty subset of {CHANNELS}")

    def takes_our_code(self, length: int) -> bool:
        fits = self.max_code_length is None or length <= self.max_code_length
        return (self.delivers_text or self.accepts_code) and fits


@dataclass(frozen=True)
class OutgoingSms:
    """One SMS to hand to a provider.

    ``to`` is E.164 (``+46701234567``); providers reformat it as their API wants.
    ``text`` is the full message and ``code`` the code alone (for providers that
    take only the code). ``code`` is empty when the provider makes the code;
    ``code_length`` and ``ttl`` (seconds) then tell it what to make.
    ``username`` is the user's username where there is a user (AxelNAC maps it
    to a guest account).
    """

    to: str
    text: str = field(default="", repr=False)
    code: str = field(default="", repr=False)
    purpose: str = ""
    reference: str = ""  # our challenge id, for providers that echo a reference
    language: str = ""
    code_length: int = 6
    ttl: int = 300
    username: str = ""
    #: How to reach the phone (:data:`CHANNELS`); the flows only ask a provider
    #: for a channel its ``capabilities.channels`` declares.
    channel: str = SMS


@dataclass
class SendResult:
    """What one provider made of one :class:`OutgoingSms`.

    ``returned_code`` is set only by providers that make the code themselves;
    flows hash it on arrival and drop it. ``raw`` keeps the provider's answer for
    debugging and the audit and must already be free of secrets and codes.
    """

    message_id: str = ""
    status: str = SENT
    provider_status: str = ""
    raw: Any = field(default=None, repr=False)
    returned_code: str = field(default="", repr=False)
    latency_ms: int | None = None

    def __post_init__(self) -> None:
        if self.status not in MESSAGE_STATUSES:
            raise ValueError(
                f"SendResult.status must be one of {MESSAGE_STATUSES}, not {self.status!r}"
            )

    def without_code(self) -> SendResult:
        return dataclasses.replace(self, returned_code="")


@dataclass(frozen=True)
class ClientInfo:
    """Who asked, for limits and the audit. Edges build it from the request."""

    ip: str | None = None
    user_agent: str = ""


@dataclass(frozen=True)
class DeliveryReport:
    """One status update a provider pushed to our webhook, as its parser read it.

    ``needs_lookup`` marks a report that only names the message (GoSMS
    callbacks): its ``status`` means nothing, and the flows read the real one
    with the provider's ``get_status()`` before changing anything. ``at`` is
    when the provider says the status changed, if it says so.
    """

    message_id: str
    status: str = UNKNOWN
    provider_status: str = ""
    at: datetime | None = None
    needs_lookup: bool = False

    def __post_init__(self) -> None:
        if self.status not in MESSAGE_STATUSES:
            raise ValueError(
                f"DeliveryReport.status must be one of {MESSAGE_STATUSES}, not {self.status!r}"
            )
        if not isinstance(self.message_id, str) or not self.message_id:
            raise ValueError("DeliveryReport.message_id must be a non-empty string")
