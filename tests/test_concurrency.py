"""Race attacks on verification, on a real PostgreSQL (docs/security.md 10, 11).

Fifty threads, each with its own database connection, are released together by
a barrier and submit codes for one challenge. The database must decide: exactly
one right answer wins, and no more guesses are evaluated than the limit allows.
Skipped on SQLite, which serialises all writers (see conftest.py).
"""

from __future__ import annotations

import os
import queue
import threading
from collections import Counter
from collections.abc import Callable

import pytest

from django.core.cache import caches
from django.db import connection

from django_sms2fa import flows
from django_sms2fa.exceptions import Sms2faError
from django_sms2fa.models import Challenge, ChallengeStatus

pytestmark = [pytest.mark.postgres_only, pytest.mark.django_db(transaction=True)]

THREADS = 50
RIGHT_CODE_ROUNDS = int(os.environ.get("SMS2FA_RACE_ROUNDS", "200"))
WRONG_CODE_ROUNDS = int(os.environ.get("SMS2FA_RACE_ROUNDS", "200"))


class RacePool:
    """``size`` long-lived threads (one DB connection each) that start each
    round together behind a barrier."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.inboxes: list[queue.Queue] = [queue.Queue() for _ in range(size)]
        self.results: queue.Queue = queue.Queue()
        self.threads = [
            threading.Thread(target=self._work, args=(inbox,), daemon=True)
            for inbox in self.inboxes
        ]
        for thread in self.threads:
            thread.start()

    def _work(self, inbox: queue.Queue) -> None:
        try:
            while (job := inbox.get()) is not None:
                barrier, action = job
                barrier.wait()
                try:
                    action()
                    self.results.put("ok")
                except Sms2faError as err:
                    self.results.put(err.code)
                except Exception as err:  # anything else is a bug the test must show
                    self.results.put(f"crash:{type(err).__name__}:{err}")
        finally:
            connection.close()

    def race(self, action: Callable[[], object]) -> Counter:
        barrier = threading.Barrier(self.size)
        for inbox in self.inboxes:
            inbox.put((barrier, action))
        return Counter(self.results.get(timeout=60) for _ in range(self.size))

    def close(self) -> None:
        for inbox in self.inboxes:
            inbox.put(None)
        for thread in self.threads:
            thread.join(timeout=30)


@pytest.fixture
def pool():
    racers = RacePool(THREADS)
    yield racers
    racers.close()


def test_fifty_right_answers_at_once_make_exactly_one_success(pool, outbox, capsys):
    totals: Counter = Counter()
    for round_no in range(RIGHT_CODE_ROUNDS):
        challenge = flows.request_challenge(phone="+46701234567", purpose="login")
        code = outbox[-1].code
        results = pool.race(lambda pk=challenge.pk, code=code: flows.verify_challenge(pk, code))
        totals.update(results)
        assert results["ok"] == 1, f"round {round_no}: {results}"
        assert set(results) <= {"ok", "challenge_used", "too_many_attempts"}, results
        stored = Challenge.objects.get(pk=challenge.pk)
        assert stored.status == ChallengeStatus.VERIFIED
        assert stored.attempts <= stored.max_attempts
    with capsys.disabled():
        print(
            f"\n[race] right code: {RIGHT_CODE_ROUNDS} rounds x {THREADS} threads -> "
            f"{dict(totals)}; double-spends: {totals['ok'] - RIGHT_CODE_ROUNDS}"
        )


def test_fifty_wrong_guesses_at_once_evaluate_exactly_the_limit(pool, outbox, capsys):
    totals: Counter = Counter()
    for round_no in range(WRONG_CODE_ROUNDS):
        # Each round adds 5 wrong codes for this phone; the account lockout
        # (tests of its own) would lock it after two rounds. Start clean.
        caches["default"].clear()
        challenge = flows.request_challenge(phone="+46701234567", purpose="login")
        code = outbox[-1].code
        guess = "".join(str((int(d) + 1) % 10) for d in code)
        results = pool.race(lambda pk=challenge.pk, guess=guess: flows.verify_challenge(pk, guess))
        totals.update(results)
        assert results == Counter({"incorrect_code": 5, "too_many_attempts": 45}), (
            f"round {round_no}: {results}"
        )
        stored = Challenge.objects.get(pk=challenge.pk)
        assert stored.attempts == 5
        assert stored.status == ChallengeStatus.FAILED
        # And the right code is dead too.
        with pytest.raises(Sms2faError):
            flows.verify_challenge(challenge.pk, code)
    with capsys.disabled():
        print(
            f"\n[race] wrong code: {WRONG_CODE_ROUNDS} rounds x {THREADS} threads -> "
            f"{dict(totals)}; evaluated over the limit: "
            f"{totals['incorrect_code'] - 5 * WRONG_CODE_ROUNDS}"
        )


def test_right_and_wrong_answers_mixed(pool, outbox):
    """25 right and 25 wrong at once: at most 5 evaluated, at most 1 success."""
    for _ in range(5):
        challenge = flows.request_challenge(phone="+46701234567", purpose="login")
        code = outbox[-1].code
        guess = "".join(str((int(d) + 1) % 10) for d in code)
        turn = iter(range(THREADS))
        lock = threading.Lock()

        def attempt(turn=turn, lock=lock, pk=challenge.pk, code=code, guess=guess):
            with lock:
                mine = next(turn)
            return flows.verify_challenge(pk, code if mine % 2 else guess)

        results = pool.race(attempt)
        assert results["ok"] <= 1
        assert results["ok"] + results["incorrect_code"] <= 5
        assert not any(key.startswith("crash") for key in results), results
        assert Challenge.objects.get(pk=challenge.pk).attempts <= 5
