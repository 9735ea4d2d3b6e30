"""manage.py sms2fa_send_test."""

from __future__ import annotations

import io

import pytest

from django.core.management import CommandError, call_command

from django_sms2fa.exceptions import ProviderRejected, ProviderUnavailable
from django_sms2fa.models import Message
from django_sms2fa.providers import locmem

pytestmark = pytest.mark.django_db


def run(*args):
    out = io.StringIO()
    call_command("sms2fa_send_test", *args, stdout=out)
    return out.getvalue()


def test_sends_and_prints_the_message_id(outbox):
    output = run("070-123 45 67")
    assert len(outbox) == 1 and outbox[0].to == "+46701234567"
    message = Message.objects.get()
    assert message.challenge is None
    assert message.provider_message_id == outbox[0].message_id
    assert message.provider_message_id in output
    assert "test message" in message.text_masked


def test_a_provider_failure_exits_non_zero_with_the_provider_text(outbox):
    locmem.fail_next(
        ProviderRejected(provider_code="2001", provider_text="number is blocked [redacted]")
    )
    with pytest.raises(CommandError) as err:
        run("+46701234567")
    assert "2001" in str(err.value) and "number is blocked" in str(err.value)
    assert Message.objects.get().status == "failed"


def test_a_timeout_says_the_sms_may_still_arrive(outbox):
    locmem.fail_next(ProviderUnavailable(provider_code="timeout", may_have_sent=True))
    with pytest.raises(CommandError, match="may still arrive"):
        run("+46701234567")
    assert Message.objects.get().status == "unknown"


def test_provider_option_and_unknown_alias(outbox, sms2fa_settings):
    sms2fa_settings(
        PROVIDERS={
            "default": {"BACKEND": "django_sms2fa.providers.locmem.LocmemProvider"},
            "other": {
                "BACKEND": "django_sms2fa.providers.locmem.LocmemProvider",
                "OPTIONS": {"mode": "code"},
            },
        }
    )
    run("+46701234567", "--provider", "other")
    assert outbox[0].alias == "other"
    assert len(outbox[0].code) == 6  # a code-only provider gets a throw-away code
    assert outbox[0].code not in Message.objects.get().text_masked
    with pytest.raises(CommandError, match="Unknown provider 'nope'"):
        run("+46701234567", "--provider", "nope")


def test_an_invalid_number_is_a_clear_error(outbox):
    with pytest.raises(CommandError, match="invalid_phone"):
        run("12")
    assert outbox == []


def test_a_channel_the_provider_offers_is_tried(outbox, sms2fa_settings):
    sms2fa_settings(
        PROVIDERS={
            "default": {
                "BACKEND": "django_sms2fa.providers.locmem.LocmemProvider",
                "OPTIONS": {"channels": ("sms", "call")},
            }
        }
    )
    out = run("+46701234567", "--channel", "call")
    assert "Sent via default" in out
    assert [sms.channel for sms in outbox] == ["call"]
    assert Message.objects.get().channel == "call"


def test_a_channel_the_provider_lacks_is_a_clear_error(outbox):
    with pytest.raises(CommandError, match="channel_unavailable"):
        run("+46701234567", "--channel", "whatsapp")
    assert outbox == []
