"""A conformance kit for SMS providers: the rules every provider must keep.

A provider author mixes one of these classes into a ``unittest.TestCase``
(Django's ``SimpleTestCase`` works too, and both run under pytest), says how
to build the provider and what its API answers, and gets the checks the app's
flows rely on:

* :class:`ProviderDeclarationTests` — what the class declares
  (:class:`~django_sms2fa.types.Capabilities`, which optional methods it
  implements), that unknown options are refused and that ``repr()`` shows no
  secret. No network; fit for any provider.
* :class:`ProviderConformanceTests` — the declaration checks, plus real HTTP
  against a :class:`~django_sms2fa.testing.loopback.LoopbackServer`: an
  accepted send; the failover rule for every way a call can fail (HTTP 429,
  500, 502, 503, 504, a 200 that is HTML, empty or broken JSON, a read
  timeout, a dropped connection, a refused connection, a refused number,
  refused credentials); no re-send once a request left; one pooled
  connection for two sends; and no secret nor code in any error or log line.

::

    class AcmeConformance(ProviderConformanceTests, unittest.TestCase):
        secrets = ("acme-key-0123456789",)
        send_path = "/v1/messages"

        def make_provider(self, base_url, **overrides):
            return AcmeProvider(api_key="acme-key-0123456789", base_url=base_url, **overrides)

        def accepted_answer(self):
            return Answer(201, {"message_id": "m-1", "state": "queued"})

        def number_refused_answer(self):
            return Answer(400, {"error": {"code": "invalid_number"}})

        def credentials_refused_answer(self):
            return Answer(401, {"error": {"code": "unauthorized"}})

docs/writing-a-provider.md walks through a complete example.
"""

from __future__ import annotations

import logging
import re
import traceback
import unittest
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from ..codes import MAX_SUBMITTED_LENGTH
from ..exceptions import (
    ProviderError,
    ProviderRejected,
    ProviderUnavailable,
    Sms2faConfigurationError,
)
from ..providers.base import BaseProvider
from ..types import CHANNELS, MESSAGE_STATUSES, Capabilities, OutgoingSms, SendResult
from .loopback import Answer, LoopbackServer, Recorded, free_port

__all__ = [
    "ProviderConformanceTests",
    "ProviderDeclarationTests",
    "Script",
    "capture_logs",
]

#: The shortest code any provider makes or takes (telefon-ip's 4 digits);
#: a ``max_code_length`` below it could never carry a code of ours.
SHORTEST_CODE = 4
#: Handed to ``make_provider`` by the declaration checks; nothing connects to it.
UNUSED_BASE_URL = "http://127.0.0.1:9"

#: The documented deviations a test case may declare (see
#: :class:`ProviderDeclarationTests`).
DEVIATIONS = ("sends_without_message_id", "empty_success_is_accepted")

if TYPE_CHECKING:  # the mixins' self is a TestCase at run time
    _TestCase = unittest.TestCase
else:
    _TestCase = object


@dataclass(frozen=True)
class Script:
    """The loopback server's answers for one scenario.

    ``send`` answers the send requests (those :meth:`ProviderConformanceTests.
    is_send_request` accepts) and ``prelude`` every other request (a login,
    a token exchange), each in order, the last one repeated. ``prelude=None``
    means the test case's :meth:`~ProviderConformanceTests.prelude_answers`.
    An empty list answers nothing: a request of that kind fails the check.
    """

    send: Sequence[Answer] = ()
    prelude: Sequence[Answer] | None = None


# ------------------------------------------------------------------ logging


@contextmanager
def capture_logs() -> Iterator[list[logging.LogRecord]]:
    """Every log record emitted inside the block, at every level.

    The root logger and the HTTP libraries' loggers are set to DEBUG for the
    duration (urllib3 prints request lines there, with paths and queries),
    so the records seen are what a deployment logging at DEBUG would write.
    Filters on the emitting loggers (the app's redaction) have run first.
    """
    records: list[logging.LogRecord] = []
    seen: set[int] = set()

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if id(record) not in seen:  # one record, reached by two handlers
                seen.add(id(record))
                records.append(record)

    handler = Collect(logging.DEBUG)
    # Loggers that may not propagate to the root in a project's LOGGING get
    # the handler themselves.
    loggers = [logging.getLogger(name) for name in ("", "urllib3", "requests", "django_sms2fa")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.DEBUG)
        logger.addHandler(handler)
    try:
        yield records
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.removeHandler(handler)
            logger.setLevel(level)


def _record_text(record: logging.LogRecord) -> str:
    # The formatter renders the message, its arguments and any traceback,
    # which is everything a log handler would write.
    return f"{record.name}: " + logging.Formatter("%(levelname)s %(message)s").format(record)


# ------------------------------------------------------------ declarations


class ProviderDeclarationTests(_TestCase):
    """Checks of what a provider class declares; no network.

    Mix into a ``unittest.TestCase`` and implement :meth:`make_provider`.
    The optional ``expects_*`` attributes pin what the test case knows about
    the provider (``None``: not checked), so that dropping a method or a
    capability by mistake fails a test.
    """

    #: Option values that must never show in a repr, an error or a log line.
    secrets: Sequence[str] = ()
    #: Whether the provider makes and checks the code itself (mode d).
    expects_provider_checked: bool | None = None
    #: Whether it implements ``get_status``.
    expects_status_lookup: bool | None = None
    #: Whether it implements ``parse_delivery_report``.
    expects_delivery_reports: bool | None = None
    #: Whether it implements ``verify_webhook`` (signed callbacks).
    expects_signed_webhooks: bool | None = None

    # Documented deviations. Some vendors' APIs cannot keep a kit rule as
    # written; a test case declares such a deviation by setting the attribute
    # to the reason (a non-empty string, e.g. where the vendor or the
    # provider's docs say so). The kit then checks the declared behaviour
    # instead of the rule, so the deviation is tested, not skipped. ``None``
    # (the default) declares nothing; any other value without a reason
    # fails test_declared_deviations_give_a_reason and the checks concerned.

    #: The vendor's success answer carries no message id: an accepted send
    #: returns ``message_id == ""`` (never a made-up one), and the provider
    #: implements neither ``get_status`` nor ``parse_delivery_report``,
    #: which would need the id.
    sends_without_message_id: str | None = None
    #: The vendor documents any 2xx, an empty one included, as "accepted":
    #: an empty 200 gives a ``SendResult`` whose status is not ``failed``,
    #: after exactly one send request (still never re-sent).
    empty_success_is_accepted: str | None = None

    def make_provider(self, base_url: str, **overrides: Any) -> BaseProvider:
        """A new provider instance talking to ``base_url``, built with
        ``overrides`` added to (or replacing) its usual options."""
        raise NotImplementedError(f"{type(self).__name__} must implement make_provider()")

    # --------------------------------------------------------------- helpers

    def deviation(self, name: str) -> bool:
        """Whether the documented deviation ``name`` is declared.

        Fails the check when it is set without a reason: a deviation is a
        documented choice, and the reason is where the documentation shows.
        """
        reason = getattr(self, name)
        if reason is None:
            return False
        if not isinstance(reason, str) or not reason.strip():
            self.fail(
                f"{name} is declared without a reason: set it to a non-empty string "
                f"saying why the provider deviates (or leave it None)"
            )
        return True

    def declared_provider(self) -> BaseProvider:
        """An instance for the declaration checks (capabilities may be per instance)."""
        provider = self.make_provider(UNUSED_BASE_URL)
        self.addCleanup(_close, provider)
        return provider

    def forbidden_values(self, sms: OutgoingSms | None = None) -> list[tuple[str, str]]:
        """(label, value) pairs that must not appear in any text the kit reads.

        Labels name the value without showing it, so a failing check does
        not print a secret either.
        """
        found: list[tuple[str, str]] = []
        for index, secret in enumerate(self.secrets):
            found.append((f"secrets[{index}]", secret))
            quoted = quote(secret, safe="")
            if quoted != secret:
                found.append((f"secrets[{index}] (URL-quoted)", quoted))
        if sms is not None and sms.code:
            found.append(("the SMS's code", sms.code))
        return found

    def assert_no_leak(self, place: str, text: str, sms: OutgoingSms | None = None) -> None:
        """Fail when ``text`` holds a secret (or ``sms``'s code)."""
        for label, value in self.forbidden_values(sms):
            if label == "the SMS's code":
                # A code is a short digit string: only a whole run of digits
                # counts (a port number or an id may contain it by chance).
                leaked = re.search(rf"(?<![0-9]){re.escape(value)}(?![0-9])", text) is not None
            else:
                leaked = value in text
            if leaked:
                self.fail(f"{label} appears in {place}")

    # ----------------------------------------------------------------- tests

    def test_channels_are_a_non_empty_subset_of_the_known_channels(self) -> None:
        caps = self.declared_provider().capabilities
        self.assertIsInstance(caps, Capabilities)
        self.assertIsInstance(caps.channels, frozenset)
        self.assertTrue(caps.channels, "Capabilities.channels is empty")
        self.assertLessEqual(set(caps.channels), set(CHANNELS))

    def test_at_least_one_mode_is_declared(self) -> None:
        caps = self.declared_provider().capabilities
        self.assertTrue(
            caps.delivers_text or caps.accepts_code or caps.returns_code or caps.verifies_code,
            "Capabilities declares no mode: set delivers_text, accepts_code, "
            "returns_code or verifies_code",
        )

    def test_max_code_length_is_sane(self) -> None:
        caps = self.declared_provider().capabilities
        if caps.max_code_length is None:
            return
        self.assertIs(type(caps.max_code_length), int, "max_code_length must be an int")
        self.assertGreaterEqual(caps.max_code_length, SHORTEST_CODE)
        self.assertLessEqual(caps.max_code_length, MAX_SUBMITTED_LENGTH)
        self.assertTrue(
            caps.delivers_text or caps.accepts_code,
            "max_code_length limits our codes, but the provider takes none "
            "(neither delivers_text nor accepts_code)",
        )

    def test_provider_checked_providers_implement_check_code(self) -> None:
        provider = self.declared_provider()
        implemented = type(provider).check_code is not BaseProvider.check_code
        if provider.capabilities.verifies_code:
            self.assertTrue(implemented, "verifies_code is declared but check_code() is not")

    def test_optional_method_flags_match_the_implementations(self) -> None:
        cls = type(self.declared_provider())
        pairs = (
            ("has_status_lookup", "get_status"),
            ("receives_delivery_reports", "parse_delivery_report"),
            ("signs_webhooks", "verify_webhook"),
        )
        for flag, method in pairs:
            implemented = getattr(cls, method) is not getattr(BaseProvider, method)
            self.assertEqual(
                getattr(cls, flag)(), implemented, f"{flag}() disagrees with {method}()"
            )

    def test_signing_providers_also_parse_reports(self) -> None:
        cls = type(self.declared_provider())
        if cls.signs_webhooks():
            self.assertTrue(
                cls.receives_delivery_reports(),
                "verify_webhook() is implemented but parse_delivery_report() is not",
            )

    def test_declarations_match_what_the_test_case_expects(self) -> None:
        provider = self.declared_provider()
        caps, cls = provider.capabilities, type(provider)
        takes_or_returns = caps.delivers_text or caps.accepts_code or caps.returns_code
        actual = {
            "expects_provider_checked": caps.verifies_code and not takes_or_returns,
            "expects_status_lookup": cls.has_status_lookup(),
            "expects_delivery_reports": cls.receives_delivery_reports(),
            "expects_signed_webhooks": cls.signs_webhooks(),
        }
        for name, value in actual.items():
            expected = getattr(self, name)
            if expected is not None:
                self.assertEqual(value, expected, f"{name} = {expected}, the provider says {value}")

    def test_declared_deviations_give_a_reason(self) -> None:
        for name in DEVIATIONS:
            self.deviation(name)

    def test_a_provider_without_message_ids_has_no_method_that_needs_one(self) -> None:
        if not self.deviation("sends_without_message_id"):
            return
        cls = type(self.declared_provider())
        self.assertFalse(
            cls.has_status_lookup(),
            "sends_without_message_id is declared, but get_status() looks messages up by id",
        )
        self.assertFalse(
            cls.receives_delivery_reports(),
            "sends_without_message_id is declared, but parse_delivery_report() "
            "matches reports to messages by id",
        )

    def test_an_unknown_option_is_refused(self) -> None:
        # A typo in settings must fail when the provider is built, not pass
        # silently with a default.
        with self.assertRaises(Sms2faConfigurationError) as caught:
            self.make_provider(UNUSED_BASE_URL, kit_no_such_option="x")
        self.assert_no_leak("the unknown-option error", str(caught.exception))

    def test_repr_shows_no_secret(self) -> None:
        provider = self.declared_provider()
        self.assert_no_leak("repr(provider)", repr(provider))
        self.assert_no_leak("str(provider)", str(provider))


# ------------------------------------------------------------- HTTP checks


class ProviderConformanceTests(ProviderDeclarationTests):
    """The declaration checks plus real HTTP on a loopback server.

    Implement :meth:`make_provider` (it must pass ``base_url`` and
    ``**overrides`` through: the kit sets short timeouts with them), and the
    scripted answers :meth:`accepted_answer`, :meth:`number_refused_answer`
    and :meth:`credentials_refused_answer` (plus :meth:`prelude_answers` when
    a send needs other calls first). Set :attr:`secrets` and, when the
    provider makes other calls than the send, :attr:`send_path`.
    """

    #: The number the test SMS goes to (E.164).
    phone: str = "+46701234567"
    #: The code the test SMS carries; ``""`` for providers that make the code.
    sms_code: str = "482915"
    #: The code a user submits, in the ``check_code`` checks.
    guess: str = "271828"
    #: The ``message_id`` passed to ``check_code`` (the id the send returned).
    check_message_id: str = ""
    #: A part of the send request's path (query excluded) that tells it from
    #: the provider's other calls; ``""``: every request is a send.
    send_path: str = ""
    #: The same for the code-check request of ``verifies_code`` providers.
    check_path: str = ""
    #: Options passed to every provider the kit builds: short timeouts, so a
    #: hanging answer costs half a second.
    fast_options: Mapping[str, Any] = MappingProxyType(
        {"connect_timeout": 1.0, "read_timeout": 0.5}
    )

    # ------------------------------------------------------------ the hooks

    def make_sms(self) -> OutgoingSms:
        """The SMS every check sends."""
        code = self.sms_code
        return OutgoingSms(
            to=self.phone,
            text=f"Your code is {code}" if code else "",
            code=code,
            purpose="login",
            reference="kit-challenge-1",
            code_length=len(code) or 6,
            username="kit-user",
        )

    def prelude_answers(self) -> Sequence[Answer]:
        """Answers to the calls a send makes before the send request (a login)."""
        return ()

    def accepted_answer(self) -> Answer | Script:
        """The provider's answer when it takes the SMS."""
        raise NotImplementedError(f"{type(self).__name__} must implement accepted_answer()")

    def number_refused_answer(self) -> Answer | Script:
        """The answer that permanently refuses the number (invalid, not served)."""
        raise NotImplementedError(f"{type(self).__name__} must implement number_refused_answer()")

    def credentials_refused_answer(self) -> Answer | Script:
        """The answer that refuses our credentials (a :class:`Script` when it is
        a prelude call, such as a login, that refuses them)."""
        raise NotImplementedError(
            f"{type(self).__name__} must implement credentials_refused_answer()"
        )

    def code_confirmed_answer(self) -> Answer | Script:
        """For ``verifies_code`` providers: the answer that confirms :attr:`guess`."""
        raise NotImplementedError(
            f"{type(self).__name__} declares verifies_code: implement code_confirmed_answer()"
        )

    def code_refused_answer(self) -> Answer | Script:
        """For ``verifies_code`` providers: the answer that says :attr:`guess` is wrong."""
        raise NotImplementedError(
            f"{type(self).__name__} declares verifies_code: implement code_refused_answer()"
        )

    def is_send_request(self, request: Recorded) -> bool:
        """Whether ``request`` is a send (see :attr:`send_path`)."""
        return not self.send_path or self.send_path in urlsplit(request.path).path

    def is_check_request(self, request: Recorded) -> bool:
        """Whether ``request`` is a code check (see :attr:`check_path`)."""
        return not self.check_path or self.check_path in urlsplit(request.path).path

    # ------------------------------------------------------------ machinery

    def setUp(self) -> None:
        super().setUp()  # type: ignore[misc]
        self.server = LoopbackServer().start()
        self.addCleanup(self.server.stop)
        self._unscripted: list[str] = []

    def build(self, base_url: str | None = None) -> BaseProvider:
        """A fresh provider on the loopback server, with :attr:`fast_options`."""
        provider = self.make_provider(base_url or self.server.url, **self.fast_options)
        self.addCleanup(_close, provider)
        return provider

    def play(self, script: Answer | Script, *, check: bool = False) -> None:
        """Reset the server and make it answer ``script``.

        With ``check``, its ``send`` answers go to the code-check requests
        (:meth:`is_check_request`) instead of the send requests.
        """
        if isinstance(script, Answer):
            script = Script(send=[script])
        prelude = list(self.prelude_answers() if script.prelude is None else script.prelude)
        sends = list(script.send)
        self.server.reset()
        self._unscripted = []

        def route(request: Recorded) -> Answer:
            is_send = self.is_check_request(request) if check else self.is_send_request(request)
            answers = sends if is_send else prelude
            if not answers:
                self._unscripted.append("send" if is_send else "prelude")
                return Answer(500, "kit: no answer was scripted for this request")
            return answers.pop(0) if len(answers) > 1 else answers[0]

        self.server.handler = route

    def send_requests(self) -> list[Recorded]:
        return [r for r in self.server.requests if self.is_send_request(r)]

    def echo(self) -> str:
        """What a provider echoing our request could put in an answer."""
        sms = self.make_sms()
        return " ".join([*self.secrets, sms.code, sms.text]).strip()

    def attempt(
        self, script: Answer | Script | None, base_url: str | None = None
    ) -> tuple[SendResult | None, ProviderError | None, list[logging.LogRecord]]:
        """Build a provider, play ``script``, send once: (result, error, logs).

        Whatever happens, the error and the log records are checked for
        secrets and the code. Errors other than :class:`ProviderError` fail
        the check (a provider must wrap what its transport raises).
        """
        if script is not None:
            self.play(script)
        sms = self.make_sms()
        result: SendResult | None = None
        error: ProviderError | None = None
        with capture_logs() as records:
            provider = self.build(base_url)
            try:
                result = provider.send(sms)
            except ProviderError as err:
                error = err
            except Exception as err:  # the check is that none escapes
                self.fail(
                    f"send() raised {type(err).__name__}, not a ProviderError: a provider "
                    f"must turn every failure into ProviderRejected or ProviderUnavailable"
                )
        self.assertFalse(
            self._unscripted,
            f"the provider made requests the script has no answer for: {self._unscripted}",
        )
        for record in records:
            self.assert_no_leak(f"a log record of {record.name!r}", _record_text(record), sms)
        if error is not None:
            self.assert_error_is_clean(error, sms)
        if result is not None:
            self.assert_result_is_clean(result, sms)
        return result, error, records

    def assert_error_is_clean(self, error: ProviderError, sms: OutgoingSms) -> None:
        for place, text in (
            ("str(error)", str(error)),
            ("repr(error)", repr(error)),
            ("error.provider_text", error.provider_text),
            ("error.provider_code", error.provider_code),
            ("error.context", repr(error.context)),
            ("the error's traceback", "".join(traceback.format_exception(error))),
        ):
            self.assert_no_leak(place, text, sms)

    def assert_result_is_clean(self, result: SendResult, sms: OutgoingSms) -> None:
        for place, text in (
            ("repr(result)", repr(result)),
            ("result.raw", repr(result.raw)),
            ("result.provider_status", result.provider_status),
            ("result.message_id", result.message_id),
        ):
            self.assert_no_leak(place, text, sms)

    def expect_error(
        self, script: Answer | Script | None, what: str, base_url: str | None = None
    ) -> ProviderError:
        result, error, _records = self.attempt(script, base_url)
        if error is None:
            self.fail(f"{what}: send() returned {result!r} instead of raising a ProviderError")
        return error

    def assert_not_sent(self, error: ProviderError, what: str) -> None:
        """The failover rule for a call the provider surely did not process."""
        self.assertIsInstance(error, ProviderUnavailable, f"{what}: {error!r}")
        self.assertFalse(error.may_have_sent, f"{what}: may_have_sent must be False")
        self.assertEqual(error.provider_limit, "", f"{what}: not a provider limit")

    def assert_may_have_sent(self, error: ProviderError, what: str) -> None:
        """The failover rule for an uncertain outcome: never re-sent elsewhere
        with a new code, never repeated."""
        self.assertTrue(error.may_have_sent, f"{what}: may_have_sent must be True ({error!r})")
        self.assertLessEqual(len(self.send_requests()), 1, f"{what}: the send request was repeated")

    def assert_sent_once(self, what: str) -> None:
        self.assertEqual(
            len(self.send_requests()),
            1,
            f"{what}: the server saw {len(self.send_requests())} send requests, not exactly one",
        )

    def _status_answers(self, status: int) -> list[tuple[str, Answer]]:
        # Both shapes a failing API answers with: its own JSON, and a proxy's
        # HTML page. Both echo the request, as broken gateways do.
        echo = self.echo()
        return [
            ("JSON", Answer(status, {"error": f"kit: HTTP {status}", "request": echo})),
            (
                "HTML",
                Answer(
                    status,
                    f"<html><head><title>{status}</title></head><body><h1>Error "
                    f"{status}</h1><pre>{echo}</pre></body></html>",
                    {"Content-Type": "text/html; charset=utf-8"},
                ),
            ),
        ]

    def _check_status(self, status: int, *, sent: bool) -> None:
        for shape, answer in self._status_answers(status):
            what = f"HTTP {status} ({shape} body)"
            error = self.expect_error(answer, what)
            if sent:
                self.assert_may_have_sent(error, what)
                self.assert_sent_once(what)
            else:
                self.assert_not_sent(error, what)
                self.assertLessEqual(len(self.send_requests()), 1, f"{what}: repeated")

    # ---------------------------------------------------------------- tests

    def test_an_accepted_send_returns_a_message_id(self) -> None:
        result, _error, _records = self.attempt(self.accepted_answer())
        self.assertIsInstance(result, SendResult)
        assert result is not None
        self.assertIsInstance(result.message_id, str)
        if self.deviation("sends_without_message_id"):
            # Declared: no id, and none made up (a fake id would be looked up).
            self.assertEqual(
                result.message_id,
                "",
                "sends_without_message_id is declared, but the send returned a message id",
            )
        else:
            self.assertTrue(result.message_id.strip(), "an accepted send has no message id")
        self.assertIn(result.status, MESSAGE_STATUSES)
        self.assert_sent_once("an accepted send")
        if self.make_sms().code:
            self.assertEqual(
                result.returned_code, "", "returned_code is only for codes the provider made"
            )

    def test_two_sends_share_one_connection(self) -> None:
        accepted = self.accepted_answer()
        script = accepted if isinstance(accepted, Script) else Script(send=[accepted])
        self.play(script)
        provider = self.build()
        sms = self.make_sms()
        with capture_logs() as records:
            provider.send(sms)
            provider.send(sms)
        for record in records:
            self.assert_no_leak(f"a log record of {record.name!r}", _record_text(record), sms)
        self.assertEqual(len(self.send_requests()), 2)
        self.assertEqual(
            self.server.connections,
            1,
            "two sends opened two TCP connections: the provider does not pool them",
        )

    def test_http_429_is_unavailable_and_not_sent(self) -> None:
        self._check_status(429, sent=False)

    def test_http_429_keeps_retry_after(self) -> None:
        error = self.expect_error(
            Answer(429, {"error": "kit: slow down"}, {"Retry-After": "7"}), "HTTP 429"
        )
        self.assert_not_sent(error, "HTTP 429")
        assert isinstance(error, ProviderUnavailable)
        self.assertEqual(error.retry_after, 7, "Retry-After: 7 was not kept as retry_after")

    def test_http_502_is_unavailable_and_not_sent(self) -> None:
        self._check_status(502, sent=False)

    def test_http_503_is_unavailable_and_not_sent(self) -> None:
        self._check_status(503, sent=False)

    def test_http_500_may_have_sent_and_is_not_repeated(self) -> None:
        self._check_status(500, sent=True)

    def test_http_504_may_have_sent_and_is_not_repeated(self) -> None:
        self._check_status(504, sent=True)

    def test_an_html_200_may_have_sent(self) -> None:
        page = (
            "<!DOCTYPE html><html><head><title>Service</title></head>"
            f"<body><p>Maintenance</p><!-- {self.echo()} --></body></html>"
        )
        what = "an HTML page with status 200"
        error = self.expect_error(Answer(200, page, {"Content-Type": "text/html"}), what)
        self.assert_may_have_sent(error, what)
        self.assert_sent_once(what)

    def test_an_empty_200_may_have_sent(self) -> None:
        what = "an empty answer with status 200"
        empty = Answer(200, b"", {"Content-Type": "application/json"})
        if self.deviation("empty_success_is_accepted"):
            result, error, _records = self.attempt(empty)
            self.assertIsNone(
                error, f"empty_success_is_accepted is declared, but send() raised {error!r}"
            )
            assert result is not None
            self.assertIn(result.status, MESSAGE_STATUSES)
            self.assertNotEqual(result.status, "failed", f"{what}: declared accepted")
            self.assert_sent_once(what)
            return
        error = self.expect_error(empty, what)
        self.assert_may_have_sent(error, what)
        self.assert_sent_once(what)

    def test_invalid_json_200_may_have_sent(self) -> None:
        # Cut short after an id: a provider that scrapes the text would take it.
        what = "invalid JSON with status 200"
        body = '{"id": "kit-1", "message_id": "kit-1", "status": "ok", "echo": "' + self.echo()
        error = self.expect_error(Answer(200, body, {"Content-Type": "application/json"}), what)
        self.assert_may_have_sent(error, what)
        self.assert_sent_once(what)

    def test_a_read_timeout_after_sending_may_have_sent(self) -> None:
        what = "no answer within the read timeout"
        error = self.expect_error(Answer(hang=True), what)
        self.assert_may_have_sent(error, what)
        self.assert_sent_once(what)

    def test_a_connection_closed_without_answer_may_have_sent(self) -> None:
        what = "the connection closed without an answer"
        error = self.expect_error(Answer(drop=True), what)
        self.assert_may_have_sent(error, what)
        self.assert_sent_once(what)

    def test_a_refused_connection_is_unavailable_and_not_sent(self) -> None:
        what = "connection refused"
        error = self.expect_error(None, what, base_url=f"http://127.0.0.1:{free_port()}")
        self.assert_not_sent(error, what)

    def test_a_refused_number_is_rejected(self) -> None:
        what = "the number refused"
        error = self.expect_error(self.number_refused_answer(), what)
        self.assertIsInstance(error, ProviderRejected, f"{what}: {error!r}")
        assert isinstance(error, ProviderRejected)
        # A refusal of the message: any other provider would refuse it too.
        self.assertFalse(error.failover, f"{what}: failover must be False")
        self.assertFalse(error.may_have_sent, f"{what}: may_have_sent must be False")

    def test_refused_credentials_are_rejected_with_failover(self) -> None:
        what = "the credentials refused"
        error = self.expect_error(self.credentials_refused_answer(), what)
        self.assertIsInstance(error, ProviderRejected, f"{what}: {error!r}")
        assert isinstance(error, ProviderRejected)
        # About this provider, not the message: the next provider may take it.
        self.assertTrue(error.failover, f"{what}: failover must be True")
        self.assertFalse(error.may_have_sent, f"{what}: may_have_sent must be False")

    # ------------------------------------------------- provider-checked codes

    def check(
        self, script: Answer | Script | Callable[[], Answer | Script]
    ) -> tuple[bool | None, ProviderError | None, list[logging.LogRecord]]:
        """Build a provider, play ``script``, check :attr:`guess` once.

        Providers that do not verify codes skip the check (``script`` may be
        a hook, called only when they do).

        The guess is a code as much as the one sent: it is checked for in
        errors and log records like the secrets.
        """
        provider = self.build()
        if not provider.capabilities.verifies_code:
            self.skipTest("the provider does not verify codes (capabilities.verifies_code)")
        self.play(script() if callable(script) else script, check=True)
        guess = OutgoingSms(to=self.phone, code=self.guess)
        verdict: bool | None = None
        error: ProviderError | None = None
        with capture_logs() as records:
            try:
                verdict = provider.check_code(
                    phone=self.phone, code=self.guess, message_id=self.check_message_id
                )
            except ProviderError as err:
                error = err
            except Exception as err:  # the check is that none escapes
                self.fail(f"check_code() raised {type(err).__name__}, not a ProviderError")
        self.assertFalse(
            self._unscripted,
            f"the provider made requests the script has no answer for: {self._unscripted}",
        )
        for record in records:
            self.assert_no_leak(f"a log record of {record.name!r}", _record_text(record), guess)
        if error is not None:
            self.assert_error_is_clean(error, guess)
        return verdict, error, records

    def test_check_code_confirms_a_right_code(self) -> None:
        verdict, error, _records = self.check(self.code_confirmed_answer)
        self.assertIsNone(error, f"check_code() raised {error!r}")
        self.assertIs(verdict, True, "check_code() must return True (a bool) for a right code")

    def test_check_code_refuses_a_wrong_code(self) -> None:
        verdict, error, _records = self.check(self.code_refused_answer)
        self.assertIsNone(error, f"check_code() raised {error!r}")
        self.assertIs(verdict, False, "check_code() must return False (a bool) for a wrong code")

    def test_check_code_never_confirms_an_answer_it_cannot_read(self) -> None:
        # An outage must neither let a guess in nor use up the user's attempt:
        # check_code raises, and the flows answer "try again".
        echo = self.echo() + " " + self.guess
        for what, answer in (
            ("HTTP 500", Answer(500, {"error": "kit", "request": echo})),
            ("HTTP 503", Answer(503, "<html><body>503</body></html>")),
            ("HTML 200", Answer(200, f"<html><body>{echo}</body></html>")),
            ("empty 200", Answer(200, b"", {"Content-Type": "application/json"})),
            ("no answer", Answer(hang=True)),
        ):
            verdict, error, _records = self.check(answer)
            self.assertIsNotNone(error, f"{what}: check_code() returned {verdict!r}, no error")


def _close(provider: BaseProvider) -> None:
    """Close a provider's pooled HTTP session, if it has one."""
    session = getattr(provider, "session", None)
    close = getattr(session, "close", None)
    if callable(close):
        close()
