"""A real HTTP server on loopback for provider tests.

Provider HTTP is the one thing the suite fakes, and it fakes it faithfully to
docs/providers/: ``responses`` for exact request/answer shapes, and this
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


class DripServer:
    """A provider that answers one byte at a time, each just in time.

    Every byte arrives well inside any read timeout, so a client that only
    bounds each socket read waits for the whole answer: ``len(answer) *
    interval`` seconds. ``head_at_once`` sends the status line and headers in
    one go and drips only the body. ``sent`` counts the bytes that left before
    the client hung up; ``requests`` counts the requests read.
    """

    def __init__(
        self,
        answer: bytes,
        *,
        interval: float,
        head_at_once: bool = False,
        wait_for_request: bool = True,
        ssl_context: Any = None,
    ) -> None:
        import socket

        self.answer = answer
        self.interval = interval
        self.head_at_once = head_at_once
        # False: drip from the moment the connection opens (a TLS server
        # dripping its handshake never sees an HTTP request).
        self.wait_for_request = wait_for_request
        # A server-side ssl.SSLContext: the answer is dripped inside TLS.
        self.ssl_context = ssl_context
        self.sent = 0
        self.requests = 0
        self.client_hung_up = threading.Event()
        self.finished = threading.Event()
        self._stop = threading.Event()
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(8)
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._listener.getsockname()[:2]
        return f"http://{host}:{port}"

    @property
    def full_time(self) -> float:
        """Seconds the whole answer takes to drip."""
        dripped = self.answer.split(b"\r\n\r\n", 1)[1] if self.head_at_once else self.answer
        return len(dripped) * self.interval

    def start(self) -> DripServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._listener.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn) -> None:
        if self.ssl_context is not None:
            try:
                conn = self.ssl_context.wrap_socket(conn, server_side=True)
            except OSError:
                conn.close()
                return
        with conn:
            if self.wait_for_request:
                if not self._read_request(conn):
                    return
            self._drip(conn)

    def _read_request(self, conn) -> bool:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return False
            data += chunk
        head, body = data.split(b"\r\n\r\n", 1)
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        while len(body) < length:
            chunk = conn.recv(65536)
            if not chunk:
                return False
            body += chunk
        self.requests += 1
        return True

    def _drip(self, conn) -> None:
        answer = self.answer
        if self.head_at_once:
            head_end = answer.index(b"\r\n\r\n") + 4
            conn.sendall(answer[:head_end])
            self.sent += head_end
            answer = answer[head_end:]
        for index in range(len(answer)):
            if self._stop.is_set():
                return
            try:
                conn.sendall(answer[index : index + 1])
            except OSError:
                self.client_hung_up.set()
                return
            self.sent += 1
            time.sleep(self.interval)
        self.finished.set()
