"""Fill the audit tables with synthetic challenges, fast.

``seed(n)`` adds ``n`` challenges, each with one message, spread over the last
``days`` days, with a realistic mix of purposes, statuses, providers and users.
On PostgreSQL it is one ``INSERT … SELECT … FROM generate_series`` per table,
run inside the database (a million rows in seconds, not minutes); elsewhere
(SQLite) ``bulk_create`` in chunks.

Every seeded row is recognisable: phones are ``+4670 9xx xx xx`` numbers,
users are named ``bench-user-<n>``, message ids start with ``bench-``. The code
hash is random hex: no seeded challenge has a code anyone knows.

Command line (any settings module with the app installed)::

    DJANGO_SETTINGS_MODULE=bench.settings .venv/bin/python -m bench.seed 1000000
"""

from __future__ import annotations

import argparse
import os
import random
import secrets
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

# Shapes of the synthetic data, shared by both seeding paths.
PURPOSES = ("login", "login", "login", "passwordless", "verify_phone", "change_phone")
# Mostly verified, some of every other outcome.
STATUSES = (
    ("verified", 70),
    ("expired", 15),
    ("failed", 5),
    ("cancelled", 4),
    ("undeliverable", 3),
    ("pending", 3),
)
MESSAGE_STATUS = {"undeliverable": "failed", "pending": "sent"}  # else "delivered"
DISTINCT_PHONES = 200_000
USER_SHARE = 0.8  # challenges with a user; the rest come before registration
CHUNK = 5_000
# From this many rows on, PostgreSQL loads without its secondary indexes and
# rebuilds them after: one sort per index instead of a million random
# b-tree inserts (about ten times faster at 1M rows).
BULK_THRESHOLD = 100_000


def seed(
    n: int,
    *,
    using: str = "default",
    days: int = 90,
    users: int | None = None,
    providers: tuple[str, ...] | None = None,
) -> int:
    """Add ``n`` challenges and one message each; return ``n``.

    :param days: the rows' ``created_at`` spread evenly over this many days
        back from now.
    :param users: how many ``bench-user-<i>`` users to spread the challenges
        over (created if missing); default ``max(1, min(1000, n // 100))``.
    :param providers: the aliases to spread over; default the configured ones.
    """
    from django.db import connections

    if n <= 0:
        return 0
    if providers is None:
        from django_sms2fa.conf import app_settings

        providers = tuple(app_settings.PROVIDERS)
    user_ids = _bench_users(users if users is not None else max(1, min(1000, n // 100)), using)
    if connections[using].vendor == "postgresql":
        _seed_postgres(n, using=using, days=days, user_ids=user_ids, providers=providers)
    else:
        _seed_bulk(n, using=using, days=days, user_ids=user_ids, providers=providers)
    return n


def _bench_users(count: int, using: str) -> list[int]:
    from django.contrib.auth import get_user_model

    user_model = get_user_model()
    names = [f"bench-user-{i}" for i in range(count)]
    existing = set(
        user_model._default_manager.using(using)
        .filter(username__in=names)
        .values_list("username", flat=True)
    )
    missing = [
        user_model(username=name, password="!unusable")  # noqa: S106 - not a password
        for name in names
        if name not in existing
    ]
    user_model._default_manager.using(using).bulk_create(missing, batch_size=CHUNK)
    return list(
        user_model._default_manager.using(using)
        .filter(username__in=names)
        .order_by("pk")
        .values_list("pk", flat=True)
    )


def _seed_postgres(
    n: int, *, using: str, days: int, user_ids: list[int], providers: tuple[str, ...]
) -> None:
    from django.db import connections, transaction

    from django_sms2fa.models import Challenge, Message

    challenge_table = Challenge._meta.db_table
    message_table = Message._meta.db_table
    # Cumulative bounds for the status mix over (g * 37) % 100: a stride
    # coprime to 100, so even a few rows get a mix of every status.
    status_case, bound = [], 0
    for status, share in STATUSES:
        bound += share
        # %% is a literal % for the driver's parameter syntax.
        status_case.append(f"WHEN (g * 37) %% 100 < {bound} THEN '{status}'")
    status_sql = "CASE " + " ".join(status_case) + " END"
    message_status_sql = (
        "CASE c.status "
        + " ".join(f"WHEN '{k}' THEN '{v}'" for k, v in MESSAGE_STATUS.items())
        + " ELSE 'delivered' END"
    )
    span = days * 86400.0
    # g counts back from now: row g is g * span / n seconds old; rows go in
    # oldest first, so the time indexes grow at one end. Ids are the run's
    # random tag then the row number: unique across seed() calls, and in
    # ascending order within one, so the primary key also grows at one end
    # (random UUIDs would make every insert a random b-tree page: twice as slow).
    tag = secrets.token_hex(4)
    sql = f"""
    WITH params AS (
        SELECT now() AS t0,
               %(span)s::float8 / %(n)s AS step,
               %(users)s::bigint[] AS users,
               %(providers)s::text[] AS providers,
               %(purposes)s::text[] AS purposes
    ), rows AS (
        SELECT g,
               p.t0 - make_interval(secs => g * p.step) AS created,
               '+46709' || lpad(((g * 7919) %% {DISTINCT_PHONES})::text, 6, '0') AS phone,
               CASE WHEN random() < {USER_SHARE} AND cardinality(p.users) > 0
                    THEN p.users[1 + (g %% cardinality(p.users))] END AS user_id,
               p.purposes[1 + (g %% cardinality(p.purposes))] AS purpose,
               p.providers[1 + ((g / 7) %% cardinality(p.providers))] AS provider,
               {status_sql} AS status
        FROM generate_series(%(n)s::bigint, 1, -1) AS g, params p
    ), inserted AS (
        INSERT INTO {challenge_table} (
            id, user_id, device_id, phone, region, purpose, status, code_hash, checked_by,
            provider, attempts, wrong_attempts, max_attempts, sends, created_at, expires_at,
            verified_at, closed_at, last_sent_at, consumed_at, client_ip, user_agent
        )
        SELECT ('{tag}' || lpad(to_hex(%(n)s - g), 24, '0'))::uuid,
               r.user_id, NULL, r.phone, 'SE', r.purpose, r.status,
               lpad(to_hex(g), 64, '0'), 'local', r.provider,
               CASE r.status WHEN 'failed' THEN 5 WHEN 'verified' THEN 1 + g %% 2 ELSE 0 END,
               CASE r.status WHEN 'failed' THEN 5 WHEN 'verified' THEN g %% 2 ELSE 0 END,
               5, 1, r.created, r.created + interval '5 minutes',
               CASE r.status WHEN 'verified' THEN r.created + interval '40 seconds' END,
               CASE WHEN r.status <> 'pending' THEN r.created + interval '40 seconds' END,
               r.created, NULL,
               '10.0.0.0'::inet + (g %% 16000000),
               'bench/1.0'
        FROM rows r
        RETURNING id, phone, provider, status, created_at
    )
    INSERT INTO {message_table} (
        challenge_id, phone, provider, provider_message_id, status, provider_status,
        error_code, error_text, text_masked, created_at, sent_at, status_changed_at,
        latency_ms
    )
    SELECT c.id, c.phone, c.provider, 'bench-{tag}-' || row_number() OVER (),
           {message_status_sql}, '', CASE c.status WHEN 'undeliverable' THEN 'rejected'
           ELSE '' END, '', 'Your code is ••••••', c.created_at, c.created_at,
           c.created_at + interval '3 seconds', 150 + (random() * 300)::int
    FROM inserted c
    """
    params = {
        "n": n,
        "span": span,
        "users": user_ids,
        "providers": list(providers),
        "purposes": list(PURPOSES),
    }
    with transaction.atomic(using=using), connections[using].cursor() as cursor:
        if n >= BULK_THRESHOLD:
            with _without_secondary_indexes(cursor, [challenge_table, message_table]):
                cursor.execute(sql, params)
        else:
            cursor.execute(sql, params)
    with connections[using].cursor() as cursor:
        # Fresh statistics, so the planner (and row estimates) know the new size.
        cursor.execute(f"ANALYZE {challenge_table}")
        cursor.execute(f"ANALYZE {message_table}")


@contextmanager
def _without_secondary_indexes(cursor: Any, tables: list[str]) -> Iterator[None]:
    """Drop the tables' indexes that back no constraint, run the body, rebuild them.

    Inside the caller's transaction: if the load fails, the drop is undone too.
    Foreign-key triggers are skipped for the load (``session_replication_role``,
    where the role may set it): the seeded rows point at rows that exist by
    construction.
    """
    definitions: list[tuple[str, str]] = []
    for table in tables:
        cursor.execute(
            """
            SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid)
            FROM pg_index i
            WHERE i.indrelid = %s::regclass
              AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)
            """,
            [table],
        )
        definitions += cursor.fetchall()
    for name, _definition in definitions:
        cursor.execute(f"DROP INDEX {name}")
    cursor.execute("SAVEPOINT sms2fa_seed_role")
    try:
        cursor.execute("SET LOCAL session_replication_role = replica")
    except Exception:  # not a superuser: keep the triggers
        cursor.execute("ROLLBACK TO SAVEPOINT sms2fa_seed_role")
    yield
    cursor.execute("SET LOCAL session_replication_role = DEFAULT")
    cursor.execute("SET LOCAL maintenance_work_mem = '256MB'")
    for _name, definition in definitions:
        cursor.execute(definition)


def _seed_bulk(
    n: int, *, using: str, days: int, user_ids: list[int], providers: tuple[str, ...]
) -> None:
    from django.db import transaction
    from django.utils import timezone

    from django_sms2fa.models import Challenge, Message

    rng = random.Random()
    statuses = [status for status, share in STATUSES for _ in range(share)]
    now = timezone.now()
    step = days * 86400.0 / n
    tag = secrets.token_hex(4)
    for start in range(1, n + 1, CHUNK):
        challenges, messages = [], []
        for g in range(start, min(start + CHUNK, n + 1)):
            created = now - timedelta(seconds=g * step)
            status = statuses[(g * 37) % 100]
            challenge = Challenge(
                id=uuid.uuid4(),
                user_id=(
                    user_ids[g % len(user_ids)] if user_ids and rng.random() < USER_SHARE else None
                ),
                phone=f"+46709{(g * 7919) % DISTINCT_PHONES:06d}",
                region="SE",
                purpose=PURPOSES[g % len(PURPOSES)],
                status=status,
                code_hash=secrets.token_hex(32),
                provider=providers[(g // 7) % len(providers)],
                attempts=5 if status == "failed" else (1 + g % 2 if status == "verified" else 0),
                wrong_attempts=5 if status == "failed" else (g % 2 if status == "verified" else 0),
                max_attempts=5,
                sends=1,
                created_at=created,
                expires_at=created + timedelta(minutes=5),
                verified_at=created + timedelta(seconds=40) if status == "verified" else None,
                closed_at=created + timedelta(seconds=40) if status != "pending" else None,
                last_sent_at=created,
                client_ip=f"10.{g % 250}.{(g // 250) % 250}.1",
                user_agent="bench/1.0",
            )
            challenges.append(challenge)
            messages.append(
                Message(
                    challenge=challenge,
                    phone=challenge.phone,
                    provider=challenge.provider,
                    provider_message_id=f"bench-{tag}-{challenge.id.hex}",
                    status=MESSAGE_STATUS.get(status, "delivered"),
                    error_code="rejected" if status == "undeliverable" else "",
                    text_masked="Your code is ••••••",
                    created_at=created,
                    sent_at=created,
                    status_changed_at=created + timedelta(seconds=3),
                    latency_ms=rng.randint(150, 450),
                )
            )
        with transaction.atomic(using=using):
            Challenge.objects.using(using).bulk_create(challenges, batch_size=CHUNK)
            Message.objects.using(using).bulk_create(messages, batch_size=CHUNK)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("n", type=int, help="challenges to add (one message each)")
    parser.add_argument("--database", default="default", help="database alias")
    parser.add_argument("--days", type=int, default=90, help="spread over this many days")
    parser.add_argument("--users", type=int, default=None, help="bench users to spread over")
    args = parser.parse_args(argv)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")
    import django

    django.setup()
    started = time.perf_counter()
    seed(args.n, using=args.database, days=args.days, users=args.users)
    print(f"seeded {args.n} challenges in {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
