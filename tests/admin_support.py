"""URLs and helpers for the admin tests: the plain admin site, and an
OTPAdminSite that copies its registry the way example_project does."""

from __future__ import annotations

from django_otp.admin import OTPAdminSite

from django.contrib import admin
from django.contrib.auth.models import Permission
from django.urls import path

otp_site = OTPAdminSite(name="otpsite")
for _model, _model_admin in admin.site._registry.items():
    otp_site.register(_model, _model_admin.__class__)

urlpatterns = [
    path("admin/", admin.site.urls),
    path("otpsite/", otp_site.urls),
]

PASSWORD = "staff-password"  # noqa: S105 - a test fixture


def make_staff(django_user_model, username: str, *codenames: str):
    """A staff user holding the given ``django_sms2fa`` permissions."""
    user = django_user_model.objects.create_user(
        username=username, password=PASSWORD, is_staff=True
    )
    if codenames:
        user.user_permissions.add(
            *Permission.objects.filter(
                content_type__app_label="django_sms2fa", codename__in=codenames
            )
        )
    return user
