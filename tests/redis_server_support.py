"""What the Redis topology tests (Sentinel, Cluster) share to run their servers."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path
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


class ServerProcesses:
    """The processes a topology started and the directory they write in;
    :meth:`stop` kills them all and removes it. A ``with`` block starts them
    (the subclass's ``start``) and stops them, even on a failure."""

    def __init__(self) -> None:
        self.directory: Path | None = None
        self.processes: dict[Any, subprocess.Popen[bytes]] = {}

    def start(self) -> ServerProcesses:  # pragma: no cover - each topology has its own
        raise NotImplementedError

    def __enter__(self) -> Any:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Kill every process started here (never waits on a clean shutdown)."""
        for process in self.processes.values():
            if process.poll() is None:
                process.kill()
        for process in self.processes.values():
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:  # pragma: no cover - a stuck kill
                pass
        self.processes.clear()
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = None
