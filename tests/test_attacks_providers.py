"""Attacks on the signed delivery webhooks, on channels and "resend at once
after an uncertain send", and on the new providers' secrets.

Everything goes through the real Django test client and views. Each test
would fail if the defence it attacks were missing. Five holes these attacks
found were closed in the flows and in Twilio Verify (account oracles through
a failed passwordless resend, a provider-checked decoy and a provider's own
check limit; RESEND_INTERVAL bypassed by toggling channels; a check error
keeping the code in another spelling); their tests now hold.

1. Webhooks: forged, replayed or redirected callbacks of Twilio, Vonage and
   Amazon SNS answer 403 and change nothing; the old ``?secret=`` does not open
   a signing provider's webhook; an unsigned provider still needs its secret;
   one alias's callback never changes another alias's message; every 403 is
   the same answer, whatever check failed.
2. Channels and uncertain sends: what reaches a victim's phone stays within
   the per-channel limits (the bound is computed below); bad ``channel``
   values are 400s, never 500s; another client's challenge cannot be
   switched; the HTML page's "call me instead" needs its CSRF token; a
   passwordless challenge answers the same for numbers with and without an
   account, also when a resend fails or the provider's own limits refuse.
3. Secrets: tokens, keys, JWTs and Basic credentials echoed back by a
   provider in every failure kind reach neither the audit (``Message``), nor
   the API's answers, nor a log line at DEBUG (urllib3 included); nor does
   the code of a provider-side check.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import time
import uuid
from datetime import timedelta
from urllib.parse import quote, urlencode

import jwt
import pytest
import responses
import time_machine
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from rest_framework.test import APIClient

from django.test import Client
from django.urls import include, path
from django.utils import timezone

from django_sms2fa.exceptions import ProviderError, ProviderRejected, ProviderUnavailable
from django_sms2fa.models import Challenge, Message, PhoneDevice
from django_sms2fa.providers import get_provider, locmem
from django_sms2fa.providers.sns import AmazonSNSProvider
from django_sms2fa.testing import Answer
from django_sms2fa.testing.conformance import capture_logs
from django_sms2fa.types import DELIVERED, QUEUED, SENT

from .test_enumeration import KNOWN, NOW, UNKNOWN, comparable
from .test_send_limits import _age_redis

pytestmark = [pytest.mark.django_db, pytest.mark.urls(__name__)]

# The example site's URLs plus the delivery webhook (tests/urls.py has none).
urlpatterns = [
    path("api/2fa/", include("django_sms2fa.api.urls")),
    path("2fa/", include("django_sms2fa.urls")),
    path("webhooks/sms2fa/", include("django_sms2fa.delivery.urls")),
]

API = "/api/2fa/"
HOOKS = "/webhooks/sms2fa/"
PHONE = "+46701234567"
FORM = "application/x-www-form-urlencoded"

# --------------------------------------------------------------------- secrets

ACCOUNT = "AC" + "0123456789abcdef" * 2
TWILIO_TOKEN = "attack-twilio-auth-token-SECRET-0123"
TWILIO_KEY_SID = "SK" + "fedcba9876543210" * 2
TWILIO_KEY_SECRET = "attack-twilio-key-secret-SECRET-987"
VERIFY_SERVICE = "VA" + "00112233445566778899aabbccddeeff"
SID_A = "SM" + "aa" * 16
SID_B = "SM" + "bb" * 16
VONAGE_SIGNATURE_SECRET = "attack-vonage-signature-secret-0123456789abcdef-SECRET"
VONAGE_APP_ID = "aaaaaaaa-bbbb-4ccc-8ddd-0123456789ab"
VONAGE_API_KEY = "abcd1234"
VONAGE_API_SECRET = "attack-vonage-api-secret-SECRET-42"
REQUEST_A = "36e7060d-2b23-4257-bad0-773ab47f85ef"
REQUEST_B = "46e7060d-2b23-4257-bad0-773ab47f85ef"
GOSMS_SECRET = "attack-gosms-webhook-secret-SECRET"

_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
VONAGE_PEM = _KEY.private_bytes(
    serialization.Encoding.PEM,
    serialization.PrivateFormat.PKCS8,
    serialization.NoEncryption(),
).decode()
VONAGE_PUBLIC_PEM = (
    _KEY.public_key()
    .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    .decode()
)


# ===================================================================== 1. webhooks


def twilio_options(**extra) -> dict:
    return {
        "BACKEND": "django_sms2fa.providers.twilio.TwilioProvider",
        "OPTIONS": {
            "account_sid": ACCOUNT,
            "auth_token": TWILIO_TOKEN,
            "sender": "+15005550006",
            **extra,
        },
    }


def vonage_options(**extra) -> dict:
    return {
        "BACKEND": "django_sms2fa.providers.vonage.VonageVerifyProvider",
        "OPTIONS": {
            "brand": "Acme",
            "application_id": VONAGE_APP_ID,
            "private_key": VONAGE_PEM,
            "signature_secret": VONAGE_SIGNATURE_SECRET,
            **extra,
        },
    }


def local(alias: str, query: str = "") -> str:
    return f"http://testserver{HOOKS}{alias}/{query}"


@pytest.fixture
def hooks_site(sms2fa_settings):
    """Two Twilio aliases of one account (each with its status_callback), one
    without status_callback, two Vonage aliases of one account (one signature
    secret), and an unsigned provider (GoSMS) with its shared secret. The
    signing aliases also have a WEBHOOK_SECRETS entry, as a site migrating
    from the old scheme would: it must open nothing."""
    sms2fa_settings(
        PROVIDERS={
            "default": {"BACKEND": "django_sms2fa.providers.locmem.LocmemProvider"},
            "twilio": twilio_options(status_callback=local("twilio")),
            "twilio_b": twilio_options(status_callback=local("twilio_b")),
            "twilio_bare": twilio_options(),
            "vonage": vonage_options(),
            "vonage_b": vonage_options(),
            "gosms": {
                "BACKEND": "django_sms2fa.providers.gosms.GoSMSProvider",
                "OPTIONS": {"token": "attack-gosms-api-token-SECRET"},
            },
        },
        WEBHOOK_SECRETS={
            "twilio": GOSMS_SECRET,
            "twilio_bare": GOSMS_SECRET,
            "vonage": GOSMS_SECRET,
            "gosms": GOSMS_SECRET,
        },
    )


def message(alias: str, message_id: str, status: str = SENT) -> Message:
    now = timezone.now()
    return Message.objects.create(
        phone=PHONE,
        provider=alias,
        provider_message_id=message_id,
        status=status,
        created_at=now,
        sent_at=now,
    )


def state(row: Message) -> tuple:
    row.refresh_from_db()
    return (row.status, row.provider_status, row.status_changed_at)


def twilio_params(status: str = "delivered", sid: str = SID_A, **extra) -> dict[str, str]:
    return {
        "AccountSid": ACCOUNT,
        "ApiVersion": "2010-04-01",
        "From": "+15005550006",
        "MessageSid": sid,
        "MessageStatus": status,
        "SmsSid": sid,
        "SmsStatus": status,
        "To": PHONE,
        **extra,
    }


def twilio_sign(url: str, params, token: str = TWILIO_TOKEN) -> str:
    """Twilio's documented scheme, written independently of the provider's."""
    pairs = params.items() if isinstance(params, dict) else params
    signed = url + "".join(k + v for k, v in sorted(pairs))
    digest = hmac.new(token.encode(), signed.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def post_twilio(client, alias: str, body: str | bytes, signature: str | None, **extra):
    headers = dict(extra)
    if signature is not None:
        headers["HTTP_X_TWILIO_SIGNATURE"] = signature
    content_type = headers.pop("content_type", FORM)
    query = headers.pop("query", "")
    return client.post(f"{HOOKS}{alias}/{query}", data=body, content_type=content_type, **headers)


def vonage_event(status: str = "completed", request_id: str = REQUEST_A) -> dict:
    return {
        "request_id": request_id,
        "triggered_at": "2024-05-01T10:01:00.001Z",
        "type": "event",
        "channel": "sms",
        "status": status,
        "finalized_at": "2024-05-01T10:01:00.001Z",
    }


def vonage_token(body: bytes, *, key=VONAGE_SIGNATURE_SECRET, algorithm="HS256", **claims):
    payload = {
        "iat": int(time.time()),
        "jti": str(uuid.uuid4()),
        "iss": "Vonage",
        "payload_hash": hashlib.sha256(body).hexdigest(),
        "api_key": VONAGE_API_KEY,
        "application_id": VONAGE_APP_ID,
        **claims,
    }
    return jwt.encode(payload, key, algorithm=algorithm)


def _b64(value: bytes) -> str:
    return base64.urlsafe_b64encode(value).rstrip(b"=").decode()


def hand_made_token(header: dict, claims: dict, key: bytes) -> str:
    """A JWT signed with HMAC-SHA256 over any header (PyJWT refuses to make
    some of these, such as alg RS256 with an HMAC signature)."""
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    signature = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


def post_vonage(client, alias: str, body: bytes, token: str | None, scheme: str = "Bearer"):
    headers = {} if token is None else {"HTTP_AUTHORIZATION": f"{scheme} {token}"}
    return client.post(f"{HOOKS}{alias}/", data=body, content_type="application/json", **headers)


def forbidden_alike(answer) -> dict:
    """Everything a caller sees of a refusal (the Date header aside)."""
    headers = {k.lower(): v for k, v in answer.headers.items() if k.lower() != "date"}
    return {"status": answer.status_code, "body": answer.content, "headers": headers}


FORBIDDEN = {
    "status": 403,
    "body": b'{"error": {"code": "forbidden", "message": "Forbidden."}}',
}


def assert_forbidden(answer) -> None:
    seen = forbidden_alike(answer)
    assert (seen["status"], seen["body"]) == (FORBIDDEN["status"], FORBIDDEN["body"]), seen


# --------------------------------------------------------------- Twilio


def test_twilio_forgeries_are_403_and_change_nothing(client, hooks_site, changes):
    row = message("twilio", SID_A)
    before = state(row)
    params = twilio_params("failed")
    body = urlencode(params)
    url = local("twilio")
    attacks = {
        "no signature": (body, None, {}),
        "empty signature": (body, "", {}),
        "wrong key": (body, twilio_sign(url, params, token="guessed-" + TWILIO_TOKEN), {}),
        # Base64 of the right length, all zeros.
        "zeros": (body, base64.b64encode(b"\0" * 20).decode(), {}),
        # The right HMAC, but hex instead of base64.
        "hex digest": (
            body,
            hmac.new(
                TWILIO_TOKEN.encode(),
                (url + "".join(k + v for k, v in sorted(params.items()))).encode(),
                hashlib.sha1,
            ).hexdigest(),
            {},
        ),
        # A genuine signature over the same parameters for twilio_b's URL.
        "another alias's url": (body, twilio_sign(local("twilio_b"), params), {}),
        # Signed over https://, received over http:// (or the other way round).
        "other scheme": (body, twilio_sign(url.replace("http://", "https://"), params), {}),
        # A genuine signature for the body without the ErrorCode, posted with one.
        "added parameter": (
            urlencode({**params, "ErrorCode": "30003"}),
            twilio_sign(url, params),
            {},
        ),
        # A JSON body under a signature of the URL alone: nothing covers the body.
        "json without bodySHA256": (
            json.dumps({"MessageSid": SID_A, "MessageStatus": "failed"}),
            twilio_sign(url, {}),
            {"content_type": "application/json"},
        ),
        # A form body whose content type says something else.
        "form as text/plain": (body, twilio_sign(url, params), {"content_type": "text/plain"}),
        # A second value for a signed parameter (the signature covers a set of
        # values per name: this one is not in it).
        "duplicated parameter": (
            body + "&MessageStatus=delivered",
            twilio_sign(url, params),
            {},
        ),
        # Signed by a Webhooks Rule's SharedKey (not ours to check).
        "shared-key settings header": (
            body,
            twilio_sign(url, params),
            {"HTTP_X_TWILIO_WEBHOOKS_SIGNATURE_SETTINGS": "key=KS1,algorithm=HMAC_SHA1"},
        ),
    }
    for name, (data, signature, extra) in attacks.items():
        answer = post_twilio(client, "twilio", data, signature, **extra)
        assert answer.status_code == 403, name
        assert_forbidden(answer)
        assert state(row) == before, name
    assert changes == []


def test_twilio_a_repeated_identical_parameter_changes_nothing(client, hooks_site, changes):
    """Twilio's scheme signs the *set* of values of a name, so a parameter
    repeated with its own value keeps the signature; the parser refuses a
    name given twice, so the body still does nothing."""
    row = message("twilio", SID_A)
    params = twilio_params("failed")
    body = urlencode(params) + "&MessageStatus=failed"
    answer = post_twilio(client, "twilio", body, twilio_sign(local("twilio"), params))
    assert answer.status_code == 400
    assert state(row)[0] == SENT
    assert changes == []


def test_twilio_callback_for_alias_a_cannot_touch_alias_b(client, hooks_site, changes):
    row_a = message("twilio", SID_A)
    row_b = message("twilio_b", SID_B)
    # Twilio's genuine callback for twilio's message, replayed at twilio_b.
    params = twilio_params("failed", sid=SID_A)
    genuine = twilio_sign(local("twilio"), params)
    assert_forbidden(post_twilio(client, "twilio_b", urlencode(params), genuine))
    # A callback genuinely signed for twilio_b's URL naming twilio's message:
    # the signature holds, the message is another alias's: nothing changes.
    answer = post_twilio(
        client, "twilio_b", urlencode(params), twilio_sign(local("twilio_b"), params)
    )
    assert answer.status_code == 200
    assert answer.json() == {"received": 1, "updated": 0, "unknown": 1, "deferred": 0}
    assert state(row_a)[0] == SENT and state(row_b)[0] == SENT
    assert changes == []


@pytest.mark.parametrize("how", ["host", "x-forwarded-host", "forwarded-proto"])
def test_twilio_host_header_games_do_not_move_the_signed_url(
    client, hooks_site, settings, changes, how
):
    """With ``status_callback`` the signed URL is the configured one: a
    signature Twilio made for another site (the same account's staging, say)
    does not pass however the request names its host."""
    settings.USE_X_FORWARDED_HOST = True
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    row = message("twilio", SID_A)
    params = twilio_params("failed")
    other = f"https://staging.example.com{HOOKS}twilio/"
    headers = {
        "host": {"HTTP_HOST": "staging.example.com"},
        "x-forwarded-host": {"HTTP_X_FORWARDED_HOST": "staging.example.com"},
        "forwarded-proto": {
            "HTTP_X_FORWARDED_HOST": "staging.example.com",
            "HTTP_X_FORWARDED_PROTO": "https",
        },
    }[how]
    answer = post_twilio(client, "twilio", urlencode(params), twilio_sign(other, params), **headers)
    assert_forbidden(answer)
    assert state(row)[0] == SENT
    assert changes == []


def test_twilio_without_status_callback_a_foreign_host_is_refused_by_allowed_hosts(
    client, hooks_site, settings, changes
):
    """Without ``status_callback`` the signed URL is the one Django rebuilds
    from Host. A genuine signature for another host then passes only if that
    host is allowed: ALLOWED_HOSTS is the defence (docs must say so)."""
    settings.ALLOWED_HOSTS = ["testserver"]
    row = message("twilio_bare", SID_A)
    params = twilio_params("failed")
    other = f"http://staging.example.com{HOOKS}twilio_bare/"
    answer = post_twilio(
        client,
        "twilio_bare",
        urlencode(params),
        twilio_sign(other, params),
        HTTP_HOST="staging.example.com",
    )
    assert answer.status_code == 400  # DisallowedHost
    assert state(row)[0] == SENT
    # And the signature for our own URL with the spoofed query stripped: the
    # query is part of the signed URL.
    answer = post_twilio(
        client,
        "twilio_bare",
        urlencode(params),
        twilio_sign(local("twilio_bare"), params),
        query="?x=1",
    )
    assert_forbidden(answer)
    assert state(row)[0] == SENT
    assert changes == []


def test_twilio_body_sha256_for_another_body_is_refused(client, hooks_site, changes):
    row = message("twilio_bare", SID_A)
    good = json.dumps({"MessageSid": SID_A, "MessageStatus": "sent"})
    bad = json.dumps({"MessageSid": SID_A, "MessageStatus": "failed"})
    query = f"?bodySHA256={hashlib.sha256(good.encode()).hexdigest()}"
    signature = twilio_sign(local("twilio_bare", query), {})
    for body, extra_query in [
        (bad, ""),
        # A second bodySHA256 (of the bad body) after the signed one.
        (bad, f"&bodySHA256={hashlib.sha256(bad.encode()).hexdigest()}"),
    ]:
        answer = post_twilio(
            client,
            "twilio_bare",
            body,
            signature,
            content_type="application/json",
            query=query + extra_query,
        )
        assert_forbidden(answer)
    assert state(row)[0] == SENT
    assert changes == []


# --------------------------------------------------------------- Vonage


def _vonage_attacks(body: bytes) -> dict[str, str]:
    now = int(time.time())
    claims = {"iat": now, "payload_hash": hashlib.sha256(body).hexdigest()}
    header_none = _b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    return {
        "alg none": f"{header_none}.{_b64(json.dumps(claims).encode())}.",
        "alg None, signed": hand_made_token(
            {"alg": "None", "typ": "JWT"}, claims, VONAGE_SIGNATURE_SECRET.encode()
        ),
        # Algorithm confusion: RS256 in the header, HMAC with the public key
        # (or with the signature secret) as the "signature".
        "RS256 header, HMAC with the public key": hand_made_token(
            {"alg": "RS256", "typ": "JWT"}, claims, VONAGE_PUBLIC_PEM.encode()
        ),
        "RS256 header, HMAC with the secret": hand_made_token(
            {"alg": "RS256", "typ": "JWT"}, claims, VONAGE_SIGNATURE_SECRET.encode()
        ),
        "RS256 with the application's own private key": jwt.encode(
            claims, VONAGE_PEM, algorithm="RS256"
        ),
        "HS256 keyed with the public key": hand_made_token(
            {"alg": "HS256", "typ": "JWT"}, claims, VONAGE_PUBLIC_PEM.encode()
        ),
        "HS512 with the secret": vonage_token(body, algorithm="HS512"),
        "HS384 with the secret": vonage_token(body, algorithm="HS384"),
        "wrong secret": vonage_token(body, key="another-accounts-secret-0123456789abcdef-x"),
        "the API secret as key": vonage_token(body, key=VONAGE_API_SECRET + "0" * 10),
        "payload_hash of another body": vonage_token(
            body, payload_hash=hashlib.sha256(body + b" ").hexdigest().replace("0", "1")
        ),
        "payload_hash upper-case of another body": vonage_token(
            body, payload_hash=hashlib.sha256(b"{}").hexdigest().upper()
        ),
        "payload_hash not a string": vonage_token(body, payload_hash=12345),
        "iat far in the future": vonage_token(body, iat=now + 10 * 365 * 86400),
        "iat just past the skew": vonage_token(body, iat=now + 120),
        "iat a day old": vonage_token(body, iat=now - 86400),
        "iat as a string": vonage_token(body, iat=str(now)),
        "iat true": vonage_token(body, iat=True),
        "nbf in the future": vonage_token(body, nbf=now + 3600),
        "expired": vonage_token(body, exp=now - 1),
        "huge token": vonage_token(body, padding="x" * 9000),
        "two tokens": vonage_token(body) + " " + vonage_token(body),
        "kid/jku pointing elsewhere": hand_made_token(
            {"alg": "HS256", "typ": "JWT", "kid": "../../dev/null", "jku": "https://evil/"},
            claims,
            b"",
        ),
        "empty key": hand_made_token({"alg": "HS256", "typ": "JWT"}, claims, b""),
    }


@pytest.mark.filterwarnings("ignore:The HMAC key")  # the HS512 forgery's own key
def test_vonage_forgeries_are_403_and_change_nothing(client, hooks_site, changes):
    row = message("vonage", REQUEST_A)
    before = state(row)
    body = json.dumps(vonage_event("completed")).encode()
    for name, token in _vonage_attacks(body).items():
        answer = post_vonage(client, "vonage", body, token)
        assert answer.status_code == 403, name
        assert_forbidden(answer)
        assert state(row) == before, name
    for scheme in ("Basic", "bearer-ish", "JWT"):
        assert_forbidden(post_vonage(client, "vonage", body, vonage_token(body), scheme=scheme))
    assert state(row) == before
    assert changes == []
    # The control: the same body, signed as Vonage signs, goes through.
    assert post_vonage(client, "vonage", body, vonage_token(body)).status_code == 200
    assert state(row)[0] == DELIVERED


def test_vonage_compact_json_hash_does_not_let_duplicate_keys_through(client, hooks_site, changes):
    """``payload_hash`` may be over the compact re-serialisation of the body;
    a body with a duplicated key re-serialises to its *last* value, which is
    also what the parser reads: a hash over the compact form of a "failed"
    body must not pass a body that the parser reads as "completed"."""
    row = message("vonage", REQUEST_A)
    signed = vonage_event("failed")
    compact = json.dumps(signed, separators=(",", ":")).encode()
    token = vonage_token(compact)
    sneaky = compact[:-1] + b',"status":"completed"}'
    answer = post_vonage(client, "vonage", sneaky, token)
    assert_forbidden(answer)
    sneaky_first = b'{"status":"completed",' + compact[1:]
    answer = post_vonage(client, "vonage", sneaky_first, token)
    # Parsed last-wins both for the hash and the report: "failed", as signed.
    assert answer.status_code in (200, 403)
    assert state(row)[0] == SENT
    assert changes == []


def test_vonage_callback_for_alias_a_cannot_touch_alias_b(client, hooks_site, changes):
    """Both aliases share the account's signature secret, so a genuine
    callback of alias A verifies at B's URL too: the message look-up by alias
    is what keeps it from touching A's message from there."""
    row_a = message("vonage", REQUEST_A)
    row_b = message("vonage_b", REQUEST_B)
    body = json.dumps(vonage_event("completed", request_id=REQUEST_A)).encode()
    answer = post_vonage(client, "vonage_b", body, vonage_token(body))
    assert answer.status_code == 200
    assert answer.json() == {"received": 1, "updated": 0, "unknown": 1, "deferred": 0}
    assert state(row_a)[0] == SENT and state(row_b)[0] == SENT
    assert changes == []


# --------------------------------------------------------------- secrets, unsigned


@pytest.mark.parametrize("alias", ["twilio", "twilio_bare", "vonage"])
@pytest.mark.parametrize("where", ["query", "header", "basic"])
def test_the_old_shared_secret_opens_no_signing_providers_webhook(
    client, hooks_site, changes, alias, where
):
    row = message(alias, SID_A if alias.startswith("twilio") else REQUEST_A)
    if alias.startswith("twilio"):
        body, content_type = urlencode(twilio_params("failed")), FORM
    else:
        body = json.dumps(vonage_event("completed")).encode()
        content_type = "application/json"
    target = f"{HOOKS}{alias}/"
    headers = {}
    if where == "query":
        target += f"?secret={GOSMS_SECRET}"
    elif where == "header":
        headers["HTTP_X_SMS2FA_SECRET"] = GOSMS_SECRET
    else:
        pair = base64.b64encode(f"x:{GOSMS_SECRET}".encode()).decode()
        headers["HTTP_AUTHORIZATION"] = f"Basic {pair}"
    answer = client.post(target, data=body, content_type=content_type, **headers)
    assert_forbidden(answer)
    assert state(row)[0] == SENT
    assert changes == []


def test_an_unsigned_provider_still_needs_its_secret(client, hooks_site, changes):
    """GoSMS signs nothing: a Twilio signature, a Vonage JWT or no secret at
    all must not open its webhook (a 403 before any status look-up)."""
    body = json.dumps({"id": "5f0c7a2e9b1d4c3e8f7a6b5c", "status": "delivered"})
    params = {"id": "5f0c7a2e9b1d4c3e8f7a6b5c"}
    for headers in (
        {},
        {"HTTP_X_TWILIO_SIGNATURE": twilio_sign(local("gosms"), params)},
        {"HTTP_AUTHORIZATION": f"Bearer {vonage_token(body.encode())}"},
        {"HTTP_X_SMS2FA_SECRET": GOSMS_SECRET[:-1]},
    ):
        with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
            answer = client.post(
                f"{HOOKS}gosms/", data=body, content_type="application/json", **headers
            )
            assert len(rsps.calls) == 0  # no status look-up for an unauthenticated call
        assert_forbidden(answer)
    assert changes == []


def test_every_403_is_the_same_answer(client, hooks_site):
    """Whatever failed (secret missing or wrong, signature missing, forged,
    stale, for another URL, a JSON body no signature covers, alg none), the
    caller gets one status, one body and the same headers."""
    message("twilio", SID_A)
    message("vonage", REQUEST_A)
    params = twilio_params("failed")
    form = urlencode(params)
    vbody = json.dumps(vonage_event()).encode()
    now = int(time.time())
    answers = {
        "gosms no secret": client.post(
            f"{HOOKS}gosms/", data="{}", content_type="application/json"
        ),
        "gosms wrong secret": client.post(
            f"{HOOKS}gosms/?secret=nope", data="{}", content_type="application/json"
        ),
        "twilio no signature": post_twilio(client, "twilio", form, None),
        "twilio forged": post_twilio(client, "twilio", form, "Zm9yZ2Vk"),
        "twilio json": post_twilio(
            client,
            "twilio",
            "{}",
            twilio_sign(local("twilio"), {}),
            content_type="application/json",
        ),
        "vonage none": post_vonage(client, "vonage", vbody, None),
        "vonage stale": post_vonage(client, "vonage", vbody, vonage_token(vbody, iat=now - 3600)),
        "vonage forged": post_vonage(client, "vonage", vbody, vonage_token(vbody, key="x" * 40)),
        "vonage other body": post_vonage(client, "vonage", vbody, vonage_token(b"{}")),
    }
    seen = {name: forbidden_alike(answer) for name, answer in answers.items()}
    first = next(iter(seen.values()))
    assert first["status"] == 403
    for name, one in seen.items():
        assert one == first, name


# --------------------------------------------------------------- Amazon SNS


SNS_REGION = "eu-west-1"
SNS_TOPIC = f"arn:aws:sns:{SNS_REGION}:123456789012:sms-events"
SNS_OTHER_TOPIC = f"arn:aws:sns:{SNS_REGION}:123456789012:another-topic"
SNS_CERT = f"https://sns.{SNS_REGION}.amazonaws.com/SimpleNotificationService-abc.pem"
SNS_MID = "f4d6ae5c-4b2b-4f4e-9a41-2d0c3ad2b6e1"


@pytest.fixture(scope="module")
def sns_key():
    from datetime import UTC, datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    return key, cert.public_bytes(serialization.Encoding.PEM)


@pytest.fixture
def sns_site(sms2fa_settings, monkeypatch, sns_key):
    fetched: list[str] = []

    def fetch(self, url):
        fetched.append(url)
        return sns_key[1]

    monkeypatch.setattr(AmazonSNSProvider, "fetch_certificate", fetch)
    monkeypatch.setattr(
        AmazonSNSProvider, "confirm_subscription", lambda self, url: fetched.append("GET " + url)
    )

    def sns(topic: str) -> dict:
        return {
            "BACKEND": "django_sms2fa.providers.sns.AmazonSNSProvider",
            "OPTIONS": {
                "region_name": SNS_REGION,
                "access_key_id": "AKIAATTACKER0000TEST",
                "secret_access_key": "attack-aws-secret-access-key-SECRET-00000",
                "topic_arn": topic,
            },
        }

    sms2fa_settings(
        PROVIDERS={
            "default": {"BACKEND": "django_sms2fa.providers.locmem.LocmemProvider"},
            "sns": sns(SNS_TOPIC),
            "sns_b": sns(SNS_OTHER_TOPIC),
        },
        WEBHOOK_SECRETS={"sns": GOSMS_SECRET},
    )
    return fetched


def sns_notification(key, status: str = "DELIVERED", **fields) -> dict:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    stamp = (timezone.now()).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    event = {
        "eventType": f"TEXT_{status}",
        "isFinal": True,
        "messageId": SNS_MID,
        "messageStatus": status,
        "destinationPhoneNumber": PHONE,
    }
    envelope = {
        "Type": "Notification",
        "MessageId": "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324",
        "TopicArn": SNS_TOPIC,
        "Message": json.dumps(event),
        "Timestamp": stamp,
        **fields,
    }
    keys = ["Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"]
    text = "".join(f"{k}\n{envelope[k]}\n" for k in keys if k in envelope)
    signature = key.sign(text.encode(), padding.PKCS1v15(), hashes.SHA1())
    return {
        "SignatureVersion": "1",
        "Signature": base64.b64encode(signature).decode(),
        "SigningCertURL": SNS_CERT,
        **envelope,
    }


def post_sns(client, alias: str, envelope: dict, **headers):
    return client.post(
        f"{HOOKS}{alias}/",
        data=json.dumps(envelope),
        content_type="text/plain; charset=UTF-8",
        HTTP_X_AMZ_SNS_MESSAGE_TYPE=envelope.get("Type", "Notification"),
        **headers,
    )


SNS_CERT_URLS = {
    "http": SNS_CERT.replace("https://", "http://"),
    "sns.evil.com": "https://sns.evil.com/SimpleNotificationService-abc.pem",
    "suffix host": SNS_CERT.replace(".amazonaws.com/", ".amazonaws.com.evil.com/"),
    "us-east-1 suffix host": (
        "https://sns.us-east-1.amazonaws.com.evil.com/SimpleNotificationService-abc.pem"
    ),
    "userinfo": f"https://sns.{SNS_REGION}.amazonaws.com@evil.com/SimpleNotificationService.pem",
    "userinfo before": SNS_CERT.replace("https://", "https://evil.com@"),
    "backslash": f"https://evil.com\\@sns.{SNS_REGION}.amazonaws.com/x.pem",
    "ip": "https://52.94.236.248/SimpleNotificationService-abc.pem",
    "trailing dot": SNS_CERT.replace(".com/", ".com./"),
    "port 443": SNS_CERT.replace(".com/", ".com:443/"),
    "percent-encoded host": SNS_CERT.replace("sns.", "sns%2E"),
    "path traversal": f"https://sns.{SNS_REGION}.amazonaws.com/a/../x.pem",
    "query": SNS_CERT + "?.pem",
    "other region": SNS_CERT.replace(SNS_REGION, "us-east-1"),
    "not https upper": SNS_CERT.replace("https://", "HTTP://"),
    "empty": "",
}


@pytest.mark.parametrize("attack", sorted(SNS_CERT_URLS))
def test_sns_signing_cert_urls_off_sns_are_403_and_never_fetched(
    client, sns_site, sns_key, changes, attack
):
    row = message("sns", SNS_MID, status=QUEUED)
    # Signed with the test key: only the URL decides.
    envelope = sns_notification(sns_key[0])
    envelope["SigningCertURL"] = SNS_CERT_URLS[attack]
    assert_forbidden(post_sns(client, "sns", envelope))
    assert sns_site == []  # nothing fetched from anywhere
    assert state(row)[0] == QUEUED
    assert changes == []


def test_sns_other_topic_version_3_and_shared_secret_are_403(client, sns_site, sns_key, changes):
    row = message("sns", SNS_MID, status=QUEUED)
    key = sns_key[0]
    attacks = {
        "another topic of the account": sns_notification(key, TopicArn=SNS_OTHER_TOPIC),
        "another account's topic": sns_notification(
            key, TopicArn=SNS_TOPIC.replace("123456789012", "999999999999")
        ),
        "SignatureVersion 3": {**sns_notification(key), "SignatureVersion": "3"},
        "SignatureVersion 1 as a number": {**sns_notification(key), "SignatureVersion": 1},
    }
    for name, envelope in attacks.items():
        assert_forbidden(post_sns(client, "sns", envelope)), name
    # The old shared secret does not replace the signature.
    unsigned = {k: v for k, v in sns_notification(key).items() if k != "Signature"}
    answer = client.post(
        f"{HOOKS}sns/?secret={GOSMS_SECRET}",
        data=json.dumps(unsigned),
        content_type="text/plain",
    )
    assert_forbidden(answer)
    assert state(row)[0] == QUEUED
    assert changes == []
    # The control: signed and of our topic, it goes through.
    assert post_sns(client, "sns", sns_notification(key)).status_code == 200
    assert state(row)[0] == DELIVERED


def test_sns_a_notification_for_alias_a_cannot_touch_alias_b(client, sns_site, sns_key, changes):
    row_a = message("sns", SNS_MID, status=QUEUED)
    row_b = message("sns_b", SNS_MID, status=QUEUED)
    # sns's genuine notification (its topic) posted at sns_b (another topic).
    assert_forbidden(post_sns(client, "sns_b", sns_notification(sns_key[0])))
    # sns_b's own topic, same message id: only sns_b's row may move.
    answer = post_sns(client, "sns_b", sns_notification(sns_key[0], TopicArn=SNS_OTHER_TOPIC))
    assert answer.status_code == 200
    assert state(row_a)[0] == QUEUED
    assert state(row_b)[0] == DELIVERED


def test_sns_a_confirmation_of_another_topic_is_never_confirmed(client, sns_site, sns_key):
    """Subscribing the webhook to an attacker's topic: SNS signs that
    confirmation genuinely; the site must not GET its SubscribeURL."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    evil_topic = SNS_TOPIC.replace("123456789012", "999999999999")
    envelope = {
        "Type": "SubscriptionConfirmation",
        "MessageId": "165545c9-2a5c-472c-8df2-7ff2be2b3b1b",
        "Token": "2336412f37fb687f5d51e6e241d09c805a5a57b30d712f794cc5f6a988666d92768dd60a7",
        "TopicArn": evil_topic,
        "Message": "You have chosen to subscribe to the topic.",
        "SubscribeURL": (
            f"https://sns.{SNS_REGION}.amazonaws.com/?Action=ConfirmSubscription"
            f"&TopicArn={quote(evil_topic)}&Token=2336412f"
        ),
        "Timestamp": timezone.now().strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
    }
    keys = ["Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"]
    text = "".join(f"{k}\n{envelope[k]}\n" for k in keys)
    signature = sns_key[0].sign(text.encode(), padding.PKCS1v15(), hashes.SHA1())
    envelope.update(
        SignatureVersion="1",
        Signature=base64.b64encode(signature).decode(),
        SigningCertURL=SNS_CERT,
    )
    assert_forbidden(post_sns(client, "sns", envelope))
    assert not any(url.startswith("GET ") for url in sns_site)


# ================================================= 2. channels and uncertain sends


def advance(clock, seconds: float) -> None:
    """Move time_machine's clock and, on Redis, the keys' expiry with it."""
    clock.shift(timedelta(seconds=seconds))
    _age_redis(seconds)


def api_client(ip: str = "198.51.100.7") -> APIClient:
    client = APIClient(REMOTE_ADDR=ip)
    client.default_format = "json"
    return client


@pytest.fixture
def voice_site(sms2fa_settings):
    """A route that offers SMS, calls and WhatsApp (one locmem provider)."""
    sms2fa_settings(
        PROVIDERS={
            "default": {
                "BACKEND": "django_sms2fa.providers.locmem.LocmemProvider",
                "OPTIONS": {"channels": ["sms", "call", "whatsapp"]},
            }
        },
        WEBHOOK_SECRETS={},
    )


@pytest.fixture
def known(django_user_model):
    user = django_user_model.objects.create_user(username="alice", password="correct horse")
    PhoneDevice.objects.create(user=user, number=KNOWN, confirmed=True)
    return user


def _real_and_decoy() -> tuple[tuple[APIClient, str], tuple[APIClient, str]]:
    real_client, decoy_client = api_client(), api_client()
    real = real_client.post(f"{API}challenges/", {"phone": KNOWN, "purpose": "passwordless"})
    decoy = decoy_client.post(f"{API}challenges/", {"phone": UNKNOWN, "purpose": "passwordless"})
    assert real.status_code == 202, real.content
    assert comparable(decoy) == comparable(real)
    return (real_client, real.json()["id"]), (decoy_client, decoy.json()["id"])


FAILED_RESEND = {
    "refused": lambda: ProviderRejected("the number takes no calls"),
    "down": lambda: ProviderUnavailable("down"),
    "provider limit": lambda: ProviderRejected(
        provider_code="60203", provider_limit="send", retry_after=600
    ),
}


@pytest.mark.parametrize("channel", [None, "call"], ids=["resend", "call-me-instead"])
@pytest.mark.parametrize("failure", sorted(FAILED_RESEND))
def test_passwordless_failed_resend_answers_like_a_decoy(
    voice_site, known, outbox, channel, failure
):
    with time_machine.travel(NOW, tick=False):
        (real_client, real), (decoy_client, decoy) = _real_and_decoy()
        body = {} if channel is None else {"channel": channel}
        locmem.fail_next(FAILED_RESEND[failure]())
        real_answer = real_client.post(f"{API}challenges/{real}/resend/", body)
        decoy_answer = decoy_client.post(f"{API}challenges/{decoy}/resend/", body)
    assert comparable(decoy_answer) == comparable(real_answer)


@pytest.mark.parametrize("channel", [None, "call"], ids=["resend", "call-me-instead"])
def test_passwordless_uncertain_resend_answers_like_a_decoy(voice_site, known, outbox, channel):
    """An uncertain send is never told in passwordless: no delivery_uncertain,
    no resend at once, the same answers after it as a decoy's."""
    with time_machine.travel(NOW, tick=False):
        (real_client, real), (decoy_client, decoy) = _real_and_decoy()
        body = {} if channel is None else {"channel": channel}
        locmem.fail_next(ProviderUnavailable("read timeout", may_have_sent=True))
        answers = [
            client.post(f"{API}challenges/{cid}/resend/", body)
            for client, cid in ((real_client, real), (decoy_client, decoy))
        ]
        assert comparable(answers[1]) == comparable(answers[0])
        assert answers[0].status_code == 202
        assert answers[0].json()["delivery_uncertain"] is False
        # And the next resend is held back the same for both.
        again = [
            client.post(f"{API}challenges/{cid}/resend/", {})
            for client, cid in ((real_client, real), (decoy_client, decoy))
        ]
        assert comparable(again[1]) == comparable(again[0])


def test_twilio_verify_limit_reached_by_switching_channels_is_an_account_oracle(
    sms2fa_settings, send_limits, known
):
    sms2fa_settings(
        PROVIDERS={
            "default": {
                "BACKEND": "django_sms2fa.providers.twilio_verify.TwilioVerifyProvider",
                "OPTIONS": {
                    "account_sid": ACCOUNT,
                    "auth_token": TWILIO_TOKEN,
                    "service_sid": VERIFY_SERVICE,
                },
            }
        },
    )
    start = f"https://verify.twilio.com/v2/Services/{VERIFY_SERVICE}/Verifications"
    sent: list[str] = []

    def verification(request):
        sent.append(request.body)
        if len(sent) > 5:  # Twilio Verify: five sends to one number in ten minutes
            error = {"code": 60203, "message": "Max send attempts reached", "status": 429}
            return (429, {}, json.dumps(error))
        sid = "VE" + f"{len(sent):032x}"
        return (201, {}, json.dumps({"sid": sid, "status": "pending", "to": KNOWN}))

    trail = []
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.add_callback(responses.POST, start, callback=verification)
        rsps.add(responses.DELETE, re.compile(r".*"), status=204)
        with time_machine.travel(NOW, tick=False) as clock:
            (real_client, real), (decoy_client, decoy) = _real_and_decoy()
            for step in ["sms"] * 4 + ["call"]:
                advance(clock, 31)
                body = {} if step == "sms" else {"channel": "call"}
                answers = [
                    client.post(f"{API}challenges/{cid}/resend/", body)
                    for client, cid in ((real_client, real), (decoy_client, decoy))
                ]
                trail.append(answers[0].status_code)
                assert comparable(answers[1]) == comparable(answers[0]), (step, trail)


def test_passwordless_page_call_me_instead_failure_answers_like_a_decoy(voice_site, known, outbox):
    answers = []
    with time_machine.travel(NOW, tick=False):
        for phone in (KNOWN, UNKNOWN):
            client = Client(REMOTE_ADDR="198.51.100.9")
            start = client.post("/2fa/phone-login/", {"phone": phone})
            assert start.status_code == 302
            locmem.fail_next(ProviderRejected("the number takes no calls"))
            answers.append(
                client.post("/2fa/phone-login/code/", {"resend": "1", "channel": "call"})
            )
        locmem.reset()
    assert [a.status_code for a in answers][0] == answers[1].status_code
    assert answers[0].headers.get("Location") == answers[1].headers.get("Location")


def test_passwordless_channels_and_call_me_instead_answer_the_same(voice_site, known, outbox):
    with time_machine.travel(NOW, tick=False):
        (real_client, real), (decoy_client, decoy) = _real_and_decoy()
        for channel in ("call", "whatsapp", "sms", "call"):
            answers = [
                client.post(f"{API}challenges/{cid}/resend/", {"channel": channel})
                for client, cid in ((real_client, real), (decoy_client, decoy))
            ]
            assert answers[0].status_code == 202
            assert comparable(answers[1]) == comparable(answers[0]), channel
            assert answers[0].json()["channels"] == ["sms", "call", "whatsapp"]
            assert answers[0].json()["channel"] == channel
    assert {sms.to for sms in outbox} == {KNOWN}
    assert [sms.channel for sms in outbox] == ["sms", "call", "whatsapp", "sms", "call"]


BAD_CHANNELS = [
    "CALL",
    "voice",
    "",
    " call",
    "call\x00",
    "sms,call",
    "x" * 5000,
    None,
    0,
    1,
    True,
    ["call"],
    {"call": 1},
    1.5,
    "\ud800",
]


@pytest.mark.parametrize("value", BAD_CHANNELS, ids=lambda v: repr(v)[:20])
def test_bad_channel_values_are_400_never_500(voice_site, outbox, value):
    client = api_client()
    raw = json.dumps({"phone": PHONE, "purpose": "verify_phone", "channel": value})
    answer = client.post(f"{API}challenges/", raw, content_type="application/json")
    assert answer.status_code == 400, answer.content
    assert answer.json()["error"]["code"] in ("invalid", "parse_error")
    good = client.post(f"{API}challenges/", {"phone": PHONE, "purpose": "verify_phone"})
    assert good.status_code == 202
    raw = json.dumps({"channel": value})
    resend = client.post(
        f"{API}challenges/{good.json()['id']}/resend/", raw, content_type="application/json"
    )
    assert resend.status_code == 400, resend.content
    assert len(outbox) == 1
    assert Challenge.objects.get(pk=good.json()["id"]).channel == "sms"


@pytest.mark.parametrize("value", ["CALL", "voice", "call\x00", "x" * 5000, "\ud800"[:0] + "é"])
def test_bad_channel_on_the_html_page_is_no_500_and_sends_nothing(voice_site, known, outbox, value):
    client = Client(REMOTE_ADDR="198.51.100.9")
    assert client.post("/2fa/phone-login/", {"phone": KNOWN}).status_code == 302
    sent = len(outbox)
    answer = client.post("/2fa/phone-login/code/", {"resend": "1", "channel": value})
    assert answer.status_code < 500
    assert len(outbox) == sent


def test_html_call_me_instead_needs_the_csrf_token(voice_site, known, outbox):
    client = Client(enforce_csrf_checks=True, REMOTE_ADDR="198.51.100.9")
    page = client.get("/2fa/phone-login/")
    token = page.cookies["csrftoken"].value
    start = client.post("/2fa/phone-login/", {"phone": KNOWN, "csrfmiddlewaretoken": token})
    assert start.status_code == 302
    challenge = Challenge.objects.get()
    sent = len(outbox)
    forged = client.post("/2fa/phone-login/code/", {"resend": "1", "channel": "call"})
    assert forged.status_code == 403
    wrong = client.post(
        "/2fa/phone-login/code/",
        {"resend": "1", "channel": "call", "csrfmiddlewaretoken": "x" * 64},
    )
    assert wrong.status_code == 403
    assert len(outbox) == sent
    challenge.refresh_from_db()
    assert challenge.channel == "sms"
    # The control: with its token the switch works.
    ok = client.post(
        "/2fa/phone-login/code/",
        {"resend": "1", "channel": "call", "csrfmiddlewaretoken": token},
    )
    assert ok.status_code == 302
    assert outbox[-1].channel == "call"


def test_html_login_code_page_switches_only_the_sessions_own_challenge(
    voice_site, known, other_user, outbox
):
    """The page takes the challenge from the session; a challenge id posted
    by the client (another user's) is ignored."""
    PhoneDevice.objects.create(user=other_user, number=UNKNOWN, confirmed=True)
    victim = Client(REMOTE_ADDR="198.51.100.1")
    assert (
        victim.post("/2fa/login/", {"username": "alice", "password": "correct horse"}).status_code
        == 302
    )
    victims = Challenge.objects.get(user=known)
    attacker = Client(REMOTE_ADDR="198.51.100.2")
    assert (
        attacker.post("/2fa/login/", {"username": "bob", "password": "battery staple"}).status_code
        == 302
    )
    sent = len(outbox)
    answer = attacker.post(
        "/2fa/login/code/",
        {
            "resend": "1",
            "channel": "call",
            "challenge_id": str(victims.pk),
            "challenge": str(victims.pk),
        },
    )
    assert answer.status_code == 302
    assert [sms.to for sms in outbox[sent:]] == [UNKNOWN]
    victims.refresh_from_db()
    assert victims.channel == "sms"


def test_api_switch_on_another_clients_challenge_is_404_and_sends_nothing(
    voice_site, known, other_user, outbox
):
    owner = api_client()
    mine = owner.post(f"{API}challenges/", {"phone": PHONE, "purpose": "verify_phone"})
    assert mine.status_code == 202
    sent = len(outbox)
    stranger = api_client("203.0.113.5")
    stranger.force_authenticate(other_user)  # logged in, but not the owner
    for channel in ("call", "whatsapp", "sms", None):
        body = {} if channel is None else {"channel": channel}
        answer = stranger.post(f"{API}challenges/{mine.json()['id']}/resend/", body)
        assert answer.status_code == 404
        assert answer.json()["error"]["code"] == "challenge_not_found"
    anonymous = api_client("203.0.113.6")
    assert (
        anonymous.post(
            f"{API}challenges/{mine.json()['id']}/resend/", {"channel": "call"}
        ).status_code
        == 404
    )
    assert len(outbox) == sent
    assert Challenge.objects.get(pk=mine.json()["id"]).channel == "sms"


def test_channel_switching_bound_per_phone(voice_site, send_limits, outbox):
    """An anonymous attacker, from a fresh IP each time, asks for codes to a
    victim's number on every channel as fast as the limits allow.

    The bound: the phone's limits are counted per channel (and per sender
    budget), so in one 10-minute window at most 5 codes per channel reach the
    phone, 15 with three channels; in one day window at most 10 per channel,
    30. The windows are fixed (ratelimit.py), so across a boundary twice that
    can pass within ten minutes (30) or 24 hours (60). The per-IP,
    per-country and site-wide limits count every channel together."""
    victim = "+46701112233"
    addresses = (f"198.{n // 62500}.{n // 250 % 250}.{n % 250 + 1}" for n in range(10**6))

    def burst() -> None:
        # One request per channel, each from a fresh address (the per-IP
        # limit counts every channel together: a botnet is assumed).
        for channel in ("sms", "call", "whatsapp"):
            api_client(next(addresses)).post(
                f"{API}challenges/",
                {"phone": victim, "purpose": "verify_phone", "channel": channel},
            )

    midnight = NOW.replace(hour=0, minute=0, second=0, microsecond=0)
    with time_machine.travel(midnight, tick=False) as clock:
        for _ in range(19):  # every 31 s for ten minutes: past each 30 s cooldown
            burst()
            advance(clock, 31)
        ten_minutes = len(outbox)
        for _ in range(6 * 24 - 1):  # then every ten minutes for the rest of the day
            burst()
            advance(clock, 600)
        day = len(outbox)
        # Across the day boundary the next day's budget opens at once.
        advance(clock, (midnight + timedelta(days=1, seconds=1) - timezone.now()).total_seconds())
        burst()
        across = len(outbox) - day
    per_channel = {c: sum(1 for s in outbox if s.channel == c) for c in ("sms", "call", "whatsapp")}
    assert ten_minutes == 3 * 5, ten_minutes  # "5/10m" per channel
    assert day == 3 * 10, (day, per_channel)  # "10/d" per channel
    assert across == 3
    assert set(per_channel.values()) == {11}  # ten each day, and one of the next


def test_toggling_channels_does_not_bypass_resend_interval(
    voice_site, send_limits, sms2fa_settings, outbox
):
    sms2fa_settings(RESEND_INTERVAL=120)
    client = api_client()
    with time_machine.travel(NOW, tick=False) as clock:
        first = client.post(f"{API}challenges/", {"phone": PHONE, "purpose": "verify_phone"})
        cid = first.json()["id"]
        assert client.post(f"{API}challenges/{cid}/resend/", {"channel": "call"}).status_code == 202
        advance(clock, 31)
        back = client.post(f"{API}challenges/{cid}/resend/", {"channel": "sms"})
    assert back.status_code == 429, [s.channel for s in outbox]


def test_uncertain_sends_reopen_resend_but_not_the_windows(voice_site, send_limits, outbox):
    """A provider that always times out after the request left: every send is
    uncertain, so resend/ opens at once each time (the cooldowns are given
    back) — but the windows keep each send: 5 per 10 minutes for the phone."""
    client = api_client()
    locmem.fail_next(ProviderUnavailable("read timeout", may_have_sent=True), times=50)
    with time_machine.travel(NOW, tick=False):
        first = client.post(f"{API}challenges/", {"phone": PHONE, "purpose": "verify_phone"})
        assert first.status_code == 202
        assert first.json()["delivery_uncertain"] is True
        cid = first.json()["id"]
        statuses = [client.post(f"{API}challenges/{cid}/resend/", {}).status_code for _ in range(8)]
        # A new challenge for the same phone is held by the same window.
        again = client.post(f"{API}challenges/", {"phone": PHONE, "purpose": "verify_phone"})
    assert statuses[:4] == [202] * 4
    assert statuses[4:] == [429] * 4
    assert again.status_code == 429
    assert len(locmem.maybe_sent) == 5


def test_a_send_is_uncertain_only_by_the_providers_answer(voice_site, outbox):
    """Nothing a client sends makes a send uncertain: odd spellings of the
    number, a channel, a language — with a provider that takes the SMS, the
    answer is never delivery_uncertain and resend/ stays behind its interval."""
    from django.conf import settings

    settings.SMS2FA = {**settings.SMS2FA, "RESEND_INTERVAL": 30}
    for phone in ("+46 70 123 45 67", "0046701234567", "+46-70-123-45-67", "+46701234567 "):
        client = api_client()
        answer = client.post(
            f"{API}challenges/",
            {"phone": phone, "purpose": "verify_phone", "channel": "call"},
            HTTP_ACCEPT_LANGUAGE="xx-invalid;q=2",
        )
        assert answer.status_code == 202, (phone, answer.content)
        assert answer.json()["delivery_uncertain"] is False
        resend = client.post(f"{API}challenges/{answer.json()['id']}/resend/", {})
        assert resend.status_code == 429


# ================================================================ 3. secrets


def leaks(text: str, values) -> list[str]:
    """The names of ``values`` found in ``text`` (never the values)."""
    found = []
    for name, value in values.items():
        if not value:
            continue
        for form in {value, quote(value, safe=""), json.dumps(value)[1:-1]}:
            if form in text:
                found.append(name)
                break
    return found


def code_spellings(code: str) -> list[str]:
    return [code, " ".join(code), "-".join(code), f"{code[:3]} {code[3:]}"]


def echo_everything(status: int, content_type: str = "application/json"):
    """A provider that answers with everything it received (a debugging proxy,
    a misconfigured gateway), under any status."""

    def handler(request):
        # What matters first: answers are shortened to a few hundred characters.
        # The credential bare too (no "Authorization: Basic" before it, which
        # the audit's scrubber would catch on its own).
        credential = request.headers.get("authorization", "").partition(" ")[2]
        text = f"seen ({credential}) Authorization: {request.headers.get('authorization', '')} "
        text += request.body.decode("utf-8", "replace")[:200]
        if content_type == "application/json":
            body = json.dumps(
                {"code": 20500, "message": text, "title": text, "detail": text, "status": status}
            ).encode()
        else:
            body = f"<html><body><pre>{text}</pre></body></html>".encode()
        return Answer(status=status, body=body, headers={"Content-Type": content_type})

    return handler


ECHO_KINDS = [
    (400, "application/json"),
    (401, "application/json"),
    (403, "text/html"),
    (429, "application/json"),
    (500, "application/json"),
    (503, "text/html"),
    (200, "text/html"),
    (201, "text/html"),
]


def _everything_seen(records, answer) -> str:
    parts = [r.getMessage() for r in records]
    parts += [str(r.args) for r in records]
    parts += [r.exc_text or "" for r in records]
    parts.append(answer.content.decode("utf-8", "replace"))
    for row in Message.objects.all():
        parts += [row.error_text, row.error_code, row.provider_status, row.text_masked]
    return "\n".join(parts)


@pytest.mark.parametrize("status,content_type", ECHO_KINDS)
@pytest.mark.parametrize("auth", ["token", "api key"])
def test_twilio_echoed_credentials_and_code_reach_no_log_row_or_answer(
    loopback, sms2fa_settings, status, content_type, auth, monkeypatch
):
    options = {"account_sid": ACCOUNT, "sender": "+15005550006", "base_url": loopback.url}
    if auth == "token":
        options["auth_token"] = TWILIO_TOKEN
    else:
        options.update(api_key_sid=TWILIO_KEY_SID, api_key_secret=TWILIO_KEY_SECRET)
    sms2fa_settings(
        PROVIDERS={
            "default": {
                "BACKEND": "django_sms2fa.providers.twilio.TwilioProvider",
                "OPTIONS": options,
            }
        }
    )
    code = "480315"
    monkeypatch.setattr("django_sms2fa.flows.generate_code", lambda length: code)
    loopback.handler = echo_everything(status, content_type)
    user, password = (
        (ACCOUNT, TWILIO_TOKEN) if auth == "token" else (TWILIO_KEY_SID, TWILIO_KEY_SECRET)
    )
    basic = base64.b64encode(f"{user}:{password}".encode()).decode()
    with capture_logs() as records:
        answer = api_client().post(f"{API}challenges/", {"phone": PHONE, "purpose": "verify_phone"})
    assert loopback.requests, "the provider was called"
    seen = _everything_seen(records, answer)
    secrets = {"auth token": TWILIO_TOKEN, "key secret": TWILIO_KEY_SECRET, "basic": basic}
    assert leaks(seen, secrets) == []
    assert not [s for s in code_spellings(code) if s in seen]


def _vonage_site(sms2fa_settings, base_url: str, mode: str) -> None:
    options = {"brand": "Acme", "base_url": base_url, "signature_secret": VONAGE_SIGNATURE_SECRET}
    if mode == "jwt":
        options.update(application_id=VONAGE_APP_ID, private_key=VONAGE_PEM)
    else:
        options.update(api_key=VONAGE_API_KEY, api_secret=VONAGE_API_SECRET)
    sms2fa_settings(
        PROVIDERS={
            "default": {
                "BACKEND": "django_sms2fa.providers.vonage.VonageVerifyProvider",
                "OPTIONS": options,
            }
        }
    )


def _vonage_secrets(records_text: str) -> dict[str, str]:
    secrets = {
        "api secret": VONAGE_API_SECRET,
        "basic": base64.b64encode(f"{VONAGE_API_KEY}:{VONAGE_API_SECRET}".encode()).decode(),
        "signature secret": VONAGE_SIGNATURE_SECRET,
    }
    for number, line in enumerate(VONAGE_PEM.splitlines()):
        if "-----" not in line:
            secrets[f"pem line {number}"] = line
    return secrets


def _minted_jwts(loopback) -> dict[str, str]:
    found = {}
    for number, request in enumerate(loopback.requests):
        value = request.headers.get("authorization", "")
        if value.startswith("Bearer "):
            token = value[len("Bearer ") :]
            found[f"jwt {number}"] = token
            # A piece of the signature is enough to tell that the token
            # leaked (answers are shortened: the whole token may not fit).
            found[f"jwt {number} signature"] = token.rsplit(".", 1)[1][:24]
    return found


@pytest.mark.parametrize("status,content_type", ECHO_KINDS)
@pytest.mark.parametrize("mode", ["jwt", "basic"])
def test_vonage_echoed_credentials_reach_no_log_row_or_answer(
    loopback, sms2fa_settings, status, content_type, mode
):
    _vonage_site(sms2fa_settings, loopback.url, mode)
    loopback.handler = echo_everything(status, content_type)
    with capture_logs() as records:
        answer = api_client().post(f"{API}challenges/", {"phone": PHONE, "purpose": "verify_phone"})
    assert loopback.requests
    seen = _everything_seen(records, answer)
    secrets = {**_vonage_secrets(seen), **_minted_jwts(loopback)}
    assert leaks(seen, secrets) == []


@pytest.mark.parametrize(
    "status,content_type", [(400, "application/json"), (401, "application/json"),
                            (410, "application/json"), (500, "application/json"),
                            (502, "text/html"), (200, "text/html")]
)  # fmt: skip
@pytest.mark.parametrize("mode", ["jwt", "basic"])
def test_vonage_check_failures_leak_neither_code_nor_credentials(
    loopback, sms2fa_settings, status, content_type, mode
):
    _vonage_site(sms2fa_settings, loopback.url, mode)
    loopback.always(202, {"request_id": REQUEST_A})
    client = api_client()
    start = client.post(f"{API}challenges/", {"phone": PHONE, "purpose": "verify_phone"})
    assert start.status_code == 202, start.content
    loopback.handler = echo_everything(status, content_type)
    guess = "735194"
    with capture_logs() as records:
        answer = client.post(f"{API}challenges/{start.json()['id']}/verify/", {"code": guess})
    assert any(r.path.endswith(REQUEST_A) for r in loopback.requests)
    seen = _everything_seen(records, answer)
    assert leaks(seen, {**_vonage_secrets(seen), **_minted_jwts(loopback)}) == []
    assert not [s for s in code_spellings(guess) if s in seen]


@pytest.mark.parametrize(
    "status,content_type", [(400, "application/json"), (401, "application/json"),
                            (429, "application/json"), (500, "application/json"),
                            (502, "text/html"), (200, "text/html")]
)  # fmt: skip
def test_twilio_verify_check_failures_leak_neither_code_nor_credentials(
    loopback, sms2fa_settings, status, content_type
):
    sms2fa_settings(
        PROVIDERS={
            "default": {
                "BACKEND": "django_sms2fa.providers.twilio_verify.TwilioVerifyProvider",
                "OPTIONS": {
                    "account_sid": ACCOUNT,
                    "auth_token": TWILIO_TOKEN,
                    "service_sid": VERIFY_SERVICE,
                    "base_url": loopback.url,
                },
            }
        }
    )
    loopback.always(201, {"sid": "VE" + "ab" * 16, "status": "pending"})
    client = api_client()
    start = client.post(f"{API}challenges/", {"phone": PHONE, "purpose": "verify_phone"})
    assert start.status_code == 202, start.content
    loopback.handler = echo_everything(status, content_type)
    guess = "735194"
    with capture_logs() as records:
        answer = client.post(f"{API}challenges/{start.json()['id']}/verify/", {"code": guess})
    assert any("VerificationCheck" in r.path for r in loopback.requests)
    seen = _everything_seen(records, answer)
    basic = base64.b64encode(f"{ACCOUNT}:{TWILIO_TOKEN}".encode()).decode()
    assert leaks(seen, {"token": TWILIO_TOKEN, "basic": basic}) == []
    assert not [s for s in code_spellings(guess) if s in seen]


SPELLED_ECHOES = {
    "spaced": lambda code: " ".join(code),
    "dashed": lambda code: "-".join(code),
    "grouped": lambda code: f"{code[:3]} {code[3:]}",
    "json-escaped": lambda code: "".join(f"\\u00{ord(c):x}" for c in code),
    "percent-encoded": lambda code: "".join(f"%{ord(c):X}" for c in code),
}


@pytest.mark.parametrize("spelling", sorted(SPELLED_ECHOES))
@pytest.mark.parametrize(
    "provider",
    [
        pytest.param(
            "twilio_verify",
        ),
        "vonage",
    ],
)
def test_a_check_error_echoing_the_code_in_any_spelling_keeps_it_out_of_the_error_text(
    provider, spelling, loopback
):
    """The send path blanks the code in any spelling (BaseProvider.send,
    redaction.blank_known_codes); a check's error text must too, since it
    is an error text a site may log or report (Sentry, the 500 e-mail)."""
    from django_sms2fa.providers.twilio_verify import TwilioVerifyProvider
    from django_sms2fa.providers.vonage import VonageVerifyProvider

    guess = "735194"
    echoed = SPELLED_ECHOES[spelling](guess)
    if provider == "twilio_verify":
        target = TwilioVerifyProvider(
            account_sid=ACCOUNT,
            auth_token=TWILIO_TOKEN,
            service_sid=VERIFY_SERVICE,
            base_url=loopback.url,
        )
        body = {"code": 20500, "message": f"Internal error for Code={echoed}", "status": 500}
        message_id = "VE" + "ab" * 16
    else:
        target = VonageVerifyProvider(
            brand="Acme",
            api_key=VONAGE_API_KEY,
            api_secret=VONAGE_API_SECRET,
            base_url=loopback.url,
        )
        body = {"title": "Internal Error", "detail": f"could not check code {echoed}"}
        message_id = REQUEST_A
    loopback.always(500, json.dumps(body).encode())
    with capture_logs() as records, pytest.raises(ProviderError) as err:
        target.check_code(phone=PHONE, code=guess, message_id=message_id)
    text = f"{err.value.provider_text} {err.value.provider_code} {err.value}"
    text += " ".join(r.getMessage() for r in records)
    from django_sms2fa.providers.redaction import unfold

    assert guess not in unfold(text)
    assert not [s for s in code_spellings(guess) if s in text]


def test_sns_secrets_never_reach_the_webhook_answer_or_logs(client, sns_site, sns_key):
    """A refused SNS notification logs why (topic, stale, ...) but never the
    provider's AWS credentials, nor the certificate URL's query."""
    provider = get_provider("sns")
    assert provider is not None
    with capture_logs() as records:
        answers = [
            post_sns(client, "sns", sns_notification(sns_key[0], TopicArn=SNS_OTHER_TOPIC)),
            post_sns(client, "sns", {**sns_notification(sns_key[0]), "Signature": "!!"}),
        ]
    text = "\n".join(r.getMessage() for r in records) + "".join(a.content.decode() for a in answers)
    assert "attack-aws-secret-access-key-SECRET-00000" not in text
    assert all(a.status_code == 403 for a in answers)


# ------------------------------------------- provider-checked codes on a decoy


def _provider_checked_site(sms2fa_settings, provider: str) -> None:
    if provider == "vonage":
        backend = {
            "BACKEND": "django_sms2fa.providers.vonage.VonageVerifyProvider",
            "OPTIONS": {
                "brand": "Acme",
                "application_id": VONAGE_APP_ID,
                "private_key": VONAGE_PEM,
            },
        }
    else:
        backend = {
            "BACKEND": "django_sms2fa.providers.twilio_verify.TwilioVerifyProvider",
            "OPTIONS": {
                "account_sid": ACCOUNT,
                "auth_token": TWILIO_TOKEN,
                "service_sid": VERIFY_SERVICE,
            },
        }
    sms2fa_settings(PROVIDERS={"default": backend})


def _fake_provider_checks(rsps, provider: str) -> None:
    """The provider as documented: a started verification, and a wrong code
    answered as a wrong code (Vonage 400 invalid-code; Twilio 200 pending, or
    20404 for a number with no verification pending)."""
    if provider == "vonage":
        rsps.add(
            responses.POST,
            "https://api.nexmo.com/v2/verify",
            json={"request_id": REQUEST_A},
            status=202,
        )
        rsps.add(
            responses.POST,
            re.compile(r"https://api\.nexmo\.com/v2/verify/.+"),
            status=400,
            json={
                "type": "https://developer.vonage.com/api-errors/verify-v2#invalid-code",
                "title": "Invalid Code",
                "detail": "The code you provided does not match the expected value.",
            },
        )
        return
    base = f"https://verify.twilio.com/v2/Services/{VERIFY_SERVICE}"
    sid = "VE" + "ab" * 16
    rsps.add(
        responses.POST, f"{base}/Verifications", json={"sid": sid, "status": "pending"}, status=201
    )

    def check(request):
        if "VerificationSid=" in request.body:
            return (200, {}, json.dumps({"sid": sid, "status": "pending", "valid": False}))
        error = {"code": 20404, "message": "The requested resource was not found", "status": 404}
        return (404, {}, json.dumps(error))

    rsps.add_callback(responses.POST, f"{base}/VerificationCheck", callback=check)


@pytest.mark.parametrize(
    "provider",
    [
        pytest.param(
            "vonage",
        ),
        "twilio_verify",
    ],
)
def test_a_wrong_code_on_a_provider_checked_decoy_answers_like_a_real_one(
    sms2fa_settings, known, provider
):
    _provider_checked_site(sms2fa_settings, provider)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        _fake_provider_checks(rsps, provider)
        with time_machine.travel(NOW, tick=False):
            (real_client, real), (decoy_client, decoy) = _real_and_decoy()
            for attempt in range(6):
                answers = [
                    client.post(f"{API}challenges/{cid}/verify/", {"code": "999999"})
                    for client, cid in ((real_client, real), (decoy_client, decoy))
                ]
                assert comparable(answers[1]) == comparable(answers[0]), attempt


def test_the_providers_own_check_limit_answers_like_a_decoy(sms2fa_settings, known):
    _provider_checked_site(sms2fa_settings, "twilio_verify")
    sms2fa_settings(MAX_ATTEMPTS=10)
    base = f"https://verify.twilio.com/v2/Services/{VERIFY_SERVICE}"
    sid = "VE" + "ab" * 16
    checks: list[str] = []

    def check(request):
        if "VerificationSid=" not in request.body:  # by phone: nothing pending there
            error = {"code": 20404, "message": "The requested resource was not found"}
            return (404, {}, json.dumps({**error, "status": 404}))
        checks.append(request.body)
        if len(checks) > 5:  # "Max (5) verification check attempts reached."
            error = {"code": 60202, "message": "Max check attempts reached", "status": 429}
            return (429, {}, json.dumps(error))
        return (200, {}, json.dumps({"sid": sid, "status": "pending", "valid": False}))

    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.add(
            responses.POST,
            f"{base}/Verifications",
            json={"sid": sid, "status": "pending"},
            status=201,
        )
        rsps.add_callback(responses.POST, f"{base}/VerificationCheck", callback=check)
        with time_machine.travel(NOW, tick=False):
            (real_client, real), (decoy_client, decoy) = _real_and_decoy()
            for attempt in range(7):
                answers = [
                    client.post(f"{API}challenges/{cid}/verify/", {"code": "999999"})
                    for client, cid in ((real_client, real), (decoy_client, decoy))
                ]
                assert comparable(answers[1]) == comparable(answers[0]), attempt


def test_passwordless_channel_the_route_lacks_answers_the_same(known, outbox):
    """``channels`` and ``channel_unavailable`` come from the number's route,
    never from the account: a call asked for where no provider calls is the
    same 400 for both numbers, and nothing is sent or counted."""
    with time_machine.travel(NOW, tick=False):
        answers = [
            api_client().post(
                f"{API}challenges/", {"phone": phone, "purpose": "passwordless", "channel": "call"}
            )
            for phone in (KNOWN, UNKNOWN)
        ]
    assert answers[0].status_code == 400
    assert answers[0].json()["error"]["code"] == "channel_unavailable"
    assert comparable(answers[1]) == comparable(answers[0])
    assert outbox == []
    assert not Challenge.objects.exists()
