"""Load test (docs/performance.md): the example site under gunicorn, several workers, on
PostgreSQL and Redis, driven by concurrent clients over loopback.

Small and bounded for CI: 3 workers, 8 clients, 200 request-and-verify cycles,
120 s at most. Asserted: every cycle completes, no answer is anything but 2xx
(or the expected 429 of the limit check), and a per-phone limit of K codes
holds exactly across the workers: of M > K simultaneous requests for one
phone, K are accepted and M - K refused. The workers use this test's own
database and Redis. bench/load.py is the same test at benchmark size.
"""

from __future__ import annotations

import time

import pytest

from django.conf import settings
from django.db import connection

pytest.importorskip("gunicorn")

from bench import load  # noqa: E402
from bench.fakes import FakeGoSMS  # noqa: E402

pytestmark = [pytest.mark.postgres_only, pytest.mark.django_db(transaction=True)]

WORKERS = 3
CLIENTS = 8
CYCLES = 200
HARD_TIMEOUT = 120  # seconds, for the whole test
PHONE_LIMIT = 5  # K
SIMULTANEOUS = 20  # M


@pytest.fixture
def site(tmp_path):
    """A gunicorn on this test's database and Redis, GoSMS faked on loopback."""
    redis_url = settings.CACHES["default"].get("LOCATION", "")
    if "redis" not in settings.CACHES["default"]["BACKEND"].lower():
        pytest.skip("the load test needs the Redis cache (SMS2FA_TEST_CACHE=redis)")
    fake = FakeGoSMS().start()
    env = load.site_env(
        pg_name=connection.settings_dict["NAME"],
        redis_url=redis_url,
        gosms_url=fake.url,
        phone_limit=PHONE_LIMIT,
    )
    # The test database is migrated already (pytest-django made it).
    running = load.start_site(env, workers=WORKERS, log=tmp_path / "gunicorn.log")
    yield running, fake
    running.stop()
    fake.stop()


def test_cycles_under_gunicorn_and_an_exact_limit_across_workers(site, capsys):
    running, fake = site
    started = time.monotonic()
    result = load.drive(
        running.url,
        fake,
        workers=WORKERS,
        clients=CLIENTS,
        cycles=CYCLES,
        time_limit=HARD_TIMEOUT - 30,
    )
    summary = result.summary()
    with capsys.disabled():
        steps = ", ".join(
            f"{step} p50 {s['p50_ms']:.0f} ms p99 {s['p99_ms']:.0f} ms"
            for step, s in summary["steps"].items()
        )
        print(
            f"\n[load] {WORKERS} gunicorn workers, {CLIENTS} clients: "
            f"{summary['cycles_done']}/{CYCLES} cycles in {summary['seconds']} s "
            f"= {summary['cycles_per_s']} cycles/s; {steps}; answers {summary['statuses']}"
        )
    assert not result.errors, (result.errors[:5], running.log_tail())
    assert result.unexpected == {}, (summary, running.log_tail())
    assert result.cycles_done == CYCLES, summary
    # Many sends through one provider per worker: one connection each.
    assert fake.connections <= WORKERS

    answers = load.limit_check(running.url, attempts=SIMULTANEOUS)
    with capsys.disabled():
        print(f"[load] {SIMULTANEOUS} at once for one phone, limit {PHONE_LIMIT}: {dict(answers)}")
    assert answers == {202: PHONE_LIMIT, 429: SIMULTANEOUS - PHONE_LIMIT}, running.log_tail()
    assert time.monotonic() - started < HARD_TIMEOUT
