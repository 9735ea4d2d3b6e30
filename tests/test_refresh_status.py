"""``manage.py sms2fa_refresh_status`` and ``delivery.refresh_pending``: which
messages are polled, what changes, failures that do not stop the run, secrets
kept out of the output; GoSMS faked with ``responses``, telefon-ip on a real
loopback HTTP server."""

from __future__ import annotations

import io
import json
from datetime import timedelta

import pytest
import responses

from django.core.management import CommandError, call_command
from django.utils import timezone

from django_sms2fa import delivery, signals
from django_sms2fa.models import Message
from django_sms2fa.types import DELIVERED, FAILED, QUEUED, SENT, UNKNOWN

pytestmark = pytest.mark.django_db

GOSMS_TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJhcGkiOiJnb3NtcyJ9.c2lnbmF0dXJlLVNFQ1JFVC0wMTIzNDU2Nzg5"
TIP_TOKEN = "telefonip-token-SECRET-7d1e"
GOSMS_API = "https://api.gosms.ru/v1"
TIP_API = "https://api.telefon-ip.ru/api/v1/authcalls"


def providers(tip_url: str | None = None) -> dict:
    tip_options = {"token": TIP_TOKEN}
    if tip_url:
        tip_options["base_url"] = tip_url
    return {
        "default": {"BACKEND": "django_sms2fa.providers.locmem.LocmemProvider"},
        "gosms": {
            "BACKEND": "django_sms2fa.providers.gosms.GoSMSProvider",
            "OPTIONS": {"token": GOSMS_TOKEN},
        },
        "tip": {
            "BACKEND": "django_sms2fa.providers.telefonip.TelefonIPProvider",
            "OPTIONS": tip_options,
        },
        "ip1": {
            "BACKEND": "django_sms2fa.providers.ip1.IP1Provider",
            "OPTIONS": {"account_id": "ip1-12345", "api_key": "ip1-api-key-SECRET"},
        },
    }


@pytest.fixture(autouse=True)
def refresh_settings(sms2fa_settings):
    sms2fa_settings(PROVIDERS=providers())


def message(alias: str, message_id: str, status: str = SENT, age: timedelta = timedelta(minutes=1)):
    created = timezone.now() - age
    return Message.objects.create(
        phone="+79991234567",
        provider=alias,
        provider_message_id=message_id,
        status=status,
        created_at=created,
        sent_at=created,
    )


def gosms_answer(status: int):
    def callback(request):
        message_id = json.loads(request.body)["id"]
        return 200, {}, json.dumps({"id": message_id, "status": status, "message": "code 123456"})

    return callback


def tip_body(message_id: str, status: int = 1, info: str = "Delivered") -> dict:
    return {
        "success": True,
        "error": "",
        "data": {"id": int(message_id), "status": status, "status_info": info, "price": 1.5},
    }


def run(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("sms2fa_refresh_status", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


# ------------------------------------------------------------------ selection


@responses.activate
def test_polls_pending_messages_at_providers_with_a_status_api(changes):
    g_queued = message("gosms", "6658053caa16b5ca5c5d0001", QUEUED)
    g_unknown = message("gosms", "6658053caa16b5ca5c5d0002", UNKNOWN)
    t_sent = message("tip", "168", SENT)
    # Not polled: final, no id, no status API, locmem, too old.
    done = message("gosms", "6658053caa16b5ca5c5d0003", DELIVERED)
    no_id = message("gosms", "", QUEUED)
    ip1 = message("ip1", "42", SENT)
    local = message("default", "locmem-1", SENT)
    old = message("gosms", "6658053caa16b5ca5c5d0004", SENT, age=timedelta(days=4))
    responses.add_callback(responses.POST, f"{GOSMS_API}/sms/get", callback=gosms_answer(4))
    responses.get(f"{TIP_API}/{TIP_TOKEN}/get_status/168/", json=tip_body("168"))

    out, err = run()

    asked = sorted(json.loads(c.request.body)["id"] for c in responses.calls if c.request.body)
    assert asked == [g_queued.provider_message_id, g_unknown.provider_message_id]
    assert len(responses.calls) == 3
    statuses = dict(Message.objects.values_list("pk", "status"))
    assert statuses[g_queued.pk] == statuses[g_unknown.pk] == statuses[t_sent.pk] == DELIVERED
    assert (statuses[done.pk], statuses[no_id.pk], statuses[ip1.pk]) == (DELIVERED, QUEUED, SENT)
    assert (statuses[local.pk], statuses[old.pk]) == (SENT, SENT)
    assert sorted(changes) == sorted(
        [
            (g_queued.pk, QUEUED, DELIVERED),
            (g_unknown.pk, UNKNOWN, DELIVERED),
            (t_sent.pk, SENT, DELIVERED),
        ]
    )
    assert out.strip() == (
        "Polled gosms, tip: 3 checked, 3 changed (delivered 3), 0 unchanged, 0 failed."
    )
    assert err == ""


@responses.activate
def test_a_second_run_changes_nothing(changes):
    message("gosms", "6658053caa16b5ca5c5d0001", SENT)
    responses.add_callback(
        responses.POST, f"{GOSMS_API}/sms/get", callback=gosms_answer(2)
    )  # still "sent"
    out, _ = run()
    assert "1 checked, 0 changed, 1 unchanged" in out
    assert changes == []


@responses.activate
def test_provider_max_age_min_age_and_limit_newest_first():
    for minutes in (1, 5, 30, 90):
        message("gosms", f"6658053caa16b5ca5c5d{minutes:04d}", QUEUED, timedelta(minutes=minutes))
    message("tip", "168", SENT)
    responses.add_callback(responses.POST, f"{GOSMS_API}/sms/get", callback=gosms_answer(4))

    run("--provider", "gosms", "--max-age", "1h", "--min-age", "2m", "--limit", "1")

    (call,) = responses.calls
    assert json.loads(call.request.body)["id"] == "6658053caa16b5ca5c5d0005"  # newest in range
    assert Message.objects.get(provider="tip").status == SENT


def test_summary_values_from_the_flow():
    assert delivery.refresh_pending(limit=0).checked == 0
    summary = delivery.refresh_pending()
    assert summary.aliases == ["gosms", "tip"]
    assert (summary.checked, summary.changed, summary.errors) == (0, 0, 0)


# ------------------------------------------------------------------- failures


@responses.activate
def test_one_failing_message_does_not_stop_the_run(changes):
    bad = message("gosms", "6658053caa16b5ca5c5d0009", QUEUED, timedelta(minutes=1))
    good = message("gosms", "6658053caa16b5ca5c5d0008", QUEUED, timedelta(minutes=2))

    def answer(request):
        message_id = json.loads(request.body)["id"]
        if message_id == bad.provider_message_id:
            body = {"errors": {"code": 1008, "message": "Нет такого SMS", "hash": "ab12"}}
            return 404, {}, json.dumps(body)
        return 200, {}, json.dumps({"id": message_id, "status": 4})

    responses.add_callback(responses.POST, f"{GOSMS_API}/sms/get", callback=answer)
    out, err = run("--provider", "gosms")
    assert "1 checked, 1 changed (delivered 1), 0 unchanged, 1 failed" in out
    assert "look-up errors gosms: 1008: 1" in err
    assert changes == [(good.pk, QUEUED, DELIVERED)]
    bad.refresh_from_db()
    assert bad.status == QUEUED


@responses.activate
def test_bad_credentials_give_up_that_provider_only(changes):
    for n in range(3):
        message("gosms", f"6658053caa16b5ca5c5d000{n}", QUEUED)
    message("tip", "168", SENT, timedelta(minutes=5))
    responses.post(f"{GOSMS_API}/sms/get", status=401, json={"errors": {"code": 0}})
    responses.get(f"{TIP_API}/{TIP_TOKEN}/get_status/168/", json=tip_body("168", 1, "delivered"))
    out, err = run()
    gosms_calls = [c for c in responses.calls if "gosms" in c.request.url]
    assert len(gosms_calls) == 1  # the other two were not even tried
    assert "1 checked, 1 changed (delivered 1), 0 unchanged, 1 failed, 2 skipped" in out
    assert "provider gosms given up for this run: auth" in err
    assert GOSMS_TOKEN not in out + err
    assert TIP_TOKEN not in out + err
    assert len(changes) == 1


@responses.activate
def test_throttling_gives_up_the_provider_for_this_run():
    for n in range(5):
        message("gosms", f"6658053caa16b5ca5c5d000{n}", QUEUED)
    responses.post(f"{GOSMS_API}/sms/get", status=429, json={"errors": {"code": 0}})
    out, err = run("--provider", "gosms")
    assert len(responses.calls) == 1
    assert "0 checked, 0 changed, 0 unchanged, 1 failed, 4 skipped" in out
    assert "given up for this run: rate_limited" in err


@responses.activate
def test_repeated_outages_give_up_after_three():
    for n in range(6):
        message("gosms", f"6658053caa16b5ca5c5d000{n}", QUEUED)
    responses.post(f"{GOSMS_API}/sms/get", status=500, body="oops")
    out, err = run("--provider", "gosms")
    assert len(responses.calls) == 3
    assert "3 failed, 3 skipped" in out
    assert "given up for this run: unavailable" in err


@responses.activate
def test_a_broken_provider_configuration_does_not_stop_the_others(sms2fa_settings):
    broken = providers()
    broken["gosms"]["OPTIONS"] = {"token": GOSMS_TOKEN, "device_id": "not-an-object-id"}
    sms2fa_settings(PROVIDERS=broken)
    message("tip", "168", SENT)
    responses.get(f"{TIP_API}/{TIP_TOKEN}/get_status/168/", json=tip_body("168", 0, "error"))
    out, err = run()
    assert "Polled tip: 1 checked, 1 changed (failed 1)" in out
    assert "provider gosms given up for this run: configuration_error" in err
    assert Message.objects.get().status == FAILED


@responses.activate
def test_a_failing_receiver_does_not_stop_the_run():
    message("gosms", "6658053caa16b5ca5c5d0001", QUEUED)
    message("gosms", "6658053caa16b5ca5c5d0002", QUEUED)
    responses.add_callback(responses.POST, f"{GOSMS_API}/sms/get", callback=gosms_answer(4))

    def broken(**kwargs):
        raise RuntimeError("receiver bug")

    signals.message_status_changed.connect(broken)
    try:
        out, err = run()
    finally:
        signals.message_status_changed.disconnect(broken)
    assert "2 changed" in out
    assert "2 message_status_changed receiver error(s)" in err
    assert set(Message.objects.values_list("status", flat=True)) == {DELIVERED}


# -------------------------------------------------------------------- options


@pytest.mark.parametrize(
    ("args", "text"),
    [
        (["--provider", "nope"], "No SMS provider 'nope'"),
        (["--provider", "ip1"], "has no status look-up"),
        (["--max-age", "three days"], "not a duration"),
        (["--limit", "-1"], "--limit must be 0 or more"),
        (["--min-age", "2d", "--max-age", "1d"], "--min-age must not be more"),
    ],
)
def test_bad_options_are_command_errors(args, text):
    with pytest.raises(CommandError, match=text):
        run(*args)


@responses.activate
def test_verbose_output_lists_each_message():
    first = message("gosms", "6658053caa16b5ca5c5d0001", QUEUED, timedelta(minutes=1))
    second = message("gosms", "6658053caa16b5ca5c5d0002", SENT, timedelta(minutes=2))
    responses.add_callback(responses.POST, f"{GOSMS_API}/sms/get", callback=gosms_answer(2))
    out, _ = run("--provider", "gosms", "-v", "2")
    assert f"message {first.pk} via gosms (6658053caa16b5ca5c5d0001): queued -> sent" in out
    assert f"message {second.pk} via gosms (6658053caa16b5ca5c5d0002): still sent" in out


def test_nothing_to_poll(sms2fa_settings):
    sms2fa_settings(PROVIDERS={"default": providers()["default"]})
    out, _ = run()
    assert "nothing to do" in out


# ------------------------------------------------------------- real HTTP server


def test_telefonip_status_through_real_http(sms2fa_settings, loopback, changes):
    """The real requests stack against a loopback server playing telefon-ip;
    its token sits in the URL path, and must not reach the command's output."""
    sms2fa_settings(PROVIDERS=providers(tip_url=loopback.url))
    row = message("tip", "168", SENT)
    unknown = message("tip", "169", SENT, timedelta(minutes=2))

    def answer(recorded):
        from tests.http_support import Answer

        if recorded.path.endswith("/get_status/168/"):
            return Answer(200, tip_body("168", 1, "Доставлено"))
        return Answer(400, {"success": False, "error": "id record not found", "data": {}})

    loopback.handler = answer
    out, err = run("--provider", "tip", "-v", "2")
    paths = [r.path for r in loopback.requests]
    assert paths == [
        f"/api/v1/authcalls/{TIP_TOKEN}/get_status/168/",
        f"/api/v1/authcalls/{TIP_TOKEN}/get_status/169/",
    ]
    row.refresh_from_db()
    unknown.refresh_from_db()
    assert (row.status, unknown.status) == (DELIVERED, SENT)
    assert changes == [(row.pk, SENT, DELIVERED)]
    assert "1 checked, 1 changed (delivered 1), 0 unchanged, 1 failed" in out
    assert "look-up errors tip: 400: 1" in err
    assert TIP_TOKEN not in out + err
