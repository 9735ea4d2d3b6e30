"""The failover rule through real HTTP, for each provider and each failure.

tests/test_failover_rule.py checks the rule with in-memory providers; here the
first provider (alias ``default``) talks to a loopback server that fails in
one way, the fallback (alias ``backup``) to a second loopback server that
works, and a user with a confirmed phone logs in through the REST API
(``login/``: password, then code). Each case checks how many send requests
each server got, what the user was answered, and — where a code may be on its
way from the first provider — that the fallback carried that very code.

:data:`EXPECTED` is the one table of outcomes and :data:`EXCEPTIONS` the
documented cells where a provider deliberately answers otherwise.
docs/failover.md shows both, and :func:`test_the_docs_table_is_this_table`
fails when they differ.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs

import pytest

from django.test import Client
from django.urls import reverse
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from django_sms2fa.models import Message, PhoneDevice

from .api_support import api_post, assert_error
from .http_support import Answer, LoopbackServer, Recorded, free_port

pytestmark = pytest.mark.django_db

DOCS = Path(__file__).resolve().parent.parent / "docs" / "failover.md"
# A Russian mobile number: telefon-ip serves nothing else, the others take any.
PHONE = "+79161234567"
PASSWORD = "correct horse"  # the `user` fixture's
READ_TIMEOUT = 0.4
TELEFONIP_CODE = "4821"  # the 4-digit code our fake telefon-ip makes

# ------------------------------------------------------------- the failures

SURE, UNCERTAIN = "surely not sent", "may have been sent"

#: Each failure kind: how the docs name it and which side of the rule it is on.
KINDS: dict[str, tuple[str, str]] = {
    "429": ("HTTP 429", SURE),
    "502": ("HTTP 502", SURE),
    "503": ("HTTP 503", SURE),
    "refused": ("connection refused", SURE),
    "500": ("HTTP 500", UNCERTAIN),
    "504": ("HTTP 504", UNCERTAIN),
    "timeout": ("read timeout after the request left", UNCERTAIN),
    "html": ("200 with an HTML page", UNCERTAIN),
    "empty": ("200 with an empty body", UNCERTAIN),
}


def plain_failure(kind: str) -> Answer:
    """What a failing server, or a proxy in front of it, answers to a send."""
    if kind == "timeout":
        return Answer(hang=True)  # reads the request, then says nothing
    if kind == "html":
        page = "<html><body><h1>Welcome to nginx!</h1></body></html>"
        return Answer(200, page, {"Content-Type": "text/html"})
    if kind == "empty":
        return Answer(200, b"", {"Content-Type": "application/json"})
    return Answer(int(kind), "upstream trouble", {"Content-Type": "text/plain"})


# ------------------------------------------------------------- the outcomes

OURS, RETURNED, CHECKED = "ours", "returned", "checked"

#: How the docs name each provider mode. Each provider's name is in its mode's
#: label (test_every_case_is_in_the_table).
MODES: dict[str, str] = {
    OURS: "GoSMS, SMSToken, AxelNAC, Twilio, Amazon SNS (our code, checked here)",
    RETURNED: "telefon-ip with 6-digit codes (its own code, returned to us)",
    CHECKED: "iP1, Twilio Verify, Vonage Verify (its own code, checked by the provider)",
}

NO_FALLBACK = "—"
NONE, NEW_CODE, SAME_CODE = "none", "one, a new code", "one, the same code"
MAYBE, COUNTED = "maybe one", "one, counted as sent"
FAILED = "503 `delivery_failed`"
CODE_PAGE = "200, the challenge"
TOLD = "200, the challenge with `delivery_uncertain`; resend at once"


@dataclass(frozen=True)
class Outcome:
    first: str  # SMS from the first provider: NONE, MAYBE or COUNTED
    fallback: str  # SMS from the fallback: NO_FALLBACK, NONE, NEW_CODE, SAME_CODE
    user: str  # FAILED, CODE_PAGE or TOLD


def _outcomes() -> dict[tuple[str, str, bool], Outcome]:
    table = {}
    for mode in MODES:
        # Surely not sent: the next fallback, armed afresh for itself.
        table[mode, SURE, False] = Outcome(NONE, NO_FALLBACK, FAILED)
        table[mode, SURE, True] = Outcome(NONE, NEW_CODE, CODE_PAGE)
    # May have been sent, and we check the code: the same code again.
    table[OURS, UNCERTAIN, False] = Outcome(MAYBE, NO_FALLBACK, TOLD)
    table[OURS, UNCERTAIN, True] = Outcome(MAYBE, SAME_CODE, CODE_PAGE)
    # The provider made the code and its answer is lost: nothing can check it.
    table[RETURNED, UNCERTAIN, False] = Outcome(MAYBE, NO_FALLBACK, FAILED)
    table[RETURNED, UNCERTAIN, True] = Outcome(MAYBE, NONE, FAILED)
    # The provider checks its own code: nothing more is sent.
    table[CHECKED, UNCERTAIN, False] = Outcome(MAYBE, NO_FALLBACK, TOLD)
    table[CHECKED, UNCERTAIN, True] = Outcome(MAYBE, NONE, TOLD)
    return table


EXPECTED = _outcomes()

#: Documented exceptions to the rule: (provider, failure kind) -> the
#: sentence of docs/failover.md that names it, and the outcome without and
#: with a fallback. Each is tested as it is, not as the rule would have it.
EXCEPTIONS: dict[tuple[str, str], tuple[str, dict[bool, Outcome]]] = {
    # AxelNAC's send_user_credentials answer is undocumented; its module takes
    # any 2xx, empty or a JSON object, as the NAC's success (a deliberate choice,
    # docs/providers/axelnac.md "Limits").
    ("axelnac", "empty"): (
        "AxelNAC counts an empty 2xx answer as sent",
        {
            False: Outcome(COUNTED, NO_FALLBACK, CODE_PAGE),
            True: Outcome(COUNTED, NONE, CODE_PAGE),
        },
    ),
}


def expected_outcome(name: str, kind: str, with_fallback: bool) -> Outcome:
    if (name, kind) in EXCEPTIONS:
        return EXCEPTIONS[name, kind][1][with_fallback]
    return EXPECTED[SPECS[name].mode, KINDS[kind][1], with_fallback]


# ------------------------------------------------------------- the providers


def _digits(text: str) -> str:
    found = re.findall(r"(?<![0-9])[0-9]{6}(?![0-9])", text)
    assert len(found) == 1, "one 6-digit code in the SMS text"
    return found[0]


def _form(request: Recorded) -> dict[str, str]:
    return {name: values[0] for name, values in parse_qs(request.body.decode()).items()}


Handler = Callable[[Recorded], Answer]


@dataclass(frozen=True)
class Spec:
    """One provider: how it is configured, what a send looks like to the
    server, what a success answer is, and where the code is in the request."""

    mode: str
    title: str  # as MODES and the docs name it
    backend: str
    options: dict
    is_send: Callable[[Recorded], bool]
    success: Handler
    code_in: Callable[[Recorded], str] | None  # None: the request carries no code of ours
    fallback: str  # the spec name of the fallback that can serve this mode
    accepted: str  # the Message status after a send it took
    #: The provider's checks of its own codes (mode CHECKED).
    is_check: Callable[[Recorded], bool] | None = None
    #: The vendor's own error answer for a failure kind, where it documents
    #: one; the case then also runs with a proxy's plain answer.
    vendor_error: Callable[[str], Answer | None] | None = None
    #: As a fallback: other options (a second account) and answers.
    second_options: dict = field(default_factory=dict)
    second_success: Handler | None = None
    #: botocore (SNS) takes endpoint_url, one attempt always, no connect_retries.
    url_option: str = "base_url"

    def transport(self, url: str, read_timeout: float) -> dict:
        options = {self.url_option: url, "connect_timeout": 1.0, "read_timeout": read_timeout}
        if self.url_option == "base_url":
            # A closed port is refused at once; no retry pauses.
            options["connect_retries"] = 0
        return options


def _axelnac_success(request: Recorded) -> Answer:
    if request.path == "/api/v1/login":
        return Answer(200, {"token": "nac-token-0123456789"})
    return Answer(200, {"message": "credentials sent"})


def _ip1_success(auth_id: str) -> Handler:
    def answer(request: Recorded) -> Answer:
        if request.path == "/api/authentications/validate":
            return Answer(200, {"Valid": True, "Authentication": {"ID": auth_id}})
        return Answer(200, {"ID": auth_id, "Phone": "79161234567", "HasExpired": False})

    return answer


def _telefonip_success(request: Recorded) -> Answer:
    phone = request.path.rstrip("/").rsplit("/", 1)[-1]
    data = {"phone": phone, "code": TELEFONIP_CODE, "id": 168}
    return Answer(200, {"success": True, "error": "", "data": data})


# Twilio (tests/test_twilio_provider.py, tests/test_conformance.py): a Message
# resource (201) that echoes the body; errors {"code", "message", "more_info",
# "status"}, with the codes of Twilio's error dictionary for 429/500/503.
TWILIO_ACCOUNT = "AC" + "0123456789abcdef" * 2
TWILIO_SERVICE = "VA" + "00112233445566778899aabbccddeeff"
TWILIO_ERRORS = {
    "429": (20429, "Too Many Requests"),
    "500": (20500, "Internal Server Error"),
    "503": (20503, "Service unavailable"),
}


def _twilio_error(kind: str) -> Answer | None:
    if kind not in TWILIO_ERRORS:
        return None
    code, message = TWILIO_ERRORS[kind]
    status = int(kind)
    more_info = f"https://www.twilio.com/docs/errors/{code}"
    body = {"code": code, "message": message, "more_info": more_info, "status": status}
    return Answer(status, body)


def _twilio_success(request: Recorded) -> Answer:
    sms = _form(request)
    body = {"sid": "SM" + "ab" * 16, "status": "queued", "to": sms["To"], "body": sms["Body"]}
    return Answer(201, body)


def _twilio_verify_success(sid: str) -> Handler:
    def answer(request: Recorded) -> Answer:
        if request.path.endswith("/VerificationCheck"):
            return Answer(200, {"sid": sid, "status": "approved", "valid": True})
        verification = {
            "sid": sid,
            "service_sid": TWILIO_SERVICE,
            "status": "pending",
            "channel": "sms",
            "to": _form(request)["To"],
            "valid": False,
        }
        return Answer(201, verification)

    return answer


# Vonage Verify v2 (tests/test_vonage_provider.py, tests/test_conformance.py):
# a start answers 202 {"request_id"}, a right code 200 {"status": "completed"};
# errors are RFC 7807 problems, the SDK's test data for 429 and 500.
VONAGE_ERRORS = {
    "429": {
        "title": "Rate Limit Hit",
        "type": "https://developer.vonage.com/api-errors#rate-limit",
        "detail": "Please wait, then retry your request",
        "instance": "bf0ca0bf927b3b52e3cb03217e1a1ddf",
    },
    "500": {
        "type": "https://developer.vonage.com/api-errors",
        "title": "Internal Server Error",
        "instance": "272c5fa3-c02a-4451-b33c-d01e8de74023",
    },
}


def _vonage_error(kind: str) -> Answer | None:
    if kind not in VONAGE_ERRORS:
        return None
    return Answer(int(kind), VONAGE_ERRORS[kind], {"Content-Type": "application/problem+json"})


def _vonage_success(request_id: str) -> Handler:
    def answer(request: Recorded) -> Answer:
        if request.path.startswith("/v2/verify/"):
            return Answer(200, {"request_id": request_id, "status": "completed"})
        return Answer(202, {"request_id": request_id})

    return answer


# Amazon SNS (tests/test_sns_provider.py): the Query API answers XML.
SNS_NS = "http://sns.amazonaws.com/doc/2010-03-31/"
SNS_XML = {"Content-Type": "text/xml"}
SNS_PUBLISHED = (
    f'<PublishResponse xmlns="{SNS_NS}"><PublishResult>'
    "<MessageId>567910cd-659e-55d4-8ccb-5aaf14679dc0</MessageId></PublishResult>"
    "<ResponseMetadata><RequestId>d74b8436-ae13-5ab4-a9ff-ce54dfea72a0</RequestId>"
    "</ResponseMetadata></PublishResponse>"
)
# Publish's ThrottledException and InternalErrorException (botocore's SNS
# model), and the ServiceUnavailable every AWS Query API may answer.
SNS_ERRORS = {
    "429": ("Throttled", "Rate exceeded"),
    "500": ("InternalError", "Internal error"),
    "503": ("ServiceUnavailable", "Service is unavailable"),
}


def _sns_error(kind: str) -> Answer | None:
    if kind not in SNS_ERRORS:
        return None
    code, message = SNS_ERRORS[kind]
    body = (
        f'<ErrorResponse xmlns="{SNS_NS}"><Error><Type>Sender</Type><Code>{code}</Code>'
        f"<Message>{message}</Message></Error>"
        "<RequestId>0f0e0d0c-0000-4000-8000-000000000001</RequestId></ErrorResponse>"
    )
    return Answer(int(kind), body, SNS_XML)


SPECS: dict[str, Spec] = {
    "gosms": Spec(
        OURS,
        "GoSMS",
        "django_sms2fa.providers.gosms.GoSMSProvider",
        {"token": "gosms-jwt-token"},
        lambda r: r.path == "/sms/send",
        lambda r: Answer(200, {"id": "6654a4e8f1527149588c89f2"}),
        lambda r: _digits(r.json()["message"]),
        "gosms",
        "queued",
    ),
    "telefonip": Spec(
        RETURNED,
        "telefon-ip",
        "django_sms2fa.providers.telefonip.TelefonIPProvider",
        {"token": "telefonip-token"},
        lambda r: "/get_sms_code/" in r.path,
        _telefonip_success,
        None,  # 6-digit codes do not fit: it makes its own
        "gosms",
        "sent",
    ),
    "ip1": Spec(
        CHECKED,
        "iP1",
        "django_sms2fa.providers.ip1.IP1Provider",
        {"account_id": "ip1-12345", "api_key": "ip1-api-key"},
        lambda r: r.path == "/api/authentications",
        _ip1_success("auth-1"),
        None,  # iP1 makes the code and never tells it
        "ip1",
        "sent",
        is_check=lambda r: r.path.endswith("/validate"),
        second_options={"api_key": "ip1-second-key"},  # a second iP1 account
        second_success=_ip1_success("auth-2"),
    ),
    "smstoken": Spec(
        OURS,
        "SMSToken",
        "django_sms2fa.providers.smstoken.SMSTokenProvider",
        {"key": "smstoken-key"},
        lambda r: r.path == "/token/v1/verify",
        lambda r: Answer(200, {"situacao": "OK", "id": "771037704", "code": r.json()["code"]}),
        lambda r: r.json()["code"],
        "gosms",
        "sent",
    ),
    "axelnac": Spec(
        OURS,
        "AxelNAC",
        "django_sms2fa.providers.axelnac.AxelNACProvider",
        {"username": "api", "password": "nac-api-password", "source_id": "sms"},
        lambda r: r.path == "/api/v1/sms_gateways/send_user_credentials",
        _axelnac_success,
        lambda r: r.json()["args"]["password"],
        "gosms",
        "sent",
    ),
    "twilio": Spec(
        OURS,
        "Twilio",
        "django_sms2fa.providers.twilio.TwilioProvider",
        {"account_sid": TWILIO_ACCOUNT, "auth_token": "twilio-token", "sender": "+15005550006"},
        lambda r: r.method == "POST" and r.path.endswith("/Messages.json"),
        _twilio_success,
        lambda r: _digits(_form(r)["Body"]),
        "gosms",  # a mixed pair: another vendor that takes our code
        "queued",
        vendor_error=_twilio_error,
    ),
    "twilio_verify": Spec(
        CHECKED,
        "Twilio Verify",
        "django_sms2fa.providers.twilio_verify.TwilioVerifyProvider",
        {
            "account_sid": TWILIO_ACCOUNT,
            "auth_token": "twilio-verify-token",
            "service_sid": TWILIO_SERVICE,
        },
        lambda r: r.path.endswith("/Verifications"),
        _twilio_verify_success("VE" + "ab" * 16),
        None,  # Twilio makes the code and never tells it
        "vonage",  # another vendor that checks its own codes
        "sent",
        is_check=lambda r: r.path.endswith("/VerificationCheck"),
        vendor_error=_twilio_error,
        second_success=_twilio_verify_success("VE" + "cd" * 16),
    ),
    "vonage": Spec(
        CHECKED,
        "Vonage Verify",
        "django_sms2fa.providers.vonage.VonageVerifyProvider",
        {"brand": "Acme", "api_key": "abcd1234", "api_secret": "vonage-api-secret"},
        lambda r: r.method == "POST" and r.path.rstrip("/") == "/v2/verify",
        _vonage_success("36e7060d-2b23-4257-bad0-773ab47f85ef"),
        None,  # Vonage makes the code and never tells it
        "twilio_verify",
        "sent",
        is_check=lambda r: r.path.startswith("/v2/verify/"),
        vendor_error=_vonage_error,
        second_success=_vonage_success("c11236f4-00bf-4b89-84ba-88b25df97315"),
    ),
    "sns": Spec(
        OURS,
        "Amazon SNS",
        "django_sms2fa.providers.sns.AmazonSNSProvider",
        {
            "region_name": "eu-west-1",
            "access_key_id": "AKIAIOSFODNN7EXAMPLE",
            "secret_access_key": "sns-secret-access-key-EXAMPLE",
        },
        lambda r: r.method == "POST" and _form(r).get("Action") == "Publish",
        lambda r: Answer(200, SNS_PUBLISHED, SNS_XML),
        lambda r: _digits(_form(r)["Message"]),
        "twilio",  # new to new
        "queued",
        vendor_error=_sns_error,
        url_option="endpoint_url",
    ),
}

#: Where a provider answers a failure kind otherwise than the rule says and
#: the docs do not make it an exception: kept with the rule's assertions,
#: expected to fail, so the test turns red once it is resolved. None now.
DISAGREEMENTS: dict[tuple[str, str], str] = {}


def _cases():
    for name, spec in SPECS.items():
        for kind in KINDS:
            bodies = [False]
            if spec.vendor_error is not None and spec.vendor_error(kind) is not None:
                bodies.append(True)  # the vendor's own body, then a proxy's
            for with_fallback in (False, True):
                for plain in bodies:
                    marks = []
                    if (name, kind) in DISAGREEMENTS:
                        reason = DISAGREEMENTS[name, kind]
                        marks.append(pytest.mark.xfail(reason=reason, strict=True))
                    label = f"{name}-{kind}-{'fallback' if with_fallback else 'alone'}"
                    if plain:
                        label += "-plain"
                    yield pytest.param(name, kind, with_fallback, plain, id=label, marks=marks)


# ------------------------------------------------------------- the servers


@pytest.fixture
def backup_server():
    server = LoopbackServer().start()
    yield server
    server.stop()


def _configure(sms2fa_settings, spec: Spec, first_url: str, backup_url: str | None) -> None:
    providers = {
        "default": {
            "BACKEND": spec.backend,
            "OPTIONS": {**spec.options, **spec.transport(first_url, READ_TIMEOUT)},
        }
    }
    if backup_url is not None:
        fallback = SPECS[spec.fallback]
        providers["backup"] = {
            "BACKEND": fallback.backend,
            "OPTIONS": {
                **fallback.options,
                **fallback.second_options,
                **fallback.transport(backup_url, 2.0),
            },
        }
    sms2fa_settings(
        PROVIDERS=providers,
        FALLBACKS=["backup"] if backup_url is not None else [],
        RESEND_INTERVAL=30,
    )


def _sends(server: LoopbackServer, spec: Spec) -> list[Recorded]:
    return [request for request in server.requests if spec.is_send(request)]


def _failure(spec: Spec, kind: str, plain: bool) -> Answer:
    vendor = None if plain or spec.vendor_error is None else spec.vendor_error(kind)
    return vendor or plain_failure(kind)


# ------------------------------------------------------------- the cases


@pytest.mark.parametrize("name, kind, with_fallback, plain", list(_cases()))
def test_failover_through_http(
    name, kind, with_fallback, plain, loopback, backup_server, sms2fa_settings, send_limits, user
):
    spec = SPECS[name]
    fallback_spec = SPECS[spec.fallback]
    expected = expected_outcome(name, kind, with_fallback)

    failing = {"on": True}

    def first_answers(request: Recorded) -> Answer:
        if spec.is_send(request) and failing["on"]:
            return _failure(spec, kind, plain)
        return spec.success(request)

    loopback.handler = first_answers
    backup_server.handler = fallback_spec.second_success or fallback_spec.success
    first_url = f"http://127.0.0.1:{free_port()}" if kind == "refused" else loopback.url
    _configure(sms2fa_settings, spec, first_url, backup_server.url if with_fallback else None)
    PhoneDevice.objects.create(user=user, number=PHONE, name="Mobile", confirmed=True)

    client = Client()
    answer = api_post(client, "login/", {"username": "alice", "password": PASSWORD})

    # How many SMS each server was asked to send.
    first_sends = _sends(loopback, spec)
    backup_sends = _sends(backup_server, fallback_spec)
    assert len(first_sends) == (0 if kind == "refused" else 1)
    assert len(backup_sends) == (1 if expected.fallback in (NEW_CODE, SAME_CODE) else 0)
    # The audit: one row per attempt, "unknown" where the SMS may have gone.
    rows = list(Message.objects.order_by("id").values_list("provider", "status"))
    first_status = {NONE: "failed", MAYBE: "unknown", COUNTED: spec.accepted}[expected.first]
    assert rows[0] == ("default", first_status)
    if backup_sends:
        assert rows[1:] == [("backup", fallback_spec.accepted)]
    else:
        assert rows[1:] == []

    # What the user was told.
    if expected.user == FAILED:
        assert_error(answer, 503, "delivery_failed")
        assert client.session.get("_auth_user_id") is None
        return
    assert answer.status_code == 200, answer.content
    challenge = answer.json()["challenge"]
    assert challenge["delivery_uncertain"] is (expected.user == TOLD)

    if expected.fallback == SAME_CODE:
        # A double delivery carries one code.
        assert fallback_spec.code_in(backup_sends[0]) == spec.code_in(first_sends[0])
    if expected.user == CODE_PAGE:
        # The code on the phone logs in: the fallback's, or the first
        # provider's where its send counts as sent.
        sender, server, sent = (
            (fallback_spec, backup_server, backup_sends[0])
            if backup_sends
            else (spec, loopback, first_sends[0])
        )
        code = sender.code_in(sent) if sender.code_in else "123456"
        verified = api_post(client, "login/verify/", {"challenge": challenge["id"], "code": code})
        assert verified.status_code == 200, verified.content
        assert client.session.get("_auth_user_id") == str(user.pk)
        if sender.is_check is not None:
            checks = [r for r in server.requests if sender.is_check(r)]
            assert len(checks) == 1  # the provider that sent checks its own code
        return

    # Delivery uncertain: the user may ask again at once, whatever
    # RESEND_INTERVAL and the phone's 1/30s cooldown say.
    assert expected.user == TOLD
    assert parse_datetime(challenge["resend_at"]) <= timezone.now()
    failing["on"] = False
    resent = api_post(client, f"challenges/{challenge['id']}/resend/")
    assert resent.status_code == 202, resent.content
    assert resent.json()["delivery_uncertain"] is False
    assert len(_sends(loopback, spec)) == 2
    assert len(_sends(backup_server, fallback_spec)) == 0


# ------------------------------------------------------------- the docs


def docs_tables() -> list[list[list[str]]]:
    """Every markdown table of docs/failover.md, as rows of stripped cells
    (the header row first, the |---| row left out)."""
    tables: list[list[list[str]]] = []
    current: list[list[str]] | None = None
    for line in DOCS.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line.startswith("|"):
            current = None
            continue
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if all(re.fullmatch(r":?-+:?", cell) for cell in cells):
            continue
        if current is None:
            current = []
            tables.append(current)
        current.append(cells)
    return tables


def kinds_table() -> list[list[str]]:
    return [["Failure", "Side of the rule"], *[[label, side] for label, side in KINDS.values()]]


def outcomes_table() -> list[list[str]]:
    rows = [
        [
            "Provider",
            "Failure",
            "Fallback",
            "SMS from the first provider",
            "SMS from the fallback",
            "The user gets",
        ]
    ]
    for mode, side, with_fallback in [
        (mode, side, with_fallback)
        for mode in MODES
        for side in (SURE, UNCERTAIN)
        for with_fallback in (False, True)
    ]:
        outcome = EXPECTED[mode, side, with_fallback]
        rows.append(
            [
                MODES[mode],
                side,
                "yes" if with_fallback else "no",
                outcome.first,
                outcome.fallback,
                outcome.user,
            ]
        )
    return rows


def exceptions_table() -> list[list[str]]:
    rows = [
        [
            "Exception",
            "Failure",
            "Fallback",
            "SMS from the first provider",
            "SMS from the fallback",
            "The user gets",
        ]
    ]
    for (name, kind), (_, outcomes) in EXCEPTIONS.items():
        for with_fallback in (False, True):
            outcome = outcomes[with_fallback]
            rows.append(
                [
                    SPECS[name].title,
                    KINDS[kind][0],
                    "yes" if with_fallback else "no",
                    outcome.first,
                    outcome.fallback,
                    outcome.user,
                ]
            )
    return rows


def fallbacks_table() -> list[list[str]]:
    rows = [["Provider", "Its fallback in the tests"]]
    for name, spec in SPECS.items():
        fallback = SPECS[spec.fallback]
        if spec.fallback == name:
            rows.append([spec.title, f"a second {fallback.title} alias"])
        else:
            rows.append([spec.title, fallback.title])
    return rows


def as_markdown(rows: list[list[str]]) -> str:
    head, *body = rows
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(row) + " |" for row in body]
    return "\n".join(lines)


def test_the_docs_table_is_this_table():
    tables = docs_tables()
    for expected in (kinds_table(), outcomes_table(), exceptions_table(), fallbacks_table()):
        found = [table for table in tables if table[0] == expected[0]]
        assert found, f"docs/failover.md lacks this table:\n{as_markdown(expected)}"
        assert len(found) == 1, f"docs/failover.md has {len(found)} tables headed {expected[0]}"
        assert found[0] == expected, (
            f"docs/failover.md's table differs from the test's; it should read:\n"
            f"{as_markdown(expected)}"
        )


def test_the_docs_name_each_exception_and_disagreement():
    text = " ".join(DOCS.read_text(encoding="utf-8").split())
    for sentence, _ in EXCEPTIONS.values():
        assert sentence in text
    assert set(EXCEPTIONS) == {("axelnac", "empty")}, "document the new exception"
    assert not DISAGREEMENTS, "document the disagreement in docs/failover.md"


def test_each_exception_differs_from_the_rule():
    # An exception that the provider no longer makes belongs out of the
    # docs and out of EXCEPTIONS: its cases would then test the rule.
    for (name, kind), (_, outcomes) in EXCEPTIONS.items():
        rule = {f: EXPECTED[SPECS[name].mode, KINDS[kind][1], f] for f in (False, True)}
        assert all(outcomes[f] != rule[f] for f in (False, True))


def test_every_case_is_in_the_table():
    sides = {side for _, side in KINDS.values()}
    assert set(EXPECTED) == {
        (mode, side, fallback) for mode in MODES for side in sides for fallback in (False, True)
    }
    assert {spec.mode for spec in SPECS.values()} == set(MODES)
    for spec in SPECS.values():
        assert spec.title in MODES[spec.mode]
        fallback = SPECS[spec.fallback]
        # A challenge only its provider can check goes only to providers
        # that check codes themselves; the others to providers taking ours.
        assert (fallback.mode == CHECKED) is (spec.mode == CHECKED)
    assert {kind for _, kind in EXCEPTIONS} <= set(KINDS)


# ------------------------------------------------------------- the other edges


def _gosms_failing(loopback, sms2fa_settings, kind: str) -> None:
    spec = SPECS["gosms"]
    loopback.handler = lambda request: plain_failure(kind) if spec.is_send(request) else Answer()
    _configure(sms2fa_settings, spec, loopback.url, None)


def test_passwordless_never_tells_an_uncertain_delivery(
    loopback, sms2fa_settings, send_limits, user
):
    # The known number's send may have gone (500); the unknown number gets a
    # decoy that sends nothing. Their answers must not differ.
    _gosms_failing(loopback, sms2fa_settings, "500")
    PhoneDevice.objects.create(user=user, number=PHONE, name="Mobile", confirmed=True)
    known = api_post(Client(), "challenges/", {"phone": PHONE, "purpose": "passwordless"})
    unknown = api_post(
        Client(), "challenges/", {"phone": "+79161234599", "purpose": "passwordless"}
    )
    assert len(_sends(loopback, SPECS["gosms"])) == 1
    assert known.status_code == unknown.status_code == 202
    assert sorted(known.json()) == sorted(unknown.json())
    for body in (known.json(), unknown.json()):
        assert body["delivery_uncertain"] is False
        assert parse_datetime(body["resend_at"]) > timezone.now()
    assert Message.objects.get().status == "unknown"  # the audit knows


def test_the_code_page_tells_an_uncertain_delivery(loopback, sms2fa_settings, user):
    _gosms_failing(loopback, sms2fa_settings, "timeout")
    PhoneDevice.objects.create(user=user, number=PHONE, name="Mobile", confirmed=True)
    page = Client().post(
        reverse("sms2fa:login"), {"username": "alice", "password": PASSWORD}, follow=True
    )
    assert page.status_code == 200
    assert b'id="sms2fa-delivery-uncertain"' in page.content
    assert len(_sends(loopback, SPECS["gosms"])) == 1
