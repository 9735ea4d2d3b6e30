"""Test helpers for provider HTTP, kept importable from their old place.

The loopback server now ships in the package (:mod:`django_sms2fa.testing.loopback`),
so third-party provider authors get the same fixture; this module re-exports
it for the suite's tests, and keeps :class:`DripServer`, which only the
deadline tests need.

    def test_x(loopback):
        loopback.respond(200, {"id": "abc"})
        provider = GoSMSProvider(token="t", base_url=loopback.url)
        ...
        assert loopback.requests[0].path == "/sms/send"
        assert loopback.connections == 1
"""

from __future__ import annotations

import threading
import time
from typing import Any

from django_sms2fa.testing.loopback import Answer, LoopbackServer, Recorded, free_port

__all__ = ["Answer", "DripServer", "LoopbackServer", "Recorded", "free_port"]


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
