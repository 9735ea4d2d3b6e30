"""SEND_VIA_TASKS end to end: a real task backend and a real worker process.

The test process is the web site: its API requests a challenge, which is
written ``queued`` and enqueued on django-tasks-db's database backend. A
separate ``manage.py db_worker`` process (tests/worker_settings.py) picks the
task up from the same PostgreSQL database, makes the code and sends it through
the GoSMS provider — to a fake GoSMS on this process's loopback server, so the
SMS the worker sent arrives here and the test verifies the code it carried.

PostgreSQL only: the SQLite test database lives in this process's memory, where
no other process can see it. tests/run.sh runs this in its PostgreSQL pass.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from django.db import connection

from django_sms2fa import tasks
from django_sms2fa.models import Challenge, ChallengeStatus, Message

from .api_support import api_post

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parent.parent
PHONE = "+46701234567"
# JWT-shaped, as the GoSMS panel issues them.
TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJhcGkiOiJnb3NtcyJ9.d29ya2VyLXRlc3QtdG9rZW4"
MSG_ID = "6658053caa16b5ca5c5d72fc"
WAIT = 60.0  # seconds; the worker starts Django, then polls every 0.1 s
CODE = re.compile(r"\b([0-9]{6})\b")


def wait_for(what: str, condition: Callable[[], Any], timeout: float = WAIT) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


@pytest.fixture
def on_postgres() -> None:
    if connection.vendor != "postgresql":
        pytest.skip(
            "the worker process needs a database it can share; the SQLite test database "
            "is in memory (run with SMS2FA_TEST_DB=postgres)"
        )


@pytest.fixture
def site(on_postgres, settings, sms2fa_settings, loopback) -> dict[str, Any]:
    """This process as the web site: tasks go to the database backend, SMS to fake GoSMS."""
    loopback.always(200, {"id": MSG_ID})
    providers = {
        "default": {
            "BACKEND": "django_sms2fa.providers.gosms.GoSMSProvider",
            "OPTIONS": {"token": TOKEN, "base_url": loopback.url},
        }
    }
    settings.TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}
    sms2fa_settings(SEND_VIA_TASKS=True, PROVIDERS=providers)
    return providers


@pytest.fixture
def worker(site) -> Iterator[Callable[[], tuple[subprocess.Popen, Path]]]:
    """Start ``db_worker`` on the test database on demand; always killed afterwards."""
    started: list[tuple[subprocess.Popen, Any]] = []
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.worker_settings",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        "SMS2FA_TEST_DB": "postgres",
        "SMS2FA_PG_NAME": connection.settings_dict["NAME"],  # the test database
        "SMS2FA_WORKER_PROVIDERS": json.dumps(site),
    }

    def start() -> tuple[subprocess.Popen, Path]:
        log = tempfile.NamedTemporaryFile(prefix="sms2fa-worker-", suffix=".log", delete=False)
        process = subprocess.Popen(
            [sys.executable, "-m", "django", "db_worker", "--interval", "0.1"]
            + ["--no-startup-delay", "--worker-id", "sms2fa-test-worker"],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        started.append((process, log))
        return process, Path(log.name)

    try:
        yield start
    finally:
        for process, log in started:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
            log.close()
            Path(log.name).unlink(missing_ok=True)


def sms_sent(loopback) -> list[dict[str, Any]]:
    return [r.json() for r in loopback.requests if r.path.endswith("/sms/send")]


def task_rows() -> list[Any]:
    from django_tasks_db.models import DBTaskResult

    return list(DBTaskResult.objects.order_by("enqueued_at"))


def test_the_worker_process_sends_the_code_the_web_process_verifies(
    worker, loopback, client
) -> None:
    # The web process: the answer comes at once, and nothing was sent.
    started = time.monotonic()
    answer = api_post(client, "challenges/", {"phone": PHONE, "purpose": "verify_phone"})
    request_seconds = time.monotonic() - started
    assert answer.status_code == 202, answer.content
    body = answer.json()
    assert body["status"] == "queued"
    challenge_id = body["id"]
    assert Challenge.objects.get(pk=challenge_id).status == ChallengeStatus.QUEUED
    assert loopback.requests == []
    verify = f"challenges/{challenge_id}/verify/"
    assert api_post(client, verify, {"code": "000000"}).json()["error"]["code"] == (
        "challenge_queued"
    )
    # A broker that delivers the same task twice (or a retry after a crash).
    (queued,) = task_rows()
    args = queued.args_kwargs["args"]
    tasks.send_challenge_sms.enqueue(*args)

    process, log = worker()
    sent = wait_for("the worker's SMS", lambda: sms_sent(loopback))
    wait_for(
        "both tasks to finish",
        lambda: all(row.status in ("SUCCESSFUL", "FAILED") for row in task_rows()),
    )
    assert process.poll() is None, log.read_text()
    rows = task_rows()
    assert [row.status for row in rows] == ["SUCCESSFUL", "SUCCESSFUL"], log.read_text()
    assert sorted(row.return_value for row in rows) == ["sent", "skipped"]
    assert len(sms_sent(loopback)) == 1  # the duplicate sent nothing

    # The SMS as GoSMS received it from the worker.
    (sms,) = sent
    assert sms["phone_number"] == PHONE.lstrip("+")
    code = CODE.search(sms["message"]).group(1)
    challenge = Challenge.objects.get(pk=challenge_id)
    assert challenge.status == ChallengeStatus.PENDING
    assert Message.objects.get(challenge=challenge).provider_message_id == MSG_ID

    # Back in the web process: the code the worker made verifies.
    answer = api_post(client, verify, {"code": code})
    assert answer.status_code == 200, answer.content
    assert Challenge.objects.get(pk=challenge_id).status == ChallengeStatus.VERIFIED

    # The code is in no task argument, no task result and no worker log line.
    stored = json.dumps([[row.args_kwargs, row.return_value] for row in rows])
    assert code not in stored
    assert code not in log.read_text()
    print(f"\nrequest answered in {request_seconds * 1000:.0f} ms; worker sent 1 SMS for 2 runs")


def test_a_resend_while_the_worker_runs_is_sent_by_it(worker, loopback, client) -> None:
    process, log = worker()
    answer = api_post(client, "challenges/", {"phone": PHONE, "purpose": "verify_phone"})
    challenge_id = answer.json()["id"]
    wait_for("the first SMS", lambda: len(sms_sent(loopback)) == 1)
    first = CODE.search(sms_sent(loopback)[0]["message"]).group(1)
    wait_for(
        "the first task to finish",
        lambda: [row.status for row in task_rows()] == ["SUCCESSFUL"],
    )

    answer = api_post(client, f"challenges/{challenge_id}/resend/")
    assert answer.status_code == 202, answer.content
    assert answer.json()["status"] == "queued"
    wait_for("the second SMS", lambda: len(sms_sent(loopback)) == 2)
    second = CODE.search(sms_sent(loopback)[1]["message"]).group(1)
    assert process.poll() is None, log.read_text()

    verify = f"challenges/{challenge_id}/verify/"
    wait_for(
        "the resent challenge to be pending",
        lambda: Challenge.objects.get(pk=challenge_id).status == ChallengeStatus.PENDING,
    )
    if first != second:  # one chance in a million that the new code is the old one
        assert api_post(client, verify, {"code": first}).status_code == 400
    assert api_post(client, verify, {"code": second}).status_code == 200
