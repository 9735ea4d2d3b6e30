"""The example site's SMS provider: the console provider that also remembers.

Every SMS is printed in the terminal running the server, as with
``ConsoleProvider``, and the last ``KEEP`` are kept in this process's memory
for the development outbox page (``/dev/outbox/``, DEBUG only), so a newcomer
can read a code in the browser. ``runserver`` is one process, so memory is
enough; this is a development stand-in for a phone, never for production.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
from datetime import datetime

from django.utils import timezone

from django_sms2fa.providers.console import ConsoleProvider
from django_sms2fa.types import OutgoingSms, SendResult

KEEP = 50


@dataclass(frozen=True)
class DevSms:
    sent_at: datetime
    to: str
    text: str
    message_id: str


#: Newest first.
outbox: deque[DevSms] = deque(maxlen=KEEP)
_lock = threading.Lock()


class ConsoleOutboxProvider(ConsoleProvider):
    # provider_name stays "Console": check sms2fa.W001 warns when DEBUG is off.

    def _send(self, sms: OutgoingSms) -> SendResult:
        result = super()._send(sms)
        with _lock:
            outbox.appendleft(
                DevSms(
                    sent_at=timezone.now(), to=sms.to, text=sms.text, message_id=result.message_id
                )
            )
        return result


def sent_messages() -> list[DevSms]:
    """What the site sent, newest first (a copy)."""
    with _lock:
        return list(outbox)
