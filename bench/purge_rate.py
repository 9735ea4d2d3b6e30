"""How fast ``sms2fa_purge`` deletes, on PostgreSQL.

Seeds about ``--rows`` challenges (one message each) older than the 90-day
retention and ``--keep`` younger ones (one even spread over as many days as
that takes), runs ``manage.py sms2fa_purge`` through
``call_command`` and prints its own summary line (rows/s) with a check that the
recent rows survived. ``--stats`` also times the statistics report over the
seeded rows first.

It uses its own database (``--database``, default ``sms2fa_purge_bench``, on
the server of the test settings: ``SMS2FA_PG_HOST``/``PORT``/``USER``/
``PASSWORD``), created when missing and emptied of sms2fa rows at each run::

    .venv/bin/python -m bench.purge_rate --rows 200000 --keep 50000
"""

from __future__ import annotations

import argparse
import io
import math
import os
import sys
import time
from datetime import timedelta

RETENTION = 90  # days


def _setup(database: str) -> None:
    os.environ["DJANGO_SETTINGS_MODULE"] = "tests.settings"
    os.environ["SMS2FA_TEST_DB"] = "postgres"
    os.environ["SMS2FA_PG_NAME"] = database
    os.environ.setdefault("SMS2FA_TEST_CACHE", "locmem")
    import psycopg

    conninfo = {
        "host": os.environ.get("SMS2FA_PG_HOST", "127.0.0.1"),
        "port": os.environ.get("SMS2FA_PG_PORT", "5432"),
        "user": os.environ.get("SMS2FA_PG_USER", "postgres"),
        "password": os.environ.get("SMS2FA_PG_PASSWORD", ""),
    }
    with psycopg.connect(dbname="postgres", autocommit=True, **conninfo) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [database]).fetchone():
            conn.execute(f'CREATE DATABASE "{database}"')
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def _seed(n: int, *, days: int) -> None:
    """n challenges with one message each, spread over ``days`` days up to now."""
    try:
        from bench.seed import seed  # the admin benchmark's fast seeding
    except ImportError:  # pragma: no cover - bench/seed.py not there
        seed = _small_seed
    seed(n, days=days)


def _small_seed(n: int, *, days: int, **_ignored: object) -> int:
    """A fallback seeding: one INSERT … SELECT per table."""
    from django.db import connection

    from django_sms2fa.models import Challenge, Message

    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            WITH c AS (
                INSERT INTO {Challenge._meta.db_table} (
                    id, phone, region, purpose, status, code_hash, checked_by, provider,
                    attempts, wrong_attempts, max_attempts, sends, created_at, expires_at,
                    user_agent)
                SELECT gen_random_uuid(), '+46709' || lpad((g %% 200000)::text, 6, '0'), 'SE',
                       'login', 'verified', '', 'local', 'default', 1, 0, 5, 1,
                       now() - make_interval(secs => g * %s::float8 / %s), now(), ''
                FROM generate_series(1, %s) AS g
                RETURNING id, phone, created_at)
            INSERT INTO {Message._meta.db_table} (
                challenge_id, phone, provider, provider_message_id, status, provider_status,
                error_code, error_text, text_masked, created_at, sent_at)
            SELECT id, phone, 'default', '', 'sent', '', '', '', '', created_at, created_at
            FROM c
            """,
            [days * 86400, n, n],
        )
    return n


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=200_000, help="old challenges to purge")
    parser.add_argument("--keep", type=int, default=50_000, help="recent challenges to keep")
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--database", default="sms2fa_purge_bench")
    parser.add_argument("--stats", action="store_true", help="also time the stats report")
    args = parser.parse_args(argv)

    _setup(args.database)
    from django.core.management import call_command
    from django.db import connection

    from django_sms2fa import stats
    from django_sms2fa.models import Challenge, DeviceEvent, Message, Refusal

    with connection.cursor() as cursor:
        for model in (Message, Challenge, Refusal, DeviceEvent):
            cursor.execute(f"TRUNCATE {model._meta.db_table} CASCADE")

    # One even spread over enough days that about --rows of them are older
    # than the 90-day retention and --keep younger.
    total = args.rows + args.keep
    days = math.ceil(RETENTION * total / args.keep)
    started = time.perf_counter()
    _seed(total, days=days)
    with connection.cursor() as cursor:
        for model in (Challenge, Message):
            cursor.execute(f"VACUUM ANALYZE {model._meta.db_table}")
    old = Challenge.objects.filter(created_at__lt=_cutoff(RETENTION)).count()
    print(
        f"seeded {total} challenges (one message each) over {days} days, {old} of them older "
        f"than {RETENTION} days, in {time.perf_counter() - started:.1f} s"
    )

    if args.stats:
        rng = stats.last_days(stats.MAX_RANGE_DAYS)
        for label, call in (
            ("stats report, 366 days", lambda: stats.report(rng)),
            ("stats report, 30 days", lambda: stats.report(stats.last_days(30))),
        ):
            timings = []
            for _ in range(3):
                t0 = time.perf_counter()
                call()
                timings.append(time.perf_counter() - t0)
            print(f"{label}: best of 3 {min(timings) * 1000:.0f} ms")

    # Rows younger than this at the start must all survive; older ones must all
    # go. (Rows keep ageing while the purge runs, so the check uses this moment.)
    cutoff = _cutoff(RETENTION)
    out = io.StringIO()
    command = f"sms2fa_purge --older-than {RETENTION}d --batch-size {args.batch_size}"
    t0 = time.perf_counter()
    call_command(*command.split(), stdout=out)
    wall = time.perf_counter() - t0
    summary = out.getvalue().strip().splitlines()[-1]
    print(f"manage.py {command}: {summary} (wall {wall:.1f} s)")

    remaining = Challenge.objects.count()
    old_left = Challenge.objects.filter(created_at__lt=cutoff).count()
    messages_left = Message.objects.count()
    young = total - old  # counted before the purge
    ok = young - 100 <= remaining <= young and old_left == 0 and messages_left == remaining
    print(
        f"left: {remaining} challenges, {messages_left} messages, {old_left} older than "
        f"{RETENTION} days"
        f" -> {'OK' if ok else 'UNEXPECTED'}"
    )
    return 0 if ok else 1


def _cutoff(days: int):
    from django.utils import timezone

    return timezone.now() - timedelta(days=days)


if __name__ == "__main__":
    sys.exit(main())
