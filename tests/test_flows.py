"""The flows: request, resend, verify, cancel — rules, errors, records, signals."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta

import pytest
import time_machine

from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from django_sms2fa import flows, signals
from django_sms2fa.exceptions import (
    ChallengeAlreadyUsed,
    ChallengeCancelled,
    ChallengeExpired,
    ChallengeNotFound,
    ChallengeUndeliverable,
    DeliveryFailed,
    IncorrectCode,
    InvalidCode,
    InvalidPhone,
    ProviderRejected,
    ProviderUnavailable,
    Sms2faConfigurationError,
    TooManyAttempts,
)
from django_sms2fa.models import Challenge, ChallengeStatus, CheckedBy, Message, Purpose
from django_sms2fa.providers import locmem
from django_sms2fa.types import ClientInfo

pytestmark = pytest.mark.django_db

PHONE = "+46701234567"


def request(purpose=Purpose.LOGIN, phone=PHONE, **kwargs):
    return flows.request_challenge(phone=phone, purpose=purpose, **kwargs)


def wrong(code: str) -> str:
    """A code of the same length that is certainly different."""
    return "".join(str((int(d) + 1) % 10) for d in code)


def fresh(challenge: Challenge) -> Challenge:
    return Challenge.objects.get(pk=challenge.pk)


# ---------------------------------------------------------------- request


def test_request_sends_one_sms_and_stores_only_a_hash(outbox):
    challenge = request(client=ClientInfo(ip="203.0.113.9", user_agent="pytest"))
    assert len(outbox) == 1
    sms = outbox[0]
    assert sms.to == PHONE
    assert re.fullmatch(r"[0-9]{6}", sms.code)
    assert sms.code in sms.text
    stored = fresh(challenge)
    assert stored.status == ChallengeStatus.PENDING
    assert stored.checked_by == CheckedBy.LOCAL
    assert re.fullmatch(r"[0-9a-f]{64}", stored.code_hash)
    assert sms.code not in stored.code_hash
    assert stored.client_ip == "203.0.113.9"
    assert stored.max_attempts == 5
    assert stored.expires_at - stored.created_at == timedelta(seconds=300)
    message = Message.objects.get(challenge=challenge)
    assert message.provider == "default"
    assert message.provider_message_id == sms.message_id
    assert message.status == "sent"
    assert sms.code not in message.text_masked
    assert "••••••" in message.text_masked


def test_request_normalizes_the_phone(outbox):
    challenge = request(phone="070-123 45 67")
    assert challenge.phone == PHONE
    assert outbox[0].to == PHONE


def test_request_refuses_an_invalid_phone_before_anything_is_written(outbox):
    with pytest.raises(InvalidPhone) as err:
        request(phone="+46 12")
    assert err.value.code == "invalid_phone"
    assert not Challenge.objects.exists()
    assert outbox == []


def test_request_rejects_an_unknown_purpose():
    with pytest.raises(ValueError):
        request(purpose="bogus")


def test_code_length_and_lifetime_follow_settings(outbox, sms2fa_settings):
    sms2fa_settings(CODE_LENGTH=8, CODE_LIFETIME=120, MAX_ATTEMPTS=3)
    challenge = request()
    assert re.fullmatch(r"[0-9]{8}", outbox[0].code)
    assert challenge.expires_at - challenge.created_at == timedelta(seconds=120)
    assert challenge.max_attempts == 3
    assert "2 minutes" in outbox[0].text


def test_request_statement_count(outbox):
    """Request writes the challenge and the message: two statements, no reads."""
    with CaptureQueriesContext(connection) as queries:
        request()
    statements = [q["sql"].split()[0] for q in queries]
    assert statements == ["INSERT", "INSERT"]


# ---------------------------------------------------------------- verify


def test_verify_accepts_the_right_code_once(outbox, user):
    challenge = request(user=user)
    verified = flows.verify_challenge(challenge.pk, outbox[0].code, user=user)
    assert verified.status == ChallengeStatus.VERIFIED
    stored = fresh(challenge)
    assert stored.status == ChallengeStatus.VERIFIED
    assert stored.verified_at is not None
    assert stored.attempts == 1
    with pytest.raises(ChallengeAlreadyUsed):
        flows.verify_challenge(challenge.pk, outbox[0].code, user=user)


def test_verify_statement_count(outbox):
    """Verify a right code: read, then take the attempt and mark verified in one UPDATE."""
    challenge = request()
    with CaptureQueriesContext(connection) as queries:
        flows.verify_challenge(challenge.pk, outbox[0].code)
    statements = [q["sql"].split()[0] for q in queries]
    assert statements == ["SELECT", "UPDATE"]


def test_wrong_code_uses_an_attempt_and_says_how_many_are_left(outbox):
    challenge = request()
    with pytest.raises(IncorrectCode) as err:
        flows.verify_challenge(challenge.pk, wrong(outbox[0].code))
    assert err.value.attempts_left == 4
    assert err.value.code == "incorrect_code"
    assert fresh(challenge).attempts == 1


def test_five_wrong_codes_kill_the_challenge(outbox):
    challenge = request()
    code = outbox[0].code
    for left in (4, 3, 2, 1, 0):
        with pytest.raises(IncorrectCode) as err:
            flows.verify_challenge(challenge.pk, wrong(code))
        assert err.value.attempts_left == left
    assert fresh(challenge).status == ChallengeStatus.FAILED
    with pytest.raises(TooManyAttempts):
        flows.verify_challenge(challenge.pk, code)
    assert fresh(challenge).attempts == 5


@pytest.mark.parametrize(
    "typed",
    ["１２３４５６", "١٢٣٤٥٦", "12 34 56", "12\u200b3456", "abcdef", "", "12\x003456"],
)
def test_malformed_codes_are_refused_without_using_an_attempt(outbox, typed):
    challenge = request()
    with pytest.raises(InvalidCode):
        flows.verify_challenge(challenge.pk, typed)
    assert fresh(challenge).attempts == 0


def test_a_full_width_copy_of_the_right_code_is_refused(outbox):
    challenge = request()
    full_width = "".join(chr(ord("０") + int(d)) for d in outbox[0].code)
    with pytest.raises(InvalidCode):
        flows.verify_challenge(challenge.pk, full_width)
    assert fresh(challenge).status == ChallengeStatus.PENDING


def test_surrounding_space_and_one_dash_are_forgiven(outbox):
    challenge = request()
    code = outbox[0].code
    flows.verify_challenge(challenge.pk, f"  {code[:3]}-{code[3:]}\n")
    assert fresh(challenge).status == ChallengeStatus.VERIFIED


def test_expiry_accepts_just_before_and_refuses_just_after(outbox):
    start = timezone.now()
    with time_machine.travel(start, tick=False) as clock:
        early = request()
        late = request()
        clock.shift(timedelta(seconds=299))
        flows.verify_challenge(early.pk, outbox[0].code)
        clock.shift(timedelta(seconds=2))  # 301 s after creation
        with pytest.raises(ChallengeExpired) as err:
            flows.verify_challenge(late.pk, outbox[1].code)
    assert err.value.code == "challenge_expired"
    assert fresh(early).status == ChallengeStatus.VERIFIED
    assert fresh(late).status == ChallengeStatus.EXPIRED
    assert fresh(late).attempts == 0


def test_expiry_boundary_is_exclusive(outbox):
    """At exactly the expiry instant the code no longer works."""
    start = timezone.now()
    with time_machine.travel(start, tick=False) as clock:
        challenge = request()
        clock.shift(timedelta(seconds=300))
        with pytest.raises(ChallengeExpired):
            flows.verify_challenge(challenge.pk, outbox[0].code)


def test_unknown_or_malformed_challenge_ids_are_not_found():
    for bad in (uuid.uuid4(), str(uuid.uuid4()), "not-a-uuid", None, 42):
        with pytest.raises(ChallengeNotFound):
            flows.verify_challenge(bad, "123456")


def test_a_code_only_works_for_its_own_purpose(outbox):
    challenge = request(purpose=Purpose.LOGIN)
    with pytest.raises(ChallengeNotFound):
        flows.verify_challenge(challenge.pk, outbox[0].code, purpose=Purpose.CHANGE_PHONE)
    # Refused without using an attempt: the purpose check comes first.
    assert fresh(challenge).attempts == 0
    flows.verify_challenge(challenge.pk, outbox[0].code, purpose=[Purpose.LOGIN])


def test_a_code_does_not_work_on_another_challenge(outbox):
    first = request()
    second = request()
    with pytest.raises(IncorrectCode):
        flows.verify_challenge(second.pk, outbox[0].code)
    with pytest.raises(IncorrectCode):
        flows.verify_challenge(first.pk, outbox[1].code)


def test_a_challenge_belongs_to_its_user(outbox, user, other_user):
    challenge = request(user=user)
    with pytest.raises(ChallengeNotFound):
        flows.verify_challenge(challenge.pk, outbox[0].code, user=other_user)
    with pytest.raises(ChallengeNotFound):
        flows.resend_challenge(challenge.pk, user=other_user)
    with pytest.raises(ChallengeNotFound):
        flows.cancel_challenge(challenge.pk, user=other_user)
    assert fresh(challenge).attempts == 0


def test_the_hash_binds_the_user(outbox, user, other_user):
    """Moving a challenge to another user in the database breaks its code."""
    challenge = request(user=user)
    Challenge.objects.filter(pk=challenge.pk).update(user=other_user)
    with pytest.raises(IncorrectCode):
        flows.verify_challenge(challenge.pk, outbox[0].code)


def test_the_hash_binds_the_phone_and_purpose(outbox):
    challenge = request()
    Challenge.objects.filter(pk=challenge.pk).update(purpose=Purpose.VERIFY_PHONE)
    with pytest.raises(IncorrectCode):
        flows.verify_challenge(challenge.pk, outbox[0].code)
    other = request()
    Challenge.objects.filter(pk=other.pk).update(phone="+46701234568")
    with pytest.raises(IncorrectCode):
        flows.verify_challenge(other.pk, outbox[1].code)


# ---------------------------------------------------------------- resend


def test_resend_sends_a_new_code_and_the_old_one_stops_working(outbox):
    challenge = request()
    old = outbox[0].code
    resent = flows.resend_challenge(challenge.pk)
    assert resent.pk == challenge.pk
    assert len(outbox) == 2
    new = outbox[1].code
    assert Message.objects.filter(challenge=challenge).count() == 2
    assert fresh(challenge).sends == 2
    if old != new:  # one chance in a million that the CSPRNG repeats itself
        with pytest.raises(IncorrectCode):
            flows.verify_challenge(challenge.pk, old)
    flows.verify_challenge(challenge.pk, new)


def test_resend_does_not_reset_the_attempts(outbox):
    challenge = request()
    for _ in range(4):
        with pytest.raises(IncorrectCode):
            flows.verify_challenge(challenge.pk, wrong(outbox[-1].code))
    flows.resend_challenge(challenge.pk)
    assert fresh(challenge).attempts == 4
    with pytest.raises(IncorrectCode) as err:
        flows.verify_challenge(challenge.pk, wrong(outbox[-1].code))
    assert err.value.attempts_left == 0
    with pytest.raises(TooManyAttempts):
        flows.resend_challenge(challenge.pk)
    assert len(outbox) == 2


def test_resend_restarts_the_lifetime(outbox):
    start = timezone.now()
    with time_machine.travel(start, tick=False) as clock:
        challenge = request()
        clock.shift(timedelta(seconds=290))
        flows.resend_challenge(challenge.pk)
        clock.shift(timedelta(seconds=200))  # 490 s after the request
        flows.verify_challenge(challenge.pk, outbox[-1].code)


def test_resend_of_a_closed_challenge_is_refused(outbox):
    challenge = request()
    flows.verify_challenge(challenge.pk, outbox[0].code)
    with pytest.raises(ChallengeAlreadyUsed):
        flows.resend_challenge(challenge.pk)
    cancelled = request()
    flows.cancel_challenge(cancelled.pk)
    with pytest.raises(ChallengeCancelled):
        flows.resend_challenge(cancelled.pk)
    assert len(outbox) == 2


# ---------------------------------------------------------------- cancel


def test_cancel_closes_the_challenge(outbox):
    challenge = request()
    assert flows.cancel_challenge(challenge.pk) is True
    assert flows.cancel_challenge(challenge.pk) is False
    assert fresh(challenge).status == ChallengeStatus.CANCELLED
    with pytest.raises(ChallengeCancelled):
        flows.verify_challenge(challenge.pk, outbox[0].code)


# ---------------------------------------------------------------- providers


def test_provider_outage_leaves_the_challenge_undeliverable(outbox):
    locmem.fail_next(ProviderUnavailable(provider_code="503", provider_text="maintenance"))
    with pytest.raises(DeliveryFailed) as err:
        request()
    assert err.value.code == "delivery_failed"
    assert isinstance(err.value.__cause__, ProviderUnavailable)
    challenge = Challenge.objects.get(pk=err.value.context["challenge_id"])
    assert challenge.status == ChallengeStatus.UNDELIVERABLE
    message = Message.objects.get(challenge=challenge)
    assert (message.status, message.error_code, message.error_text) == (
        "failed",
        "503",
        "maintenance",
    )
    assert message.provider_message_id == ""
    assert outbox == []
    with pytest.raises(ChallengeUndeliverable):
        flows.verify_challenge(challenge.pk, "123456")
    assert Challenge.objects.get(pk=challenge.pk).attempts == 0


def test_a_provider_crash_is_recorded_without_its_text(outbox):
    locmem.fail_next(RuntimeError("https://api.example/token/s3cr3t/send"))  # type: ignore[arg-type]
    with pytest.raises(DeliveryFailed):
        request()
    message = Message.objects.get()
    assert message.error_code == "RuntimeError"
    assert "s3cr3t" not in message.error_text


def test_a_send_that_may_have_happened_is_not_repeated(outbox, sms2fa_settings):
    sms2fa_settings(
        PROVIDERS={
            "default": {"BACKEND": "django_sms2fa.providers.locmem.LocmemProvider"},
            "backup": {"BACKEND": "django_sms2fa.providers.locmem.LocmemProvider"},
        },
        FALLBACKS=["backup"],
    )
    locmem.fail_next(ProviderUnavailable(provider_text="read timeout", may_have_sent=True))
    challenge = request()
    # Failover with the same code: the first provider may have delivered it,
    # so a double delivery carries one code, never two.
    assert [sms.alias for sms in outbox] == ["backup"]
    assert [sms.code for sms in locmem.maybe_sent] == [outbox[0].code]
    assert list(Message.objects.order_by("id").values_list("provider", "status")) == [
        ("default", "unknown"),
        ("backup", "sent"),
    ]
    assert fresh(challenge).status == ChallengeStatus.PENDING
    assert not fresh(challenge).delivery_uncertain
    flows.verify_challenge(challenge.pk, outbox[0].code)


def test_failover_to_the_next_provider(outbox, sms2fa_settings):
    sms2fa_settings(
        PROVIDERS={
            "default": {"BACKEND": "django_sms2fa.providers.locmem.LocmemProvider"},
            "backup": {"BACKEND": "django_sms2fa.providers.locmem.LocmemProvider"},
        },
        FALLBACKS=["backup"],
    )
    locmem.fail_next(ProviderUnavailable(provider_code="503", provider_text="maintenance"))
    challenge = request()
    assert [sms.alias for sms in outbox] == ["backup"]
    assert list(Message.objects.order_by("id").values_list("provider", "status")) == [
        ("default", "failed"),
        ("backup", "sent"),
    ]
    stored = fresh(challenge)
    assert stored.provider == "backup"
    flows.verify_challenge(challenge.pk, outbox[0].code)


def test_routes_pick_a_provider_by_region(outbox, sms2fa_settings):
    sms2fa_settings(
        PROVIDERS={
            "default": {"BACKEND": "django_sms2fa.providers.locmem.LocmemProvider"},
            "br": {"BACKEND": "django_sms2fa.providers.locmem.LocmemProvider"},
        },
        ROUTES={"BR": "br"},
    )
    request(phone="+5511988887777")
    request(phone=PHONE)
    assert [sms.alias for sms in outbox] == ["br", "default"]


def test_a_provider_that_returns_its_code_is_hashed_on_arrival(outbox, sms2fa_settings):
    sms2fa_settings(
        PROVIDERS={
            "default": {
                "BACKEND": "django_sms2fa.providers.locmem.LocmemProvider",
                "OPTIONS": {"mode": "returns_code", "code_length": 6},
            }
        }
    )
    challenge = request()
    stored = fresh(challenge)
    assert stored.checked_by == CheckedBy.LOCAL
    assert len(stored.code_hash) == 64
    with pytest.raises(IncorrectCode):
        flows.verify_challenge(challenge.pk, wrong(outbox[0].code))
    flows.verify_challenge(challenge.pk, outbox[0].code)


def test_a_provider_that_checks_codes_itself_keeps_our_limits(outbox, sms2fa_settings):
    sms2fa_settings(
        PROVIDERS={
            "default": {
                "BACKEND": "django_sms2fa.providers.locmem.LocmemProvider",
                "OPTIONS": {"mode": "verifies_code"},
            }
        },
        MAX_ATTEMPTS=2,
    )
    challenge = request()
    stored = fresh(challenge)
    assert stored.checked_by == CheckedBy.PROVIDER
    assert stored.code_hash == ""
    with pytest.raises(IncorrectCode):
        flows.verify_challenge(challenge.pk, wrong(outbox[0].code))
    with pytest.raises(IncorrectCode):
        flows.verify_challenge(challenge.pk, wrong(outbox[0].code))
    # Our attempt limit holds even though the provider would still accept it.
    with pytest.raises(TooManyAttempts):
        flows.verify_challenge(challenge.pk, outbox[0].code)


def test_a_provider_that_only_takes_short_codes_makes_its_own(outbox, sms2fa_settings):
    """A provider whose code limit is below CODE_LENGTH is asked for its own code."""
    from django_sms2fa.types import Capabilities

    class ShortCodeProvider(locmem.LocmemProvider):
        capabilities = Capabilities(accepts_code=True, returns_code=True, max_code_length=4)

        def __init__(self, **options):
            super().__init__(**options)
            self.capabilities = ShortCodeProvider.capabilities
            self.mode = "returns_code"

    import sys

    sys.modules[__name__].ShortCodeProvider = ShortCodeProvider
    sms2fa_settings(PROVIDERS={"default": {"BACKEND": f"{__name__}.ShortCodeProvider"}})
    challenge = request()
    flows.verify_challenge(challenge.pk, outbox[0].code)


def test_a_provider_with_no_usable_mode_is_a_configuration_error(sms2fa_settings):
    from django_sms2fa.types import Capabilities

    class Useless(locmem.LocmemProvider):
        def __init__(self, **options):
            super().__init__(**options)
            self.capabilities = Capabilities()

    import sys

    sys.modules[__name__].Useless = Useless
    sms2fa_settings(PROVIDERS={"default": {"BACKEND": f"{__name__}.Useless"}})
    with pytest.raises(Sms2faConfigurationError):
        request()
    assert not Challenge.objects.exists()


# ---------------------------------------------------------------- transactions


def test_no_transaction_is_open_while_the_provider_is_called(outbox):
    challenge = request()
    flows.resend_challenge(challenge.pk)
    assert [sms.in_transaction for sms in outbox] == [False, False]


def test_inside_a_transaction_the_sms_waits_for_the_commit(
    outbox, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        with transaction.atomic():
            challenge = request()
            assert outbox == []
    assert len(callbacks) == 1
    assert len(outbox) == 1
    assert outbox[0].in_transaction is False
    flows.verify_challenge(challenge.pk, outbox[0].code)


def test_a_rolled_back_request_sends_nothing(outbox, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        with pytest.raises(RuntimeError):
            with transaction.atomic():
                request()
                raise RuntimeError("abort")
    assert outbox == []
    assert not Challenge.objects.exists()


def test_a_deferred_send_failure_marks_the_challenge(outbox, django_capture_on_commit_callbacks):
    locmem.fail_next(ProviderUnavailable(provider_text="down"))
    with django_capture_on_commit_callbacks(execute=True):
        with transaction.atomic():
            challenge = request()
    assert fresh(challenge).status == ChallengeStatus.UNDELIVERABLE


# ---------------------------------------------------------------- signals


def test_signals_follow_the_life_of_a_challenge(outbox):
    seen = []

    def recorder(name):
        def receive(sender, **kwargs):
            seen.append((name, sorted(k for k in kwargs if k != "signal")))

        return receive

    receivers = {
        name: recorder(name)
        for name in (
            "challenge_requested",
            "challenge_resent",
            "challenge_verified",
            "challenge_code_rejected",
            "challenge_closed",
            "message_sent",
            "message_failed",
        )
    }
    for name, receiver in receivers.items():
        getattr(signals, name).connect(receiver)
    try:
        challenge = request()
        flows.resend_challenge(challenge.pk)
        with pytest.raises(IncorrectCode):
            flows.verify_challenge(challenge.pk, wrong(outbox[-1].code))
        flows.verify_challenge(challenge.pk, outbox[-1].code)
        other = request()
        flows.cancel_challenge(other.pk)
        locmem.fail_next(ProviderUnavailable())
        with pytest.raises(DeliveryFailed):
            request()
    finally:
        for name, receiver in receivers.items():
            getattr(signals, name).disconnect(receiver)
    assert [name for name, _ in seen] == [
        "challenge_requested",
        "message_sent",
        "challenge_resent",
        "message_sent",
        "challenge_code_rejected",
        "challenge_verified",
        "challenge_requested",
        "message_sent",
        "challenge_closed",
        "challenge_requested",
        "message_failed",
        "challenge_closed",
    ]
    assert ("challenge_code_rejected", ["attempts_left", "challenge"]) in seen
    assert ("message_failed", ["error", "message"]) in seen


def test_a_failing_receiver_does_not_silence_the_others(outbox):
    heard = []

    def broken(sender, **kwargs):
        raise KeyError("receiver bug")

    def listener(sender, challenge, **kwargs):
        heard.append(challenge.pk)

    signals.challenge_requested.connect(broken)
    signals.challenge_requested.connect(listener)
    try:
        with pytest.raises(KeyError):
            request()
    finally:
        signals.challenge_requested.disconnect(broken)
        signals.challenge_requested.disconnect(listener)
    assert len(heard) == 1


def test_pending_codes_survive_a_secret_key_rotation(outbox, settings):
    settings.SECRET_KEY = "key-before-the-deploy"
    before = request()
    settings.SECRET_KEY = "key-after-the-deploy"
    settings.SECRET_KEY_FALLBACKS = ["key-before-the-deploy"]
    flows.verify_challenge(before.pk, outbox[0].code)
    # Once the old key is dropped, codes hashed under it no longer verify.
    dropped = request()
    settings.SECRET_KEY = "a-third-key"
    settings.SECRET_KEY_FALLBACKS = []
    with pytest.raises(IncorrectCode):
        flows.verify_challenge(dropped.pk, outbox[1].code)


def test_a_provider_that_cannot_check_a_code_uses_the_attempt(outbox, sms2fa_settings):
    sms2fa_settings(
        PROVIDERS={
            "default": {
                "BACKEND": "django_sms2fa.providers.locmem.LocmemProvider",
                "OPTIONS": {"mode": "verifies_code"},
            }
        },
        MAX_ATTEMPTS=1,
    )
    challenge = request()
    locmem.fail_next(ProviderUnavailable(provider_text="check endpoint down"))
    with pytest.raises(ProviderUnavailable):
        flows.verify_challenge(challenge.pk, outbox[0].code)
    stored = fresh(challenge)
    assert (stored.attempts, stored.wrong_attempts) == (1, 1)
    # The only attempt is gone, so the challenge is closed rather than left hanging.
    assert stored.status == ChallengeStatus.FAILED


TWO_LOCMEMS = {
    "default": {"BACKEND": "django_sms2fa.providers.locmem.LocmemProvider"},
    "backup": {"BACKEND": "django_sms2fa.providers.locmem.LocmemProvider"},
}


def test_a_permanent_refusal_is_not_passed_on(outbox, sms2fa_settings):
    sms2fa_settings(PROVIDERS=TWO_LOCMEMS, FALLBACKS=["backup"])
    locmem.fail_next(ProviderRejected(provider_code="2001", provider_text="bad phone number"))
    with pytest.raises(DeliveryFailed):
        request()
    assert outbox == []
    assert list(Message.objects.values_list("provider", "status")) == [("default", "failed")]


def test_a_provider_checked_challenge_only_fails_over_to_a_checking_provider(
    outbox, sms2fa_settings
):
    sms2fa_settings(
        PROVIDERS={
            "default": {
                "BACKEND": "django_sms2fa.providers.locmem.LocmemProvider",
                "OPTIONS": {"mode": "verifies_code"},
            },
            "texter": {"BACKEND": "django_sms2fa.providers.locmem.LocmemProvider"},
            "checker": {
                "BACKEND": "django_sms2fa.providers.locmem.LocmemProvider",
                "OPTIONS": {"mode": "verifies_code"},
            },
        },
        FALLBACKS=["texter", "checker"],
    )
    locmem.fail_next(ProviderUnavailable(provider_text="down"))
    challenge = request()
    assert [sms.alias for sms in outbox] == ["checker"]
    stored = fresh(challenge)
    assert (stored.provider, stored.checked_by) == ("checker", CheckedBy.PROVIDER)
    flows.verify_challenge(challenge.pk, outbox[0].code)


def test_providers_learn_the_code_length_lifetime_and_username(outbox, user, sms2fa_settings):
    seen = []

    class Spy(locmem.LocmemProvider):
        def _send(self, sms):
            seen.append(sms)
            return super()._send(sms)

    import sys

    sys.modules[__name__].Spy = Spy
    sms2fa_settings(PROVIDERS={"default": {"BACKEND": f"{__name__}.Spy"}}, CODE_LENGTH=7)
    challenge = request(user=user)
    flows.resend_challenge(challenge.pk)
    assert [(s.code_length, s.username) for s in seen] == [(7, "alice"), (7, "alice")]
    assert all(295 <= s.ttl <= 300 for s in seen)


def test_a_refusal_about_the_provider_itself_fails_over(outbox, sms2fa_settings):
    """Bad credentials at one provider say nothing about the message: try the next."""
    sms2fa_settings(PROVIDERS=TWO_LOCMEMS, FALLBACKS=["backup"])
    locmem.fail_next(ProviderRejected(provider_code="auth", provider_text="401", failover=True))
    challenge = request()
    assert [sms.alias for sms in outbox] == ["backup"]
    flows.verify_challenge(challenge.pk, outbox[0].code)


PROVIDER_CHECKED = {
    "default": {
        "BACKEND": "django_sms2fa.providers.locmem.LocmemProvider",
        "OPTIONS": {"mode": "verifies_code"},
    }
}


def test_a_provider_checked_code_is_bound_to_its_own_sms(outbox, sms2fa_settings):
    """The provider keeps every live code of a phone; another challenge's code must fail."""
    sms2fa_settings(PROVIDERS=PROVIDER_CHECKED)
    first = request()
    second = request()
    with pytest.raises(IncorrectCode):
        flows.verify_challenge(second.pk, outbox[0].code)
    flows.verify_challenge(second.pk, outbox[1].code)
    flows.verify_challenge(first.pk, outbox[0].code)


def test_a_provider_checked_sms_that_may_have_gone_leaves_the_challenge_open(
    outbox, sms2fa_settings
):
    sms2fa_settings(PROVIDERS=PROVIDER_CHECKED)
    locmem.fail_next(ProviderUnavailable(provider_code="timeout", may_have_sent=True))
    challenge = request()
    assert fresh(challenge).status == ChallengeStatus.PENDING
    assert Message.objects.get(challenge=challenge).status == "unknown"


def test_a_returned_code_lost_in_a_timeout_makes_the_challenge_undeliverable(
    outbox, sms2fa_settings
):
    sms2fa_settings(
        PROVIDERS={
            "default": {
                "BACKEND": "django_sms2fa.providers.locmem.LocmemProvider",
                "OPTIONS": {"mode": "returns_code"},
            }
        }
    )
    locmem.fail_next(ProviderUnavailable(provider_code="timeout", may_have_sent=True))
    with pytest.raises(DeliveryFailed):
        request()
    assert Challenge.objects.get().status == ChallengeStatus.UNDELIVERABLE


def test_a_configuration_error_at_send_time_surfaces(outbox, sms2fa_settings):
    locmem.fail_next(Sms2faConfigurationError("pid_resolver cannot be imported"))  # type: ignore[arg-type]
    with pytest.raises(Sms2faConfigurationError):
        request()
    assert Challenge.objects.get().status == ChallengeStatus.UNDELIVERABLE
