"""Limits at the seams: what an anonymous caller can spend, the cache the
limits need, and the bounds of the settings the limits are made of.

* Ten passwordless requests used up the phone's day of sends, and with it
  the owner's login SMS. Each phone now has three budgets of the same rates:
  anonymous sends (passwordless, ``verify_phone`` without a session), login
  codes after a right password, and a logged-in user's own enrolment sends;
  the per-user limit counts only the last two. Per IP, country and site,
  every send counts, the login SMS included.
* The limits need a cache whose ``add``/``incr`` are atomic across
  processes: the database, file and dummy caches are an error (``E040``),
  local memory a warning in production (``W002``), Redis and Memcached pass.
* Durations are bounded where they are configured (check ``sms2fa.E010``):
  a ``SUSPEND_FOR`` or rate period of years gave ``retry_after`` values past
  2^31 s, which the ``Refusal.retry_after`` column (32-bit on PostgreSQL)
  cannot hold: the refused request answered 500. What is stored is clamped too.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

from django.core import checks

from django_sms2fa import device_flows, flows, ratelimit
from django_sms2fa.conf import (
    MAX_RETRY_AFTER,
    app_settings,
)
from django_sms2fa.exceptions import DestinationSuspended, RateLimited, Sms2faConfigurationError
from django_sms2fa.models import PhoneDevice, Purpose, Refusal
from django_sms2fa.types import ClientInfo

from .test_send_limits import (
    PHONE,
    Answer,
    api_client,
    api_post,
    frozen,
    mobiles,
    request_code,
)

pytestmark = pytest.mark.django_db

YEARS = 100 * 365 * 86400  # > 2^31 s


def e010(messages: list[checks.CheckMessage]) -> list[str]:
    return [m.msg for m in messages if m.id == "sms2fa.E010"]


def run_checks() -> list[checks.CheckMessage]:
    return checks.run_checks(tags=["sms2fa"])


# ------------------------------------------------------- bounded durations


@pytest.mark.parametrize(
    "changes",
    [
        {"PUMPING": {"SUSPEND_FOR": YEARS}},
        {"PUMPING": {"SUSPEND_FOR": 2**31}},
        {"PUMPING": {"WINDOW": YEARS}},
        {"PUMPING": {"SUSPEND_FOR": "3600"}},
        {"PUMPING": {"WINDOW": True}},
        {"LOCKOUT_MEMORY": YEARS},
        {"LIMITS": {"phone": ["1/36500d"]}},
        {"LIMITS": {"ip": ["5/99999999h"]}},
    ],
    ids=lambda changes: repr(changes),
)
def test_durations_past_their_bound_are_refused_by_conf_and_the_checks(changes, sms2fa_settings):
    sms2fa_settings(**changes)
    key = next(iter(changes))
    with pytest.raises(Sms2faConfigurationError) as refused:
        if key == "LIMITS":
            for scope in changes["LIMITS"]:
                ratelimit.rates_for(scope)
        else:
            getattr(app_settings, key)
    assert refused.value.check_id == "sms2fa.E010"
    assert e010(run_checks()), run_checks()


@pytest.mark.parametrize(
    "changes",
    [
        {"PUMPING": {"SUSPEND_FOR": 30 * 86400, "WINDOW": 7 * 86400}},
        {"LOCKOUT_MEMORY": 366 * 86400},
        {"LIMITS": {"phone": ["10/366d"], "ip": ["20/h"]}},
    ],
    ids=lambda changes: repr(changes),
)
def test_durations_at_their_bound_are_accepted(changes, sms2fa_settings):
    sms2fa_settings(**changes)
    assert e010(run_checks()) == []


def test_a_refusal_with_a_huge_retry_after_is_stored_clamped():
    """Whatever a limiter computes, the audit row is written (no 500)."""
    for error in (
        RateLimited(limit="phone", retry_after=2**40),
        DestinationSuspended(limit="pumping", retry_after=YEARS),
    ):
        flows._record_refusal(error, phone=PHONE, user_id=None, ip="192.0.2.1")
    assert list(Refusal.objects.values_list("retry_after", flat=True)) == [MAX_RETRY_AFTER] * 2


def test_the_longest_allowed_suspension_is_answered_and_recorded(sms2fa_settings, outbox):
    """The breaker at its longest SUSPEND_FOR: 429 with Retry-After, and a refusal row."""
    sms2fa_settings(PUMPING={"MIN_SENDS": 3, "MIN_VERIFIED_RATIO": 0.5, "SUSPEND_FOR": 30 * 86400})
    numbers = mobiles(4)
    with frozen():
        assert all(request_code("flow", number).ok for number in numbers[:3])
        response = api_post(
            api_client(), "challenges/", {"phone": numbers[3], "purpose": "verify_phone"}
        )
    assert response.status_code == 429
    assert response["Retry-After"] == str(30 * 86400)
    assert Refusal.objects.get().retry_after == 30 * 86400


# ------------------------------------------------- the cache must be atomic

NON_ATOMIC = {
    "database": {
        "BACKEND": "django.core.cache.backends.db.DatabaseCache",
        "LOCATION": "sms2fa_cache",
    },
    "file": {
        "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
        "LOCATION": "/tmp/sms2fa-file-cache",
    },
    "dummy": {"BACKEND": "django.core.cache.backends.dummy.DummyCache"},
}
SHARED_ATOMIC = {
    "redis": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": "redis://127.0.0.1:6379/15",
    },
    "django-redis": {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": "redis://127.0.0.1:6379/15",
    },
    "pymemcache": {
        "BACKEND": "django.core.cache.backends.memcached.PyMemcacheCache",
        "LOCATION": "127.0.0.1:11211",
    },
    "pylibmc": {
        "BACKEND": "django.core.cache.backends.memcached.PyLibMCCache",
        "LOCATION": "127.0.0.1:11211",
    },
}
LOCMEM = {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}


def cache_messages(settings, backend: dict, *, debug: bool) -> dict[str, checks.CheckMessage]:
    """The cache check's messages with ``backend`` under the SMS2FA alias
    ``limits`` (and a harmless default cache)."""
    settings.DEBUG = debug
    settings.CACHES = {"default": LOCMEM, "limits": backend}
    settings.SMS2FA = {**settings.SMS2FA, "CACHE": "limits"}
    return {m.id: m for m in run_checks() if m.id in ("sms2fa.E040", "sms2fa.W002")}


@pytest.mark.parametrize("debug", [False, True], ids=["production", "debug"])
@pytest.mark.parametrize("name", sorted(NON_ATOMIC))
def test_a_non_atomic_cache_is_an_error(name, debug, settings):
    found = cache_messages(settings, NON_ATOMIC[name], debug=debug)
    assert set(found) == {"sms2fa.E040"}
    error = found["sms2fa.E040"]
    assert isinstance(error, checks.Error) and error.is_serious()
    assert "'limits'" in error.msg and "not atomic" in error.msg


@pytest.mark.parametrize("name", sorted(SHARED_ATOMIC))
@pytest.mark.parametrize("debug", [False, True], ids=["production", "debug"])
def test_redis_and_memcached_pass(name, debug, settings):
    """No connection is made: the check reads the backend's name only."""
    assert cache_messages(settings, SHARED_ATOMIC[name], debug=debug) == {}


def test_local_memory_is_a_warning_in_production_never_an_error(settings):
    """Atomic within one process: the example site runs on it (DEBUG on)."""
    found = cache_messages(settings, LOCMEM, debug=False)
    assert set(found) == {"sms2fa.W002"}
    assert isinstance(found["sms2fa.W002"], checks.Warning)
    assert not found["sms2fa.W002"].is_serious()
    assert cache_messages(settings, LOCMEM, debug=True) == {}


def test_only_the_sms2fa_cache_alias_is_judged(settings):
    settings.DEBUG = False
    settings.CACHES = {"default": NON_ATOMIC["database"], "limits": SHARED_ATOMIC["redis"]}
    settings.SMS2FA = {**settings.SMS2FA, "CACHE": "limits"}
    assert not [m for m in run_checks() if m.id == "sms2fa.E040"]


# ------------------------------------- what an anonymous caller can spend

ATTACKER_IP = "203.0.113.66"
OWNER_IP = "198.51.100.7"
OWNER_PASSWORD = "correct horse"  # the `user` fixture's


@pytest.fixture
def owner_device(user):
    return PhoneDevice.objects.create(user=user, number=PHONE, name="phone", confirmed=True)


def owner_logs_in(outbox: list[Any], ip: str = OWNER_IP) -> tuple[int, str]:
    """Password, then the code the SMS brought: (final status, error code or "")."""
    client = api_client(ip)
    answer = api_post(client, "login/", {"username": "alice", "password": OWNER_PASSWORD})
    if answer.status_code != 200:
        return answer.status_code, answer.json()["error"]["code"]
    challenge = answer.json()["challenge"]["id"]
    verified = api_post(client, "login/verify/", {"challenge": challenge, "code": outbox[-1].code})
    return verified.status_code, ""


def spend_anonymously(clock: Any, tries: int = 40) -> list[Answer]:
    """Passwordless and anonymous verify_phone requests for the owner's number,
    one a minute (past the 30 s cooldown) until the day's budget is gone."""
    answers = []
    for index in range(tries):
        purpose = Purpose.PASSWORDLESS if index % 2 else Purpose.VERIFY_PHONE
        answers.append(request_code("api", PHONE, ip=ATTACKER_IP, purpose=purpose))
        clock.advance(61)
    return answers


def test_anonymous_sends_do_not_spend_the_owners_login_sms(send_limits, owner_device, outbox):
    with frozen() as clock:
        spent = spend_anonymously(clock)
        # Right after the attacker's last try (inside its cooldown, its 10
        # minutes, its day): the owner's password-then-code login.
        request_code("api", PHONE, ip=ATTACKER_IP, purpose=Purpose.PASSWORDLESS)
        first = owner_logs_in(outbox)
        clock.advance(31)
        second = owner_logs_in(outbox)
    assert sum(answer.ok for answer in spent) == 10  # the anonymous budget: 10 a day
    assert {answer.code for answer in spent if not answer.ok} == {"rate_limited"}
    assert (first, second) == ((200, ""), (200, ""))


def test_a_strangers_account_enrolling_the_number_does_not_spend_it(
    send_limits, django_user_model, owner_device, outbox
):
    """A logged-in stranger adds the owner's number to their own account, over
    and over: their sends come out of the account budget, not the owner's login."""
    mallory = django_user_model.objects.create_user(username="mallory", password="mallory-pw")
    with frozen() as clock:
        enrolled = 0
        for _ in range(30):
            try:
                device_flows.enrol_phone(
                    mallory, PHONE, verified_session=False, client=ClientInfo(ip=ATTACKER_IP)
                )
                enrolled += 1
            except RateLimited:
                pass
            clock.advance(61)
        owner = owner_logs_in(outbox)
    assert enrolled == 10  # the stranger was limited (10 a day) ...
    assert owner == (200, "")  # ... and the owner was not


def test_the_login_sms_still_has_its_own_limits(send_limits, sms2fa_settings, owner_device, outbox):
    """A right password does not buy unlimited SMS: the login budget per phone
    (1 per 30 s, ...), and per IP, country and site like every send."""
    with frozen() as clock:
        assert owner_logs_in(outbox) == (200, "")
        assert owner_logs_in(outbox) == (429, "rate_limited")  # the login budget's cooldown
        clock.advance(31)
        sms2fa_settings(LIMITS={**send_limits, "ip": ["1/h"]})
        assert request_code("api", "+46709876543", ip=OWNER_IP).ok  # the owner's IP: spent
        assert owner_logs_in(outbox) == (429, "rate_limited")
        refusal = Refusal.objects.order_by("-pk").first()
        assert (refusal.limit, refusal.client_ip) == ("ip", OWNER_IP)


def test_passwordless_requests_do_not_spend_the_users_daily_budget(
    send_limits, user, owner_device, outbox
):
    """The per-user limit (10 a day) counts what the account itself asks for;
    a stranger's passwordless requests for its number are counted per phone only."""
    with frozen() as clock:
        spend_anonymously(clock)
        for _ in range(9):  # the user's own sends: nine enrolment codes, one login
            flows.request_challenge(
                phone=f"+4670{len(outbox):07d}",
                purpose=Purpose.VERIFY_PHONE,
                user=user,
                client=ClientInfo(ip=OWNER_IP),
            )
        assert owner_logs_in(outbox) == (200, "")
        clock.advance(31)
        assert owner_logs_in(outbox) == (429, "rate_limited")  # the 11th of the day
    assert Refusal.objects.order_by("-pk").first().limit == "user"


# ------------------------------------------ the owner under a ten-minute attack


def test_an_attacker_who_knows_only_the_number_cannot_stop_the_owners_login(
    send_limits, owner_device, outbox, capsys
):
    """For 10 simulated minutes an attacker who knows only the owner's number
    does everything anonymous callers can, every second, from a new IP each
    time: asks for passwordless codes and anonymous verify_phone codes to it,
    resends them, and sends wrong codes to every challenge it gets. Every two
    minutes the owner logs in with password then code. Each login must work at
    once; the owner's worst wait is printed (it was minutes before: the
    attacker's sends used up the phone's budget and its wrong codes locked the
    account)."""
    attacker_ips = (f"10.{n // 250}.{n % 250}.1" for n in range(10**6))
    open_challenges: list[tuple[Any, str]] = []
    attacker = {"requests": 0, "sent": 0, "wrong_codes_judged": 0}
    owner_waits: list[int] = []
    owner_due, owner_waiting_since = 1, None
    with frozen() as clock:
        for second in range(600):
            # ---- the attacker
            purpose = Purpose.PASSWORDLESS if second % 2 else Purpose.VERIFY_PHONE
            client = api_client(next(attacker_ips))
            asked = api_post(client, "challenges/", {"phone": PHONE, "purpose": str(purpose)})
            attacker["requests"] += 1
            if asked.status_code == 202:
                attacker["sent"] += 1
                open_challenges.append((client, asked.json()["id"]))
            for client, challenge_id in list(open_challenges):
                guessed = api_post(
                    client,
                    f"challenges/{challenge_id}/verify/",
                    {"code": "000000"},
                    REMOTE_ADDR=next(attacker_ips),
                )
                attacker["requests"] += 1
                if guessed.status_code == 400:
                    attacker["wrong_codes_judged"] += 1
                elif guessed.status_code in (404, 410):
                    open_challenges.remove((client, challenge_id))
            if open_challenges:
                client, challenge_id = open_challenges[-1]
                resent = api_post(
                    client, f"challenges/{challenge_id}/resend/", REMOTE_ADDR=next(attacker_ips)
                )
                attacker["requests"] += 1
                attacker["sent"] += resent.status_code == 202
            # ---- the owner, every two minutes
            if second >= owner_due:
                if owner_waiting_since is None:
                    owner_waiting_since = second
                status, _code = owner_logs_in_with_login_code(outbox)
                if status == 200:
                    owner_waits.append(second - owner_waiting_since)
                    owner_due, owner_waiting_since = second + 120, None
            clock.advance(1)
    if owner_waiting_since is not None:  # still not logged in when the attack ended
        owner_waits.append(600 - owner_waiting_since)
    worst = max(owner_waits)
    with capsys.disabled():
        print(
            f"\n[seams] 10 minutes of an attacker who knows only the number: "
            f"{attacker['requests']} requests, {attacker['sent']} SMS sent to the owner's "
            f"phone, {attacker['wrong_codes_judged']} wrong codes judged; the owner logged "
            f"in {len(owner_waits)} times, worst wait {worst} s"
        )
    assert owner_waits == [0] * 5
    assert attacker["sent"] <= 6  # the anonymous budget: 5 per 10 minutes (+1 at a window edge)


def owner_logs_in_with_login_code(outbox: list[Any]) -> tuple[int, str]:
    """Like :func:`owner_logs_in`, reading the code of the owner's login SMS
    (the attacker's codes go to the same phone)."""
    client = api_client(OWNER_IP)
    answer = api_post(client, "login/", {"username": "alice", "password": OWNER_PASSWORD})
    if answer.status_code != 200:
        return answer.status_code, answer.json()["error"]["code"]
    challenge = answer.json()["challenge"]["id"]
    code = [sms for sms in outbox if sms.purpose == "login"][-1].code
    verified = api_post(client, "login/verify/", {"challenge": challenge, "code": code})
    if verified.status_code != 200:
        return verified.status_code, verified.json()["error"]["code"]
    return 200, ""


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_the_database_cache_lets_concurrent_sends_past_a_limit(settings, capsys):
    """Why E040 is an error: on Django's database cache, ``incr`` is a read and
    a write, so 20 concurrent requests under a 5-per-10-minutes limit pass
    more than 5 times. (Redis runs the same count as one INCR.)"""
    from django.core.management import call_command
    from django.db import connection

    settings.CACHES = {
        **settings.CACHES,
        "limits": {
            "BACKEND": "django.core.cache.backends.db.DatabaseCache",
            "LOCATION": "sms2fa_race_cache",
        },
    }
    settings.SMS2FA = {**settings.SMS2FA, "CACHE": "limits"}
    call_command("createcachetable", "sms2fa_race_cache", verbosity=0)
    rate = ratelimit.Rate(5, 600)
    passed_per_round = []
    for round_ in range(5):
        passed: list[int] = []
        barrier = threading.Barrier(20)

        def send(
            n: int,
            subject: str = f"race-{round_}",
            barrier: threading.Barrier = barrier,
            passed: list[int] = passed,
        ) -> None:
            try:
                barrier.wait()
                ratelimit.take("phone", subject, [rate])
                passed.append(n)
            except RateLimited:
                pass
            finally:
                connection.close()

        threads = [threading.Thread(target=send, args=(n,)) for n in range(20)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        passed_per_round.append(len(passed))
        if len(passed) > rate.count:
            break
    with capsys.disabled():
        print(
            f"\n[seams] DatabaseCache, 20 concurrent sends under 5 per 10 minutes: "
            f"{passed_per_round} passed (per round)"
        )
    assert max(passed_per_round) > rate.count
