"""Browser end-to-end tests: a real Chromium, driven by Playwright, against a
live server that serves the example site's pages.

Chromium comes from the system (Debian: ``apt-get install chromium``), never
from Playwright's downloader: ``SMS2FA_CHROMIUM`` names the executable, else
``chromium`` / ``chromium-browser`` on PATH. Without it these tests are skipped
with the reason on a developer machine, and fail when ``CI`` or
``SMS2FA_REQUIRE_BROWSER`` is set, so CI can never pass by skipping them.

Screenshots go to ``SMS2FA_SCREENSHOTS`` (default ``tests/e2e/screenshots/``);
the session's summary lists them.
"""

from __future__ import annotations

import importlib
import os
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pytest_django.live_server_helper import LiveServer

from django.test.utils import override_settings

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
# The example site's app ("example": the dev outbox, home and protected pages).
sys.path.insert(0, str(REPO / "example_project"))
# Its templates: the site's layout for the sms2fa pages, then the app's own.
EXAMPLE_TEMPLATES = [
    REPO / "example_project" / "templates",
    REPO / "example_project" / "example" / "templates",
]

SCREENSHOTS = Path(os.environ.get("SMS2FA_SCREENSHOTS") or HERE / "screenshots")
BROWSER_REQUIRED = bool(os.environ.get("CI") or os.environ.get("SMS2FA_REQUIRE_BROWSER"))
TIMEOUT_MS = 15_000

# What every page of these tests is served with: the e2e URL conf (example
# site pages, sms2fa pages, OTP admin, dev outbox), DEBUG on like a developer's
# runserver (the dev outbox exists only then), and admin CSS so the screenshots
# look like the real thing.
E2E_SETTINGS: dict[str, Any] = {
    "ROOT_URLCONF": "tests.e2e.urls",
    "DEBUG": True,
    "STATIC_URL": "/static/",
}
# Where the example site sends people to log in and after logging in.
_example_settings = importlib.import_module("example.settings")
E2E_SETTINGS.update(
    {
        name: getattr(_example_settings, name)
        for name in ("LOGIN_URL", "LOGIN_REDIRECT_URL", "LOGOUT_REDIRECT_URL", "OTP_LOGIN_URL")
    }
)

_taken: list[Path] = []
_cleared = False


def _chromium() -> str | None:
    return (
        os.environ.get("SMS2FA_CHROMIUM")
        or shutil.which("chromium")
        or shutil.which("chromium-browser")
    )


def _no_browser(reason: str) -> None:
    if BROWSER_REQUIRED:
        pytest.fail(
            f"{reason}; the browser tests must run here (CI or SMS2FA_REQUIRE_BROWSER is set). "
            "Install it: apt-get install -y chromium",
            pytrace=False,
        )
    pytest.skip(f"{reason} (install it with: apt-get install -y chromium)")


@pytest.fixture(scope="session")
def live_server(request: pytest.FixtureRequest) -> Iterator[LiveServer]:
    """pytest-django's live server, serving static files (the admin's CSS)
    through the staticfiles finders even though the test settings do not
    install ``django.contrib.staticfiles``."""
    from django.contrib.staticfiles.handlers import StaticFilesHandler

    server = LiveServer("localhost", start=False)
    server.thread.static_handler = StaticFilesHandler
    with override_settings(STATIC_URL=E2E_SETTINGS["STATIC_URL"]):
        server.start()  # the handler reads STATIC_URL once, when the thread builds it
    yield server
    server.stop()


@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    """One headless Chromium for the package (a fresh context per test).

    Playwright's sync API runs an asyncio loop in this thread for as long as it
    lives, and Django refuses ORM calls from a thread with a running loop: the
    flag is set only while the browser is up.
    """
    try:
        from playwright.sync_api import expect, sync_playwright
    except ImportError:
        _no_browser("playwright is not installed (pip install -e '.[test]')")
    # A loaded CI machine can be slow; the 5 s default made for flaky runs.
    expect.set_options(timeout=TIMEOUT_MS)
    executable = _chromium()
    if not executable or not os.access(executable, os.X_OK):
        _no_browser("Chromium was not found (set SMS2FA_CHROMIUM or put chromium on PATH)")

    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    manager = sync_playwright().start()
    try:
        chromium = manager.chromium.launch(
            executable_path=executable,
            headless=True,
            # Containers often run as root and have a small /dev/shm.
            args=["--no-sandbox", "--disable-dev-shm-usage"],
        )
        yield chromium
        chromium.close()
    finally:
        manager.stop()
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def e2e_settings(settings: Any) -> Any:
    for name, value in E2E_SETTINGS.items():
        setattr(settings, name, value)
    # The example site's templates, without installing its app (the test
    # settings' app list stays as it is for the rest of the session).
    engine = settings.TEMPLATES[0]
    dirs = [*engine.get("DIRS", []), *map(str, EXAMPLE_TEMPLATES)]
    settings.TEMPLATES = [{**engine, "DIRS": dirs}]
    return settings


@pytest.fixture
def page(browser: Any, live_server: LiveServer, e2e_settings: Any) -> Iterator[Any]:
    """A new tab in a fresh browser context (no cookies), with relative URLs
    resolved against the live server."""
    context = browser.new_context(
        base_url=live_server.url, viewport={"width": 1000, "height": 760}, locale="en-US"
    )
    context.set_default_timeout(TIMEOUT_MS)
    tab = context.new_page()
    yield tab
    context.close()


@pytest.fixture
def screenshot() -> Callable[[Any, str], Path]:
    """``screenshot(page, "login")`` saves the whole page as ``login.png``."""

    def take(tab: Any, name: str) -> Path:
        global _cleared
        if not _cleared and "SMS2FA_SCREENSHOTS" not in os.environ:
            # The default folder holds only this suite's pictures: drop the
            # last run's, so none of them is mistaken for this run's.
            for old in SCREENSHOTS.glob("*.png"):
                old.unlink()
        _cleared = True
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        tab.screenshot(path=str(path), full_page=True)
        if path not in _taken:
            _taken.append(path)
        return path

    return take


@pytest.fixture
def make_user(transactional_db: None, django_user_model: Any) -> Callable[..., Any]:
    """``make_user("carol", phone="+46701234501")``: a user with a password and,
    if ``phone`` is given, a confirmed phone device."""
    from django_sms2fa.models import PhoneDevice

    def make(
        username: str,
        *,
        password: str = "correct horse battery",
        phone: str | None = None,
        staff: bool = False,
    ) -> Any:
        user = django_user_model.objects.create_user(
            username=username, password=password, is_staff=staff, is_superuser=staff
        )
        if phone:
            PhoneDevice.objects.create(user=user, number=phone, name="Phone", confirmed=True)
        return user

    return make


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _taken:
        terminalreporter.section("browser screenshots")
        for path in _taken:
            terminalreporter.write_line(str(path))
