"""The API does not tell who has an account (OWASP ASVS 6.3.8).

Passwordless login to a number with an account and to one without: the same
status, body (keys, types and values, except the challenge id), headers and
cookies (except the session key), and no SMS — or, with
``PASSWORDLESS_UNKNOWN_NUMBER = "notify"``, an SMS that says no account
exists. A decoy challenge then answers resend, verify and cancel exactly as a
real one does to a wrong code. ``login/`` answers an unknown username as it
answers a wrong password.

Responses are compared whole through :func:`comparable`, which replaces only
what must differ: ids, the session key and — where the clock is not frozen —
timestamps (their spacing is compared instead).
"""

from __future__ import annotations

import re
import statistics
import time
from datetime import UTC, datetime
from typing import Any

import pytest
import time_machine
from rest_framework.test import APIClient

from django.conf import settings

from django_sms2fa import flows
from django_sms2fa.models import Challenge, PhoneDevice
from django_sms2fa.providers import locmem

pytestmark = pytest.mark.django_db

API = "/api/2fa/"
KNOWN = "+46701234567"
# Same country code and last two digits, so the masked phones are equal too
# (the mask shows the client what it typed, nothing more).
UNKNOWN = "+46709876567"
NOW = datetime(2030, 5, 17, 9, 30, 12, 345678, tzinfo=UTC)
CODE = "271828"  # every code, so a wrong guess is surely wrong, even on a decoy
WRONG = "999999"

NO_LIMITS = {scope: [] for scope in ("phone", "ip", "user", "country", "global")}

UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


# ------------------------------------------------------------------- helpers


def _is_datetime(value: str) -> bool:
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    return bool(re.match(r"^\d{4}-\d\d-\d\dT", value))


def normalise(value: Any, *, times: bool) -> Any:
    """``value`` with ids (and, if ``times``, timestamps) replaced by their kind."""
    if isinstance(value, dict):
        return {key: normalise(item, times=times) for key, item in value.items()}
    if isinstance(value, list):
        return [normalise(item, times=times) for item in value]
    if isinstance(value, str):
        if UUID_RE.match(value):
            return "<uuid>"
        if times and _is_datetime(value):
            return "<datetime>"
    return value


def comparable(response: Any, *, times: bool = False) -> dict[str, Any]:
    """Everything a client can see of ``response``, minus what must differ."""
    cookies = {}
    for name, morsel in response.cookies.items():
        attributes = {key: value for key, value in morsel.items() if value}
        if times:
            attributes.pop("expires", None)
        value = morsel.value
        if name == settings.SESSION_COOKIE_NAME:
            assert value  # a session key is there; its value is random
            value = "<session key>"
        cookies[name] = {"value": value, **attributes}
    headers = {
        name.lower(): value
        for name, value in response.headers.items()
        if name.lower() not in {"date"}
    }
    if times:
        # A timestamp may lose its microseconds (".000000" is not written).
        headers.pop("content-length", None)
    body = response.json() if response.content else None
    return {
        "status": response.status_code,
        "body": normalise(body, times=times),
        "types": _types(body),
        "headers": headers,
        "cookies": cookies,
    }


def _types(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _types(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_types(item) for item in value]
    return type(value).__name__


def spacing(body: dict[str, Any]) -> dict[str, float]:
    """The timestamps of a challenge relative to its expiry (clock-free)."""
    expires = datetime.fromisoformat(body["expires_at"].replace("Z", "+00:00"))
    resend = datetime.fromisoformat(body["resend_at"].replace("Z", "+00:00"))
    return {"resend_before_expiry": (expires - resend).total_seconds()}


def passwordless(client: APIClient, phone: str) -> Any:
    return client.post(f"{API}challenges/", {"phone": phone, "purpose": "passwordless"})


def new_client() -> APIClient:
    client = APIClient()
    client.default_format = "json"  # the API takes JSON only
    return client


@pytest.fixture
def known_user(django_user_model):
    user = django_user_model.objects.create_user(username="alice", password="correct horse")
    PhoneDevice.objects.create(user=user, number=KNOWN, confirmed=True)
    return user


@pytest.fixture
def fixed_codes(monkeypatch):
    monkeypatch.setattr(flows, "generate_code", lambda length: (CODE * 2)[:length])


@pytest.fixture(params=["silent", "notify"])
def unknown_mode(request, sms2fa_settings):
    sms2fa_settings(PASSWORDLESS_UNKNOWN_NUMBER=request.param)
    return request.param


# A number "without an account", in each way the adapter can see it.
@pytest.fixture(params=["no account", "unconfirmed phone", "inactive user"])
def unknown(request, django_user_model):
    if request.param == "unconfirmed phone":
        other = django_user_model.objects.create_user(username="unconfirmed", password="x" * 12)
        PhoneDevice.objects.create(user=other, number=UNKNOWN, confirmed=False)
    elif request.param == "inactive user":
        other = django_user_model.objects.create_user(
            username="gone", password="x" * 12, is_active=False
        )
        PhoneDevice.objects.create(user=other, number=UNKNOWN, confirmed=True)
    return UNKNOWN


# ---------------------------------------------------------- passwordless start


def test_passwordless_known_and_unknown_answer_the_same(known_user, unknown, unknown_mode, outbox):
    with time_machine.travel(NOW, tick=False):
        known = passwordless(new_client(), KNOWN)
        assert [sms.to for sms in outbox] == [KNOWN]
        assert outbox[0].code
        other = passwordless(new_client(), unknown)

    assert known.status_code == 202
    assert comparable(other) == comparable(known)
    assert known.json()["id"] != other.json()["id"]
    assert set(known.json()) == {
        "id",
        "purpose",
        "phone",
        "status",
        "expires_at",
        "resend_at",
        "channel",
        "channels",
        "delivery_uncertain",
    }

    texts = [sms for sms in outbox if sms.to == UNKNOWN]
    if unknown_mode == "silent":
        assert texts == []
    else:
        [notice] = texts
        assert notice.code == ""
        assert "no account" in notice.text
        assert not re.search(r"\d{4,}", notice.text)  # no code in it


def test_passwordless_answers_match_with_a_running_clock(known_user, outbox):
    """Without a frozen clock: only ids and the timestamps' instants differ."""
    known = passwordless(new_client(), KNOWN)
    other = passwordless(new_client(), UNKNOWN)
    assert comparable(other, times=True) == comparable(known, times=True)
    assert spacing(other.json()) == spacing(known.json())


def test_verify_phone_known_and_unknown_answer_the_same(known_user, outbox):
    """verify_phone codes go to any number (that is the point): same answer, same SMS."""
    with time_machine.travel(NOW, tick=False):
        known = new_client().post(f"{API}challenges/", {"phone": KNOWN, "purpose": "verify_phone"})
        other = new_client().post(
            f"{API}challenges/", {"phone": UNKNOWN, "purpose": "verify_phone"}
        )
    assert known.status_code == 202
    assert comparable(other) == comparable(known)
    assert [sms.to for sms in outbox] == [KNOWN, UNKNOWN]
    assert all(sms.code for sms in outbox)


def test_send_limits_answer_the_same_for_both(known_user, outbox, sms2fa_settings):
    """A second request within the phone cooldown: the same answer for both numbers."""
    sms2fa_settings(LIMITS={**NO_LIMITS, "phone": ["1/30s"]})
    with time_machine.travel(NOW, tick=False):
        known = [passwordless(new_client(), KNOWN) for _ in range(2)]
        other = [passwordless(new_client(), UNKNOWN) for _ in range(2)]
    assert [comparable(answer) for answer in other] == [comparable(answer) for answer in known]


def test_odd_input_answers_the_same_for_both(known_user, outbox):
    for payload, suffix, expected in [
        ({"purpose": "login"}, "", 400),  # not a purpose clients may ask for
        ({"purpose": "passwordless"}, " " * 60, 400),  # too long
        ({"purpose": "passwordless", "extra": "x" * 10_000}, "", 202),  # ignored
    ]:
        with time_machine.travel(NOW, tick=False):
            known = new_client().post(f"{API}challenges/", {**payload, "phone": KNOWN + suffix})
            other = new_client().post(f"{API}challenges/", {**payload, "phone": UNKNOWN + suffix})
        assert known.status_code == expected, known.content
        assert comparable(other) == comparable(known), payload


def test_passwordless_answers_the_same_during_an_outage(known_user, outbox):
    locmem.fail_next(locmem.ProviderUnavailable("down"), times=1)
    known = passwordless(new_client(), KNOWN)
    locmem.fail_next(locmem.ProviderUnavailable("down"), times=1)
    other = passwordless(new_client(), UNKNOWN)
    assert other.status_code == known.status_code


# ------------------------------------------------- a decoy behaves like the real


def _decoy_and_real() -> tuple[tuple[APIClient, str], tuple[APIClient, str]]:
    real_client, decoy_client = new_client(), new_client()
    real = passwordless(real_client, KNOWN)
    decoy = passwordless(decoy_client, UNKNOWN)
    assert real.status_code == decoy.status_code == 202
    return (real_client, real.json()["id"]), (decoy_client, decoy.json()["id"])


def test_verify_counts_down_the_same_on_a_decoy(
    known_user, unknown_mode, fixed_codes, outbox, settings
):
    max_attempts = settings.SMS2FA.get("MAX_ATTEMPTS", 5)
    with time_machine.travel(NOW, tick=False):
        (real_client, real), (decoy_client, decoy) = _decoy_and_real()
        trail = []
        for _ in range(max_attempts + 2):
            real_answer = real_client.post(f"{API}challenges/{real}/verify/", {"code": WRONG})
            decoy_answer = decoy_client.post(f"{API}challenges/{decoy}/verify/", {"code": WRONG})
            assert comparable(decoy_answer) == comparable(real_answer)
            error = real_answer.json()["error"]
            trail.append((real_answer.status_code, error["code"], error.get("attempts_left")))
    assert trail == [
        *[(400, "incorrect_code", left) for left in range(max_attempts - 1, -1, -1)],
        (429, "too_many_attempts", None),
        (429, "too_many_attempts", None),
    ]
    assert Challenge.objects.get(pk=real).status == Challenge.objects.get(pk=decoy).status


def test_resend_then_verify_the_same_on_a_decoy(known_user, unknown_mode, fixed_codes, outbox):
    with time_machine.travel(NOW, tick=False):
        (real_client, real), (decoy_client, decoy) = _decoy_and_real()
        wrong = [
            client.post(f"{API}challenges/{cid}/verify/", {"code": WRONG})
            for client, cid in [(real_client, real), (decoy_client, decoy)]
        ]
        assert comparable(wrong[1]) == comparable(wrong[0])
        sent_before = len(outbox)
        real_resend = real_client.post(f"{API}challenges/{real}/resend/")
        decoy_resend = decoy_client.post(f"{API}challenges/{decoy}/resend/")
        assert real_resend.status_code == 202
        assert comparable(decoy_resend) == comparable(real_resend)
        # The real phone gets a new code; the decoy stays silent (no second notice).
        assert [sms.to for sms in outbox[sent_before:]] == [KNOWN]
        # The count of attempts goes on after the resend, on both.
        after = [
            client.post(f"{API}challenges/{cid}/verify/", {"code": WRONG})
            for client, cid in [(real_client, real), (decoy_client, decoy)]
        ]
    assert (
        after[0].json()["error"]["attempts_left"] == wrong[0].json()["error"]["attempts_left"] - 1
    )
    assert comparable(after[1]) == comparable(after[0])


def test_resend_cooldown_the_same_on_a_decoy(
    known_user, unknown_mode, fixed_codes, outbox, sms2fa_settings
):
    sms2fa_settings(RESEND_INTERVAL=30)
    with time_machine.travel(NOW, tick=False):
        (real_client, real), (decoy_client, decoy) = _decoy_and_real()
        real_resend = real_client.post(f"{API}challenges/{real}/resend/")
        decoy_resend = decoy_client.post(f"{API}challenges/{decoy}/resend/")
    assert real_resend.status_code == 429
    assert real_resend.json()["error"]["retry_after"] == 30
    assert comparable(decoy_resend) == comparable(real_resend)


def test_cancel_the_same_on_a_decoy(known_user, unknown_mode, fixed_codes, outbox):
    with time_machine.travel(NOW, tick=False):
        (real_client, real), (decoy_client, decoy) = _decoy_and_real()
        for method, path, data in [
            ("delete", "", None),
            ("delete", "", None),
            ("post", "verify/", {"code": WRONG}),
            ("post", "resend/", None),
        ]:
            answers = [
                getattr(client, method)(f"{API}challenges/{cid}/{path}", data)
                for client, cid in [(real_client, real), (decoy_client, decoy)]
            ]
            assert comparable(answers[1]) == comparable(answers[0]), (method, path)
    assert answers[0].status_code == 410


def test_another_clients_decoy_is_as_unknown_as_another_clients_challenge(
    known_user, fixed_codes, outbox
):
    (_, real), (_, decoy) = _decoy_and_real()
    stranger = new_client()
    for path, data in [("verify/", {"code": WRONG}), ("resend/", None)]:
        answers = [stranger.post(f"{API}challenges/{cid}/{path}", data) for cid in (real, decoy)]
        assert answers[0].status_code == 404
        assert comparable(answers[1]) == comparable(answers[0])


# ---------------------------------------------------------------------- login/


def test_login_unknown_username_answers_like_a_wrong_password(known_user, django_user_model):
    django_user_model.objects.create_user(username="dormant", password="right", is_active=False)
    answers = {
        "wrong password": new_client().post(
            f"{API}login/", {"username": "alice", "password": "wrong horse"}
        ),
        "unknown username": new_client().post(
            f"{API}login/", {"username": "nobody-here", "password": "wrong horse"}
        ),
        "inactive user, right password": new_client().post(
            f"{API}login/", {"username": "dormant", "password": "right"}
        ),
    }
    reference = comparable(answers["wrong password"])
    assert reference["status"] == 400
    assert reference["body"]["error"]["code"] == "invalid_credentials"
    assert reference["cookies"] == {}
    for label, answer in answers.items():
        assert comparable(answer) == reference, label


# ------------------------------------------------------------------- latency


def test_report_the_latency_gap_of_passwordless(known_user, outbox, capsys, sms2fa_settings):
    """Measured and printed, never asserted: a timing assertion would be flaky.

    A number with an account costs an SMS hand-off (here: the in-memory
    provider) that a decoy skips; over a network the gap is the provider's
    latency unless the send moves out of the request.
    """
    # 200 sends to one phone, none verified: no limits, no pumping breaker.
    sms2fa_settings(LIMITS=NO_LIMITS, PUMPING={"MIN_SENDS": 10**9})
    runs = 200
    clients = {KNOWN: new_client(), UNKNOWN: new_client()}
    timings: dict[str, list[float]] = {KNOWN: [], UNKNOWN: []}
    for _ in range(runs):
        for phone, client in clients.items():  # interleaved: same conditions
            start = time.perf_counter()
            answer = passwordless(client, phone)
            timings[phone].append(time.perf_counter() - start)
            assert answer.status_code == 202
    known_ms = statistics.median(timings[KNOWN]) * 1000
    unknown_ms = statistics.median(timings[UNKNOWN]) * 1000
    assert len(outbox) == runs  # only the known number got SMS
    with capsys.disabled():
        print(
            f"\n[enumeration] passwordless median latency over {runs} runs: "
            f"known {known_ms:.3f} ms, unknown {unknown_ms:.3f} ms, "
            f"gap {known_ms - unknown_ms:+.3f} ms"
        )
