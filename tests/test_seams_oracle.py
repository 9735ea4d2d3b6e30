"""No account oracle in the lockout or in a provider's refusal (docs/security.md).

Compared over the API, whole (status, body, headers, cookies) with
``test_enumeration.comparable``:

* after ten wrong codes on ``verify_phone`` challenges to a number (or on
  passwordless ones), a passwordless request for that number answers the
  same whether or not the number has an account — both are locked on the
  number's anonymous subject;
* a passwordless challenge whose SMS a provider refused answers verify, on
  every attempt, exactly as a decoy does to a wrong code, and counts towards
  the lockout the same.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine

from django_sms2fa import flows, ratelimit
from django_sms2fa.conf import app_settings
from django_sms2fa.exceptions import ProviderRejected, ProviderUnavailable
from django_sms2fa.models import Challenge, ChallengeStatus, Message, Purpose
from django_sms2fa.providers import locmem

from .test_enumeration import (
    API,
    KNOWN,
    NOW,
    UNKNOWN,
    WRONG,
    comparable,
    fixed_codes,  # noqa: F401 (a fixture)
    known_user,  # noqa: F401 (a fixture)
    new_client,
    passwordless,
)

pytestmark = pytest.mark.django_db


def anonymous(phone: str) -> str:
    return flows._lock_subject(phone, None, purpose=Purpose.PASSWORDLESS)


def fail_ten_times(phone: str, purpose: str) -> None:
    """Two challenges to ``phone``, five wrong codes each, from one client."""
    client = new_client()
    for _ in range(2):
        answer = client.post(f"{API}challenges/", {"phone": phone, "purpose": purpose})
        assert answer.status_code == 202, answer.content
        for _ in range(5):
            guess = client.post(f"{API}challenges/{answer.json()['id']}/verify/", {"code": WRONG})
            assert guess.json()["error"]["code"] == "incorrect_code"


# ------------------------------------------------------ 3. the lockout answer


@pytest.mark.parametrize("purpose", ["verify_phone", "passwordless"])
def test_the_lockout_answers_the_same_for_known_and_unknown(
    known_user,  # noqa: F811
    fixed_codes,  # noqa: F811
    purpose,
    outbox,
):
    with time_machine.travel(NOW, tick=False):
        fail_ten_times(KNOWN, purpose)
        fail_ten_times(UNKNOWN, purpose)
        known = passwordless(new_client(), KNOWN)
        other = passwordless(new_client(), UNKNOWN)
        # verify_phone requests are locked the same way too.
        known_verify = new_client().post(
            f"{API}challenges/", {"phone": KNOWN, "purpose": "verify_phone"}
        )
        other_verify = new_client().post(
            f"{API}challenges/", {"phone": UNKNOWN, "purpose": "verify_phone"}
        )
    assert comparable(other) == comparable(known)
    assert (known.status_code, known.json()["error"]["code"]) == (429, "verification_locked")
    assert known["Retry-After"] == "512"
    assert comparable(other_verify) == comparable(known_verify)
    assert known_verify.status_code == 429
    assert ratelimit.lock_state(anonymous(KNOWN)) == ratelimit.lock_state(anonymous(UNKNOWN))


def test_the_owners_login_is_not_what_locked(known_user, fixed_codes, outbox):  # noqa: F811
    """The known number's lock is the number's, not the account's."""
    with time_machine.travel(NOW, tick=False):
        fail_ten_times(KNOWN, "passwordless")
    assert ratelimit.lock_state(f"user:{known_user.pk}") == ratelimit.LockState(0, 0)


# --------------------------------------------- 4. a provider's refusal answer


def _refused_and_decoy(error) -> tuple[tuple, tuple]:
    real_client, decoy_client = new_client(), new_client()
    locmem.fail_next(error, times=1)
    real = passwordless(real_client, KNOWN)
    decoy = passwordless(decoy_client, UNKNOWN)
    assert comparable(decoy) == comparable(real)
    assert real.status_code == 202
    assert Challenge.objects.get(pk=real.json()["id"]).status == ChallengeStatus.UNDELIVERABLE
    return (real_client, real.json()["id"]), (decoy_client, decoy.json()["id"])


@pytest.mark.parametrize(
    "error",
    [ProviderRejected("no such subscriber"), ProviderUnavailable("down")],
    ids=["refused", "down"],
)
def test_verify_on_an_undeliverable_challenge_answers_like_a_decoy(
    known_user,  # noqa: F811
    fixed_codes,  # noqa: F811
    error,
    outbox,
):
    max_attempts = app_settings.MAX_ATTEMPTS
    with time_machine.travel(NOW, tick=False):
        (real_client, real), (decoy_client, decoy) = _refused_and_decoy(error)
        trail = []
        for _ in range(max_attempts + 2):
            real_answer = real_client.post(f"{API}challenges/{real}/verify/", {"code": WRONG})
            decoy_answer = decoy_client.post(f"{API}challenges/{decoy}/verify/", {"code": WRONG})
            assert comparable(real_answer) == comparable(decoy_answer), len(trail)
            body = real_answer.json()["error"]
            trail.append((real_answer.status_code, body["code"], body.get("attempts_left")))
    assert trail == [
        *[(400, "incorrect_code", left) for left in range(max_attempts - 1, -1, -1)],
        (429, "too_many_attempts", None),
        (429, "too_many_attempts", None),
    ]
    # Counted towards the number's lockout like the decoy's wrong codes.
    assert ratelimit.lock_state(anonymous(KNOWN)) == ratelimit.lock_state(anonymous(UNKNOWN))
    assert ratelimit.lock_state(anonymous(KNOWN)).failures == max_attempts
    # It took the decoy's path all the way; its messages keep the refusal.
    assert Challenge.objects.get(pk=real).status == Challenge.objects.get(pk=decoy).status
    assert Message.objects.filter(challenge_id=real, sent_at__isnull=True).exists()


def test_the_code_nobody_received_does_not_open_it(known_user, fixed_codes, outbox):  # noqa: F811
    """Even the code made for the refused SMS answers as a wrong one."""
    from .test_enumeration import CODE

    with time_machine.travel(NOW, tick=False):
        (real_client, real), (decoy_client, decoy) = _refused_and_decoy(
            ProviderRejected("no such subscriber")
        )
        answer = real_client.post(f"{API}challenges/{real}/verify/", {"code": CODE})
        wrong = decoy_client.post(f"{API}challenges/{decoy}/verify/", {"code": WRONG})
    assert comparable(answer) == comparable(wrong)
    assert answer.status_code == 400
    assert "_auth_user_id" not in real_client.session


def test_expired_undeliverable_answers_like_an_expired_decoy(
    known_user,  # noqa: F811
    fixed_codes,  # noqa: F811
    outbox,
):
    with time_machine.travel(NOW, tick=False) as clock:
        (real_client, real), (decoy_client, decoy) = _refused_and_decoy(
            ProviderRejected("no such subscriber")
        )
        clock.shift(timedelta(seconds=app_settings.CODE_LIFETIME + 1))
        answers = [
            client.post(f"{API}challenges/{cid}/verify/", {"code": WRONG})
            for client, cid in ((real_client, real), (decoy_client, decoy))
        ]
    assert comparable(answers[0]) == comparable(answers[1])
    assert answers[0].json()["error"]["code"] == "challenge_expired"


@pytest.mark.parametrize(
    "steps",
    [
        [("post", "resend/"), ("post", "verify/"), ("post", "resend/"), ("post", "verify/")],
        [("delete", ""), ("post", "verify/"), ("post", "resend/"), ("delete", "")],
        [("post", "verify/")] * 5 + [("post", "resend/"), ("delete", ""), ("post", "verify/")],
    ],
    ids=["resend-verify", "cancel-verify-resend", "exhaust-resend-cancel"],
)
def test_resend_and_cancel_on_an_undeliverable_challenge_answer_like_a_decoy(
    known_user,  # noqa: F811
    fixed_codes,  # noqa: F811
    steps,
    outbox,
):
    with time_machine.travel(NOW, tick=False):
        (real_client, real), (decoy_client, decoy) = _refused_and_decoy(
            ProviderRejected("no such subscriber")
        )
        sent = len(outbox)
        for number, (method, path) in enumerate(steps):
            data = {"code": WRONG} if path == "verify/" else None
            answers = [
                getattr(client, method)(f"{API}challenges/{cid}/{path}", data)
                for client, cid in ((real_client, real), (decoy_client, decoy))
            ]
            assert comparable(answers[0]) == comparable(answers[1]), (number, method, path)
    # A resend of the refused challenge sends nothing, like the decoy's.
    assert len(outbox) == sent
