"""The OpenAPI schema (drf-spectacular) describes every endpoint, body and error.

Two kinds of tests:

* the schema itself: every route of ``django_sms2fa.api.urls`` with its
  methods, path parameter formats, the 204s, JSON-only bodies, the error
  answers of each operation with the stable codes it can return (each under
  the status ``errors.STATUS_BY_CODE`` gives it), ``Retry-After`` on 429, and
  a schema that validates without generator warnings;
* real answers of the API, one per kind, checked against the schema: status
  documented, body valid against the documented schema, required headers.
"""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("drf_spectacular")

import jsonschema  # noqa: E402  (a dependency of drf-spectacular)
from drf_spectacular.validation import validate_schema  # noqa: E402

from django.urls import URLPattern  # noqa: E402

from django_sms2fa.api import urls as api_urls  # noqa: E402
from django_sms2fa.api.errors import STATUS_BY_CODE  # noqa: E402
from django_sms2fa.exceptions import ProviderUnavailable  # noqa: E402
from django_sms2fa.models import PhoneDevice  # noqa: E402
from django_sms2fa.providers import locmem  # noqa: E402

API = "/api/2fa/"  # where tests/urls.py mounts the API
PHONE = "+46701234567"
OTHER_PHONE = "+46709876543"
PASSWORD = "correct horse"  # the `user` fixture's
HTTP_METHODS = ("get", "post", "put", "patch", "delete")

# Error codes that DRF (not the domain) answers, with their status for
# session authentication.
DRF_STATUS = {
    "invalid": 400,
    "parse_error": 400,
    "not_authenticated": 403,
    "permission_denied": 403,
    "request_too_large": 413,
    "unsupported_media_type": 415,
    "rate_limited": 429,  # DRF throttling answers with the domain's code
}

# STATUS_BY_CODE entries no API answer carries, and why.
NOT_SENT_BY_THE_API = {
    # Raised by login_flows.redeem_phone_token(), which registration code calls.
    "invalid_phone_token",
    # Provider errors are answered as delivery_failed: provider detail is for the audit.
    "provider_error",
    "provider_rejected",
    "provider_unavailable",
}

CLOSED = {"challenge_expired", "challenge_used", "challenge_cancelled", "challenge_undeliverable"}
BODY_ERRORS = {
    400: {"invalid", "parse_error"},
    413: {"request_too_large"},
    415: {"unsupported_media_type"},
}
# flows._guard_send refuses a send: allow-lists, lockout, pumping breaker, limits.
SEND_REFUSED = {"rate_limited", "verification_locked", "destination_suspended"}
# flows.verify_challenge: attempts used up, or the account's lockout.
CHECK_REFUSED = {"too_many_attempts", "verification_locked"}

# A logged-in user's call, and one that changes a sign-in method (step-up).
AUTHENTICATED = {"not_authenticated", "permission_denied"}
STEP_UP = {"second_factor_required", "step_up_required"}

# What each operation can answer, read from the views and the flows they call
# (kept here, apart from the views' decorators, so that either can catch the
# other out). Statuses map to codes that must all be documented under them.
CAN_ANSWER: dict[tuple[str, str], dict[int, set[str]]] = {
    ("post", "challenges/"): {
        **BODY_ERRORS,
        400: {"invalid", "parse_error", "invalid_phone", "number_not_allowed"},
        403: {"permission_denied"},
        429: SEND_REFUSED,
        503: {"delivery_failed", "service_unavailable"},
    },
    ("delete", "challenges/{challenge_id}/"): {
        403: {"permission_denied"},
        404: {"challenge_not_found"},
    },
    ("post", "challenges/{challenge_id}/resend/"): {
        400: {"number_not_allowed"},
        403: {"permission_denied"},
        404: {"challenge_not_found"},
        409: {"challenge_queued"},
        410: CLOSED,
        429: SEND_REFUSED | {"too_many_attempts"},
        503: {"delivery_failed", "service_unavailable"},
    },
    ("post", "challenges/{challenge_id}/verify/"): {
        **BODY_ERRORS,
        400: {"invalid", "parse_error", "invalid_code", "incorrect_code"},
        403: {"permission_denied"},
        404: {"challenge_not_found"},
        409: {"challenge_queued"},
        410: CLOSED,
        429: CHECK_REFUSED,
        503: {"delivery_failed", "service_unavailable"},
    },
    ("post", "login/"): {
        **BODY_ERRORS,
        # method_unavailable: the user's default method was removed meanwhile.
        400: {"invalid", "parse_error", "invalid_credentials", "number_not_allowed"},
        403: {"permission_denied"},
        429: SEND_REFUSED,
        503: {"delivery_failed", "service_unavailable"},
    },
    ("post", "login/verify/"): {
        **BODY_ERRORS,
        # method_unavailable: the pending method's device was removed meanwhile.
        400: {"invalid", "parse_error", "invalid_code", "incorrect_code", "method_unavailable"},
        403: {"permission_denied"},
        404: {"challenge_not_found"},
        409: {"challenge_queued"},
        410: CLOSED | {"login_expired"},
        429: CHECK_REFUSED,
        503: {"delivery_failed", "service_unavailable"},
    },
    ("get", "devices/"): {403: {"not_authenticated"}},
    ("post", "devices/"): {
        **BODY_ERRORS,
        400: {"invalid", "parse_error", "invalid_phone", "number_not_allowed"},
        403: AUTHENTICATED | STEP_UP,
        404: {"device_not_found"},
        409: {"phone_already_enrolled"},
        429: SEND_REFUSED,
        503: {"delivery_failed", "service_unavailable"},
    },
    ("post", "devices/{device_id}/confirm/"): {
        **BODY_ERRORS,
        400: {"invalid", "parse_error", "invalid_code", "incorrect_code"},
        403: {"not_authenticated", "permission_denied"},
        404: {"device_not_found", "challenge_not_found"},
        409: {"challenge_queued"},
        410: CLOSED,
        429: CHECK_REFUSED,
        503: {"delivery_failed", "service_unavailable"},
    },
    ("delete", "devices/{device_id}/"): {
        403: AUTHENTICATED | STEP_UP,
        404: {"device_not_found"},
    },
    # Between password and code: another of the user's methods.
    ("post", "login/method/"): {
        **BODY_ERRORS,
        400: {"invalid", "parse_error", "method_unavailable", "number_not_allowed"},
        403: {"permission_denied"},
        410: {"login_expired"},
        429: SEND_REFUSED,
        503: {"delivery_failed", "service_unavailable"},
    },
    ("post", "logout/"): {403: {"permission_denied"}},
    ("get", "methods/"): {403: {"not_authenticated"}},
    ("post", "totp/"): {
        400: {"method_unavailable"},
        403: AUTHENTICATED | STEP_UP,
        409: {"method_already_enrolled"},
    },
    ("delete", "totp/"): {403: AUTHENTICATED | STEP_UP},
    ("post", "totp/confirm/"): {
        **BODY_ERRORS,
        400: {"invalid", "parse_error", "invalid_code", "incorrect_code"},
        403: AUTHENTICATED,
        404: {"device_not_found"},
        409: {"method_already_enrolled"},
        429: {"verification_locked"},
        503: {"service_unavailable"},
    },
    ("get", "recovery-codes/"): {403: {"not_authenticated"}},
    ("post", "recovery-codes/"): {
        400: {"method_unavailable"},
        403: AUTHENTICATED | STEP_UP,
    },
    ("get", "browsers/"): {403: {"not_authenticated"}},
    ("delete", "browsers/{browser_id}/"): {403: AUTHENTICATED, 404: {"device_not_found"}},
    ("post", "browsers/forget-all/"): {403: AUTHENTICATED},
    ("post", "step-up/challenge/"): {
        **BODY_ERRORS,
        400: {"invalid", "parse_error", "number_not_allowed", "method_unavailable"},
        403: AUTHENTICATED | {"second_factor_required"},
        429: SEND_REFUSED,
        503: {"delivery_failed", "service_unavailable"},
    },
    ("post", "step-up/"): {
        **BODY_ERRORS,
        400: {"invalid", "parse_error", "invalid_code", "incorrect_code", "method_unavailable"},
        403: AUTHENTICATED | {"second_factor_required"},
        404: {"challenge_not_found"},
        409: {"challenge_queued"},
        410: CLOSED,
        429: CHECK_REFUSED,
        503: {"delivery_failed", "service_unavailable"},
    },
}


# -------------------------------------------------------------------- schema


# Generates the schema of the test site (tests.urls) with drf-spectacular.
# In a fresh interpreter: extend_schema binds each view to the schema class
# that DRF's DEFAULT_SCHEMA_CLASS names when views.py is imported, and the
# test settings leave it at DRF's own, which drf-spectacular cannot use.
GENERATE = """
import json, os, sys
os.environ["DJANGO_SETTINGS_MODULE"] = "tests.settings"
from django.conf import settings
settings.REST_FRAMEWORK = {"DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema"}
import django
django.setup()
from drf_spectacular.drainage import GENERATOR_STATS
from drf_spectacular.generators import SchemaGenerator
with GENERATOR_STATS.silence():
    schema = SchemaGenerator(urlconf="tests.urls").get_schema(request=None, public=True)
problems = sorted({**GENERATOR_STATS._warn_cache, **GENERATOR_STATS._error_cache})
json.dump({"schema": schema, "problems": problems}, sys.stdout, default=str)
"""


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    """The schema of the test site, as plain JSON (as /api/schema/ serves it)."""
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run(
        [sys.executable, "-c", GENERATE],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    generated = json.loads(done.stdout)
    assert not generated["problems"], f"drf-spectacular: {generated['problems']}"
    return generated["schema"]


def api_routes() -> dict[str, set[str]]:
    """Path template (as OpenAPI writes it) → methods, from django_sms2fa.api.urls."""
    routes: dict[str, set[str]] = {}
    for pattern in api_urls.urlpatterns:
        assert isinstance(pattern, URLPattern)
        template = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", str(pattern.pattern))
        view = pattern.callback.view_class
        routes[template] = {
            method for method in HTTP_METHODS if callable(getattr(view, method, None))
        }
    return routes


def operation(schema: dict[str, Any], method: str, template: str) -> dict[str, Any]:
    return schema["paths"][API + template][method]


def error_responses(op: dict[str, Any]) -> dict[int, dict[str, Any]]:
    return {int(status): answer for status, answer in op["responses"].items() if int(status) >= 400}


def documented_codes(answer: dict[str, Any]) -> list[str]:
    body = answer["content"]["application/json"]["schema"]
    return body["properties"]["error"]["properties"]["code"]["enum"]


def all_operations(schema: dict[str, Any]):
    for path, methods in schema["paths"].items():
        for method, op in methods.items():
            if method in HTTP_METHODS:
                yield method, path, op


def test_the_schema_validates_against_the_openapi_specification(schema):
    validate_schema(schema)
    assert schema["openapi"].startswith("3.")


def test_every_route_of_the_api_is_documented_with_its_methods(schema):
    routes = api_routes()
    assert len(routes) == 20
    documented = {
        path[len(API) :]: {m for m in methods if m in HTTP_METHODS}
        for path, methods in schema["paths"].items()
        if path.startswith(API)
    }
    assert documented == routes


def test_the_expected_error_table_covers_every_operation():
    # CAN_ANSWER must follow the URLs: a new operation needs its row.
    operations = {(m, path) for path, methods in api_routes().items() for m in methods}
    assert set(CAN_ANSWER) == operations


@pytest.mark.parametrize("method, template", sorted(CAN_ANSWER))
def test_each_operation_documents_every_error_it_can_answer(schema, method, template):
    errors = error_responses(operation(schema, method, template))
    for status, codes in CAN_ANSWER[method, template].items():
        assert status in errors, f"{method.upper()} {template}: {status} is not documented"
        missing = codes - set(documented_codes(errors[status]))
        assert not missing, f"{method.upper()} {template} {status}: {sorted(missing)} missing"


def test_every_documented_code_sits_under_its_status(schema):
    for method, path, op in all_operations(schema):
        for status, answer in error_responses(op).items():
            for code in documented_codes(answer):
                expected = STATUS_BY_CODE.get(code, DRF_STATUS.get(code))
                assert expected is not None, f"{code!r} ({method} {path}) is no known code"
                assert status == expected, f"{method.upper()} {path}: {code} under {status}"


def test_every_stable_code_is_documented_unless_no_answer_carries_it(schema):
    documented = {
        code
        for _method, _path, op in all_operations(schema)
        for answer in error_responses(op).values()
        for code in documented_codes(answer)
    }
    assert set(STATUS_BY_CODE) - documented == NOT_SENT_BY_THE_API
    assert not documented & NOT_SENT_BY_THE_API
    assert set(DRF_STATUS) <= documented


def test_every_error_answer_has_the_one_error_shape(schema):
    for method, path, op in all_operations(schema):
        errors = error_responses(op)
        assert errors, f"{method.upper()} {path} documents no error"
        for status, answer in errors.items():
            assert set(answer["content"]) == {"application/json"}
            body = answer["content"]["application/json"]["schema"]
            assert body["required"] == ["error"]
            error = body["properties"]["error"]
            assert {"code", "message"} <= set(error["required"])
            assert error["properties"]["code"]["type"] == "string"
            assert error["properties"]["message"]["type"] == "string"
            codes = documented_codes(answer)
            assert codes and len(codes) == len(set(codes))
            assert ("attempts_left" in error["properties"]) == ("incorrect_code" in codes)
            assert ("fields" in error["properties"]) == ("invalid" in codes)
            for code in codes:  # each code is explained in the answer's description
                assert f"`{code}`" in answer["description"]
            if status == 429:
                assert "retry_after" in error["required"]
                assert error["properties"]["retry_after"]["type"] == "integer"
                header = answer["headers"]["Retry-After"]
                assert header["required"] is True
                assert header["schema"]["type"] == "integer"
            else:
                assert "retry_after" not in error["properties"]
                assert "Retry-After" not in answer.get("headers", {})


def test_every_operation_can_answer_429_with_retry_after(schema):
    # The site's DRF throttling (and the send limits) can refuse any request.
    for method, path, op in all_operations(schema):
        assert "rate_limited" in documented_codes(op["responses"]["429"]), (method, path)


@pytest.mark.parametrize("template", ["challenges/{challenge_id}/", "devices/{device_id}/"])
def test_deletes_answer_204_without_a_body(schema, template):
    responses = operation(schema, "delete", template)["responses"]
    assert "content" not in responses["204"]
    assert [status for status in responses if status.startswith("2")] == ["204"]


def test_path_parameters_have_their_formats(schema):
    for method, path, op in all_operations(schema):
        params = {p["name"]: p for p in op.get("parameters", []) if p["in"] == "path"}
        assert set(params) == set(re.findall(r"{(\w+)}", path)), (method, path)
        if "challenge_id" in params:
            assert params["challenge_id"]["schema"] == {"type": "string", "format": "uuid"}
            assert params["challenge_id"]["required"] is True
        if "device_id" in params:
            assert params["device_id"]["schema"]["type"] == "integer"
            assert params["device_id"]["schema"]["minimum"] == 0
            assert params["device_id"]["required"] is True


def test_request_bodies_are_json_only_and_as_validated(schema):
    bodies = {
        ("post", "challenges/"): ("ChallengeRequest", {"phone", "purpose"}),
        ("post", "challenges/{challenge_id}/verify/"): ("Code", {"code"}),
        # optional: {"channel": "call"} switches the channel ("call me instead")
        ("post", "challenges/{challenge_id}/resend/"): ("Resend", set()),
        ("post", "login/"): ("Login", {"username", "password"}),
        # challenge: only where the pending method is the phone
        ("post", "login/verify/"): ("LoginVerify", {"code"}),
        ("post", "login/method/"): ("LoginMethod", {"method"}),
        ("post", "totp/confirm/"): ("TotpConfirm", {"code"}),
        ("post", "step-up/"): ("StepUp", {"method", "code"}),
        # optional: {"channel": "call"}
        ("post", "step-up/challenge/"): ("StepUpChallenge", set()),
        ("post", "devices/"): ("DeviceEnrol", {"phone"}),
        ("post", "devices/{device_id}/confirm/"): ("DeviceConfirm", {"challenge", "code"}),
    }
    for method, path, op in all_operations(schema):
        key = (method, path[len(API) :])
        if key not in bodies:
            assert "requestBody" not in op, key
            continue
        name, required = bodies[key]
        content = op["requestBody"]["content"]
        assert set(content) == {"application/json"}, key
        assert content["application/json"]["schema"] == {"$ref": f"#/components/schemas/{name}"}
        assert set(schema["components"]["schemas"][name].get("required", [])) == required
    purpose = schema["components"]["schemas"]["ChallengeRequest"]["properties"]["purpose"]
    enum = schema["components"]["schemas"][purpose["$ref"].rsplit("/", 1)[1]]["enum"]
    assert set(enum) == {"verify_phone", "passwordless"}


def test_the_challenge_answer_is_typed(schema):
    challenge = schema["components"]["schemas"]["Challenge"]
    fields = {
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
    assert set(challenge["required"]) == fields
    props = challenge["properties"]
    assert props["id"]["format"] == "uuid"
    assert props["expires_at"]["format"] == props["resend_at"]["format"] == "date-time"


# ------------------------------------------------- real answers vs the schema


def _json_schema(node: Any) -> Any:
    """OpenAPI 3.0 → JSON Schema: ``nullable: true`` becomes a null type."""
    if isinstance(node, list):
        return [_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: _json_schema(value) for key, value in node.items() if key != "nullable"}
    if node.get("nullable") and "type" in node:
        out["type"] = [node["type"], "null"]
    return out


def assert_matches_schema(schema, method: str, template: str, response) -> Any:
    """The answer's status is documented, and its body and headers match."""
    op = operation(schema, method, template)
    status = str(response.status_code)
    assert status in op["responses"], f"{method.upper()} {template}: {status} undocumented"
    documented = op["responses"][status]
    if "content" not in documented:
        assert response.content == b""
        return None
    assert response["Content-Type"].split(";")[0] in documented["content"]
    body = response.json()
    body_schema = copy.deepcopy(documented["content"]["application/json"]["schema"])
    resolver_root = _json_schema({**body_schema, "components": schema["components"]})
    jsonschema.Draft4Validator(
        resolver_root, format_checker=jsonschema.Draft4Validator.FORMAT_CHECKER
    ).validate(body)
    for name, header in documented.get("headers", {}).items():
        if header.get("required"):
            assert response.has_header(name), f"{status} without {name}"
        if response.has_header(name) and header["schema"]["type"] == "integer":
            assert re.fullmatch(r"[0-9]+", response[name])
    return body


def post(client, path: str, data: Any = None):
    return client.post(API + path, {} if data is None else data, content_type="application/json")


def create(client, purpose: str = "verify_phone", phone: str = PHONE):
    return post(client, "challenges/", {"phone": phone, "purpose": purpose})


def wrong(code: str) -> str:
    return "".join(str((int(d) + 1) % 10) for d in code)


@pytest.fixture
def verified(client, user, outbox):
    """A client logged in with password and code (a verified session)."""
    PhoneDevice.objects.create(user=user, number=PHONE, name="Mobile", confirmed=True)
    challenge_id = post(client, "login/", {"username": "alice", "password": PASSWORD}).json()[
        "challenge"
    ]["id"]
    answer = post(client, "login/verify/", {"challenge": challenge_id, "code": outbox[-1].code})
    assert answer.status_code == 200, answer.content
    return client


@pytest.mark.django_db
def test_challenge_answers_match_the_schema(schema, client, outbox, sms2fa_settings):
    sms2fa_settings(RESEND_INTERVAL=30)
    body = assert_matches_schema(schema, "post", "challenges/", create(client))
    challenge_id = body["id"]
    code = outbox[-1].code
    for_id = "challenges/{challenge_id}/"

    # 429 with Retry-After: the resend cooldown.
    answer = assert_matches_schema(
        schema, "post", for_id + "resend/", post(client, f"challenges/{challenge_id}/resend/")
    )
    assert answer["error"]["code"] == "rate_limited"

    wrong_code = post(client, f"challenges/{challenge_id}/verify/", {"code": wrong(code)})
    answer = assert_matches_schema(schema, "post", for_id + "verify/", wrong_code)
    assert answer["error"]["code"] == "incorrect_code"
    assert answer["error"]["attempts_left"] >= 0

    not_a_code = post(client, f"challenges/{challenge_id}/verify/", {"code": "12a"})
    answer = assert_matches_schema(schema, "post", for_id + "verify/", not_a_code)
    assert answer["error"]["code"] == "invalid_code"

    ok = post(client, f"challenges/{challenge_id}/verify/", {"code": code})
    assert assert_matches_schema(schema, "post", for_id + "verify/", ok)["phone_token"]

    used = post(client, f"challenges/{challenge_id}/verify/", {"code": code})
    assert assert_matches_schema(schema, "post", for_id + "verify/", used)["error"]["code"] == (
        "challenge_used"
    )

    unknown = post(client, f"challenges/{uuid.uuid4()}/verify/", {"code": code})
    answer = assert_matches_schema(schema, "post", for_id + "verify/", unknown)
    assert answer["error"]["code"] == "challenge_not_found"


@pytest.mark.django_db
def test_cancel_then_resend_matches_the_schema(schema, client, outbox):
    challenge_id = create(client).json()["id"]
    cancelled = client.delete(f"{API}challenges/{challenge_id}/")
    assert cancelled.status_code == 204
    assert_matches_schema(schema, "delete", "challenges/{challenge_id}/", cancelled)
    resend = post(client, f"challenges/{challenge_id}/resend/")
    answer = assert_matches_schema(schema, "post", "challenges/{challenge_id}/resend/", resend)
    assert answer["error"]["code"] == "challenge_cancelled"
    missing = client.delete(f"{API}challenges/not-a-uuid/")
    answer = assert_matches_schema(schema, "delete", "challenges/{challenge_id}/", missing)
    assert answer["error"]["code"] == "challenge_not_found"


@pytest.mark.django_db
@pytest.mark.parametrize(
    "body, content_type, status, code",
    [
        ({"purpose": "verify_phone"}, "application/json", 400, "invalid"),
        ({"phone": "12", "purpose": "verify_phone"}, "application/json", 400, "invalid_phone"),
        ('{"phone": ', "application/json", 400, "parse_error"),
        ("phone=%2B46701234567&purpose=verify_phone", "application/x-www-form-urlencoded", 415,
         "unsupported_media_type"),
    ],
    ids=["invalid", "invalid_phone", "parse_error", "form"],
)  # fmt: skip
def test_refused_bodies_match_the_schema(schema, client, body, content_type, status, code):
    if isinstance(body, dict):
        body = json.dumps(body)
    response = client.post(API + "challenges/", body, content_type=content_type)
    assert response.status_code == status, response.content
    answer = assert_matches_schema(schema, "post", "challenges/", response)
    assert answer["error"]["code"] == code
    if code == "invalid":
        assert answer["error"]["fields"]["phone"]


@pytest.mark.django_db
def test_a_body_over_the_upload_limit_matches_the_schema(schema, client, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    body = json.dumps({"phone": "1" * 2000, "purpose": "verify_phone"})
    response = client.post(API + "challenges/", body, content_type="application/json")
    assert response.status_code == 413
    answer = assert_matches_schema(schema, "post", "challenges/", response)
    assert answer["error"]["code"] == "request_too_large"


@pytest.mark.django_db
def test_send_refusals_match_the_schema(schema, client, send_limits, sms2fa_settings):
    assert create(client).status_code == 202
    again = create(client)  # the phone's "1/30s" limit
    answer = assert_matches_schema(schema, "post", "challenges/", again)
    assert again.status_code == 429 and answer["error"]["code"] == "rate_limited"
    assert int(again["Retry-After"]) == answer["error"]["retry_after"] > 0

    sms2fa_settings(ALLOWED_REGIONS=["NO"])
    elsewhere = create(client, phone=OTHER_PHONE)
    answer = assert_matches_schema(schema, "post", "challenges/", elsewhere)
    assert elsewhere.status_code == 400 and answer["error"]["code"] == "number_not_allowed"


@pytest.mark.django_db
def test_the_lockout_matches_the_schema(schema, client, outbox, sms2fa_settings):
    sms2fa_settings(LOCKOUT_THRESHOLD=3, MAX_ATTEMPTS=10)
    challenge_id = create(client).json()["id"]
    verify = f"challenges/{challenge_id}/verify/"
    for _attempt in range(3):
        assert post(client, verify, {"code": wrong(outbox[-1].code)}).status_code == 400
    locked = post(client, verify, {"code": outbox[-1].code})
    answer = assert_matches_schema(schema, "post", "challenges/{challenge_id}/verify/", locked)
    assert locked.status_code == 429 and answer["error"]["code"] == "verification_locked"
    assert int(locked["Retry-After"]) == answer["error"]["retry_after"] > 0


@pytest.mark.django_db
def test_provider_outage_matches_the_schema(schema, client):
    locmem.fail_next(ProviderUnavailable(provider="locmem"))
    response = create(client)
    answer = assert_matches_schema(schema, "post", "challenges/", response)
    assert response.status_code == 503
    assert answer["error"]["code"] == "delivery_failed"


@pytest.mark.django_db
def test_login_answers_match_the_schema(schema, client, user, outbox):
    bad = post(client, "login/", {"username": "alice", "password": "wrong"})
    assert assert_matches_schema(schema, "post", "login/", bad)["error"]["code"] == (
        "invalid_credentials"
    )
    no_pending = post(client, "login/verify/", {"challenge": str(uuid.uuid4()), "code": "123456"})
    answer = assert_matches_schema(schema, "post", "login/verify/", no_pending)
    assert answer["error"]["code"] == "login_expired"

    credentials = {"username": "alice", "password": PASSWORD}
    password_only = assert_matches_schema(
        schema, "post", "login/", post(client, "login/", credentials)
    )
    assert password_only["mfa_required"] is False and password_only["user"]["username"] == "alice"

    PhoneDevice.objects.create(user=user, number=PHONE, name="Mobile", confirmed=True)
    client.logout()
    first = post(client, "login/", credentials)
    answer = assert_matches_schema(schema, "post", "login/", first)
    assert answer["mfa_required"] is True
    challenge_id = answer["challenge"]["id"]
    code = outbox[-1].code
    foreign = post(client, "login/verify/", {"challenge": str(uuid.uuid4()), "code": code})
    answer = assert_matches_schema(schema, "post", "login/verify/", foreign)
    assert answer["error"]["code"] == "challenge_not_found"
    ok = post(client, "login/verify/", {"challenge": challenge_id, "code": code})
    assert assert_matches_schema(schema, "post", "login/verify/", ok)["user"]["id"] == user.pk


@pytest.mark.django_db
def test_passwordless_answers_match_the_schema(schema, client, user, outbox):
    PhoneDevice.objects.create(user=user, number=PHONE, name="Mobile", confirmed=True)
    challenge = assert_matches_schema(
        schema, "post", "challenges/", create(client, purpose="passwordless")
    )
    ok = post(client, f"challenges/{challenge['id']}/verify/", {"code": outbox[-1].code})
    answer = assert_matches_schema(schema, "post", "challenges/{challenge_id}/verify/", ok)
    assert answer["verified"] is True and answer["user"]["id"] == user.pk


@pytest.mark.django_db
def test_device_answers_match_the_schema(schema, client, verified, user, outbox):
    listed = assert_matches_schema(schema, "get", "devices/", client.get(API + "devices/"))
    assert [device["confirmed"] for device in listed] == [True]

    again = post(client, "devices/", {"phone": PHONE})
    assert assert_matches_schema(schema, "post", "devices/", again)["error"]["code"] == (
        "phone_already_enrolled"
    )
    no_such = post(client, "devices/", {"phone": OTHER_PHONE, "replaces": 999999})
    assert assert_matches_schema(schema, "post", "devices/", no_such)["error"]["code"] == (
        "device_not_found"
    )

    enrolment = assert_matches_schema(
        schema, "post", "devices/", post(client, "devices/", {"phone": OTHER_PHONE})
    )
    device_id, challenge_id = enrolment["device"]["id"], enrolment["challenge"]["id"]
    confirm = "devices/{device_id}/confirm/"
    stranger = post(
        client, f"devices/{device_id}/confirm/", {"challenge": str(uuid.uuid4()), "code": "1"}
    )
    assert assert_matches_schema(schema, "post", confirm, stranger)["error"]["code"] == (
        "challenge_not_found"
    )
    code = outbox[-1].code
    ok = post(client, f"devices/{device_id}/confirm/", {"challenge": challenge_id, "code": code})
    assert assert_matches_schema(schema, "post", confirm, ok)["confirmed"] is True

    # The session is verified with the new phone now: remove the first one.
    first_id = listed[0]["id"]
    removed = client.delete(f"{API}devices/{first_id}/")
    assert removed.status_code == 204
    assert_matches_schema(schema, "delete", "devices/{device_id}/", removed)
    gone = client.delete(f"{API}devices/{first_id}/")
    answer = assert_matches_schema(schema, "delete", "devices/{device_id}/", gone)
    assert answer["error"]["code"] == "device_not_found"


@pytest.mark.django_db
@pytest.mark.parametrize(
    "method, template, path",
    [
        ("get", "devices/", "devices/"),
        ("post", "devices/", "devices/"),
        ("post", "devices/{device_id}/confirm/", "devices/1/confirm/"),
        ("delete", "devices/{device_id}/", "devices/1/"),
    ],
)
def test_anonymous_device_answers_match_the_schema(schema, client, method, template, path):
    response = getattr(client, method)(API + path, {}, content_type="application/json")
    answer = assert_matches_schema(schema, method, template, response)
    assert answer["error"]["code"] == "not_authenticated"


@pytest.mark.django_db
def test_a_logged_in_session_without_its_csrf_token_matches_the_schema(schema, user):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(user)  # no phone: a password-only session is fully logged in
    response = post(client, "challenges/", {"phone": PHONE, "purpose": "verify_phone"})
    answer = assert_matches_schema(schema, "post", "challenges/", response)
    assert answer["error"]["code"] == "permission_denied"
