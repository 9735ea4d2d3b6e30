"""The API's input edge: hostile bodies and ``Accept`` headers never reach a 500.

* Deeply nested JSON (``[`` or ``{"a":`` a hundred thousand times) made the
  standard library's parser raise ``RecursionError``, which DRF's JSON parser
  does not catch: a 500 with a traceback. The app's parser answers 400
  ``parse_error`` in the error shape, on every endpoint that reads a body.
* ``Accept: text/html`` got DRF's browsable HTML page. The app's views render
  JSON only, and never answer 406 (a browser's ``Accept`` lists HTML first):
  whatever the client accepts, the answer is JSON.
* A fuzz over every operation (deep nesting, huge bodies, bad content types,
  invalid UTF-8, unusual Unicode, wrong types, odd path parameters), for an
  anonymous client, a logged-in one and the client state the operation needs
  (a pending login, an authenticator app being added), counts the 5xx
  answers: it prints the figure and asserts it is 0.
* The operations of the sign-in methods each have a realistic valid request,
  and a test shows it succeeds in the state the fuzz gives them: the fuzz
  reaches the views' bodies, not only their permission checks.

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
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import pytest
from django_otp.plugins.otp_totp.models import TOTPDevice
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from django.core.cache import caches
from django.test import Client
from django.urls import URLPattern

from django_sms2fa import methods
from django_sms2fa.api import urls as api_urls
from django_sms2fa.models import PhoneDevice, RememberedBrowser

from .api_support import API, ERROR_KEYS
from .methods_support import totp_code

pytestmark = pytest.mark.django_db

PHONE = "+46701234567"
DEEP = 100_000
JSON = "application/json"


@dataclass
class World:
    """What the logged-in user has when an operation is fuzzed: a phone,
    recovery codes, a remembered browser and an authenticator app (confirmed,
    or still being added)."""

    codes: list[str]
    app: TOTPDevice
    browser: RememberedBrowser


Body = Callable[[World], dict[str, Any]]


class Endpoint(NamedTuple):
    """One operation of api/urls.py.

    ``state``: the client state that reaches the view's body (``anonymous``;
    ``pending-login``: the password given; ``logged-in``: password and the
    phone's code, the step-up window open; ``adding-app``: logged in, with an
    authenticator app started but not confirmed). ``valid``: a realistic
    request body that succeeds in that state (``None`` when no body is read),
    and ``ok`` the status it gets; ``ok`` is ``None`` for the first ten
    operations, whose success paths their own test files drive. ``once``: the
    fuzz starts the state afresh after the operation succeeded or the
    account's lockout answered, so that later bodies still reach the check.
    """

    method: str
    path: str
    reads_body: bool
    state: str
    valid: Body | None = None
    ok: int | None = None
    once: bool = False  # its valid request cannot succeed twice (a code used up)


ENDPOINTS = [
    Endpoint("post", "challenges/", True, "anonymous"),
    Endpoint("delete", "challenges/{challenge}/", False, "anonymous"),
    Endpoint("post", "challenges/{challenge}/resend/", False, "anonymous"),
    Endpoint("post", "challenges/{challenge}/verify/", True, "anonymous"),
    Endpoint("post", "login/", True, "anonymous"),
    Endpoint("post", "login/verify/", True, "pending-login"),
    Endpoint("get", "devices/", False, "logged-in"),
    Endpoint("post", "devices/", True, "logged-in"),
    Endpoint("delete", "devices/{device}/", False, "logged-in"),
    Endpoint("post", "devices/{device}/confirm/", True, "logged-in"),
    # The sign-in methods beside the phone.
    Endpoint(
        "post",
        "login/method/",
        True,
        "pending-login",
        lambda w: {"method": "totp", "channel": "sms"},
        200,
    ),
    Endpoint("post", "logout/", False, "logged-in", None, 204),
    Endpoint("get", "methods/", False, "logged-in", None, 200),
    Endpoint("post", "totp/", False, "adding-app", None, 201),
    Endpoint("delete", "totp/", False, "logged-in", None, 204),
    Endpoint(
        "post",
        "totp/confirm/",
        True,
        "adding-app",
        lambda w: {"id": w.app.pk, "code": totp_code(w.app)},
        200,
        once=True,
    ),
    Endpoint("get", "recovery-codes/", False, "logged-in", None, 200),
    Endpoint("post", "recovery-codes/", False, "logged-in", None, 201),
    Endpoint("get", "browsers/", False, "logged-in", None, 200),
    Endpoint("delete", "browsers/{browser}/", False, "logged-in", None, 204),
    Endpoint("post", "browsers/forget-all/", False, "logged-in", None, 200),
    Endpoint("post", "step-up/challenge/", True, "logged-in", lambda w: {"channel": "sms"}, 202),
    Endpoint(
        "post",
        "step-up/",
        True,
        "logged-in",
        lambda w: {"method": "recovery", "code": w.codes[0]},
        200,
        once=True,
    ),
]
#: The operations before the sign-in methods: their success paths are the
#: subject of test_api_challenges, test_api_login and test_api_devices. Every
#: later operation declares the status its valid request gets.
FIRST_TEN = {(e.method, e.path) for e in ENDPOINTS[:10]}
BODY_ENDPOINTS = [e for e in ENDPOINTS if e.reads_body]
IDS = [f"{e.method}:{e.path}" for e in ENDPOINTS]
BODY_IDS = [f"{e.method}:{e.path}" for e in BODY_ENDPOINTS]
BY_OPERATION = {(e.method, e.path): e for e in ENDPOINTS}


def reaching(endpoint: Endpoint) -> str:
    """The client state that reaches ``endpoint``'s body; an anonymous
    operation is tried by a logged-in client (who may send anything too)."""
    return "logged-in" if endpoint.state == "anonymous" else endpoint.state


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


def routed_operations() -> set[tuple[str, str]]:
    """(method, path template) of every handler of every route in api/urls.py."""
    found = set()
    for pattern in api_urls.urlpatterns:
        assert isinstance(pattern, URLPattern), pattern
        path = (
            str(pattern.pattern)
            .replace("<str:challenge_id>", "{challenge}")
            .replace("<int:device_id>", "{device}")
            .replace("<str:browser_id>", "{browser}")
        )
        assert "<" not in path, f"a path parameter ENDPOINTS cannot fill: {path}"
        view = pattern.callback.cls
        found |= {(m, path) for m in ("get", "post", "put", "patch", "delete") if hasattr(view, m)}
    return found


def test_every_endpoint_is_listed():
    """An operation added to api/urls.py must be added to ENDPOINTS too (every
    method of every route), with a valid request unless it is one of the
    first ten."""
    listed = [(e.method, e.path) for e in ENDPOINTS]
    assert len(listed) == len(set(listed))
    assert routed_operations() == set(listed)
    assert {(e.method, e.path) for e in ENDPOINTS if e.ok is None} == FIRST_TEN
    for e in ENDPOINTS:
        assert (e.valid is not None) == e.reads_body or e.ok is None, e


@pytest.fixture
def device(user):
    return PhoneDevice.objects.create(user=user, number=PHONE, confirmed=True, name="Phone")


def start_login(browser: Client) -> dict[str, Any]:
    """The password: the login waits for the second factor."""
    answer = send(
        browser,
        "post",
        API + "login/",
        json.dumps({"username": "alice", "password": "correct horse"}),
        "application/json",
    )
    assert answer.status_code == 200, answer.content
    assert answer.json()["mfa_required"] is True
    return answer.json()


def log_in(browser: Client, outbox) -> Client:
    """Password and the phone's code: verified, the step-up window open."""
    challenge = start_login(browser)["challenge"]["id"]
    answer = send(
        browser,
        "post",
        API + "login/verify/",
        json.dumps({"challenge": challenge, "code": outbox[-1].code}),
        "application/json",
    )
    assert answer.status_code == 200, answer.content
    return browser


@pytest.fixture
def logged_in(user, device, outbox):
    """A client logged in with password and code (verified: every endpoint
    reaches its body)."""
    return log_in(Client(raise_request_exception=False), outbox)


def reset_world(user, device: PhoneDevice, *, adding_app: bool) -> World:
    """The user's methods as :class:`World` says, whatever an earlier
    operation's fuzz removed or used up."""
    TOTPDevice.objects.filter(user=user).delete()
    if adding_app:
        app = methods.start_totp(user)
    else:
        app = TOTPDevice.objects.create(user=user, name="Authenticator app", confirmed=True)
    codes = methods.generate_recovery_codes(user)
    methods.remember_browser(user, device)  # after the codes: new codes forget browsers
    browser = RememberedBrowser.objects.filter(user=user, revoked_at=None).latest("created_at")
    return World(codes=codes, app=app, browser=browser)


@pytest.fixture
def in_state(user, device, outbox, sms2fa_settings):
    """``in_state(state)``: a new client in ``state`` (see :class:`Endpoint`)
    and the user's :class:`World`, reset. The cache is emptied first: the
    account's wrong-code lockout that one operation's fuzz ran into does not
    answer for the next operation."""
    sms2fa_settings(REMEMBER_BROWSER_DAYS=30)

    def build(state: str) -> tuple[Client, World]:
        for cache in caches.all():
            cache.clear()
        world = reset_world(user, device, adding_app=state == "adding-app")
        browser = Client(raise_request_exception=False)
        if state == "pending-login":
            start_login(browser)
        elif state in ("logged-in", "adding-app"):
            log_in(browser, outbox)
        else:
            assert state == "anonymous", state
        return browser, world

    return build


def fill(
    path: str,
    *,
    challenge: str | None = None,
    device: int | str = 1,
    browser: uuid.UUID | str | None = None,
) -> str:
    return API + path.format(
        challenge=challenge or uuid.uuid4(), device=device, browser=browser or uuid.uuid4()
    )


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
@pytest.mark.parametrize("endpoint", BODY_ENDPOINTS, ids=BODY_IDS)
def test_deep_nesting_answers_400_parse_error(in_state, device, endpoint, name):
    browser, world = in_state(reaching(endpoint))
    response = send(
        browser,
        endpoint.method,
        fill(endpoint.path, device=device.pk, browser=world.browser.pk),
        DEEP_BODIES[name],
        "application/json",
    )
    assert response.status_code == 400, response.content[:200]
    error = assert_error_shape(response)
    if name in ("just-parseable", "object-600"):
        # Parsed (or refused for its depth): either way a client error.
        assert error["code"] in {"parse_error", "invalid"}, error
    else:
        assert error["code"] == "parse_error", error
    assert "Traceback" not in response.content.decode()


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=IDS)
@pytest.mark.parametrize("anonymous", [True, False], ids=["anonymous", "in-its-state"])
def test_deep_nesting_never_5xx_on_any_endpoint(in_state, device, endpoint, anonymous):
    browser, world = in_state("anonymous" if anonymous else reaching(endpoint))
    url = fill(endpoint.path, device=device.pk, browser=world.browser.pk)
    for name in ("open-brackets", "open-objects"):
        response = send(browser, endpoint.method, url, DEEP_BODIES[name], "application/json")
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
@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=IDS)
def test_any_accept_gets_json(in_state, device, endpoint, accept):
    extra = {"HTTP_ACCEPT": accept} if accept else {}
    reached, world = in_state(reaching(endpoint))
    url = fill(endpoint.path, device=device.pk, browser=world.browser.pk)
    for browser in (Client(raise_request_exception=False), reached):
        response = send(browser, endpoint.method, url, "{}", "application/json", **extra)
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
    return corpus


#: Every field a body of the API reads.
FIELD_NAMES = (
    "phone",
    "purpose",
    "code",
    "username",
    "password",
    "challenge",
    "replaces",
    "method",
    "channel",
    "id",
    "remember",
)
ODD_VALUES = {
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


def odd_value_body(valid: dict[str, Any], field: str, value: Any) -> bytes:
    """One field odd, the others those of the operation's ``valid`` body (a
    plausible value where it has none): one bad field away from going through."""
    body = {
        "phone": PHONE,
        "purpose": "verify_phone",
        "code": "123456",
        "username": "alice",
        "password": "x",
        "challenge": str(uuid.uuid4()),
        "method": "totp",
        "channel": "sms",
        **valid,
        field: value,
    }
    return json.dumps(body, ensure_ascii=True).encode()


# Path parameters: ids no route should turn into a 500.
ODD_CHALLENGES = ["not-a-uuid", "0" * 5000, "%00", "%F0%9F%93%B1", str(uuid.UUID(int=0))]
ODD_DEVICES = ["0", str(2**63), str(2**64 + 1), "9" * 400]
ODD_BROWSERS = [*ODD_CHALLENGES, "x" * 300, str(uuid.uuid4()).upper(), "-1"]


@pytest.mark.parametrize("endpoint", [e for e in ENDPOINTS if e.ok is not None], ids=IDS[10:])
def test_each_valid_request_succeeds_in_its_state(in_state, device, endpoint):
    """The states and bodies the fuzz starts from are right: each operation's
    valid request, in its state, goes through (and anonymously it does not)."""
    browser, world = in_state(endpoint.state)
    body = json.dumps(endpoint.valid(world)) if endpoint.valid else b""
    url = fill(endpoint.path, device=device.pk, browser=world.browser.pk)
    response = send(browser, endpoint.method, url, body, "application/json")
    assert response.status_code == endpoint.ok, response.content[:300]
    if endpoint.path != "logout/":  # 204 whoever asks
        stranger, world = in_state("anonymous")
        body = json.dumps(endpoint.valid(world)) if endpoint.valid else b""
        url = fill(endpoint.path, device=device.pk, browser=world.browser.pk)
        response = send(stranger, endpoint.method, url, body, "application/json")
        # No pending login: it has expired, as far as the client can tell.
        refused = 410 if endpoint.state == "pending-login" else 403
        assert response.status_code == refused, response.content[:300]


ODD_PARAMETERS = {
    "{challenge}": ("challenge", ODD_CHALLENGES),
    "{device}": ("device", ODD_DEVICES),
    "{browser}": ("browser", ODD_BROWSERS),
}


def fuzz_operation(
    endpoint: Endpoint,
    who: str,
    in_state: Callable[[str], tuple[Client, World]],
    device: PhoneDevice,
    corpus: list[tuple[str, bytes, str]],
    record: Callable[[str, Any], None],
) -> None:
    """Send ``endpoint`` every body of ``corpus``, every odd field value and
    every odd path parameter, as a client in state ``who``."""
    method, path = endpoint.method, endpoint.path
    browser, world = in_state(who)

    def attempt(name: str, url: str, body: bytes, content_type: str) -> None:
        nonlocal browser, world
        response = send(browser, method, url, body, content_type)
        record(f"{who} {method.upper()} {path} {name}", response)
        used_up = 200 <= response.status_code < 300 or response.status_code == 429
        if endpoint.once and who == endpoint.state and used_up:
            browser, world = in_state(who)

    def valid() -> dict[str, Any]:
        return endpoint.valid(world) if endpoint.valid else {}

    def url() -> str:
        # Not the phone itself on DELETE: the fuzz goes on with a verified session.
        return fill(
            path,
            device=device.pk if method != "delete" else device.pk + 1000,
            browser=world.browser.pk,
        )

    items = corpus if endpoint.reads_body else corpus[:: max(len(corpus) // 25, 1)]
    for name, body, content_type in items:
        attempt(name, url(), body, content_type)
    for field in FIELD_NAMES if endpoint.reads_body else ():
        for name, value in ODD_VALUES.items():
            attempt(f"value:{field}={name}", url(), odd_value_body(valid(), field, value), JSON)
    for marker, (param, values) in ODD_PARAMETERS.items():
        for value in values if marker in path else ():
            odd_url = API + path.replace(marker, value).format(device=device.pk)
            attempt(f"{param}={value[:20]}", odd_url, json.dumps(valid()).encode(), JSON)


def test_fuzz_every_endpoint_never_5xx(in_state, device, capsys):
    """Every operation, from an anonymous client, a logged-in one and the
    state that reaches its body, each built afresh (with the user's methods
    and the cache reset) for the operation."""
    started = time.monotonic()
    statuses: Counter[int] = Counter()
    # Per operation, what the client in its state got: proof the fuzz reached it.
    reached: dict[str, Counter[int]] = {}
    failures: list[str] = []
    corpus = fixed_corpus()

    def record(label: str, response) -> None:
        statuses[response.status_code] += 1
        who, method, path = label.split(" ")[:3]
        if who == reaching(BY_OPERATION[method.lower(), path]):
            reached.setdefault(f"{method} {path}", Counter())[response.status_code] += 1
        if response.status_code >= 500:
            failures.append(f"{response.status_code} {label}")
        elif response.status_code >= 400:
            try:
                assert_error_shape(response)
            except (AssertionError, ValueError):
                failures.append(f"shape {response.status_code} {label}")

    for endpoint in ENDPOINTS:
        for who in dict.fromkeys(("anonymous", "logged-in", endpoint.state)):
            fuzz_operation(endpoint, who, in_state, device, corpus, record)

    requests = sum(statuses.values())
    fivexx = sum(n for status, n in statuses.items() if status >= 500)
    with capsys.disabled():
        print(
            f"\nAPI fuzz (fixed corpus): {requests} requests over {len(ENDPOINTS)} operations, "
            f"up to 3 client states each, {len(corpus)} bodies + {len(FIELD_NAMES)} fields x "
            f"{len(ODD_VALUES)} odd values; 5xx answers: {fivexx}; "
            f"statuses {dict(sorted(statuses.items()))}; {time.monotonic() - started:.1f} s"
        )
        for operation, seen in reached.items():
            print(f"  {operation}: {dict(sorted(seen.items()))}")
    assert failures == [], failures[:20]
    assert fivexx == 0


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
FIELDS = st.sampled_from(FIELD_NAMES)
BODIES = st.one_of(
    st.dictionaries(FIELDS, JSON_VALUES, max_size=7).map(lambda d: json.dumps(d).encode()),
    JSON_VALUES.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=200),
)


@pytest.mark.parametrize("endpoint", BODY_ENDPOINTS, ids=BODY_IDS)
def test_fuzz_hypothesis_bodies_never_5xx(in_state, device, endpoint):
    browser, world = in_state(reaching(endpoint))
    url = fill(endpoint.path, device=device.pk, browser=world.browser.pk)
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
        response = send(browser, endpoint.method, url, body, "application/json")
        seen[response.status_code] += 1
        assert response.status_code < 500, (body[:200], response.status_code)
        if response.status_code >= 400:
            assert_error_shape(response)

    attempt()
    print(
        f"\nAPI fuzz (hypothesis) {endpoint.method.upper()} {endpoint.path}: "
        f"{dict(sorted(seen.items()))}"
    )
