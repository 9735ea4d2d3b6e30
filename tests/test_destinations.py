"""Where SMS may go (docs/security.md items 19 and 20), test numbers, and the
SMS-pumping breaker — through the flows and the REST API.

* ``ALLOWED_REGIONS``: a number outside is refused with ``NumberNotAllowed``
  (400 ``number_not_allowed``), no provider call, a ``Refusal`` recorded.
* ``ALLOWED_NUMBER_TYPES``: mobile and fixed-line-or-mobile by default;
  premium-rate, shared-cost, toll-free (and fixed-line-only, VoIP, UAN ...)
  refused. Example numbers come from ``phonenumbers.example_number_for_type``
  and are checked to be valid and of that type before use.
* ``TEST_NUMBERS``: a fixed code, never an SMS.
* The breaker: too few verified codes for a number prefix over a window
  with enough sends to never-verified numbers stops sending to that prefix
  for ``SUSPEND_FOR`` seconds, fires ``pumping_suspected`` and logs a warning.
  The rest of the country is not affected, and a login code to a confirmed
  device is never refused (tests/test_seams_breaker.py attacks both).
"""

from __future__ import annotations

import logging
import random
from typing import Any

import phonenumbers
import pytest
from phonenumbers import PhoneNumberType

from django_sms2fa import flows, login_flows, ratelimit, signals
from django_sms2fa.conf import DEFAULT_LIMITS, DEFAULT_PUMPING
from django_sms2fa.exceptions import DestinationSuspended
from django_sms2fa.models import Challenge, Message, PhoneDevice, Purpose, Refusal
from django_sms2fa.phones import normalize_phone, number_type_of
from django_sms2fa.types import ClientInfo

from .test_send_limits import (
    IP,
    PHONE,
    START,
    api_client,
    api_post,
    assert_sent,
    frozen,
    mobiles,
    request_code,
    resend,
    verify,
)

pytestmark = pytest.mark.django_db

NORWAY = "+4740612345"
TEST_NUMBER = "+46701234599"
FIXED_CODE = "123456"
PUMPING = {"MIN_SENDS": 20, "MIN_VERIFIED_RATIO": 0.5, "WINDOW": 3600, "SUSPEND_FOR": 600}


@pytest.fixture(params=["flow", "api"])
def via(request: Any) -> str:
    return request.param


def example(region: str, kind: str) -> str:
    """phonenumbers' example number of ``kind`` for ``region``, checked first."""
    number = phonenumbers.example_number_for_type(region, getattr(PhoneNumberType, kind))
    assert number is not None, (region, kind)
    assert phonenumbers.is_valid_number(number)
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    assert normalize_phone(e164) == e164
    assert number_type_of(e164) == kind
    return e164


def assert_not_allowed(answer: Any, phone: str, limit: str) -> None:
    assert not answer.ok and answer.code == "number_not_allowed", answer
    assert answer.retry_after is None
    refusal = Refusal.objects.order_by("-pk").first()
    assert (refusal.reason, refusal.limit, refusal.phone, refusal.client_ip) == (
        "number_not_allowed",
        limit,
        phone,
        IP,
    )


# --------------------------------------------------------------- regions


def test_a_number_outside_the_allowed_regions_is_refused(via, sms2fa_settings, outbox):
    sms2fa_settings(ALLOWED_REGIONS=["NO"])
    assert_not_allowed(request_code(via, PHONE), PHONE, "region")
    assert_sent(outbox, 0)
    assert request_code(via, NORWAY).ok
    assert_sent(outbox, 1)
    assert outbox[0].to == NORWAY


def test_an_empty_region_list_allows_no_sms(via, sms2fa_settings, outbox):
    sms2fa_settings(ALLOWED_REGIONS=[])
    for phone in (PHONE, NORWAY, "+14155552671"):
        assert_not_allowed(request_code(via, phone), phone, "region")
    assert_sent(outbox, 0)
    assert Refusal.objects.count() == 3


def test_passwordless_outside_the_regions_answers_alike_for_known_and_unknown(
    via, user, sms2fa_settings, outbox
):
    PhoneDevice.objects.create(user=user, number=PHONE, name="phone", confirmed=True)
    sms2fa_settings(ALLOWED_REGIONS=["NO"])
    known = request_code(via, PHONE, purpose=Purpose.PASSWORDLESS)
    unknown = request_code(via, "+46709876543", purpose=Purpose.PASSWORDLESS)
    assert (known.ok, known.code) == (unknown.ok, unknown.code) == (False, "number_not_allowed")
    assert_sent(outbox, 0)


def test_a_resend_to_a_region_no_longer_allowed_is_refused(via, sms2fa_settings, outbox):
    first = request_code(via, PHONE)
    sms2fa_settings(ALLOWED_REGIONS=["NO"])
    assert_not_allowed(resend(via, first), PHONE, "region")
    assert_sent(outbox, 1)


# ---------------------------------------------------------------- number types

REFUSED = [
    ("SE", "PREMIUM_RATE"),
    ("SE", "SHARED_COST"),
    ("SE", "TOLL_FREE"),
    ("GB", "PREMIUM_RATE"),
    ("GB", "TOLL_FREE"),
    ("US", "PREMIUM_RATE"),
    ("US", "TOLL_FREE"),
    ("DE", "SHARED_COST"),
    ("FR", "PREMIUM_RATE"),
    ("FR", "SHARED_COST"),
    ("FR", "TOLL_FREE"),
    ("AU", "PREMIUM_RATE"),
]


@pytest.mark.parametrize("region,kind", REFUSED)
def test_costly_number_types_are_refused_by_default(via, region, kind, outbox):
    phone = example(region, kind)
    assert_not_allowed(request_code(via, phone), phone, "number_type")
    assert_sent(outbox, 0)


@pytest.mark.parametrize("region,kind", [("SE", "PREMIUM_RATE"), ("GB", "TOLL_FREE")])
def test_costly_types_stay_refused_when_fixed_lines_are_allowed(
    region, kind, sms2fa_settings, outbox
):
    sms2fa_settings(ALLOWED_NUMBER_TYPES=["MOBILE", "FIXED_LINE_OR_MOBILE", "FIXED_LINE"])
    phone = example(region, kind)
    assert_not_allowed(request_code("flow", phone), phone, "number_type")
    assert_sent(outbox, 0)


def test_a_fixed_line_is_refused_by_default_and_allowed_when_listed(via, sms2fa_settings, outbox):
    landline = "+4681234567"  # Stockholm
    assert number_type_of(landline) == "FIXED_LINE"
    assert phonenumbers.is_valid_number(phonenumbers.parse(landline))
    assert_not_allowed(request_code(via, landline), landline, "number_type")
    assert_sent(outbox, 0)
    sms2fa_settings(ALLOWED_NUMBER_TYPES=["MOBILE", "FIXED_LINE_OR_MOBILE", "FIXED_LINE"])
    assert request_code(via, landline).ok
    assert_sent(outbox, 1)
    assert outbox[0].to == landline


def test_fixed_line_or_mobile_numbers_are_allowed_by_default(via, outbox):
    phone = example("US", "FIXED_LINE_OR_MOBILE")
    assert request_code(via, phone).ok
    assert_sent(outbox, 1)


def test_exactly_mobile_and_fixed_line_or_mobile_pass_by_default(outbox):
    """Every example number phonenumbers has for nine regions: sent iff its
    type is MOBILE or FIXED_LINE_OR_MOBILE."""
    kinds = [name for name in vars(PhoneNumberType) if name.isupper()]
    tried, sent = [], []
    for region in ("SE", "GB", "US", "DE", "FR", "NO", "IT", "ES", "AU"):
        for kind in kinds:
            number = phonenumbers.example_number_for_type(region, getattr(PhoneNumberType, kind))
            if number is None or not phonenumbers.is_valid_number(number):
                continue
            e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
            if e164 in tried:  # US: one example for several types
                continue
            tried.append(e164)
            before = len(outbox)
            if request_code("flow", e164).ok:
                assert len(outbox) == before + 1
                sent.append(number_type_of(e164))
            else:
                assert len(outbox) == before
                assert number_type_of(e164) not in ("MOBILE", "FIXED_LINE_OR_MOBILE")
    assert set(sent) == {"MOBILE", "FIXED_LINE_OR_MOBILE"}
    assert len(sent) == 9  # one per region
    assert len(tried) > 40


# ----------------------------------------------------------------- test numbers


def test_a_test_number_never_sends_and_takes_its_fixed_code(via, sms2fa_settings, outbox):
    sms2fa_settings(TEST_NUMBERS={TEST_NUMBER: FIXED_CODE})
    first = request_code(via, TEST_NUMBER)
    assert first.ok
    wrong = verify(via, first, "654321")
    assert (wrong.ok, wrong.code) == (False, "incorrect_code")
    assert resend(via, first).ok
    assert verify(via, first, FIXED_CODE).ok
    assert outbox == [] and not Message.objects.exists()
    challenge = Challenge.objects.get()
    assert (challenge.status, challenge.attempts) == ("verified", 2)


def test_a_test_number_challenge_records_no_send(sms2fa_settings, outbox):
    sms2fa_settings(TEST_NUMBERS={TEST_NUMBER: FIXED_CODE})
    first = request_code("flow", TEST_NUMBER)
    assert outbox == []
    assert Challenge.objects.get(pk=first.challenge_id).sends == 0


def test_a_test_number_is_found_in_any_spelling(via, sms2fa_settings, outbox):
    sms2fa_settings(TEST_NUMBERS={TEST_NUMBER: FIXED_CODE}, DEFAULT_REGION="SE")
    first = request_code(via, "070-123 45 99")
    assert verify(via, first, FIXED_CODE).ok
    assert outbox == []


def test_a_test_number_for_a_user_logs_in_without_an_sms(user, sms2fa_settings, outbox):
    sms2fa_settings(TEST_NUMBERS={TEST_NUMBER: FIXED_CODE})
    PhoneDevice.objects.create(user=user, number=TEST_NUMBER, name="review", confirmed=True)
    client = api_client()
    created = api_post(client, "challenges/", {"phone": TEST_NUMBER, "purpose": "passwordless"})
    assert created.status_code == 202
    answer = api_post(client, f"challenges/{created.json()['id']}/verify/", {"code": FIXED_CODE})
    assert answer.status_code == 200 and answer.json()["user"]["username"] == "alice"
    assert outbox == []


def test_a_test_number_is_still_locked_after_ten_wrong_codes(sms2fa_settings, outbox):
    sms2fa_settings(TEST_NUMBERS={TEST_NUMBER: FIXED_CODE})
    for _ in range(2):
        first = request_code("flow", TEST_NUMBER)
        for _ in range(5):
            assert verify("flow", first, "000000").code == "incorrect_code"
    assert ratelimit.lock_state(f"phone:{TEST_NUMBER}").failures == 10
    locked = request_code("flow", TEST_NUMBER)
    assert locked.code == "verification_locked"


def test_a_test_number_sends_nothing_so_counts_against_no_send_limit(
    send_limits, sms2fa_settings, outbox
):
    """As flows._guard_send documents: a test number costs no SMS, so the send
    limits do not count it (the lockout still applies, see above)."""
    sms2fa_settings(TEST_NUMBERS={TEST_NUMBER: FIXED_CODE})
    with frozen():
        assert all(request_code("flow", TEST_NUMBER).ok for _ in range(3))
    assert outbox == [] and Challenge.objects.count() == 3


# --------------------------------------------------------- the pumping breaker


@pytest.fixture
def alarms() -> Any:
    heard: list[dict[str, Any]] = []

    def receiver(sender: Any, **kwargs: Any) -> None:
        heard.append({k: kwargs[k] for k in ("scope", "value", "suspended_for")})

    signals.pumping_suspected.connect(receiver, dispatch_uid="test_destinations")
    yield heard
    signals.pumping_suspected.disconnect(dispatch_uid="test_destinations")


def breaker_warnings(caplog: Any) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.levelno == logging.WARNING
        and "SMS-pumping breaker tripped" in record.getMessage()
    ]


def test_unverified_codes_trip_the_breaker(via, sms2fa_settings, outbox, alarms, caplog):
    sms2fa_settings(PUMPING=PUMPING)
    caplog.set_level(logging.INFO, logger="django_sms2fa")
    numbers = mobiles(25)  # +467020..., one prefix of 6 digits
    prefix = numbers[0][:7]
    with frozen() as clock:
        pending = None
        for index, number in enumerate(numbers[:20]):
            assert alarms == [], index  # nothing before the 20th send
            pending = request_code(via, number)
            assert pending.ok
        assert_sent(outbox, 20)
        expected = [{"scope": "prefix", "value": prefix, "suspended_for": 600}]
        assert alarms == expected
        assert breaker_warnings(caplog) == [
            f"sms2fa: SMS-pumping breaker tripped for prefix {prefix}: too few codes to "
            "never-verified numbers are verified; sending there is suspended for 600 s",
        ]

        clock.advance(10)
        # The prefix is suspended, for new codes and for resends.
        refused = request_code(via, numbers[20])
        assert (refused.code, refused.retry_after) == ("destination_suspended", 590)
        assert resend(via, pending).code == "destination_suspended"
        refusal = Refusal.objects.order_by("-pk").first()
        assert (refusal.reason, refusal.limit, refusal.retry_after) == (
            "destination_suspended",
            "pumping",
            590,
        )
        assert_sent(outbox, 20)
        # Another Swedish prefix is not, nor is Norway.
        assert request_code(via, "+46739876543").ok
        assert request_code(via, NORWAY).ok
        assert_sent(outbox, 22)
        assert alarms == expected  # once

        clock.advance(589)
        assert request_code(via, numbers[21]).retry_after == 1
        clock.advance(1)  # SUSPEND_FOR after the trip
        assert request_code(via, numbers[21]).ok
        assert_sent(outbox, 23)
    # The window still shows 21 sends and none verified: the one send let
    # through trips the breaker again (one SMS per SUSPEND_FOR, not a flood).
    assert alarms == expected + expected
    assert len(breaker_warnings(caplog)) == 2


def test_the_breaker_counts_afresh_in_the_next_window(sms2fa_settings, outbox, alarms):
    sms2fa_settings(PUMPING=PUMPING)
    numbers = mobiles(40)
    with frozen() as clock:
        assert all(request_code("flow", n).ok for n in numbers[:20])
        assert len(alarms) == 1
        clock.advance(3600)  # the next window, and past SUSPEND_FOR
        assert all(request_code("flow", n).ok for n in numbers[20:39])
        assert len(alarms) == 1  # 19 sends in the new window: no judgement yet
        assert request_code("flow", numbers[39]).ok
        assert len(alarms) == 2
    assert_sent(outbox, 40)


def test_verifying_enough_codes_keeps_the_breaker_closed(via, sms2fa_settings, outbox, alarms):
    sms2fa_settings(PUMPING=PUMPING)
    with frozen():
        for index, number in enumerate(mobiles(40)):
            answer = request_code(via, number)
            assert answer.ok, index
            if index % 4 != 3:  # three of every four codes are verified
                assert verify(via, answer, outbox[-1].code).ok
    assert alarms == []
    assert_sent(outbox, 40)
    assert not Refusal.objects.exists()


def test_the_breaker_trips_when_the_ratio_falls_below_the_threshold(
    sms2fa_settings, outbox, alarms
):
    """Every other code verified: at the 20th send 10/20 = 0.5 is not below
    0.5; at the 21st, 10/21 is."""
    sms2fa_settings(PUMPING=PUMPING)
    with frozen():
        for index, number in enumerate(mobiles(21)):
            answer = request_code("flow", number)
            assert answer.ok
            if index < 20:
                assert alarms == [], index
            if index % 2 == 0 and index < 20:
                assert verify("flow", answer, outbox[-1].code).ok
        assert [alarm["scope"] for alarm in alarms] == ["prefix"]
        assert request_code("flow", mobiles(22)[21]).code == "destination_suspended"


def test_a_prefix_trips_alone(sms2fa_settings, outbox, alarms):
    """A pumped number range is stopped while the rest of the country still gets codes."""
    sms2fa_settings(PUMPING=PUMPING)
    good, pumped = mobiles(30, "+46703"), mobiles(20, "+46702")
    with frozen():
        for number in good:
            answer = request_code("flow", number)
            assert verify("flow", answer, outbox[-1].code).ok
        assert all(request_code("flow", number).ok for number in pumped)
        assert alarms == [{"scope": "prefix", "value": "+467020", "suspended_for": 600}]
        assert request_code("flow", "+46702099999").code == "destination_suspended"
        assert request_code("flow", "+46703999999").ok
        assert request_code("flow", "+46739876543").ok
    assert_sent(outbox, 52)


def test_the_breaker_is_shared_by_every_flow(sms2fa_settings, user, outbox, alarms):
    """Once a prefix trips, every flow's sends there are refused (passwordless
    alike for a number with and without an account) — except the login code to
    a confirmed device in that very prefix, which its owner proved."""
    sms2fa_settings(PUMPING=PUMPING)
    owned = "+46702099999"  # in the pumped prefix +467020
    device = PhoneDevice.objects.create(user=user, number=owned, name="p", confirmed=True)
    with frozen():
        assert all(request_code("flow", n).ok for n in mobiles(20))
        assert [alarm["value"] for alarm in alarms] == ["+467020"]
        for phone in (owned, "+46702088888"):
            for purpose in (Purpose.PASSWORDLESS, Purpose.VERIFY_PHONE):
                refused = request_code("flow", phone, purpose=purpose)
                assert (refused.code, refused.retry_after) == ("destination_suspended", 600)
        with pytest.raises(DestinationSuspended):
            flows.request_challenge(
                phone=owned, purpose=Purpose.VERIFY_PHONE, user=user, client=ClientInfo(ip=IP)
            )
        challenge = login_flows.start_second_factor(user, client=ClientInfo(ip=IP))
        response = api_post(
            api_client(), "login/", {"username": "alice", "password": "correct horse"}
        )
    assert challenge is not None and challenge.device == device
    assert response.status_code == 200 and response.json()["mfa_required"]
    assert device.challenges.count() == 2
    assert [sms.to for sms in outbox[20:]] == [owned, owned]


def test_test_number_verifications_do_not_hold_the_breaker_closed(sms2fa_settings, outbox, alarms):
    sms2fa_settings(PUMPING=PUMPING, TEST_NUMBERS={TEST_NUMBER: FIXED_CODE})
    pumped = mobiles(40, "+46701234", 3)  # the test number's own prefix, +467012
    with frozen():
        for number in pumped:
            reviewer = request_code("flow", TEST_NUMBER)
            if reviewer.ok:  # once the prefix is suspended, test numbers are too
                assert verify("flow", reviewer, FIXED_CODE).ok
            request_code("flow", number)
    # 40 real codes sent to the prefix, none verified: it must trip at the 20th.
    assert alarms == [{"scope": "prefix", "value": "+467012", "suspended_for": 600}]
    assert len(outbox) == 20


# ----------------------------------------------------------- the simulation


#: Number ranges a pumping fraud rents (three 6-digit prefixes of Swedish mobiles).
PUMPED_RANGES = ("+467021", "+467325", "+467694")


def random_numbers(
    count: int, seed: int = 20300517, ranges: tuple[str, ...] | None = None
) -> list[str]:
    """``count`` distinct random valid Swedish mobile numbers (in ``ranges`` if given)."""
    rng = random.Random(seed)
    numbers: dict[str, None] = {}
    while len(numbers) < count:
        if ranges:
            candidate = f"{rng.choice(ranges)}{rng.randrange(10**5):05d}"
        else:
            candidate = f"+467{rng.choice('02369')}{rng.randrange(10**7):07d}"
        try:
            numbers[normalize_phone(candidate)] = None
        except Exception:  # noqa: BLE001 - not a valid number: draw again
            continue
    return list(numbers)


def test_pumping_simulation_with_the_default_settings(sms2fa_settings, outbox, alarms):
    """1,000 requests for codes to random numbers in three rented number ranges,
    nobody verifying: the default breaker (50 sends to never-verified numbers,
    20 % verified, 1 h window) stops each range after its 50th send."""
    high = ["1000000/h"]
    sms2fa_settings(
        PUMPING=dict(DEFAULT_PUMPING),
        LIMITS={**DEFAULT_LIMITS, "ip": high, "country": high, "global": high},
    )
    requests = 1000
    tripped_after = None
    refused = 0
    with frozen(START):
        for number in random_numbers(requests, ranges=PUMPED_RANGES):
            answer = request_code("flow", number)
            if not answer.ok:
                assert answer.code == "destination_suspended"
                refused += 1
            if alarms and tripped_after is None:
                tripped_after = len(outbox)
    calls = len(outbox)
    print(
        f"\npumping simulation: {requests} requests to unknown numbers in "
        f"{len(PUMPED_RANGES)} ranges → {calls} provider calls; the first range tripped "
        f"after {tripped_after} sends in all"
    )
    per_range = {
        prefix: sum(sms.to.startswith(prefix) for sms in outbox) for prefix in PUMPED_RANGES
    }
    assert per_range == dict.fromkeys(PUMPED_RANGES, DEFAULT_PUMPING["MIN_SENDS"])
    assert tripped_after is not None and tripped_after < calls
    assert refused == requests - calls
    assert sorted(alarm["value"] for alarm in alarms) == sorted(PUMPED_RANGES)
    assert Refusal.objects.filter(reason="destination_suspended").count() == refused

    # Passwordless requests to the same unknown numbers send nothing at all.
    outbox.clear()
    with frozen(START.replace(hour=12)):
        decoys = [
            request_code("flow", number, purpose=Purpose.PASSWORDLESS)
            for number in random_numbers(requests, seed=7)
        ]
    print(
        f"pumping simulation (passwordless decoys): {requests} requests to unknown numbers "
        f"→ {len(outbox)} provider calls; {sum(d.ok for d in decoys)} answered like a send"
    )
    assert outbox == []
