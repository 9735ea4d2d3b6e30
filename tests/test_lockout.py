"""The failure lockout across challenges (docs/security.md items 6-9).

Consecutive wrong codes count per account (``"user:<pk>"``), or per phone
(``"phone:<e164>"``) for challenges without one. From ``LOCKOUT_THRESHOLD``
(10) on, SMS verification is locked for ``min(2^(n-1), 3600)`` s after the
n-th failure: ``verify_challenge`` and every new send for that account or
phone are refused with ``VerificationLocked`` (429 ``verification_locked``
with ``Retry-After``). A new code never resets the count; a success resets
it — and nothing else. The count is read back with ``ratelimit.lock_state``.

About the scenario "wrong ×4, resend, wrong ×4, resend, wrong ×2 → locked,
count 10": one challenge takes ``MAX_ATTEMPTS`` = 5 guesses and a resend does
not give it more, so on one challenge the scenario ends at the 5th guess with
``too_many_attempts`` (shown by
:func:`test_the_literal_scenario_on_one_challenge_stops_after_five_guesses`).
The scenario is therefore played with a *new challenge* for each "resend"
(``request_challenge`` again for the same user and phone), and once more on
one challenge with ``MAX_ATTEMPTS=10``, where the literal resends fit.
"""

from __future__ import annotations

import logging

import pytest

from django.utils import timezone

from django_sms2fa import flows, ratelimit
from django_sms2fa.exceptions import (
    IncorrectCode,
    RateLimited,
    TooManyAttempts,
    VerificationLocked,
)
from django_sms2fa.models import Challenge, ChallengeStatus, PhoneDevice, Purpose, Refusal
from django_sms2fa.providers import locmem
from django_sms2fa.types import ClientInfo

from .test_send_limits import (
    IP,
    PHONE,
    Answer,
    Clock,
    answer_of,
    api_client,
    api_post,
    frozen,
    request_code,
    verify,
)

pytestmark = pytest.mark.django_db

OTHER_PHONE = "+46709876543"
STRANGER_PHONE = "+46705550101"
PASSWORD = "correct horse"


def wrong(code: str) -> str:
    return f"{(int(code) + 1) % 10**6:06d}"


def subject_of(user) -> str:
    return f"user:{user.pk}"


def failures(subject: str) -> int:
    return ratelimit.lock_state(subject).failures


def locked_for(subject: str) -> int:
    return ratelimit.lock_state(subject).locked_for


@pytest.fixture
def device(user):
    return PhoneDevice.objects.create(user=user, number=PHONE, name="phone", confirmed=True)


def new_login_challenge(user, device=None, phone: str = PHONE) -> tuple[Challenge, str]:
    """A new login code for ``user`` — what "resend" means in these tests."""
    challenge = flows.request_challenge(
        phone=phone, purpose=Purpose.LOGIN, user=user, device=device, client=ClientInfo(ip=IP)
    )
    return challenge, locmem.outbox[-1].code


def guess_wrong(challenge: Challenge, code: str, times: int) -> None:
    for _ in range(times):
        with pytest.raises(IncorrectCode):
            flows.verify_challenge(challenge.pk, wrong(code))


# ------------------------------------------------------- the scenario itself


def test_wrong_4_resend_wrong_4_resend_wrong_2_locks_with_a_count_of_10(
    user, device, outbox, caplog
):
    """Each "resend" is a new challenge for the same user and phone (see the module doc)."""
    subject = subject_of(user)
    first, code = new_login_challenge(user, device)
    guess_wrong(first, code, 4)
    assert failures(subject) == 4

    second, code = new_login_challenge(user, device)
    assert failures(subject) == 4  # a new code does not reset the count
    guess_wrong(second, code, 4)
    assert failures(subject) == 8  # security.md item 7

    third, code = new_login_challenge(user, device)
    guess_wrong(third, code, 1)
    assert ratelimit.lock_state(subject) == ratelimit.LockState(9, 0)
    with caplog.at_level(logging.WARNING, logger="django_sms2fa"):
        guess_wrong(third, code, 1)  # the 10th wrong code is still judged ...
    assert ratelimit.lock_state(subject).failures == 10  # ... and the count read back is 10
    assert locked_for(subject) > 0
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING] == [
        f"sms2fa: SMS verification locked after 10 wrong codes (challenge {third.pk})"
    ]

    # Locked: even the right code is refused, and the challenge is not touched.
    with pytest.raises(VerificationLocked) as locked:
        flows.verify_challenge(third.pk, code)
    assert locked.value.code == "verification_locked"
    third.refresh_from_db()
    assert (third.status, third.attempts, third.wrong_attempts) == (ChallengeStatus.PENDING, 2, 2)
    # Refused guesses do not count as failures.
    assert failures(subject) == 10
    # No new code for this user, nor a resend of the pending one.
    sent = len(outbox)
    with pytest.raises(VerificationLocked):
        new_login_challenge(user, device)
    with pytest.raises(VerificationLocked):
        flows.resend_challenge(third.pk)
    assert len(outbox) == sent
    assert Challenge.objects.count() == 3
    assert (
        list(Refusal.objects.values_list("reason", "limit", "user", "phone"))
        == [("verification_locked", "lockout", user.pk, PHONE)] * 3
    )


def test_the_literal_scenario_on_one_challenge_stops_after_five_guesses(user, device, outbox):
    """Wrong ×4, resend, wrong ×4 on ONE challenge: the 5th guess uses up
    MAX_ATTEMPTS (5) — a resend gives no new attempts — so the challenge is
    dead (``too_many_attempts``) and the count stops at 5, not locked. Hence
    the scenario above uses a new challenge per "resend"."""
    subject = subject_of(user)
    challenge, code = new_login_challenge(user, device)
    guess_wrong(challenge, code, 4)
    flows.resend_challenge(challenge.pk)
    code = outbox[-1].code
    with pytest.raises(IncorrectCode) as last:
        flows.verify_challenge(challenge.pk, wrong(code))
    assert last.value.attempts_left == 0
    for _ in range(3):  # the remaining 3 wrong guesses of the second "wrong ×4"
        with pytest.raises(TooManyAttempts):
            flows.verify_challenge(challenge.pk, wrong(code))
    with pytest.raises(TooManyAttempts):  # the second resend
        flows.resend_challenge(challenge.pk)
    with pytest.raises(TooManyAttempts):  # even the right code
        flows.verify_challenge(challenge.pk, code)
    challenge.refresh_from_db()
    assert (challenge.status, challenge.attempts) == (ChallengeStatus.FAILED, 5)
    assert ratelimit.lock_state(subject) == ratelimit.LockState(5, 0)
    assert len(outbox) == 2


def test_the_literal_scenario_with_ten_attempts_per_challenge(
    user, device, outbox, sms2fa_settings
):
    """With MAX_ATTEMPTS=10 the resends fit on one challenge: locked at 10."""
    sms2fa_settings(MAX_ATTEMPTS=10)
    subject = subject_of(user)
    challenge, code = new_login_challenge(user, device)
    guess_wrong(challenge, code, 4)
    flows.resend_challenge(challenge.pk)
    assert failures(subject) == 4
    guess_wrong(challenge, outbox[-1].code, 4)
    assert failures(subject) == 8
    flows.resend_challenge(challenge.pk)
    guess_wrong(challenge, outbox[-1].code, 2)
    assert failures(subject) == 10 and locked_for(subject) == 2**9
    with pytest.raises(VerificationLocked):
        new_login_challenge(user, device)
    assert len(outbox) == 3


def test_the_scenario_through_the_api(user, device, outbox):
    """login/ sends a code (a new login is the "resend"); login/verify/ checks it."""
    client = api_client(IP)
    credentials = {"username": "alice", "password": PASSWORD}

    def login() -> str:
        response = api_post(client, "login/", credentials)
        assert response.status_code == 200, response.content
        return response.json()["challenge"]["id"]

    def guess(challenge_id: str, code: str) -> Answer:
        response = api_post(client, "login/verify/", {"challenge": challenge_id, "code": code})
        return answer_of(response, client)

    for rounds in (4, 4, 2):
        challenge_id = login()
        code = outbox[-1].code
        answers = [guess(challenge_id, wrong(code)) for _ in range(rounds)]
        assert [a.code for a in answers] == ["incorrect_code"] * rounds
    assert failures(subject_of(user)) == 10

    locked = guess(challenge_id, code)
    assert (locked.code, locked.retry_after) == ("verification_locked", 2**9)
    assert Challenge.objects.get(pk=challenge_id).attempts == 2
    again = answer_of(api_post(client, "login/", credentials), client)
    assert (again.code, again.retry_after) == ("verification_locked", 2**9)
    assert len(outbox) == 3


def test_the_literal_scenario_through_the_api_ends_in_too_many_attempts(user, device, outbox):
    client = api_client(IP)
    response = api_post(client, "login/", {"username": "alice", "password": PASSWORD})
    challenge_id = response.json()["challenge"]["id"]

    def guess() -> Answer:
        body = {"challenge": challenge_id, "code": wrong(outbox[-1].code)}
        return answer_of(api_post(client, "login/verify/", body), client)

    assert [guess().code for _ in range(4)] == ["incorrect_code"] * 4
    assert api_post(client, f"challenges/{challenge_id}/resend/").status_code == 202
    assert [guess().code for _ in range(4)] == ["incorrect_code"] + ["too_many_attempts"] * 3
    resent = answer_of(api_post(client, f"challenges/{challenge_id}/resend/"), client)
    assert resent.code == "too_many_attempts"
    assert failures(subject_of(user)) == 5


# ------------------------------------------------------------ growing delay


def fail_until(user, device, count: int, clock: Clock) -> None:
    """Wrong codes (waiting out any lock, new challenges as needed) until ``count``."""
    subject = subject_of(user)
    challenge, code = None, ""
    while failures(subject) < count:
        if locked_for(subject):
            clock.advance(locked_for(subject))
        if challenge is not None:
            challenge.refresh_from_db()
        if (
            challenge is None
            or not challenge.is_pending
            or challenge.attempts >= challenge.max_attempts
            or challenge.expires_at <= timezone.now()
        ):
            challenge, code = new_login_challenge(user, device)
        guess_wrong(challenge, code, 1)


@pytest.mark.parametrize("n", [10, 11, 12, 13, 20])
def test_the_lock_grows_with_each_failure(n, user, device, outbox):
    expected = min(2 ** (n - 1), 3600)
    subject = subject_of(user)
    with frozen() as clock:
        fail_until(user, device, n - 1, clock)
        clock.advance(locked_for(subject))
        challenge, code = new_login_challenge(user, device)
        guess_wrong(challenge, code, 1)  # the n-th failure, at T
        assert ratelimit.lock_state(subject) == ratelimit.LockState(n, expected)

        with pytest.raises(VerificationLocked) as at_once:
            flows.verify_challenge(challenge.pk, code)
        assert at_once.value.retry_after == expected
        with pytest.raises(VerificationLocked) as send:
            new_login_challenge(user, device)
        assert send.value.retry_after == expected

        clock.advance(expected - 1)
        assert locked_for(subject) == 1
        with pytest.raises(VerificationLocked) as last_second:
            new_login_challenge(user, device)
        assert last_second.value.retry_after == 1

        clock.advance(1)  # exactly min(2^(n-1), 3600) s after the n-th failure
        assert locked_for(subject) == 0
        challenge, code = new_login_challenge(user, device)
        assert flows.verify_challenge(challenge.pk, code).status == ChallengeStatus.VERIFIED
    assert ratelimit.lock_state(subject) == ratelimit.LockState(0, 0)


def test_lock_delay_formula():
    assert [ratelimit.lock_delay(n) for n in (1, 9, 10, 11, 12, 13, 20, 100)] == [
        0,
        0,
        512,
        1024,
        2048,
        3600,
        3600,
        3600,
    ]


def test_the_count_is_forgotten_after_lockout_memory(user, device, outbox):
    memory = 30 * 86400  # the default LOCKOUT_MEMORY
    subject = subject_of(user)
    with frozen() as clock:
        fail_until(user, device, 9, clock)
        clock.advance(memory - 1)
        assert failures(subject) == 9
        clock.advance(1)
        assert failures(subject) == 0


# ------------------------------------------------- a success resets only this


def test_a_success_resets_the_failure_count_but_not_the_send_limits(
    user, device, outbox, send_limits
):
    subject = subject_of(user)
    with frozen() as clock:
        first, code = new_login_challenge(user, device)
        guess_wrong(first, code, 5)
        clock.advance(31)
        second, code = new_login_challenge(user, device)
        guess_wrong(second, code, 4)
        assert failures(subject) == 9
        flows.verify_challenge(second.pk, code)
        assert ratelimit.lock_state(subject) == ratelimit.LockState(0, 0)

        # The send limits kept counting: the phone's 30 s cooldown ...
        with pytest.raises(RateLimited) as cooldown:
            new_login_challenge(user, device)
        assert (cooldown.value.code, cooldown.value.context["limit"]) == ("rate_limited", "phone")

        # ... and its 5 per 10 minutes, across the success.
        for _ in range(3):
            clock.advance(31)
            challenge, code = new_login_challenge(user, device)
            guess_wrong(challenge, code, 3)
        assert ratelimit.lock_state(subject) == ratelimit.LockState(9, 0)  # 9, not 18
        clock.advance(31)
        with pytest.raises(RateLimited) as window:
            new_login_challenge(user, device)
        assert window.value.context["limit"] == "phone"
    assert len(outbox) == 5


# ------------------------------------------------------------- who counts


def test_counts_per_phone_where_there_is_no_account(via, outbox):
    """verify_phone challenges without a user count on ``phone:<e164>``."""
    subject = f"phone:{OTHER_PHONE}"
    answers = []
    for rounds in (5, 4, 1):
        answer = request_code(via, OTHER_PHONE)
        assert answer.ok
        code = outbox[-1].code
        answers = [verify(via, answer, wrong(code)) for _ in range(rounds)]
        assert [a.code for a in answers] == ["incorrect_code"] * rounds
    assert ratelimit.lock_state(subject) == ratelimit.LockState(10, 512)

    locked = verify(via, answer, code)
    assert (locked.code, locked.retry_after) == ("verification_locked", 512)
    assert Challenge.objects.get(pk=answer.challenge_id).attempts == 1
    refused = request_code(via, OTHER_PHONE, ip="192.0.2.7")
    assert (refused.code, refused.retry_after) == ("verification_locked", 512)
    assert len(outbox) == 3

    # Another phone is not locked.
    other = request_code(via, STRANGER_PHONE)
    assert verify(via, other, outbox[-1].code).ok
    assert failures(f"phone:{STRANGER_PHONE}") == 0


def test_counts_per_account_across_its_phones(user, other_user, device, outbox):
    second = PhoneDevice.objects.create(user=user, number=OTHER_PHONE, name="2", confirmed=True)
    theirs = PhoneDevice.objects.create(
        user=other_user, number=STRANGER_PHONE, name="3", confirmed=True
    )
    on_first, code = new_login_challenge(user, device, PHONE)
    guess_wrong(on_first, code, 5)
    on_second, code = new_login_challenge(user, second, OTHER_PHONE)
    guess_wrong(on_second, code, 5)
    assert ratelimit.lock_state(subject_of(user)) == ratelimit.LockState(10, 512)
    # The count is the account's, not the phones'.
    assert failures(f"phone:{PHONE}") == failures(f"phone:{OTHER_PHONE}") == 0
    for phone, device_ in ((PHONE, device), (OTHER_PHONE, second)):
        with pytest.raises(VerificationLocked):
            new_login_challenge(user, device_, phone)
    # Another account is not affected.
    challenge, code = new_login_challenge(other_user, theirs, STRANGER_PHONE)
    assert flows.verify_challenge(challenge.pk, code).status == ChallengeStatus.VERIFIED
    assert failures(subject_of(other_user)) == 0


@pytest.fixture(params=["flow", "api"])
def via(request):
    return request.param
