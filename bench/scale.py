"""Verify time with 10,000 and with 1,000,000 challenges in the table: it must not grow.

The table is emptied and filled with ``bench.seed.seed`` (one ``INSERT …
SELECT … generate_series`` on PostgreSQL) to each size in turn; at each size,
``--samples`` fresh challenges are requested through the flows and verified,
and only the verify is timed. On PostgreSQL the plans of verify's two
statements are printed too: both must find the row by its primary key.

    BENCH_DB=postgres python -m bench.scale --sizes 10000,1000000
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from .common import empty_tables, ensure_database, setup_django, summarize, timed, write_json


def verify_samples(samples: int, first: int) -> list[float]:
    from django_sms2fa import flows
    from django_sms2fa.providers import locmem

    locmem.reset()
    made = []
    for i in range(samples):
        challenge = flows.request_challenge(phone=f"+4670{4_000_000 + first + i}", purpose="login")
        made.append((challenge.pk, locmem.outbox[-1].code))
    locmem.reset()
    return timed(lambda pk=pk, code=code: flows.verify_challenge(pk, code) for pk, code in made)


def plans() -> dict[str, str]:
    """EXPLAIN of verify's SELECT and guarded UPDATE (PostgreSQL; nothing is changed)."""
    from django.db import connection

    from django_sms2fa.models import Challenge

    pk = Challenge.objects.values_list("pk", flat=True).first()
    select = Challenge.objects.select_related("user", "device").filter(pk=pk).explain()
    with connection.cursor() as cursor:
        table = Challenge._meta.db_table
        cursor.execute(
            f"EXPLAIN UPDATE {table} SET attempts = attempts + 1 WHERE id = %s "
            "AND status = 'pending' AND attempts < max_attempts AND expires_at > now() "
            "AND code_hash = %s",
            [pk, "0" * 64],
        )
        update_plan = "\n".join(row[0] for row in cursor.fetchall())
    return {"select": select, "update": update_plan}


def settle() -> None:
    """Let the server finish the seeding's writes before anything is timed."""
    from django.db import connection

    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            try:
                cursor.execute("CHECKPOINT")  # superusers only; harmless to skip
            except Exception:  # noqa: BLE001 - not allowed: time it unsettled
                pass
        cursor.execute("ANALYZE")


def measure(samples: int, first: int) -> dict[str, Any]:
    """Verify through the flows and the floor (one raw guarded UPDATE), interleaved."""
    from .steps import Floor

    floor = Floor()
    app: list[float] = []
    raw: list[float] = []
    rounds = 4
    for r in range(rounds):
        app += verify_samples(samples // rounds, first + r * samples)
        raw += floor.run(700_000 + first + r * samples, samples // rounds)["verify"]
    timing = summarize(app).as_dict()
    floor_timing = summarize(raw).as_dict()
    return {
        **timing,
        "floor_p50_us": floor_timing["p50_us"],
        "ratio": timing["p50_us"] / floor_timing["p50_us"],
    }


def run(sizes: list[int], samples: int) -> dict[str, Any]:
    """Each size in turn, then the first size again (so drift in the machine's
    load between the sizes shows)."""
    from django.db import connection

    from django_sms2fa.models import Challenge

    from .seed import seed

    ensure_database()
    empty_tables()
    # Warm-up: imports, templates, the first connection.
    verify_samples(20, 900_000)
    out: dict[str, Any] = {"db": connection.vendor, "samples": samples, "sizes": []}
    plan = [*sizes, sizes[0]]
    for index, size in enumerate(plan):
        have = Challenge.objects.count()
        if size < have:
            empty_tables()
            have = 0
        started = time.perf_counter()
        if size > have:
            seed(size - have)
        seeded_in = time.perf_counter() - started
        rows = Challenge.objects.count()
        settle()
        entry = {
            "size": size,
            "again": index == len(plan) - 1,
            "rows": rows,
            "seed_seconds": round(seeded_in, 1),
            **measure(samples, index * 10 * samples),
        }
        if connection.vendor == "postgresql":
            entry["plans"] = plans()
        out["sizes"].append(entry)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,100000", help="table sizes, ascending")
    parser.add_argument("--samples", type=int, default=200, help="verifies timed per size")
    parser.add_argument("--json", help="write the results here (default: stdout)")
    args = parser.parse_args(argv)
    setup_django()
    result = run([int(s) for s in args.sizes.split(",")], args.samples)
    write_json(result, args.json)


if __name__ == "__main__":
    main()
