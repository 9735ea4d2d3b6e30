"""The retention purge on the big table, with logins going on beside it.

:func:`purge_beside_cycles` starts a second process that runs request → verify
cycles (``flows.request_challenge`` then ``flows.verify_challenge`` with the
code the locmem provider got) on the same database, lets it warm up and time
a baseline, then runs ``retention.purge`` in this process and reports both:
the purge's rows per second and its longest batch, the cycle's p50/p99 before
and during the purge.

A second process, not a thread: the two share no interpreter lock, as a
cron purge and a web worker share none.
"""

from __future__ import annotations

import multiprocessing
import os
import statistics
import time
from datetime import datetime
from typing import Any

BASELINE_SECONDS = 10.0
# The cycles' numbers: +4672 is a Swedish mobile range the seed never uses
# (bench/audit_seed.py, NUMBERS), so what the cycles wrote can be told apart.
CYCLE_PREFIX, CYCLE_PREFIX_END = "+4672", "+4673"


def remove_cycle_rows() -> int:
    """Delete the challenges and messages the cycles wrote (an index range on
    the phone), so that they do not swell "today" for the next run's pages."""
    from django.db import transaction

    from django_sms2fa.models import Challenge, Message

    cycle_numbers = {"phone__gte": CYCLE_PREFIX, "phone__lt": CYCLE_PREFIX_END}
    # Plain DELETE statements: QuerySet.delete() would load every challenge
    # into this process first (and swell the peak RSS the export reports).
    # Only messages point at a challenge, and they go first.
    with transaction.atomic():
        messages = Message.objects.filter(**cycle_numbers)._raw_delete(Message.objects.db)
        challenges = Challenge.objects.filter(**cycle_numbers)._raw_delete(Challenge.objects.db)
    return messages + challenges


def _percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def cycle_worker(
    settings_env: dict[str, str], stop: Any, ready: Any, results: Any, first_phone: int
) -> None:
    """Run request → verify cycles until ``stop``; put [(start, seconds)] on ``results``."""
    os.environ.update(settings_env)
    import logging

    import django

    django.setup()
    logging.getLogger("django_sms2fa").setLevel(logging.WARNING)
    from django_sms2fa import flows
    from django_sms2fa.providers import locmem

    def cycle(i: int) -> None:
        challenge = flows.request_challenge(
            phone=f"{CYCLE_PREFIX}{first_phone + i:07d}", purpose="login"
        )
        code = locmem.outbox[-1].code
        flows.verify_challenge(challenge.pk, code)
        locmem.reset()

    for i in range(20):  # connections, caches, the first statements planned
        cycle(i)
    ready.set()
    samples: list[tuple[float, float]] = []
    i = 20
    while not stop.is_set():
        started = time.perf_counter()
        cycle(i)
        samples.append((time.time(), time.perf_counter() - started))
        i += 1
    results.put(samples)


def _summary(samples: list[float]) -> dict[str, Any]:
    return {
        "cycles": len(samples),
        "p50_ms": statistics.median(samples) * 1000 if samples else 0.0,
        "p99_ms": _percentile(samples, 0.99) * 1000,
        "max_ms": max(samples) * 1000 if samples else 0.0,
    }


def purge_beside_cycles(cutoff: datetime, *, batch_size: int, log: Any = print) -> dict[str, Any]:
    """Purge everything older than ``cutoff`` while cycles run in another process."""
    from django.db import connection

    from django_sms2fa import retention

    connection.close()  # the child must not inherit this process's socket
    context = multiprocessing.get_context("spawn")
    stop, ready, results = context.Event(), context.Event(), context.Queue()
    env = {key: value for key, value in os.environ.items() if key.startswith(("DJANGO", "SMS2FA"))}
    worker = context.Process(
        target=cycle_worker, args=(env, stop, ready, results, int(time.time()) % 1_000_000)
    )
    worker.start()
    if not ready.wait(120):
        worker.terminate()
        raise RuntimeError("the request → verify worker did not start")
    log(f"  cycles running; baseline for {BASELINE_SECONDS:.0f} s")
    time.sleep(BASELINE_SECONDS)
    batches: list[float] = []
    last = [time.perf_counter()]

    def progress(result: retention.PurgeResult) -> None:
        now = time.perf_counter()
        batches.append(now - last[0])
        last[0] = now
        if result.batches % 500 == 0:
            log(f"  purge: {result.total:,} rows, {result.rows_per_second:,.0f} rows/s")

    purge_start = time.time()
    last[0] = time.perf_counter()
    result = retention.purge(cutoff, batch_size=batch_size, progress=progress)
    purge_end = time.time()
    # A few more seconds after, then stop the cycles.
    time.sleep(2)
    stop.set()
    samples = results.get(timeout=120)
    worker.join(60)
    removed = remove_cycle_rows()
    log(f"  removed the {removed:,} rows the cycles wrote")
    before = [s for t, s in samples if t + s < purge_start]
    during = [s for t, s in samples if t >= purge_start and t + s <= purge_end]
    return {
        "cutoff": cutoff.isoformat(),
        "batch_size": batch_size,
        "counts": result.counts,
        "rows": result.total,
        "seconds": result.elapsed,
        "rows_per_s": result.rows_per_second,
        "batches": result.batches,
        "batch_p50_ms": statistics.median(batches) * 1000 if batches else 0.0,
        "batch_max_ms": max(batches) * 1000 if batches else 0.0,
        "cycle_before": _summary(before),
        "cycle_during": _summary(during),
    }
