"""The API's input edge: hostile bodies and ``Accept`` headers never reach a 500.

* Deeply nested JSON (``[`` or ``{"a":`` a hundred thousand times) made the
  standard library's parser raise ``RecursionError``, which DRF's JSON parser
  does not catch: a 500 with a traceback. The app's parser answers 400
  ``parse_error`` in the error shape, on every endpoint that reads a body.
* ``Accept: text/html`` got DRF's browsable HTML page. The app's views render
  JSON only, and never answer 406 (a browser's ``Accept`` lists HTML first):
  whatever the client accepts, the answer is JSON.
* A fuzz over every endpoint (deep nesting, huge bodies, bad content types,
  invalid UTF-8, unusual Unicode, wrong types, odd path parameters), for an
  anonymous client and a logged-in one, counts the 5xx answers: it prints the
  figure and asserts it is 0.

Run the fuzz alone and see its figures with::

    .venv/bin/python -m pytest -q -s tests/test_api_fuzz_seams.py -k fuzz
"""

from __future__ import annotations

import bz2
import codecs
import json
import time
import uuid
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from django.test import Client
from django.urls import URLPattern

from django_sms2fa.api import urls as api_urls
from django_sms2fa.models import PhoneDevice

from .api_support import API, ERROR_KEYS

pytestmark = pytest.mark.django_db

PHONE = "+46701234567"
DEEP = 100_000

# Every endpoint: (method, path template, reads a JSON body, needs a login).
ENDPOINTS = [
    ("post", "challenges/", True, False),
    ("delete", "challenges/{challenge}/", False, False),
    ("post", "challenges/{challenge}/resend/", False, False),
    ("post", "challenges/{challenge}/verify/", True, False),
    ("post", "login/", True, False),
    ("post", "login/verify/", True, False),
    ("get", "devices/", False, True),
    ("post", "devices/", True, True),
    ("delete", "devices/{device}/", False, True),
    ("post", "devices/{device}/confirm/", True, True),
]
BODY_ENDPOINTS = [(method, path) for method, path, body, _login in ENDPOINTS if body]

DEEP_BODIES = {
    "open-brackets": "[" * DEEP,
    "closed-brackets": "[" * DEEP + "]" * DEEP,
    "open-objects": '{"a":' * DEEP,
    "closed-objects": '{"a":' * DEEP + "1" + "}" * DEEP,
    "mixed": '[{"a":' * (DEEP // 2) + "0" + "}]" * (DEEP // 2),
    "inside-a-field": '{"phone": ' + "[" * DEEP + "]" * DEEP + ', "code": "1"}',
    # Deep, but within what the parser itself survives.
    "just-parseable": "[" * 600 + "]" * 600,
    "object-600": '{"a":' * 600 + "1" + "}" * 600,
}

ACCEPTS = [
    "text/html",
    "*/*",
    "application/xml",
    "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",  # a browser
    "application/json",
    "text/plain",
    "application/json; indent=4",
    "",
]


def test_every_endpoint_is_listed():
    """A route added to api/urls.py must be added to ENDPOINTS too."""
    routed = {
        str(p.pattern)
        .replace("<str:challenge_id>", "{challenge}")
        .replace("<int:device_id>", "{device}")
        for p in api_urls.urlpatterns
        if isinstance(p, URLPattern)
    }
    assert routed == {path for _method, path, _body, _login in ENDPOINTS}


@pytest.fixture
def device(user):
    return PhoneDevice.objects.create(user=user, number=PHONE, confirmed=True, name="Phone")


@pytest.fixture
def logged_in(user, device, outbox):
    """A client logged in with password and code (verified: every endpoint
    reaches its body)."""
    browser = Client(raise_request_exception=False)
    answer = send(
        browser,
        "post",
        API + "login/",
        json.dumps({"username": "alice", "password": "correct horse"}),
        "application/json",
    )
    challenge = answer.json()["challenge"]["id"]
    answer = send(
        browser,
        "post",
        API + "login/verify/",
        json.dumps({"challenge": challenge, "code": outbox[-1].code}),
        "application/json",
    )
    assert answer.status_code == 200, answer.content
    return browser


def fill(path: str, *, challenge: str | None = None, device: int | str = 1) -> str:
    return API + path.format(challenge=challenge or uuid.uuid4(), device=device)


def send(browser: Client, method: str, path: str, body: bytes | str, content_type: str, **extra):
    # generic(): the bytes go out as they are (post() would re-encode them to
    # the content type's charset).
    if isinstance(body, str):
        body = body.encode()
    return browser.generic(method.upper(), path, body, content_type=content_type, **extra)


def assert_error_shape(response) -> dict:
    assert response["Content-Type"].startswith("application/json"), response["Content-Type"]
    body = response.json()
    assert list(body) == ["error"], body
    assert set(body["error"]) <= ERROR_KEYS
    assert isinstance(body["error"]["code"], str) and body["error"]["message"]
    return body["error"]


# ------------------------------------------------------------- deep nesting


@pytest.mark.parametrize("name", sorted(DEEP_BODIES))
@pytest.mark.parametrize("method,path", BODY_ENDPOINTS, ids=[f"{m}:{p}" for m, p in BODY_ENDPOINTS])
def test_deep_nesting_answers_400_parse_error(logged_in, device, method, path, name):
    response = send(
        logged_in, method, fill(path, device=device.pk), DEEP_BODIES[name], "application/json"
    )
    assert response.status_code == 400, response.content[:200]
    error = assert_error_shape(response)
    if name in ("just-parseable", "object-600"):
        # Parsed (or refused for its depth): either way a client error.
        assert error["code"] in {"parse_error", "invalid"}, error
    else:
        assert error["code"] == "parse_error", error
    assert "Traceback" not in response.content.decode()


@pytest.mark.parametrize(
    "method,path,_body,_login", ENDPOINTS, ids=[f"{e[0]}:{e[1]}" for e in ENDPOINTS]
)
@pytest.mark.parametrize("anonymous", [True, False], ids=["anonymous", "logged-in"])
def test_deep_nesting_never_5xx_on_any_endpoint(
    logged_in, device, method, path, _body, _login, anonymous
):
    browser = Client(raise_request_exception=False) if anonymous else logged_in
    for name in ("open-brackets", "open-objects"):
        response = send(
            browser, method, fill(path, device=device.pk), DEEP_BODIES[name], "application/json"
        )
        assert response.status_code < 500, (name, response.status_code)
        if response.status_code >= 400:
            assert_error_shape(response)


@pytest.mark.parametrize("codec", ["bz2_codec", "zlib_codec"])
def test_a_compression_charset_is_not_inflated(logged_in, codec):
    """A charset that is a bytes codec would inflate a small body past the
    size limit (checked on the compressed bytes): refused, not decoded."""
    inflated = b" " * 20_000_000 + json.dumps({"phone": PHONE, "purpose": "passwordless"}).encode()
    body = codecs.encode(inflated, codec)
    assert len(body) < 100_000
    response = send(
        logged_in, "post", API + "challenges/", body, f"application/json; charset={codec}"
    )
    assert response.status_code == 400, response.status_code
    assert assert_error_shape(response)["code"] == "parse_error"


# ------------------------------------------------------------ JSON, always


@pytest.mark.parametrize("accept", ACCEPTS)
@pytest.mark.parametrize(
    "method,path,_body,_login", ENDPOINTS, ids=[f"{e[0]}:{e[1]}" for e in ENDPOINTS]
)
def test_any_accept_gets_json(logged_in, device, method, path, _body, _login, accept):
    extra = {"HTTP_ACCEPT": accept} if accept else {}
    for browser in (Client(raise_request_exception=False), logged_in):
        response = send(
            browser, method, fill(path, device=device.pk), "{}", "application/json", **extra
        )
        assert response.status_code != 406, (accept, response.content[:200])
        assert response.status_code < 500
        if response.status_code == 204:
            continue
        assert response["Content-Type"].startswith("application/json"), (
            accept,
            response["Content-Type"],
        )
        body = response.json()
        if response.status_code >= 400:
            assert_error_shape(response)
        assert b"<html" not in response.content.lower()
        assert isinstance(body, (dict, list))


@pytest.mark.parametrize("query", ["?format=api", "?format=json", "?format=xml", "?format=html"])
def test_format_override_gets_json(logged_in, query):
    for browser, expected in ((Client(raise_request_exception=False), 403), (logged_in, 200)):
        response = browser.get(API + "devices/" + query, HTTP_ACCEPT="text/html")
        assert response.status_code == expected, (query, response.status_code)
        assert response["Content-Type"].startswith("application/json")
        response.json()


def test_browser_error_is_the_json_error_shape():
    response = Client(raise_request_exception=False).post(
        API + "login/",
        json.dumps({"username": "nobody", "password": "x"}),
        content_type="application/json",
        HTTP_ACCEPT="text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
    )
    assert response.status_code == 400
    assert assert_error_shape(response)["code"] == "invalid_credentials"


# ---------------------------------------------------------------- the fuzz


def fixed_corpus() -> list[tuple[str, bytes, str]]:
    """(name, body, content type): what a hostile client sends."""
    corpus: list[tuple[str, bytes, str]] = []
    json_type = "application/json"
    for name, text in DEEP_BODIES.items():
        corpus.append((f"deep:{name}", text.encode(), json_type))
    # Huge bodies: a long field, many fields, a long array, beyond the upload limit.
    corpus += [
        (
            "huge:field",
            json.dumps({"phone": "4" * 3_000_000, "code": "1" * 3_000_000}).encode(),
            json_type,
        ),
        ("huge:keys", json.dumps({f"k{i}": i for i in range(50_000)}).encode(), json_type),
        ("huge:array", json.dumps(list(range(200_000))).encode(), json_type),
        ("huge:number", b'{"replaces": ' + b"9" * 5000 + b"}", json_type),
        ("huge:float", b'{"replaces": 1e400, "code": 1e400, "challenge": -1e400}', json_type),
    ]
    # Content types and encodings.
    form = b"phone=%2B46701234567&purpose=passwordless&code=123456&username=alice&password=x"
    for content_type in (
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=xyz",
        "multipart/form-data",
        "text/plain",
        "text/html",
        "application/xml",
        "application/json; charset=utf-16",
        "application/json; charset=bogus",
        "application/json; charset=latin-1",
        "application/vnd.api+json",
        "",
        "application/json\x00",
        "application/json; charset=bz2_codec",
        "application/json; charset=zlib_codec",
        "application/json; charset=rot13",
    ):
        corpus.append((f"type:{content_type!r}", form, content_type))
        corpus.append((f"type+json:{content_type!r}", b'{"phone": "+46701234567"}', content_type))
    corpus += [
        (
            "multipart:file",
            b'--xyz\r\nContent-Disposition: form-data; name="phone"; filename="a"\r\n'
            b"\r\nx\r\n--xyz--\r\n",
            "multipart/form-data; boundary=xyz",
        ),
        (
            "charset:bz2-bomb",
            bz2.compress(b" " * 20_000_000 + b'{"phone": "+46701234567"}'),
            "application/json; charset=bz2_codec",
        ),
        ("utf8:invalid", b'{"phone": "\xff\xfe\xfd", "code": "\xc3\x28"}', json_type),
        ("utf8:bom", b'\xef\xbb\xbf{"phone": "+46701234567"}', json_type),
        ("utf8:overlong", b'{"phone": "\xc0\xaf"}', json_type),
        ("empty", b"", json_type),
        ("whitespace", b"   \n\t ", json_type),
        ("nul", b"\x00", json_type),
        ("truncated", b'{"phone": "+4670', json_type),
        ("nan", b'{"replaces": NaN, "code": Infinity}', json_type),
        ("duplicate-keys", b'{"code": "1", "code": "2", "code": ["3"]}', json_type),
        ("top:list", b"[]", json_type),
        ("top:string", b'"phone"', json_type),
        ("top:number", b"1", json_type),
        ("top:null", b"null", json_type),
        ("top:true", b"true", json_type),
    ]
    # Unicode and wrong types in every field the API reads.
    fields = ("phone", "purpose", "code", "username", "password", "challenge", "replaces")
    odd_values = {
        "surrogate": "\ud800",
        "surrogate-pair-halves": "\udc00\ud800",
        "nul": "a\u0000b",
        "rtl": "\u202e+46701234567",
        "zero-width": "+467\u200b01234567",
        "fullwidth": "＋４６７０１２３４５６７",
        "arabic-digits": "٠١٢٣٤٥",
        "emoji": "📱" * 40,
        "combining": "1\u0301" * 100,
        "long": "9" * 10_000,
        "uuid-ish": str(uuid.uuid4()).upper() + "\n",
        "int-max": 2**63,
        "int-over": 2**64 + 1,
        "int-huge": 10**300,
        "negative": -1,
        "zero": 0,
        "float": 1.5,
        "true": True,
        "null": None,
        "list": ["+46701234567"],
        "dict": {"phone": "+46701234567"},
        "empty": "",
    }
    for field in fields:
        for name, value in odd_values.items():
            body = {
                "phone": PHONE,
                "purpose": "verify_phone",
                "code": "123456",
                "username": "alice",
                "password": "x",
                "challenge": str(uuid.uuid4()),
                field: value,
            }
            raw = json.dumps(body, ensure_ascii=True).encode()
            corpus.append((f"value:{field}={name}", raw, json_type))
    return corpus


# Path parameters: ids no route should turn into a 500.
ODD_CHALLENGES = ["not-a-uuid", "0" * 5000, "%00", "%F0%9F%93%B1", str(uuid.UUID(int=0))]
ODD_DEVICES = ["0", str(2**63), str(2**64 + 1), "9" * 400]


@pytest.fixture
def pending(device):
    """A client mid-login: the password given, the code on its way."""
    browser = Client(raise_request_exception=False)
    answer = browser.post(
        API + "login/",
        json.dumps({"username": "alice", "password": "correct horse"}),
        content_type="application/json",
    )
    assert answer.status_code == 200
    return browser


def test_fuzz_every_endpoint_never_5xx(logged_in, pending, device, capsys):
    started = time.monotonic()
    statuses: Counter[int] = Counter()
    failures: list[str] = []
    clients = {
        "anonymous": Client(raise_request_exception=False),
        "logged-in": logged_in,
        "pending-login": pending,
    }
    corpus = fixed_corpus()

    def record(label: str, response) -> None:
        statuses[response.status_code] += 1
        if response.status_code >= 500:
            failures.append(f"{response.status_code} {label}")
        elif response.status_code >= 400:
            try:
                assert_error_shape(response)
            except (AssertionError, ValueError):
                failures.append(f"shape {response.status_code} {label}")

    for who, browser in clients.items():
        for method, path, reads_body, _login in ENDPOINTS:
            if who == "pending-login" and path != "login/verify/":
                continue  # only login/verify/ reads the pending login
            # Not the phone itself on DELETE: the fuzz goes on with a verified session.
            url = fill(path, device=device.pk if method != "delete" else device.pk + 1000)
            items = corpus if reads_body else corpus[:: max(len(corpus) // 25, 1)]
            for name, body, content_type in items:
                response = send(browser, method, url, body, content_type)
                record(f"{who} {method.upper()} {path} {name}", response)
            for challenge in ODD_CHALLENGES if "{challenge}" in path else ():
                response = send(
                    browser,
                    method,
                    API + path.format(challenge=challenge),
                    b"{}",
                    "application/json",
                )
                record(f"{who} {method.upper()} {path} challenge={challenge[:20]}", response)
            for odd in ODD_DEVICES if "{device}" in path else ():
                response = send(
                    browser, method, API + path.format(device=odd), b"{}", "application/json"
                )
                record(f"{who} {method.upper()} {path} device={odd[:20]}", response)

    requests = sum(statuses.values())
    fivexx = sum(n for status, n in statuses.items() if status >= 500)
    with capsys.disabled():
        print(
            f"\nAPI fuzz (fixed corpus): {requests} requests over {len(ENDPOINTS)} endpoints, "
            f"3 client states, {len(corpus)} bodies; 5xx answers: {fivexx}; "
            f"statuses {dict(sorted(statuses.items()))}; {time.monotonic() - started:.1f} s"
        )
    assert failures == [], failures[:20]
    assert fivexx == 0


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
FIELDS = st.sampled_from(
    ["phone", "purpose", "code", "username", "password", "challenge", "replaces"]
)
BODIES = st.one_of(
    st.dictionaries(FIELDS, JSON_VALUES, max_size=7).map(lambda d: json.dumps(d).encode()),
    JSON_VALUES.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=200),
)


@pytest.mark.parametrize("method,path", BODY_ENDPOINTS, ids=[f"{m}:{p}" for m, p in BODY_ENDPOINTS])
def test_fuzz_hypothesis_bodies_never_5xx(logged_in, device, method, path):
    url = fill(path, device=device.pk)
    seen: Counter[int] = Counter()

    @settings(
        max_examples=60,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(body=BODIES)
    def attempt(body: bytes) -> None:
        response = send(logged_in, method, url, body, "application/json")
        seen[response.status_code] += 1
        assert response.status_code < 500, (body[:200], response.status_code)
        if response.status_code >= 400:
            assert_error_shape(response)

    attempt()
    print(f"\nAPI fuzz (hypothesis) {method.upper()} {path}: {dict(sorted(seen.items()))}")
