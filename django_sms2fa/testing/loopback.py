"""A real HTTP server on 127.0.0.1 for provider tests.

Faking ``requests`` (``responses``, ``mock``) checks the shape of a request but
not what the real stack does with sockets: keep-alive pooling, read timeouts,
a connection closed under the client. This server runs the real stack end to
end. It records every request, counts TCP connections, and answers from a
script: queued answers, a default answer, or a handler function.

    from django_sms2fa.testing import Answer, LoopbackServer

    with LoopbackServer() as server:
        server.respond(200, {"id": "abc"})
        provider = AcmeProvider(api_key="k", base_url=server.url)
        provider.send(sms)
        assert server.requests[0].path == "/v1/messages"
        assert server.connections == 1

An :class:`Answer` may also *hang* (read the request, then say nothing: the
client's read timeout fires after its request left) or *drop* the connection
(read the request, then close the socket without a status line).
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

__all__ = ["Answer", "LoopbackServer", "Recorded", "free_port"]

#: The longest a hanging answer holds its connection when the server is not
#: stopped first (a test that forgot to stop it must not leak a thread forever).
HANG_LIMIT = 30.0


@dataclass
class Recorded:
    """One request as the server read it."""

    method: str
    path: str  # with the query string
    headers: dict[str, str]  # lower-case names
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Answer:
    """What the server answers to one request.

    ``body`` is sent as is (``bytes``/``str``) or as JSON (``dict``/``list``,
    with ``Content-Type: application/json`` unless ``headers`` name one).
    ``delay`` waits before answering. ``hang`` reads the request and never
    answers (until the server stops), so the client's read timeout fires
    after its request left. ``drop`` reads the request and closes the
    connection without answering.
    """

    status: int = 200
    body: bytes | str | dict | list = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    hang: bool = False
    drop: bool = False


class LoopbackServer:
    """A threaded HTTP/1.1 server on ``127.0.0.1`` with keep-alive.

    Answers come, in this order of precedence, from :attr:`handler` (a
    function of the :class:`Recorded` request), from the queue filled by
    :meth:`respond`, or from the default set by :meth:`always` (``200 {}``).
    """

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        #: TCP connections accepted so far.
        self.connections = 0
        self.handler: Callable[[Recorded], Answer] | None = None
        self._answers: list[Answer] = []
        self._default = Answer(200, {})
        self._lock = threading.Lock()
        self._stopping = threading.Event()
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
                if answer.hang:
                    # The request has been read: whatever the client does now
                    # happens after its request left.
                    server._stopping.wait(HANG_LIMIT)
                    self.close_connection = True
                    return
                if answer.drop:
                    # No status line: the client reads EOF where the answer
                    # should start ("connection aborted").
                    self.close_connection = True
                    return
                if answer.delay:
                    time.sleep(answer.delay)
                self._write(answer)

            def _write(self, answer: Answer) -> None:
                body = answer.body
                headers = dict(answer.headers)
                if isinstance(body, (dict, list)):
                    body = json.dumps(body).encode()
                    if not any(name.lower() == "content-type" for name in headers):
                        headers["Content-Type"] = "application/json"
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

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        # A short poll interval: stop() waits for the serving loop to notice,
        # and suites build one server per test.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``, without a trailing slash."""
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

    def queue(self, *answers: Answer) -> None:
        """Queue ready-made answers (hanging or dropping ones included)."""
        with self._lock:
            self._answers.extend(answers)

    def always(
        self,
        status: int = 200,
        body: bytes | str | dict | list = b"",
        headers: dict[str, str] | None = None,
    ) -> None:
        """Answer every request not covered by a queued answer with this."""
        self._default = Answer(status, body, headers or {})

    def reset(self) -> None:
        """Forget requests, connections, queued answers and the handler."""
        with self._lock:
            self.requests.clear()
            self.connections = 0
            self._answers.clear()
            self.handler = None
            self._default = Answer(200, {})

    def start(self) -> LoopbackServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; hanging answers are released and their sockets closed."""
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> LoopbackServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def free_port() -> int:
    """A loopback port with nothing listening (for connection-refused tests)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
