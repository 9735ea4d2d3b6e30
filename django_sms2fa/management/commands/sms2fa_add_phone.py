"""``manage.py sms2fa_add_phone USER PHONE [--confirmed] [--id]``: add a phone for a user.

For support and first set-up (a superuser's own phone before the admin asks
for one). The rules are ``device_flows.add_phone_for_user``'s: unconfirmed by
default (the user confirms it with a code), ``--confirmed`` binds it at once;
a number confirmed on another account is refused. The device events record
no actor: ``None`` stands for a command.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from django_sms2fa import device_flows
from django_sms2fa.exceptions import InvalidPhone, NumberNotAllowed, PhoneAlreadyEnrolled
from django_sms2fa.phones import mask_phone


class Command(BaseCommand):
    help = (
        "Add a phone to a user's account. Unconfirmed unless --confirmed: the user then "
        "confirms it with a code from their phone pages."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("user", help="The username (or, with --id, the primary key).")
        parser.add_argument("phone", help="The number, with its country code: +46701234567.")
        parser.add_argument(
            "--id",
            action="store_true",
            dest="by_id",
            help="USER is the user's primary key, not the username.",
        )
        parser.add_argument(
            "--confirmed",
            action="store_true",
            help="Confirm the phone without a code (you vouch that it is the user's).",
        )

    def handle(
        self, *args: Any, user: str, phone: str, by_id: bool, confirmed: bool, **options: Any
    ) -> None:
        account = self._user(user, by_id=by_id)
        try:
            device = device_flows.add_phone_for_user(
                account, phone, actor=None, confirmed=confirmed, client_ip=None
            )
        except device_flows.PhoneConfirmedElsewhere:
            raise CommandError(
                "This number is already confirmed on another account; it was not added. "
                "The holder can confirm it on this account with a code (which unbinds it from "
                "the other), or remove it from the other account first "
                f"({device_flows.PhoneConfirmedElsewhere.code})."
            ) from None
        except PhoneAlreadyEnrolled as err:
            raise CommandError(f"{err.message} ({err.code})") from None
        except InvalidPhone as err:
            raise CommandError(
                f"Invalid phone number {phone!r}: {err.message} ({err.code})"
            ) from None
        except NumberNotAllowed as err:
            raise CommandError(
                f"{err.message} SMS2FA['ALLOWED_REGIONS'] / ['ALLOWED_NUMBER_TYPES'] "
                f"exclude it ({err.code})."
            ) from None
        state = "confirmed" if device.confirmed else "unconfirmed: the user confirms it with a code"
        self.stdout.write(
            f"Added {mask_phone(device.number)} to {account.get_username()!r} "
            f"(device {device.pk}, {state})."
        )

    def _user(self, value: str, *, by_id: bool) -> Any:
        model = get_user_model()
        if by_id:
            try:
                return model._default_manager.get(pk=value)
            except (model.DoesNotExist, ValueError, TypeError, ValidationError):
                raise CommandError(f"No user with id {value!r}.") from None
        found = model._default_manager.filter(**{model.USERNAME_FIELD: value}).first()
        if found is None:
            raise CommandError(
                f"No user with {model.USERNAME_FIELD} {value!r} (use --id for a primary key)."
            )
        return found
