"""Create (or update) the demo account of the example site. Safe to run again."""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from django_sms2fa.models import PhoneDevice

USERNAME = "demo"
PASSWORD = "demo-password"
EMAIL = "demo@example.com"
PHONE = "+46701234567"
DEVICE_NAME = "Demo phone"


class Command(BaseCommand):
    help = (
        f"Create or update the superuser {USERNAME!r} (password {PASSWORD!r}) and a "
        f"confirmed SMS device {PHONE} for it. Idempotent; deletes nothing."
    )

    @transaction.atomic
    def handle(self, *args, **options):
        User = get_user_model()
        user, created = User.objects.get_or_create(
            **{User.USERNAME_FIELD: USERNAME}, defaults={"email": EMAIL}
        )
        user.is_active = True
        user.is_staff = True
        user.is_superuser = True
        user.set_password(PASSWORD)
        user.save()
        self.stdout.write(
            f"{'Created' if created else 'Updated'} superuser {USERNAME!r} "
            f"with password {PASSWORD!r}."
        )

        device, created = PhoneDevice.objects.update_or_create(
            user=user, number=PHONE, defaults={"name": DEVICE_NAME, "confirmed": True}
        )
        self.stdout.write(
            f"{'Created' if created else 'Updated'} confirmed phone device "
            f"{device.name!r} ({PHONE}) for {USERNAME!r}; "
            f"persistent id {device.persistent_id}."
        )
        self.stdout.write(
            self.style.SUCCESS(
                "Demo ready. Log in at /2fa/login/ (or the admin at /admin/) and read "
                "the SMS code at /dev/outbox/ or in the terminal running the server."
            )
        )
