"""A development provider that prints each SMS to a stream (stdout by default).

Like Django's console e-mail backend, it shows the full text, code included:
that is its point, and why a system check (sms2fa.W001) warns when it is
configured with ``DEBUG = False``.
"""

from __future__ import annotations

import sys
import threading
import uuid
from typing import IO, Any

from ..types import SENT, Capabilities, OutgoingSms, SendResult
from .base import BaseProvider


class ConsoleProvider(BaseProvider):
    provider_name = "Console"
    capabilities = Capabilities(delivers_text=True)

    def __init__(self, *, alias: str = "default", stream: IO[str] | None = None, **options: Any):
        super().__init__(alias=alias, **options)
        self._stream = stream
        self._lock = threading.Lock()

    def _send(self, sms: OutgoingSms) -> SendResult:
        message_id = uuid.uuid4().hex
        stream = self._stream or sys.stdout
        with self._lock:
            stream.write(
                f"--- SMS via {self.alias} (id {message_id}) ---\n"
                f"To: {sms.to}\n{sms.text}\n"
                f"{'-' * 40}\n"
            )
            stream.flush()
        return SendResult(message_id=message_id, status=SENT, provider_status="printed")
