"""One attacking process for tests/test_attacks.py (not a test module).

Run as ``python -m tests.attack_worker``. It reads its whole configuration
from the JSON in the ``SMS2FA_ATTACK`` environment variable, set by the test:

* ``database``: the test's ``DATABASES["default"]`` (the same PostgreSQL test
  database, so its rows land next to the test's own); an in-memory SQLite
  database cannot be shared between processes, so for one the worker migrates
  its own — the send limits under test live in the cache, not in the database;
* ``caches``: the test's ``CACHES`` (the same Redis database);
* ``sms2fa``: the test's ``SMS2FA`` (the send limits to attack);
* ``phone``, ``purpose``, ``tries``, ``seconds``: what to request, and when to
  stop (after ``tries`` requests or ``seconds`` of wall time, whichever first).

After Django is set up it prints ``ready`` and waits for ``go`` on stdin, so
the test can release every worker at once; then it calls
``flows.request_challenge`` as fast as it can, counting refusals, and prints
one JSON line: its provider sends (the locmem outbox of this process), when
each happened, and anything unexpected.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections import Counter


def _configure(config: dict) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    from django.conf import settings

    # Reading an attribute loads tests.settings; then the test's values replace
    # them, before django.setup() builds any connection or cache.
    settings.DATABASES  # noqa: B018
    database = dict(config["database"])
    if _in_memory(database):
        database["NAME"] = ":memory:"  # this process's own, migrated below
    settings.DATABASES = {"default": database}
    settings.CACHES = config["caches"]
    settings.SMS2FA = config["sms2fa"]

    import django

    django.setup()
    if _in_memory(database):
        from django.core.management import call_command

        call_command("migrate", verbosity=0, interactive=False)


def _in_memory(database: dict) -> bool:
    name = str(database.get("NAME", ""))
    return database["ENGINE"].endswith("sqlite3") and (
        name == ":memory:" or "mode=memory" in name or name.startswith("file:memorydb")
    )


def main() -> None:
    config = json.loads(os.environ["SMS2FA_ATTACK"])
    _configure(config)

    from django.db import connection

    from django_sms2fa import flows
    from django_sms2fa.exceptions import RateLimited
    from django_sms2fa.providers import locmem

    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        return
    refused: Counter = Counter()
    unexpected: list[str] = []
    send_times: list[float] = []
    tries = 0
    started = time.time()
    stop_at = time.monotonic() + config["seconds"]
    while tries < config["tries"] and time.monotonic() < stop_at:
        tries += 1
        before = len(locmem.outbox)
        try:
            flows.request_challenge(phone=config["phone"], purpose=config["purpose"])
        except RateLimited as err:
            refused[f"{err.code}:{err.context.get('limit', '')}"] += 1
        except Exception as err:  # reported, and the test fails on it
            unexpected.append(f"{type(err).__name__}: {err}")
        if len(locmem.outbox) > before:
            send_times.append(time.time())
    ended = time.time()
    connection.close()
    print(
        json.dumps(
            {
                "pid": os.getpid(),
                "tries": tries,
                "started": started,
                "ended": ended,
                "sends": len(locmem.outbox),
                "send_times": send_times,
                "refused": dict(refused),
                "unexpected": unexpected,
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
