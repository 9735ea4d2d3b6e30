"""Shared pieces of the benchmarks: Django set-up, a fresh database, timing, SQL capture."""

from __future__ import annotations

import json
import os
import re
import statistics
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def setup_django(settings: str = "bench.perf_settings") -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", settings)
    import django

    django.setup()


def ensure_database() -> None:
    """Create the configured database if it is missing (PostgreSQL) and migrate it."""
    from django.core.management import call_command
    from django.db import connection

    settings = connection.settings_dict
    if connection.vendor == "postgresql":
        import psycopg

        admin = psycopg.connect(
            host=settings["HOST"],
            port=settings["PORT"],
            user=settings["USER"],
            password=settings["PASSWORD"],
            dbname="postgres",
            autocommit=True,
        )
        with admin:
            exists = admin.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", [settings["NAME"]]
            ).fetchone()
            if not exists:
                admin.execute(f'CREATE DATABASE "{settings["NAME"]}"')
    else:
        Path(settings["NAME"]).parent.mkdir(parents=True, exist_ok=True)
    call_command("migrate", verbosity=0, interactive=False)


def empty_tables() -> None:
    """Drop every challenge, message and refusal (a run starts from empty tables)."""
    from django.db import connection

    from django_sms2fa.models import Challenge, Message, Refusal

    tables = [m._meta.db_table for m in (Message, Challenge, Refusal)]
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(f"TRUNCATE {', '.join(tables)}")
            cursor.execute(f"ANALYZE {', '.join(tables)}")
        else:
            for table in tables:
                cursor.execute(f'DELETE FROM "{table}"')
            cursor.execute("ANALYZE")
    from django.core.cache import caches

    caches["default"].clear()


# ----------------------------------------------------------------- timing


@dataclass
class Timing:
    ops: int
    p50_us: float
    p99_us: float
    mean_us: float
    ops_per_s: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def summarize(samples: list[float]) -> Timing:
    """Per-op seconds -> a Timing in microseconds (ops/s from the mean)."""
    ordered = sorted(samples)
    mean = statistics.fmean(ordered)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return Timing(
        ops=len(ordered),
        p50_us=statistics.median(ordered) * 1e6,
        p99_us=p99 * 1e6,
        mean_us=mean * 1e6,
        ops_per_s=1 / mean if mean else 0.0,
    )


def write_json(result: Any, path: str | None) -> None:
    """A benchmark's result as JSON, to ``path`` or to stdout (for bench/run.py)."""
    text = json.dumps(result, indent=1)
    if path:
        Path(path).write_text(text)
    else:
        sys.stdout.write(text + "\n")


def timed(calls: Iterable[Callable[[], object]]) -> list[float]:
    samples = []
    for call in calls:
        started = time.perf_counter()
        call()
        samples.append(time.perf_counter() - started)
    return samples


# ------------------------------------------------------------ SQL capture

BOOKKEEPING_TABLES = {"django_session", "auth_user"}
_MAIN_TABLE = re.compile(
    r'^\s*(?:SELECT\b.*?\bFROM|INSERT\s+INTO|UPDATE|DELETE\s+FROM)\s+"?(\w+)"?', re.S
)


def main_table(sql: str) -> str:
    match = _MAIN_TABLE.match(sql)
    return match[1] if match else ""


def is_bookkeeping(sql: str) -> bool:
    """Session and auth bookkeeping (not in the budget): see tests/test_sql_budget.py."""
    # Transaction control: Django's atomic() around a session write shows as
    # BEGIN/COMMIT on SQLite and as savepoints inside an outer transaction.
    control = ("SAVEPOINT", "RELEASE SAVEPOINT", "ROLLBACK TO", "BEGIN", "COMMIT")
    if sql.lstrip().upper().startswith(control):
        return True
    return main_table(sql) in BOOKKEEPING_TABLES


def capture(call: Callable[[], object]) -> tuple[list[str], list[str]]:
    """Run ``call``; return (budgeted statements, bookkeeping statements)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as queries:
        call()
    sqls = [q["sql"] for q in queries.captured_queries]
    return [s for s in sqls if not is_bookkeeping(s)], [s for s in sqls if is_bookkeeping(s)]


def shape(sql: str) -> str:
    """``UPDATE django_sms2fa_challenge`` — verb and main table."""
    return f"{sql.split()[0]} {main_table(sql)}"
