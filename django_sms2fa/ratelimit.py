"""Limits that hold across processes: send limits, the failure lockout, and
the SMS-pumping breaker.

All state lives in the Django cache named by ``SMS2FA["CACHE"]`` — Redis in
production — and every count is one atomic cache operation (``add``/``incr``,
which Redis runs as ``SET NX``/``INCR``), so any number of web processes share
one count. DRF throttles read, compare and write in three steps, which
concurrent requests slip through (DRF #8127); these do not.

Rates are written ``"N/period"`` with a period of ``Ns``, ``Nm``, ``Nh`` or
``Nd`` (``"5/10m"``). A rate of one (``"1/30s"``) is a true sliding cooldown
(an atomic ``add`` whose value is its own expiry); larger rates count in fixed
windows, so at a window boundary up to twice the rate can pass within one
period — the usual trade-off of atomic counters, stated here rather than hidden.
"""

from __future__ import annotations

import hashlib
import math
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass

from django.core.cache import caches

from .conf import app_settings
from .exceptions import RateLimited, Sms2faConfigurationError, VerificationLocked

_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d*)\s*([smhd])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


@dataclass(frozen=True)
class Rate:
    count: int
    seconds: int

    def __str__(self) -> str:
        return f"{self.count}/{self.seconds}s"


def parse_rate(text: str) -> Rate:
    """``"5/10m"`` → ``Rate(5, 600)``; raises ValueError on anything else."""
    match = _RATE.match(str(text))
    if not match:
        raise ValueError(f"not a rate: {text!r} (write it like '5/10m')")
    count, amount, unit = int(match[1]), int(match[2] or 1), match[3]
    if count < 1 or amount < 1:
        raise ValueError(f"not a rate: {text!r}")
    return Rate(count, amount * _UNITS[unit])


def _cache():
    return caches[app_settings.CACHE]


def _key(*parts: object) -> str:
    # Hashed: keys stay short and cache-safe whatever the input, and phone
    # numbers do not sit in Redis in clear.
    digest = hashlib.sha256("|".join(str(p) for p in parts).encode()).hexdigest()[:32]
    return f"sms2fa:{parts[0]}:{digest}"


# ----------------------------------------------------------------- send limits


@dataclass(frozen=True)
class Hit:
    """One counter a request incremented (to roll back if another refuses)."""

    key: str
    cooldown: bool


def take(scope: str, subject: str, rates: Iterable[Rate], *, now: float | None = None) -> list[Hit]:
    """Count one event for ``subject`` under every rate, or refuse.

    :returns: the counters taken (pass them to :func:`give_back` if a later
        check refuses the same request).
    :raises RateLimited: with ``retry_after`` and ``limit`` (``scope``); the
        counters this call took are given back first.
    """
    cache = _cache()
    now = time.time() if now is None else now
    taken: list[Hit] = []
    for rate in rates:
        if rate.count == 1:
            key = _key("cool", scope, rate.seconds, subject)
            until = now + rate.seconds
            if cache.add(key, until, timeout=rate.seconds):
                taken.append(Hit(key, cooldown=True))
                continue
            blocked_until = cache.get(key) or until
            give_back(taken)
            raise RateLimited(limit=scope, retry_after=max(math.ceil(blocked_until - now), 1))
        window = int(now // rate.seconds)
        key = _key("win", scope, rate.seconds, window, subject)
        cache.add(key, 0, timeout=rate.seconds + 5)
        try:
            count = cache.incr(key)
        except ValueError:  # evicted between add and incr: start again
            cache.add(key, 1, timeout=rate.seconds + 5)
            count = 1
        if count > rate.count:
            # Over the limit: this request's own increment is given back too,
            # so refused requests do not push the window further.
            give_back([*taken, Hit(key, cooldown=False)])
            window_end = (window + 1) * rate.seconds
            raise RateLimited(limit=scope, retry_after=max(math.ceil(window_end - now), 1))
        taken.append(Hit(key, cooldown=False))
    return taken


def give_back(hits: Iterable[Hit]) -> None:
    """Undo counters taken for a request that was refused elsewhere."""
    cache = _cache()
    for hit in hits:
        if hit.cooldown:
            cache.delete(hit.key)
        else:
            try:
                cache.decr(hit.key)
            except ValueError:
                pass


def rates_for(scope: str) -> list[Rate]:
    """The configured rates of ``scope`` (``phone``, ``ip``, ``user``, ``country``, ``global``)."""
    raw = app_settings.LIMITS.get(scope, [])
    try:
        return [parse_rate(rate) for rate in raw]
    except ValueError as err:
        raise Sms2faConfigurationError(
            f"SMS2FA['LIMITS'][{scope!r}]: {err}", check_id="sms2fa.E010"
        ) from err


# ------------------------------------------------------------- failure lockout


@dataclass(frozen=True)
class LockState:
    failures: int
    locked_for: int  # seconds from now; 0 when not locked


def lock_delay(failures: int) -> int:
    """Seconds of lockout after ``failures`` consecutive wrong codes.

    Nothing below ``LOCKOUT_THRESHOLD``; from there ``min(2^(n-1), 3600)``
    (shared/security.md item 8).
    """
    if failures < app_settings.LOCKOUT_THRESHOLD:
        return 0
    return min(2 ** (failures - 1), 3600)


def lock_state(subject: str, *, now: float | None = None) -> LockState:
    cache = _cache()
    now = time.time() if now is None else now
    failures = cache.get(_key("fail-n", subject)) or 0
    if failures < app_settings.LOCKOUT_THRESHOLD:
        return LockState(failures, 0)
    last = cache.get(_key("fail-t", subject)) or now
    remaining = math.ceil(last + lock_delay(failures) - now)
    return LockState(failures, max(remaining, 0))


def record_failure(subject: str, *, now: float | None = None) -> int:
    """Count one wrong code for ``subject``; returns the new count."""
    cache = _cache()
    now = time.time() if now is None else now
    ttl = app_settings.LOCKOUT_MEMORY
    key = _key("fail-n", subject)
    cache.add(key, 0, timeout=ttl)
    try:
        failures = cache.incr(key)
    except ValueError:
        cache.add(key, 1, timeout=ttl)
        failures = 1
    cache.touch(key, timeout=ttl)
    cache.set(_key("fail-t", subject), now, timeout=ttl)
    return failures


def enter_gate(subject: str) -> bool:
    """Admit one guess at a time once the next failure would lock.

    The lock is set when a wrong guess is *recorded*, after it was judged; a
    burst of guesses arriving together could all pass the lock check first.
    So from ``LOCKOUT_THRESHOLD - 1`` failures on, a guess must also take this
    gate (an atomic ``add``): the others are refused as locked, and only one is
    judged per lock period.

    :returns: whether the gate was taken (pass to :func:`leave_gate`).
    :raises VerificationLocked: another guess holds the gate.
    """
    cache = _cache()
    failures = cache.get(_key("fail-n", subject)) or 0
    if failures < app_settings.LOCKOUT_THRESHOLD - 1:
        return False
    if not cache.add(_key("gate", subject), 1, timeout=60):
        raise VerificationLocked(limit="lockout", retry_after=1)
    # Re-check under the gate: the guess that held it before may have just
    # recorded the failure that locks.
    state = lock_state(subject)
    if state.locked_for:
        leave_gate(subject)
        raise VerificationLocked(limit="lockout", retry_after=state.locked_for)
    return True


def leave_gate(subject: str) -> None:
    _cache().delete(_key("gate", subject))


def reset_failures(subject: str) -> None:
    """A success clears this count — and only this one (no other limiter)."""
    _cache().delete_many([_key("fail-n", subject), _key("fail-t", subject)])


# ------------------------------------------------------------ pumping breaker


def breaker_open_for(region: str, prefix: str) -> int:
    """Seconds left while sending to this region or prefix is suspended."""
    cache = _cache()
    now = time.time()
    left = 0
    for scope, value in (("region", region), ("prefix", prefix)):
        until = cache.get(_key("pump-open", scope, value))
        if until:
            left = max(left, math.ceil(until - now))
    return left


def _bucket(now: float) -> int:
    return int(now // app_settings.PUMPING["WINDOW"])


def count_send(region: str, prefix: str, *, now: float | None = None) -> list[tuple[str, str]]:
    """Count a send towards the pumping ratios; returns the scopes that just tripped."""
    cache = _cache()
    now = time.time() if now is None else now
    config = app_settings.PUMPING
    tripped = []
    for scope, value in (("region", region), ("prefix", prefix)):
        bucket = _bucket(now)
        sent_key = _key("pump-sent", scope, value, bucket)
        ok_key = _key("pump-ok", scope, value, bucket)
        cache.add(sent_key, 0, timeout=config["WINDOW"] * 2)
        try:
            sent = cache.incr(sent_key)
        except ValueError:
            continue
        if sent < config["MIN_SENDS"]:
            continue
        verified = cache.get(ok_key) or 0
        if verified / sent < config["MIN_VERIFIED_RATIO"]:
            until = now + config["SUSPEND_FOR"]
            if cache.add(_key("pump-open", scope, value), until, timeout=config["SUSPEND_FOR"]):
                tripped.append((scope, value))
    return tripped


def count_verified(region: str, prefix: str, *, created: float) -> None:
    """Count a verification in the window its challenge was sent in."""
    cache = _cache()
    config = app_settings.PUMPING
    for scope, value in (("region", region), ("prefix", prefix)):
        key = _key("pump-ok", scope, value, _bucket(created))
        cache.add(key, 0, timeout=config["WINDOW"] * 2)
        try:
            cache.incr(key)
        except ValueError:
            pass
