"""Send limits (docs/security.md items 17, 18, 9 and 22), through the flows and the REST API.

Per phone one send per 30 s, 5 per 10 minutes and 10 per day; per client IP
20 per hour; per user 10 per day; per country and for the whole site. Every
limit keys on the E.164 number, so a reformatted number shares its limit. A
refused request calls no provider, writes no challenge, records a
:class:`~django_sms2fa.models.Refusal` and gives back what it took from the
limits checked before the one that refused it.

Time is moved with ``time_machine`` (``ratelimit`` reads ``time.time()``, which
it moves too). Redis expires keys by its own clock, which no test can move, so
:class:`Clock` also shortens every Redis TTL by the time it moves — what Redis
would have done had the time really passed. The helpers here (``frozen``,
``request_code``, ``resend``, ``verify``, ...) are shared with
``test_lockout.py``, ``test_destinations.py`` and ``test_client_ip.py``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
import time_machine

from django.core.cache import caches
from django.core.cache.backends.redis import RedisCache
from django.test import Client

from django_sms2fa import flows, login_flows
from django_sms2fa.conf import DEFAULT_LIMITS, app_settings
from django_sms2fa.exceptions import RateLimited, Sms2faError
from django_sms2fa.models import Challenge, Message, PhoneDevice, Purpose, Refusal
from django_sms2fa.phones import normalize_phone
from django_sms2fa.types import ClientInfo

pytestmark = pytest.mark.django_db

API = "/api/2fa/"
# On the hour (and 9 h into the UTC day), so every fixed window starts here.
START = datetime(2030, 5, 17, 9, 0, tzinfo=UTC)
TO_END_OF_DAY = 15 * 3600
PHONE = "+46701234567"
IP = "203.0.113.10"
OTHER_IP = "198.51.100.20"
NO_LIMITS: dict[str, list[str]] = {s: [] for s in ("phone", "ip", "user", "country", "global")}
#: The HTTP status of each refusal (api/errors.py).
STATUS = {
    "rate_limited": 429,
    "verification_locked": 429,
    "destination_suspended": 429,
    "too_many_attempts": 429,
    "number_not_allowed": 400,
    "incorrect_code": 400,
}


# ------------------------------------------------------------------ the clock


class Clock:
    """Moves ``time_machine`` and the cache's expiry clock together."""

    def __init__(self, traveller: Any) -> None:
        self.traveller = traveller

    def advance(self, seconds: float) -> None:
        self.traveller.shift(seconds)
        _age_redis(seconds)

    @staticmethod
    def now() -> float:
        return time.time()


def _age_redis(seconds: float) -> None:
    """Make Redis see ``seconds`` pass: shorten every TTL, drop what would expire.

    LocMemCache expires keys by ``time.time()``, which ``time_machine`` moves,
    so it needs nothing.
    """
    cache = caches[app_settings.CACHE]
    if not isinstance(cache, RedisCache):
        return
    redis = cache._cache.get_client(write=True)
    shift = int(seconds * 1000)
    for key in redis.scan_iter():
        ttl = redis.pttl(key)
        if ttl < 0:  # -1: no expiry, -2: already gone
            continue
        if ttl <= shift:
            redis.delete(key)
        else:
            redis.pexpire(key, ttl - shift)


@contextmanager
def frozen(start: datetime = START) -> Iterator[Clock]:
    with time_machine.travel(start, tick=False) as traveller:
        yield Clock(traveller)


# --------------------------------------------------------- one way to ask


@dataclass
class Answer:
    ok: bool
    code: str = ""  # the error code when refused
    retry_after: int | None = None
    limit: str | None = None  # flows only (the API does not say which)
    challenge_id: str = ""
    client: Any = None  # the API client, whose session owns the challenge


def api_client(ip: str = IP, user: Any = None) -> Client:
    client = Client(REMOTE_ADDR=ip)
    if user is not None:
        client.force_login(user)
    return client


def api_post(client: Client, path: str, data: Any = None, **extra: Any) -> Any:
    return client.post(
        API + path, {} if data is None else data, content_type="application/json", **extra
    )


def answer_of(response: Any, client: Any = None) -> Answer:
    """An API answer, checked for the one error shape and ``Retry-After``."""
    body = response.json()
    if response.status_code in (200, 202):
        return Answer(ok=True, challenge_id=body.get("id", ""), client=client)
    error = body["error"]
    assert response.status_code == STATUS.get(error["code"], 400), body
    if response.status_code == 429:
        assert isinstance(error["retry_after"], int)
        assert response["Retry-After"] == str(error["retry_after"])
    else:
        assert "retry_after" not in error and not response.has_header("Retry-After")
    return Answer(ok=False, code=error["code"], retry_after=error.get("retry_after"), client=client)


def flow_answer(call: Any) -> Answer:
    try:
        result = call()
    except Sms2faError as err:
        retry_after = err.retry_after if isinstance(err, RateLimited) else None
        return Answer(
            ok=False, code=err.code, retry_after=retry_after, limit=err.context.get("limit")
        )
    return Answer(ok=True, challenge_id=str(getattr(result, "pk", "")))


def request_code(
    via: str, phone: str, *, ip: str = IP, user: Any = None, purpose: str = Purpose.VERIFY_PHONE
) -> Answer:
    """Ask for a code to ``phone`` through the flows or the REST API.

    ``verify_phone`` (for ``user`` when given) or ``passwordless``.
    """
    if via == "api":
        client = api_client(ip, user)
        response = api_post(client, "challenges/", {"phone": phone, "purpose": str(purpose)})
        return answer_of(response, client)
    client_info = ClientInfo(ip=ip)
    if purpose == Purpose.PASSWORDLESS:
        return flow_answer(lambda: login_flows.start_passwordless(phone, client=client_info))
    return flow_answer(
        lambda: flows.request_challenge(phone=phone, purpose=purpose, user=user, client=client_info)
    )


def resend(via: str, first: Answer, *, ip: str = IP) -> Answer:
    if via == "api":
        response = api_post(
            first.client, f"challenges/{first.challenge_id}/resend/", REMOTE_ADDR=ip
        )
        return answer_of(response, first.client)
    return flow_answer(lambda: flows.resend_challenge(first.challenge_id, client=ClientInfo(ip=ip)))


def verify(via: str, first: Answer, code: str) -> Answer:
    if via == "api":
        response = api_post(
            first.client, f"challenges/{first.challenge_id}/verify/", {"code": code}
        )
        return answer_of(response, first.client)
    return flow_answer(lambda: flows.verify_challenge(first.challenge_id, code))


@pytest.fixture(params=["flow", "api"])
def via(request: Any) -> str:
    return request.param


def mobiles(count: int, base: str = "+46702", width: int = 6) -> list[str]:
    """``count`` distinct valid numbers (Swedish mobiles by default)."""
    numbers = [f"{base}{index:0{width}d}" for index in range(count)]
    assert all(normalize_phone(number) == number for number in numbers)
    return numbers


def assert_sent(outbox: list[Any], count: int, *, challenges: int | None = None) -> None:
    """Exactly ``count`` provider calls, each recorded once; ``challenges`` rows."""
    assert len(outbox) == count
    assert Message.objects.count() == count
    assert Challenge.objects.count() == (count if challenges is None else challenges)


def assert_refused(answer: Answer, code: str, limit: str, retry_after: int | None = None) -> None:
    assert not answer.ok, answer
    assert answer.code == code, answer
    if answer.limit is not None:  # the flows say which limit; the API does not
        assert answer.limit == limit, answer
    assert Refusal.objects.order_by("-pk").first().limit == limit
    if retry_after is not None:
        assert answer.retry_after == retry_after, answer


# ------------------------------------------------------------------ per phone


def test_second_send_within_30_seconds_is_refused(via, send_limits, outbox):
    with frozen() as clock:
        assert request_code(via, PHONE).ok
        again = request_code(via, PHONE)
        assert_refused(again, "rate_limited", "phone", retry_after=30)
        clock.advance(10)
        assert_refused(request_code(via, PHONE), "rate_limited", "phone", retry_after=20)
        clock.advance(19)
        assert_refused(request_code(via, PHONE), "rate_limited", "phone", retry_after=1)
        assert_sent(outbox, 1)
        clock.advance(1)  # exactly 30 s after the first send
        assert request_code(via, PHONE).ok
    assert_sent(outbox, 2)
    assert Refusal.objects.count() == 3


def test_sixth_send_in_ten_minutes_is_refused(via, send_limits, outbox):
    with frozen() as clock:
        for _ in range(5):
            assert request_code(via, PHONE).ok
            clock.advance(31)  # past the 30 s cooldown
        sixth = request_code(via, PHONE)
        # Sent at 0, 31, ..., 124 s; asked at 155 s; the window ends at 600 s.
        assert_refused(sixth, "rate_limited", "phone", retry_after=600 - 5 * 31)
        assert_sent(outbox, 5)
        clock.advance(sixth.retry_after - 1)
        assert_refused(request_code(via, PHONE), "rate_limited", "phone", retry_after=1)
        clock.advance(1)
        assert request_code(via, PHONE).ok
    assert_sent(outbox, 6)


def test_eleventh_send_in_a_day_is_refused(via, send_limits, outbox):
    with frozen() as clock:
        for _window in range(2):
            for _ in range(5):
                assert request_code(via, PHONE).ok
                clock.advance(31)
            clock.advance(600 - 5 * 31)  # the next 10-minute window
        assert Clock.now() == START.timestamp() + 1200
        eleventh = request_code(via, PHONE)
        assert_refused(eleventh, "rate_limited", "phone", retry_after=TO_END_OF_DAY - 1200)
        assert_sent(outbox, 10)
        clock.advance(eleventh.retry_after - 1)  # one second before midnight (UTC)
        assert_refused(request_code(via, PHONE), "rate_limited", "phone", retry_after=1)
        clock.advance(1)
        assert request_code(via, PHONE).ok
    assert_sent(outbox, 11)


VARIANTS = [
    "+46 70 123 45 67",
    "070-123 45 67",  # national, with DEFAULT_REGION "SE"
    "0046701234567",  # Sweden's international prefix
    "\uff0b\uff14\uff16\uff17\uff10\uff11\uff12\uff13\uff14\uff15\uff16\uff17",  # full width
    "\uff10\uff17\uff10\uff11\uff12\uff13\uff14\uff15\uff16\uff17",  # full width, national
]


def test_formatting_variants_share_one_limit(via, send_limits, sms2fa_settings, outbox):
    sms2fa_settings(DEFAULT_REGION="SE")
    assert {normalize_phone(variant, "SE") for variant in VARIANTS} == {PHONE}
    with frozen() as clock:
        assert request_code(via, VARIANTS[0]).ok
        for variant in VARIANTS[1:]:
            assert_refused(request_code(via, variant), "rate_limited", "phone", retry_after=30)
        for variant in VARIANTS[1:]:  # sends 2-5, each in another spelling
            clock.advance(31)
            assert request_code(via, variant).ok
        clock.advance(31)
        for variant in VARIANTS:
            assert_refused(request_code(via, variant), "rate_limited", "phone")
    assert_sent(outbox, 5)
    assert {sms.to for sms in outbox} == {PHONE}
    assert set(Refusal.objects.values_list("phone", flat=True)) == {PHONE}


# ------------------------------------------------------------------ per IP and user


def test_thirty_numbers_from_one_ip_get_twenty_sends(via, send_limits, outbox):
    with frozen() as clock:
        clock.advance(90)
        answers = [request_code(via, number, ip=IP) for number in mobiles(30)]
    assert [answer.ok for answer in answers] == [True] * 20 + [False] * 10
    for answer in answers[20:]:
        assert_refused(answer, "rate_limited", "ip", retry_after=3600 - 90)
    assert_sent(outbox, 20)
    assert list(Refusal.objects.values_list("limit", "client_ip").distinct()) == [("ip", IP)]
    assert Refusal.objects.count() == 10


def test_the_ip_window_reopens_when_retry_after_says(via, send_limits, sms2fa_settings, outbox):
    sms2fa_settings(LIMITS={**DEFAULT_LIMITS, "ip": ["3/h"]})
    numbers = mobiles(6)
    with frozen() as clock:
        assert all(request_code(via, number).ok for number in numbers[:3])
        clock.advance(1000)
        refused = request_code(via, numbers[3])
        assert_refused(refused, "rate_limited", "ip", retry_after=2600)
        clock.advance(2599)
        assert_refused(request_code(via, numbers[3]), "rate_limited", "ip", retry_after=1)
        clock.advance(1)
        assert request_code(via, numbers[3]).ok
        assert request_code(via, numbers[4], ip=OTHER_IP).ok  # another IP: its own count
    assert_sent(outbox, 5)


def test_one_user_gets_ten_sends_a_day_across_numbers(via, send_limits, user, outbox):
    numbers = mobiles(12)
    with frozen():
        # Each from its own IP, so only the user limit is shared.
        answers = [
            request_code(via, number, ip=f"192.0.2.{index + 1}", user=user)
            for index, number in enumerate(numbers)
        ]
        anonymous = request_code(via, numbers[11], ip="192.0.2.99")
    assert [answer.ok for answer in answers] == [True] * 10 + [False] * 2
    for answer in answers[10:]:
        assert_refused(answer, "rate_limited", "user", retry_after=TO_END_OF_DAY)
    assert anonymous.ok  # the same number without the user: not the user's limit
    assert_sent(outbox, 11)
    assert set(Challenge.objects.values_list("user", flat=True)) == {user.pk, None}
    refusal = Refusal.objects.get(phone=numbers[10])
    assert (refusal.reason, refusal.limit, refusal.user_id, refusal.client_ip) == (
        "rate_limited",
        "user",
        user.pk,
        "192.0.2.11",
    )


def test_login_codes_count_against_the_user_limit(send_limits, sms2fa_settings, user, outbox):
    """Every purpose shares the user's count: 3 verify_phone sends, then login codes."""
    sms2fa_settings(LIMITS={**DEFAULT_LIMITS, "user": ["4/d"]})
    numbers = mobiles(3)
    PhoneDevice.objects.create(user=user, number=PHONE, name="phone", confirmed=True)
    with frozen() as clock:
        for index, number in enumerate(numbers):
            assert request_code("flow", number, ip=f"192.0.2.{index}", user=user).ok
        credentials = {"username": "alice", "password": "correct horse"}
        assert api_post(api_client("192.0.2.50"), "login/", credentials).status_code == 200
        clock.advance(31)  # past PHONE's cooldown: only the user limit is full
        refused = answer_of(api_post(api_client("192.0.2.51"), "login/", credentials))
    assert_refused(refused, "rate_limited", "user", retry_after=TO_END_OF_DAY - 31)
    assert_sent(outbox, 4)


# ------------------------------------------------------------- country and global


def test_country_and_global_caps(via, sms2fa_settings, outbox):
    sms2fa_settings(LIMITS={**NO_LIMITS, "country": ["3/h"], "global": ["5/h"]})
    sweden, norway, germany = mobiles(5), mobiles(5, "+4740"), "+4915123456789"
    with frozen():
        assert all(request_code(via, number).ok for number in sweden[:3])
        assert_refused(request_code(via, sweden[3]), "rate_limited", "country", retry_after=3600)
        assert all(request_code(via, number).ok for number in norway[:2])
        assert_refused(request_code(via, norway[2]), "rate_limited", "global", retry_after=3600)
        assert_refused(request_code(via, germany), "rate_limited", "global", retry_after=3600)
        assert_sent(outbox, 5)
        # The refusals by the global cap gave back Norway's country count: with
        # the global cap lifted, Norway gets exactly its third send.
        sms2fa_settings(LIMITS={**NO_LIMITS, "country": ["3/h"]})
        assert request_code(via, norway[3]).ok
        assert_refused(request_code(via, norway[4]), "rate_limited", "country")
        assert request_code(via, germany).ok
    assert_sent(outbox, 7)


@pytest.mark.parametrize("scope", ["phone", "ip", "user", "country", "global"])
@pytest.mark.parametrize("rate", ["1/h", "2/h"], ids=["cooldown", "window"])
def test_each_limit_refuses_before_any_provider_or_row(
    via, scope, rate, sms2fa_settings, user, outbox
):
    """Only ``scope`` is limited; the request over it calls no provider and writes no challenge."""
    sms2fa_settings(LIMITS={**NO_LIMITS, scope: [rate]})
    allowed = int(rate[0])
    with frozen():
        answers = [request_code(via, PHONE, user=user) for _ in range(allowed + 2)]
        assert [answer.ok for answer in answers] == [True] * allowed + [False] * 2
        assert_sent(outbox, allowed)
    for answer in answers[allowed:]:
        assert_refused(answer, "rate_limited", scope, retry_after=3600)
    assert (
        list(Refusal.objects.values_list("reason", "limit", "phone", "user", "client_ip"))
        == [("rate_limited", scope, PHONE, user.pk, IP)] * 2
    )
    assert all(refusal.retry_after == 3600 for refusal in Refusal.objects.all())
    assert all(refusal.created_at == START for refusal in Refusal.objects.all())


# -------------------------------------------------------------------- give back


def test_a_refusal_by_the_ip_limit_gives_back_the_phone_limit(via, sms2fa_settings, outbox):
    """Five requests for PHONE refused by IP's limit took nothing from PHONE's limits:
    from another IP it gets its full 2 sends (cooldown and window)."""
    sms2fa_settings(LIMITS={**NO_LIMITS, "phone": ["1/30s", "2/10m"], "ip": ["3/h"]})
    with frozen() as clock:
        assert all(request_code(via, number, ip=IP).ok for number in mobiles(3))
        for _ in range(5):
            assert_refused(request_code(via, PHONE, ip=IP), "rate_limited", "ip")
        assert request_code(via, PHONE, ip=OTHER_IP).ok
        clock.advance(31)
        assert request_code(via, PHONE, ip=OTHER_IP).ok
        clock.advance(31)
        assert_refused(request_code(via, PHONE, ip=OTHER_IP), "rate_limited", "phone")
    assert_sent(outbox, 5)
    assert [sms.to for sms in outbox[3:]] == [PHONE, PHONE]


def test_a_refusal_by_the_global_cap_gives_back_every_earlier_limit(
    via, sms2fa_settings, user, outbox
):
    sms2fa_settings(
        LIMITS={**NO_LIMITS, "ip": ["4/h"], "user": ["4/h"], "country": ["4/h"], "global": ["2/h"]}
    )
    numbers = mobiles(8)
    with frozen():
        assert all(request_code(via, number, user=user).ok for number in numbers[:2])
        for number in numbers[2:5]:
            assert_refused(request_code(via, number, user=user), "rate_limited", "global")
        sms2fa_settings(LIMITS={**NO_LIMITS, "ip": ["4/h"], "user": ["4/h"], "country": ["4/h"]})
        # ip, user and country each counted 2, not 5: two more pass, the next is refused.
        assert all(request_code(via, number, user=user).ok for number in numbers[5:7])
        refused = request_code(via, numbers[7], user=user)
    assert_refused(refused, "rate_limited", "ip")  # the first limit checked that is full
    assert_sent(outbox, 4)


# -------------------------------------------------------------- what counts


def test_decoys_for_unknown_numbers_count(via, send_limits, sms2fa_settings, outbox):
    """A passwordless request for a number without an account sends nothing but
    counts like a real send, so limits cannot tell the two apart."""
    sms2fa_settings(LIMITS={**DEFAULT_LIMITS, "ip": ["3/h"]})
    unknown = mobiles(4, "+46703")
    with frozen():
        assert request_code(via, unknown[0], purpose=Purpose.PASSWORDLESS).ok
        again = request_code(via, unknown[0], purpose=Purpose.PASSWORDLESS)
        assert_refused(again, "rate_limited", "phone", retry_after=30)
        assert request_code(via, unknown[1], purpose=Purpose.PASSWORDLESS).ok
        assert request_code(via, unknown[2], purpose=Purpose.PASSWORDLESS).ok
        fourth = request_code(via, unknown[3], purpose=Purpose.PASSWORDLESS)
        assert_refused(fourth, "rate_limited", "ip", retry_after=3600)
        # The decoys used up the IP's sends for real numbers too.
        assert_refused(request_code(via, PHONE), "rate_limited", "ip")
    assert_sent(outbox, 0, challenges=3)
    assert not Challenge.objects.filter(sends__gt=0).exists()


def test_resend_counts_against_the_phone_limit(via, send_limits, outbox):
    with frozen() as clock:
        first = request_code(via, PHONE)
        assert first.ok
        assert_refused(resend(via, first), "rate_limited", "phone", retry_after=30)
        for _ in range(4):
            clock.advance(31)
            assert resend(via, first).ok
        clock.advance(31)
        sixth = resend(via, first)
        assert_refused(sixth, "rate_limited", "phone", retry_after=600 - 5 * 31)
        # A new challenge for the same phone shares the count.
        assert_refused(request_code(via, PHONE, ip=OTHER_IP), "rate_limited", "phone")
    assert_sent(outbox, 5, challenges=1)
    assert Challenge.objects.get().sends == 5


def test_resend_counts_against_the_ip_limit(via, send_limits, sms2fa_settings, outbox):
    sms2fa_settings(LIMITS={**DEFAULT_LIMITS, "ip": ["2/h"]})
    with frozen() as clock:
        first = request_code(via, PHONE)
        clock.advance(31)
        assert resend(via, first).ok
        clock.advance(31)
        assert_refused(resend(via, first), "rate_limited", "ip")
        assert resend(via, first, ip=OTHER_IP).ok
    assert_sent(outbox, 3, challenges=1)


# ---------------------------------------------------------- the audit record


def test_refusals_are_recorded_for_the_audit(send_limits, user, outbox):
    with frozen() as clock:
        assert request_code("flow", PHONE, user=user).ok
        clock.advance(5)
        refused = request_code("flow", PHONE, ip=OTHER_IP, user=user)
    assert_refused(refused, "rate_limited", "phone", retry_after=25)
    refusal = Refusal.objects.get()
    assert (
        refusal.reason,
        refusal.limit,
        refusal.phone,
        refusal.user_id,
        refusal.client_ip,
        refusal.retry_after,
        refusal.created_at,
    ) == ("rate_limited", "phone", PHONE, user.pk, OTHER_IP, 25, START.replace(second=5))


# ------------------------------------------- a success resets no send limit


def test_the_ip_limit_survives_a_successful_verification(via, send_limits, sms2fa_settings, outbox):
    """security.md item 9: a success resets only the failure count."""
    sms2fa_settings(LIMITS={**DEFAULT_LIMITS, "ip": ["3/h"]})
    numbers = mobiles(4)
    with frozen():
        answers = [request_code(via, number) for number in numbers[:3]]
        assert verify(via, answers[0], outbox[0].code).ok
        assert Challenge.objects.get(pk=answers[0].challenge_id).status == "verified"
        assert_refused(request_code(via, numbers[3]), "rate_limited", "ip", retry_after=3600)
        # ... and the phone limit of the verified number holds too.
        assert_refused(request_code(via, numbers[0], ip=OTHER_IP), "rate_limited", "phone")
    assert_sent(outbox, 3)
