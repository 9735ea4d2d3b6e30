"""The audit admin at 10 million rows: every screen timed through the real admin.

Seeds ``BENCH_AUDIT_ROWS`` challenges and as many messages (default
10,000,000 of each) over 12 months into its own PostgreSQL database
(``bench/audit_seed.py``: SQL, in chunks, indexes rebuilt after), then, as a
logged-in superuser with Django's test client, runs ``sms2fa_rollup`` (as
the periodic task would have), then times the median of
``BENCH_AUDIT_REPEAT`` requests (default 5) of every changelist, the last
page and page 500 (past the last: a redirect), every choice of every list
filter, a phone search in every format a user types, the change pages, the
statistics page over 7, 30 and 90 days (before and after the roll-ups), the
CSV export of 1,000,000 rows (with the process's peak memory) and the
retention purge of the older half in batches of ``BENCH_AUDIT_PURGE_BATCH``
(default 5,000) while request → verify cycles run beside it::

    BENCH_AUDIT_DB=sms2fa_bench10m .venv/bin/python -m bench.audit_10m
    BENCH_AUDIT_ROWS=100000 .venv/bin/python -m bench.audit_10m   # a small run

Rows already seeded are used again when their count is right; after a purge
the next run tops the oldest months up again (the cycles' own rows are
deleted after the purge). ``BENCH_AUDIT_PARTS`` (default
``pages,search,detail,stats,export,purge``; ``seed`` only seeds) picks the
parts. It writes ``bench/.data/audit-10m/result.json`` and ``result.md`` (the
table). The figures of 2026-12-06 are in ``docs/performance.md``.
"""

from __future__ import annotations

import json
import os
import platform
import re
import resource
import statistics
import time
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from bench.audit_seed import DATA

PAGE_GOAL_MS = 200.0
SEARCH_GOAL_MS = 50.0
DAYS = 365
PARTS = ("pages", "search", "detail", "stats", "export", "purge")


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    return int(value.replace("_", "")) if value else default


ROWS = _env_int("BENCH_AUDIT_ROWS", 10_000_000)
REPEAT = _env_int("BENCH_AUDIT_REPEAT", 5)
EXPORT_ROWS = _env_int("BENCH_AUDIT_EXPORT_ROWS", min(1_000_000, ROWS // 10))
PURGE_ROWS = _env_int("BENCH_AUDIT_PURGE_ROWS", ROWS // 2)
PURGE_BATCH = _env_int("BENCH_AUDIT_PURGE_BATCH", 5000)


def log(text: str) -> None:
    print(text, flush=True)


# ------------------------------------------------------------------ set-up


def setup() -> None:
    os.environ["SMS2FA_BENCH_DB"] = os.environ.get("BENCH_AUDIT_DB", "sms2fa_bench_audit")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")
    import logging

    import django

    django.setup()
    from django.conf import settings

    settings.DEBUG = False
    settings.ALLOWED_HOSTS = ["*"]
    logging.getLogger("django_sms2fa").setLevel(logging.WARNING)
    from bench.admin_scale import _ensure_database

    _ensure_database()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def prepare(rows: int) -> dict[str, Any]:
    """Seed, top up or reuse; return what was done and how long it took."""
    from django.db import connection
    from django.utils import timezone

    from bench.audit_purge import remove_cycle_rows
    from bench.audit_seed import restore_dropped, seed_audit
    from django_sms2fa.models import Challenge, Message

    with connection.cursor() as cursor:
        if restore_dropped(cursor, log):
            log("rebuilt the indexes a killed run had dropped")
    # Rows an earlier run's cycles left (a killed purge): not part of the seed.
    if removed := remove_cycle_rows():
        log(f"removed {removed:,} rows an earlier run's cycles wrote")
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM {Challenge._meta.db_table}")
        have = cursor.fetchone()[0]
        cursor.execute(f"SELECT min(created_at) FROM {Challenge._meta.db_table}")
        oldest = cursor.fetchone()[0]
    now = timezone.now()
    start = now - timedelta(days=DAYS)
    if have == rows and os.environ.get("BENCH_AUDIT_RESEED") != "1":
        log(f"using the {have:,} challenges already seeded")
        return {"seeded": 0, "reused": have}
    missing = rows - have
    # A top-up only refills what a purge took: the rows missing are those the
    # purged span held at this size (else the months would be lopsided).
    purged_share = (oldest - start) / (now - start) if oldest is not None else 0.0
    if 0 < have < rows and oldest > start and abs(missing - rows * purged_share) < rows / 20:
        log(f"topping up {missing:,} challenges older than {oldest:%Y-%m-%d} (after a purge)")
        timings = seed_audit(
            missing, start=start, end=oldest, log=log, bulk=missing >= 1_000_000, extra=False
        )
        return {"seeded": missing, "top_up": True, "seconds": timings}
    with connection.cursor() as cursor:
        tables = [m._meta.db_table for m in (Message, Challenge)]
        from django_sms2fa.models import AuditRecord, DeviceEvent, Refusal

        tables += [m._meta.db_table for m in (Refusal, DeviceEvent, AuditRecord)]
        cursor.execute(f"TRUNCATE {', '.join(tables)}")
    log(f"seeding {rows:,} challenges and {rows:,} messages over {DAYS} days")
    timings = seed_audit(rows, start=start, end=now, log=log, bulk=rows >= 100_000)
    return {"seeded": rows, "seconds": timings}


def has_rollups() -> bool:
    from django.core.management import get_commands

    return "sms2fa_rollup" in get_commands()


def clear_rollups() -> None:
    from django.db import connection

    from django_sms2fa.models import DailyRollup

    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {DailyRollup._meta.db_table}")


def roll_up() -> dict[str, Any] | None:
    """``sms2fa_rollup`` when the app has it: the closed days get their roll-ups,
    as on a site that runs the periodic task (the stats page reads them)."""
    from django.core.management import call_command

    if not has_rollups():
        return None
    from django.db import connection

    from django_sms2fa.models import DailyRollup

    started = time.perf_counter()
    call_command("sms2fa_rollup", verbosity=0)
    seconds = time.perf_counter() - started
    # What autovacuum has long done on a site that has rolled up for months:
    # planner statistics, and pages marked visible (the stats page's biggest
    # reads are index-only scans). Right after a year is rolled up at once,
    # neither is there yet.
    with connection.cursor() as cursor:
        cursor.execute(f"VACUUM (ANALYZE) {DailyRollup._meta.db_table}")
    return {"seconds": seconds}


def admin_client() -> Any:
    from django.contrib.auth import get_user_model
    from django.test import Client

    admin, _created = get_user_model().objects.get_or_create(
        username="bench-admin", defaults={"is_staff": True, "is_superuser": True}
    )
    client = Client()
    client.force_login(admin)
    return client


# --------------------------------------------------------------- measuring

_COUNT = re.compile(r"\s*SELECT\s+COUNT\(", re.I)
#: The screens that must never count the whole table (the stats page counts
#: over its date range by design).
COUNTLESS = ("changelist", "page 500", "filter", "search")


def full_count(sql: str) -> bool:
    """A statement that is a ``COUNT`` not bounded by a ``LIMIT`` (reads every matching row)."""
    return bool(_COUNT.match(sql)) and "LIMIT" not in sql.upper()


def measure(
    client: Any, path: str, query: dict[str, str], repeat: int, group: str = ""
) -> dict[str, Any]:
    """Median of ``repeat`` GETs (after one warm-up), the slowest SQL and the query count."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    def once() -> tuple[float, Any, Any]:
        with CaptureQueriesContext(connection) as queries:
            started = time.perf_counter()
            response = client.get(path, query)
            if response.streaming:
                for _chunk in response.streaming_content:
                    pass
            else:
                response.content  # noqa: B018 - rendered already; read as a server would
            elapsed = time.perf_counter() - started
        return elapsed, queries, response

    once()  # warm-up: the plan cache, the template loader
    times, slowest, slowest_sql, count, status, counts = [], 0.0, "", 0, 0, False
    for _ in range(repeat):
        elapsed, queries, response = once()
        times.append(elapsed)
        count = len(queries)
        status = response.status_code
        for q in queries:
            counts = counts or (group in COUNTLESS and full_count(q["sql"]))
            if float(q["time"]) >= slowest:
                slowest, slowest_sql = float(q["time"]), q["sql"]
    return {
        "status": status,
        "median_ms": statistics.median(times) * 1000,
        "max_ms": max(times) * 1000,
        "slowest_sql_ms": slowest * 1000,
        "slowest_sql": slowest_sql,
        "queries": count,
        "full_count": counts,
    }


def filter_choices(client: Any, path: str) -> list[tuple[str, dict[str, str]]]:
    """Every choice of every list filter of a changelist, as (label, GET params)."""
    from django.test.utils import setup_test_environment, teardown_test_environment

    setup_test_environment()
    try:
        response = client.get(path)
    finally:
        teardown_test_environment()
    cl = response.context["cl"]
    out = []
    for spec in cl.filter_specs:
        for choice in spec.choices(cl):
            if choice.get("selected") and not choice["query_string"].strip("?"):
                continue
            params = dict(parse_qsl(choice["query_string"].lstrip("?")))
            if not params:
                continue
            out.append((f"{spec.title}: {choice['display']}", params))
    return out


def rows_estimate(model: Any) -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass",
            [model._meta.db_table],
        )
        return max(0, cursor.fetchone()[0])


# ------------------------------------------------------------------ cases


def page_cases(client: Any) -> list[dict[str, Any]]:
    from django.contrib import admin
    from django.urls import reverse

    from django_sms2fa.admin.base import COUNT_LIMIT, AuditAdmin

    cases = []
    for model in admin.site._registry:
        if model._meta.app_label != "django_sms2fa":
            continue
        name = model._meta.model_name
        path = reverse(f"admin:django_sms2fa_{name}_changelist")
        rows = rows_estimate(model)
        cases.append({"group": "changelist", "model": name, "name": "changelist", "path": path})
        if rows > 50_000:
            # The pages stop at COUNT_LIMIT rows (page 100 of 100 rows): the
            # deepest page is timed, and page 500 must answer with the
            # changelist's "bad page" redirect, not an OFFSET of 50,000 rows.
            last = COUNT_LIMIT // AuditAdmin.list_per_page
            cases.append(
                {
                    "group": "page 500",
                    "model": name,
                    "name": f"page {last} (the last page)",
                    "path": path,
                    "query": {"p": str(last)},
                }
            )
            cases.append(
                {
                    "group": "page 500",
                    "model": name,
                    "name": "page 500 (past the last: redirect)",
                    "path": path,
                    "query": {"p": "500"},
                    "status": 302,
                }
            )
        for label, params in filter_choices(client, path):
            cases.append(
                {"group": "filter", "model": name, "name": label, "path": path, "query": params}
            )
    return cases


def _phone_formats(e164: str) -> list[tuple[str, str]]:
    """``e164`` (a Swedish mobile number) as users type it."""
    national = "0" + e164[3:]
    return [
        ("E.164", e164),
        ("national", national),
        ("spaces", f"{national[:3]} {national[3:6]} {national[6:8]} {national[8:]}"),
        ("dashes", f"{national[:3]}-{national[3:6]} {national[6:8]} {national[8:]}"),
        (
            "international, spaces",
            f"+46 {national[1:3]} {national[3:6]} {national[6:8]} {national[8:]}",
        ),
        ("00 prefix", "00" + e164[1:]),
        ("brackets and dots", f"({national[:3]}) {national[3:6]}.{national[6:8]}.{national[8:]}"),
        # Not a number: the search takes whole numbers only (no LIKE), so
        # this one finds nothing, and must do so as fast.
        ("partial (last 7 digits, no match)", e164[-7:]),
    ]


def search_cases() -> list[dict[str, Any]]:
    from django.urls import reverse

    from django_sms2fa.models import Challenge, DeviceEvent, Refusal

    # An old number, so the search cannot lean on recency; and a foreign one.
    oldest = (
        Challenge.objects.filter(region="SE")
        .order_by("created_at")
        .values_list("phone", flat=True)
        .first()
    )
    foreign = (
        Challenge.objects.filter(region="NO")
        .order_by("created_at")
        .values_list("phone", flat=True)
        .first()
    )
    cases = []
    for name in ("challenge", "message"):
        path = reverse(f"admin:django_sms2fa_{name}_changelist")
        for label, term in _phone_formats(oldest):
            cases.append(
                {
                    "group": "search",
                    "model": name,
                    "name": f"phone, {label}",
                    "path": path,
                    "query": {"q": term},
                    "term": term,
                }
            )
        if foreign:
            spaced = f"{foreign[:3]} {foreign[3:5]} {foreign[5:7]} {foreign[7:9]} {foreign[9:]}"
            cases.append(
                {
                    "group": "search",
                    "model": name,
                    "name": "phone, other country",
                    "path": path,
                    "query": {"q": spaced},
                    "term": spaced,
                }
            )
        cases.append(
            {
                "group": "search",
                "model": name,
                "name": "no match",
                "path": path,
                "query": {"q": "070-000 00 00"},
                "term": "070-000 00 00",
            }
        )
    message_id = (
        Challenge.objects.filter(phone=oldest)
        .values_list("messages__provider_message_id", flat=True)
        .first()
    )
    if message_id:
        for name in ("challenge", "message"):
            cases.append(
                {
                    "group": "search",
                    "model": name,
                    "name": "provider message id",
                    "path": reverse(f"admin:django_sms2fa_{name}_changelist"),
                    "query": {"q": message_id},
                }
            )
    for model in (Refusal, DeviceEvent):
        field = "number" if model is DeviceEvent else "phone"
        number = model.objects.order_by("created_at").values_list(field, flat=True).first()
        if number:
            name = model._meta.model_name
            cases.append(
                {
                    "group": "search",
                    "model": name,
                    "name": "phone, E.164",
                    "path": reverse(f"admin:django_sms2fa_{name}_changelist"),
                    "query": {"q": number},
                }
            )
    return cases


def detail_cases() -> list[dict[str, Any]]:
    from django.urls import reverse

    from django_sms2fa.models import Challenge, DeviceEvent, Message, Refusal

    cases = []
    for model in (Challenge, Message, Refusal, DeviceEvent):
        pk = model.objects.order_by("created_at").values_list("pk", flat=True).first()
        if pk is None:
            continue
        name = model._meta.model_name
        cases.append(
            {
                "group": "detail",
                "model": name,
                "name": "change page (an old row)",
                "path": reverse(f"admin:django_sms2fa_{name}_change", args=[pk]),
            }
        )
    return cases


def stats_cases() -> list[dict[str, Any]]:
    from django.urls import reverse
    from django.utils import timezone

    today = timezone.localdate()
    path = reverse("admin:django_sms2fa_challenge_stats")
    return [
        {
            "group": "stats",
            "model": "challenge",
            "name": f"stats, {days} days",
            "path": path,
            "query": {
                "from": (today - timedelta(days=days - 1)).isoformat(),
                "to": today.isoformat(),
            },
        }
        for days in (7, 30, 90)
    ]


def goal_of(case: dict[str, Any]) -> float:
    return SEARCH_GOAL_MS if case["group"] == "search" else PAGE_GOAL_MS


def explain(sql: str) -> str:
    """EXPLAIN (ANALYZE, BUFFERS) of a captured statement (its parameters inlined)."""
    from django.db import connection

    if not sql.lstrip().upper().startswith("SELECT"):
        return ""
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql.replace("%", "%%"))
        return "\n".join(row[0] for row in cursor.fetchall())


def run_cases(
    client: Any, cases: list[dict[str, Any]], informative: bool = False, repeat: int = 0
) -> list[dict[str, Any]]:
    """Measure each case; ``informative``: a "before" figure, no plan explained."""
    results = []
    for case in cases:
        result = measure(
            client, case["path"], case.get("query", {}), repeat or REPEAT, case["group"]
        )
        goal = goal_of(case)
        result.update(
            group=case["group"],
            model=case["model"],
            name=case["name"],
            query=case.get("query", {}),
            goal_ms=goal,
            met=result["status"] == case.get("status", 200)
            and result["median_ms"] < goal
            and not result["full_count"],
        )
        if not result["met"] and not informative:
            result["plan"] = explain(result["slowest_sql"])
        results.append(result)
        log(
            f"{case['group']:<10} {case['model']:<14} {case['name'][:44]:<44} "
            f"{result['median_ms']:>8.1f} ms  sql {result['slowest_sql_ms']:>7.1f}  "
            f"q {result['queries']:>3}  {result['status']}{'' if result['met'] else '  MISSED'}"
        )
    return results


# ------------------------------------------------------------------ export


def _rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def export(client: Any, rows: int) -> dict[str, Any]:
    """The changelist's CSV export of about ``rows`` rows: time, bytes, peak RSS."""
    from django.db import connection
    from django.urls import reverse

    from django_sms2fa.models import Challenge

    table = Challenge._meta.db_table
    with connection.cursor() as cursor:
        # The newest ``rows`` rows: a date range the changelist's filter takes.
        cursor.execute(
            f"SELECT created_at FROM {table} ORDER BY created_at DESC OFFSET %s LIMIT 1", [rows]
        )
        found = cursor.fetchone()
    since = found[0] if found else datetime(2000, 1, 1)
    query = {"created_at__gte": since.isoformat()}
    path = reverse("admin:django_sms2fa_challenge_export")
    # Peak RSS from here on: writing 5 to clear_refs resets VmHWM (Linux).
    try:
        Path("/proc/self/clear_refs").write_text("5")
        reset = True
    except OSError:
        reset = False
    rss_before = _rss_kib("VmRSS")
    started = time.perf_counter()
    response = client.get(path, query)
    first_byte = None
    size = lines = 0
    for chunk in response.streaming_content:
        if first_byte is None:
            first_byte = time.perf_counter() - started
        size += len(chunk)
        lines += chunk.count(b"\n")
    elapsed = time.perf_counter() - started
    peak = _rss_kib("VmHWM") if reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "status": response.status_code,
        "streaming": response.streaming,
        "rows": lines - 1,
        "bytes": size,
        "seconds": elapsed,
        "rows_per_s": (lines - 1) / elapsed if elapsed else 0.0,
        "first_byte_ms": (first_byte or 0.0) * 1000,
        "rss_before_mib": rss_before / 1024,
        "peak_rss_mib": peak / 1024,
        "peak_growth_mib": (peak - rss_before) / 1024,
        "peak_is_since_reset": reset,
    }


# ------------------------------------------------------------------- purge


def purge(rows: int) -> dict[str, Any]:
    from django.db import connection

    from bench.audit_purge import purge_beside_cycles
    from django_sms2fa.models import Challenge

    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT created_at FROM {Challenge._meta.db_table} ORDER BY created_at "
            "OFFSET %s LIMIT 1",
            [rows],
        )
        cutoff = cursor.fetchone()[0]
    result = purge_beside_cycles(cutoff, batch_size=PURGE_BATCH, log=log)
    with connection.cursor() as cursor:
        for model in ("challenge", "message", "refusal"):
            cursor.execute(f"VACUUM ANALYZE django_sms2fa_{model}")
    return result


# ------------------------------------------------------------------ report


def machine() -> dict[str, Any]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT version()")
        version = cursor.fetchone()[0].split(" on ")[0]
        settings = {}
        for name in (
            "shared_buffers",
            "work_mem",
            "maintenance_work_mem",
            "effective_cache_size",
            "max_parallel_workers_per_gather",
            "random_page_cost",
        ):
            cursor.execute(f"SHOW {name}")
            settings[name] = cursor.fetchone()[0]
    mem = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem = int(line.split()[1]) // 1024
    import django

    return {
        "date": date.today().isoformat(),
        "nproc": os.cpu_count(),
        "ram_mib": mem,
        "load_average": os.getloadavg(),
        "python": platform.python_version(),
        "django": django.get_version(),
        "postgresql": version,
        "postgresql_settings": settings,
    }


def markdown(result: dict[str, Any]) -> str:
    m = result["machine"]
    pg = m["postgresql_settings"]
    out = [
        f"Date {m['date']}; {m['nproc']} CPUs (shared), {m['ram_mib'] / 1024:.0f} GiB RAM, "
        f"{m['postgresql']} (shared_buffers {pg['shared_buffers']}, work_mem {pg['work_mem']}), "
        f"Django {m['django']}, Python {m['python']}; load average "
        f"{' '.join(f'{x:.1f}' for x in m['load_average'])} at the start.",
        "",
        f"{result['rows']:,} challenges and {result['messages']:,} messages over {DAYS} days; "
        f"median of {result['repeat']} requests through the admin as a superuser.",
        "",
        "| screen | model | case | median ms | max ms | slowest SQL ms | queries | goal |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in result["pages"]:
        verdict = (
            "met"
            if r["met"]
            else (
                f"**missed** ({'HTTP ' + str(r['status']) if r['status'] not in (200, 302) else ''}"
                f"{'full COUNT' if r['full_count'] else ''}".rstrip()
                + ")"
            )
        )
        if verdict == "**missed** ()":
            verdict = "**missed**"
        out.append(
            f"| {r['group']} | {r['model']} | {r['name']} | {r['median_ms']:.1f} | "
            f"{r['max_ms']:.1f} | {r['slowest_sql_ms']:.1f} | {r['queries']} | "
            f"< {r['goal_ms']:.0f} ms: {verdict} |"
        )
    if before := result.get("stats_before"):
        out += ["", "The stats page before the roll-ups (the raw rows scanned for each range):", ""]
        out += [
            f"- {r['name']}: median {r['median_ms']:,.0f} ms (slowest SQL "
            f"{r['slowest_sql_ms']:,.0f} ms, {r['queries']} queries)"
            for r in before
        ]
    if e := result.get("export"):
        out += [
            "",
            f"CSV export: {e['rows']:,} rows, {e['bytes'] / 2**20:.0f} MiB in "
            f"{e['seconds']:.1f} s ({e['rows_per_s']:,.0f} rows/s, first byte after "
            f"{e['first_byte_ms']:.0f} ms), streamed: {e['streaming']}; peak RSS "
            f"{e['peak_rss_mib']:.0f} MiB, {e['peak_growth_mib']:+.0f} MiB over the "
            f"{e['rss_before_mib']:.0f} MiB before it.",
        ]
    if p := result.get("purge"):
        b, d = p["cycle_before"], p["cycle_during"]
        out += [
            "",
            f"Purge: {p['rows']:,} rows ({', '.join(f'{k} {v:,}' for k, v in p['counts'].items())})"
            f" in {p['seconds']:.1f} s: **{p['rows_per_s']:,.0f} rows/s**, {p['batches']:,} "
            f"batches of {p['batch_size']:,} (batch p50 {p['batch_p50_ms']:.0f} ms, max "
            f"{p['batch_max_ms']:.0f} ms). Request → verify beside it: p50 "
            f"{d['p50_ms']:.1f} ms, **p99 {d['p99_ms']:.1f} ms** ({d['cycles']:,} cycles); "
            f"before the purge p50 {b['p50_ms']:.1f} ms, p99 {b['p99_ms']:.1f} ms "
            f"({b['cycles']:,} cycles).",
        ]
    if r := result.get("rollups"):
        out += ["", f"`sms2fa_rollup` over the seeded days: {r['seconds']:.1f} s."]
    return "\n".join(out) + "\n"


def main() -> None:
    parts = os.environ.get("BENCH_AUDIT_PARTS", ",".join(PARTS)).split(",")
    setup()
    from django_sms2fa.models import Message

    result: dict[str, Any] = {"rows": ROWS, "repeat": REPEAT}
    result["machine"] = machine()
    result["seed"] = prepare(ROWS)
    if parts == ["seed"]:  # only the seeding (a long load started ahead of the timings)
        log(json.dumps(result["seed"], default=str))
        return
    result["messages"] = rows_estimate(Message)
    client = admin_client()
    if "stats" in parts and has_rollups():
        # The "before" figure: the stats page over the raw rows, no roll-ups.
        clear_rollups()
        # Seconds per request on the raw rows: fewer repeats.
        result["stats_before"] = run_cases(
            client, stats_cases(), informative=True, repeat=min(REPEAT, 2)
        )
    result["rollups"] = roll_up()
    if result["rollups"]:
        log(f"sms2fa_rollup: {result['rollups']['seconds']:.1f} s")
    cases: list[dict[str, Any]] = []
    if "pages" in parts:
        cases += page_cases(client)
    if "search" in parts:
        cases += search_cases()
    if "detail" in parts:
        cases += detail_cases()
    if "stats" in parts:
        cases += stats_cases()
    result["pages"] = run_cases(client, cases)
    if "export" in parts:
        result["export"] = export(client, EXPORT_ROWS)
        log(f"export: {json.dumps(result['export'])}")
    if "purge" in parts:
        result["purge"] = purge(PURGE_ROWS)
        log(f"purge: {json.dumps(result['purge'])}")
    DATA.mkdir(parents=True, exist_ok=True)
    (DATA / "result.json").write_text(json.dumps(result, indent=1, default=str))
    text = markdown(result)
    (DATA / "result.md").write_text(text)
    print("\n" + text)


if __name__ == "__main__":
    main()
