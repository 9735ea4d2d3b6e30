"""The conformance kit can fail: each of its checks catches the flaw it is for.

A small provider with switchable flaws runs the kit's checks: without flaws
every check passes; with one flaw, the check meant for it fails, with a
message that names the problem and never shows the secret it found.
"""

from __future__ import annotations

import dataclasses
import logging
import unittest
from typing import Any

import pytest
import requests

from django_sms2fa.exceptions import ProviderRejected, ProviderUnavailable
from django_sms2fa.providers.base import BaseProvider
from django_sms2fa.providers.http import HttpProvider
from django_sms2fa.providers.redaction import blank_known_codes
from django_sms2fa.testing import Answer, ProviderConformanceTests
from django_sms2fa.types import Capabilities, OutgoingSms, SendResult

KEY = "kit-target-key-0123456789-SECRET"
logger = logging.getLogger("tests.kit_target")


class Target(HttpProvider):
    """A well-behaved provider, unless ``flaws`` names a way to misbehave."""

    provider_name = "Target"
    capabilities = Capabilities(delivers_text=True)

    def __init__(self, *, api_key: str, flaws: frozenset[str] = frozenset(), **options: Any):
        self.flaws = flaws
        if "swallows_unknown_options" in flaws:
            known = {"base_url", "connect_timeout", "read_timeout", "alias"}
            options = {k: v for k, v in options.items() if k in known}
        super().__init__(**options)
        self.api_key = api_key
        if "no_redaction" not in flaws:
            self.add_secrets(api_key)
        if "verifies_without_check_code" in flaws or "verifies" in flaws:
            self.capabilities = Capabilities(verifies_code=True)

    def __repr__(self) -> str:
        if "repr_shows_key" in self.flaws:
            return f"<Target key={self.api_key}>"
        return super().__repr__()

    def check_code(self, *, phone: str, code: str, message_id: str = "") -> bool:
        if "verifies" not in self.flaws:
            return super().check_code(phone=phone, code=code, message_id=message_id)
        if "check_logs_guess" in self.flaws:
            logger.info("checking %s", code)
        answer = self.call("POST", "/check", json_body={"to": phone, "code": code})
        if answer.status != 200 and "check_true_on_error" in self.flaws:
            return True
        # BaseProvider.send() blanks the code in errors; a check must blank
        # the guess itself (an answer may echo it).
        answer = dataclasses.replace(answer, text=blank_known_codes(answer.text, [code]))
        if answer.status != 200:
            raise self.http_error(answer)
        data = answer.json()
        if not isinstance(data, dict) or not isinstance(data.get("valid"), bool):
            raise self.malformed(answer, "no verdict")
        return data["valid"]

    def _send(self, sms: OutgoingSms) -> SendResult:
        if "logs_key" in self.flaws:
            logger.debug("sending with key %s", self.api_key)
        if "logs_text" in self.flaws:
            logger.info("sending %r", sms.text)
        if "new_session_per_send" in self.flaws:
            self.session = self._make_session(2)
        if "bare_requests" in self.flaws:
            requests.post(self.base_url + "/send", timeout=1)
        body = {"to": sms.to, "text": sms.text}
        answer = self.call("POST", "/send", json_body=body, headers={"X-Key": self.api_key})
        if "resend_after_500" in self.flaws and answer.status == 500:
            answer = self.call("POST", "/send", json_body=body, headers={"X-Key": self.api_key})
        if answer.status == 401:
            if "credentials_no_failover" in self.flaws:
                raise ProviderRejected(provider_code="auth")
            raise self.rejected(answer, "auth", "key refused")
        if answer.status == 502 and "502_may_have_sent" in self.flaws:
            raise ProviderUnavailable(http_status=502, may_have_sent=True)
        if answer.status == 429 and "ignores_retry_after" in self.flaws:
            raise ProviderUnavailable(http_status=429)
        if answer.status >= 400:
            if "no_redaction" in self.flaws:
                raise ProviderUnavailable(
                    provider_text=answer.text, http_status=answer.status, may_have_sent=True
                )
            raise self.http_error(answer)
        if "empty_is_success" in self.flaws and not answer.text.strip():
            return SendResult(message_id="m-1")
        data = answer.json()
        if not isinstance(data, dict):
            if "html_is_success" in self.flaws:
                return SendResult(message_id="unknown")
            raise self.malformed(answer, "not a JSON object")
        if not data.get("id"):
            raise self.malformed(answer, "no id")
        raw = data if "keeps_echo_in_raw" in self.flaws else {"id": data["id"]}
        message_id = "" if "no_message_id" in self.flaws else str(data["id"])
        return SendResult(message_id=message_id, raw=raw)


class TargetWithoutCheckCode(Target):
    check_code = BaseProvider.check_code  # type: ignore[assignment]


class TargetWithStatusLookup(Target):
    def get_status(self, message_id: str) -> SendResult:
        return SendResult(message_id=message_id)


class TargetKit(ProviderConformanceTests, unittest.TestCase):
    __test__ = False  # run only through run_check() below
    flaws: frozenset[str] = frozenset()
    secrets = (KEY,)
    send_path = "/send"

    def make_provider(self, base_url: str, **overrides: Any) -> Target:
        cls: type[Target] = Target
        if "verifies_without_check_code" in self.flaws:
            cls = TargetWithoutCheckCode
        elif "status_lookup" in self.flaws:
            cls = TargetWithStatusLookup
        return cls(api_key=KEY, flaws=self.flaws, base_url=base_url, **overrides)

    def accepted_answer(self) -> Answer:
        # An API that echoes the key back: the provider must not keep it.
        return Answer(200, {"id": "m-1", "key_echo": KEY})

    def number_refused_answer(self) -> Answer:
        return Answer(400, {"error": "invalid number"})

    def credentials_refused_answer(self) -> Answer:
        return Answer(401, {"error": "bad key"})

    def code_confirmed_answer(self) -> Answer:
        return Answer(200, {"valid": True})

    def code_refused_answer(self) -> Answer:
        return Answer(200, {"valid": False})


def run_check(method: str, *flaws: str, verifies: bool = False, **declared: Any) -> list[str]:
    """Run one kit check against Target with ``flaws`` and the test case
    attributes ``declared`` (deviations); its failure texts."""
    flaws += ("verifies",) if verifies else ()
    case_class = type("Case", (TargetKit,), {"flaws": frozenset(flaws), **declared})
    result = unittest.TestResult()
    case_class(method).run(result)
    return [text for _case, text in result.failures + result.errors]


CASES = [
    ("test_http_500_may_have_sent_and_is_not_repeated", "resend_after_500", "was repeated"),
    ("test_http_502_is_unavailable_and_not_sent", "502_may_have_sent", "may_have_sent"),
    ("test_http_429_keeps_retry_after", "ignores_retry_after", "retry_after"),
    ("test_an_html_200_may_have_sent", "html_is_success", "instead of raising"),
    ("test_http_500_may_have_sent_and_is_not_repeated", "no_redaction", "secrets[0] appears in"),
    ("test_an_accepted_send_returns_a_message_id", "logs_key", "appears in a log record"),
    ("test_an_accepted_send_returns_a_message_id", "logs_text", "code appears in a log record"),
    ("test_an_accepted_send_returns_a_message_id", "keeps_echo_in_raw", "appears in result"),
    ("test_two_sends_share_one_connection", "new_session_per_send", "does not pool"),
    ("test_a_refused_connection_is_unavailable_and_not_sent", "bare_requests", "not a ProviderErr"),
    ("test_refused_credentials_are_rejected_with_failover", "credentials_no_failover", "failover"),
    ("test_provider_checked_providers_implement_check_code", "verifies_without_check_code", ""),
    ("test_an_unknown_option_is_refused", "swallows_unknown_options", "Sms2faConfigurationError"),
    ("test_repr_shows_no_secret", "repr_shows_key", "appears in repr(provider)"),
    # Deviations that are not declared are flaws like any other.
    ("test_an_accepted_send_returns_a_message_id", "no_message_id", "has no message id"),
    ("test_an_empty_200_may_have_sent", "empty_is_success", "instead of raising"),
]


CHECK_CASES = [
    ("test_check_code_never_confirms_an_answer_it_cannot_read", "check_true_on_error", "no error"),
    ("test_check_code_confirms_a_right_code", "check_logs_guess", "code appears in a log record"),
]


@pytest.mark.parametrize("method", sorted({case[0] for case in CHECK_CASES}))
def test_every_code_check_passes_for_a_provider_without_flaws(method):
    assert run_check(method, verifies=True) == []


@pytest.mark.parametrize(
    ("method", "flaw", "message"), CHECK_CASES, ids=[c[1] for c in CHECK_CASES]
)
def test_each_code_check_flaw_fails_its_check(method, flaw, message):
    failures = run_check(method, flaw, verifies=True)
    assert len(failures) == 1, f"{flaw} passed {method}"
    assert message in failures[0]


@pytest.mark.parametrize("method", sorted({case[0] for case in CASES}))
def test_every_check_passes_for_a_provider_without_flaws(method):
    assert run_check(method) == []


@pytest.mark.parametrize(("method", "flaw", "message"), CASES, ids=[c[1] for c in CASES])
def test_each_flaw_fails_its_check(method, flaw, message):
    failures = run_check(method, flaw)
    assert len(failures) == 1, f"{flaw} passed {method}"
    assert message in failures[0]
    # The kit names a leaked value; it never prints it.
    assert KEY not in failures[0]


@pytest.mark.parametrize("verifies", [False, True])
def test_the_whole_kit_passes_for_a_provider_without_flaws(verifies):
    flaws = frozenset({"verifies"} if verifies else ())
    suite = unittest.defaultTestLoader.loadTestsFromTestCase(
        type("Case", (TargetKit,), {"flaws": flaws})
    )
    result = unittest.TestResult()
    suite.run(result)
    assert result.testsRun >= 25
    assert not result.failures and not result.errors
    # Only the code-check checks skip, and only for a provider that checks no codes.
    skipped = {case._testMethodName for case, _reason in result.skipped}
    assert skipped == (set() if verifies else {m for m in dir(TargetKit) if "check_code_" in m})


# ------------------------------------------------------ declared deviations

NO_ID = "test_an_accepted_send_returns_a_message_id"
EMPTY = "test_an_empty_200_may_have_sent"
NO_ID_METHODS = "test_a_provider_without_message_ids_has_no_method_that_needs_one"
REASONS = "test_declared_deviations_give_a_reason"
DEVIATION_CASES = [
    # (check, deviation declared, the provider's flaw)
    (NO_ID, "sends_without_message_id", "no_message_id"),
    (EMPTY, "empty_success_is_accepted", "empty_is_success"),
]


@pytest.mark.parametrize(("method", "deviation", "flaw"), DEVIATION_CASES)
def test_a_declared_deviation_with_a_reason_is_tested_as_declared(method, deviation, flaw):
    reason = {deviation: "the vendor documents it (kit self-test)"}
    assert run_check(method, flaw, **reason) == []
    assert run_check(REASONS, flaw, **reason) == []
    # Declared, but the provider keeps the general rule: the declared
    # behaviour is what the kit checks, so this fails too.
    assert len(run_check(method, **reason)) == 1


@pytest.mark.parametrize("reason", ["", "   ", True, 1])
@pytest.mark.parametrize(("method", "deviation", "flaw"), DEVIATION_CASES)
def test_a_deviation_declared_without_a_reason_is_refused(method, deviation, flaw, reason):
    for check in (method, REASONS):
        failures = run_check(check, flaw, **{deviation: reason})
        assert len(failures) == 1, f"{deviation}={reason!r} passed {check}"
        assert f"{deviation} is declared without a reason" in failures[0]


def test_no_message_id_rules_out_a_status_lookup():
    reason = {"sends_without_message_id": "the vendor documents it (kit self-test)"}
    assert run_check(NO_ID_METHODS, "no_message_id", **reason) == []
    failures = run_check(NO_ID_METHODS, "no_message_id", "status_lookup", **reason)
    assert len(failures) == 1
    assert "get_status() looks messages up by id" in failures[0]
    # Undeclared, the check has nothing to say (the id check catches a missing id).
    assert run_check(NO_ID_METHODS, "status_lookup") == []
