"""Race attacks: run actions at once, each in its own thread and database
connection, released together by a barrier, and count what came of them."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from django.db import connection

from django_sms2fa.exceptions import Sms2faError


def race(actions: Sequence[Callable[[], Any]]) -> Counter:
    """Each outcome is ``"ok"``, a domain error's code, or ``"crash:…"`` for
    anything else (what would have been a 500: a deadlock, a lost row)."""
    barrier = threading.Barrier(len(actions))
    results: list[str] = []
    lock = threading.Lock()

    def run(action: Callable[[], Any]) -> None:
        try:
            barrier.wait()
            try:
                action()
                outcome = "ok"
            except Sms2faError as err:
                outcome = err.code
            except Exception as err:  # a crash is an outcome the test must show
                outcome = f"crash:{type(err).__name__}:{err}"
            with lock:
                results.append(outcome)
        finally:
            connection.close()

    workers = [threading.Thread(target=run, args=(action,)) for action in actions]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    return Counter(results)
