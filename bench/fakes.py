"""A fast fake GoSMS on loopback that counts TCP connections and keeps the codes.

Unlike ``tests/http_support.LoopbackServer`` (made for exact request shapes),
this one is made for timing: every answer leaves in one ``sendall`` with
``TCP_NODELAY`` set, so no Nagle / delayed-ACK pause (about 40 ms a request on
Linux) hides what the app itself costs.

It answers ``POST /sms/send`` like GoSMS (``200 {"id": "<24 hex>"}``) and keeps
the last code sent to each phone, for a load driver that must type it:
``fake.code_for("+46701234567")``. Codes stay in this process's memory only.
"""

from __future__ import annotations

import itertools
import json
import re
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# GoSMS takes the number without "+"; our SMS text holds the code as the only
# run of 6-10 digits.
_CODE = re.compile(r"(?<!\d)(\d{6,10})(?!\d)")


class FakeGoSMS:
    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.connections = 0
        self.requests = 0
        self._codes: dict[str, str] = {}
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive: reuse is what we count

            def setup(self) -> None:
                super().setup()
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                with fake._lock:
                    fake.connections += 1

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw or b"{}")
                except ValueError:
                    body = {}
                with fake._lock:
                    fake.requests += 1
                    number = next(fake._ids)
                    match = _CODE.search(str(body.get("message", "")))
                    phone = str(body.get("phone_number", ""))
                    if match and phone:
                        fake._codes["+" + phone] = match[1]
                payload = json.dumps({"id": f"{number:024x}"}).encode()
                head = (
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(payload)}\r\n\r\n"
                ).encode()
                self.wfile.write(head + payload)

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def code_for(self, phone: str) -> str | None:
        with self._lock:
            return self._codes.get(phone)

    def start(self) -> FakeGoSMS:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


# A made-up token of the right shape (GoSMS wants a JWT); the fake accepts any.
FAKE_TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJhcGkiOiJiZW5jaCJ9.ZmFrZS1ub3QtYS1yZWFsLXRva2Vu"


def gosms_settings(url: str) -> dict[str, Any]:
    """``SMS2FA["PROVIDERS"]["default"]`` for GoSMS pointed at a fake."""
    return {
        "BACKEND": "django_sms2fa.providers.gosms.GoSMSProvider",
        "OPTIONS": {"token": FAKE_TOKEN, "base_url": url},
    }
