"""Passwordless timing: does the answer's time tell whether a number has an account?

A passwordless request for a number with an account sends an SMS; one for a number
without an account creates a decoy and sends nothing. If the SMS leaves inside the
request, the provider's latency is in the answer for known numbers only, and an
attacker with a stopwatch enumerates accounts. The documented passwordless setup
(``SEND_VIA_TASKS`` with a task backend that a worker process runs,
docs/howto/passwordless.md) answers before anything is sent.

The provider here is GoSMS pointed at an HTTP server on loopback that sleeps
150 ms before each answer (``tests/http_support.LoopbackServer``). Through the
REST API (``POST /api/2fa/challenges/`` with ``purpose = passwordless``), N requests
for a known number and N for an unknown one, interleaved (the order flips each
round, so drift in the machine's load falls on both alike), in two setups:

* ``in the request``: ``SEND_VIA_TASKS`` off — the SMS is sent before the answer;
* ``documented``: ``SEND_VIA_TASKS`` on django-tasks-db's ``DatabaseBackend``; the
  queue is then drained by django-tasks-db's own worker loop, to show the SMS
  still goes out (after the answers, at the provider's pace).

For each: the median and 95th percentile of both, the median gap, the overlap of
the two distributions (the shared area of their histograms in 0.5 ms bins: 1 is
the same distribution, 0 disjoint), P(known slower) (the probability that a known
request took longer than an unknown one, 0.5 when they cannot be told apart), and
the provider calls made while the requests ran. The target: medians within 2 ms.

    python -m bench.passwordless_timing --requests 200
    BENCH_DB=postgres BENCH_PG_NAME=... BENCH_REDIS_URL=... python -m bench.passwordless_timing
"""

from __future__ import annotations

import argparse
import bisect
import math
import statistics
import time
from collections import Counter
from typing import Any

from .common import empty_tables, ensure_database, setup_django, write_json

DELAY = 0.150  # seconds the fake provider sleeps before answering
TARGET_MS = 2.0  # medians within 2 ms
BIN_MS = 0.5  # histogram bins for the overlap
KNOWN = "+46701234567"
# Same country code and last two digits as KNOWN: the masked phones in the
# answers are equal too.
UNKNOWN = "+46709876567"
API = "/api/2fa/"
TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJhcGkiOiJiZW5jaCJ9.ZmFrZS1ub3QtYS1yZWFsLXRva2Vu"


# ---------------------------------------------------------------- figures


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(fraction * len(ordered)) - 1))]


def overlap(a: list[float], b: list[float], bin_s: float = BIN_MS / 1000) -> float:
    """The shared area of the two histograms (bins of ``bin_s`` seconds), 0 to 1."""
    ha = Counter(math.floor(x / bin_s) for x in a)
    hb = Counter(math.floor(x / bin_s) for x in b)
    return sum(min(ha[k] / len(a), hb[k] / len(b)) for k in ha.keys() & hb.keys())


def p_slower(a: list[float], b: list[float]) -> float:
    """P(a sample of ``a`` > a sample of ``b``), ties counted half (Mann-Whitney AUC)."""
    ordered = sorted(b)
    total = 0.0
    for x in a:
        below = bisect.bisect_left(ordered, x)
        ties = bisect.bisect_right(ordered, x) - below
        total += below + ties / 2
    return total / (len(a) * len(b))


def figures(known: list[float], unknown: list[float]) -> dict[str, float]:
    """Both distributions summed up, in milliseconds (samples are in seconds)."""
    ms = 1000
    known_median, unknown_median = statistics.median(known), statistics.median(unknown)
    return {
        "requests": len(known),
        "known_median_ms": known_median * ms,
        "known_p95_ms": percentile(known, 0.95) * ms,
        "unknown_median_ms": unknown_median * ms,
        "unknown_p95_ms": percentile(unknown, 0.95) * ms,
        "median_gap_ms": (known_median - unknown_median) * ms,
        "overlap": overlap(known, unknown),
        "p_known_slower": p_slower(known, unknown),
    }


def describe(name: str, f: dict[str, Any]) -> str:
    verdict = "within" if abs(f["median_gap_ms"]) <= TARGET_MS else "OUTSIDE"
    calls = f.get("provider_calls")
    return (
        f"[timing] {name}: {f['requests']} + {f['requests']} requests; "
        f"known median {f['known_median_ms']:.2f} ms (p95 {f['known_p95_ms']:.2f}), "
        f"unknown median {f['unknown_median_ms']:.2f} ms (p95 {f['unknown_p95_ms']:.2f}); "
        f"gap {f['median_gap_ms']:+.2f} ms ({verdict} the {TARGET_MS:g} ms target); "
        f"overlap {f['overlap']:.2f}; P(known slower) {f['p_known_slower']:.2f}"
        + ("" if calls is None else f"; provider calls during the requests: {calls}")
    )


# ---------------------------------------------------------------- measuring


def passwordless(client: Any, phone: str) -> Any:
    return client.post(
        API + "challenges/",
        {"phone": phone, "purpose": "passwordless"},
        content_type="application/json",
    )


def measure(requests: int, warmup: int = 5) -> tuple[list[float], list[float]]:
    """``requests`` timed passwordless requests per number, interleaved."""
    from django.test import Client

    clients = {KNOWN: Client(), UNKNOWN: Client()}
    for _ in range(warmup):
        for phone, client in clients.items():
            assert passwordless(client, phone).status_code == 202
    samples: dict[str, list[float]] = {KNOWN: [], UNKNOWN: []}
    for i in range(requests):
        order = (KNOWN, UNKNOWN) if i % 2 == 0 else (UNKNOWN, KNOWN)
        for phone in order:
            started = time.perf_counter()
            answer = passwordless(clients[phone], phone)
            samples[phone].append(time.perf_counter() - started)
            assert answer.status_code == 202, answer.content
    return samples[KNOWN], samples[UNKNOWN]


def drain_queue() -> int:
    """Run every queued task with django-tasks-db's worker loop (as db_worker does)."""
    from django_tasks_db.management.commands.db_worker import Worker

    worker = Worker(
        queue_names=["default"],
        interval=0,
        batch=True,
        backend_name="default",
        startup_delay=False,
        max_tasks=None,
        worker_id="bench-passwordless-timing",
        excluded_queue_names=[],
    )
    worker.run()
    return worker._run_tasks


def run(requests: int) -> dict[str, Any]:
    from django_tasks_db.models import DBTaskResult

    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test.utils import override_settings

    from django_sms2fa.models import PhoneDevice
    from django_sms2fa.providers import reset_providers
    from tests.http_support import Answer, LoopbackServer

    ensure_database()
    empty_tables()
    DBTaskResult.objects.all().delete()
    PhoneDevice.objects.filter(number__in=[KNOWN, UNKNOWN]).delete()
    user, _ = get_user_model().objects.get_or_create(username="bench-passwordless")
    PhoneDevice.objects.create(user=user, number=KNOWN, confirmed=True, name="bench")

    server = LoopbackServer().start()
    server.handler = lambda recorded: Answer(200, {"id": "6658053caa16b5ca5c5d72fc"}, delay=DELAY)
    provider = {
        "BACKEND": "django_sms2fa.providers.gosms.GoSMSProvider",
        "OPTIONS": {"token": TOKEN, "base_url": server.url},
    }
    base = {**settings.SMS2FA, "PROVIDERS": {"default": provider}, "PASSWORDLESS_LOGIN": True}
    setups = {
        "in the request": ({**base, "SEND_VIA_TASKS": False}, None),
        "documented": (
            {**base, "SEND_VIA_TASKS": True, "TASK_BACKEND": "default"},
            {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}},
        ),
    }
    result: dict[str, Any] = {
        "db": connection.vendor,
        "provider_delay_ms": DELAY * 1000,
        "target_ms": TARGET_MS,
        "setups": {},
    }
    try:
        for name, (sms2fa, tasks) in setups.items():
            extra = {"TASKS": tasks} if tasks else {}
            with override_settings(SMS2FA=sms2fa, **extra):
                reset_providers()
                calls_before = len(server.requests)
                known, unknown = measure(requests)
                f = figures(known, unknown)
                f["provider_calls"] = len(server.requests) - calls_before
                if tasks:
                    started = time.perf_counter()
                    f["worker_tasks"] = drain_queue()
                    f["worker_seconds"] = time.perf_counter() - started
                    f["provider_calls_after_worker"] = len(server.requests) - calls_before
                result["setups"][name] = f
    finally:
        server.stop()
    return result


def render(result: dict[str, Any]) -> str:
    lines = [
        f"Passwordless timing on {result['db']}, provider answering in "
        f"{result['provider_delay_ms']:.0f} ms:"
    ]
    for name, f in result["setups"].items():
        lines.append(describe(name, f))
        if "worker_tasks" in f:
            lines.append(
                f"[timing] {name}: the worker then ran {f['worker_tasks']} tasks in "
                f"{f['worker_seconds']:.1f} s and made {f['provider_calls_after_worker']} "
                "provider calls (the known number's SMS; decoys send nothing)"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--json", default=None, help="write the result here (for bench/run.py)")
    args = parser.parse_args()
    setup_django()
    result = run(args.requests)
    print(render(result), flush=True)
    if args.json:
        write_json(result, args.json)


if __name__ == "__main__":
    main()
