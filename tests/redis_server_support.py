"""What the Redis topology tests (Sentinel, Cluster) share to run their servers."""

from __future__ import annotations

import time
from typing import Any

import redis

HOST = "127.0.0.1"


def refuse_busy_port(port: int) -> None:
    """Fail at once, clearly, if a server already listens there (a leftover run)."""
    try:
        redis.Redis(HOST, port, socket_connect_timeout=0.5).ping()
    except redis.ConnectionError:
        return
    raise RuntimeError(f"port {port} is already in use by a Redis server; stop it first")


def wait_until(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except redis.RedisError as err:  # not up yet
            last = err
        time.sleep(0.05)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what} (last error: {last})")
