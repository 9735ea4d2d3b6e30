"""``manage.py sms2fa_send_test PHONE [--provider ALIAS]``: try a provider for real."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from django_sms2fa import flows
from django_sms2fa.conf import app_settings
from django_sms2fa.exceptions import ChannelUnavailable, InvalidPhone, ProviderError
from django_sms2fa.types import CHANNELS, SMS


class Command(BaseCommand):
    help = (
        "Send a test SMS through a configured provider and print its message id. "
        "Exits non-zero with the provider's error (secrets redacted) when it fails."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("phone", help="The number to send to, e.g. +46701234567.")
        parser.add_argument(
            "--provider",
            dest="alias",
            default=None,
            help="Provider alias from SMS2FA['PROVIDERS'] (default: the one routed for the "
            "number).",
        )
        parser.add_argument(
            "--channel",
            choices=CHANNELS,
            default=SMS,
            help="How to reach the phone: sms (default), or call / whatsapp where the "
            "provider offers them.",
        )
        parser.add_argument(
            "--username",
            default="",
            help="Username to address, for providers that send to accounts (AxelNAC).",
        )

    def handle(
        self, *args: Any, phone: str, alias: str | None, username: str, channel: str, **options: Any
    ):
        if alias is not None and alias not in app_settings.PROVIDERS:
            known = ", ".join(sorted(app_settings.PROVIDERS))
            raise CommandError(f"Unknown provider {alias!r}. Configured: {known}.")
        try:
            message = flows.send_test_sms(
                phone=phone, alias=alias, username=username, channel=channel
            )
        except (InvalidPhone, ChannelUnavailable) as err:
            raise CommandError(f"{err.message} ({err.code})") from None
        except ProviderError as err:
            detail = f": {err.provider_text}" if err.provider_text else ""
            maybe = " The SMS may still arrive." if err.may_have_sent else ""
            raise CommandError(
                f"Provider {err.provider or alias!r} failed ({type(err).__name__}, "
                f"{err.provider_code or err.code}){detail}.{maybe}"
            ) from None
        self.stdout.write(
            f"Sent via {message.provider}: message id {message.provider_message_id or '(none)'}"
            f", status {message.status}, {message.latency_ms} ms."
        )
