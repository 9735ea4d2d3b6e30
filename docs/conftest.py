"""Run the Python snippets of the documentation as tests (Sybil).

Every ```` ```python ```` block of every page under docs/ is executed, page by
page, in one namespace per page (so a later block may use what an earlier one
defined), with Django set up by the tests' settings (``tests.settings``, the
pytest default). Context a block needs but does not show (a request, a user)
is set up by an ``<!-- invisible-code-block: python -->`` comment before it.
A block that cannot run on its own — a fragment of a settings module that
extends a list defined elsewhere, a model of another app — is marked just
above it with ``<!-- skip: next -->``; anything else must run, so a snippet
that stops working fails the test run.

- Database: each page's blocks share one transaction, rolled back after the
  page's last block, so nothing a page creates reaches the tests that follow.
  The ``locmem`` outbox and the caches are cleared before and after a page.
- Settings examples read credentials with ``os.environ["NAME"]``: while a
  page runs, each name it reads holds a placeholder of the right shape.
- A block that leaves an ``SMS2FA`` dict with ``PROVIDERS`` has each provider
  built from it, so an option a provider no longer takes, or a backend path
  that moved, fails here.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sybil import Sybil
from sybil.integration.pytest import SybilItem
from sybil.parsers.myst import (
    ClearNamespaceParser,
    PythonCodeBlockParser,
    SkipParser,
)

from django.core.cache import caches
from django.db import transaction
from django.test import override_settings

_STATE = "_sms2fa_docs_state"
_CONSOLE = "django_sms2fa.providers.console.ConsoleProvider"

#: ``os.environ["NAME"]`` in a page: the settings examples read credentials so.
_ENV_READ = re.compile(r"""os\.environ(?:\[|\.get\()["']([A-Z][A-Z0-9_]*)["']""")

#: Placeholders in the shape a provider checks its option in (the rest get
#: ``docs-placeholder-<name>``, long enough for a webhook secret).
PLACEHOLDERS: dict[str, str] = {
    "TWILIO_ACCOUNT_SID": "AC" + "0" * 32,
    "TWILIO_API_KEY_SID": "SK" + "0" * 32,
    "TWILIO_MESSAGING_SERVICE_SID": "MG" + "0" * 32,
    "TWILIO_VERIFY_SERVICE_SID": "VA" + "0" * 32,
    "VONAGE_APPLICATION_ID": "00000000-0000-4000-8000-000000000000",
}


def _placeholder(name: str) -> str:
    if name == "VONAGE_PRIVATE_KEY":
        # A throwaway key, made here: the option must be a real RSA PEM.
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
    return PLACEHOLDERS.get(name, f"docs-placeholder-{name.lower()}")


@pytest.fixture
def sms2fa_docs_db(django_db_setup: Any, django_db_blocker: Any) -> Iterator[Any]:
    """Database access while a block runs (the page's transaction holds it)."""
    with django_db_blocker.unblock():
        yield django_db_blocker


class _PageState:
    """What a page's first block sets up and its teardown undoes."""

    def __init__(self, path: str) -> None:
        self.atomic = transaction.atomic()
        # Marked as Django's TestCase marks its own: the app then sends an SMS
        # at once rather than after a commit that never comes (as in tests).
        self.atomic._from_testcase = True
        self.atomic.__enter__()
        self.saved_environ: dict[str, str | None] = {}
        self.built = ""
        self.own_request: Any = None
        for name in sorted(set(_ENV_READ.findall(Path(path).read_text("utf-8")))):
            self.saved_environ[name] = os.environ.get(name)
            os.environ[name] = _placeholder(name)

    def close(self, blocker: Any) -> None:
        for name, value in self.saved_environ.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        with blocker.unblock():
            transaction.set_rollback(True)
            self.atomic.__exit__(None, None, None)


def _build_documented_providers(namespace: dict[str, Any], state: _PageState) -> None:
    from django_sms2fa.providers import build_provider

    config = namespace.get("SMS2FA")
    if not isinstance(config, dict) or not isinstance(config.get("PROVIDERS"), dict):
        return
    if not all(
        isinstance(entry, dict) and isinstance(entry.get("OPTIONS", {}), dict)
        for entry in config["PROVIDERS"].values()
    ):
        return  # a sketch (``"OPTIONS": {...}``), not a configuration
    snapshot = repr(config)
    if state.built == snapshot:
        return  # built already, unchanged since
    state.built = snapshot
    providers = config["PROVIDERS"]
    if "default" not in providers:
        # A fragment showing one more alias: beside a stand-in default.
        providers = {**providers, "default": {"BACKEND": _CONSOLE}}
    with override_settings(SMS2FA={**config, "PROVIDERS": providers}):
        for alias in config["PROVIDERS"]:
            build_provider(alias)


def _in_page(evaluator: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """Wraps a block's evaluator with the page's setup and the provider check."""

    def evaluate(example: Any) -> Any:
        namespace = example.namespace
        state = namespace.get(_STATE)
        if state is None:
            state = namespace[_STATE] = _PageState(example.document.path)
        # Sybil puts pytest's ``request`` fixture into the namespace before
        # each block; a page's own ``request`` (an HttpRequest) wins.
        if isinstance(namespace.get("request"), pytest.FixtureRequest):
            if state.own_request is None:
                del namespace["request"]
            else:
                namespace["request"] = state.own_request
        result = evaluator(example)
        state.own_request = namespace.get("request")
        if result is None:
            try:
                _build_documented_providers(namespace, state)
            except Exception as err:  # reported as the block's failure
                return f"the providers this block configures do not build: {err!r}"
        return result

    return evaluate


class _PythonBlocks(PythonCodeBlockParser):
    def __call__(self, document: Any) -> Iterator[Any]:
        for region in super().__call__(document):
            region.evaluator = _in_page(region.evaluator)
            yield region


def _clear_outbox_and_caches() -> None:
    from django_sms2fa.providers import locmem

    locmem.reset()
    for cache in caches.all():
        cache.clear()


def _setup(namespace: dict[str, Any]) -> None:
    _clear_outbox_and_caches()


def _teardown(namespace: dict[str, Any]) -> None:
    state = namespace.pop(_STATE, None)
    if state is not None:
        state.close(namespace["sms2fa_docs_db"])
    _clear_outbox_and_caches()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # pytest-django creates the test database only for the databases its
    # collected items ask for; the blocks ask through this mark. (The mark's
    # own per-test transaction does not apply: Sybil requests only the
    # fixture named below, and the page's transaction stands instead.)
    for item in items:
        if isinstance(item, SybilItem):
            item.add_marker(pytest.mark.django_db)


pytest_collect_file = Sybil(
    parsers=[_PythonBlocks(), SkipParser(), ClearNamespaceParser()],
    patterns=["*.md"],
    excludes=["_build/*"],
    fixtures=["sms2fa_docs_db"],
    setup=_setup,
    teardown=_teardown,
).pytest()
