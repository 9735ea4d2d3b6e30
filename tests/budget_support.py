"""The request -> verify cycles whose cost the budget tests count (docs/performance.md).

Each cycle makes one challenge and verifies it with the right code, in two
measured steps: ``"<cycle> request"`` and ``"<cycle> verify"``. ``measure(step)``
is a context manager the caller supplies (a Redis command counter, a commit
counter); everything outside it (fixtures, reading the outbox) is not counted.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from django_sms2fa import flows, login_flows
from django_sms2fa.models import Purpose

from .api_support import api_post

#: The user's confirmed phone (the login and passwordless cycles send to it).
DEVICE_PHONE = "+46701234567"
#: A number with no account (the API's verify_phone cycle).
OTHER_PHONE = "+46709876543"
USERNAME, PASSWORD = "alice", "correct horse"  # the `user` fixture of tests/conftest.py

Measure = Callable[[str], AbstractContextManager[Any]]


def flows_cycle(measure: Measure, *, outbox, user, device, client) -> None:
    """flows.request_challenge (login, a user with a confirmed device), then
    flows.verify_challenge with the right code."""
    with measure("flows request"):
        challenge = flows.request_challenge(
            phone=DEVICE_PHONE, purpose=Purpose.LOGIN, user=user, device=device
        )
    code = outbox[-1].code
    with measure("flows verify"):
        verified = flows.verify_challenge(challenge.pk, code, user=user, purpose=Purpose.LOGIN)
    assert verified.status == "verified"


def api_verify_phone_cycle(measure: Measure, *, outbox, user, device, client) -> None:
    """REST ``challenges/`` (verify_phone) then ``challenges/{id}/verify/``."""
    with measure("API challenges/ request"):
        answer = api_post(client, "challenges/", {"phone": OTHER_PHONE, "purpose": "verify_phone"})
    assert answer.status_code == 202, answer.content
    challenge_id, code = answer.json()["id"], outbox[-1].code
    with measure("API challenges/ verify"):
        answer = api_post(client, f"challenges/{challenge_id}/verify/", {"code": code})
    assert answer.status_code == 200, answer.content


def api_login_cycle(measure: Measure, *, outbox, user, device, client) -> None:
    """REST ``login/`` (password, then a code to the device) then ``login/verify/``."""
    with measure("API login/ request"):
        answer = api_post(client, "login/", {"username": USERNAME, "password": PASSWORD})
    assert answer.status_code == 200 and answer.json()["mfa_required"], answer.content
    challenge_id, code = answer.json()["challenge"]["id"], outbox[-1].code
    with measure("API login/ verify"):
        answer = api_post(client, "login/verify/", {"challenge": challenge_id, "code": code})
    assert answer.status_code == 200, answer.content


def passwordless_cycle(measure: Measure, *, outbox, user, device, client) -> None:
    """login_flows.start_passwordless then finish_passwordless (right code)."""
    with measure("passwordless request"):
        challenge = login_flows.start_passwordless(DEVICE_PHONE)
    code = outbox[-1].code
    with measure("passwordless verify"):
        found, proved = login_flows.finish_passwordless(challenge.pk, code)
    assert (found, proved) == (user, device)


CYCLES: dict[str, Callable[..., None]] = {
    "flows": flows_cycle,
    "api_verify_phone": api_verify_phone_cycle,
    "api_login": api_login_cycle,
    "passwordless": passwordless_cycle,
}


def all_security_defaults(settings) -> None:
    """Every abuse defence at its default: the send limits (with the
    ``send_limits`` fixture), the resend cooldown and the SMS-pumping breaker
    (the test settings turn the last two off); the lockouts are the defaults
    already."""
    settings.SMS2FA = {
        key: value
        for key, value in settings.SMS2FA.items()
        if key not in ("RESEND_INTERVAL", "PUMPING")
    }
