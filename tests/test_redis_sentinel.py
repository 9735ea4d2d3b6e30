"""The limits on Redis Sentinel, through a real failover (docs/howto/redis-sentinel.md).

A primary, a replica and a sentinel run on loopback ports (tests/sentinel_support.py,
started once for the module); the limits cache is django-redis's Sentinel
client, configured as the docs say. The tests show:

- the Lua scripts run there (one round trip per step; with
  ``LIMITS_WAIT_REPLICAS`` the ``WAIT`` rides in the same round trip), and the
  generic cache calls work;
- with ``LIMITS_WAIT_REPLICAS = 1`` a send whose counts no replica received is
  refused with 503, never let through (the replica stopped);
- the hazard is real: without waiting, counts written to the old primary after
  the switch are lost and a limit lets more through than it allows (the
  control, which shows that the race below would see a leak);
- the race: racers send against a limit while ``SENTINEL FAILOVER`` runs;
  nothing passes beyond the limit, every refusal is 503 or 429, nothing
  crashes, the API answers 503 in the error shape during the switch, and
  after it 40 racers against a limit of 10 get exactly 10 through. The 503
  window is printed (measured, not asserted);
- the crash: the same race while the primary's process is killed. The steps
  that meet the dead server (connection errors, no primary to name) are 503
  too, never a pass: the test fails if a limit fails open on a connection
  error (a forced failover alone raises none).

They start their own ``redis-server`` processes, so they run in the Redis pass
only (``redis_topology``; tests/conftest.py).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from django.core.cache import caches
from django.db import connection
from django.test import Client

from django_sms2fa import flows, ratelimit
from django_sms2fa.exceptions import Sms2faError
from django_sms2fa.models import Purpose
from django_sms2fa.ratelimit_redis import RedisScripts

from .api_support import api_post, assert_error
from .race_support import race
from .redis_server_support import wait_until
from .sentinel_support import SERVICE, SentinelServers
from .test_redis_budget import RedisCounter

pytestmark = [pytest.mark.redis_topology, pytest.mark.django_db]

ALIAS = "limits"
PHONE = "+46701234567"
OTHER_PHONE = "+46709876543"
DAY = 86400


@pytest.fixture(scope="module")
def servers() -> Iterator[SentinelServers]:
    with SentinelServers() as running:
        yield running
    _forget_pools()


def _forget_pools() -> None:
    """django-redis keeps its pools for the whole process, keyed by URL: drop
    the ones to these servers, which are gone now."""
    from django_redis.pool import ConnectionFactory

    for key in [k for k in ConnectionFactory._pools if k.startswith(f"redis://{SERVICE}/")]:
        ConnectionFactory._pools.pop(key).disconnect()


@pytest.fixture
def sentinel_limits(settings, servers, sms2fa_settings) -> SentinelServers:
    """The limits cache is the Sentinel deployment (an empty database 0)."""
    servers.wait_settled()
    settings.CACHES = {**settings.CACHES, ALIAS: servers.cache_config(db=0)}
    sms2fa_settings(CACHE=ALIAS)
    caches[ALIAS].clear()
    return servers


def limit_phone(settings, sms2fa_settings, rate: str, **more: Any) -> None:
    """One limit, per phone (every other scope off, as in the test settings)."""
    limits = {scope: [] for scope in settings.SMS2FA["LIMITS"]}
    sms2fa_settings(LIMITS={**limits, "phone": [rate]}, **more)


def attempt(action: Callable[[], Any]) -> str:
    """``"ok"``, a domain error's code, or ``"crash:…"`` (what would be a 500)."""
    try:
        action()
    except Sms2faError as err:
        return err.code
    except Exception as err:  # a crash is an outcome the test must show
        return f"crash:{type(err).__name__}"
    return "ok"


def sender(phone: str, now: float) -> Callable[[], Any]:
    """One send's limits (``guard_send``), at a fixed time: every send falls
    in one window, so no window boundary can add room during a test."""
    return lambda: ratelimit.guard_send(
        lock_subject=f"race:{phone}", breaker_prefix=None, takes=[("phone", phone)], now=now
    )


def stored_count(phone: str, now: float) -> int:
    key = ratelimit._key("win", "phone", DAY, int(now // DAY), phone)
    return int(caches[ALIAS].get(key) or 0)


def send_until_refused(phone: str, now: float, most: int = 50) -> Counter:
    """Send until the limit refuses (429). A 503 does not stop it: the first
    step after a switch may still meet the old primary (its pool moves on)."""
    outcomes: Counter = Counter()
    for _ in range(most):
        outcome = attempt(sender(phone, now))
        outcomes[outcome] += 1
        if outcome == "rate_limited" or outcome.startswith("crash"):
            return outcomes
    return outcomes


# ------------------------------------------------------------ the set-up


def test_the_scripts_run_on_the_sentinel_cache(sentinel_limits, send_limits, user, outbox):
    """The documented configuration picks the scripts; a send and its verify
    go through them; the generic calls (the admin's unlock, the breaker's
    bookkeeping) work too; and the counts reach the replica."""
    scripts = ratelimit._scripts()
    assert isinstance(scripts, RedisScripts)
    challenge = flows.request_challenge(phone=PHONE, purpose=Purpose.VERIFY_PHONE)
    assert flows.verify_challenge(challenge.pk, outbox[-1].code).status == "verified"
    # The next send is refused by the 30 s cooldown the first one took.
    again = attempt(lambda: flows.request_challenge(phone=PHONE, purpose=Purpose.VERIFY_PHONE))
    assert again == "rate_limited"

    cache = caches[ALIAS]
    cache.set("generic", 41, timeout=60)
    assert cache.incr("generic") == 42
    assert cache.add("generic", 0) is False
    port = sentinel_limits.primary_port()
    primary = sentinel_limits.node(port)
    keys = primary.keys("*")
    assert any(b"sms2fa" in key for key in keys), keys
    replica = sentinel_limits.node(next(p for p in sentinel_limits.ports.values() if p != port))
    primary.wait(1, 2000)  # the test's own WAIT: then the replica must have them
    assert set(replica.keys("*")) == set(keys)


def test_waiting_rides_in_the_same_round_trip(
    sentinel_limits, sms2fa_settings, monkeypatch, outbox
):
    """With ``LIMITS_WAIT_REPLICAS`` a step is still one round trip
    (``EVALSHA`` + ``WAIT``); a server without the script (``SCRIPT FLUSH``,
    as on a primary just promoted) costs one more: load, run and wait."""
    sms2fa_settings(LIMITS_WAIT_REPLICAS=1)
    flows.request_challenge(phone=PHONE, purpose=Purpose.VERIFY_PHONE)  # warm the pool
    counter = RedisCounter()
    counter.install(monkeypatch)
    measured: dict[str, tuple[int, int, list[str]]] = {}
    with counter.measure("request", measured):
        challenge = flows.request_challenge(phone=PHONE, purpose=Purpose.VERIFY_PHONE)
    code = outbox[-1].code
    with counter.measure("verify", measured):
        assert flows.verify_challenge(challenge.pk, code).status == "verified"
    sentinel_limits.node(sentinel_limits.primary_port()).script_flush()
    with counter.measure("request, no script", measured):
        flows.request_challenge(phone=PHONE, purpose=Purpose.VERIFY_PHONE)
    assert measured["request"] == (2, 1, ["EVALSHA", "WAIT"])
    assert measured["verify"] == (2, 1, ["EVALSHA", "WAIT"])
    assert measured["request, no script"] == (
        5,
        2,
        ["EVALSHA", "WAIT", "SCRIPT LOAD", "EVALSHA", "WAIT"],
    )


def test_no_replica_no_send(sentinel_limits, settings, sms2fa_settings, user, outbox, caplog):
    """``LIMITS_WAIT_REPLICAS = 1`` with the replica stopped: the send is
    refused with 503 in the error shape (nothing sent), one log line says
    why — and without waiting the same send passes, so it is the setting that
    refuses it, not an outage."""
    caplog.set_level(logging.DEBUG)
    limit_phone(settings, sms2fa_settings, "10/d", LIMITS_WAIT_REPLICAS=1, LIMITS_WAIT_TIMEOUT=0.1)
    client = Client(REMOTE_ADDR="203.0.113.10")
    body = {"phone": PHONE, "purpose": "verify_phone"}
    assert api_post(client, "challenges/", body).status_code == 202
    assert len(outbox) == 1
    sentinel_limits.stop_replica()
    try:
        caplog.clear()
        assert_error(api_post(client, "challenges/", body), 503, "service_unavailable")
        assert len(outbox) == 1
        lines = [r.getMessage() for r in caplog.records if r.name.startswith("django_sms2fa")]
        assert len(lines) == 1, lines
        assert "0 of 1 replicas acknowledged the send script" in lines[0]
        assert outbox[0].code not in lines[0]
        sms2fa_settings(LIMITS_WAIT_REPLICAS=0)
        assert api_post(client, "challenges/", body).status_code == 202
        assert len(outbox) == 2
    finally:
        sentinel_limits.restart_replica()


# ------------------------------------------------------------- failovers


def test_the_control_without_waiting_a_failover_lets_a_limit_leak(
    sentinel_limits, settings, sms2fa_settings
):
    """Why ``LIMITS_WAIT_REPLICAS`` exists, and proof that a leak is visible:
    after ``SENTINEL FAILOVER`` the old primary still takes writes for
    seconds (until the sentinel demotes it), and what it took then is lost.

    Limit 5 per day. Two phones take 2 sends each before the switch and 3
    each after it: the one counted without waiting passes all 3 (on the old
    primary), and once the failover settles, passes 3 more — 8 sends under a
    limit of 5. The one counted with ``WAIT 1`` is refused (503) after the
    switch and never passes more than 5 in all."""
    sentinel_limits.wait_settled(sentinel_sees=True)
    limit_phone(settings, sms2fa_settings, "5/d")
    now = time.time()
    unsafe, safe = PHONE, OTHER_PHONE

    def sends(phone: str, count: int, replicas: int) -> Counter:
        sms2fa_settings(LIMITS_WAIT_REPLICAS=replicas)
        return Counter(attempt(sender(phone, now)) for _ in range(count))

    assert sends(unsafe, 2, 0) == {"ok": 2}
    assert sends(safe, 2, 1) == {"ok": 2}
    sentinel_limits.failover()
    unsafe_outcomes = sends(unsafe, 3, 0)
    safe_outcomes = sends(safe, 3, 1)
    sentinel_limits.wait_settled()
    sms2fa_settings(LIMITS_WAIT_REPLICAS=0)
    unsafe_outcomes += send_until_refused(unsafe, now)
    sms2fa_settings(LIMITS_WAIT_REPLICAS=1)
    safe_outcomes += send_until_refused(safe, now)
    print(f"\n[sentinel] after the switch, without WAIT: {dict(unsafe_outcomes)}")
    print(f"[sentinel] after the switch, with WAIT 1: {dict(safe_outcomes)}")
    assert unsafe_outcomes["ok"] + 2 > 5, "the old primary's counts were kept: no leak to show"
    assert safe_outcomes["ok"] + 2 <= 5
    assert unsafe_outcomes["rate_limited"] == safe_outcomes["rate_limited"] == 1
    assert set(safe_outcomes) <= {"ok", "service_unavailable", "rate_limited"}
    assert safe_outcomes["service_unavailable"] >= 1


RACERS = 8
PACE = 0.02  # seconds between one racer's sends
LIMIT = 600


class Racers:
    """``RACERS`` threads sending (``guard_send``, one phone, one window)
    until :meth:`stop`; each outcome is kept with its time."""

    def __init__(self, phone: str, now: float) -> None:
        self.outcomes: list[tuple[float, str]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._send = sender(phone, now)
        self._threads = [threading.Thread(target=self._race) for _ in range(RACERS)]

    def __enter__(self) -> Racers:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)

    def _race(self) -> None:
        try:
            while not self._stop.is_set():
                outcome = attempt(self._send)
                with self._lock:
                    self.outcomes.append((time.monotonic(), outcome))
                time.sleep(PACE)
        finally:
            connection.close()

    def seen(self, code: str, after: float = 0.0) -> int:
        with self._lock:
            return sum(1 for at, c in self.outcomes if c == code and at >= after)

    def codes(self) -> Counter:
        with self._lock:
            return Counter(code for _, code in self.outcomes)

    def window(self, started: float) -> str:
        """The 503 window, in seconds from ``started`` (printed, not asserted)."""
        with self._lock:
            unavailable = [at for at, code in self.outcomes if code == "service_unavailable"]
            back = min(
                (at for at, code in self.outcomes if code == "ok" and at > unavailable[-1]),
                default=None,
            )
        before = sum(at < started for at in unavailable)  # a slow WAIT on a loaded machine
        unavailable = [at for at in unavailable if at >= started]
        return (
            f"503s from {unavailable[0] - started:.2f} s to {unavailable[-1] - started:.2f} s "
            f"({before} before it); first pass after them at "
            + (f"{back - started:.2f} s" if back else "none (the limit was full)")
        )


def assert_no_leak(racers: Racers, now: float) -> Counter:
    """Nothing but passes, 429s and 503s; never more passes than the limit,
    and every pass counted on the primary the sentinel names now."""
    codes = racers.codes()
    assert set(codes) <= {"ok", "rate_limited", "service_unavailable"}, codes
    assert codes["ok"] <= LIMIT, codes
    assert codes["ok"] <= stored_count(PHONE, now) == LIMIT, codes
    assert codes["service_unavailable"] >= 1, "no send met the switch: the race tested nothing"
    return codes


def send_through_the_api() -> Any:
    return api_post(
        Client(REMOTE_ADDR="203.0.113.10"),
        "challenges/",
        {"phone": OTHER_PHONE, "purpose": "verify_phone"},
    )


def test_the_failover_race(sentinel_limits, settings, sms2fa_settings, user, outbox):
    """Racers send against a limit of 600 while ``SENTINEL FAILOVER`` runs:
    the steps that meet the switch answer 503 (the old primary's writes reach
    no replica), none passes beyond the limit, the API answers 503 in the
    error shape meanwhile, and after the switch the limits are exact again."""
    sentinel_limits.wait_settled(sentinel_sees=True)
    limit_phone(settings, sms2fa_settings, f"{LIMIT}/d", LIMITS_WAIT_REPLICAS=1)
    now = time.time()
    with Racers(PHONE, now) as racers:
        wait_until(lambda: racers.seen("ok") >= LIMIT // 4, 30, "the first quarter of the limit")
        started = time.monotonic()
        sentinel_limits.failover()
        switched = time.monotonic()
        during = send_through_the_api()
        sentinel_limits.wait_settled()
        settled = time.monotonic()
        wait_until(
            lambda: racers.seen("rate_limited", settled) >= RACERS, 60, "the limit to be reached"
        )
    codes = assert_no_leak(racers, now)
    assert_error(during, 503, "service_unavailable")
    print(
        f"\n[sentinel] SENTINEL FAILOVER: {dict(codes)} (limit {LIMIT}, {RACERS} racers); the "
        f"new primary was named after {switched - started:.2f} s, a replica was online again "
        f"after {settled - started:.2f} s; {racers.window(started)}"
    )

    # After the switch the limits are exact again: 40 racers, a limit of 10.
    limit_phone(settings, sms2fa_settings, "10/d", LIMITS_WAIT_REPLICAS=1)
    assert race([sender(OTHER_PHONE, now)] * 40) == {"ok": 10, "rate_limited": 30}


def test_a_primary_crash_race(sentinel_limits, settings, sms2fa_settings, user, outbox, caplog):
    """The primary's process dies while racers send. Until the sentinel
    promotes the replica, the steps meet a dead server (connection errors);
    then a primary with no replica (shortfalls); both are 503, never a pass.
    Once the dead server is back as a replica, the limit fills exactly.

    (Last in the module: the sentinel sees the restarted server only on its
    next look, which a later ``SENTINEL FAILOVER`` would have to wait for.)"""
    sentinel_limits.wait_settled()
    limit_phone(settings, sms2fa_settings, f"{LIMIT}/d", LIMITS_WAIT_REPLICAS=1)
    caplog.set_level(logging.ERROR, logger="django_sms2fa")
    now = time.time()
    with Racers(PHONE, now) as racers:
        wait_until(lambda: racers.seen("ok") >= LIMIT // 4, 30, "the first quarter of the limit")
        started = time.monotonic()
        sentinel_limits.kill_primary()
        promoted = time.monotonic()
        during = send_through_the_api()
        sentinel_limits.restart_replica()
        settled = time.monotonic()
        wait_until(
            lambda: racers.seen("rate_limited", settled) >= RACERS, 60, "the limit to be reached"
        )
    codes = assert_no_leak(racers, now)
    assert_error(during, 503, "service_unavailable")
    lines = [r.getMessage() for r in caplog.records if r.name == "django_sms2fa"]
    # The race met the crash as an error on the connection to the dead
    # primary (the path that must not fail open), not only as shortfalls.
    why = Counter(
        "shortfall" if "replicas acknowledged" in line else line.split("(")[1].split(" in ")[0]
        for line in lines
    )
    assert why["ConnectionError"] >= 1, why
    print(
        f"\n[sentinel] primary killed: {dict(codes)} (limit {LIMIT}, {RACERS} racers; logged "
        f"503s: {dict(why)}); the new primary was named after "
        f"{promoted - started:.2f} s, the old server was back as its replica after "
        f"{settled - started:.2f} s; {racers.window(started)}"
    )
