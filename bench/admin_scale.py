"""Time the audit admin on a big table: changelist, filters and searches.

Seeds ``--rows`` challenges (one message each) into a dedicated PostgreSQL
database (``SMS2FA_BENCH_DB``, default ``sms2fa_bench``; created if missing,
reseeded only when its row count differs), then requests each page through
the real admin as a logged-in superuser with Django's test client, ``--repeat``
times, and prints the median time, the slowest SQL statement and the number
of queries::

    .venv/bin/python -m bench.admin_scale --rows 1000000

A page that counted the table, or ran a query per row, shows up here as
seconds instead of milliseconds, or as a query count that is not small.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from datetime import timedelta
from typing import Any


def _ensure_database() -> None:
    import psycopg

    from django.conf import settings

    db = settings.DATABASES["default"]
    with psycopg.connect(
        host=db["HOST"],
        port=db["PORT"],
        user=db["USER"],
        password=db["PASSWORD"],
        dbname="postgres",
        autocommit=True,
    ) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [db["NAME"]])
        if exists.fetchone() is None:
            conn.execute(f'CREATE DATABASE "{db["NAME"]}"')


def _prepare(rows: int, reseed: bool) -> None:
    from django.core.management import call_command
    from django.db import connection

    from bench.seed import seed
    from django_sms2fa.models import Challenge, Message

    call_command("migrate", verbosity=0)
    have = Challenge.objects.count()
    if have != rows or reseed:
        with connection.cursor() as cursor:
            cursor.execute(f"TRUNCATE {Challenge._meta.db_table}, {Message._meta.db_table} CASCADE")
        started = time.perf_counter()
        seed(rows)
        print(f"seeded {rows:,} challenges in {time.perf_counter() - started:.1f} s")
    else:
        print(f"using the {have:,} challenges already in the database")
    with connection.cursor() as cursor:
        # Index-only scans need a current visibility map.
        cursor.execute(f"VACUUM ANALYZE {Challenge._meta.db_table}")
        cursor.execute(f"VACUUM ANALYZE {Message._meta.db_table}")


def _cases() -> list[tuple[str, str, dict[str, str]]]:
    from django.urls import reverse
    from django.utils import timezone

    from django_sms2fa.models import Challenge, Message

    changelist = reverse("admin:django_sms2fa_challenge_changelist")
    messages = reverse("admin:django_sms2fa_message_changelist")
    export = reverse("admin:django_sms2fa_challenge_export")
    # An old row to search for: the search must not depend on recency.
    oldest = Challenge.objects.order_by("created_at").values_list("phone", flat=True).first()
    national = "0" + oldest[3:]  # +46709… typed as 0709… with separators
    typed = f"{national[:3]}-{national[3:6]} {national[6:8]} {national[8:]}"
    message_id = Message.objects.order_by("pk").values_list("provider_message_id", flat=True)[0]
    now = timezone.now()
    week = {
        "created_at__gte": (now - timedelta(days=7)).isoformat(),
        "created_at__lt": (now + timedelta(days=1)).isoformat(),
    }
    return [
        ("changelist", changelist, {}),
        ("changelist, page 50", changelist, {"p": "50"}),
        ("filter status=failed", changelist, {"status__exact": "failed"}),
        ("filter past 7 days", changelist, week),
        ("filter provider+purpose", changelist, {"provider": "ip1", "purpose__exact": "login"}),
        (f"search phone {typed!r}", changelist, {"q": typed}),
        ("search username", changelist, {"q": "bench-user-7"}),
        ("search message id", changelist, {"q": message_id}),
        ("search, no match", changelist, {"q": "nobody-at-all"}),
        ("message changelist", messages, {}),
        ("CSV export, one phone", export, {"q": typed}),
    ]


def _measure(client: Any, path: str, query: dict[str, str], repeat: int) -> dict[str, Any]:
    from django.db import connection
    from django.test.utils import (
        CaptureQueriesContext,
        setup_test_environment,
        teardown_test_environment,
    )

    def once() -> tuple[float, Any, Any]:
        with CaptureQueriesContext(connection) as queries:
            started = time.perf_counter()
            response = client.get(path, query)
            if response.streaming:
                b"".join(response.streaming_content)
            elapsed = time.perf_counter() - started
        assert response.status_code == 200, (path, query, response.status_code)
        return elapsed, queries, response

    # One request with the test environment, for the changelist's row count
    # (it instruments template rendering, so it is not timed) ...
    setup_test_environment()
    try:
        _elapsed, _queries, response = once()
    finally:
        teardown_test_environment()
    rows = "-"
    if response.context and "cl" in response.context:
        cl = response.context["cl"]
        rows = f"{cl.result_count:,}{'' if cl.paginator.count_is_exact else ' (est.)'}"
    # ... then the timed ones, as a real server renders them.
    times, slowest, query_count = [], 0.0, 0
    for _ in range(repeat):
        elapsed, queries, response = once()
        times.append(elapsed)
        query_count = len(queries)
        slowest = max([slowest, *(float(q["time"]) for q in queries)])
    return {
        "median_ms": statistics.median(times) * 1000,
        "max_ms": max(times) * 1000,
        "slowest_sql_ms": slowest * 1000,
        "queries": query_count,
        "rows": rows,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--reseed", action="store_true", help="seed again even if the count fits")
    args = parser.parse_args(argv)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")
    import django

    django.setup()
    from django.conf import settings

    settings.DEBUG = False
    _ensure_database()
    _prepare(args.rows, args.reseed)

    from django.contrib.auth import get_user_model
    from django.test import Client

    settings.ALLOWED_HOSTS = ["*"]
    admin, _created = get_user_model().objects.get_or_create(
        username="bench-admin", defaults={"is_staff": True, "is_superuser": True}
    )
    client = Client()
    client.force_login(admin)
    print(f"\n{args.rows:,} challenges; median of {args.repeat} requests each\n")
    header = (
        f"{'page':<44} {'median ms':>10} {'max ms':>8} {'worst SQL ms':>12} {'queries':>7}  rows"
    )
    print(header)
    print("-" * len(header))
    for name, path, query in _cases():
        result = _measure(client, path, query, args.repeat)
        print(
            f"{name:<44} {result['median_ms']:>10.1f} {result['max_ms']:>8.1f} "
            f"{result['slowest_sql_ms']:>12.1f} {result['queries']:>7}  {result['rows']}"
        )


if __name__ == "__main__":
    main()
