"""A real HTTP server on loopback for provider tests.

Provider HTTP is the one thing the suite fakes, and it fakes it faithfully to
shared/providers.md: ``responses`` for exact request/answer shapes, and this
server wherever the real ``requests`` stack must run — sockets, keep-alive
pooling, timeouts. It records every request and counts TCP connections.

    def test_x(loopback):
        loopback.respond(200, {"id": "abc"})
        provider = GoSMSProvider(token="t", base_url=loopback.url)
        ...
        assert loopback.requests[0].path == "/sms/send"
        assert loopback.connections == 1
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Recorded:
    method: str
    path: str  # with the query string
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Answer:
    status: int = 200
    body: bytes | str | dict | list = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds to wait before answering (to provoke read timeouts)


class LoopbackServer:
    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.connections = 0
        self._answers: list[Answer] = []
        self._default = Answer(200, {})
        self.handler: Callable[[Recorded], Answer] | None = None
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, so pooling is visible

            def setup(self) -> None:
                with server._lock:
                    server.connections += 1
                super().setup()

            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                recorded = Recorded(
                    method=self.command,
                    path=self.path,
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=self.rfile.read(length) if length else b"",
                )
                with server._lock:
                    server.requests.append(recorded)
                    if server.handler is not None:
                        answer = server.handler(recorded)
                    elif server._answers:
                        answer = server._answers.pop(0)
                    else:
                        answer = server._default
                if answer.delay:
                    time.sleep(answer.delay)
                body = answer.body
                headers = dict(answer.headers)
                if isinstance(body, (dict, list)):
                    body = json.dumps(body).encode()
                    headers.setdefault("Content-Type", "application/json")
                elif isinstance(body, str):
                    body = body.encode()
                try:
                    self.send_response(answer.status)
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout tests)

            do_GET = do_POST = do_PUT = do_DELETE = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def respond(
        self,
        status: int = 200,
        body: bytes | str | dict | list = b"",
        headers: dict[str, str] | None = None,
        *,
        delay: float = 0.0,
        times: int = 1,
    ) -> None:
        """Queue an answer for the next ``times`` requests."""
        with self._lock:
            self._answers.extend([Answer(status, body, headers or {}, delay)] * times)

    def always(
        self, status: int = 200, body: bytes | str | dict | list = b"", headers=None
    ) -> None:
        """Answer every request not covered by a queued answer with this."""
        self._default = Answer(status, body, headers or {})

    def start(self) -> LoopbackServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def free_port() -> int:
    """A loopback port with nothing listening (for connection-refused tests)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
