"""Side by side with the peers: the same request -> verify cycle, interleaved.

Run it in the peers' virtualenv (``bash bench/peers/setup.sh`` makes it)::

    bench/peers/.venv/bin/python bench/peers/run.py --cycles 200 --rounds 3

For each app it times N cycles per round (create a code for a user's phone,
verify it with the right code), the apps interleaved in one process and
rotated each round, on one PostgreSQL database. This app runs three times: its
flows called as functions, and its REST API (``verify_phone`` challenges, and
password-then-code login) driven through ``django.test.Client`` with the full
middleware stack of ``settings.py``. It then counts the SQL statements of one
warm cycle, and runs two probes: 16 threads behind a barrier verifying the
same right code (how many are accepted), and the right code verified again
after a success (replay). It prints a Markdown table and
writes JSON (``--json``, default ``bench/peers/results.json``) with the machine.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import sys
import threading
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.peers.settings")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.core import mail  # noqa: E402
from django.core.cache import cache  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import CaptureQueriesContext, setup_test_environment  # noqa: E402

from bench.peers import peer_backends  # noqa: E402

PASSWORD = "bench-peers-password"
RACERS = 16
FIRST_PHONE = 1_000_000  # +4670 1000000 ...: Swedish mobile numbers
# The REST rows' own numbers (a number is confirmed on one account only).
REST_LOGIN_PHONE = 2_000_000
REST_PHONE_PHONE = 3_000_000
API = "/sms2fa/api/"  # bench/peers/urls.py


def phone_of(i: int, first: int = FIRST_PHONE) -> str:
    return f"+4670{first + i}"


def post_view(path: str, body: dict[str, Any]) -> Any:
    """A peer's DRF endpoint, through ``django.test.Client`` and the site's full
    middleware, as this app's REST rows are driven (one client, no session
    kept: the peers carry their state in the body)."""
    client = getattr(_PEER_CLIENTS, "client", None)
    if client is None:  # one per thread: the racer probe posts from 16 at once
        client = _PEER_CLIENTS.client = new_client()
    return post_json(client, path, body)


class App:
    """One app's cycle. ``request`` returns the state ``verify`` needs."""

    name = ""
    how = ""

    def prepare(self, users: list[Any]) -> None:
        raise NotImplementedError

    def request(self, i: int) -> Any:
        raise NotImplementedError

    def verify(self, state: Any) -> bool:
        raise NotImplementedError

    def racer_state(self, state: Any) -> Any:
        """The state one racer thread verifies with (run in that thread)."""
        return state


class Ours(App):
    name = "django-sms2fa"
    how = "flows, login purpose: load device + request_challenge / verify_challenge"

    def prepare(self, users: list[Any]) -> None:
        from django_sms2fa.models import Challenge, PhoneDevice

        Challenge.objects.filter(user__in=users).delete()
        PhoneDevice.objects.filter(user__in=users).delete()
        self.users = users
        self.devices = PhoneDevice.objects.bulk_create(
            PhoneDevice(user=u, number=phone_of(i), name="bench", confirmed=True)
            for i, u in enumerate(users)
        )

    def request(self, i: int) -> Any:
        from django_sms2fa import flows
        from django_sms2fa.models import PhoneDevice
        from django_sms2fa.providers import locmem

        device = PhoneDevice.objects.get(pk=self.devices[i].pk)
        challenge = flows.request_challenge(
            phone=device.number, purpose="login", user=self.users[i], device=device
        )
        code = locmem.outbox[-1].code
        locmem.outbox.clear()
        return challenge.pk, code, self.users[i]

    def verify(self, state: Any) -> bool:
        from django_sms2fa import flows
        from django_sms2fa.exceptions import Sms2faError

        pk, code, user = state
        try:
            flows.verify_challenge(pk, code, user=user, purpose="login")
        except Sms2faError:
            return False
        return True


class TwoFactor(App):
    name = "django-two-factor-auth"
    how = "PhoneDevice, model: load + generate_challenge / load + verify_token"

    def prepare(self, users: list[Any]) -> None:
        from two_factor.plugins.phonenumber.models import PhoneDevice

        PhoneDevice.objects.filter(user__in=users).delete()
        self.devices = PhoneDevice.objects.bulk_create(
            PhoneDevice(user=u, name="bench", number=phone_of(i), method="sms", confirmed=True)
            for i, u in enumerate(users)
        )

    def request(self, i: int) -> Any:
        from django_otp.oath import totp
        from two_factor.plugins.phonenumber.models import PhoneDevice

        device = PhoneDevice.objects.get(pk=self.devices[i].pk)
        device.generate_challenge()
        # The fake gateway only logs the token: compute the one it sent.
        return device.pk, str(totp(device.bin_key, digits=6)).zfill(6)

    def verify(self, state: Any) -> bool:
        from two_factor.plugins.phonenumber.models import PhoneDevice

        pk, code = state
        return bool(PhoneDevice.objects.get(pk=pk).verify_token(code))


class OtpEmail(App):
    name = "django-otp"
    how = "EmailDevice, model: load + generate_challenge / load + verify_token (locmem mail)"

    def prepare(self, users: list[Any]) -> None:
        from django_otp.plugins.otp_email.models import EmailDevice

        EmailDevice.objects.filter(user__in=users).delete()
        self.devices = EmailDevice.objects.bulk_create(
            EmailDevice(user=u, name="bench", email=f"peer{i}@example.com", confirmed=True)
            for i, u in enumerate(users)
        )

    def request(self, i: int) -> Any:
        from django_otp.plugins.otp_email.models import EmailDevice

        device = EmailDevice.objects.get(pk=self.devices[i].pk)
        device.generate_challenge()
        mail.outbox.clear()
        return device.pk, device.token

    def verify(self, state: Any) -> bool:
        from django_otp.plugins.otp_email.models import EmailDevice

        pk, code = state
        return bool(EmailDevice.objects.get(pk=pk).verify_token(code))


class PhoneVerify(App):
    name = "django-phone-verify"
    how = (
        "REST via django.test.Client, full middleware: POST phone/register / POST "
        "phone/verify (session token + security code)"
    )

    def prepare(self, users: list[Any]) -> None:
        from phone_verify.models import SMSVerification

        SMSVerification.objects.filter(
            phone_number__in=[phone_of(i) for i in range(len(users))]
        ).delete()

    def request(self, i: int) -> Any:
        answer = post_view("/pv/phone/register", {"phone_number": phone_of(i)})
        assert answer.status_code == 200, (answer.status_code, answer.data)
        return phone_of(i), answer.data["session_token"], peer_backends.sent.pop("phone_verify")

    def verify(self, state: Any) -> bool:
        phone, token, code = state
        body = {"phone_number": phone, "session_token": token, "security_code": code}
        return post_view("/pv/phone/verify", body).status_code == 200


class Trench(App):
    name = "django-trench"
    how = (
        "REST via django.test.Client, full middleware: POST login/ (password + send) / "
        "POST login/code/ (authtoken)"
    )

    def prepare(self, users: list[Any]) -> None:
        import pyotp
        from trench.models import MFAMethod

        MFAMethod.objects.filter(user__in=users).delete()
        MFAMethod.objects.bulk_create(
            MFAMethod(
                user=u,
                name="sms_api",
                secret=pyotp.random_base32(),
                is_primary=True,
                is_active=True,
            )
            for u in users
        )
        self.users = users

    def request(self, i: int) -> Any:
        body = {"username": self.users[i].username, "password": PASSWORD}
        answer = post_view("/trench/login/", body)
        assert answer.status_code == 200, (answer.status_code, answer.data)
        return answer.data["ephemeral_token"], peer_backends.sent.pop("trench")

    def verify(self, state: Any) -> bool:
        token, code = state
        return (
            post_view("/trench/login/code/", {"ephemeral_token": token, "code": code}).status_code
            == 200
        )


def new_client() -> Client:
    """A test client with its middleware chain built, so that building it is
    not timed in a client's first request."""
    client = Client()
    client.handler.load_middleware()
    return client


def post_json(client: Client, path: str, body: dict[str, Any]) -> Any:
    return client.post(path, data=json.dumps(body), content_type="application/json")


_PEER_CLIENTS = threading.local()


def sent_code(phone: str) -> str:
    """The code of the one SMS just sent to ``phone``, from the locmem outbox."""
    from django_sms2fa.providers import locmem

    assert len(locmem.outbox) == 1 and locmem.outbox[0].to == phone, locmem.outbox
    code = locmem.outbox[0].code
    locmem.outbox.clear()
    return code


class OursRest(App):
    """This app's REST API through ``django.test.Client``: one client per
    simulated user, each cycle a new visitor (no cookie: a new session)."""

    def prepare(self, users: list[Any]) -> None:
        self.clients = [new_client() for _ in users]

    def racer_state(self, state: Any) -> Any:
        # Its own client carrying the same session cookie.
        client, *rest = state
        mine = new_client()
        name = settings.SESSION_COOKIE_NAME
        mine.cookies[name] = client.cookies[name].value
        return (mine, *rest)


class OursRestPhone(OursRest):
    name = "sms2fa-rest-phone"
    how = (
        "REST via django.test.Client, full middleware: POST challenges/ (verify_phone, "
        "anonymous) / POST challenges/{id}/verify/"
    )

    def prepare(self, users: list[Any]) -> None:
        from django_sms2fa.models import Challenge

        super().prepare(users)
        Challenge.objects.filter(
            phone__in=[phone_of(i, REST_PHONE_PHONE) for i in range(len(users))]
        ).delete()

    def request(self, i: int) -> Any:
        client = self.clients[i]
        client.cookies.clear()
        phone = phone_of(i, REST_PHONE_PHONE)
        answer = post_json(client, API + "challenges/", {"phone": phone, "purpose": "verify_phone"})
        assert answer.status_code == 202, (answer.status_code, answer.content)
        return client, answer.json()["id"], sent_code(phone)

    def verify(self, state: Any) -> bool:
        client, pk, code = state
        answer = post_json(client, f"{API}challenges/{pk}/verify/", {"code": code})
        return answer.status_code == 200 and answer.json().get("verified") is True


class OursRestLogin(OursRest):
    name = "sms2fa-rest-login"
    how = (
        "REST via django.test.Client, full middleware: POST login/ (password + send) / "
        "POST login/verify/"
    )

    def prepare(self, users: list[Any]) -> None:
        from django_sms2fa.models import Challenge, PhoneDevice

        # Its own users and numbers: the flows row's devices are its users'.
        users = make_users(len(users), first=REST_LOGIN_PHONE)
        super().prepare(users)
        Challenge.objects.filter(user__in=users).delete()
        PhoneDevice.objects.filter(user__in=users).delete()
        self.users = users
        PhoneDevice.objects.bulk_create(
            PhoneDevice(user=u, number=phone_of(i, REST_LOGIN_PHONE), name="bench", confirmed=True)
            for i, u in enumerate(users)
        )

    def request(self, i: int) -> Any:
        client = self.clients[i]
        client.cookies.clear()
        body = {"username": self.users[i].username, "password": PASSWORD}
        answer = post_json(client, API + "login/", body)
        assert answer.status_code == 200, (answer.status_code, answer.content)
        data = answer.json()
        assert data["mfa_required"] is True, data
        return client, data["challenge"]["id"], sent_code(phone_of(i, REST_LOGIN_PHONE))

    def verify(self, state: Any) -> bool:
        client, pk, code = state
        answer = post_json(client, API + "login/verify/", {"challenge": pk, "code": code})
        return answer.status_code == 200 and answer.json().get("mfa_required") is False


APPS: dict[str, Callable[[], App]] = {
    "sms2fa": Ours,
    "sms2fa_rest_phone": OursRestPhone,
    "sms2fa_rest_login": OursRestLogin,
    "two_factor": TwoFactor,
    "otp_email": OtpEmail,
    "phone_verify": PhoneVerify,
    "trench": Trench,
}


def make_users(n: int, first: int = FIRST_PHONE) -> list[Any]:
    user_model = get_user_model()
    names = [f"peer-{phone_of(i, first)}" for i in range(n)]
    have = {u.username: u for u in user_model.objects.filter(username__in=names)}
    missing = [name for name in names if name not in have]
    if missing:
        template = user_model(username="x")
        template.set_password(PASSWORD)
        user_model.objects.bulk_create(
            user_model(username=name, password=template.password) for name in missing
        )
        have = {u.username: u for u in user_model.objects.filter(username__in=names)}
    return [have[name] for name in names]


def run_cycles(app: App, n: int) -> tuple[float, list[float], list[float], int]:
    """N cycles; returns wall seconds, request and verify times (s), refusals."""
    requests: list[float] = []
    verifies: list[float] = []
    refused = 0
    clock = time.perf_counter
    start = clock()
    for i in range(n):
        t0 = clock()
        state = app.request(i)
        t1 = clock()
        ok = app.verify(state)
        t2 = clock()
        requests.append(t1 - t0)
        verifies.append(t2 - t1)
        refused += not ok
    return clock() - start, requests, verifies, refused


WRITES = ("INSERT", "UPDATE", "DELETE")


class Counter:
    """Commits and Redis round trips made by this thread while active.

    A commit is a write (``INSERT``/``UPDATE``/``DELETE``) run in autocommit
    outside ``atomic`` (its own transaction) or the commit that closes an
    outermost ``atomic`` block — as ``tests/test_sql_budget.py`` counts them. A
    read in autocommit is a transaction too, but one with nothing to flush. A
    Redis round trip is one command sent alone or one pipeline executed (a Lua
    script is one command).
    """

    def __init__(self) -> None:
        import redis

        self.thread = threading.get_ident()
        self.active = False
        self.commits = 0
        self.redis = 0
        counter = self
        real_execute = redis.Redis.execute_command
        real_pipeline = redis.client.Pipeline.execute

        def execute_command(client: Any, *args: Any, **kwargs: Any) -> Any:
            if counter.mine():
                counter.redis += 1
            return real_execute(client, *args, **kwargs)

        def pipeline_execute(pipe: Any, *args: Any, **kwargs: Any) -> Any:
            if counter.mine() and pipe.command_stack:
                counter.redis += 1
            return real_pipeline(pipe, *args, **kwargs)

        redis.Redis.execute_command = execute_command
        redis.client.Pipeline.execute = pipeline_execute
        real_commit = connection.commit

        def commit() -> None:
            if counter.mine():
                counter.commits += 1
            real_commit()

        connection.commit = commit
        connection.execute_wrappers.append(self.statement)

    def mine(self) -> bool:
        return self.active and threading.get_ident() == self.thread

    def statement(self, execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        if (
            self.mine()
            and connection.get_autocommit()
            and not connection.in_atomic_block
            and sql.lstrip().split(None, 1)[0].upper() in WRITES
        ):
            self.commits += 1
        return execute(sql, params, many, context)

    def step(self, fn: Callable[[], Any]) -> tuple[Any, dict[str, int]]:
        self.commits = self.redis = 0
        self.active = True
        try:
            with CaptureQueriesContext(connection) as queries:
                value = fn()
        finally:
            self.active = False
        return value, {
            "sql": len(queries.captured_queries),
            "commits": self.commits,
            "redis": self.redis,
        }


def count_step(counter: Counter, app: App, i: int) -> tuple[dict[str, int], dict[str, int], bool]:
    state, req = counter.step(lambda: app.request(i))
    ok, ver = counter.step(lambda: app.verify(state))
    return req, ver, ok


def race(app: App, i: int) -> tuple[int, int]:
    """Accepted and errored racers (an error counts as not accepted)."""
    state = app.request(i)
    barrier = threading.Barrier(RACERS)
    accepted: list[bool] = []
    errors: list[str] = []
    lock = threading.Lock()

    def racer() -> None:
        from django.db import connections

        try:
            try:
                mine = app.racer_state(state)
            except BaseException:
                barrier.abort()  # the others would wait for this one for ever
                raise
            barrier.wait()
            try:
                ok = app.verify(mine)
            except Exception as err:  # a racer that errors is not accepted
                ok = False
                with lock:
                    errors.append(type(err).__name__)
            with lock:
                accepted.append(ok)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=racer) for _ in range(RACERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(accepted), len(errors)


def replay(app: App, i: int) -> tuple[bool, bool]:
    state = app.request(i)
    first = app.verify(state)
    return first, app.verify(state)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[k] * 1000


def machine() -> dict[str, Any]:
    import redis

    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        pg = cursor.fetchone()[0]
    location = settings.CACHES["default"].get("LOCATION")
    try:
        redis_version = redis.Redis.from_url(location).info()["redis_version"] if location else None
    except Exception:
        redis_version = None
    packages = {}
    for name in (
        "Django",
        "django-sms2fa",
        "django-two-factor-auth",
        "django-otp",
        "django-phone-verify",
        "django-trench",
        "djangorestframework",
        "psycopg",
    ):
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            packages[name] = None
    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "nproc": os.cpu_count(),
        "loadavg_start": os.getloadavg(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "postgresql": pg,
        "redis": redis_version,
        "packages": packages,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=200, help="cycles per app per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--races", type=int, default=5, help="racer probes per app")
    parser.add_argument("--apps", default=",".join(APPS), help="comma-separated: " + ",".join(APPS))
    parser.add_argument("--json", default=str(Path(__file__).with_name("results.json")))
    args = parser.parse_args()

    from django.core.management import call_command

    call_command("migrate", verbosity=0)  # the database must exist
    setup_test_environment()  # mail.outbox for the locmem email backend
    info = machine()
    cache.clear()  # this app's limits and lockouts: a fresh start every run
    n = args.cycles
    # Users 0..n-1 run the timed cycles; the next ones the SQL count and probes.
    users = make_users(n + 2 + args.races)
    apps = [APPS[key]() for key in args.apps.split(",")]
    for app in apps:
        app.prepare(users)

    counter = Counter()
    sql = {app.name: [count_step(counter, app, n) for _ in range(2)][-1] for app in apps}

    results: dict[str, dict[str, Any]] = {
        app.name: {"how": app.how, "rate": [], "req": [], "ver": [], "refused": 0} for app in apps
    }
    for r in range(args.rounds):
        order = apps[r % len(apps) :] + apps[: r % len(apps)]
        for app in order:
            wall, req, ver, refused = run_cycles(app, n)
            out = results[app.name]
            out["rate"].append(n / wall)
            out["req"] += req
            out["ver"] += ver
            out["refused"] += refused
        print(f"round {r + 1}/{args.rounds}: " + ", ".join(a.name for a in order), file=sys.stderr)

    rows = []
    for app in apps:
        out = results[app.name]
        sql_req, sql_ver, sql_ok = sql[app.name]
        probes = [race(app, n + 2 + k) for k in range(args.races)]
        first, again = replay(app, n + 1)
        rows.append(
            {
                "app": app.name,
                "how": app.how,
                "cycles_per_s_median": statistics.median(out["rate"]),
                "cycles_per_s_rounds": out["rate"],
                "request_p50_ms": pct(out["req"], 0.5),
                "request_p99_ms": pct(out["req"], 0.99),
                "verify_p50_ms": pct(out["ver"], 0.5),
                "verify_p99_ms": pct(out["ver"], 0.99),
                "right_code_refused": out["refused"],
                "sql_request": sql_req["sql"],
                "sql_verify": sql_ver["sql"],
                "commits_request": sql_req["commits"],
                "commits_verify": sql_ver["commits"],
                "redis_request": sql_req["redis"],
                "redis_verify": sql_ver["redis"],
                "sql_cycle_accepted": sql_ok,
                "racers_accepted_of_16": [accepted for accepted, _ in probes],
                "racers_errored": sum(errored for _, errored in probes),
                "replay_first_accepted": first,
                "replay_accepted": again,
            }
        )
    info["loadavg_end"] = os.getloadavg()
    report = {
        "machine": info,
        "cycles": n,
        "rounds": args.rounds,
        "races": args.races,
        "results": rows,
    }
    Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    print(render(report))


def racers(counts: list[int]) -> str:
    low, high = min(counts), max(counts)
    spread = str(low) if low == high else f"{low}–{high}"
    return f"{spread} ({', '.join(map(str, counts))})" if len(counts) > 1 else spread


def render(report: dict[str, Any]) -> str:
    m = report["machine"]
    lines = [
        f"{m['date']}, {m['nproc']} CPUs, load {m['loadavg_start'][0]:.2f} -> "
        f"{m['loadavg_end'][0]:.2f}, Python {m['python']}, PostgreSQL {m['postgresql']}, "
        f"Redis {m['redis']}; N = {report['cycles']} cycles per app per round, "
        f"{report['rounds']} rounds, order rotated each round; "
        f"{report['races']} racer probes per app",
        "",
        "| app | driven through | cycles/s (median of rounds) | request p50 / p99 ms "
        "| verify p50 / p99 ms | SQL request / verify | commits request / verify "
        "| Redis round trips request / verify | right-code racers accepted of 16 "
        "| replay accepted |",
        "|---|---|---:|---:|---:|---|---|---|---|---|",
    ]
    for row in report["results"]:
        refused = (
            f" ({row['right_code_refused']} right codes refused)"
            if row["right_code_refused"]
            else ""
        )
        lines.append(
            f"| {row['app']} | {row['how']} | {row['cycles_per_s_median']:.0f}{refused} "
            f"| {row['request_p50_ms']:.1f} / {row['request_p99_ms']:.1f} "
            f"| {row['verify_p50_ms']:.1f} / {row['verify_p99_ms']:.1f} "
            f"| {row['sql_request']} / {row['sql_verify']} "
            f"| {row['commits_request']} / {row['commits_verify']} "
            f"| {row['redis_request']} / {row['redis_verify']} "
            f"| {racers(row['racers_accepted_of_16'])}"
            f"{f' ({e} errored)' if (e := row['racers_errored']) else ''} "
            f"| {'yes' if row['replay_accepted'] else 'no'}"
            f"{'' if row['replay_first_accepted'] else ' (first verify refused)'} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
