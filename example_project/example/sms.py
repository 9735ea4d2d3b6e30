"""The example site's SMS provider: the console provider that also remembers.

Every SMS is printed on standard output, as with ``ConsoleProvider``, and kept
for the development outbox page (``/dev/outbox/``, DEBUG only), so a newcomer
can read a code in the browser. The site sends through a task queue, so the
process that sends (the task worker) is not the one that serves the page: with
the ``EXAMPLE_OUTBOX_FILE`` setting (the example's settings set it) each SMS is
appended to that file as one JSON line, and the page reads the last ``KEEP``
back. Without it (the test suite) they stay in this process's memory. This is a
development stand-in for a phone, never for production.
"""

from __future__ import annotations

import json
import os
import threading
from collections import deque
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from django.conf import settings
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


#: Newest first (without EXAMPLE_OUTBOX_FILE).
outbox: deque[DevSms] = deque(maxlen=KEEP)
_lock = threading.Lock()


def outbox_file() -> Path | None:
    """The file the server and the worker share, if the settings name one."""
    name = getattr(settings, "EXAMPLE_OUTBOX_FILE", None)
    return Path(name) if name else None


class ConsoleOutboxProvider(ConsoleProvider):
    # provider_name stays "Console": check sms2fa.W001 warns when DEBUG is off.

    def _send(self, sms: OutgoingSms) -> SendResult:
        result = super()._send(sms)
        sent = DevSms(
            sent_at=timezone.now(), to=sms.to, text=sms.text, message_id=result.message_id
        )
        path = outbox_file()
        with _lock:
            if path is None:
                outbox.appendleft(sent)
            else:
                _append(path, sent)
        return result


def _append(path: Path, sent: DevSms) -> None:
    line = json.dumps(
        {
            "sent_at": sent.sent_at.isoformat(),
            "to": sent.to,
            "text": sent.text,
            "message_id": sent.message_id,
        }
    )
    # One write() of one line to a file opened with O_APPEND: two processes
    # appending at once never interleave their lines.
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


def _read(path: Path) -> list[DevSms]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    entries = []
    for line in reversed(lines[-KEEP:]):
        try:
            data = json.loads(line)
            entries.append(
                DevSms(
                    sent_at=datetime.fromisoformat(data["sent_at"]),
                    to=data["to"],
                    text=data["text"],
                    message_id=data["message_id"],
                )
            )
        except (ValueError, KeyError, TypeError):
            continue  # a line cut short (the disk filled up): skip it
    return entries


def sent_messages() -> list[DevSms]:
    """What the site sent, newest first (a copy)."""
    path = outbox_file()
    if path is not None:
        return _read(path)
    with _lock:
        return list(outbox)
