"""The SQL budget of each step (bench/README.md): request <= 4 statements, verify <= 3.

Counted through the flows (the library's own cost) and through the REST API,
leaving out session and auth bookkeeping: statements whose main table is
``django_session`` or ``auth_user`` (the user a view logs in, ``last_login``),
and the savepoints Django puts around creating a session. Every statement of
the budget is explained in bench/README.md. On failure the test prints the
statements it counted.

Commits (docs/performance.md: at most 2 per request + verify cycle on the success path)
are counted by ``CommitCounter`` at the end of this file, on a real
autocommit connection (``django_db(transaction=True)``: inside the test
wrapper's transaction nothing would ever commit). A *commit* is one
transaction the database makes durable, whichever way it ends:

* an explicit commit: Django's ``connection.commit()`` (the end of an outermost
  ``transaction.atomic()`` block, or ``transaction.commit()``), counted by
  wrapping the connection's ``_commit``, the one call that reaches the
  driver's ``commit()`` (``COMMIT`` on PostgreSQL, sqlite3's ``commit()``);
* an implicit one: each ``INSERT``, ``UPDATE`` or ``DELETE`` run in autocommit
  mode outside any atomic block (the database commits it on its own; Django
  sees no commit call), counted by ``connection.execute_wrapper``.

Reads in autocommit mode are not counted: a read-only transaction writes no
commit record (no WAL flush on PostgreSQL, no journal on SQLite). A commit
whose writes all touch ``django_session``/``auth_user`` is bookkeeping, as for
the statements; the budget holds both the app's commits and all of them.
"""

from __future__ import annotations

import pytest

from django.db import connection
from django.test.utils import CaptureQueriesContext

from bench.common import BOOKKEEPING_TABLES, is_bookkeeping, main_table
from django_sms2fa import flows, login_flows
from django_sms2fa.exceptions import IncorrectCode
from django_sms2fa.models import PhoneDevice, Purpose

from .api_support import api_post

pytestmark = pytest.mark.django_db

REQUEST_BUDGET = 4
VERIFY_BUDGET = 3
# Resend has no budget of its own; it is held to request's.
RESEND_BUDGET = REQUEST_BUDGET

PHONE = "+46701234567"


class Counted:
    """The statements of one step, split into the budgeted ones and bookkeeping."""

    def __init__(self) -> None:
        self._capture = CaptureQueriesContext(connection)

    def __enter__(self) -> Counted:
        self._capture.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._capture.__exit__(*exc)

    @property
    def all(self) -> list[str]:
        return [q["sql"] for q in self._capture.captured_queries]

    @property
    def budgeted(self) -> list[str]:
        return [sql for sql in self.all if not is_bookkeeping(sql)]

    def shape(self) -> list[str]:
        """``["SELECT django_sms2fa_challenge", ...]`` for readable assertions."""
        return [f"{sql.split()[0]} {main_table(sql)}" for sql in self.budgeted]

    def report(self, step: str, budget: int) -> str:
        lines = [f"{step}: {len(self.budgeted)} statements counted (budget {budget}):"]
        lines += [f"  {i}. {sql[:300]}" for i, sql in enumerate(self.budgeted, 1)]
        skipped = [sql for sql in self.all if is_bookkeeping(sql)]
        lines += [f"  (bookkeeping, not counted) {sql[:120]}" for sql in skipped]
        return "\n".join(lines)


def assert_within(counted: Counted, step: str, budget: int) -> None:
    assert len(counted.budgeted) <= budget, counted.report(step, budget)


@pytest.fixture
def device(user):
    return PhoneDevice.objects.create(user=user, number=PHONE, name="phone", confirmed=True)


# ----------------------------------------------------------------- the rule


def test_bookkeeping_is_only_session_and_auth():
    assert is_bookkeeping('SELECT "django_session"."session_key" FROM "django_session" WHERE 1')
    assert is_bookkeeping('UPDATE "auth_user" SET "last_login" = 1 WHERE "id" = 1')
    assert is_bookkeeping('SAVEPOINT "s1_x1"')
    # A challenge read that joins the user is the app's, not bookkeeping.
    joined = (
        'SELECT "django_sms2fa_challenge"."id", "auth_user"."id" FROM "django_sms2fa_challenge" '
        'LEFT OUTER JOIN "auth_user" ON 1'
    )
    assert not is_bookkeeping(joined)
    assert not is_bookkeeping('INSERT INTO "django_sms2fa_message" ("phone") VALUES (1)')


# ------------------------------------------------------------------ flows


def test_request_through_flows(outbox, user, device):
    with Counted() as anonymous:
        flows.request_challenge(phone=PHONE, purpose=Purpose.VERIFY_PHONE)
    with Counted() as login:
        flows.request_challenge(phone=PHONE, purpose=Purpose.LOGIN, user=user, device=device)
    for step, counted in (("request (anonymous)", anonymous), ("request (login)", login)):
        assert_within(counted, step, REQUEST_BUDGET)
        # The floor itself: the challenge row and the message row, nothing read.
        assert counted.shape() == [
            "INSERT django_sms2fa_challenge",
            "INSERT django_sms2fa_message",
        ], counted.report(step, REQUEST_BUDGET)


def test_verify_through_flows(outbox):
    challenge = flows.request_challenge(phone=PHONE, purpose=Purpose.VERIFY_PHONE)
    with Counted() as counted:
        flows.verify_challenge(challenge.pk, outbox[-1].code)
    assert_within(counted, "verify", VERIFY_BUDGET)
    assert counted.shape() == [
        "SELECT django_sms2fa_challenge",
        "UPDATE django_sms2fa_challenge",
    ], counted.report("verify", VERIFY_BUDGET)


def test_second_factor_verify_through_flows(outbox, user, device):
    """Password-then-code: the challenge, its device's last use, and nothing more."""
    challenge = login_flows.start_second_factor(user)
    with Counted() as counted:
        proved = login_flows.finish_second_factor(challenge.pk, outbox[-1].code, user=user)
    assert proved == device
    assert_within(counted, "verify (second factor)", VERIFY_BUDGET)
    assert counted.shape() == [
        "SELECT django_sms2fa_challenge",
        "UPDATE django_sms2fa_challenge",
        "UPDATE django_sms2fa_phonedevice",
    ], counted.report("verify (second factor)", VERIFY_BUDGET)


def test_the_device_last_use_is_written_once_a_minute(outbox, user, device):
    """django-otp's ``last_used_at`` moves only when a minute has passed since
    it last did: a login right after another writes only the challenge."""
    from datetime import timedelta

    import time_machine

    from django.utils import timezone

    start = timezone.now()
    shapes = []
    for offset in (0, 30, 61):  # seconds after the first login
        with time_machine.travel(start + timedelta(seconds=offset), tick=False):
            challenge = login_flows.start_second_factor(user)
            with Counted() as counted:
                login_flows.finish_second_factor(challenge.pk, outbox[-1].code, user=user)
            shapes.append(counted.shape())
            device.refresh_from_db()
            assert device.last_used_at == start + timedelta(seconds=0 if offset == 30 else offset)
    touched = [
        "SELECT django_sms2fa_challenge",
        "UPDATE django_sms2fa_challenge",
        "UPDATE django_sms2fa_phonedevice",
    ]
    assert shapes == [touched, touched[:2], touched]


def test_passwordless_verify_through_flows(outbox, user, device):
    challenge = login_flows.start_passwordless(PHONE)
    with Counted() as counted:
        found, proved = login_flows.finish_passwordless(challenge.pk, outbox[-1].code)
    assert (found, proved) == (user, device)
    assert_within(counted, "verify (passwordless)", VERIFY_BUDGET)


def test_wrong_code_through_flows(outbox):
    """A wrong code costs more (it is counted twice: admitted, then judged wrong)."""
    challenge = flows.request_challenge(phone=PHONE, purpose=Purpose.VERIFY_PHONE)
    wrong = "".join(str((int(d) + 1) % 10) for d in outbox[-1].code)
    with Counted() as counted, pytest.raises(IncorrectCode):
        flows.verify_challenge(challenge.pk, wrong)
    # read, admit the guess, count it wrong, close-if-exhausted (a no-op here)
    assert len(counted.budgeted) <= 4, counted.report("verify (wrong code)", 4)


def test_resend_through_flows(outbox):
    challenge = flows.request_challenge(phone=PHONE, purpose=Purpose.VERIFY_PHONE)
    with Counted() as counted:
        flows.resend_challenge(challenge.pk)
    assert_within(counted, "resend", RESEND_BUDGET)


# -------------------------------------------------------------------- API


def test_request_verify_and_resend_through_the_api(client, outbox):
    with Counted() as request:
        answer = api_post(client, "challenges/", {"phone": PHONE, "purpose": "verify_phone"})
    assert answer.status_code == 202
    challenge_id = answer.json()["id"]
    with Counted() as resend:
        answer = api_post(client, f"challenges/{challenge_id}/resend/")
    assert answer.status_code == 202
    with Counted() as verify:
        answer = api_post(client, f"challenges/{challenge_id}/verify/", {"code": outbox[-1].code})
    assert answer.status_code == 200, answer.content
    assert_within(request, "API request", REQUEST_BUDGET)
    assert_within(resend, "API resend", RESEND_BUDGET)
    assert_within(verify, "API verify", VERIFY_BUDGET)
    # One read of the challenge (docs/performance.md): the view checks who owns it on the
    # row the flow reads, so verify is the flow's own two statements and
    # resend its three.
    assert [q.split()[0] for q in verify.budgeted] == ["SELECT", "UPDATE"], verify.report(
        "API verify", 2
    )
    assert [q.split()[0] for q in resend.budgeted] == ["SELECT", "UPDATE", "INSERT"], resend.report(
        "API resend", 3
    )


def test_password_then_code_through_the_api(client, outbox, user, device):
    with Counted() as request:
        answer = api_post(client, "login/", {"username": "alice", "password": "correct horse"})
    assert answer.status_code == 200 and answer.json()["mfa_required"]
    challenge_id = answer.json()["challenge"]["id"]
    with Counted() as verify:
        answer = api_post(
            client, "login/verify/", {"challenge": challenge_id, "code": outbox[-1].code}
        )
    assert answer.status_code == 200, answer.content
    assert_within(request, "API login", REQUEST_BUDGET)
    assert_within(verify, "API login/verify", VERIFY_BUDGET)


# ---------------------------------------------------------------- commits

#: Step -> (the app's commits today, all commits today, session and auth
#: bookkeeping included), the same on SQLite and PostgreSQL. Lower them when a
#: change removes a commit; a change that adds one fails. The module docstring
#: says what a commit is.
COMMITS_TODAY: dict[str, tuple[int, int]] = {
    # The provider is called first; the challenge and its message then go in
    # one transaction.
    "flows request": (1, 1),
    # The guarded UPDATE, and the device's last use (when due) in the same
    # transaction.
    "flows verify": (1, 1),
    "API challenges/ request": (1, 2),
    "API challenges/ verify": (1, 1),
    "API login/ request": (1, 2),
    "API login/ verify": (1, 5),
    "passwordless request": (1, 1),
    "passwordless verify": (1, 1),
}
#: The goal (docs/performance.md): at most 2 of the app's commits per request + verify cycle.
COMMITS_GOAL_PER_CYCLE = 2
WRITES = ("INSERT", "UPDATE", "DELETE")


class CommitCounter:
    """The transactions committed on ``connection`` while ``recording``.

    Each commit is kept as the list of the main tables its writes touched
    (empty for a transaction that wrote nothing).
    """

    def __init__(self) -> None:
        self.commits: list[list[str]] = []
        self.statements: list[str] = []
        self._pending: list[str] = []  # tables written in the open transaction
        self.recording = False

    def install(self, monkeypatch: pytest.MonkeyPatch, wrapper) -> None:
        counter = self
        original = wrapper._commit

        def counting_commit():
            result = original()
            if counter.recording:
                counter.commits.append(counter._pending)
            counter._pending = []
            return result

        monkeypatch.setattr(wrapper, "_commit", counting_commit)
        self._wrapper = wrapper

    def __call__(self, execute, sql, params, many, context):
        """The execute wrapper: sees every statement with the transaction state."""
        if self.recording:
            self.statements.append(sql)
            if sql.lstrip().upper().startswith(WRITES):
                conn = context["connection"]
                if conn.get_autocommit() and not conn.in_atomic_block:
                    self.commits.append([main_table(sql)])
                else:
                    self._pending.append(main_table(sql))
        return execute(sql, params, many, context)

    def measure(self, step: str, into: dict[str, CommitCounter.Step]):
        return _Recording(self, step, into)

    class Step:
        def __init__(self, commits: list[list[str]], statements: list[str]) -> None:
            self.commits = commits
            self.statements = statements

        @property
        def app(self) -> list[list[str]]:
            return [c for c in self.commits if not c or set(c) - BOOKKEEPING_TABLES]

        def describe(self) -> str:
            return "; ".join("+".join(c) or "(no writes)" for c in self.commits) or "none"


class _Recording:
    def __init__(self, counter: CommitCounter, step: str, into: dict) -> None:
        self.counter, self.step, self.into = counter, step, into

    def __enter__(self) -> None:
        self.counter.commits, self.counter.statements = [], []
        self.counter.recording = True
        self._hook = self.counter._wrapper.execute_wrapper(self.counter)
        self._hook.__enter__()

    def __exit__(self, *exc: object) -> None:
        self._hook.__exit__(*exc)
        self.counter.recording = False
        self.into[self.step] = CommitCounter.Step(self.counter.commits, self.counter.statements)


@pytest.fixture
def commit_device(django_user_model):
    from .budget_support import DEVICE_PHONE, PASSWORD, USERNAME

    user = django_user_model.objects.create_user(username=USERNAME, password=PASSWORD)
    device = PhoneDevice.objects.create(
        user=user, number=DEVICE_PHONE, name="phone", confirmed=True
    )
    return user, device


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("cycle", ["flows", "api_verify_phone", "api_login", "passwordless"])
def test_commits_per_step(cycle, send_limits, settings, monkeypatch, client, outbox, commit_device):
    from django.db import connections

    from .budget_support import CYCLES, all_security_defaults

    all_security_defaults(settings)
    wrapper = connections["default"]
    assert wrapper.get_autocommit() and not wrapper.in_atomic_block  # real commits
    user, device = commit_device
    counter = CommitCounter()
    counter.install(monkeypatch, wrapper)
    measured: dict[str, CommitCounter.Step] = {}
    CYCLES[cycle](
        lambda step: counter.measure(step, measured),
        outbox=outbox,
        user=user,
        device=device,
        client=client,
    )
    failures = []
    for step, seen in measured.items():
        budgeted = [sql for sql in seen.statements if not is_bookkeeping(sql)]
        print(
            f"\n[budget] {step}: {len(seen.app)} commits, {len(seen.commits)} in all with "
            f"bookkeeping ({seen.describe()}); {len(budgeted)} statements "
            f"(+{len(seen.statements) - len(budgeted)} bookkeeping) on {connection.vendor}"
        )
        if (len(seen.app), len(seen.commits)) != COMMITS_TODAY[step]:
            failures.append(
                f"{step}: {len(seen.app)} commits ({len(seen.commits)} with bookkeeping), the "
                f"budget holds {COMMITS_TODAY[step]}: {seen.describe()}"
            )
    app_cycle = sum(len(seen.app) for seen in measured.values())
    print(
        f"\n[budget] {cycle} cycle: {app_cycle} commits "
        f"(goal <= {COMMITS_GOAL_PER_CYCLE} per request + verify)"
    )
    assert not failures, "\n".join(failures)


@pytest.mark.django_db(transaction=True)
def test_the_commit_counter_sees_both_kinds(monkeypatch, user):
    """The control: an atomic block of two writes is one commit; two writes in
    autocommit are two; a read is none."""
    from django.contrib.auth import get_user_model
    from django.db import connections, transaction

    wrapper = connections["default"]
    counter = CommitCounter()
    counter.install(monkeypatch, wrapper)
    measured: dict[str, CommitCounter.Step] = {}
    with counter.measure("atomic", measured), transaction.atomic():
        PhoneDevice.objects.create(user=user, number="+46700000001", name="a")
        PhoneDevice.objects.create(user=user, number="+46700000002", name="b")
    with counter.measure("autocommit", measured):
        PhoneDevice.objects.filter(name="a").update(name="c")
        PhoneDevice.objects.filter(name="b").delete()
    with counter.measure("read", measured):
        list(PhoneDevice.objects.all())
    with counter.measure("bookkeeping", measured):
        get_user_model().objects.filter(pk=user.pk).update(first_name="A")
    assert [len(measured[k].commits) for k in measured] == [1, 2, 0, 1]
    assert measured["atomic"].commits == [["django_sms2fa_phonedevice"] * 2]
    assert measured["bookkeeping"].app == []
