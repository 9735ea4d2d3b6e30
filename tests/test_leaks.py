"""No code, code hash or provider secret in logs, exception text, reprs or stored columns.

docs/security.md items 13 and 15. The whole life of several challenges runs
with every logger at DEBUG, including failures that carry provider detail; then
every record, every exception and every repr is searched for the secrets.
"""

from __future__ import annotations

import logging

import pytest

from django.db import connection

from django_sms2fa import flows
from django_sms2fa.exceptions import (
    DeliveryFailed,
    IncorrectCode,
    ProviderUnavailable,
    Sms2faError,
)
from django_sms2fa.models import Challenge, Message, PhoneDevice
from django_sms2fa.providers import get_provider, locmem
from django_sms2fa.types import OutgoingSms, SendResult

pytestmark = pytest.mark.django_db

PROVIDER_SECRET = "tok-9f8e7d6c5b4a-SECRET"


class SecretHoldingProvider(locmem.LocmemProvider):
    """A locmem provider configured with a token, like every real one."""

    def __init__(self, *, token: str, **options):
        super().__init__(**options)
        self._token = token


@pytest.fixture
def secret_provider(sms2fa_settings):
    sms2fa_settings(
        PROVIDERS={
            "default": {
                "BACKEND": "tests.test_leaks.SecretHoldingProvider",
                "OPTIONS": {"token": PROVIDER_SECRET},
            }
        }
    )


def test_nothing_secret_escapes_a_full_life(secret_provider, outbox, user, caplog):
    caplog.set_level(logging.DEBUG)
    raised: list[BaseException] = []
    device = PhoneDevice.objects.create(user=user, number="+46701234567", confirmed=True)

    challenge = flows.request_challenge(phone="+46 70 123 45 67", purpose="login", user=user)
    flows.resend_challenge(challenge.pk)
    for _ in range(2):
        try:
            flows.verify_challenge(
                challenge.pk, "000000" if outbox[-1].code != "000000" else "1" * 6
            )
        except IncorrectCode as err:
            raised.append(err)
    flows.verify_challenge(challenge.pk, outbox[-1].code)
    try:
        flows.verify_challenge(challenge.pk, outbox[-1].code)
    except Sms2faError as err:
        raised.append(err)
    locmem.fail_next(ProviderUnavailable(provider_code="E42", provider_text="gateway busy"))
    try:
        flows.request_challenge(phone="+46701234567", purpose="verify_phone")
    except DeliveryFailed as err:
        raised.append(err)
        raised.append(err.__cause__)
    assert device.generate_challenge()
    assert device.verify_token(outbox[-1].code)

    codes = {sms.code for sms in outbox}
    hashes = set(Challenge.objects.values_list("code_hash", flat=True)) - {""}
    assert len(codes) >= 3 and len(hashes) >= 3
    secrets = codes | hashes | {PROVIDER_SECRET}

    haystacks = [record.getMessage() for record in caplog.records]
    haystacks += [str(record.args) for record in caplog.records]
    haystacks += [f"{err!s} {err!r}" for err in raised]
    haystacks += [repr(obj) + str(obj) for obj in Challenge.objects.all()]
    haystacks += [repr(obj) + str(obj) for obj in Message.objects.all()]
    haystacks += [repr(device), str(device), repr(get_provider())]
    haystacks += [repr(sms) for sms in outbox]
    assert caplog.records, "the flows should have logged something"
    assert len(raised) >= 5
    for secret in secrets:
        for text in haystacks:
            assert secret not in text


def test_stored_columns_never_hold_a_code(outbox):
    """Grep every column of every row the app wrote for the codes (item 13)."""
    challenge = flows.request_challenge(phone="+46701234567", purpose="login")
    flows.resend_challenge(challenge.pk)
    codes = {sms.code for sms in outbox}
    tables = [Challenge._meta.db_table, Message._meta.db_table]
    with connection.cursor() as cursor:
        for table in tables:
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")
            for row in cursor.fetchall():
                for value in row:
                    for code in codes:
                        assert code not in str(value), f"{table} holds a code"


def test_values_passed_to_providers_hide_the_code_in_repr():
    sms = OutgoingSms(to="+46701234567", text="Your code is 482913", code="482913")
    result = SendResult(message_id="m1", returned_code="771234", raw={"code": "771234"})
    assert "482913" not in repr(sms)
    assert "771234" not in repr(result)
    assert "482913" not in repr(
        outbox_entry := locmem.SentSms(
            alias="a",
            to="+1",
            text="482913",
            code="482913",
            message_id="x",
            purpose="login",
            in_transaction=False,
        )
    ), outbox_entry


def test_provider_repr_hides_its_options(secret_provider):
    assert PROVIDER_SECRET not in repr(get_provider())
    assert PROVIDER_SECRET not in str(get_provider())
