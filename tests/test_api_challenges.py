"""REST contract of challenges/: create, resend, verify, cancel — through Django's test client.

Every error answer is checked for the one shape
``{"error": {"code", "message", ...}}``, and 429s for ``retry_after`` in the
body equal to the ``Retry-After`` header.
"""

from __future__ import annotations

import json
import uuid
from datetime import timedelta

import pytest
import time_machine

from django.core import signing
from django.test import Client
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from django_sms2fa import login_flows
from django_sms2fa.exceptions import InvalidPhoneToken, ProviderRejected, ProviderUnavailable
from django_sms2fa.models import Challenge, ChallengeStatus, PhoneDevice, Purpose
from django_sms2fa.providers import locmem

from .api_support import API, api_post, assert_error

pytestmark = pytest.mark.django_db

PHONE = "+46701234567"
MASKED = "+46•••••••67"
OTHER_PHONE = "+46709876543"
PASSWORD = "correct horse"
CHALLENGE_FIELDS = {
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


# ------------------------------------------------------------------ helpers


def create(client, phone=PHONE, purpose="verify_phone"):
    response = api_post(client, "challenges/", {"phone": phone, "purpose": purpose})
    assert response.status_code == 202, response.content
    return response.json()


def verify(client, challenge_id, code):
    return api_post(client, f"challenges/{challenge_id}/verify/", {"code": code})


def resend(client, challenge_id):
    return api_post(client, f"challenges/{challenge_id}/resend/")


def cancel(client, challenge_id):
    return client.delete(f"{API}challenges/{challenge_id}/")


def wrong(code: str) -> str:
    """A code of the same length that is certainly different."""
    return "".join(str((int(d) + 1) % 10) for d in code)


def fresh(challenge_id) -> Challenge:
    return Challenge.objects.get(pk=challenge_id)


def session_key(client) -> str | None:
    cookie = client.cookies.get("sessionid")
    return cookie.value if cookie else None


@pytest.fixture
def phone_user(user):
    PhoneDevice.objects.create(user=user, number=PHONE, name="Mobile", confirmed=True)
    return user


@pytest.fixture
def lenient_client():
    """A client that turns a server error into a 500 answer instead of raising it."""
    return Client(raise_request_exception=False)


# ------------------------------------------------------------------- create


def test_create_answers_202_with_exactly_the_public_fields(client, outbox):
    response = api_post(client, "challenges/", {"phone": PHONE, "purpose": "verify_phone"})
    assert response.status_code == 202
    body = response.json()
    assert set(body) == CHALLENGE_FIELDS
    assert body["purpose"] == "verify_phone"
    assert body["phone"] == MASKED
    text = response.content.decode()
    assert "701234567" not in text  # the full number appears nowhere, in no form
    assert "70 123" not in text and "70-123" not in text
    assert len(outbox) == 1 and outbox[0].to == PHONE
    assert outbox[0].code not in text
    challenge = fresh(uuid.UUID(body["id"]))
    assert challenge.purpose == Purpose.VERIFY_PHONE
    assert challenge.user_id is None
    assert parse_datetime(body["expires_at"]) == challenge.expires_at
    # RESEND_INTERVAL is 0 in the test settings: a resend is possible at once.
    assert parse_datetime(body["resend_at"]) == challenge.last_sent_at


def test_resend_at_tells_the_cooldown(client, sms2fa_settings):
    sms2fa_settings(RESEND_INTERVAL=30)
    start = timezone.now().replace(microsecond=0)
    with time_machine.travel(start, tick=False):
        body = create(client)
    assert parse_datetime(body["resend_at"]) == start + timedelta(seconds=30)
    assert parse_datetime(body["expires_at"]) == start + timedelta(seconds=300)


@pytest.mark.parametrize("typed", ["070-123 45 67", "+46 (0)70 123 45 67", "0046701234567"])
def test_create_normalizes_what_the_user_typed(client, outbox, typed):
    body = create(client, phone=typed)
    assert body["phone"] == MASKED
    assert fresh(body["id"]).phone == PHONE
    assert outbox[-1].to == PHONE


@pytest.mark.parametrize(
    "purpose", ["login", "change_phone", "unknown", "", "VERIFY_PHONE", None, 1, ["verify_phone"]]
)
def test_only_verify_phone_and_passwordless_can_be_requested(client, outbox, purpose):
    response = api_post(client, "challenges/", {"phone": PHONE, "purpose": purpose})
    error = assert_error(response, 400, "invalid")
    assert set(error["fields"]) == {"purpose"}
    assert all(isinstance(m, str) for m in error["fields"]["purpose"])
    assert not Challenge.objects.exists()
    assert outbox == []


def test_missing_fields_are_named(client):
    error = assert_error(api_post(client, "challenges/", {}), 400, "invalid")
    assert set(error["fields"]) == {"phone", "purpose"}


@pytest.mark.parametrize(
    "phone", ["12", "+4670", "not a phone", "+999123456789", "+46 70 123 45 67\u200b", "+1"]
)
def test_invalid_phone_is_400_invalid_phone(client, outbox, phone):
    response = api_post(client, "challenges/", {"phone": phone, "purpose": "verify_phone"})
    assert_error(response, 400, "invalid_phone")
    assert not Challenge.objects.exists()
    assert outbox == []


#: The status each refusal code comes with.
STATUS_OF = {
    "invalid": 400,
    "invalid_phone": 400,
    "parse_error": 400,
    "unsupported_media_type": 415,
}
VALIDATION = ("invalid", "invalid_phone")  # DRF's field check or the phone parser: either
FORMS = ("parse_error", "invalid", "invalid_phone", "unsupported_media_type")  # if forms go

ODD_BODIES = [
    # (id, body, content type, the codes allowed)
    ("10k-char phone", {"phone": "1" * 10_000, "purpose": "verify_phone"}, None, "invalid"),
    ("10k-char purpose", {"phone": PHONE, "purpose": "x" * 10_000}, None, "invalid"),
    ("NUL in phone", {"phone": "+4670\x001234567", "purpose": "verify_phone"}, None, VALIDATION),
    ("NUL phone", {"phone": "\x00", "purpose": "verify_phone"}, None, VALIDATION),
    ("surrogate phone", '{"phone": "+4670\\ud800", "purpose": "verify_phone"}', None, VALIDATION),
    ("object phone", {"phone": {"a": 1}, "purpose": "verify_phone"}, None, "invalid"),
    ("list phone", {"phone": [PHONE], "purpose": "verify_phone"}, None, "invalid"),
    ("null phone", {"phone": None, "purpose": "verify_phone"}, None, "invalid"),
    ("emoji phone", {"phone": "📞", "purpose": "verify_phone"}, None, "invalid_phone"),
    ("not JSON", "{not json", None, "parse_error"),
    ("truncated JSON", '{"phone": "+46', None, "parse_error"),
    ("NaN", '{"phone": "+46701234567", "purpose": NaN}', None, "parse_error"),
    ("JSON array", [PHONE, "verify_phone"], None, "invalid"),
    ("JSON string", '"+46701234567"', None, "invalid"),
    ("JSON number", "46701234567", None, "invalid"),
    ("JSON null", "null", None, "invalid"),
    ("empty body", "", None, "invalid"),
    ("binary", b"\xff\xfe\x00garbage", None, "parse_error"),
    ("text/plain", "phone=+46701234567", "text/plain", "unsupported_media_type"),
    ("xml", "<phone>+46701234567</phone>", "application/xml", "unsupported_media_type"),
    (
        "declared UTF-16, sent UTF-8",
        '{"phone": "+46701234567", "purpose": "verify_phone"}',
        "application/json; charset=utf-16",
        "parse_error",
    ),
    ("multipart without boundary", "phone=1", "multipart/form-data", FORMS),
    (
        "form with bad UTF-8",
        "phone=%ff%fe&purpose=verify_phone",
        "application/x-www-form-urlencoded",
        FORMS,
    ),
]


@pytest.mark.parametrize(
    "body, content_type, codes",
    [case[1:] for case in ODD_BODIES],
    ids=[case[0] for case in ODD_BODIES],
)
def test_odd_bodies_are_refused_in_the_error_shape(
    lenient_client, outbox, body, content_type, codes
):
    content_type = content_type or "application/json"
    if not isinstance(body, (str, bytes)):
        body = json.dumps(body)
    if isinstance(body, str):
        body = body.encode("utf-8", "surrogatepass")
    # generic() sends the bytes as they are, whatever charset the type declares.
    response = lenient_client.generic("POST", API + "challenges/", body, content_type=content_type)
    assert 400 <= response.status_code < 500, response.content
    code = response.json()["error"]["code"]
    assert code in ((codes,) if isinstance(codes, str) else codes)
    assert_error(response, STATUS_OF[code], code)
    assert not Challenge.objects.exists()
    assert outbox == []


def test_a_lone_surrogate_in_purpose_is_a_400_not_a_500(lenient_client):
    response = lenient_client.post(
        API + "challenges/",
        '{"phone": "+46701234567", "purpose": "\\ud800"}',
        content_type="application/json",
    )
    assert_error(response, 400, "invalid")


@pytest.mark.parametrize(
    "body, content_type",
    [
        (json.dumps({"phone": "1" * 2000, "purpose": "verify_phone"}), "application/json"),
        (
            "phone=1&purpose=verify_phone&" + "&".join(f"f{i}=1" for i in range(1100)),
            "application/x-www-form-urlencoded",
        ),
    ],
    ids=["RequestDataTooBig", "TooManyFieldsSent"],
)
def test_a_body_over_the_upload_limits_is_refused_in_the_error_shape(
    lenient_client, settings, body, content_type
):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    response = lenient_client.post(API + "challenges/", body, content_type=content_type)
    assert 400 <= response.status_code < 500
    assert response["Content-Type"].startswith("application/json")
    assert set(response.json()) == {"error"}


# ------------------------------------------------------------------- resend


def test_resend_sends_a_new_code_and_the_old_one_stops_working(client, outbox):
    body = create(client)
    old_code = outbox[-1].code
    # Codes are random: resend until the new one differs (nearly always at once).
    for _attempt in range(5):
        response = resend(client, body["id"])
        assert response.status_code == 202
        if outbox[-1].code != old_code:
            break
    again = response.json()
    assert set(again) == CHALLENGE_FIELDS
    assert again["id"] == body["id"]
    assert again["phone"] == MASKED
    assert outbox[-1].to == PHONE
    assert_error(verify(client, body["id"], old_code), 400, "incorrect_code")
    ok = verify(client, body["id"], outbox[-1].code)
    assert ok.status_code == 200


def test_resend_restarts_the_lifetime(client, outbox):
    start = timezone.now().replace(microsecond=0)
    with time_machine.travel(start, tick=False) as traveller:
        body = create(client)
        traveller.shift(200)
        again = resend(client, body["id"]).json()
        assert parse_datetime(again["expires_at"]) == start + timedelta(seconds=500)
        traveller.shift(250)  # past the first lifetime, within the second
        assert verify(client, body["id"], outbox[-1].code).status_code == 200


def test_resend_within_the_cooldown_is_429_with_retry_after(client, outbox, sms2fa_settings):
    sms2fa_settings(RESEND_INTERVAL=30)
    start = timezone.now()
    with time_machine.travel(start, tick=False) as traveller:
        body = create(client)
        error = assert_error(resend(client, body["id"]), 429, "rate_limited")
        assert error["retry_after"] == 30
        traveller.shift(12)
        response = resend(client, body["id"])
        error = assert_error(response, 429, "rate_limited")
        assert error["retry_after"] == 18
        assert response["Retry-After"] == "18"
        assert len(outbox) == 1
        traveller.shift(18)
        response = resend(client, body["id"])
        assert response.status_code == 202
        assert len(outbox) == 2
        assert parse_datetime(response.json()["resend_at"]) == timezone.now() + timedelta(
            seconds=30
        )
        assert_error(resend(client, body["id"]), 429, "rate_limited")
    assert len(outbox) == 2


# ------------------------------------------------------------ verify_phone


def test_verify_phone_answers_a_phone_token_and_logs_nobody_in(client, outbox):
    body = create(client)
    response = verify(client, body["id"], outbox[-1].code)
    assert response.status_code == 200
    answer = response.json()
    assert set(answer) == {"verified", "purpose", "phone_token"}
    assert answer["verified"] is True
    assert answer["purpose"] == "verify_phone"
    assert PHONE not in answer["phone_token"]  # signed, not readable at a glance
    assert "_auth_user_id" not in client.session
    assert fresh(body["id"]).status == ChallengeStatus.VERIFIED


def test_phone_token_is_redeemed_once(client, outbox):
    body = create(client, phone="070-123 45 67")
    token = verify(client, body["id"], outbox[-1].code).json()["phone_token"]
    assert login_flows.redeem_phone_token(token) == PHONE
    assert fresh(body["id"]).consumed_at is not None
    with pytest.raises(InvalidPhoneToken):
        login_flows.redeem_phone_token(token)


def test_phone_token_expires(client, outbox):
    start = timezone.now()
    with time_machine.travel(start, tick=False) as traveller:
        body = create(client)
        token = verify(client, body["id"], outbox[-1].code).json()["phone_token"]
        traveller.shift(900 + 1)  # PHONE_TOKEN_MAX_AGE defaults to 900
        with pytest.raises(InvalidPhoneToken):
            login_flows.redeem_phone_token(token)
        assert fresh(body["id"]).consumed_at is None
        traveller.shift(-2)  # within the age, the same token is still good
        assert login_flows.redeem_phone_token(token) == PHONE


def test_phone_token_max_age_setting(client, outbox, sms2fa_settings):
    sms2fa_settings(PHONE_TOKEN_MAX_AGE=60)
    start = timezone.now()
    with time_machine.travel(start, tick=False) as traveller:
        body = create(client)
        token = verify(client, body["id"], outbox[-1].code).json()["phone_token"]
        traveller.shift(61)
        with pytest.raises(InvalidPhoneToken):
            login_flows.redeem_phone_token(token)


def _tamper(token: str) -> str:
    # Change one character of the payload; the signature no longer matches.
    head = token[0]
    return ("b" if head != "b" else "c") + token[1:]


@pytest.mark.parametrize(
    "forge",
    [
        pytest.param(lambda token, cid: "", id="empty"),
        pytest.param(lambda token, cid: "garbage", id="garbage"),
        pytest.param(lambda token, cid: _tamper(token), id="tampered payload"),
        pytest.param(lambda token, cid: token[:-2] + "xx", id="tampered signature"),
        pytest.param(
            lambda token, cid: signing.dumps(
                {"c": cid, "p": PHONE}, salt=login_flows.PHONE_TOKEN_SALT, key="not-the-key"
            ),
            id="signed with another key",
        ),
        pytest.param(
            lambda token, cid: signing.dumps({"c": cid, "p": PHONE}, salt="another.salt"),
            id="signed for another purpose",
        ),
        pytest.param(
            lambda token, cid: signing.dumps(
                {"c": cid, "p": OTHER_PHONE}, salt=login_flows.PHONE_TOKEN_SALT
            ),
            id="another phone for the same challenge",
        ),
        pytest.param(
            lambda token, cid: signing.dumps(
                {"c": str(uuid.uuid4()), "p": PHONE}, salt=login_flows.PHONE_TOKEN_SALT
            ),
            id="unknown challenge",
        ),
        pytest.param(
            lambda token, cid: signing.dumps({"p": PHONE}, salt=login_flows.PHONE_TOKEN_SALT),
            id="no challenge in it",
        ),
    ],
)
def test_forged_or_tampered_phone_tokens_are_refused(client, outbox, forge):
    body = create(client)
    token = verify(client, body["id"], outbox[-1].code).json()["phone_token"]
    with pytest.raises(InvalidPhoneToken):
        login_flows.redeem_phone_token(forge(token, body["id"]))
    # The refusal consumed nothing: the genuine token still works.
    assert login_flows.redeem_phone_token(token) == PHONE


def test_a_phone_token_needs_a_verified_challenge(client, outbox):
    body = create(client)  # never verified
    token = signing.dumps({"c": body["id"], "p": PHONE}, salt=login_flows.PHONE_TOKEN_SALT)
    with pytest.raises(InvalidPhoneToken):
        login_flows.redeem_phone_token(token)


# ------------------------------------------------------------ passwordless


def test_passwordless_verify_logs_in_with_a_new_session_key(client, phone_user, outbox):
    body = create(client, purpose="passwordless")
    assert body["purpose"] == "passwordless"
    assert outbox[-1].to == PHONE
    before = session_key(client)
    assert before  # the challenge is remembered in an anonymous session
    response = verify(client, body["id"], outbox[-1].code)
    assert response.status_code == 200
    assert response.json() == {
        "verified": True,
        "purpose": "passwordless",
        "user": {"id": phone_user.pk, "username": "alice"},
    }
    assert client.session["_auth_user_id"] == str(phone_user.pk)
    assert client.session["_auth_user_backend"] == "django_sms2fa.backends.PhoneCodeBackend"
    after = session_key(client)
    assert after and after != before


def test_a_passwordless_session_is_usable_afterwards(client, phone_user, outbox):
    body = create(client, purpose="passwordless")
    assert verify(client, body["id"], outbox[-1].code).status_code == 200
    response = client.get(API + "devices/")
    assert response.status_code == 200


def test_passwordless_for_an_unknown_number_looks_the_same_and_sends_nothing(phone_user, outbox):
    known_client, unknown_client = Client(), Client()
    with time_machine.travel(timezone.now(), tick=False):
        known = api_post(known_client, "challenges/", {"phone": PHONE, "purpose": "passwordless"})
        unknown = api_post(
            unknown_client, "challenges/", {"phone": "+46701234587", "purpose": "passwordless"}
        )
    assert known.status_code == unknown.status_code == 202
    assert dict(known.items()) == dict(unknown.items())  # every header, Content-Length too
    assert set(known.cookies) == set(unknown.cookies)
    known_body, unknown_body = known.json(), unknown.json()
    assert set(known_body) == set(unknown_body) == CHALLENGE_FIELDS
    for field in ("purpose", "expires_at", "resend_at"):
        assert known_body[field] == unknown_body[field]
    assert len(outbox) == 1 and outbox[0].to == PHONE  # none to the unknown number
    decoy = fresh(unknown_body["id"])
    assert decoy.user_id is None and decoy.sends == 0
    # Resending and guessing answer alike too.
    assert resend(unknown_client, unknown_body["id"]).status_code == 202
    assert resend(known_client, known_body["id"]).status_code == 202
    assert len(outbox) == 2
    guess = "000000" if outbox[-1].code != "000000" else "111111"
    known_error = assert_error(verify(known_client, known_body["id"], guess), 400, "incorrect_code")
    unknown_error = assert_error(
        verify(unknown_client, unknown_body["id"], guess), 400, "incorrect_code"
    )
    assert known_error == unknown_error


def test_passwordless_for_an_inactive_user_sends_nothing(phone_user, client, outbox):
    phone_user.is_active = False
    phone_user.save()
    body = create(client, purpose="passwordless")
    assert outbox == []
    assert fresh(body["id"]).user_id is None


# ----------------------------------------------------------- wrong and closed


def test_wrong_code_is_400_with_attempts_left(client, outbox):
    body = create(client)
    code = outbox[-1].code
    error = assert_error(verify(client, body["id"], wrong(code)), 400, "incorrect_code")
    assert error["attempts_left"] == 4
    error = assert_error(verify(client, body["id"], wrong(code)), 400, "incorrect_code")
    assert error["attempts_left"] == 3
    assert verify(client, body["id"], code).status_code == 200


def test_five_wrong_codes_lock_the_challenge(client, outbox):
    body = create(client)
    code = outbox[-1].code
    for left in (4, 3, 2, 1, 0):
        error = assert_error(verify(client, body["id"], wrong(code)), 400, "incorrect_code")
        assert error["attempts_left"] == left
    assert_error(verify(client, body["id"], code), 429, "too_many_attempts")
    assert_error(resend(client, body["id"]), 429, "too_many_attempts")
    assert fresh(body["id"]).status == ChallengeStatus.FAILED


@pytest.mark.parametrize(
    "code",
    ["１２３４５６", "١٢٣٤٥٦", "12 34 56", "12\u200b3456", "abcdef", "", "-123456", "0x1e240"],
)
def test_codes_that_are_not_ascii_digits_use_no_attempt(client, outbox, code):
    body = create(client)
    error = assert_error(verify(client, body["id"], code), 400, error_code_for(code))
    assert "attempts_left" not in error
    assert fresh(body["id"]).attempts == 0
    assert verify(client, body["id"], outbox[-1].code).status_code == 200


def error_code_for(code: str) -> str:
    # DRF's CharField refuses a blank string itself; the rest reach the flows.
    return "invalid" if code == "" else "invalid_code"


def test_the_right_code_in_full_width_digits_is_refused(client, outbox):
    body = create(client)
    code = outbox[-1].code
    full_width = "".join(chr(ord("０") + int(d)) for d in code)
    assert_error(verify(client, body["id"], full_width), 400, "invalid_code")
    assert verify(client, body["id"], code).status_code == 200


def test_a_code_typed_with_one_dash_is_understood(client, outbox):
    body = create(client)
    code = outbox[-1].code
    assert verify(client, body["id"], f"{code[:3]}-{code[3:]}").status_code == 200


@pytest.mark.parametrize(
    "payload",
    [
        {"code": "1" * 10_000},
        {"code": "12\x003456"},
        {"code": ["123456"]},
        {"code": {"a": 1}},
        {"code": None},
        {},
    ],
    ids=["10k chars", "NUL", "list", "object", "null", "missing"],
)
def test_malformed_code_fields_are_400_invalid(lenient_client, outbox, payload):
    body = create(lenient_client)
    response = api_post(lenient_client, f"challenges/{body['id']}/verify/", payload)
    error = assert_error(response, 400, "invalid")
    assert set(error["fields"]) == {"code"}
    assert fresh(body["id"]).attempts == 0


def test_a_used_challenge_is_410(client, outbox):
    body = create(client)
    code = outbox[-1].code
    assert verify(client, body["id"], code).status_code == 200
    assert_error(verify(client, body["id"], code), 410, "challenge_used")
    assert_error(resend(client, body["id"]), 410, "challenge_used")


def test_an_expired_challenge_is_410(client, outbox):
    body = create(client)
    with time_machine.travel(timezone.now() + timedelta(seconds=301), tick=False):
        assert_error(verify(client, body["id"], outbox[-1].code), 410, "challenge_expired")
    assert fresh(body["id"]).status == ChallengeStatus.EXPIRED


def test_cancel_is_204_and_the_code_is_dead(client, outbox):
    body = create(client)
    response = cancel(client, body["id"])
    assert response.status_code == 204
    assert response.content == b""
    assert_error(verify(client, body["id"], outbox[-1].code), 410, "challenge_cancelled")
    assert_error(resend(client, body["id"]), 410, "challenge_cancelled")
    assert fresh(body["id"]).status == ChallengeStatus.CANCELLED


# ------------------------------------------------------------------ outage


@pytest.mark.parametrize(
    "failure",
    [
        ProviderUnavailable(
            "gateway down", provider="default", provider_code="E4711", provider_text="SECRET-x"
        ),
        ProviderRejected(
            "refused", provider="default", provider_code="E4712", provider_text="SECRET-y"
        ),
    ],
    ids=["unavailable", "rejected"],
)
def test_provider_outage_is_503_without_provider_detail(client, outbox, failure):
    locmem.fail_next(failure)
    response = api_post(client, "challenges/", {"phone": PHONE, "purpose": "verify_phone"})
    assert_error(response, 503, "delivery_failed")
    text = response.content.decode()
    for leak in ("SECRET", "E471", "gateway", "refused", "provider", "default"):
        assert leak not in text
    assert outbox == []
    assert Challenge.objects.get().status == ChallengeStatus.UNDELIVERABLE


def test_provider_outage_on_resend_is_503(client, outbox):
    body = create(client)
    locmem.fail_next(ProviderUnavailable("down", provider_text="SECRET-z"))
    response = resend(client, body["id"])
    assert_error(response, 503, "delivery_failed")
    assert "SECRET" not in response.content.decode()


def test_provider_outage_for_a_known_passwordless_number_answers_like_any_number(
    client, phone_user, outbox
):
    """A 503 only for numbers with an account would reveal who has one."""
    locmem.fail_next(ProviderUnavailable("down"))
    response = api_post(client, "challenges/", {"phone": PHONE, "purpose": "passwordless"})
    assert response.status_code == 202
    challenge = Challenge.objects.get(pk=response.json()["id"])
    assert challenge.status == "undeliverable"
    assert outbox == []


def test_provider_outage_while_checking_a_code_is_503_without_detail(
    client, outbox, sms2fa_settings
):
    # A provider that keeps the code and checks it itself (iP1-style): its
    # failure reaches the API as a ProviderError, not as DeliveryFailed.
    sms2fa_settings(
        PROVIDERS={
            "default": {
                "BACKEND": "django_sms2fa.providers.locmem.LocmemProvider",
                "OPTIONS": {"mode": "verifies_code"},
            }
        }
    )
    body = create(client)
    locmem.fail_next(
        ProviderUnavailable(
            "down", provider="default", provider_code="E4713", provider_text="SECRET"
        )
    )
    response = verify(client, body["id"], outbox[-1].code)
    assert_error(response, 503, "delivery_failed")
    text = response.content.decode()
    assert "SECRET" not in text and "E4713" not in text


# --------------------------------------------------------------- ownership


def test_another_client_cannot_touch_the_challenge(client, outbox):
    body = create(client)
    stranger = Client()
    assert_error(resend(stranger, body["id"]), 404, "challenge_not_found")
    assert_error(verify(stranger, body["id"], outbox[-1].code), 404, "challenge_not_found")
    assert_error(cancel(stranger, body["id"]), 404, "challenge_not_found")
    challenge = fresh(body["id"])
    assert challenge.status == ChallengeStatus.PENDING
    assert challenge.attempts == 0 and challenge.sends == 1
    assert len(outbox) == 1
    assert verify(client, body["id"], outbox[-1].code).status_code == 200


def test_another_logged_in_user_cannot_touch_a_passwordless_challenge(
    client, phone_user, other_user, outbox
):
    body = create(client, purpose="passwordless")
    stranger = Client()
    stranger.force_login(other_user)
    assert_error(verify(stranger, body["id"], outbox[-1].code), 404, "challenge_not_found")
    assert_error(resend(stranger, body["id"]), 404, "challenge_not_found")
    assert_error(cancel(stranger, body["id"]), 404, "challenge_not_found")


@pytest.mark.parametrize(
    "challenge_id",
    [
        str(uuid.uuid4()),
        "not-a-uuid",
        "0",
        "x" * 10_000,
        "%00",
        "urn:uuid:12345678-1234-5678-1234-567812345678",
    ],
    ids=["random uuid", "not a uuid", "zero", "10k chars", "NUL", "urn"],
)
def test_unknown_ids_are_404(lenient_client, challenge_id):
    assert_error(resend(lenient_client, challenge_id), 404, "challenge_not_found")
    assert_error(verify(lenient_client, challenge_id, "123456"), 404, "challenge_not_found")
    assert_error(cancel(lenient_client, challenge_id), 404, "challenge_not_found")


def test_a_login_challenge_cannot_be_verified_here(client, phone_user, outbox):
    response = api_post(client, "login/", {"username": "alice", "password": PASSWORD})
    challenge_id = response.json()["challenge"]["id"]
    code = outbox[-1].code
    assert_error(verify(client, challenge_id, code), 404, "challenge_not_found")
    assert "_auth_user_id" not in client.session
    assert fresh(challenge_id).attempts == 0
    # The code still finishes the login where it belongs.
    response = api_post(client, "login/verify/", {"challenge": challenge_id, "code": code})
    assert response.status_code == 200


def test_a_device_challenge_cannot_be_verified_here(client, user, outbox):
    client.force_login(user)
    response = api_post(client, "devices/", {"phone": PHONE})
    assert response.status_code == 202
    challenge_id = response.json()["challenge"]["id"]
    assert_error(verify(client, challenge_id, outbox[-1].code), 404, "challenge_not_found")
    assert fresh(challenge_id).attempts == 0
    assert not PhoneDevice.objects.get().confirmed


@pytest.mark.parametrize("code", [123456, 12345.0, True, None, ["123456"], {"c": 1}])
def test_a_code_that_is_not_a_json_string_is_invalid_and_uses_no_attempt(client, outbox, code):
    """DRF's CharField would take 123456 as "123456" (and 012345 as "12345")."""
    created = api_post(client, "challenges/", {"phone": PHONE, "purpose": "verify_phone"})
    challenge_id = created.json()["id"]
    response = api_post(client, f"challenges/{challenge_id}/verify/", {"code": code})
    assert_error(response, 400, "invalid")
    assert Challenge.objects.get(pk=challenge_id).attempts == 0
