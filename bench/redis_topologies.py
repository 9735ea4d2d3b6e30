"""Cycles per second with the limits on one Redis, on Redis Sentinel and on Redis Cluster.

A cycle is ``flows.request_challenge`` (a code to a fresh phone, the locmem
provider) then ``flows.verify_challenge`` with that code, run by several
threads in this process on PostgreSQL, with every limit on: the per-phone
limits, the lockout and the SMS-pumping breaker at their defaults, the
country and site-wide limits raised so that they count without refusing (every
cycle is one more send to one country). Each topology is one cache alias named
in ``SMS2FA["CACHE"]``; the Sentinel and Cluster servers are started here
(tests/sentinel_support.py, tests/cluster_support.py) and stopped at the end.
The topologies run in interleaved rounds, so that drift in the machine's load
falls on all alike; the table gives each one's median round.

``--failover`` measures instead what clients see during ``SENTINEL FAILOVER``:
racers send against a per-phone limit while the sentinel switches primaries,
for each ``replicas:LIMITS_WAIT_REPLICAS`` setup; the table gives the 503
window (first to last refusal with 503, and the first pass after it) and how
many sends passed beyond the limit (a leak). Two replicas take the port after
the replica's.

    BENCH_PG_NAME=sms2fa_bench_steps BENCH_REDIS_URL=redis://127.0.0.1:6379/14 \\
        .venv/bin/python -m bench.redis_topologies --cycles 1000 --threads 4 --rounds 3
    .venv/bin/python -m bench.redis_topologies --failover --failover-setups 1:0,1:1,2:1,2:2
"""

from __future__ import annotations

import argparse
import itertools
import logging
import os
import statistics
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any

os.environ.setdefault("BENCH_DB", "postgres")

from .common import ensure_database, setup_django, write_json  # noqa: E402

ALIAS = "limits"
SENTINEL_PORTS = (7201, 7202, 26401)  # primary, replica, sentinel (tests/sentinel_support.py)


@dataclass
class Topology:
    name: str
    cache: dict[str, Any]
    settings: dict[str, Any]


# ------------------------------------------------------------ topologies


@contextmanager
def topologies(
    redis_url: str, sentinel_ports: tuple[int, ...], cluster: bool
) -> Iterator[list[Topology]]:
    """Every topology to measure, its servers running until the block ends."""
    from tests.sentinel_support import SentinelServers

    primary, replica, sentinel_port = sentinel_ports
    found = [
        Topology(
            "one Redis (Django RedisCache)",
            {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": redis_url},
            {},
        ),
        Topology(
            "one Redis (django-redis)",
            {"BACKEND": "django_redis.cache.RedisCache", "LOCATION": redis_url},
            {},
        ),
    ]
    with ExitStack() as stack:
        sentinel = stack.enter_context(
            SentinelServers(primary, (replica,), sentinel_port)  # started by __enter__
        )
        found.append(
            Topology("Sentinel (django-redis SentinelClient)", sentinel.cache_config(), {})
        )
        found.append(
            Topology(
                "Sentinel, LIMITS_WAIT_REPLICAS = 1",
                sentinel.cache_config(),
                {"LIMITS_WAIT_REPLICAS": 1},
            )
        )
        servers = stack.enter_context(cluster_servers()) if cluster else None
        if servers is not None:
            found.append(Topology("Cluster (3 primaries)", servers.cache_config(), {}))
        yield found


@contextmanager
def cluster_servers() -> Iterator[Any]:
    """A 3-primary cluster (tests/cluster_support.py), or ``None`` where that
    module or its cache backend is missing (the row is left out, and said so)."""
    try:
        import django_sms2fa.redis_cluster  # noqa: F401 - the cache backend it configures
        from tests.cluster_support import ClusterServers
    except ImportError as err:
        print(f"(no Cluster row: {err})")
        yield None
        return
    with ClusterServers() as servers:
        yield servers


@contextmanager
def limits_on(topology: Topology) -> Iterator[None]:
    from django.conf import settings
    from django.core.cache import caches
    from django.test import override_settings

    from django_sms2fa.conf import DEFAULT_LIMITS, DEFAULT_PUMPING

    sms2fa = {
        **settings.SMS2FA,
        "CACHE": ALIAS,
        "LIMITS": {**DEFAULT_LIMITS, "country": ["1000000/h"], "global": ["1000000/h"]},
        "PUMPING": DEFAULT_PUMPING,
        "RESEND_INTERVAL": 30,
        **topology.settings,
    }
    with override_settings(CACHES={**settings.CACHES, ALIAS: topology.cache}, SMS2FA=sms2fa):
        caches[ALIAS].clear()
        yield


# ------------------------------------------------------------ the cycles

_phones = itertools.count()
_phones_lock = threading.Lock()
#: A prefix per process run, so that phones never repeat across runs (the
#: per-phone limits of a day would refuse them).
_RUN = int(time.time()) % 90


def next_phone() -> str:
    """Distinct Swedish mobile numbers: +46 70 <run><5 digits>."""
    with _phones_lock:
        number = next(_phones)
    return f"+4670{10 + _RUN:02d}{number % 100_000:05d}"


def cycle() -> None:
    from django_sms2fa import flows
    from django_sms2fa.models import Purpose
    from django_sms2fa.providers import locmem

    phone = next_phone()
    challenge = flows.request_challenge(phone=phone, purpose=Purpose.VERIFY_PHONE)
    code = next(sms.code for sms in reversed(locmem.outbox) if sms.to == phone)
    if flows.verify_challenge(challenge.pk, code).status != "verified":
        raise AssertionError("a right code was not verified")


def run_cycles(cycles: int, threads: int) -> dict[str, Any]:
    """``cycles`` cycles over ``threads`` threads: cycles/s and latency."""
    from django.db import connection

    from django_sms2fa.providers import locmem

    remaining = itertools.count()
    samples: list[float] = []
    errors: Counter = Counter()
    lock = threading.Lock()

    def worker() -> None:
        try:
            while next(remaining) < cycles:
                started = time.perf_counter()
                try:
                    cycle()
                except Exception as err:  # counted: a benchmark reports, it does not stop
                    with lock:
                        errors[type(err).__name__] += 1
                    continue
                with lock:
                    samples.append(time.perf_counter() - started)
        finally:
            connection.close()

    locmem.reset()
    pool = [threading.Thread(target=worker) for _ in range(threads)]
    started = time.perf_counter()
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    elapsed = time.perf_counter() - started
    samples.sort()
    return {
        "cycles": len(samples),
        "cycles_per_s": len(samples) / elapsed,
        "p50_ms": statistics.median(samples) * 1000 if samples else 0.0,
        "p99_ms": samples[min(len(samples) - 1, int(len(samples) * 0.99))] * 1000
        if samples
        else 0.0,
        "errors": dict(errors),
    }


def measure(
    redis_url: str, sentinel_ports: tuple[int, ...], cycles: int, threads: int, rounds: int
) -> dict[str, Any]:
    results: dict[str, list[dict[str, Any]]] = {}
    with topologies(redis_url, sentinel_ports, cluster=True) as found:
        for topology in found:  # warm-up: pools, scripts, the database's caches
            with limits_on(topology):
                run_cycles(min(cycles, 50), threads)
        for _round in range(rounds):
            for topology in found:
                with limits_on(topology):
                    results.setdefault(topology.name, []).append(run_cycles(cycles, threads))
    table = {}
    for name, runs in results.items():
        middle = sorted(runs, key=lambda r: r["cycles_per_s"])[len(runs) // 2]
        table[name] = {
            **middle,
            "rounds_cycles_per_s": [round(r["cycles_per_s"], 1) for r in runs],
            "errors": sum((Counter(r["errors"]) for r in runs), Counter()),
        }
    return {"threads": threads, "cycles_per_round": cycles, "rounds": rounds, "table": table}


def print_table(result: dict[str, Any]) -> None:
    print(
        f"\nrequest -> verify cycles, {result['threads']} threads, {result['cycles_per_round']} "
        f"cycles per round, median of {result['rounds']} rounds (limits on, locmem provider)\n"
    )
    print("| limits cache | cycles/s | p50 ms | p99 ms | rounds (cycles/s) | errors |")
    print("|---|---|---|---|---|---|")
    for name, row in result["table"].items():
        print(
            f"| {name} | {row['cycles_per_s']:.1f} | {row['p50_ms']:.1f} | {row['p99_ms']:.1f} | "
            f"{', '.join(map(str, row['rounds_cycles_per_s']))} | {dict(row['errors']) or 0} |"
        )


# -------------------------------------------------------- the 503 window


def failover_window(
    sentinel_ports: tuple[int, ...],
    replicas: int,
    wait: int,
    *,
    crash: bool = False,
    limit: int = 1500,
    racers: int = 8,
    pace: float = 0.01,
) -> dict[str, Any]:
    """Racers send (``guard_send``, one phone, ``limit`` per day) while the
    sentinel switches primaries, with ``replicas`` replicas and
    ``LIMITS_WAIT_REPLICAS = wait``, until the limit refuses them after the
    switch. Passes beyond ``limit`` are a leak. Times are seconds from
    ``SENTINEL FAILOVER`` or, with ``crash``, from killing the primary (which
    stays down: the new primary has one replica fewer)."""
    from django.db import connection

    from django_sms2fa import ratelimit
    from django_sms2fa.exceptions import Sms2faError
    from tests.sentinel_support import SentinelServers

    primary, replica, sentinel_port = sentinel_ports
    replica_ports = tuple(range(replica, replica + replicas))
    outcomes: list[tuple[float, str]] = []
    lock = threading.Lock()
    stop = threading.Event()
    now = time.time()  # one window: no boundary during the run

    def send() -> str:
        try:
            ratelimit.guard_send(
                lock_subject="bench",
                breaker_prefix=None,
                takes=[("phone", "+46701234567")],
                now=now,
            )
        except Sms2faError as err:
            return err.code
        return "ok"

    def racer() -> None:
        try:
            while not stop.is_set():
                outcome = send()
                with lock:
                    outcomes.append((time.monotonic(), outcome))
                time.sleep(pace)
        finally:
            connection.close()

    def refused_since(moment: float) -> int:
        with lock:
            return sum(1 for at, code in outcomes if code == "rate_limited" and at > moment)

    with SentinelServers(primary, replica_ports, sentinel_port) as servers:
        topology = Topology("sentinel", servers.cache_config(), {"LIMITS_WAIT_REPLICAS": wait})
        with limits_on(topology), _quiet(), _limit("phone", f"{limit}/d"):
            pool = [threading.Thread(target=racer) for _ in range(racers)]
            for thread in pool:
                thread.start()
            try:
                time.sleep(0.5)
                started = time.monotonic()
                if crash:
                    servers.kill_primary()
                else:
                    servers.failover()
                named = time.monotonic() - started
                servers.wait_settled(replicas=replicas - 1 if crash else None)
                settled = time.monotonic()
                deadline = settled + (15 if crash and wait >= replicas else 60)
                while refused_since(settled) < racers and time.monotonic() < deadline:
                    time.sleep(0.05)
            finally:
                stop.set()
                for thread in pool:
                    thread.join()
    answers = Counter(code for _, code in outcomes)
    after = [(at - started, code) for at, code in outcomes if at >= started]
    unavailable = [at for at, code in after if code == "service_unavailable"]
    last = unavailable[-1] if unavailable else None
    back = next((at for at, code in after if code == "ok" and last and at > last), None)
    return {
        "replicas": replicas,
        "wait": wait,
        "how": "primary killed" if crash else "SENTINEL FAILOVER",
        "limit": limit,
        "new_primary_named_s": named,
        "replicas_online_s": settled - started,
        "first_503_s": unavailable[0] if unavailable else None,
        "last_503_s": last,
        "first_pass_after_s": back,
        "answers": dict(answers),
        "beyond_limit": max(0, answers["ok"] - limit),
    }


@contextmanager
def _quiet() -> Iterator[None]:
    """The app logs each 503 (one line each): hundreds here."""
    logger = logging.getLogger("django_sms2fa")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


@contextmanager
def _limit(scope: str, rate: str) -> Iterator[None]:
    from django.conf import settings
    from django.test import override_settings

    limits = {name: [] for name in ("phone", "ip", "user", "country", "global")}
    with override_settings(SMS2FA={**settings.SMS2FA, "LIMITS": {**limits, scope: [rate]}}):
        yield


def print_failover(rows: list[dict[str, Any]]) -> None:
    def s(value: float | None) -> str:
        return "—" if value is None else f"{value:.2f}"

    print("\nA failover while 8 racers send (seconds from the failover's start)\n")
    print(
        "| failover | replicas | LIMITS_WAIT_REPLICAS | new primary named | replicas online | "
        "503s from | 503s to | first pass after | answers | passed beyond the limit |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['how']} | {row['replicas']} | {row['wait']} | "
            f"{s(row['new_primary_named_s'])} | "
            f"{s(row['replicas_online_s'])} | {s(row['first_503_s'])} | {s(row['last_503_s'])} | "
            f"{s(row['first_pass_after_s'])} | {row['answers']} | "
            f"**{row['beyond_limit']}** of {row['limit']} |"
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--redis-url", default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
    )
    parser.add_argument(
        "--sentinel-ports",
        default=",".join(map(str, SENTINEL_PORTS)),
        help="primary,replica,sentinel (more replicas take the ports after the replica's)",
    )
    parser.add_argument("--cycles", type=int, default=1000, help="cycles per topology per round")
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--failover", action="store_true", help="measure the 503 window instead")
    parser.add_argument(
        "--failover-setups",
        default="1:0,1:1,2:1,2:2,2:1:crash,2:2:crash",
        help="replicas:LIMITS_WAIT_REPLICAS[:crash], comma-separated (crash: kill the "
        "primary instead of SENTINEL FAILOVER)",
    )
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)
    ports = tuple(int(p) for p in args.sentinel_ports.split(","))
    if len(ports) != 3:
        parser.error("--sentinel-ports takes three ports: primary,replica,sentinel")
    setup_django("bench.perf_settings")
    ensure_database()
    result: Any
    if args.failover:
        rows = []
        for setup in args.failover_setups.split(","):
            replicas, wait, *how = setup.split(":")
            crash = how == ["crash"]
            rows.append(failover_window(ports, int(replicas), int(wait), crash=crash))
        print_failover(rows)
        result = rows
    else:
        result = measure(args.redis_url, ports, args.cycles, args.threads, args.rounds)
        print_table(result)
    if args.json:
        write_json(result, args.json)


if __name__ == "__main__":
    main()
