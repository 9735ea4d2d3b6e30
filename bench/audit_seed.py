"""Seed the audit tables for the 10-million-row benchmark, in SQL, in chunks.

:func:`seed_audit` fills challenges and messages (one each, ``n`` of both)
spread evenly over ``days`` days back from now, plus refusals, device events
and audit records in proportion, with the shapes a busy site has: numbers from
nine countries (about two million distinct), four providers, every purpose,
status, channel and error code with realistic shares. Each chunk is one
``INSERT … SELECT … FROM generate_series`` run inside PostgreSQL; for a bulk
load the secondary indexes and foreign keys of the tables go first and are
rebuilt once at the end (one sort per index instead of millions of random
b-tree inserts), then ``VACUUM ANALYZE``.

Their definitions are kept in ``bench/.data/audit-10m/dropped.json`` while
they are gone, so a run that is killed mid-load puts them back on the next
start (:func:`restore_dropped`).

Every seeded row is recognisable: users are ``bench-user-<n>``, message ids
start with ``bench-``, user agents read ``bench/1.0``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

DATA = Path(__file__).resolve().parent / ".data" / "audit-10m"
DROPPED = DATA / "dropped.json"
CHUNK = 500_000
USERS = 100_000
DISTINCT = 2_000_000  # per number prefix at most; about 2M numbers in all

# (region, E.164 prefix, digits after it, share %): mobile ranges that
# phonenumbers takes as valid, so every number can be searched as typed.
NUMBERS: Sequence[tuple[str, str, int, float]] = (
    ("SE", "+4670", 7, 28),
    ("SE", "+4673", 7, 15),
    ("SE", "+4676", 7, 12),
    ("NO", "+4791", 6, 8),
    ("DK", "+4542", 6, 6),
    ("FI", "+35840", 7, 6),
    ("DE", "+49170", 7, 8),
    ("GB", "+44771", 7, 7),
    ("US", "+14152", 6, 5),
    ("NL", "+3161", 7, 3),
    ("PL", "+4850", 7, 2),
)
PURPOSES = (("login", 60), ("passwordless", 15), ("verify_phone", 15), ("change_phone", 10))
PROVIDERS = (("default", 50), ("gosms", 25), ("smstoken", 15), ("ip1", 10))
CHANNELS = (("sms", 94), ("whatsapp", 4), ("call", 2))
# Closed challenges; the ones of the last five minutes are still pending.
STATUSES = (
    ("verified", 80),
    ("expired", 11),
    ("failed", 3),
    ("cancelled", 2),
    ("undeliverable", 4),
)
# The message of an undeliverable challenge failed, with one of these codes.
ERROR_CODES = (
    ("invalid_number", 35),
    ("rejected", 20),
    ("blocked", 15),
    ("unreachable", 12),
    ("expired", 8),
    ("30003", 4),
    ("30005", 3),
    ("insufficient_funds", 3),
)
# The message of any other challenge.
MESSAGE_STATUSES = (("delivered", 93), ("sent", 5), ("unknown", 2))
REFUSAL_REASONS = (
    ("rate_limited", 70),
    ("verification_locked", 15),
    ("destination_suspended", 10),
    ("number_not_allowed", 5),
)
REFUSAL_LIMITS = (("phone", 50), ("ip", 25), ("user", 15), ("country", 7), ("global", 3))
DEVICE_ACTIONS = (
    ("added", 35),
    ("confirmed", 33),
    ("replaced", 10),
    ("removed", 12),
    ("unlocked", 6),
    ("failures_reset", 4),
)
AUDIT_ACTIONS = (("viewed_full_phone", 90), ("deleted_in_admin", 7), ("purged", 3))


def pick(shares: Sequence[tuple[Any, ...]], random_sql: str, column: int = 0) -> str:
    """SQL choosing ``shares[i][column]`` with the weight ``shares[i][-1]``.

    ``random_sql`` is a uniform value in [0, 1) computed once per row;
    ``width_bucket`` finds its bucket among the cumulative shares.
    """
    total = sum(share[-1] for share in shares)
    bounds, acc = [], 0.0
    for share in shares[:-1]:
        acc += share[-1]
        bounds.append(f"{acc / total:.6f}")
    values = ", ".join(_literal(share[column]) for share in shares)
    return (
        f"(ARRAY[{values}])[width_bucket({random_sql}, ARRAY[{', '.join(bounds)}]::float8[]) + 1]"
    )


def _literal(value: Any) -> str:
    if isinstance(value, int):
        return str(value)
    return "'" + str(value).replace("'", "''") + "'"


def _phone_sql(random_sql: str, key_sql: str) -> tuple[str, str]:
    """SQL for (region, E.164 number) of a row: prefix by share, digits from ``key_sql``."""
    region = pick(NUMBERS, random_sql, 0)
    prefix = pick(NUMBERS, random_sql, 1)
    digits = pick(NUMBERS, random_sql, 2)
    number = (
        f"{prefix} || lpad(mod({key_sql}, least({DISTINCT}, (10 ^ {digits})::bigint))::text, "
        f"{digits}, '0')"
    )
    return region, number


# ------------------------------------------------------------ the bulk load


def _tables() -> dict[str, str]:
    from django_sms2fa.models import AuditRecord, Challenge, DeviceEvent, Message, Refusal

    return {
        "challenge": Challenge._meta.db_table,
        "message": Message._meta.db_table,
        "refusal": Refusal._meta.db_table,
        "deviceevent": DeviceEvent._meta.db_table,
        "auditrecord": AuditRecord._meta.db_table,
    }


def drop_secondary(cursor: Any) -> None:
    """Drop the secondary indexes and the foreign keys of the audit tables
    (written down first in :data:`DROPPED`)."""
    tables = list(_tables().values())
    cursor.execute(
        """
        SELECT c.conname, c.conrelid::regclass::text, pg_get_constraintdef(c.oid)
        FROM pg_constraint c
        WHERE c.contype = 'f' AND c.conrelid::regclass::text = ANY(%s)
        """,
        [tables],
    )
    foreign = [
        {"name": name, "table": table, "definition": definition}
        for name, table, definition in cursor.fetchall()
    ]
    cursor.execute(
        """
        SELECT i.indexname, i.indexdef FROM pg_indexes i
        WHERE i.tablename = ANY(%s)
          AND i.indexname NOT IN (SELECT conname FROM pg_constraint)
        """,
        [tables],
    )
    indexes = [{"name": name, "definition": definition} for name, definition in cursor.fetchall()]
    DATA.mkdir(parents=True, exist_ok=True)
    known = json.loads(DROPPED.read_text()) if DROPPED.exists() else {"indexes": [], "foreign": []}
    names = {item["name"] for item in known["indexes"] + known["foreign"]}
    known["indexes"] += [item for item in indexes if item["name"] not in names]
    known["foreign"] += [item for item in foreign if item["name"] not in names]
    DROPPED.write_text(json.dumps(known, indent=1))
    for item in foreign:
        cursor.execute(f'ALTER TABLE {item["table"]} DROP CONSTRAINT "{item["name"]}"')
    for item in indexes:
        cursor.execute(f'DROP INDEX IF EXISTS "{item["name"]}"')


def restore_dropped(cursor: Any, log: Any = print) -> float:
    """Build again whatever :func:`drop_secondary` dropped; return the seconds it took."""
    if not DROPPED.exists():
        return 0.0
    known = json.loads(DROPPED.read_text())
    started = time.perf_counter()
    # For the index builds of this session only: the server's settings stay.
    cursor.execute("SET maintenance_work_mem = '1GB'")
    cursor.execute("SET max_parallel_maintenance_workers = 2")
    for item in known["indexes"]:
        cursor.execute("SELECT 1 FROM pg_indexes WHERE indexname = %s", [item["name"]])
        if cursor.fetchone() is None:
            t0 = time.perf_counter()
            cursor.execute(item["definition"])
            log(f"  index {item['name']}: {time.perf_counter() - t0:.1f} s")
    for item in known["foreign"]:
        cursor.execute("SELECT 1 FROM pg_constraint WHERE conname = %s", [item["name"]])
        if cursor.fetchone() is None:
            t0 = time.perf_counter()
            cursor.execute(
                f'ALTER TABLE {item["table"]} ADD CONSTRAINT "{item["name"]}" {item["definition"]}'
            )
            log(f"  foreign key {item['name']}: {time.perf_counter() - t0:.1f} s")
    DROPPED.unlink()
    return time.perf_counter() - started


def bench_users(cursor: Any, count: int = USERS) -> list[int]:
    """Ids of ``bench-user-0`` … ``bench-user-<count - 1>``, created when missing."""
    cursor.execute(
        """
        INSERT INTO auth_user (password, is_superuser, username, first_name, last_name, email,
                               is_staff, is_active, date_joined)
        SELECT '!', false, 'bench-user-' || g, '', '', '', false, true, now()
        FROM generate_series(0, %s - 1) AS g
        ON CONFLICT (username) DO NOTHING
        """,
        [count],
    )
    cursor.execute(
        "SELECT id FROM auth_user WHERE username LIKE 'bench-user-%%' ORDER BY id LIMIT %s",
        [count],
    )
    return [row[0] for row in cursor.fetchall()]


def _challenge_chunk_sql(tables: dict[str, str]) -> str:
    region, phone = _phone_sql("r.r_phone", "r.g * 48271")
    status = pick(STATUSES, "r.r_status")
    message_status = pick(MESSAGE_STATUSES, "random()")
    error_code = pick(ERROR_CODES, "random()")
    return f"""
    WITH rows AS (
        SELECT g, random() AS r_phone, random() AS r_status, random() AS r_user,
               %(end)s::timestamptz - make_interval(secs => (g - %(first)s) * %(step)s) AS created
        FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS g
    ), shaped AS (
        SELECT r.g, r.created, {region} AS region, {phone} AS phone,
               CASE WHEN r.r_user < 0.8 THEN (%(users)s::bigint[])[
                   1 + mod(r.g * 7, cardinality(%(users)s::bigint[]))] END AS user_id,
               {pick(PURPOSES, "random()")} AS purpose,
               {pick(PROVIDERS, "random()")} AS provider,
               {pick(CHANNELS, "random()")} AS channel,
               CASE WHEN r.created > %(now)s::timestamptz - interval '5 minutes' THEN 'pending'
                    ELSE {status} END AS status
        FROM rows r
    ), inserted AS (
        INSERT INTO {tables["challenge"]} (
            id, user_id, device_id, phone, region, purpose, status, code_hash, checked_by,
            provider, attempts, wrong_attempts, max_attempts, sends, created_at, expires_at,
            verified_at, closed_at, last_sent_at, consumed_at, client_ip, user_agent, channel,
            delivery_uncertain
        )
        SELECT (%(tag)s || lpad(to_hex(s.g), 24, '0'))::uuid,
               s.user_id, NULL, s.phone, s.region, s.purpose, s.status,
               CASE s.provider WHEN 'ip1' THEN '' ELSE md5(s.g::text) || md5(s.phone) END,
               CASE s.provider WHEN 'ip1' THEN 'provider' ELSE 'local' END,
               s.provider,
               CASE s.status WHEN 'failed' THEN 5 WHEN 'verified' THEN 1 + mod(s.g, 2)
                    ELSE 0 END,
               CASE s.status WHEN 'failed' THEN 5 WHEN 'verified' THEN mod(s.g, 2) ELSE 0 END,
               5, 1, s.created, s.created + interval '5 minutes',
               CASE s.status WHEN 'verified' THEN s.created + interval '40 seconds' END,
               CASE WHEN s.status <> 'pending' THEN s.created + interval '40 seconds' END,
               s.created,
               CASE WHEN s.status = 'verified' AND s.purpose <> 'login'
                    THEN s.created + interval '45 seconds' END,
               '10.0.0.0'::inet + mod(s.g * 104729, 16000000),
               'bench/1.0', s.channel, false
        FROM shaped s
        RETURNING id, phone, provider, channel, status, created_at
    )
    INSERT INTO {tables["message"]} (
        challenge_id, phone, provider, channel, provider_message_id, status, provider_status,
        error_code, error_text, text_masked, created_at, sent_at, status_changed_at,
        latency_ms
    )
    SELECT c.id, c.phone, c.provider, c.channel,
           'bench-' || c.provider || '-' || replace(c.id::text, '-', ''),
           m.status,
           CASE m.status WHEN 'delivered' THEN 'DELIVRD' WHEN 'failed' THEN 'UNDELIV'
                WHEN 'sent' THEN 'ACCEPTD' ELSE '' END,
           m.error_code,
           CASE WHEN m.error_code <> '' THEN 'The provider answered ' || m.error_code ELSE '' END,
           'Your code is ••••••', c.created_at,
           CASE WHEN m.status <> 'failed' THEN c.created_at END,
           c.created_at + interval '3 seconds', 80 + (random() * 900)::int
    FROM inserted c,
         LATERAL (SELECT CASE WHEN c.status = 'undeliverable' THEN 'failed'
                              ELSE {message_status} END AS status,
                         CASE WHEN c.status = 'undeliverable' THEN {error_code}
                              ELSE '' END AS error_code) m
    """


def _refusal_sql(tables: dict[str, str]) -> str:
    _region, phone = _phone_sql("r.r_phone", "r.g * 69621")
    return f"""
    WITH rows AS (
        SELECT g, random() AS r_phone, random() AS r_user,
               %(end)s::timestamptz - make_interval(secs => (g - %(first)s) * %(step)s) AS created
        FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS g
    )
    INSERT INTO {tables["refusal"]} (created_at, reason, "limit", phone, user_id, client_ip,
                                     retry_after)
    SELECT r.created, {pick(REFUSAL_REASONS, "random()")}, {pick(REFUSAL_LIMITS, "random()")},
           {phone},
           CASE WHEN r.r_user < 0.3 THEN (%(users)s::bigint[])[
               1 + mod(r.g * 13, cardinality(%(users)s::bigint[]))] END,
           '10.0.0.0'::inet + mod(r.g * 7919, 16000000), 30 + mod(r.g, 3600)
    FROM rows r
    """


def _device_event_sql(tables: dict[str, str]) -> str:
    _region, phone = _phone_sql("r.r_phone", "r.g * 16807")
    return f"""
    WITH rows AS (
        SELECT g, random() AS r_phone,
               %(end)s::timestamptz - make_interval(secs => (g - %(first)s) * %(step)s) AS created,
               (%(users)s::bigint[])[1 + mod(g * 17, cardinality(%(users)s::bigint[]))] AS uid
        FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS g
    )
    INSERT INTO {tables["deviceevent"]} (created_at, action, device_id, user_id, number, actor_id,
                                         client_ip)
    SELECT r.created, {pick(DEVICE_ACTIONS, "random()")}, NULL, r.uid, {phone}, r.uid,
           '10.0.0.0'::inet + mod(r.g * 7919, 16000000)
    FROM rows r
    """


def _audit_record_sql(tables: dict[str, str]) -> str:
    _region, phone = _phone_sql("r.r_phone", "r.g * 48271")
    return f"""
    WITH rows AS (
        SELECT g, random() AS r_phone, random() AS r_action,
               %(end)s::timestamptz - make_interval(secs => (g - %(first)s) * %(step)s) AS created
        FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS g
    ), shaped AS (
        SELECT r.*, {pick(AUDIT_ACTIONS, "r.r_action")} AS action, {phone} AS phone FROM rows r
    )
    INSERT INTO {tables["auditrecord"]} (created_at, action, actor_id, actor_repr, client_ip,
                                         object_type, object_id, phone, count, cutoff, detail)
    SELECT s.created, s.action, NULL, 'bench-admin', '10.1.0.1',
           CASE s.action WHEN 'purged' THEN '' ELSE 'django_sms2fa.challenge' END,
           CASE s.action WHEN 'purged' THEN '' ELSE md5(s.g::text) END,
           CASE s.action WHEN 'viewed_full_phone' THEN s.phone ELSE '' END,
           CASE s.action WHEN 'viewed_full_phone' THEN NULL ELSE 1 + mod(s.g, 5000) END,
           CASE s.action WHEN 'viewed_full_phone' THEN NULL
                ELSE s.created - interval '90 days' END,
           CASE s.action WHEN 'viewed_full_phone' THEN '' ELSE 'challenges: 1, messages: 1' END
    FROM shaped s
    """


def seed_audit(
    n: int,
    *,
    start: datetime,
    end: datetime,
    log: Any = print,
    bulk: bool = True,
    extra: bool = True,
) -> dict[str, float]:
    """Add ``n`` challenges and messages (and the other audit rows in
    proportion) created evenly from ``end`` back to ``start``; return timings.

    :param bulk: drop the secondary indexes and foreign keys first and build
        them again at the end.
    :param extra: device events and audit records too (the purge keeps
        them, so a top-up after a purge leaves them out).
    """
    import secrets

    from django.db import connection, transaction

    tables = _tables()
    timings: dict[str, float] = {}
    started = time.perf_counter()
    tag = secrets.token_hex(4)
    with connection.cursor() as cursor:
        users = bench_users(cursor)
        if bulk:
            drop_secondary(cursor)
        parts = [
            ("challenges + messages", _challenge_chunk_sql(tables), n),
            ("refusals", _refusal_sql(tables), n // 20),
            ("device events", _device_event_sql(tables), n // 100 if extra else 0),
            ("audit records", _audit_record_sql(tables), max(1, n // 1000) if extra else 0),
        ]
        for label, sql, count in parts:
            if count <= 0:
                continue
            t0 = time.perf_counter()
            part_step = (end - start).total_seconds() / count
            for first in range(1, count + 1, CHUNK):
                last = min(count, first + CHUNK - 1)
                with transaction.atomic():
                    cursor.execute(
                        sql,
                        {
                            "first": first,
                            "last": last,
                            "step": part_step,
                            "end": end - timedelta(seconds=(first - 1) * part_step),
                            "now": end,
                            "users": users,
                            "tag": tag,
                        },
                    )
                log(f"  {label}: {last:,} of {count:,} ({time.perf_counter() - t0:.0f} s)")
            timings[label] = time.perf_counter() - t0
        if bulk:
            timings["indexes and keys"] = restore_dropped(cursor, log)
        t0 = time.perf_counter()
        for table in tables.values():
            cursor.execute(f"VACUUM ANALYZE {table}")
        timings["vacuum analyze"] = time.perf_counter() - t0
    timings["total"] = time.perf_counter() - started
    return timings
