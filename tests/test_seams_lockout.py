"""The failure lockout as an attacker would aim it (docs/security.md).

* Wrong codes typed without a password never lock the owner's
  password-then-code login. Failures count on one of two subjects
  (``flows._lock_subject``): per account for codes that follow a correct
  password (``login``) or belong to a logged-in user (``verify_phone``,
  ``change_phone`` with a user); per phone number, on an anonymous subject,
  for passwordless codes and codes of anonymous callers.
* The count is taken before a guess is judged (``ratelimit.reserve_guess``):
  concurrent guesses over several open challenges never get more than
  ``LOCKOUT_THRESHOLD`` answers before the lock.
* A code a provider returns is written only where the challenge is still
  armed by the send that asked for it: an answer that arrives after a
  resend cannot bring the old code back.
"""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest

from django.core.cache import caches
from django.utils import timezone

from django_sms2fa import flows, login_flows, ratelimit
from django_sms2fa.conf import app_settings
from django_sms2fa.exceptions import (
    ChallengeNotFound,
    IncorrectCode,
    TooManyAttempts,
    VerificationLocked,
)
from django_sms2fa.models import Challenge, ChallengeStatus, PhoneDevice, Purpose
from django_sms2fa.providers import get_provider, locmem
from django_sms2fa.types import SendResult

from .race_support import race
from .test_send_limits import answer_of, api_client, api_post, frozen

PHONE = "+46701234567"
PASSWORD = "correct horse"
RACE_THREADS = 50
RACE_CHALLENGES = 5
RACE_ROUNDS = 20


def wrong(code: str) -> str:
    return f"{(int(code) + 1) % 10**6:06d}"


def user_subject(user) -> str:
    return flows._lock_subject(PHONE, user.pk, purpose=Purpose.LOGIN)


def phone_subject(phone: str = PHONE) -> str:
    return flows._lock_subject(phone, None, purpose=Purpose.PASSWORDLESS)


@pytest.fixture
def owner(db, django_user_model):
    user = django_user_model.objects.create_user(username="alice", password=PASSWORD)
    PhoneDevice.objects.create(user=user, number=PHONE, name="phone", confirmed=True)
    return user


def passwordless_failures(times: int) -> None:
    """An attacker who knows only the number: passwordless codes, all wrong."""
    challenge = None
    for _ in range(times):
        if challenge is None or challenge.attempts >= challenge.max_attempts:
            challenge = login_flows.start_passwordless(PHONE)
            challenge.attempts = 0
        with pytest.raises(IncorrectCode):
            login_flows.finish_passwordless(challenge.pk, wrong(locmem.outbox[-1].code))
        challenge.attempts += 1


def owner_logs_in(owner) -> None:
    """Password, then the code from the SMS: must succeed."""
    challenge = login_flows.start_second_factor(owner)
    device = login_flows.finish_second_factor(challenge.pk, locmem.outbox[-1].code, user=owner)
    assert device.number == PHONE


# ---------------------------------------------- 1. not aimed at the owner


@pytest.mark.django_db
def test_the_subjects_are_apart():
    """Who proved a password counts per account; everyone else per number."""
    assert flows._lock_subject(PHONE, 7, purpose=Purpose.LOGIN) == "user:7"
    assert flows._lock_subject(PHONE, 7, purpose=Purpose.VERIFY_PHONE) == "user:7"
    assert flows._lock_subject(PHONE, 7, purpose=Purpose.CHANGE_PHONE) == "user:7"
    anonymous = flows._lock_subject(PHONE, None, purpose=Purpose.PASSWORDLESS)
    # A passwordless code to a number with an account counts like one without.
    assert flows._lock_subject(PHONE, 7, purpose=Purpose.PASSWORDLESS) == anonymous
    assert flows._lock_subject(PHONE, None, purpose=Purpose.VERIFY_PHONE) == anonymous
    assert anonymous != "user:7"
    with pytest.raises(TypeError):  # the purpose is not optional
        flows._lock_subject(PHONE, 7)  # type: ignore[call-arg]


def test_wrong_passwordless_codes_never_lock_the_owners_login(owner, outbox):
    """Ten wrong passwordless codes lock passwordless for that number, and only it."""
    passwordless_failures(app_settings.LOCKOUT_THRESHOLD)
    assert ratelimit.lock_state(phone_subject()).locked_for == 512
    with pytest.raises(VerificationLocked):
        login_flows.start_passwordless(PHONE)
    assert ratelimit.lock_state(user_subject(owner)) == ratelimit.LockState(0, 0)
    owner_logs_in(owner)


def test_the_owner_logs_in_through_every_lock_period(owner, outbox):
    """The attacker waits out each lock (512, 1024, 2048, 3600, 3600 s) and
    guesses again; after each, the owner's login still works at once."""
    waits = []
    with frozen() as clock:
        passwordless_failures(app_settings.LOCKOUT_THRESHOLD)
        for _ in range(5):
            owner_logs_in(owner)
            locked = ratelimit.lock_state(phone_subject()).locked_for
            waits.append(locked)
            clock.advance(locked)
            passwordless_failures(1)  # re-locks, longer
        owner_logs_in(owner)
    assert waits == [512, 1024, 2048, 3600, 3600]
    assert ratelimit.lock_state(user_subject(owner)) == ratelimit.LockState(0, 0)


def test_anonymous_verify_phone_failures_do_not_lock_the_owner(owner, outbox):
    for _ in range(2):
        challenge = flows.request_challenge(phone=PHONE, purpose=Purpose.VERIFY_PHONE)
        for _ in range(5):
            with pytest.raises(IncorrectCode):
                flows.verify_challenge(challenge.pk, wrong(outbox[-1].code))
    assert ratelimit.lock_state(phone_subject()).locked_for == 512
    owner_logs_in(owner)


def test_a_logged_in_users_failures_count_on_that_user(owner, other_user, outbox):
    """Mallory, logged in, fails verify_phone codes to the owner's number: her
    own account locks; the owner's account and number are untouched."""
    for _ in range(2):
        challenge = flows.request_challenge(
            phone=PHONE, purpose=Purpose.VERIFY_PHONE, user=other_user
        )
        for _ in range(5):
            with pytest.raises(IncorrectCode):
                flows.verify_challenge(challenge.pk, wrong(outbox[-1].code), user=other_user)
    assert ratelimit.lock_state(f"user:{other_user.pk}").locked_for == 512
    assert ratelimit.lock_state(phone_subject()) == ratelimit.LockState(0, 0)
    with pytest.raises(VerificationLocked):
        flows.request_challenge(phone=PHONE, purpose=Purpose.VERIFY_PHONE, user=other_user)
    owner_logs_in(owner)
    login_flows.start_passwordless(PHONE)  # the number is not locked either


def test_wrong_codes_after_the_password_still_lock_the_account(owner, outbox):
    for _ in range(2):
        challenge = login_flows.start_second_factor(owner)
        for _ in range(5):
            with pytest.raises(IncorrectCode):
                login_flows.finish_second_factor(challenge.pk, wrong(outbox[-1].code), user=owner)
    assert ratelimit.lock_state(user_subject(owner)).locked_for == 512
    with pytest.raises(VerificationLocked):
        login_flows.start_second_factor(owner)


def test_over_the_api_the_owner_still_logs_in(owner, outbox):
    attacker = api_client("192.0.2.66")
    for _ in range(2):
        answer = api_post(attacker, "challenges/", {"phone": PHONE, "purpose": "passwordless"})
        assert answer.status_code == 202
        path = f"challenges/{answer.json()['id']}/verify/"
        for _ in range(5):
            guess = api_post(attacker, path, {"code": wrong(outbox[-1].code)})
            assert answer_of(guess, attacker).code == "incorrect_code"
    refused = answer_of(
        api_post(attacker, "challenges/", {"phone": PHONE, "purpose": "passwordless"}), attacker
    )
    assert refused.code == "verification_locked"

    client = api_client("198.51.100.7")
    login = api_post(client, "login/", {"username": "alice", "password": PASSWORD})
    assert login.status_code == 200, login.content
    body = {"challenge": login.json()["challenge"]["id"], "code": outbox[-1].code}
    verified = api_post(client, "login/verify/", body)
    assert verified.status_code == 200, verified.content


# ------------------------------------------- 2. the count before the verdict


@pytest.mark.django_db
def test_reservations_stop_at_the_threshold():
    """Nine guesses in flight, none judged yet: the tenth waits for their
    verdicts; once they are wrong, it is judged, and its failure locks."""
    subject = "user:reservations"
    threshold = app_settings.LOCKOUT_THRESHOLD
    held = [ratelimit.reserve_guess(subject) for _ in range(threshold - 1)]
    with pytest.raises(VerificationLocked):
        ratelimit.reserve_guess(subject)
    # A guess that was not judged gives its place back.
    ratelimit.release_guess(held.pop())
    # Places in flight are not failures: nothing is locked before a verdict.
    assert ratelimit.lock_state(subject) == ratelimit.LockState(0, 0)
    held.append(ratelimit.reserve_guess(subject))
    for guess in held:
        ratelimit.settle_wrong(guess)
    last = ratelimit.reserve_guess(subject)  # the verdicts are in: judged
    assert last.gated
    with pytest.raises(VerificationLocked):
        ratelimit.reserve_guess(subject)  # one at a time from the threshold on
    ratelimit.settle_wrong(last)
    assert ratelimit.lock_state(subject) == ratelimit.LockState(10, 512)
    with pytest.raises(VerificationLocked):
        ratelimit.reserve_guess(subject)


def test_a_right_code_gives_its_reservation_back(owner, outbox):
    challenge = login_flows.start_second_factor(owner)
    for _ in range(3):
        with pytest.raises(IncorrectCode):
            login_flows.finish_second_factor(challenge.pk, wrong(outbox[-1].code), user=owner)
    login_flows.finish_second_factor(challenge.pk, outbox[-1].code, user=owner)
    assert ratelimit.lock_state(user_subject(owner)) == ratelimit.LockState(0, 0)


def test_a_refused_guess_leaves_the_challenge_and_the_count_alone(owner, outbox):
    """A guess refused for the lockout uses no attempt and counts no failure."""
    challenge = login_flows.start_second_factor(owner)
    held = [
        ratelimit.reserve_guess(user_subject(owner))
        for _ in range(app_settings.LOCKOUT_THRESHOLD - 1)
    ]
    for code in (wrong(outbox[-1].code), outbox[-1].code):
        with pytest.raises(VerificationLocked):
            login_flows.finish_second_factor(challenge.pk, code, user=owner)
    challenge.refresh_from_db()
    assert (challenge.status, challenge.attempts) == (ChallengeStatus.PENDING, 0)
    for guess in held:
        ratelimit.release_guess(guess)
    assert ratelimit.lock_state(user_subject(owner)) == ratelimit.LockState(0, 0)
    login_flows.finish_second_factor(challenge.pk, outbox[-1].code, user=owner)


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_concurrent_guesses_over_five_challenges_never_pass_the_lockout(owner, outbox, capsys):
    """50 wrong guesses at once, 10 on each of 5 open login challenges of one
    account: at most LOCKOUT_THRESHOLD (10) are judged, in every round."""
    judged_per_round: list[int] = []
    totals: Counter = Counter()
    for round_no in range(RACE_ROUNDS):
        caches[app_settings.CACHE].clear()  # each round starts with no failures
        challenges = []
        for _ in range(RACE_CHALLENGES):
            challenge = login_flows.start_second_factor(owner)
            challenges.append((challenge.pk, wrong(outbox[-1].code)))
        actions = [
            lambda pk=pk, guess=guess: login_flows.finish_second_factor(pk, guess, user=owner)
            for i in range(RACE_THREADS)
            for pk, guess in [challenges[i % RACE_CHALLENGES]]
        ]
        results = race(actions)
        totals.update(results)
        assert not [r for r in results if r.startswith("crash")], results
        judged = sum(
            Challenge.objects.filter(pk__in=[pk for pk, _ in challenges]).values_list(
                "wrong_attempts", flat=True
            )
        )
        assert judged == results["incorrect_code"], (round_no, results)
        # Every place taken was either judged or given back.
        assert ratelimit.lock_state(user_subject(owner)).failures == judged, round_no
        judged_per_round.append(judged)
    with capsys.disabled():
        print(
            f"\n[lockout] {RACE_ROUNDS} rounds x {RACE_THREADS} concurrent wrong guesses over "
            f"{RACE_CHALLENGES} challenges -> judged per round {judged_per_round}, "
            f"max {max(judged_per_round)} (lockout threshold "
            f"{app_settings.LOCKOUT_THRESHOLD}); outcomes {dict(totals)}"
        )
    assert max(judged_per_round) <= app_settings.LOCKOUT_THRESHOLD


# ------------------------------------------- 6. a returned code stays dead


@pytest.fixture
def returns_code(settings, db):
    settings.SMS2FA = {
        **settings.SMS2FA,
        "PROVIDERS": {
            "default": {
                "BACKEND": "django_sms2fa.providers.locmem.LocmemProvider",
                "OPTIONS": {"mode": "returns_code"},
            }
        },
    }
    from django_sms2fa.providers import reset_providers

    reset_providers()
    assert get_provider("default").capabilities.returns_code
    yield


def _hook_sends(monkeypatch, hooks: list) -> None:
    """Run ``hooks[i]`` inside the i-th send, before the provider answers."""
    provider = get_provider("default")
    send = provider._send
    calls = iter(hooks)

    def hooked(sms):
        hook = next(calls, None)
        if hook is not None:
            hook()
        return send(sms)

    monkeypatch.setattr(provider, "_send", hooked)


def test_a_code_returned_after_a_resend_is_not_revived(returns_code, monkeypatch, outbox):
    """Send 1 is slow: while it waits, a resend tries to arm the challenge.

    A request is sent before its challenge is written (the challenge and its
    message go in together, after the provider's answer), so there is nothing
    to resend while send 1 waits: the resend finds no challenge, and the code
    send 1 returns is the challenge's first. Resent afterwards, code 1 dies.
    (The race itself, an answer arriving after a resend re-armed a challenge
    already written, is the next test's.)"""
    provider = get_provider("default")
    real_send = provider._send
    calls = []

    def slow_first(sms):
        calls.append(sms.reference)
        result = real_send(sms)  # the provider makes a code ...
        if len(calls) == 1:
            with pytest.raises(ChallengeNotFound):  # ... nothing to resend yet
                flows.resend_challenge(sms.reference)
        return result

    monkeypatch.setattr(provider, "_send", slow_first)
    challenge = flows.request_challenge(phone=PHONE, purpose=Purpose.VERIFY_PHONE)
    Challenge.objects.filter(pk=challenge.pk).update(
        last_sent_at=timezone.now() - timedelta(hours=1)
    )
    flows.resend_challenge(challenge.pk)
    code_1, code_2 = outbox[0].code, outbox[1].code
    assert code_1 != code_2 and len(calls) == 2
    with pytest.raises(IncorrectCode):
        flows.verify_challenge(challenge.pk, code_1)
    assert flows.verify_challenge(challenge.pk, code_2).status == ChallengeStatus.VERIFIED


def test_a_code_returned_while_the_resend_waits_is_not_revived(returns_code, monkeypatch, outbox):
    """Send 1 answers after the resend armed the challenge but before send 2
    answers: neither then nor later does code 1 work."""
    challenge = flows.request_challenge(phone=PHONE, purpose=Purpose.VERIFY_PHONE)
    code_1 = outbox[-1].code
    stale = Challenge.objects.get(pk=challenge.pk)
    # Send 1 as it was before its answer: the hash it armed ("" for a
    # provider-made code) and its send time.
    Challenge.objects.filter(pk=challenge.pk).update(code_hash="")
    stale.code_hash = ""

    def first_answer_arrives():
        flows._record_success(stale, "default", SendResult(returned_code=code_1), "")

    _hook_sends(monkeypatch, [first_answer_arrives])
    flows.resend_challenge(challenge.pk)
    code_2 = outbox[-1].code
    with pytest.raises(IncorrectCode):
        flows.verify_challenge(challenge.pk, code_1)
    assert flows.verify_challenge(challenge.pk, code_2).status == ChallengeStatus.VERIFIED


def test_the_answer_of_the_current_send_is_recorded(returns_code, outbox):
    challenge = flows.request_challenge(phone=PHONE, purpose=Purpose.VERIFY_PHONE)
    assert flows.verify_challenge(challenge.pk, outbox[-1].code).status == "verified"


def test_a_locked_guess_is_not_judged(owner, outbox):
    """Sanity for the race test's count: a refused guess is no IncorrectCode."""
    challenge = login_flows.start_second_factor(owner)
    for _ in range(5):
        with pytest.raises(IncorrectCode):
            login_flows.finish_second_factor(challenge.pk, wrong(outbox[-1].code), user=owner)
    with pytest.raises(TooManyAttempts):
        login_flows.finish_second_factor(challenge.pk, wrong(outbox[-1].code), user=owner)
