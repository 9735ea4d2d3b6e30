"""Delivery webhooks: the secret, replays, unknown ids, malformed bodies, size,
aliases, GoSMS look-ups (faked with ``responses`` and on a real loopback
server), the status rules of ``delivery.record_delivery`` and the signal."""

from __future__ import annotations

import base64
import hmac
import io
import json
import logging
import threading
from datetime import UTC, datetime, timedelta
from unittest import mock

import pytest
import responses

from django.db import connection
from django.test import Client, RequestFactory
from django.urls import include, path, reverse
from django.utils import timezone
from django.views.debug import ExceptionReporter

from django_sms2fa import delivery, signals
from django_sms2fa.delivery import webhooks
from django_sms2fa.models import Message
from django_sms2fa.providers.gosms import GoSMSProvider
from django_sms2fa.providers.ip1 import IP1Provider, status_of_code
from django_sms2fa.types import DELIVERED, FAILED, QUEUED, SENT, UNKNOWN

# pytest.mark.urls points here: the webhooks mounted as the example site does.
urlpatterns = [path("webhooks/sms2fa/", include("django_sms2fa.delivery.urls"))]
pytestmark = [pytest.mark.urls(__name__), pytest.mark.django_db]

IP1_SECRET = "ip1-webhook-secret-9f8e7d6c5b4a"
GOSMS_SECRET = "gosms-webhook-secret-0a1b2c3d4e5f"
TIP_SECRET = "telefonip-secret-1234567890"
GOSMS_TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJhcGkiOiJnb3NtcyJ9.c2lnbmF0dXJlLVNFQ1JFVC0wMTIzNDU2Nzg5"
GOSMS_API = "https://api.gosms.ru/v1"
IP1_ID = "5c613848879973045cf39ac4"
GOSMS_ID = "6658053caa16b5ca5c5d72fc"


def providers(gosms_url: str = GOSMS_API) -> dict:
    return {
        "default": {"BACKEND": "django_sms2fa.providers.locmem.LocmemProvider"},
        "ip1": {
            "BACKEND": "django_sms2fa.providers.ip1.IP1Provider",
            "OPTIONS": {"account_id": "ip1-12345", "api_key": "ip1-api-key-SECRET"},
        },
        "gosms": {
            "BACKEND": "django_sms2fa.providers.gosms.GoSMSProvider",
            "OPTIONS": {"token": GOSMS_TOKEN, "base_url": gosms_url},
        },
        "tip": {
            "BACKEND": "django_sms2fa.providers.telefonip.TelefonIPProvider",
            "OPTIONS": {"token": "telefonip-token-SECRET"},
        },
    }


@pytest.fixture(autouse=True)
def webhook_settings(sms2fa_settings):
    sms2fa_settings(
        PROVIDERS=providers(),
        WEBHOOK_SECRETS={
            "ip1": IP1_SECRET,
            "gosms": GOSMS_SECRET,
            "tip": TIP_SECRET,  # telefon-ip sends no reports: still 404
            "ghost": "a-secret-for-no-provider",  # no such provider: 404
        },
    )


def message(alias: str, message_id: str, status: str = SENT, **fields) -> Message:
    now = timezone.now()
    return Message.objects.create(
        phone="+46701234567",
        provider=alias,
        provider_message_id=message_id,
        status=status,
        created_at=fields.pop("created_at", now),
        sent_at=now,
        **fields,
    )


def url(alias: str, secret: str | None = None, **query) -> str:
    base = reverse("sms2fa_webhooks:delivery_report", args=[alias])
    if secret is not None:
        query["secret"] = secret
    if not query:
        return base
    return base + "?" + "&".join(f"{k}={v}" for k, v in query.items())


def ip1_report(message_id: str = IP1_ID, code: int = 201, key: str = "id", **extra) -> dict:
    return {
        key: message_id,
        "batchId": "5c613848879973045cf39ac3",
        "recipient": "46701234567",
        "code": code,
        "duration": 0,
        "created": "2024-05-01T10:00:05Z",
        "segments": 1,
        "price": 0.082,
        "currency": "sek",
        "reference": "",
        **extra,
    }


def post(client, target: str, body, content_type: str = "application/json", **headers):
    data = json.dumps(body) if not isinstance(body, (bytes, str)) else body
    return client.post(target, data=data, content_type=content_type, **headers)


# ----------------------------------------------------------------- iP1 reports


@pytest.mark.parametrize("key", ["id", "messageId"])
def test_good_secret_records_an_ip1_delivery(client, changes, key):
    row = message("ip1", IP1_ID, SENT)
    answer = post(client, url("ip1", IP1_SECRET), ip1_report(key=key))
    assert answer.status_code == 200
    assert answer.json() == {"received": 1, "updated": 1, "unknown": 0, "deferred": 0}
    row.refresh_from_db()
    assert row.status == DELIVERED
    assert row.provider_status == "201 DeliveredToHandset"
    assert row.status_changed_at == datetime(2024, 5, 1, 10, 0, 5, tzinfo=UTC)
    assert changes == [(row.pk, SENT, DELIVERED)]


def test_replay_changes_nothing_and_sends_no_second_signal(client, changes):
    row = message("ip1", IP1_ID, SENT)
    first = post(client, url("ip1", IP1_SECRET), ip1_report())
    row.refresh_from_db()
    before = (row.status, row.provider_status, row.status_changed_at)
    second = post(client, url("ip1", IP1_SECRET), ip1_report())
    assert (first.status_code, second.status_code) == (200, 200)
    assert second.json()["updated"] == 0
    row.refresh_from_db()
    assert (row.status, row.provider_status, row.status_changed_at) == before
    assert len(changes) == 1


def test_reports_only_move_forward(client, changes):
    row = message("ip1", IP1_ID, QUEUED)
    for code in (112, 102, 201, 112, 202):  # sent, late queued, delivered, late sent, expired
        assert post(client, url("ip1", IP1_SECRET), ip1_report(code=code)).status_code == 200
    row.refresh_from_db()
    assert row.status == DELIVERED  # final: the later "expired" does not undo it
    assert changes == [(row.pk, QUEUED, SENT), (row.pk, SENT, DELIVERED)]


def test_unknown_message_id_answers_200_and_changes_nothing(client, changes):
    row = message("ip1", IP1_ID, SENT)
    answer = post(client, url("ip1", IP1_SECRET), ip1_report(message_id="5c61384887997304ffffffff"))
    assert answer.status_code == 200
    assert answer.json() == {"received": 1, "updated": 0, "unknown": 1, "deferred": 0}
    row.refresh_from_db()
    assert row.status == SENT
    assert Message.objects.count() == 1
    assert changes == []


def test_a_message_of_another_alias_is_never_touched(client, changes):
    # The same id at another provider: the iP1 webhook must not change it.
    other = message("gosms", IP1_ID, SENT)
    answer = post(client, url("ip1", IP1_SECRET), ip1_report(code=202))
    assert answer.json()["unknown"] == 1
    other.refresh_from_db()
    assert other.status == SENT
    assert changes == []


def test_a_list_of_reports_is_read(client, changes):
    a = message("ip1", "aaaaaaaaaaaaaaaaaaaaaaaa", SENT)
    b = message("ip1", "bbbbbbbbbbbbbbbbbbbbbbbb", SENT)
    body = [ip1_report(message_id=a.provider_message_id), ip1_report(b.provider_message_id, 501)]
    answer = post(client, url("ip1", IP1_SECRET), body)
    assert answer.json() == {"received": 2, "updated": 2, "unknown": 0, "deferred": 0}
    assert Message.objects.get(pk=a.pk).status == DELIVERED
    assert Message.objects.get(pk=b.pk).status == FAILED


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (101, QUEUED),
        (110, QUEUED),
        (111, SENT),
        (113, SENT),
        (201, DELIVERED),
        (202, FAILED),
        (203, FAILED),
        (402, FAILED),
        (499, FAILED),
        (503, FAILED),
        (150, UNKNOWN),
        (299, UNKNOWN),
        (0, UNKNOWN),
    ],
)
def test_ip1_status_codes(code, expected):
    assert status_of_code(code) == expected


# ------------------------------------------------------------------ the secret


@pytest.mark.parametrize(
    "secret",
    [None, "", "wrong-secret-wrong-secret", IP1_SECRET[:-1], IP1_SECRET + "x", GOSMS_SECRET],
)
def test_bad_secret_is_403_without_detail(client, changes, secret):
    row = message("ip1", IP1_ID, SENT)
    answer = post(client, url("ip1", secret), ip1_report())
    assert answer.status_code == 403
    assert answer.json() == {"error": {"code": "forbidden", "message": "Forbidden."}}
    row.refresh_from_db()
    assert row.status == SENT
    assert changes == []


def test_secret_in_a_header_or_basic_auth(client):
    row = message("ip1", IP1_ID, QUEUED)
    header = post(client, url("ip1"), ip1_report(code=112), headers={"X-Sms2fa-Secret": IP1_SECRET})
    basic = base64.b64encode(f"ip1:{IP1_SECRET}".encode()).decode()
    auth = post(
        client, url("ip1"), ip1_report(code=201), headers={"Authorization": f"Basic {basic}"}
    )
    assert (header.status_code, auth.status_code) == (200, 200)
    row.refresh_from_db()
    assert row.status == DELIVERED


def test_a_wrong_header_is_not_rescued_by_a_right_query(client):
    # The first place that carries a secret is the one compared.
    message("ip1", IP1_ID, SENT)
    answer = post(
        client, url("ip1", IP1_SECRET), ip1_report(), headers={"X-Sms2fa-Secret": "nope" * 5}
    )
    assert answer.status_code == 403


def test_secret_given_twice_is_refused(client):
    message("ip1", IP1_ID, SENT)
    target = reverse("sms2fa_webhooks:delivery_report", args=["ip1"])
    answer = post(client, f"{target}?secret={IP1_SECRET}&secret={IP1_SECRET}", ip1_report())
    assert answer.status_code == 403


def test_the_secret_is_compared_in_constant_time(client):
    message("ip1", IP1_ID, SENT)
    with mock.patch.object(webhooks.hmac, "compare_digest", wraps=hmac.compare_digest) as spy:
        assert post(client, url("ip1", IP1_SECRET), ip1_report()).status_code == 200
        assert post(client, url("ip1", "x" * 20), ip1_report()).status_code == 403
    assert spy.call_count == 2
    # Fixed-length digests: the secret's length does not leak through timing.
    assert all(len(a) == len(b) == 32 for (a, b), _kw in spy.call_args_list)


def test_the_secret_never_reaches_logs_or_answers(client, caplog):
    caplog.set_level(logging.DEBUG)
    message("ip1", IP1_ID, SENT)
    answers = [
        post(client, url("ip1", IP1_SECRET), ip1_report()),
        post(client, url("ip1", IP1_SECRET), b"{not json"),
        post(client, url("ip1", IP1_SECRET[:-2] + "zz"), ip1_report()),
        post(client, url("ip1", IP1_SECRET), ip1_report(message_id="nope")),
    ]
    assert [a.status_code for a in answers] == [200, 400, 403, 200]
    for answer in answers:
        assert IP1_SECRET.encode() not in answer.content
        assert IP1_SECRET[:-2].encode() not in answer.content
    assert IP1_SECRET[:-2] not in caplog.text
    assert any("refused" in r.getMessage() for r in caplog.records)


def test_error_reports_do_not_show_the_secret(changes):
    """A receiver that raises makes a 500; Django's error report (the ADMINS
    e-mail) prints request.GET and the query string, which held the secret."""
    message("ip1", IP1_ID, SENT)

    def broken(**kwargs):
        raise RuntimeError("receiver bug")

    signals.message_status_changed.connect(broken)
    request = RequestFactory().post(
        f"/webhooks/sms2fa/ip1/?secret={IP1_SECRET}&trace=1",
        data=json.dumps(ip1_report()),
        content_type="application/json",
    )
    try:
        with pytest.raises(RuntimeError) as err:
            webhooks.delivery_report(request, alias="ip1")
    finally:
        signals.message_status_changed.disconnect(broken)
    assert changes == [(Message.objects.get().pk, SENT, DELIVERED)]  # the others still ran
    assert "secret" not in request.GET
    assert request.META["QUERY_STRING"] == "trace=1"
    report = ExceptionReporter(request, RuntimeError, err.value, err.tb).get_traceback_text()
    assert IP1_SECRET not in report
    assert "trace" in report  # the report does show the query it has


# --------------------------------------------------------------- aliases, HTTP


@pytest.mark.parametrize(
    ("alias", "secret"),
    [
        ("nope", IP1_SECRET),  # no such alias anywhere
        ("ghost", "a-secret-for-no-provider"),  # a secret but no provider
        ("default", IP1_SECRET),  # a provider without a secret
        ("tip", TIP_SECRET),  # a provider that sends no reports
    ],
)
def test_aliases_without_a_webhook_are_404(client, alias, secret):
    answer = post(client, url(alias, secret), ip1_report())
    assert answer.status_code == 404
    assert answer.json()["error"]["code"] == "not_found"


def test_only_post(client):
    assert client.get(url("ip1", IP1_SECRET)).status_code == 405
    assert client.put(url("ip1", IP1_SECRET), data=b"{}").status_code == 405


def test_no_csrf_token_needed():
    message("ip1", IP1_ID, SENT)
    strict = Client(enforce_csrf_checks=True)
    assert post(strict, url("ip1", IP1_SECRET), ip1_report()).status_code == 200


@pytest.mark.parametrize(
    ("body", "content_type", "code"),
    [
        (b"{not json", "application/json", "malformed_report"),
        (b"", "application/json", "malformed_report"),
        (b"   ", "application/json", "malformed_report"),
        (b"\xff\xfe{}", "application/json", "malformed_report"),
        (b"[]", "application/json", "malformed_report"),
        (b'"a string"', "application/json", "malformed_report"),
        (b"[1, 2]", "application/json", "malformed_report"),
        (b"[" * 30000 + b"]" * 30000, "application/json", "malformed_report"),
        (json.dumps({"code": 201}).encode(), "application/json", "malformed_report"),
        (json.dumps({"id": IP1_ID}).encode(), "application/json", "malformed_report"),
        (json.dumps({"id": IP1_ID, "code": "x"}).encode(), "application/json", "malformed_report"),
        (json.dumps({"id": True, "code": 201}).encode(), "application/json", "malformed_report"),
        (json.dumps({"id": "a b", "code": 201}).encode(), "application/json", "malformed_report"),
        (
            json.dumps({"id": "x" * 200, "code": 201}).encode(),
            "application/json",
            "malformed_report",
        ),
        (b"id=1&id=2&code=201", "application/x-www-form-urlencoded", "malformed_report"),
        (
            json.dumps([{"id": str(i), "code": 201} for i in range(101)]).encode(),
            "application/json",
            "too_many_reports",
        ),
    ],
)
def test_malformed_body_is_400_with_a_stable_code(client, changes, body, content_type, code):
    row = message("ip1", IP1_ID, SENT)
    answer = post(client, url("ip1", IP1_SECRET), body, content_type=content_type)
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == code
    assert set(answer.json()["error"]) == {"code", "message"}  # the body is not echoed
    row.refresh_from_db()
    assert row.status == SENT
    assert changes == []


def test_a_json_report_with_a_wrong_content_type_is_still_read(client):
    row = message("ip1", IP1_ID, SENT)
    answer = post(client, url("ip1", IP1_SECRET), json.dumps(ip1_report()), "text/plain")
    assert answer.status_code == 200
    row.refresh_from_db()
    assert row.status == DELIVERED


def test_body_over_64_kib_is_413(client, changes):
    row = message("ip1", IP1_ID, SENT)
    padded = ip1_report(reference="x" * (64 * 1024))
    answer = post(client, url("ip1", IP1_SECRET), padded)
    assert answer.status_code == 413
    assert answer.json()["error"]["code"] == "request_too_large"
    # Just under the limit is read.
    fits = ip1_report(reference="")
    fits["reference"] = "x" * (webhooks.MAX_BODY_BYTES - len(json.dumps(fits)))
    assert len(json.dumps(fits)) == webhooks.MAX_BODY_BYTES
    assert post(client, url("ip1", IP1_SECRET), fits).status_code == 200
    row.refresh_from_db()
    assert changes == [(row.pk, SENT, DELIVERED)]


def test_body_too_large_without_content_length_is_413():
    # ASGI or chunked requests may carry no Content-Length: the read is bounded.
    request = RequestFactory().post(
        f"/x/?secret={IP1_SECRET}", data=b"{" + b" " * (70 * 1024) + b"}", content_type="a/b"
    )
    del request.META["CONTENT_LENGTH"]
    request._stream = io.BytesIO(b"{" + b" " * (70 * 1024) + b"}")
    assert webhooks.delivery_report(request, alias="ip1").status_code == 413


def test_a_bad_secret_is_403_before_the_size_is_looked_at(client):
    answer = post(client, url("ip1", "wrong-wrong-wrong-wrong"), "x" * (100 * 1024))
    assert answer.status_code == 403


# ------------------------------------------------------------ GoSMS callbacks


def gosms_status(status: int, message_id: str = GOSMS_ID) -> dict:
    return {
        "id": message_id,
        "message": "Your code is 402913",
        "status": status,
        "callback_id": None,
        "device_id": "6654a4e8f1527149588c89f2",
        "phone_number": "79991234567",
        "message_status": "Доставлено",
        "time_create": 1717000000,
    }


@responses.activate
def test_gosms_callback_rereads_the_status_and_ignores_the_body(client, changes):
    row = message("gosms", GOSMS_ID, QUEUED)
    responses.post(f"{GOSMS_API}/sms/get", json=gosms_status(2))
    # The callback claims "delivered" (4); GoSMS's API says "sent" (2).
    answer = post(client, url("gosms", GOSMS_SECRET), {"id": GOSMS_ID, "status": 4})
    assert answer.status_code == 200
    assert answer.json() == {"received": 1, "updated": 1, "unknown": 0, "deferred": 0}
    assert len(responses.calls) == 1
    call = responses.calls[0].request
    assert json.loads(call.body) == {"id": GOSMS_ID}
    assert call.headers["Authorization"] == f"Bearer {GOSMS_TOKEN}"
    row.refresh_from_db()
    assert (row.status, row.provider_status) == (SENT, "2")
    assert changes == [(row.pk, QUEUED, SENT)]


@responses.activate
@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        ({"sms_id": GOSMS_ID}, "application/json"),
        ({"event": "sms.status", "data": {"id": GOSMS_ID, "status": 5}}, "application/json"),
        ([{"id": GOSMS_ID}, {"id": GOSMS_ID}], "application/json"),  # one look-up
        (f"id={GOSMS_ID}&status=4", "application/x-www-form-urlencoded"),
    ],
)
def test_gosms_callback_shapes(client, body, content_type):
    row = message("gosms", GOSMS_ID, SENT)
    responses.post(f"{GOSMS_API}/sms/get", json=gosms_status(4))
    assert post(client, url("gosms", GOSMS_SECRET), body, content_type).status_code == 200
    assert len(responses.calls) == 1
    row.refresh_from_db()
    assert row.status == DELIVERED


@responses.activate
def test_gosms_callback_for_unknown_or_final_messages_costs_no_api_call(client, changes):
    message("gosms", GOSMS_ID, DELIVERED)
    message("ip1", "6658053caa16b5ca5c5dffff", SENT)  # this id, but another alias
    for message_id in (GOSMS_ID, "6658053caa16b5ca5c5dffff", "000000000000000000000000"):
        answer = post(client, url("gosms", GOSMS_SECRET), {"id": message_id})
        assert answer.status_code == 200
    assert len(responses.calls) == 0
    assert changes == []


@responses.activate
def test_gosms_look_up_failure_is_deferred_with_200(client, changes, caplog):
    row = message("gosms", GOSMS_ID, QUEUED)
    responses.post(f"{GOSMS_API}/sms/get", status=500, body="upstream down")
    answer = post(client, url("gosms", GOSMS_SECRET), {"id": GOSMS_ID})
    assert answer.status_code == 200
    assert answer.json()["deferred"] == 1
    row.refresh_from_db()
    assert row.status == QUEUED
    assert changes == []
    assert GOSMS_TOKEN not in caplog.text


def test_gosms_callback_without_an_id_is_400(client):
    answer = post(client, url("gosms", GOSMS_SECRET), {"status": 4, "message": GOSMS_ID})
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "malformed_report"


def test_gosms_callback_through_real_http(client, sms2fa_settings, loopback, changes):
    """The whole path on sockets: the webhook view, GoSMSProvider.get_status()
    with the real requests stack, a loopback server playing GoSMS."""
    sms2fa_settings(PROVIDERS=providers(gosms_url=loopback.url))
    row = message("gosms", GOSMS_ID, SENT)
    loopback.respond(200, gosms_status(5))
    answer = post(client, url("gosms", GOSMS_SECRET), {"id": GOSMS_ID})
    assert answer.status_code == 200
    (request,) = loopback.requests
    assert (request.method, request.path) == ("POST", "/sms/get")
    assert request.json() == {"id": GOSMS_ID}
    assert request.headers["authorization"] == f"Bearer {GOSMS_TOKEN}"
    row.refresh_from_db()
    assert (row.status, row.provider_status) == (FAILED, "5")
    assert changes == [(row.pk, SENT, FAILED)]


# ------------------------------------------------------- record_delivery rules


@pytest.mark.parametrize(
    ("old", "new", "moves"),
    [
        (UNKNOWN, QUEUED, True),
        (UNKNOWN, DELIVERED, True),
        (QUEUED, SENT, True),
        (QUEUED, FAILED, True),
        (SENT, DELIVERED, True),
        (SENT, FAILED, True),
        (SENT, QUEUED, False),
        (SENT, UNKNOWN, False),
        (SENT, SENT, False),
        (QUEUED, UNKNOWN, False),
        (DELIVERED, FAILED, False),
        (FAILED, DELIVERED, False),
        (DELIVERED, DELIVERED, False),
        (FAILED, SENT, False),
    ],
)
def test_record_delivery_transitions(changes, old, new, moves):
    row = message("ip1", IP1_ID, old)
    found = delivery.record_delivery("ip1", IP1_ID, new, "x")
    assert found.pk == row.pk
    row.refresh_from_db()
    assert row.status == (new if moves else old)
    assert changes == ([(row.pk, old, new)] if moves else [])


def test_record_delivery_for_unknown_ids_and_bad_statuses():
    message("ip1", IP1_ID, SENT)
    assert delivery.record_delivery("ip1", "other", DELIVERED) is None
    assert delivery.record_delivery("gosms", IP1_ID, DELIVERED) is None
    assert delivery.record_delivery("ip1", "", DELIVERED) is None
    with pytest.raises(ValueError):
        delivery.record_delivery("ip1", IP1_ID, "read")


def test_a_provider_clock_in_the_future_is_not_believed():
    row = message("ip1", IP1_ID, SENT)
    delivery.record_delivery("ip1", IP1_ID, DELIVERED, at=timezone.now() + timedelta(days=1))
    row.refresh_from_db()
    assert row.status_changed_at <= timezone.now()


def test_a_receiver_error_is_reraised_after_the_others_ran(changes):
    row = message("ip1", IP1_ID, SENT)

    def broken(**kwargs):
        raise RuntimeError("receiver bug")

    signals.message_status_changed.connect(broken)
    try:
        with pytest.raises(RuntimeError):
            delivery.record_delivery("ip1", IP1_ID, DELIVERED)
    finally:
        signals.message_status_changed.disconnect(broken)
    row.refresh_from_db()
    assert row.status == DELIVERED
    assert changes == [(row.pk, SENT, DELIVERED)]


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_concurrent_identical_reports_change_once(changes):
    """20 threads deliver the same report at once: one change, one signal."""
    row = message("ip1", IP1_ID, SENT)
    barrier = threading.Barrier(20)
    results: list[object] = []

    def worker() -> None:
        try:
            barrier.wait()
            delivery.record_delivery("ip1", IP1_ID, DELIVERED, "201")
            results.append("ok")
        except Exception as err:  # pragma: no cover - reported by the assert
            results.append(err)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == ["ok"] * 20
    assert changes == [(row.pk, SENT, DELIVERED)]


def test_parsers_are_declared():
    assert IP1Provider.receives_delivery_reports()
    assert GoSMSProvider.receives_delivery_reports()
    assert not IP1Provider.has_status_lookup()
    assert GoSMSProvider.has_status_lookup()
