"""The Redis budget of each step: commands sent to a real Redis.

The goal (docs/performance.md) is one Redis round trip per request and one per verify, for
every limit, lockout, cooldown and breaker together. This test holds today's
counts (``TODAY``) so that a change that adds a command or a round trip fails;
when a change removes some, lower ``TODAY`` to the new count. ``GOAL`` is the
target, printed beside each count.

How it counts: redis-py's connection is wrapped for the test. A *command* is
one command packed for the wire (``GET``, ``INCR``, ``EVALSHA``…; a pipeline of
k commands is k, plus ``MULTI``/``EXEC`` when transactional); a *round trip* is
one write of packed commands to the socket (``send_packed_command``: one per
single command, one per pipeline). The connection handshake (``HELLO``,
``AUTH``, ``SELECT``, ``CLIENT SETINFO`` sent by ``on_connect``) is not counted:
it happens once per pooled connection, not per step.

Every security default is on: the default send limits (``send_limits``), the
default resend cooldown and SMS-pumping breaker, and the default lockouts.
Needs a shared cache (Redis): it runs on the PostgreSQL pass, where the test
settings use Redis, and is skipped with the local-memory cache (SQLite pass),
as the cross-process limit tests of tests/test_attacks.py are.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager

import pytest
import redis.connection

from django.conf import settings as django_settings

from django_sms2fa.conf import app_settings
from django_sms2fa.models import PhoneDevice

from .budget_support import CYCLES, DEVICE_PHONE, all_security_defaults

pytestmark = pytest.mark.django_db

#: Step -> (commands today, round trips today, goal in round trips).
#: Every step is one script (``EVALSHA``: django_sms2fa/ratelimit_redis.py)
#: except the password login's request, which counts the password guess
#: before the password is checked and gives it back after (a right password),
#: then runs the send's script: three. The count must come before the check
#: (concurrent guesses would otherwise all pass under the threshold).
BUDGET: dict[str, tuple[int, int, int]] = {
    "flows request": (1, 1, 1),
    "flows verify": (1, 1, 1),
    "API challenges/ request": (1, 1, 1),
    "API challenges/ verify": (1, 1, 1),
    "API login/ request": (3, 3, 1),
    "API login/ verify": (1, 1, 1),
    "passwordless request": (1, 1, 1),
    "passwordless verify": (1, 1, 1),
}
TODAY = {step: (commands, trips) for step, (commands, trips, _) in BUDGET.items()}
GOAL = {step: goal for step, (_, _, goal) in BUDGET.items()}


def redis_cache() -> bool:
    backend = django_settings.CACHES[app_settings.CACHE]["BACKEND"]
    return backend.endswith("RedisCache")


class RedisCounter:
    """Counts the commands and round trips redis-py sends while ``recording``."""

    def __init__(self) -> None:
        self.commands: list[str] = []
        self.round_trips = 0
        self.recording = False
        self._handshake = threading.local()

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        counter = self
        base = redis.connection.AbstractConnection
        on_connect, send_packed = base.on_connect, base.send_packed_command

        def counting_on_connect(conn, *args, **kwargs):
            counter._handshake.active = True
            try:
                return on_connect(conn, *args, **kwargs)
            finally:
                counter._handshake.active = False

        def counting_send_packed(conn, command, *args, **kwargs):
            if counter._counts():
                counter.round_trips += 1
            return send_packed(conn, command, *args, **kwargs)

        monkeypatch.setattr(base, "on_connect", counting_on_connect)
        monkeypatch.setattr(base, "send_packed_command", counting_send_packed)
        # Both serializers redis-py may pick (hiredis or pure Python): one
        # ``pack`` per command, single or in a pipeline.
        for name in ("PythonRespSerializer", "HiredisRespSerializer"):
            serializer = getattr(redis.connection, name, None)
            if serializer is None:
                continue
            pack = serializer.pack

            def counting_pack(self, *args, _pack=pack):
                if counter._counts():
                    name = args[0].decode() if isinstance(args[0], bytes) else str(args[0])
                    counter.commands.append(name.upper())
                return _pack(self, *args)

            monkeypatch.setattr(serializer, "pack", counting_pack)

    def _counts(self) -> bool:
        return self.recording and not getattr(self._handshake, "active", False)

    @contextmanager
    def measure(self, step: str, into: dict[str, tuple[int, int, list[str]]]):
        self.commands, self.round_trips, self.recording = [], 0, True
        try:
            yield
        finally:
            self.recording = False
            into[step] = (len(self.commands), self.round_trips, list(self.commands))


@pytest.fixture
def device(user):
    return PhoneDevice.objects.create(user=user, number=DEVICE_PHONE, name="phone", confirmed=True)


@pytest.mark.parametrize("cycle", list(CYCLES))
def test_redis_commands_per_step(
    cycle, send_limits, settings, monkeypatch, client, outbox, user, device
):
    if not redis_cache():
        pytest.skip("needs Redis as the limits cache; run with SMS2FA_TEST_DB=postgres")
    all_security_defaults(settings)
    counter = RedisCounter()
    counter.install(monkeypatch)
    measured: dict[str, tuple[int, int, list[str]]] = {}
    CYCLES[cycle](
        lambda step: counter.measure(step, measured),
        outbox=outbox,
        user=user,
        device=device,
        client=client,
    )
    failures = []
    for step, (commands, trips, names) in measured.items():
        print(
            f"\n[budget] {step}: {commands} redis commands (goal {GOAL[step]}); "
            f"{trips} round trips; {' '.join(names)}"
        )
        if (commands, trips) != TODAY[step]:
            failures.append(
                f"{step}: {commands} commands in {trips} round trips, the budget holds "
                f"{TODAY[step][0]} in {TODAY[step][1]} (goal {GOAL[step]} round trip): "
                f"{' '.join(names)}"
            )
    assert not failures, "\n".join(failures)


def test_the_counter_counts_commands_and_round_trips(monkeypatch):
    """The control: one GET is one command in one round trip; a transactional
    pipeline of two commands is four (MULTI, EXEC) in one round trip."""
    if not redis_cache():
        pytest.skip("needs Redis as the limits cache; run with SMS2FA_TEST_DB=postgres")
    from django.core.cache import caches

    cache = caches[app_settings.CACHE]
    cache.get("warm-up")  # the connection's handshake happens here, outside the count
    counter = RedisCounter()
    counter.install(monkeypatch)
    measured: dict[str, tuple[int, int, list[str]]] = {}
    with counter.measure("get", measured):
        cache.get("budget-control")
    client = cache._cache.get_client(None, write=True)
    with counter.measure("pipeline", measured):
        pipe = client.pipeline(transaction=True)
        pipe.incr("budget-control-n")
        pipe.expire("budget-control-n", 60)
        pipe.execute()
    assert measured["get"] == (1, 1, ["GET"])
    assert measured["pipeline"] == (4, 1, ["MULTI", "INCRBY", "EXPIRE", "EXEC"])
