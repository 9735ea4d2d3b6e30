"""Attacks on the sign-in methods beside the phone, as an outsider runs them.

The target is the domain layer (``methods``, ``session``, ``login_flows``)
and django-otp's own entry points, not the HTTP edges:

1. Recovery codes at rest: a copy of the database and the logs hold no code
   in any spelling; a hash is bound to its user; a key rotation keeps codes
   working through ``SECRET_KEY_FALLBACKS``; new codes kill the old ones.
2. Single use: a recovery code works once, also when N requests carry it at
   the same moment (PostgreSQL); an authenticator code likewise.
3. Through django-otp directly (``match_token``, ``verify_token``): the plain
   ``StaticDevice`` parent row of the recovery codes verifies nothing.
4. The shared lockout: wrong codes of any method lock every method; a right
   code while locked is refused; the owner hears once; a burst cannot exceed
   the threshold (PostgreSQL).
5. Authenticator app: replay, look-alike input, unconfirmed apps, a second app.
6. Remembered browsers: every way a cookie should stop working.
7. Step-up: forged or stale session marks.
8. Method choice and the audit trail.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta

import django_otp
import pytest
import time_machine
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from django.core import signing
from django.core.cache import caches
from django.db import connection
from django.utils import timezone

from django_sms2fa import device_flows, flows, login_flows, methods, ratelimit, session, signals
from django_sms2fa.conf import app_settings
from django_sms2fa.exceptions import (
    DeviceNotFound,
    IncorrectCode,
    InvalidCode,
    MethodAlreadyEnrolled,
    MethodUnavailable,
    SecondFactorRequired,
    StepUpRequired,
    VerificationLocked,
)
from django_sms2fa.models import (
    MethodAction,
    MethodEvent,
    PhoneDevice,
    Purpose,
    RecoveryCode,
    RecoveryCodeDevice,
    RememberedBrowser,
)
from django_sms2fa.session_keys import VERIFIED_AT_KEY
from django_sms2fa.types import ClientInfo

from .methods_support import (
    PHONE,
    backed_codes,
    confirmed_totp,
    next_step,
    phone_of,
    request_for,
    totp_code,
    wrong_recovery,
    wrong_totp,
)
from .race_support import race

pytestmark = pytest.mark.django_db

CLIENT = ClientInfo(ip="198.51.100.23", user_agent="Attack/1.0")


@pytest.fixture
def events():
    """Every security_event: (user pk, event, sender)."""
    seen: list[tuple[int, str, object]] = []

    def receiver(sender, user, event, context, **kwargs):
        seen.append((user.pk, event, sender))

    signals.security_event.connect(receiver)
    yield seen
    signals.security_event.disconnect(receiver)


@pytest.fixture
def remembering(sms2fa_settings):
    sms2fa_settings(REMEMBER_BROWSER_DAYS=30)


def subject_of(user) -> str:
    return f"user:{user.pk}"


def failures(user) -> int:
    return ratelimit.lock_state(subject_of(user)).failures


def spellings(code: str) -> set[str]:
    bare = code.replace("-", "")
    return {code, bare, code.upper(), bare.upper()}


def later(seconds: float):
    """The clock ``seconds`` on, frozen (django-otp and the lockout read it)."""
    return time_machine.travel(timezone.now() + timedelta(seconds=seconds), tick=False)


def figure(capsys, text: str) -> None:
    """Print a figure past pytest's capture, so it shows in every run."""
    with capsys.disabled():
        print(f"\n[attacks-methods] {text}")


def every_stored_value() -> list[str]:
    """Every value of every row of every table in the database, as text."""
    values: list[str] = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names():
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")
            for row in cursor.fetchall():
                values.extend(str(value) for value in row if value is not None)
    return values


# ================================================= 1. recovery codes at rest


def test_no_recovery_code_in_any_spelling_is_stored_or_logged(
    user, other_user, caplog, outbox, events
):
    caplog.set_level(logging.DEBUG)
    phone_of(user)
    made = backed_codes(user, client=CLIENT)
    made += backed_codes(other_user)
    methods.use_recovery_code(user, made[0], client=CLIENT)
    with pytest.raises(IncorrectCode) as wrong:
        methods.use_recovery_code(user, made[0], client=CLIENT)  # spent
    with pytest.raises(IncorrectCode) as foreign:
        methods.use_recovery_code(user, made[-1], client=CLIENT)  # another user's

    stored = every_stored_value()
    assert any(len(v) == 64 for v in stored)  # the hashes are there...
    haystacks = stored + [r.getMessage() + str(r.args) for r in caplog.records]
    haystacks += [f"{wrong.value!s} {wrong.value!r} {foreign.value!s} {foreign.value!r}"]
    haystacks += [sms.text for sms in outbox] + [str(e) for e in events]
    haystacks += [repr(o) + str(o) for o in RecoveryCode.objects.all()]
    for code in made:
        for spelling in spellings(code):
            for text in haystacks:
                assert spelling not in text  # ...and nothing a thief could type


def test_one_users_code_or_hash_does_not_verify_for_another(user, other_user):
    alices = backed_codes(user)
    bobs = backed_codes(other_user)
    with pytest.raises(IncorrectCode):
        methods.use_recovery_code(other_user, alices[0])
    # A thief with write access copies Alice's hashes into Bob's set: a hash
    # is bound to its device and user, so Alice's codes still are not Bob's.
    bob_device = RecoveryCodeDevice.objects.get(user=other_user)
    RecoveryCode.objects.bulk_create(
        RecoveryCode(device=bob_device, code_hash=row.code_hash, created_at=timezone.now())
        for row in RecoveryCode.objects.filter(device__user=user)
    )
    for code in alices[:3]:
        with pytest.raises(IncorrectCode):
            methods.use_recovery_code(other_user, code)
    # Nor can Bob spend Alice's set by naming her device.
    with pytest.raises(MethodUnavailable):
        methods.use_recovery_code(
            other_user, alices[1], device=RecoveryCodeDevice.objects.get(user=user)
        )
    assert methods.recovery_codes_left(user) == len(alices)
    methods.use_recovery_code(other_user, bobs[0])


def test_a_code_made_before_a_key_rotation_still_works_with_the_fallback(user, settings):
    old_key = settings.SECRET_KEY
    made = backed_codes(user)
    settings.SECRET_KEY = "rotated-secret-key-for-the-recovery-test"
    settings.SECRET_KEY_FALLBACKS = []
    with pytest.raises(IncorrectCode):
        methods.use_recovery_code(user, made[0])  # the old key is gone: no match
    settings.SECRET_KEY_FALLBACKS = [old_key]
    methods.use_recovery_code(user, made[0])
    with pytest.raises(IncorrectCode):
        methods.use_recovery_code(user, made[0])  # and still once only
    fresh = backed_codes(user)  # made under the new key
    settings.SECRET_KEY_FALLBACKS = []
    methods.use_recovery_code(user, fresh[0])


def test_new_codes_kill_every_old_one(user):
    old = backed_codes(user)
    methods.use_recovery_code(user, old[0])
    new = backed_codes(user)
    assert not set(old) & set(new)
    for code in old[1:4]:
        with pytest.raises(IncorrectCode):
            methods.use_recovery_code(user, code)
    assert methods.recovery_codes_left(user) == len(new)
    assert RecoveryCodeDevice.objects.filter(user=user).count() == 1
    assert MethodEvent.objects.filter(action=MethodAction.REGENERATED).count() == 1
    methods.use_recovery_code(user, new[0])


# ======================================================= 2. single use


def test_a_recovery_code_works_once(user):
    made = backed_codes(user)
    methods.use_recovery_code(user, made[0])
    for spelling in spellings(made[0]):
        with pytest.raises(IncorrectCode):
            methods.use_recovery_code(user, spelling)
    assert methods.recovery_codes_left(user) == len(made) - 1


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_n_simultaneous_uses_of_one_recovery_code_spend_it_once(user):
    for round_no in range(10):
        caches["default"].clear()  # the losers' wrong codes would lock later rounds
        made = backed_codes(user)
        before = MethodEvent.objects.filter(action=MethodAction.USED).count()
        results = race([lambda code=made[0]: methods.use_recovery_code(user, code)] * 12)
        assert results["ok"] == 1, f"round {round_no}: {results}"
        assert set(results) <= {"ok", "incorrect_code", "verification_locked"}, results
        assert methods.recovery_codes_left(user) == len(made) - 1
        assert MethodEvent.objects.filter(action=MethodAction.USED).count() == before + 1


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_n_simultaneous_uses_of_one_authenticator_code_succeed_once(user):
    """django-otp keeps the last time step used, but reads it, checks and
    writes it back without a lock: the check must hold under a race."""
    device = confirmed_totp(user)
    for round_no in range(5):
        caches["default"].clear()
        # A fresh time step, so a fresh code, each round (the clock is moved
        # for every thread).
        with later(next_step() + 30 * round_no):
            code = totp_code(device)
            results = race([lambda code=code: methods.verify_totp(user, code)] * 12)
        assert results["ok"] == 1, f"round {round_no}: {results}"
        assert set(results) <= {"ok", "incorrect_code", "verification_locked"}, results


def test_a_replayed_authenticator_code_is_refused(user):
    device = confirmed_totp(user)
    with later(next_step()):
        code = totp_code(device)
        methods.verify_totp(user, code)
        with pytest.raises(IncorrectCode):
            methods.verify_totp(user, code)
        with pytest.raises(IncorrectCode):
            methods.verify_totp(user, totp_code(device, steps=-1))  # an older one
    # The confirmation code cannot sign in either (its step was used).
    with later(1):
        with pytest.raises(IncorrectCode):
            methods.verify_totp(user, totp_code(device, at=time.time() - 1))


# ================================================ 3. through django-otp


def test_devices_for_user_yields_each_method_and_the_parent_row(user):
    phone = phone_of(user)
    app = confirmed_totp(user)
    backed_codes(user)
    recovery = RecoveryCodeDevice.objects.get(user=user)
    listed = {(type(d), d.pk) for d in django_otp.devices_for_user(user)}
    assert listed == {
        (PhoneDevice, phone.pk),
        (TOTPDevice, app.pk),
        (RecoveryCodeDevice, recovery.pk),
        # multi-table inheritance: the parent row is listed as a StaticDevice
        (StaticDevice, recovery.pk),
    }


def test_the_plain_static_parent_row_verifies_nothing(user):
    made = backed_codes(user)
    recovery = RecoveryCodeDevice.objects.get(user=user)
    parent = StaticDevice.objects.get(pk=recovery.pk)
    assert type(parent) is StaticDevice
    assert not StaticToken.objects.filter(device=parent).exists()
    hashes = list(RecoveryCode.objects.values_list("code_hash", flat=True))
    for token in [made[0], made[0].replace("-", ""), hashes[0], hashes[0][:16]]:
        assert parent.verify_token(token) is False
        assert django_otp.verify_token(user, parent.persistent_id, token) is None
    assert methods.recovery_codes_left(user) == len(made)


def test_match_token_takes_a_right_code_once_and_never_a_hash(user):
    made = backed_codes(user)
    hashes = list(RecoveryCode.objects.values_list("code_hash", flat=True))
    for token in [*hashes, hashes[0].upper()]:
        assert django_otp.match_token(user, token) is None
    proved = django_otp.match_token(user, made[0])
    assert isinstance(proved, RecoveryCodeDevice) and proved.user_id == user.pk
    assert django_otp.match_token(user, made[0]) is None
    recovery = RecoveryCodeDevice.objects.get(user=user)
    assert django_otp.verify_token(user, recovery.persistent_id, made[1]) == recovery
    assert django_otp.verify_token(user, recovery.persistent_id, made[1]) is None
    assert methods.recovery_codes_left(user) == len(made) - 2


def test_django_otp_will_not_spend_one_users_code_for_another(user, other_user):
    made = backed_codes(user)
    backed_codes(other_user)
    alices = RecoveryCodeDevice.objects.get(user=user)
    assert django_otp.verify_token(other_user, alices.persistent_id, made[0]) is None
    assert django_otp.match_token(other_user, made[0]) is None
    assert methods.recovery_codes_left(user) == len(made)


def test_an_unconfirmed_app_is_not_a_device_to_django_otp(user):
    pending = methods.start_totp(user)
    assert not any(isinstance(d, TOTPDevice) for d in django_otp.devices_for_user(user))
    assert django_otp.match_token(user, totp_code(pending)) is None


def test_recovery_codes_through_match_token_count_against_the_lockout(user):
    made = backed_codes(user)
    wrong = wrong_recovery(made)
    for _ in range(app_settings.LOCKOUT_THRESHOLD):
        assert django_otp.match_token(user, wrong) is None
    assert failures(user) == app_settings.LOCKOUT_THRESHOLD
    assert django_otp.match_token(user, made[0]) is None  # locked: refused
    assert methods.recovery_codes_left(user) == len(made)


def test_through_django_otps_own_entry_points_the_app_is_throttled_by_django_otp(user):
    """A documented limit (docs/methods.md): django-otp's own entry points
    (``match_token``, ``verify_token``: OTPAdminSite's login form) check an
    authenticator app with django-otp's ``TOTPDevice.verify_token``, which this
    app cannot wrap without its own device model. There the guesses are held
    by django-otp's per-device throttle instead of the account's lockout: a
    wrong code shuts the device for a second, doubling with each failure, so
    a right code sent right after is refused. The documented admin wiring
    (``Sms2faAdminSite``) never shows that form: its login is this app's."""
    device = confirmed_totp(user)
    with later(next_step()):
        assert django_otp.match_token(user, wrong_totp(device)) is None
        # Throttled: the right code, right after, is refused too.
        assert django_otp.match_token(user, totp_code(device)) is None
        device.refresh_from_db()
        assert device.throttling_failure_count >= 1


def test_the_documented_admin_login_never_takes_codes_itself(rf):
    from django_sms2fa.admin.site import Sms2faAdminSite

    site = Sms2faAdminSite(name="probe")
    request = rf.get("/admin/login/")
    request.user = type("Anon", (), {"is_authenticated": False, "is_active": False})()
    request.session = {}
    answer = site.login(request)
    assert answer.status_code == 302
    assert answer["Location"].startswith("/2fa/login/")


# ==================================================== 4. the shared lockout


def lock_with_wrong_totp_and_recovery(user, app, made) -> None:
    threshold = app_settings.LOCKOUT_THRESHOLD
    for n in range(threshold):
        with pytest.raises(IncorrectCode):
            if n % 2:
                methods.verify_totp(user, wrong_totp(app))
            else:
                methods.use_recovery_code(user, wrong_recovery(made))
    assert failures(user) == threshold
    assert ratelimit.lock_state(subject_of(user)).locked_for > 0


def test_wrong_app_and_recovery_codes_lock_every_method_including_the_phone(user, outbox, events):
    phone = phone_of(user)
    app = confirmed_totp(user)
    made = backed_codes(user)
    step = login_flows.begin_second_factor(user, method="phone")
    sms_code = outbox[-1].code

    lock_with_wrong_totp_and_recovery(user, app, made)

    with later(next_step()):
        with pytest.raises(VerificationLocked):
            methods.verify_totp(user, totp_code(app))
        with pytest.raises(VerificationLocked):
            methods.use_recovery_code(user, made[0])
        with pytest.raises(VerificationLocked):
            flows.verify_challenge(step.challenge.pk, sms_code, user=user, purpose=Purpose.LOGIN)
        with pytest.raises(VerificationLocked):
            login_flows.finish_with_method(user, "recovery", made[1])
    assert methods.recovery_codes_left(user) == len(made)  # nothing was spent
    assert [e for e in events if e[1] == "lockout"] == [(user.pk, "lockout", MethodEvent)]
    # Later guesses while locked do not tell the owner again.
    with pytest.raises(VerificationLocked):
        methods.use_recovery_code(user, wrong_recovery(made))
    assert [e[1] for e in events].count("lockout") == 1
    assert phone.number == PHONE


def test_wrong_phone_codes_lock_the_app_and_the_recovery_codes(user, outbox, events):
    device = phone_of(user)
    app = confirmed_totp(user)
    made = backed_codes(user)
    threshold = app_settings.LOCKOUT_THRESHOLD
    guessed = 0
    while guessed < threshold:
        challenge = flows.request_challenge(
            phone=PHONE, purpose=Purpose.LOGIN, user=user, device=device
        )
        code = outbox[-1].code
        for _ in range(min(challenge.max_attempts, threshold - guessed)):
            with pytest.raises(IncorrectCode):
                flows.verify_challenge(challenge.pk, f"{(int(code) + 1) % 10**6:06d}")
            guessed += 1
    assert failures(user) == threshold
    with later(next_step()):
        with pytest.raises(VerificationLocked):
            methods.verify_totp(user, totp_code(app))
        with pytest.raises(VerificationLocked):
            methods.use_recovery_code(user, made[0])
    assert methods.recovery_codes_left(user) == len(made)
    lockouts = [e for e in events if e[1] == "lockout"]
    assert lockouts == [(user.pk, "lockout", PhoneDevice)]  # told once, by the phone's flow


def test_the_owner_is_told_once_when_mixed_methods_reach_the_lock(user, outbox, events):
    device = phone_of(user)
    app = confirmed_totp(user)
    made = backed_codes(user)
    threshold = app_settings.LOCKOUT_THRESHOLD
    for _ in range(threshold - 1):
        with pytest.raises(IncorrectCode):
            methods.verify_totp(user, wrong_totp(app))
    challenge = flows.request_challenge(
        phone=PHONE, purpose=Purpose.LOGIN, user=user, device=device
    )
    code = outbox[-1].code
    with pytest.raises(IncorrectCode):
        flows.verify_challenge(challenge.pk, f"{(int(code) + 1) % 10**6:06d}")
    assert [e[1] for e in events].count("lockout") == 1
    # The lock runs out; the next wrong code locks again, and is not news.
    with later(ratelimit.lock_delay(threshold) + 1):
        with pytest.raises(IncorrectCode):
            methods.use_recovery_code(user, wrong_recovery(made))
    assert failures(user) == threshold + 1
    assert [e[1] for e in events].count("lockout") == 1


def test_a_right_code_before_the_lock_clears_the_count(user):
    app = confirmed_totp(user)
    made = backed_codes(user)
    for _ in range(app_settings.LOCKOUT_THRESHOLD - 1):
        with pytest.raises(IncorrectCode):
            methods.use_recovery_code(user, wrong_recovery(made))
    methods.use_recovery_code(user, made[0])
    assert failures(user) == 0
    with later(next_step()):
        methods.verify_totp(user, totp_code(app))


def test_a_right_authenticator_code_is_never_answered_as_wrong(user):
    """django-otp throttles a TOTP device on its own (1 s, 2 s, 4 s, ... after
    each wrong code) and then answers ``False`` even for the right code. That
    ``False`` must not reach the user as "incorrect code" nor count as one
    more wrong code against the account's lockout."""
    app = confirmed_totp(user)
    with later(next_step()):
        for _ in range(3):
            with pytest.raises(IncorrectCode):
                methods.verify_totp(user, wrong_totp(app))
        assert failures(user) == 3
        try:
            methods.verify_totp(user, totp_code(app))
        except IncorrectCode:
            pytest.fail("a right code was answered as an incorrect one")
        except VerificationLocked:
            pass  # "wait a moment" is an honest answer
        assert failures(user) <= 3


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_a_burst_of_wrong_codes_at_every_method_cannot_exceed_the_threshold(user, outbox, capsys):
    device = phone_of(user)
    app = confirmed_totp(user)
    made = backed_codes(user)
    threshold = app_settings.LOCKOUT_THRESHOLD
    challenges = []
    for _ in range(3):
        challenge = flows.request_challenge(
            phone=PHONE, purpose=Purpose.LOGIN, user=user, device=device
        )
        challenges.append((challenge.pk, f"{(int(outbox[-1].code) + 1) % 10**6:06d}"))
    bad_totp, bad_recovery = wrong_totp(app), wrong_recovery(made)
    actions = []
    for n in range(36):
        kind = n % 3
        if kind == 0:
            actions.append(lambda: methods.verify_totp(user, bad_totp))
        elif kind == 1:
            actions.append(lambda: methods.use_recovery_code(user, bad_recovery))
        else:
            pk, guess = challenges[n % len(challenges)]
            actions.append(lambda pk=pk, guess=guess: flows.verify_challenge(pk, guess))
    results = race(actions)
    figure(capsys, f"36 wrong codes at once over TOTP, recovery and SMS -> {dict(results)}")
    assert not any(k.startswith("crash") for k in results), results
    assert set(results) <= {"incorrect_code", "verification_locked", "too_many_attempts"}
    assert results["incorrect_code"] <= threshold, results
    assert failures(user) <= threshold
    # And the lock holds after the burst, for the right codes too.
    if failures(user) == threshold:
        with pytest.raises(VerificationLocked):
            methods.use_recovery_code(user, made[0])


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_a_burst_of_wrong_recovery_codes_locks_at_the_threshold(user, capsys):
    made = backed_codes(user)
    guesses = [wrong_recovery(made)] * 30
    results = race([lambda g=g: methods.use_recovery_code(user, g) for g in guesses])
    figure(capsys, f"30 wrong recovery codes at once -> {dict(results)}")
    assert set(results) <= {"incorrect_code", "verification_locked"}, results
    assert results["incorrect_code"] <= app_settings.LOCKOUT_THRESHOLD, results
    assert (
        MethodEvent.objects.filter(action=MethodAction.FAILED).count() == results["incorrect_code"]
    )


# ================================================ 5. the authenticator app


@pytest.mark.parametrize(
    "shape",
    [
        lambda c: "".join(chr(0xFF10 + int(d)) for d in c),  # full-width digits
        lambda c: "".join(chr(0x0660 + int(d)) for d in c),  # Arabic-Indic digits
        lambda c: f"{c[:3]} {c[3:]}",  # a space inside
        lambda c: f"{c[:3]}\u200b{c[3:]}",  # a zero-width space inside
        lambda c: c + "0",  # too long
        lambda c: c[:5],  # too short
        lambda c: c.replace("0", "O").replace("1", "l") if set(c) & set("01") else "O" + c[1:],
        lambda c: c + "\x00",
        lambda c: f"-{c}",
        lambda c: int(c),  # not text at all
    ],
    ids=[
        "fullwidth",
        "arabic-indic",
        "space",
        "zero-width",
        "long",
        "short",
        "letters",
        "nul",
        "dash",
        "int",
    ],
)
def test_look_alike_authenticator_codes_are_invalid_and_not_counted(user, shape):
    app = confirmed_totp(user)
    with later(next_step()):
        code = totp_code(app)
        with pytest.raises(InvalidCode):
            methods.verify_totp(user, shape(code))
        assert failures(user) == 0
        assert not MethodEvent.objects.filter(action=MethodAction.FAILED).exists()
        app.refresh_from_db()
        assert app.throttling_failure_count == 0
        methods.verify_totp(user, code)  # the real one still works


def test_an_unconfirmed_app_cannot_sign_in(user):
    phone_of(user)
    pending = methods.start_totp(user)
    assert methods.user_methods(user) == ["phone"]
    with pytest.raises(MethodUnavailable):
        methods.check_code(user, "totp", totp_code(pending))
    with pytest.raises(MethodUnavailable):
        login_flows.begin_second_factor(user, method="totp")
    with pytest.raises(MethodUnavailable):
        login_flows.finish_with_method(user, "totp", totp_code(pending))
    pending.refresh_from_db()
    assert not pending.confirmed


def test_confirming_needs_the_current_code_of_that_secret(user, other_user):
    pending = methods.start_totp(user)
    stranger = methods.start_totp(other_user)
    for code in (
        totp_code(pending, steps=-3),  # an old code (outside the tolerance)
        totp_code(pending, steps=3),  # a future one
        totp_code(stranger),  # another secret's
    ):
        if code == totp_code(pending):
            continue
        with pytest.raises(IncorrectCode):
            methods.confirm_totp(user, pending.pk, code)
    pending.refresh_from_db()
    assert not pending.confirmed
    with pytest.raises(DeviceNotFound):
        methods.confirm_totp(user, stranger.pk, totp_code(stranger))  # not hers
    with pytest.raises(DeviceNotFound):
        methods.confirm_totp(user, "1 OR 1=1", totp_code(pending))
    stranger.refresh_from_db()
    assert not stranger.confirmed
    with later(next_step()):
        methods.confirm_totp(user, pending.pk, totp_code(pending))
    assert methods.user_methods(user) == ["totp"]


def test_a_second_confirmed_app_is_refused(user):
    first = confirmed_totp(user)
    with pytest.raises(MethodAlreadyEnrolled):
        methods.start_totp(user)
    # A second pending app slipped in (say, a start that raced the first
    # confirmation): its confirmation is refused all the same.
    sneaky = TOTPDevice.objects.create(user=user, name="sneaky", confirmed=False)
    with pytest.raises(MethodAlreadyEnrolled):
        methods.confirm_totp(user, sneaky.pk, totp_code(sneaky))
    assert list(TOTPDevice.objects.filter(user=user, confirmed=True)) == [first]


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_two_pending_apps_confirmed_at_once_make_one_app(user):
    for round_no in range(10):
        TOTPDevice.objects.filter(user=user).delete()
        caches["default"].clear()
        pending = [TOTPDevice.objects.create(user=user, confirmed=False) for _ in range(2)]
        codes = [totp_code(d) for d in pending]
        results = race(
            [
                lambda d=d, c=c: methods.confirm_totp(user, d.pk, c)
                for d, c in zip(pending, codes, strict=True)
            ]
        )
        confirmed = TOTPDevice.objects.filter(user=user, confirmed=True).count()
        assert confirmed == 1, f"round {round_no}: {results}"


# =============================================== 6. remembered browsers


@pytest.fixture
def remembered(user, remembering):
    phone = phone_of(user)
    return phone, methods.remember_browser(user, phone, client=CLIENT)


def test_a_forged_cookie_is_not_recognised(user, remembered):
    phone, cookie = remembered
    browser = RememberedBrowser.objects.get(user=user)
    value, _, signature = cookie.rpartition(":")
    forged = [
        f"{value}:{'A' * len(signature)}",
        cookie[:-1] + ("A" if cookie[-1] != "A" else "B"),
        signing.dumps(str(browser.pk)),  # no salt
        signing.dumps(str(browser.pk), salt="django_sms2fa.phone_token"),  # another salt
        signing.dumps(str(browser.pk), salt=methods.BROWSER_SALT, key="not-our-key"),
        str(browser.pk),
        "",
        None,
        cookie.encode(),
        {"id": str(browser.pk)},
        signing.dumps("not-a-uuid", salt=methods.BROWSER_SALT),
        signing.dumps(["x"], salt=methods.BROWSER_SALT),
    ]
    for attempt in forged:
        assert methods.recognised_browser(user, attempt) is None, attempt
    assert methods.recognised_browser(user, cookie) == phone


def test_one_users_cookie_does_not_pass_for_another(user, other_user, remembered):
    phone, cookie = remembered
    phone_of(other_user, "+46709876543")
    assert methods.recognised_browser(other_user, cookie) is None
    assert methods.recognised_browser(None, cookie) is None
    assert methods.recognised_browser(user, cookie) == phone  # Alice's still counts


def test_an_expired_browser_is_not_recognised(user, remembered):
    phone, cookie = remembered
    with later(29 * 86400):
        assert methods.recognised_browser(user, cookie) == phone
    with later(30 * 86400 + 1):
        assert methods.recognised_browser(user, cookie) is None
        assert not methods.browsers_of(user).exists()
    # The row's own expiry counts even while the signature is fresh.
    RememberedBrowser.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    assert methods.recognised_browser(user, cookie) is None


def test_a_password_change_forgets_the_browser(user, remembered):
    _, cookie = remembered
    user.set_password("methods attack new password one")
    user.save()
    assert methods.recognised_browser(user, cookie) is None
    assert RememberedBrowser.objects.get().revoked_at is not None
    assert not methods.browsers_of(user).exists()


def test_forget_browsers_forgets_the_browser(user, remembered):
    _, cookie = remembered
    assert methods.forget_browsers(user, actor=user, client=CLIENT) == 1
    assert methods.recognised_browser(user, cookie) is None
    assert methods.forget_browsers(user) == 0


def test_removing_the_phone_that_proved_it_forgets_the_browser(user, remembered):
    phone, cookie = remembered
    device_flows.remove_phone(user, phone.pk, verified_session=True)
    assert methods.recognised_browser(user, cookie) is None
    assert RememberedBrowser.objects.get().revoked_at is not None


def test_deleting_the_phone_in_the_admin_forgets_the_browser(user, remembered):
    phone, cookie = remembered
    other = phone_of(user, "+46709876543")
    device_flows.delete_device(phone, actor=user, client_ip=None)
    assert methods.recognised_browser(user, cookie) is None
    # Every browser, also one remembered with another method.
    assert RememberedBrowser.objects.filter(revoked_at=None).count() == 0
    assert other.pk


def test_removing_another_phone_forgets_every_browser_too(user, remembered):
    _, cookie = remembered
    other = phone_of(user, "+46709876543")
    device_flows.remove_phone(user, other.pk, verified_session=True)
    assert methods.recognised_browser(user, cookie) is None


def test_a_device_deleted_behind_the_flows_back_remembers_nothing(user, remembering):
    phone = phone_of(user)
    app = confirmed_totp(user)
    by_phone = methods.remember_browser(user, phone)
    by_app = methods.remember_browser(user, app)
    PhoneDevice.objects.filter(pk=phone.pk).delete()  # no signal, no flow
    TOTPDevice.objects.filter(pk=app.pk).delete()
    assert methods.recognised_browser(user, by_phone) is None
    assert methods.recognised_browser(user, by_app) is None


def test_an_unconfirmed_device_remembers_nothing(user, remembered):
    phone, cookie = remembered
    PhoneDevice.objects.filter(pk=phone.pk).update(confirmed=False)
    assert methods.recognised_browser(user, cookie) is None


def test_removing_the_app_forgets_every_browser(user, remembering):
    app = confirmed_totp(user)
    cookie = methods.remember_browser(user, app)
    methods.remove_totp(user)
    assert methods.recognised_browser(user, cookie) is None


def test_with_remembering_off_nothing_is_recognised(user, remembered, sms2fa_settings):
    _, cookie = remembered
    sms2fa_settings(REMEMBER_BROWSER_DAYS=0)
    assert methods.recognised_browser(user, cookie) is None
    with pytest.raises(MethodUnavailable):
        methods.remember_browser(user, PhoneDevice.objects.get(user=user))


def test_browsers_of_lists_only_browsers_that_still_count(user, remembering):
    phone = phone_of(user)
    keep = methods.remember_browser(user, phone)
    forgotten = methods.remember_browser(user, phone)
    expired = methods.remember_browser(user, phone)
    ids = {c: signing.loads(c, salt=methods.BROWSER_SALT) for c in (keep, forgotten, expired)}
    methods.forget_browser(user, ids[forgotten])
    RememberedBrowser.objects.filter(pk=ids[expired]).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert [str(b.pk) for b in methods.browsers_of(user)] == [ids[keep]]
    user.set_password("methods attack new password two")
    user.save()
    assert not methods.browsers_of(user).exists()  # remembered under the old password


# ============================================================ 7. step-up


@pytest.fixture
def guarded(user):
    """A user with a second factor: changing it needs a fresh one."""
    phone_of(user)
    return user


def test_a_fresh_verified_session_passes_the_step_up(guarded):
    session.require_fresh_second_factor(request_for(guarded, verified=True), guarded)


def test_a_stale_session_must_step_up(guarded):
    window = app_settings.STEP_UP_WINDOW
    request = request_for(guarded, verified=True, verified_at=time.time() - window - 1)
    with pytest.raises(StepUpRequired):
        session.require_fresh_second_factor(request, guarded)
    session.mark_second_factor(request)
    session.require_fresh_second_factor(request, guarded)


def test_an_unverified_session_needs_a_second_factor_first(guarded):
    for request in (
        request_for(guarded, verified=False),
        request_for(guarded, verified=False, set_key=False),
    ):
        with pytest.raises(SecondFactorRequired) as err:
            session.require_fresh_second_factor(request, guarded)
        assert type(err.value) is SecondFactorRequired


@pytest.mark.parametrize(
    "forged",
    [
        lambda now: str(now),
        lambda now: True,
        lambda now: now + 3600,  # in the future: stays "fresh" for ever
        lambda now: now + 1,
        lambda now: None,
        lambda now: [now],
        lambda now: {"t": now},
        lambda now: float("inf"),
        lambda now: float("-inf"),
        lambda now: float("nan"),
    ],
    ids=["str", "bool", "future", "future-1s", "none", "list", "dict", "inf", "-inf", "nan"],
)
def test_a_forged_verified_at_does_not_pass(guarded, forged):
    request = request_for(guarded, verified=True, set_key=False)
    request.session[VERIFIED_AT_KEY] = forged(time.time())
    with pytest.raises(StepUpRequired):
        session.require_fresh_second_factor(request, guarded)


def test_a_user_without_any_method_passes_the_step_up(user):
    session.require_fresh_second_factor(request_for(user, verified=False, set_key=False), user)


def test_recovery_codes_alone_are_a_second_factor_to_step_up_for(user):
    backed_codes(user)
    with pytest.raises(SecondFactorRequired):
        session.require_fresh_second_factor(request_for(user, verified=False), user)


def test_an_unconfirmed_app_is_not_a_factor_but_a_confirmed_one_is(user):
    methods.start_totp(user)
    session.require_fresh_second_factor(request_for(user, verified=False), user)
    TOTPDevice.objects.filter(user=user).update(confirmed=True)
    with pytest.raises(SecondFactorRequired):
        session.require_fresh_second_factor(request_for(user, verified=False), user)


def test_a_remembered_browser_login_opens_no_step_up_window(user, remembered):
    phone, cookie = remembered
    request = request_for(user, verified=True, set_key=False)
    device = methods.recognised_browser(user, cookie)
    session.complete_remembered_login(
        request, user, backend="django.contrib.auth.backends.ModelBackend", device=device
    )
    assert VERIFIED_AT_KEY not in request.session
    assert request.user.is_verified()
    with pytest.raises(StepUpRequired):
        session.require_fresh_second_factor(request, user)


# ======================================================= 8. method choice


def test_a_method_the_user_lacks_cannot_be_chosen(user, outbox):
    phone_of(user)
    for method in ("totp", "recovery", "remember", "PHONE", "phone ", "phone\x00"):
        with pytest.raises(MethodUnavailable):
            login_flows.begin_second_factor(user, method=method)
    with pytest.raises(MethodUnavailable):
        login_flows.finish_with_method(user, "totp", "123456")
    with pytest.raises(MethodUnavailable):
        methods.check_code(user, "phone", "123456")
    assert outbox == []


def test_spent_recovery_codes_are_no_method(user):
    phone_of(user)
    made = backed_codes(user)
    for code in made:
        methods.use_recovery_code(user, code)
    assert methods.user_methods(user) == ["phone"]
    with pytest.raises(MethodUnavailable):
        login_flows.begin_second_factor(user, method="recovery")


def test_the_default_is_the_last_used_but_never_recovery_while_another_exists(user):
    phone = phone_of(user)
    app = confirmed_totp(user)
    made = backed_codes(user)
    PhoneDevice.objects.filter(pk=phone.pk).update(last_used_at=timezone.now() + timedelta(1))
    assert login_flows.begin_second_factor(user, method=None).methods[0] == "phone"
    with later(next_step() + 86400 * 2):
        methods.verify_totp(user, totp_code(app))
        assert methods.user_methods(user)[0] == "totp"
    with later(86400 * 3):
        methods.use_recovery_code(user, made[0])
        assert methods.user_methods(user) == ["totp", "phone", "recovery"]
    TOTPDevice.objects.filter(pk=app.pk).delete()
    PhoneDevice.objects.filter(pk=phone.pk).delete()
    assert login_flows.begin_second_factor(user).method == "recovery"


# ============================================================== 9. audit


def test_a_guessing_run_leaves_one_failed_row_per_judged_guess(user):
    app = confirmed_totp(user)
    made = backed_codes(user)
    guesses = ["abcde-fghjk", "ABCDE FGHJK", "mnpqr-stuvw"]
    for guess in guesses:
        if guess.replace("-", "").replace(" ", "").lower() in {c.replace("-", "") for c in made}:
            continue
        with pytest.raises(IncorrectCode):
            methods.use_recovery_code(user, guess, client=CLIENT)
    with pytest.raises(InvalidCode):
        methods.use_recovery_code(user, "short", client=CLIENT)
    with pytest.raises(IncorrectCode):
        methods.verify_totp(user, wrong_totp(app), client=CLIENT)
    failed = MethodEvent.objects.filter(action=MethodAction.FAILED)
    assert failed.count() == len(guesses) + 1
    assert set(failed.values_list("actor", flat=True)) == {None}
    assert set(failed.values_list("client_ip", flat=True)) == {CLIENT.ip}
    for detail in MethodEvent.objects.values_list("detail", flat=True):
        for code in made + guesses:
            for spelling in spellings(code):
                assert spelling not in detail


def test_forgetting_and_remembering_are_recorded_with_the_actor(user, other_user, remembering):
    phone = phone_of(user)
    methods.remember_browser(user, phone, client=CLIENT)
    browser = RememberedBrowser.objects.get()
    methods.forget_browser(user, browser.pk, actor=other_user, client=CLIENT)
    rows = list(MethodEvent.objects.order_by("pk").values_list("action", "actor", "detail"))
    assert rows == [
        (MethodAction.REMEMBERED, user.pk, CLIENT.user_agent),
        (MethodAction.FORGOTTEN, other_user.pk, "1"),
    ]
