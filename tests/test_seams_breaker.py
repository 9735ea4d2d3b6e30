"""The SMS-pumping breaker, aimed at pumping and not at a country.

It used to trip per region: 50 SMS to made-up numbers shut a whole country
out for an hour, real users' login codes included — the breaker was a weapon
anyone could aim. Now it is counted per number prefix, over sends to numbers
that have never verified a code, and it never refuses a login code to a
confirmed device. Attacked here through the API, with the default settings:

* the pump still trips its prefix (and stops it);
* a confirmed user in that very prefix, and one elsewhere in the country,
  still get their login code and log in;
* a fresh number in another prefix is unaffected;
* real users' unverified login codes never trip a prefix, and their
  verified ones never hold it open for a pump.
"""

from __future__ import annotations

from typing import Any

import pytest

from django_sms2fa import signals
from django_sms2fa.conf import DEFAULT_PUMPING
from django_sms2fa.models import PhoneDevice

from .test_send_limits import NO_LIMITS, START, api_client, api_post, frozen, request_code, verify

pytestmark = pytest.mark.django_db

PUMPED = "+467021"  # the rented range
MIN_SENDS = int(DEFAULT_PUMPING["MIN_SENDS"])


@pytest.fixture
def defaults(sms2fa_settings):
    """The default breaker, and no send limits in its way (they have their own
    tests; and their counters would crowd the test's local-memory cache, which
    keeps 300 keys)."""
    sms2fa_settings(PUMPING=dict(DEFAULT_PUMPING), LIMITS=NO_LIMITS)


@pytest.fixture
def alarms() -> Any:
    heard: list[tuple[str, str]] = []

    def receiver(sender: Any, **kwargs: Any) -> None:
        heard.append((kwargs["scope"], kwargs["value"]))

    signals.pumping_suspected.connect(receiver, dispatch_uid="test_seams_breaker")
    yield heard
    signals.pumping_suspected.disconnect(dispatch_uid="test_seams_breaker")


def in_range(prefix: str, count: int, start: int = 0) -> list[str]:
    return [f"{prefix}{index:05d}" for index in range(start, start + count)]


def make_user(django_user_model, name: str, phone: str) -> Any:
    user = django_user_model.objects.create_user(username=name, password=f"{name}-pw")
    PhoneDevice.objects.create(user=user, number=phone, name="phone", confirmed=True)
    return user


def password_then_code(name: str, outbox: list[Any], ip: str) -> tuple[int, int]:
    """The owner's login through the API: (status of login/, of login/verify/)."""
    client = api_client(ip)
    answer = api_post(client, "login/", {"username": name, "password": f"{name}-pw"})
    if answer.status_code != 200 or not answer.json().get("mfa_required"):
        return answer.status_code, 0
    challenge = answer.json()["challenge"]["id"]
    verified = api_post(client, "login/verify/", {"challenge": challenge, "code": outbox[-1].code})
    return answer.status_code, verified.status_code


def test_a_pump_trips_its_prefix_and_nothing_else(defaults, django_user_model, outbox, alarms):
    in_pumped = make_user(django_user_model, "inside", f"{PUMPED}99999")
    elsewhere = make_user(django_user_model, "elsewhere", "+46739876543")
    assert in_pumped and elsewhere
    pump = in_range(PUMPED, 200)
    with frozen(START) as clock:
        answers = [
            request_code("api", number, ip=f"192.0.2.{i % 200}") for i, number in enumerate(pump)
        ]
        sent = sum(answer.ok for answer in answers)
        clock.advance(60)
        # The pumped range is stopped ...
        assert request_code("api", f"{PUMPED}88888").code == "destination_suspended"
        # ... its confirmed user still logs in with a code, as does one elsewhere ...
        inside = password_then_code("inside", outbox, "198.51.100.1")
        outside = password_then_code("elsewhere", outbox, "198.51.100.2")
        # ... and a fresh number in another prefix of the same country gets its code.
        fresh = request_code("api", "+46702555555", ip="198.51.100.3")
    print(
        f"\nbreaker under a pump of {len(pump)} requests to {PUMPED}xxxxx: {sent} sent, "
        f"tripped {alarms}; confirmed user in the range: login {inside}, elsewhere: "
        f"login {outside}; fresh number in another prefix: {'sent' if fresh.ok else fresh.code}"
    )
    assert inside == (200, 200)
    assert outside == (200, 200)
    assert fresh.ok
    assert sent == MIN_SENDS
    assert alarms == [("prefix", PUMPED)]


def test_unverified_login_codes_of_real_users_never_trip_a_prefix(
    defaults, django_user_model, outbox, alarms
):
    """Users in one prefix who ask for a login code and walk away: no trip."""
    users = [f"user{index}" for index in range(MIN_SENDS * 2)]
    for name, phone in zip(users, in_range(PUMPED, len(users)), strict=True):
        make_user(django_user_model, name, phone)
    with frozen(START):
        statuses = [
            api_post(
                api_client(f"192.0.2.{i % 200}"), "login/", {"username": n, "password": f"{n}-pw"}
            ).status_code
            for i, n in enumerate(users)
        ]
        fresh = request_code("api", f"{PUMPED}77777")
    assert statuses == [200] * len(users)
    assert alarms == []
    assert fresh.ok


def test_numbers_that_verified_before_do_not_count(defaults, outbox, alarms):
    """A number that once verified is proved: its later unanswered codes are not pumping."""
    numbers = in_range(PUMPED, MIN_SENDS * 2)
    with frozen(START) as clock:
        for number in numbers:
            first = request_code("flow", number)
            assert verify("flow", first, outbox[-1].code).ok
        clock.advance(2 * 3600)  # another window
        later = [request_code("flow", number) for number in numbers]
    assert all(answer.ok for answer in later)
    assert alarms == []


def test_real_users_verified_logins_do_not_hold_the_breaker_open_for_a_pump(
    defaults, django_user_model, outbox, alarms
):
    """Busy real users (every login verified) share the prefix with a pump: only
    never-verified numbers make the ratio, so the pump still trips."""
    users = [f"user{index}" for index in range(MIN_SENDS * 2)]
    for name, phone in zip(users, in_range(PUMPED, len(users), start=50000), strict=True):
        make_user(django_user_model, name, phone)
    pump = in_range(PUMPED, MIN_SENDS * 2)
    with frozen(START):
        logins = [
            password_then_code(n, outbox, f"198.51.100.{i % 200}") for i, n in enumerate(users)
        ]
        pumped = [request_code("flow", number).ok for number in pump]
    assert logins == [(200, 200)] * len(users)
    assert sum(pumped) == MIN_SENDS
    assert alarms == [("prefix", PUMPED)]
