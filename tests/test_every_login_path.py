"""Every way to log in to the example site enforces the second factor.

The real example site (example_project) runs as a subprocess on its own SQLite
file, with the demo user (``demo`` / ``demo-password``, a confirmed phone).
Every URL pattern of the site is enumerated from its URL resolver, and each one
is sent the demo user's password in every shape a login could take: form
fields, a JSON body, an HTTP Basic header. After every attempt the session must
still be logged out where it matters:

* ``/protected/`` (``@otp_required``) does not answer 200,
* ``/api/2fa/devices/`` answers 403 (with and without a Basic header),
* ``/admin/`` redirects to the admin login page instead of showing the index.

The positive controls log in with the code the console provider prints on the
server's standard output and show the same checks then pass — so every check
here can fail.

It needs no PostgreSQL: the site has its own SQLite file, whatever database
the rest of the suite uses.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

REPO_ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_DIR = REPO_ROOT / "example_project"
MANAGE = EXAMPLE_DIR / "manage.py"

USERNAME = "demo"
PASSWORD = "demo-password"
EMAIL = "demo@example.com"
PHONE = "+46701234567"

TIMEOUT = 10  # seconds, for every HTTP request
CODE_RE = re.compile(r"Your verification code is (\d+)")

# Every field name a login form or API might read the password login from.
CREDENTIALS = {"username": USERNAME, "password": PASSWORD, "login": USERNAME, "email": EMAIL}

# Run inside the example site's settings: every URL pattern, recursively, with
# a concrete URL that resolves back to the same view (checked with resolve()).
ROUTES_SCRIPT = r"""
import json, re
import django
django.setup()
from django.contrib.auth import get_user_model
from django.contrib.contenttypes.models import ContentType
from django.urls import URLResolver, get_resolver, resolve
from django.urls.exceptions import Resolver404
from django.urls.resolvers import RegexPattern
from django.utils import timezone
from django_sms2fa.api.urls import DEPRECATED_NAMES
from django_sms2fa.models import PhoneDevice, RememberedBrowser

user = get_user_model().objects.get(username="demo")
device = PhoneDevice.objects.get(user=user, confirmed=True)
# A browser the demo user had remembered: the routes that forget one get its
# real id (the walk must leave it remembered).
browser = RememberedBrowser.objects.create(
    user=user,
    device_id=device.persistent_id,
    auth_fingerprint="remembered before the walk",
    created_at=timezone.now(),
    expires_at=timezone.now() + timezone.timedelta(days=30),
)
BY_CONVERTER = {"uuid": str(browser.pk)}
BY_NAME = {
    "challenge_id": "CHALLENGE",  # replaced by a real challenge of the session
    "device_id": str(device.pk),
    "object_id": str(user.pk),
    "id": str(user.pk),
    "content_type_id": str(ContentType.objects.get_for_model(user).pk),
    "url": "no-such-page/",
    "browser_id": str(browser.pk),
}

def fill_route(text):
    return re.sub(
        r"<(?:(\w+):)?(\w+)>",
        lambda m: BY_CONVERTER.get(m.group(1))
        or BY_NAME.get(m.group(2), "1" if m.group(1) == "int" else "x"),
        text,
    )

def fill_regex(text):
    text = text.lstrip("^").replace("\\Z", "").rstrip("$")
    def group(m):
        name, body = m.group(1), m.group(2)
        if re.fullmatch(r"[\w-]+(\|[\w-]+)*", body):
            return body.split("|")[0]
        return BY_NAME.get(name, "x")
    return re.sub(r"\(\?P<(\w+)>((?:[^()]|\([^()]*\))*)\)", group, text)

def walk(patterns, prefix=""):
    for p in patterns:
        pattern = p.pattern
        fill = fill_regex if isinstance(pattern, RegexPattern) else fill_route
        part = fill(str(pattern))
        if isinstance(p, URLResolver):
            yield from walk(p.url_patterns, prefix + part)
        elif p.name in DEPRECATED_NAMES and p.lookup_str.startswith("django_sms2fa.api."):
            # An old API name kept for one release: the route and view of the
            # pattern just before it, walked there (test_url_names checks it).
            continue
        else:
            yield prefix + part, p

routes = []
for path, p in walk(get_resolver().url_patterns):
    url = "/" + path
    try:
        match = resolve(url)
        ok = match.func is p.callback and match.url_name == p.name
    except Resolver404:
        ok = False
    routes.append({"url": url, "name": p.name, "view": p.lookup_str, "resolves": ok})
print(json.dumps({
    "routes": routes,
    "device_id": device.pk,
    "device_persistent_id": device.persistent_id,
    "browser_id": str(browser.pk),
}))
"""

# The demo user's sign-in methods, as the site's database holds them.
METHODS_SCRIPT = r"""
import json
import django
django.setup()
from django.contrib.auth import get_user_model
from django_otp.plugins.otp_totp.models import TOTPDevice
from django_sms2fa.models import PhoneDevice, RecoveryCode, RememberedBrowser

user = get_user_model().objects.get(username="demo")
phones = PhoneDevice.objects.filter(user=user)
print(json.dumps({
    "phones": sorted(phones.values_list("pk", "number", "confirmed")),
    "apps": sorted(TOTPDevice.objects.filter(user=user).values_list("pk", "confirmed")),
    "recovery": sorted(
        RecoveryCode.objects.filter(device__user=user).values_list("code_hash", flat=True)
    ),
    "remembered": sorted(
        str(pk) for pk in RememberedBrowser.objects.filter(
            user=user, revoked_at=None
        ).values_list("pk", flat=True)
    ),
}))
"""


# ----------------------------------------------------------------------- the site


class Browser(requests.Session):
    """A ``requests.Session`` (one cookie jar) on a new connection per request.

    On a kept-alive connection each answer of the development server waits for
    a delayed ACK (~40 ms), which would make the walk below slow; and closing
    the previous connection here, once its answer is read, is race-free, unlike
    a ``Connection: close`` header the server does not echo.
    """

    def __init__(self) -> None:
        super().__init__()
        self.trust_env = False  # no proxy from the environment for 127.0.0.1

    def get_adapter(self, url: str) -> Any:
        self.close()  # drops the previous (fully read) connection
        return super().get_adapter(url)


@dataclass
class Site:
    base: str
    stdout: Path
    stderr: Path
    routes: list[dict[str, Any]]
    device_id: int
    device_persistent_id: str
    browser_id: str
    env: dict[str, str]
    cwd: Path

    def url(self, path: str) -> str:
        return self.base + path

    def output_size(self) -> int:
        return self.stdout.stat().st_size

    def demo_methods(self) -> dict[str, Any]:
        """The demo user's phones, apps, recovery codes and remembered browsers."""
        return json.loads(_run([sys.executable, "-c", METHODS_SCRIPT], self.env, self.cwd))

    def code_since(self, offset: int, *, wait: float = 10.0, quiet: float = 0.5) -> str:
        """The newest code the console provider printed after ``offset``.

        The task worker prints the SMS in the order they were queued, and an
        SMS an earlier test queued may still come out after ``offset``: the
        answer is read once a code is there and the output has then been
        quiet for ``quiet`` seconds (the worker polls every 0.05 s).
        """
        deadline = time.monotonic() + wait
        seen, still_since = -1, time.monotonic()
        while True:
            with self.stdout.open("rb") as stream:
                stream.seek(offset)
                text = stream.read().decode("utf-8", "replace")
            codes = CODE_RE.findall(text)
            if len(text) != seen:
                seen, still_since = len(text), time.monotonic()
            elif codes and time.monotonic() - still_since >= quiet:
                return codes[-1]
            if time.monotonic() > deadline:
                if codes:
                    return codes[-1]
                raise AssertionError("the server printed no verification code")
            time.sleep(0.05)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _site_env(db_path: Path) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        # The example's own defaults, not whatever the caller's shell has.
        if key not in {"EXAMPLE_DEBUG", "EXAMPLE_ALLOWED_HOSTS", "DJANGO_SECRET_KEY"}
    }
    env.update(
        DJANGO_SETTINGS_MODULE="example.settings",  # pytest-django set tests.settings
        EXAMPLE_DB=str(db_path),
        PYTHONUNBUFFERED="1",
        PYTHONPATH=os.pathsep.join([str(EXAMPLE_DIR), str(REPO_ROOT)]),
        # Hundreds of password logins and SMS from one client and to one phone:
        # asks the example settings to lift SMS2FA["LIMITS"] (see the report).
        EXAMPLE_SEND_LIMITS="off",
    )
    return env


def _run(args: list[str], env: dict[str, str], cwd: Path) -> str:
    done = subprocess.run(
        args, env=env, cwd=cwd, capture_output=True, text=True, timeout=180, check=False
    )
    assert done.returncode == 0, f"{args[1:]} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    tmp = tmp_path_factory.mktemp("example_site")
    env = _site_env(tmp / "db.sqlite3")
    _run([sys.executable, str(MANAGE), "migrate", "--noinput"], env, tmp)
    _run([sys.executable, str(MANAGE), "demo_setup"], env, tmp)
    listing = json.loads(_run([sys.executable, "-c", ROUTES_SCRIPT], env, tmp))

    port = _free_port()
    stdout_path, stderr_path = tmp / "server.out", tmp / "server.err"
    # The site sends every SMS through its task queue (SEND_VIA_TASKS), as
    # example_project/run.sh runs it: the server and the task worker that
    # prints the codes, both appending to one output file.
    with stdout_path.open("ab") as out, stderr_path.open("ab") as err:
        process = subprocess.Popen(
            [sys.executable, str(MANAGE), "runserver", f"127.0.0.1:{port}", "--noreload"],
            env=env,
            cwd=tmp,
            stdout=out,
            stderr=err,
            stdin=subprocess.DEVNULL,
        )
        worker = subprocess.Popen(
            [sys.executable, str(MANAGE), "db_worker", "--interval", "0.05"]
            + ["--no-startup-delay", "--no-reload"],
            env=env,
            cwd=tmp,
            stdout=out,
            stderr=err,
            stdin=subprocess.DEVNULL,
        )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                pytest.fail(f"the example site exited:\n{stderr_path.read_text()}")
            try:
                with Browser() as probe:
                    probe.get(base + "/api/2fa/devices/", timeout=2)
                break
            except requests.ConnectionError:
                if time.monotonic() > deadline:
                    pytest.fail("the example site did not start within 60 s")
                time.sleep(0.1)
        yield Site(
            base=base,
            stdout=stdout_path,
            stderr=stderr_path,
            routes=listing["routes"],
            device_id=listing["device_id"],
            device_persistent_id=listing["device_persistent_id"],
            browser_id=listing["browser_id"],
            env=env,
            cwd=tmp,
        )
    finally:
        for child in (process, worker):
            child.terminate()
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait(timeout=10)


# ------------------------------------------------------------------- the checks


def new_session(site: Site) -> requests.Session:
    """A browser-like client that already holds a CSRF cookie."""
    client = Browser()
    client.get(site.url("/accounts/login/"), timeout=TIMEOUT).raise_for_status()
    assert client.cookies.get("csrftoken")
    return client


def csrf(client: requests.Session) -> str:
    return client.cookies.get("csrftoken", "")


def post(client: requests.Session, site: Site, path: str, **kwargs: Any) -> requests.Response:
    headers = {"X-CSRFToken": csrf(client), **kwargs.pop("headers", {})}
    return client.post(
        site.url(path), headers=headers, allow_redirects=False, timeout=TIMEOUT, **kwargs
    )


def anonymity_problems(site: Site, client: requests.Session) -> list[str]:
    """Why ``client``'s session counts as logged in; ``[]`` when it does not."""
    problems = []
    protected = client.get(site.url("/protected/"), allow_redirects=False, timeout=TIMEOUT)
    if protected.status_code == 200:
        problems.append("/protected/ answered 200")
    for auth in (None, (USERNAME, PASSWORD)):
        devices = client.get(site.url("/api/2fa/devices/"), auth=auth, timeout=TIMEOUT)
        if devices.status_code != 403:
            problems.append(
                f"/api/2fa/devices/ (Basic: {auth is not None}) answered {devices.status_code}"
            )
    admin = client.get(site.url("/admin/"), allow_redirects=False, timeout=TIMEOUT)
    location = urlsplit(admin.headers.get("Location", "")).path
    if admin.status_code != 302 or location != "/admin/login/":
        problems.append(f"/admin/ answered {admin.status_code} (Location {location!r})")
    return problems


def assert_anonymous(site: Site, client: requests.Session) -> None:
    assert anonymity_problems(site, client) == []
    # ... and the admin redirect really ends on the login form, not the index.
    admin = client.get(site.url("/admin/"), timeout=TIMEOUT)
    assert urlsplit(admin.url).path == "/admin/login/"
    assert 'id="login-form"' in admin.text


def assert_logged_in_with_second_factor(site: Site, client: requests.Session) -> None:
    protected = client.get(site.url("/protected/"), allow_redirects=False, timeout=TIMEOUT)
    assert protected.status_code == 200
    assert f"with a verified second factor as {USERNAME}" in protected.text
    devices = client.get(site.url("/api/2fa/devices/"), timeout=TIMEOUT)
    assert devices.status_code == 200
    assert [device["id"] for device in devices.json()] == [site.device_id]
    admin = client.get(site.url("/admin/"), allow_redirects=False, timeout=TIMEOUT)
    assert admin.status_code == 200
    assert 'id="login-form"' not in admin.text
    assert anonymity_problems(site, client) != []  # the checks tell the states apart


def api_password_login(site: Site, client: requests.Session) -> dict[str, Any]:
    answer = post(
        client, site, "/api/2fa/login/", json={"username": USERNAME, "password": PASSWORD}
    )
    assert answer.status_code == 200, answer.text
    return answer.json()


# ------------------------------------------------------------------ enumeration


def test_every_url_pattern_has_a_concrete_url(site):
    """The walk below covers every pattern, and the login entrances are among them."""
    unresolved = [route["view"] for route in site.routes if not route["resolves"]]
    assert unresolved == []
    urls = {route["url"] for route in site.routes}
    assert {
        "/admin/login/",
        "/accounts/login/",
        "/api/2fa/login/",
        "/api/2fa/login/verify/",
        "/api/2fa/challenges/",
        "/api/2fa/challenges/CHALLENGE/verify/",
        "/api/2fa/devices/",
        "/protected/",
        # The sign-in methods: each a way a session could be changed or upgraded.
        "/2fa/security/",
        "/2fa/security/confirm/",
        "/2fa/security/app/",
        "/2fa/security/app/remove/",
        "/2fa/security/recovery-codes/",
        f"/2fa/security/browsers/{site.browser_id}/forget/",
        "/2fa/security/browsers/forget-all/",
        "/2fa/logout/",
        "/api/2fa/login/method/",
        "/api/2fa/logout/",
        "/api/2fa/methods/",
        "/api/2fa/totp/",
        "/api/2fa/totp/confirm/",
        "/api/2fa/recovery-codes/",
        "/api/2fa/browsers/",
        f"/api/2fa/browsers/{site.browser_id}/",
        "/api/2fa/browsers/forget-all/",
        "/api/2fa/step-up/challenge/",
        "/api/2fa/step-up/",
    } <= urls
    assert len(urls) == len(site.routes)  # one concrete URL per pattern


def _attempts(site: Site, client: requests.Session) -> dict[str, dict[str, Any]]:
    token = csrf(client)
    form = {**CREDENTIALS, "csrfmiddlewaretoken": token, "next": "/admin/"}
    return {
        "GET with Basic": {"method": "GET", "auth": (USERNAME, PASSWORD)},
        "POST form": {"method": "POST", "data": form},
        "POST form with an OTP challenge": {
            "method": "POST",
            "data": {**form, "otp_device": site.device_persistent_id, "otp_challenge": "1"},
        },
        "POST JSON": {"method": "POST", "json": CREDENTIALS},
        "POST Basic": {
            "method": "POST",
            "auth": (USERNAME, PASSWORD),
            "data": {"csrfmiddlewaretoken": token},
        },
    }


def _clients(site: Site, start: str) -> Iterator[requests.Session]:
    """A client for each route: a fresh one, or one whose session logged in
    with the password alone through Django's LoginView.

    The half-logged-in session is reused from route to route (a password login
    costs a PBKDF2 hash) and logged in again whenever a route changed its
    session key (a login rotates it, a logout ends it).
    """
    client, session_key = None, None
    while True:
        if start == "fresh":
            yield new_session(site)
            continue
        if client is None or client.cookies.get("sessionid") != session_key:
            client = new_session(site)
            answer = post(
                client,
                site,
                "/accounts/login/",
                data={
                    "username": USERNAME,
                    "password": PASSWORD,
                    "csrfmiddlewaretoken": csrf(client),
                },
            )
            assert answer.status_code == 302  # Django accepted the password
            session_key = client.cookies["sessionid"]
        yield client


@pytest.mark.parametrize("start", ["fresh", "after a password-only LoginView login"])
def test_no_url_logs_in_with_a_password_alone(site, start):
    """... nor changes a sign-in method: no app or recovery code enrolled, no
    phone removed, no remembered browser forgotten (every route is sent a
    GET, form, JSON and Basic POST, the DELETEs of the API included)."""
    methods_before = site.demo_methods()
    assert methods_before["remembered"] == [site.browser_id]  # what a forget would hit
    problems: list[str] = []
    tried = 0
    clients = _clients(site, start)
    for route in site.routes:
        client = next(clients)
        url = route["url"]
        if "CHALLENGE" in url:
            # A real challenge this session owns: the pending login's.
            challenge = api_password_login(site, client)["challenge"]["id"]
            url = url.replace("CHALLENGE", challenge)
        first = client.get(site.url(url), timeout=TIMEOUT)
        if first.status_code >= 500:
            problems.append(f"GET {url}: {first.status_code}")
        for shape, attempt in _attempts(site, client).items():
            method = attempt.pop("method")
            answer = client.request(
                method,
                site.url(url),
                headers={"X-CSRFToken": csrf(client)},
                allow_redirects=False,
                timeout=TIMEOUT,
                **attempt,
            )
            tried += 1
            if answer.status_code >= 500:
                problems.append(f"{shape} {url}: {answer.status_code}")
            problems.extend(f"{shape} {url}: {p}" for p in anonymity_problems(site, client))
        if url.startswith("/api/"):
            # The API's removals are DELETEs (devices/<id>/, totp/, browsers/<id>/).
            answer = client.delete(
                site.url(url),
                headers={"X-CSRFToken": csrf(client)},
                auth=(USERNAME, PASSWORD),
                allow_redirects=False,
                timeout=TIMEOUT,
            )
            if answer.status_code >= 500:
                problems.append(f"DELETE with Basic {url}: {answer.status_code}")
            problems.extend(f"DELETE {url}: {p}" for p in anonymity_problems(site, client))
    assert tried == len(site.routes) * 5
    assert problems == [], "\n".join(problems)
    assert site.demo_methods() == methods_before


# -------------------------------------------------------- the named login paths


def test_django_login_view_accepts_the_password_but_the_session_stays_anonymous(site):
    client = new_session(site)
    wrong = post(
        client,
        site,
        "/accounts/login/",
        data={"username": USERNAME, "password": "not-it", "csrfmiddlewaretoken": csrf(client)},
    )
    assert wrong.status_code == 200  # the form again
    assert "sessionid" not in client.cookies

    right = post(
        client,
        site,
        "/accounts/login/",
        data={"username": USERNAME, "password": PASSWORD, "csrfmiddlewaretoken": csrf(client)},
    )
    # Django's LoginView took the password and logged the session in ...
    assert right.status_code == 302
    assert urlsplit(right.headers["Location"]).path == "/"
    assert client.cookies.get("sessionid")
    # ... but SecondFactorMiddleware keeps it anonymous everywhere.
    assert_anonymous(site, client)
    login_page = client.get(site.url("/admin/login/"), timeout=TIMEOUT)
    assert "You are authenticated as" not in login_page.text


def test_admin_login_with_a_password_only(site):
    client = new_session(site)
    page = client.get(site.url("/admin/login/"), timeout=TIMEOUT)
    assert 'name="otp_token"' in page.text
    answer = post(
        client,
        site,
        "/admin/login/?next=/admin/",
        data={
            "username": USERNAME,
            "password": PASSWORD,
            "csrfmiddlewaretoken": csrf(client),
            "next": "/admin/",
        },
    )
    assert answer.status_code == 200  # the form again, asking for the token
    assert 'id="login-form"' in answer.text
    assert_anonymous(site, client)


def test_admin_login_with_a_wrong_code(site):
    client = new_session(site)
    form = {
        "username": USERNAME,
        "password": PASSWORD,
        "otp_device": site.device_persistent_id,
        "next": "/admin/",
    }
    offset = site.output_size()
    sent = post(
        client,
        site,
        "/admin/login/",
        data={**form, "otp_challenge": "1", "csrfmiddlewaretoken": csrf(client)},
    )
    assert sent.status_code == 200
    code = site.code_since(offset)
    wrong = f"{code[:-1]}{(int(code[-1]) + 1) % 10}"
    answer = post(
        client,
        site,
        "/admin/login/",
        data={**form, "otp_token": wrong, "csrfmiddlewaretoken": csrf(client)},
    )
    assert answer.status_code == 200
    assert_anonymous(site, client)


def test_api_login_asks_for_a_code_and_does_not_log_in(site):
    client = new_session(site)
    offset = site.output_size()
    body = api_password_login(site, client)
    assert body["mfa_required"] is True
    assert set(body) == {"mfa_required", "method", "methods", "challenge"}  # no user: not logged in
    assert body["challenge"]["purpose"] == "login"
    assert_anonymous(site, client)

    # The pending login does not finish with the password, or with a wrong code.
    challenge = body["challenge"]["id"]
    with_password = post(
        client,
        site,
        "/api/2fa/login/verify/",
        json={"challenge": challenge, "code": PASSWORD, "password": PASSWORD},
    )
    assert with_password.status_code == 400
    assert with_password.json()["error"]["code"] == "invalid_code"
    # A code is judged once the task worker has sent it (until then: 409
    # challenge_queued, no attempt used).
    site.code_since(offset)
    wrong = post(
        client, site, "/api/2fa/login/verify/", json={"challenge": challenge, "code": "0" * 6}
    )
    # "000000" might be the code (one in a million); then this test would fail loudly.
    assert wrong.status_code == 400
    assert wrong.json()["error"]["code"] == "incorrect_code"
    assert_anonymous(site, client)


def test_challenge_endpoints_do_not_log_in_without_the_code(site):
    client = new_session(site)
    offset = site.output_size()
    created = post(
        client, site, "/api/2fa/challenges/", json={"phone": PHONE, "purpose": "passwordless"}
    )
    assert created.status_code == 202
    challenge = created.json()["id"]
    site.code_since(offset)  # sent by the task worker: the code can be judged now
    for path, payload in [
        (f"/api/2fa/challenges/{challenge}/verify/", {"code": PASSWORD}),
        (f"/api/2fa/challenges/{challenge}/verify/", CREDENTIALS),
        (f"/api/2fa/challenges/{challenge}/verify/", {"code": "0" * 6}),
        (f"/api/2fa/challenges/{challenge}/resend/", CREDENTIALS),
        ("/api/2fa/challenges/", {**CREDENTIALS, "phone": PHONE, "purpose": "passwordless"}),
        ("/api/2fa/challenges/", {**CREDENTIALS, "phone": PHONE, "purpose": "verify_phone"}),
    ]:
        answer = post(client, site, path, json=payload)
        assert answer.status_code in {202, 400, 429}, (path, answer.text)
        assert "user" not in answer.json()
        assert_anonymous(site, client)


# ------------------------------------------------------------ positive controls


def test_api_login_with_the_code_logs_in_with_a_second_factor(site):
    client = new_session(site)
    offset = site.output_size()
    body = api_password_login(site, client)
    assert_anonymous(site, client)
    code = site.code_since(offset)
    answer = post(
        client,
        site,
        "/api/2fa/login/verify/",
        json={"challenge": body["challenge"]["id"], "code": code},
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["user"]["username"] == USERNAME
    assert_logged_in_with_second_factor(site, client)


def test_admin_login_with_the_code_logs_in_with_a_second_factor(site):
    client = new_session(site)
    form = {
        "username": USERNAME,
        "password": PASSWORD,
        "otp_device": site.device_persistent_id,
        "next": "/admin/",
    }
    offset = site.output_size()
    post(
        client,
        site,
        "/admin/login/",
        data={**form, "otp_challenge": "1", "csrfmiddlewaretoken": csrf(client)},
    )
    code = site.code_since(offset)
    answer = post(
        client,
        site,
        "/admin/login/",
        data={**form, "otp_token": code, "csrfmiddlewaretoken": csrf(client)},
    )
    assert answer.status_code == 302
    assert_logged_in_with_second_factor(site, client)


def passwordless_login(site: Site, client: requests.Session) -> requests.Response:
    offset = site.output_size()
    created = post(
        client, site, "/api/2fa/challenges/", json={"phone": PHONE, "purpose": "passwordless"}
    )
    assert created.status_code == 202
    assert_anonymous(site, client)
    code = site.code_since(offset)
    return post(
        client, site, f"/api/2fa/challenges/{created.json()['id']}/verify/", json={"code": code}
    )


def test_passwordless_login_with_the_code_gives_a_logged_in_session(site):
    client = new_session(site)
    answer = passwordless_login(site, client)
    assert answer.status_code == 200
    assert answer.json()["user"]["username"] == USERNAME  # the API says: logged in
    devices = client.get(site.url("/api/2fa/devices/"), timeout=TIMEOUT)
    assert devices.status_code == 200  # ... and the session is


def test_a_passwordless_session_does_not_pass_for_two_factors(site):
    client = new_session(site)
    assert passwordless_login(site, client).status_code == 200
    protected = client.get(site.url("/protected/"), allow_redirects=False, timeout=TIMEOUT)
    admin = client.get(site.url("/admin/"), allow_redirects=False, timeout=TIMEOUT)
    assert (protected.status_code, admin.status_code) == (302, 302)


def test_the_home_page_shows_the_login_state(site):
    client = new_session(site)
    home = client.get(site.url("/"), timeout=TIMEOUT)
    assert home.status_code == 200
    assert "Not logged in." in home.text
    assert len(home.content) < 20_000
