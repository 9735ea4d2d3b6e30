"""Load test: the example site under gunicorn with several workers, on PostgreSQL
and Redis, driven by concurrent clients through request-and-verify cycles.

Loopback only, bounded in cycles and in time. A cycle is one client's
``POST /api/2fa/challenges/`` (a code to a fresh phone, sent to a fake GoSMS,
bench/fakes.py, which keeps it) and ``POST …/verify/`` with that code. Reported:
cycles per second, p50 and p99 latency per step, and every answer by status.

Then the exact-limit check: with a per-phone limit of K codes per window
(``LOAD_PHONE_LIMIT``), M > K clients request a code for one phone at the same
moment, spread over the workers; exactly K must be accepted and M - K refused
with 429. The counter lives in Redis, so the limit holds across processes.

    python -m bench.load --pg-name sms2fa_bench_steps --workers 3 --clients 8 --cycles 1000
"""

from __future__ import annotations

import argparse
import itertools
import os
import random
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from .common import write_json
from .fakes import FakeGoSMS

ROOT = Path(__file__).resolve().parent.parent
API = "/api/2fa/"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Site:
    """A gunicorn serving the example site with bench/load_settings.py."""

    process: subprocess.Popen
    url: str
    log: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def site_env(*, pg_name: str, redis_url: str, gosms_url: str, phone_limit: int) -> dict[str, str]:
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "bench.load_settings",
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "example_project")]),
        "LOAD_PG_NAME": pg_name,
        "LOAD_REDIS_URL": redis_url,
        "LOAD_GOSMS_URL": gosms_url,
        "LOAD_PHONE_LIMIT": str(phone_limit),
    }


def migrate(env: dict[str, str]) -> None:
    subprocess.run(
        [sys.executable, "-m", "django", "migrate", "--noinput", "-v", "0"],
        env=env,
        cwd=ROOT,
        check=True,
        timeout=300,
    )


def start_site(env: dict[str, str], *, workers: int, log: Path, timeout: float = 60) -> Site:
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        "--workers",
        str(workers),
        "--bind",
        f"127.0.0.1:{port}",
        "--log-level",
        "warning",
        "--timeout",
        "60",
        "example.wsgi:application",
    ]
    handle = log.open("w")
    process = subprocess.Popen(command, env=env, cwd=ROOT, stdout=handle, stderr=handle)
    site = Site(process, f"http://127.0.0.1:{port}", log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"gunicorn exited ({process.returncode}):\n{site.log_tail()}")
        try:
            # GET on a POST-only endpoint: 405 means Django answers.
            if requests.get(site.url + API + "challenges/", timeout=5).status_code == 405:
                break
        except requests.RequestException:
            pass
        time.sleep(0.2)
    else:
        site.stop()
        raise RuntimeError(f"gunicorn did not answer within {timeout} s:\n{site.log_tail()}")
    # Every worker imports the app on its first request: warm them all up.
    with requests.Session() as session:
        for _ in range(workers * 4):
            session.get(site.url + API + "challenges/", timeout=30)
    return site


@dataclass
class LoadResult:
    workers: int
    clients: int
    cycles_planned: int
    cycles_done: int = 0
    seconds: float = 0.0
    latencies: dict[str, list[float]] = field(default_factory=lambda: {"request": [], "verify": []})
    statuses: Counter = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)

    @property
    def cycles_per_s(self) -> float:
        return self.cycles_done / self.seconds if self.seconds else 0.0

    @property
    def unexpected(self) -> dict[str, int]:
        """Answers that are neither 2xx nor the expected 429."""
        return {
            str(status): n
            for status, n in self.statuses.items()
            if not (200 <= int(status.split()[-1]) < 300 or status.endswith(" 429"))
        }

    def summary(self) -> dict[str, Any]:
        steps = {}
        for step, values in self.latencies.items():
            ordered = sorted(values)
            if ordered:
                steps[step] = {
                    "n": len(ordered),
                    "p50_ms": statistics.median(ordered) * 1e3,
                    "p99_ms": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1e3,
                }
        return {
            "workers": self.workers,
            "clients": self.clients,
            "cycles_planned": self.cycles_planned,
            "cycles_done": self.cycles_done,
            "seconds": round(self.seconds, 2),
            "cycles_per_s": round(self.cycles_per_s, 1),
            "steps": steps,
            "statuses": dict(self.statuses),
            "unexpected": self.unexpected,
            "errors": self.errors[:10],
            "error_count": len(self.errors),
        }


def drive(
    site_url: str,
    fake: FakeGoSMS,
    *,
    workers: int,
    clients: int,
    cycles: int,
    time_limit: float,
) -> LoadResult:
    """Run up to ``cycles`` request-and-verify cycles from ``clients`` threads."""
    result = LoadResult(workers=workers, clients=clients, cycles_planned=cycles)
    numbers = itertools.count()
    # Fresh numbers each run: the per-phone counters of an earlier run may
    # still be in Redis.
    first = random.randrange(1_000_000, 9_000_000 - cycles)
    lock = threading.Lock()
    deadline = time.monotonic() + time_limit

    def record(step: str, answer: requests.Response, seconds: float) -> None:
        with lock:
            result.statuses[f"{step} {answer.status_code}"] += 1
            if 200 <= answer.status_code < 300:
                result.latencies[step].append(seconds)

    def client() -> None:
        with requests.Session() as session:
            while time.monotonic() < deadline:
                with lock:
                    i = next(numbers)
                if i >= cycles:
                    return
                phone = f"+4670{first + i}"
                try:
                    started = time.perf_counter()
                    answer = session.post(
                        site_url + API + "challenges/",
                        json={"phone": phone, "purpose": "verify_phone"},
                        timeout=30,
                    )
                    record("request", answer, time.perf_counter() - started)
                    if answer.status_code != 202:
                        continue
                    code = fake.code_for(phone)
                    started = time.perf_counter()
                    answer = session.post(
                        site_url + API + f"challenges/{answer.json()['id']}/verify/",
                        json={"code": code},
                        timeout=30,
                    )
                    record("verify", answer, time.perf_counter() - started)
                    if answer.status_code == 200:
                        with lock:
                            result.cycles_done += 1
                except (requests.RequestException, ValueError, KeyError) as err:
                    with lock:
                        result.errors.append(f"{type(err).__name__}: {err}"[:200])

    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=max(deadline - time.monotonic(), 0) + 35)
    result.seconds = time.perf_counter() - started
    return result


def limit_check(site_url: str, *, attempts: int, window: int = 3600) -> Counter:
    """``attempts`` clients ask for a code for one phone at once; count the answers."""
    # The limit counts in fixed windows; do not straddle a window boundary.
    left = window - time.time() % window
    if left < 30:
        time.sleep(left + 1)
    phone = f"+4670{random.randrange(1_000_000, 9_000_000)}"
    barrier = threading.Barrier(attempts)
    answers: Counter = Counter()
    lock = threading.Lock()

    def one() -> None:
        with requests.Session() as session:
            barrier.wait(timeout=30)
            try:
                status = session.post(
                    site_url + API + "challenges/",
                    json={"phone": phone, "purpose": "verify_phone"},
                    timeout=60,
                ).status_code
            except requests.RequestException as err:
                status = type(err).__name__
        with lock:
            answers[status] += 1

    threads = [threading.Thread(target=one, daemon=True) for _ in range(attempts)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=90)
    return answers


def run(
    *,
    pg_name: str,
    redis_url: str,
    workers: int,
    clients: int,
    cycles: int,
    time_limit: float,
    phone_limit: int,
    limit_attempts: int,
    log: Path,
) -> dict[str, Any]:
    fake = FakeGoSMS().start()
    env = site_env(
        pg_name=pg_name, redis_url=redis_url, gosms_url=fake.url, phone_limit=phone_limit
    )
    site = None
    try:
        migrate(env)
        site = start_site(env, workers=workers, log=log)
        load = drive(
            site.url, fake, workers=workers, clients=clients, cycles=cycles, time_limit=time_limit
        )
        limit = limit_check(site.url, attempts=limit_attempts)
    finally:
        if site is not None:
            site.stop()
        fake.stop()
    return {
        **load.summary(),
        "provider_connections": fake.connections,
        "limit_check": {
            "phone_limit": phone_limit,
            "attempts": limit_attempts,
            "answers": {str(k): v for k, v in limit.items()},
        },
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pg-name", default=os.environ.get("BENCH_PG_NAME", "sms2fa_bench_steps"))
    parser.add_argument(
        "--redis-url", default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
    )
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--cycles", type=int, default=1000)
    parser.add_argument("--time-limit", type=float, default=300, help="seconds")
    parser.add_argument("--phone-limit", type=int, default=5, help="K codes per phone per hour")
    parser.add_argument("--limit-attempts", type=int, default=40, help="M concurrent requests")
    parser.add_argument("--json", help="write the results here (default: stdout)")
    args = parser.parse_args(argv)
    log = ROOT / "bench" / ".data" / "gunicorn.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    result = run(
        pg_name=args.pg_name,
        redis_url=args.redis_url,
        workers=args.workers,
        clients=args.clients,
        cycles=args.cycles,
        time_limit=args.time_limit,
        phone_limit=args.phone_limit,
        limit_attempts=args.limit_attempts,
        log=log,
    )
    write_json(result, args.json)


if __name__ == "__main__":
    main()
