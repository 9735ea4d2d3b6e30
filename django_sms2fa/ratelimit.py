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
import logging
import math
import re
import time
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from django.core.cache import caches

from .conf import MAX_RATE_PERIOD, app_settings
from .exceptions import (
    DestinationSuspended,
    LimitsUnavailable,
    RateLimited,
    Sms2faConfigurationError,
    VerificationLocked,
)
from .ratelimit_cluster import ClusterScripts
from .ratelimit_redis import RedisScripts, scripts_for

logger = logging.getLogger("django_sms2fa")

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
    if amount * _UNITS[unit] > MAX_RATE_PERIOD:
        # Longer periods would give retry_after values (and cache TTLs) that
        # overflow 32-bit columns; nobody means a limit over more than a year.
        raise ValueError(f"{text!r} has a period longer than 366 days")
    return Rate(count, amount * _UNITS[unit])


def _cache() -> _GuardedCache:
    return _GuardedCache(app_settings.CACHE)


_NO_SCRIPTS = object()


#: The script runners: one Redis server (or Sentinel's primary), or a Redis Cluster.
Scripts = RedisScripts | ClusterScripts


def _scripts() -> Scripts | None:
    """The Lua scripts of :mod:`~django_sms2fa.ratelimit_redis` when the limits
    cache is Redis (one round trip per step), else ``None`` (generic calls).
    On a Redis Cluster (:mod:`~django_sms2fa.redis_cluster`), the same scripts
    run once per slot (:mod:`~django_sms2fa.ratelimit_cluster`).

    Kept on the cache backend object, which Django makes once per thread and
    replaces when ``CACHES`` changes."""
    alias = app_settings.CACHE
    backend = caches[alias]
    scripts = getattr(backend, "_sms2fa_scripts", _NO_SCRIPTS)
    if scripts is _NO_SCRIPTS:
        scripts = scripts_for(alias, backend)
        backend._sms2fa_scripts = scripts
    return scripts  # type: ignore[return-value]


def _seconds(ms: Any) -> float:
    """A time read back from the limits cache (see :func:`_ms`); 0 for none."""
    return ms / 1000 if isinstance(ms, (int, float)) else 0.0


def _ms(seconds: float) -> int:
    """A time as the limits cache keeps it: whole milliseconds (an integer,
    which every cache backend stores as a plain number — a float would be
    pickled, and a script could not read it)."""
    return int(seconds * 1000)


class _GuardedCache:
    """The limits cache, whose outages become one domain error.

    Every limit, the lockout and the breaker go through here, so this is the
    one place where a cache that cannot be reached (Redis down, a timeout) is
    handled: the call raises :class:`~django_sms2fa.exceptions.LimitsUnavailable`
    — the edges answer 503 ``service_unavailable`` — after one log line naming
    the cache and the error's class (never its text, which may carry a URL
    with a password). Nothing is skipped: a send that cannot be counted is not
    sent and a guess that cannot be counted is not judged.

    ``ValueError`` and ``TypeError`` pass through unchanged: the first is how
    a backend says ``incr`` found no key (the counters rely on it), the second
    is a bug, not an outage.
    """

    __slots__ = ("_alias", "_backend")

    def __init__(self, alias: str) -> None:
        self._alias = alias
        self._backend = caches[alias]

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self._backend, name)

        def guarded(*args: Any, **kwargs: Any) -> Any:
            try:
                return method(*args, **kwargs)
            except (ValueError, TypeError):
                raise
            except Exception as err:
                logger.error(
                    "sms2fa: the limits cache %r is unavailable (%s in %s); "
                    "refusing the request with 503",
                    self._alias,
                    type(err).__name__,
                    name,
                )
                raise LimitsUnavailable(cache=self._alias) from err

        return guarded


def number_prefix(e164: str) -> str:
    """The number prefix the SMS-pumping breaker counts by: the first
    ``PUMPING["PREFIX_DIGITS"]`` digits of the E.164 number, with its ``+``."""
    return e164[: 1 + app_settings.PUMPING["PREFIX_DIGITS"]]


#: What each kind of key counts, from its parts (after the kind): the key's hash
#: tag is made of it. On a Redis Cluster a tag is a slot, and a script may only
#: touch keys of one slot, so the keys one rule checks and takes together share
#: a tag — a subject's lockout, a scope's cooldown and windows for one subject,
#: every breaker key of one prefix (a number's proved mark too), a password
#: count and its lock — while different subjects, scopes and prefixes spread over
#: the cluster rather than all weighing on one shard.
_TAGS: dict[str, Callable[[tuple[object, ...]], tuple[object, ...]]] = {
    # the failure lockout: (subject,)
    **dict.fromkeys(("fail-n", "fail-s", "fail-t", "gate"), lambda p: ("lock", p[0])),
    # ("cool", scope, seconds, subject), ("win", scope, seconds, window, subject)
    "cool": lambda p: ("rate", p[0], p[-1]),
    "win": lambda p: ("rate", p[0], p[-1]),
    # the breaker: ("prefix", prefix[, bucket]); a number's mark: (phone,)
    **dict.fromkeys(("pump-open", "pump-sent", "pump-ok"), lambda p: ("prefix", p[1])),
    "pump-known": lambda p: ("prefix", number_prefix(str(p[0]))),
    # password guessing: (scope, subject)
    **dict.fromkeys(("pw-n", "pw-lock"), lambda p: ("pw", p[0], p[1])),
}


def _key(kind: str, *parts: object) -> str:
    # Hashed, the tag too: keys stay short and cache-safe whatever the input,
    # and phone numbers do not sit in Redis in clear.
    digest = hashlib.sha256("|".join(str(p) for p in (kind, *parts)).encode()).hexdigest()[:32]
    tag = hashlib.sha256("|".join(str(p) for p in _TAGS[kind](parts)).encode()).hexdigest()[:8]
    return f"sms2fa:{{{tag}}}:{kind}:{digest}"


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
            if cache.add(key, _ms(until), timeout=rate.seconds):
                taken.append(Hit(key, cooldown=True))
                continue
            blocked_until = _seconds(cache.get(key)) or until
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


# ------------------------------------------------------------ the send guard


@dataclass(frozen=True)
class PumpCount:
    """A send (or a verification) to count towards the pumping breaker."""

    phone: str
    prefix: str
    #: The number is a confirmed device's, the one the challenge is for: it
    #: is never counted, only remembered as proved (see :func:`mark_known`).
    proved: bool
    #: When the challenge was sent: a verification counts in its send's window.
    sent_at: float


@dataclass(frozen=True)
class SendTicket:
    """What :func:`guard_send` took for one send."""

    hits: list[Hit]
    #: The breaker's count of this send, if it made one (give it back with
    #: :func:`undo_pump_send` when no SMS went out after all).
    pump: PumpCount | None
    #: This send tripped the breaker for its prefix (the send itself goes).
    tripped: bool


def guard_send(
    *,
    lock_subject: str,
    breaker_prefix: str | None,
    takes: Iterable[tuple[str, str]],
    pump: PumpCount | None = None,
    now: float | None = None,
) -> SendTicket:
    """Every limit of one send, in order, all or nothing.

    1. the failure lockout of ``lock_subject`` (a locked account gets no code);
    2. the pumping breaker of ``breaker_prefix`` (``None``: exempt);
    3. one count per ``(scope, subject)`` of ``takes``, under each rate of the
       scope (:func:`rates_for`) — cooldowns and windows;
    4. with ``pump``, the breaker's count of this send (a number that has not
       proved itself), which may trip the breaker.

    On Redis this is one script, one round trip; elsewhere, generic cache calls
    that give back what they took when a later limit refuses.

    :raises VerificationLocked: (``limit`` ``"lockout"``)
    :raises DestinationSuspended: (``limit`` ``"pumping"``)
    :raises RateLimited: (``limit`` the scope that refused)
    """
    now = time.time() if now is None else now
    takes = [(scope, str(subject), rates_for(scope)) for scope, subject in takes]
    scripts = _scripts()
    if scripts is not None:
        return _guard_send_script(scripts, lock_subject, breaker_prefix, takes, pump, now)
    state = lock_state(lock_subject, now=now)
    if state.locked_for:
        raise VerificationLocked(limit="lockout", retry_after=state.locked_for)
    if breaker_prefix is not None:
        suspended = breaker_open_for(breaker_prefix, now=now)
        if suspended:
            raise DestinationSuspended(limit="pumping", retry_after=suspended)
    taken: list[Hit] = []
    try:
        for scope, subject, rates in takes:
            taken += take(scope, subject, rates, now=now)
    except RateLimited:  # take() gave back its own counts; these are the earlier scopes'
        give_back(taken)
        raise
    counted, tripped = None, False
    if pump is not None:
        if pump.proved or is_known(pump.phone):
            mark_known(pump.phone)
        else:
            counted, tripped = pump, count_send(pump.prefix, now=now)
    return SendTicket(taken, counted, tripped)


@dataclass
class _SendScript:
    """The parts of one send whose keys share a slot: one script.

    On one Redis every part is in one script; on a Redis Cluster, one script
    per slot (:meth:`ClusterScripts.slot`), all sent in one batch."""

    lock: list[str] = field(default_factory=list)  # fail-s, fail-t
    breaker: list[str] = field(default_factory=list)  # pump-open (the check)
    takes: list[int] = field(default_factory=list)  # indices into the planned takes
    pump: list[str] = field(default_factory=list)  # pump-known, -sent, -ok, -open (the count)

    def call(
        self, planned: list[_Take], now_ms: int, pump_args: list[Any]
    ) -> tuple[str, list[str], list[Any]]:
        keys = [*self.lock, *self.breaker, *(planned[i].hit.key for i in self.takes), *self.pump]
        threshold = app_settings.LOCKOUT_THRESHOLD if self.lock else 0  # 0: no lockout part
        args = [now_ms, threshold, int(bool(self.breaker)), len(self.takes)]
        for i in self.takes:
            args += planned[i].args
        args += pump_args if self.pump else [0]
        return ("send", keys, args)

    def refusal(self, result: Any) -> tuple[tuple[int, int], Any] | None:
        """``(precedence, result)`` of a refusal — the lockout first, then the
        breaker, then the takes in their order, as one script answers — or
        ``None`` if this script took its part."""
        status = int(result[0])
        if status == 0:
            return None
        if status == 3:
            return (2, self.takes[int(result[2]) - 1]), result
        return (status - 1, 0), result

    def taken(self, planned: list[_Take], result: Any) -> tuple[list[str], list[str]]:
        """What a script that took its part must give back if another refused:
        (counts to decrement, keys to delete)."""
        counts = [planned[i].hit.key for i in self.takes if not planned[i].hit.cooldown]
        deletes = [planned[i].hit.key for i in self.takes if planned[i].hit.cooldown]
        if self.pump:
            known, sent, _ok, open_key = self.pump
            counts += [sent] if int(result[2]) else []  # this send's breaker count
            deletes += [open_key] if int(result[1]) else []  # the trip it made
            deletes += [known] if int(result[3]) else []  # the mark it set
        return counts, deletes


@dataclass(frozen=True)
class _Take:
    scope: str
    hit: Hit
    args: list[Any]  # the script's five arguments for this take


def _plan_takes(takes: list[tuple[str, str, list[Rate]]], now: float) -> list[_Take]:
    planned: list[_Take] = []
    for scope, subject, rates in takes:
        for rate in rates:
            if rate.count == 1:
                key = _key("cool", scope, rate.seconds, subject)
                args: list[Any] = [1, 1, rate.seconds, rate.seconds, 0]
            else:
                window = int(now // rate.seconds)
                key = _key("win", scope, rate.seconds, window, subject)
                args = [0, rate.count, rate.seconds, rate.seconds + 5]
                args.append((window + 1) * rate.seconds * 1000)
            planned.append(_Take(scope, Hit(key, cooldown=rate.count == 1), args))
    return planned


def _guard_send_script(
    scripts: Scripts,
    lock_subject: str,
    breaker_prefix: str | None,
    takes: list[tuple[str, str, list[Rate]]],
    pump: PumpCount | None,
    now: float,
) -> SendTicket:
    planned = _plan_takes(takes, now)
    groups: dict[int, _SendScript] = {}

    def script_for(key: str) -> _SendScript:
        return groups.setdefault(scripts.slot(key), _SendScript())

    lock = [_key("fail-s", lock_subject), _key("fail-t", lock_subject)]
    script_for(lock[0]).lock = lock
    if breaker_prefix is not None:
        breaker = _key("pump-open", "prefix", breaker_prefix)
        script_for(breaker).breaker = [breaker]
    for index, take in enumerate(planned):
        script_for(take.hit.key).takes.append(index)
    pump_args: list[Any] = []
    if pump is not None:
        config = app_settings.PUMPING
        bucket = _bucket(now)
        pump_keys = [
            _key("pump-known", pump.phone),
            _key("pump-sent", "prefix", pump.prefix, bucket),
            _key("pump-ok", "prefix", pump.prefix, bucket),
            _key("pump-open", "prefix", pump.prefix),
        ]
        script_for(pump_keys[0]).pump = pump_keys
        pump_args = [
            1,
            int(pump.proved),
            config["MIN_SENDS"],
            repr(float(config["MIN_VERIFIED_RATIO"])),
            config["SUSPEND_FOR"],
            config["WINDOW"] * 2,
            app_settings.LOCKOUT_MEMORY,
        ]
    parts = list(groups.values())

    def give_back_taken(results: list[Any]) -> None:
        # A script refused (or failed) while others took their parts: those go
        # back, each in its own slot, together (a second round trip).
        calls = []
        for part, result in zip(parts, results, strict=True):
            if result is not None and part.refusal(result) is None:
                counts, deletes = part.taken(planned, result)
                if counts or deletes:
                    calls.append(("password-back", [*counts, *deletes], [len(counts)]))
        if calls:
            scripts.run_batch(calls)

    results = scripts.run_batch(
        [part.call(planned, _ms(now), pump_args) for part in parts], undo=give_back_taken
    )
    answered = list(zip(parts, results, strict=True))
    refusals = [r for part, result in answered if (r := part.refusal(result))]
    if refusals:
        give_back_taken(results)  # nothing on one Redis: its one script took nothing
        order, result = min(refusals, key=lambda refusal: refusal[0])
        status = int(result[0])
        if status == 1:
            raise VerificationLocked(limit="lockout", retry_after=_retry(result[1]))
        if status == 2:
            raise DestinationSuspended(limit="pumping", retry_after=_retry(result[1]))
        raise RateLimited(limit=planned[order[1]].scope, retry_after=_retry(result[1]))
    tripped = any(int(result[1]) for part, result in answered if part.pump)
    counted = any(int(result[2]) for part, result in answered if part.pump)
    return SendTicket([take.hit for take in planned], pump if counted else None, tripped)


def _retry(ms: Any) -> int:
    return max(math.ceil(int(ms) / 1000), 1)


def undo_pump_send(pump: PumpCount) -> None:
    """Give back the breaker's count of a send that no provider took."""
    # In the window the send was counted in, even if it has ended since.
    try:
        _cache().decr(_key("pump-sent", "prefix", pump.prefix, _bucket(pump.sent_at)))
    except ValueError:  # its window ended meanwhile
        pass


def count_pump_send(pump: PumpCount, *, now: float | None = None) -> bool:
    """Count a send that already went out towards the breaker (a send made
    after its guard: on commit, by a task worker); ``True`` if it tripped."""
    if pump.proved or is_known(pump.phone):
        mark_known(pump.phone)
        return False
    return count_send(pump.prefix, now=now)


def count_pump_verified(pump: PumpCount) -> None:
    """Count a verification towards the breaker — only if its send was
    counted (the number had not proved itself) — and mark the number as proved."""
    if not (pump.proved or is_known(pump.phone)):
        count_verified(pump.prefix, created=pump.sent_at)
    mark_known(pump.phone)


# ------------------------------------------------------------- failure lockout


@dataclass(frozen=True)
class LockState:
    failures: int
    locked_for: int  # seconds from now; 0 when not locked


def lock_delay(failures: int) -> int:
    """Seconds of lockout after ``failures`` consecutive wrong codes.

    Nothing below ``LOCKOUT_THRESHOLD``; from there ``min(2^(n-1), 3600)``
    (docs/security.md item 8).
    """
    if failures < app_settings.LOCKOUT_THRESHOLD:
        return 0
    return min(2 ** (failures - 1), 3600)


def lock_state(subject: str, *, now: float | None = None) -> LockState:
    """The failure count of ``subject`` and how long it is still locked.

    The count is of wrong codes already judged (``fail-s``), not of the
    places guesses being judged right now hold (``fail-n``,
    :func:`reserve_guess`): a burst in flight must not make the lock look
    longer than its failures earned. The lock runs from the last wrong code
    recorded. Were the time evicted alone, the next wrong code records it
    again: one guess, not a way around the lock.
    """
    now = time.time() if now is None else now
    keys = [_key("fail-s", subject), _key("fail-t", subject)]
    found = _cache().get_many(keys)  # one round trip (MGET on Redis)
    failures = found.get(keys[0]) or 0
    if failures < app_settings.LOCKOUT_THRESHOLD:
        return LockState(failures, 0)
    last = found.get(keys[1])
    if last is None:
        return LockState(failures, 0)
    remaining = math.ceil(_seconds(last) + lock_delay(failures) - now)
    return LockState(failures, max(remaining, 0))


def record_failure(subject: str, *, now: float | None = None) -> int:
    """Count one wrong code for ``subject`` outside a guess (tests, tools);
    returns the new count. Guesses go through :func:`reserve_guess`."""
    cache = _cache()
    now = time.time() if now is None else now
    ttl = app_settings.LOCKOUT_MEMORY
    _count_up(_key("fail-n", subject), ttl)
    failures = _count_up(_key("fail-s", subject), ttl)
    cache.set(_key("fail-t", subject), _ms(now), timeout=ttl)
    return failures


@dataclass(frozen=True)
class Guess:
    """A place in a subject's failure count, taken before a guess is judged."""

    subject: str
    number: int  # its place in the count (settled failures + guesses in flight), 1-based
    gated: bool  # holds the one-at-a-time gate (from the threshold on)
    #: Already settled as right (``reserve_guess(right=True)``): nothing more to do.
    settled: bool = False


class LockRunning(VerificationLocked):
    """The lock earned by earlier failures still runs (as opposed to a guess
    that must wait for the guesses in flight); the flows record it as a refusal."""


def reserve_guess(
    subject: str,
    *,
    right: bool = False,
    verified: PumpCount | None = None,
    now: float | None = None,
) -> Guess:
    """Take this guess's place in the failure count *before* it is judged.

    :param right: the guess is already known to be right (a code we check
        ourselves): admitted, it is settled at once (:func:`settle_right`,
        with ``verified`` counted for the breaker) — in the same round trip.

    A count taken after the verdict lets a burst through: guesses that
    arrive together over several open challenges all pass the lock check
    before any of them is recorded. So each guess first increments the count
    (one atomic ``INCR``) and is judged only with the place it got:

    * below ``LOCKOUT_THRESHOLD`` it goes on — at most ``THRESHOLD - 1``
      guesses hold such places at once;
    * from the threshold on, a wrong guess locks, so it must also take a gate
      (an atomic ``add``) and find no lock left from the failures before it:
      one guess at a time, once per lock period.

    Each place is then settled: :func:`settle_wrong` (it stays, as the
    failure), :func:`settle_right` (the count is cleared) or
    :func:`release_guess` (not judged: the place is given back).

    :raises LockRunning: the lock of the earlier failures still runs.
    :raises VerificationLocked: the count is at the threshold and another
        guess holds the gate, or guesses in flight must be judged first.
    """
    now = time.time() if now is None else now
    scripts = _scripts()
    if scripts is not None:
        return _reserve_guess_script(scripts, subject, right, verified, now)
    state = lock_state(subject, now=now)
    if state.locked_for:
        raise LockRunning(limit="lockout", retry_after=state.locked_for)
    guess = _reserve_guess_generic(subject, now)
    if right:
        settle_right(guess, verified=verified)
        return Guess(subject, guess.number, gated=False, settled=True)
    return guess


def _guess_keys(subject: str) -> list[str]:
    return [_key(part, subject) for part in ("fail-n", "fail-s", "fail-t", "gate")]


def _verified_keys(verified: PumpCount) -> list[str]:
    """The breaker's keys for a verification (in the slot of its prefix)."""
    bucket = _bucket(verified.sent_at)
    return [
        _key("pump-known", verified.phone),
        _key("pump-ok", "prefix", verified.prefix, bucket),
    ]


def _verified_args(verified: PumpCount | None) -> list[Any]:
    if verified is None:
        return [0, 0, 0, 0]
    return [
        1,
        int(verified.proved),
        app_settings.PUMPING["WINDOW"] * 2,
        app_settings.LOCKOUT_MEMORY,
    ]


def _apart(scripts: Scripts, subject_key: str, verified: PumpCount | None) -> bool:
    """Whether the breaker's count of ``verified`` is in another slot than the
    guess's count (only ever on a Redis Cluster): then it is a script of its own."""
    return verified is not None and (
        scripts.slot(subject_key) != scripts.slot(_verified_keys(verified)[0])
    )


def _reserve_guess_script(
    scripts: Scripts, subject: str, right: bool, verified: PumpCount | None, now: float
) -> Guess:
    keys = _guess_keys(subject)
    verified = verified if right else None
    apart = _apart(scripts, keys[0], verified)
    if verified is not None and not apart:
        keys += _verified_keys(verified)
    args = [
        _ms(now),
        app_settings.LOCKOUT_THRESHOLD,
        app_settings.LOCKOUT_MEMORY,
        int(right),
        *_verified_args(None if apart else verified),
    ]
    result = scripts.run("reserve", keys, args)
    status = int(result[0])
    if status == 1:
        raise LockRunning(limit="lockout", retry_after=_retry(result[1]))
    if status == 2:
        raise VerificationLocked(limit="lockout", retry_after=_retry(result[1]))
    if not right:
        return Guess(subject, int(result[1]), gated=bool(int(result[2])))
    if verified is not None and apart:
        # Counted for the breaker only once the guess was admitted (a second
        # round trip, to the prefix's slot): a refused guess never counts.
        scripts.run("verified", _verified_keys(verified), _verified_args(verified)[1:])
    return Guess(subject, int(result[1]), gated=False, settled=True)


def _reserve_guess_generic(subject: str, now: float) -> Guess:
    cache = _cache()
    threshold = app_settings.LOCKOUT_THRESHOLD
    key = _key("fail-n", subject)
    number = _count_up(key, app_settings.LOCKOUT_MEMORY)
    if number < threshold:
        return Guess(subject, number, gated=False)
    if not cache.add(_key("gate", subject), 1, timeout=60):
        _count_down(key)
        raise VerificationLocked(limit="lockout", retry_after=1)
    guess = Guess(subject, number, gated=True)
    # The lock is judged on the failures already settled, not on ``number``:
    # guesses refused at the gate a moment ago may not have given their
    # places back yet, and would make the lock look longer than it is.
    earlier = cache.get(_key("fail-s", subject)) or 0
    if earlier < threshold - 1:
        # Guesses admitted below the threshold are still being judged: their
        # verdicts come first. (Places below the threshold number at most
        # ``threshold - 1`` at once, so once that many are settled none is in
        # flight, and no new one can be admitted below the threshold.)
        release_guess(guess)
        raise VerificationLocked(limit="lockout", retry_after=1)
    last = cache.get(_key("fail-t", subject))
    if earlier >= threshold and last is not None:
        remaining = math.ceil(_seconds(last) + lock_delay(earlier) - now)
        if remaining > 0:
            release_guess(guess)
            raise VerificationLocked(limit="lockout", retry_after=remaining)
    return guess


def settle_wrong(guess: Guess, *, now: float | None = None) -> int:
    """The guess was wrong: its place stays as a failure, and the lock (if the
    settled failures reached the threshold) runs from now. Returns the number
    of settled failures it makes (one atomic ``INCR``: each number is returned
    once, so the moment the lock is first reached is seen by one guess)."""
    now = time.time() if now is None else now
    scripts = _scripts()
    if scripts is not None:
        return _settle_script(scripts, "wrong", guess, now=now)
    cache = _cache()
    ttl = app_settings.LOCKOUT_MEMORY
    cache.touch(_key("fail-n", guess.subject), timeout=ttl)
    failures = _count_up(_key("fail-s", guess.subject), ttl)
    cache.set(_key("fail-t", guess.subject), _ms(now), timeout=ttl)
    if guess.gated:
        _leave_gate(guess.subject)
    return failures


def settle_right(guess: Guess, *, verified: PumpCount | None = None) -> None:
    """The guess was right: the count is cleared (:func:`reset_failures`),
    and ``verified`` counted for the breaker (:func:`count_pump_verified`)."""
    if guess.settled:
        return
    scripts = _scripts()
    if scripts is not None:
        _settle_script(scripts, "right", guess, verified=verified)
        return
    reset_failures(guess.subject)
    if guess.gated:
        _leave_gate(guess.subject)
    if verified is not None:
        count_pump_verified(verified)


def release_guess(guess: Guess) -> None:
    """The guess was not judged (refused, lost a race, provider error): give
    its place back."""
    if guess.settled:
        return
    scripts = _scripts()
    if scripts is not None:
        _settle_script(scripts, "release", guess)
        return
    _count_down(_key("fail-n", guess.subject))
    if guess.gated:
        _leave_gate(guess.subject)


def _settle_script(
    scripts: Scripts,
    verdict: str,
    guess: Guess,
    *,
    verified: PumpCount | None = None,
    now: float | None = None,
) -> int:
    now = time.time() if now is None else now
    keys = _guess_keys(guess.subject)
    apart = _apart(scripts, keys[0], verified)
    if verified is not None and not apart:
        keys += _verified_keys(verified)
    args = [verdict, _ms(now), app_settings.LOCKOUT_MEMORY, int(guess.gated)]
    args += _verified_args(None if apart else verified)
    calls: list[tuple[str, list[str], list[Any]]] = [("settle", keys, args)]
    if verified is not None and apart:
        # The guess was admitted already: both go in one batch.
        calls.append(("verified", _verified_keys(verified), _verified_args(verified)[1:]))
    return int(scripts.run_batch(calls)[0])


def _count_up(key: str, ttl: int) -> int:
    cache = _cache()
    cache.add(key, 0, timeout=ttl)
    try:
        count = cache.incr(key)
    except ValueError:  # expired or evicted between add and incr
        if cache.add(key, 1, timeout=ttl):
            return 1
        count = cache.incr(key)
    cache.touch(key, timeout=ttl)
    return count


def _count_down(key: str) -> None:
    try:
        _cache().decr(key)
    except ValueError:  # cleared meanwhile (a right code, an unlock)
        pass


def _leave_gate(subject: str) -> None:
    _cache().delete(_key("gate", subject))


def reset_failures(subject: str) -> None:
    """A success clears this count — and only this one (no other limiter)."""
    _cache().delete_many(
        [_key("fail-n", subject), _key("fail-s", subject), _key("fail-t", subject)]
    )


# ------------------------------------------------------------ pumping breaker
#
# Aimed at pumping, not at countries: counted per number prefix (a pumped
# range is a block of numbers one carrier hands out), over sends to numbers
# that have never verified. A number that has verified a code once is marked
# here; its sends and verifications stay out of the ratio, so a prefix full of
# real users cannot be tripped, nor held open, by their logins.


def breaker_open_for(prefix: str, *, now: float | None = None) -> int:
    """Seconds left while sending to this number prefix is suspended."""
    now = time.time() if now is None else now
    until = _seconds(_cache().get(_key("pump-open", "prefix", prefix)))
    return max(math.ceil(until - now), 0) if until else 0


def _bucket(now: float) -> int:
    return int(now // app_settings.PUMPING["WINDOW"])


def mark_known(phone: str) -> None:
    """Remember that ``phone`` has proved itself (a code verified, a confirmed device)."""
    _cache().set(_key("pump-known", phone), 1, timeout=app_settings.LOCKOUT_MEMORY)


def is_known(phone: str) -> bool:
    """Whether ``phone`` has verified a code (within ``LOCKOUT_MEMORY``)."""
    return bool(_cache().get(_key("pump-known", phone)))


def count_send(prefix: str, *, now: float | None = None) -> bool:
    """Count a send to a never-verified number; ``True`` if the prefix just tripped."""
    cache = _cache()
    now = time.time() if now is None else now
    config = app_settings.PUMPING
    bucket = _bucket(now)
    sent_key = _key("pump-sent", "prefix", prefix, bucket)
    ok_key = _key("pump-ok", "prefix", prefix, bucket)
    cache.add(sent_key, 0, timeout=config["WINDOW"] * 2)
    try:
        sent = cache.incr(sent_key)
    except ValueError:
        return False
    if sent < config["MIN_SENDS"]:
        return False
    verified = cache.get(ok_key) or 0
    if verified / sent >= config["MIN_VERIFIED_RATIO"]:
        return False
    until = now + config["SUSPEND_FOR"]
    return bool(
        cache.add(_key("pump-open", "prefix", prefix), _ms(until), timeout=config["SUSPEND_FOR"])
    )


def count_verified(prefix: str, *, created: float) -> None:
    """Count a verification in the window its challenge was sent in."""
    cache = _cache()
    config = app_settings.PUMPING
    key = _key("pump-ok", "prefix", prefix, _bucket(created))
    cache.add(key, 0, timeout=config["WINDOW"] * 2)
    try:
        cache.incr(key)
    except ValueError:
        pass


# ------------------------------------------------------------ password guessing
#
# Wrong passwords at the app's login, per username (known or not: an unknown
# one is counted and answered exactly like a known one) and per client IP.
# Every guess is counted *before* its password is checked, with one atomic
# incr, so concurrent guesses cannot all slip in under the threshold; a right
# password gives its count back. From the threshold on, a guess is judged only
# if it can set the lock that follows it (an atomic add): one guess per lock
# period, whatever the concurrency. The delay is the code lockout's shape:
# 512 s at the threshold, doubling to an hour.


@dataclass
class PasswordGuess:
    """One password guess, counted; set ``right`` once the password is checked."""

    counted: list[tuple[str, str]]  # (count key, scope) this guess incremented
    locks: list[str]  # lock keys this guess set (it was judged past a threshold)
    username_key: str
    right: bool = False


def password_delay(failures: int, threshold: int) -> int:
    """Seconds of lock after ``failures`` wrong passwords: 0 below ``threshold``,
    then 512 s, doubling, at most 3600 s."""
    if failures < threshold:
        return 0
    return min(2 ** min(failures - threshold + 9, 12), 3600)


def _username_subject(username: str) -> str:
    # The spellings Django itself treats as one username (NFKC), in any case:
    # "Alice" and "alice" share a count, so case cannot multiply the guesses.
    return unicodedata.normalize("NFKC", str(username)).casefold()


@contextmanager
def password_guess(
    username: str, ip_key: str | None, *, now: float | None = None
) -> Iterator[PasswordGuess]:
    """Count a password guess for ``username`` from ``ip_key`` around its check::

        with ratelimit.password_guess(username, limit_key(ip)) as guess:
            user = authenticate(request, username=username, password=password)
            guess.right = user is not None

    :raises RateLimited: (``limit`` ``"password"`` or ``"password_ip"``) the
        username or the IP is locked; nothing is checked and nothing counted.
        Raised alike for known and unknown usernames, right or wrong passwords.
    """
    guess = _take_password_guess(username, ip_key, now=now)
    try:
        yield guess
    except BaseException:
        _give_back_password_guess(guess)  # not judged (a backend error)
        raise
    if guess.right:
        # A success clears the username's count (and gives the IP's back).
        _give_back_password_guess(guess, clear=guess.username_key)
    else:
        logger.info("sms2fa: wrong password (%s)", ", ".join(scope for _k, scope in guess.counted))


def _take_password_guess(username: str, ip_key: str | None, *, now: float | None) -> PasswordGuess:
    cache = _cache()
    now = time.time() if now is None else now
    config = app_settings.PASSWORD_LOCKOUT
    subjects = [("password", _username_subject(username), config["USERNAME_THRESHOLD"])]
    if ip_key is not None:
        subjects.append(("password_ip", ip_key, config["IP_THRESHOLD"]))
    scripts = _scripts()
    if scripts is not None:
        return _take_password_guess_script(scripts, subjects, config["MEMORY"], now)
    for scope, subject, _threshold in subjects:
        until = _seconds(cache.get(_key("pw-lock", scope, subject)))
        if until and until > now:
            raise RateLimited(limit=scope, retry_after=max(math.ceil(until - now), 1))
    guess = PasswordGuess(counted=[], locks=[], username_key=_key("pw-n", *subjects[0][:2]))
    for scope, subject, threshold in subjects:
        count_key = _key("pw-n", scope, subject)
        failures = _password_count_up(count_key, config["MEMORY"])
        guess.counted.append((count_key, scope))
        delay = password_delay(failures, threshold)
        if not delay:
            continue
        lock_key = _key("pw-lock", scope, subject)
        if cache.add(lock_key, _ms(now + delay), timeout=delay):
            guess.locks.append(lock_key)
            if failures == threshold:
                logger.warning("sms2fa: %s locked after %d wrong passwords", scope, failures)
            continue
        # Another guess set the lock a moment ago: this one is not judged.
        until = _seconds(cache.get(lock_key)) or now + 1
        _give_back_password_guess(guess)
        raise RateLimited(limit=scope, retry_after=max(math.ceil(until - now), 1))
    return guess


def _take_password_guess_script(
    scripts: Scripts, subjects: list[tuple[str, str, int]], memory: int, now: float
) -> PasswordGuess:
    # One script per slot of the subjects (on one Redis: one script for both).
    groups: dict[int, list[int]] = {}
    for index, (scope, subject, _threshold) in enumerate(subjects):
        groups.setdefault(scripts.slot(_key("pw-n", scope, subject)), []).append(index)
    parts = list(groups.values())
    calls = []
    for part in parts:
        keys: list[str] = []
        for i in part:
            scope, subject, _threshold = subjects[i]
            keys += [_key("pw-lock", scope, subject), _key("pw-n", scope, subject)]
        calls.append(("password", keys, [_ms(now), memory, *(subjects[i][2] for i in part)]))

    def taken(results: list[Any]) -> PasswordGuess:
        # What the scripts that ran took: each subject's count, and its lock if
        # the script set it (bit ``i`` of its answer for its ``i``-th subject).
        took: dict[int, bool] = {}
        for part, result in zip(parts, results, strict=True):
            if result is not None and int(result[0]) == 0:
                took.update({i: bool(int(result[1]) & (n + 1)) for n, i in enumerate(part)})
        guess = PasswordGuess(counted=[], locks=[], username_key=_key("pw-n", *subjects[0][:2]))
        for i in sorted(took):
            scope, subject, _threshold = subjects[i]
            guess.counted.append((_key("pw-n", scope, subject), scope))
            if took[i]:
                guess.locks.append(_key("pw-lock", scope, subject))
        return guess

    def give_back_taken(results: list[Any]) -> None:
        _give_back_password_guess(taken(results))

    results = scripts.run_batch(calls, undo=give_back_taken)
    refusals = [
        (part[int(result[1]) - 1], result)
        for part, result in zip(parts, results, strict=True)
        if int(result[0]) == 1
    ]
    if refusals:
        give_back_taken(results)  # nothing on one Redis: its one script took nothing
        index, result = min(refusals, key=lambda refusal: refusal[0])
        raise RateLimited(limit=subjects[index][0], retry_after=_retry(result[2]))
    guess = taken(results)
    for scope, subject, _threshold in subjects:
        if _key("pw-lock", scope, subject) in guess.locks:
            logger.warning("sms2fa: %s locked after wrong passwords", scope)
    return guess


def _give_back_password_guess(guess: PasswordGuess, *, clear: str | None = None) -> None:
    scripts = _scripts()
    if scripts is not None:
        counts = [key for key, _scope in guess.counted if key != clear]
        deletes = [*guess.locks, *([clear] if clear else [])]
        # One script per slot (on one Redis: one script), in one batch.
        groups: dict[int, tuple[list[str], list[str]]] = {}
        for keys, index in ((counts, 0), (deletes, 1)):
            for key in keys:
                groups.setdefault(scripts.slot(key), ([], []))[index].append(key)
        calls = [
            ("password-back", [*decrements, *removals], [len(decrements)])
            for decrements, removals in groups.values()
        ]
        if calls:
            scripts.run_batch(calls)
        guess.counted, guess.locks = [], []
        return
    cache = _cache()
    if clear is not None:
        cache.delete(clear)
        guess.counted = [(key, scope) for key, scope in guess.counted if key != clear]
    for count_key, _scope in guess.counted:
        try:
            cache.decr(count_key)
        except ValueError:
            pass
    if guess.locks:
        cache.delete_many(guess.locks)
    guess.counted, guess.locks = [], []


def _password_count_up(key: str, ttl: int) -> int:
    """One atomic increment; the count is kept ``ttl`` s after the last one."""
    cache = _cache()
    cache.add(key, 0, timeout=ttl)
    try:
        count = cache.incr(key)
    except ValueError:  # evicted between add and incr
        if cache.add(key, 1, timeout=ttl):
            return 1
        count = cache.incr(key)
    cache.touch(key, timeout=ttl)
    return count
