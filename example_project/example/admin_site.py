"""The plain Django admin of the example site, behind the sms2fa pages.

Installed as ``admin.site`` through :class:`ExampleAdminConfig` (Django's way
to replace the default admin site). Its login page is the sms2fa login
(password, then the code), and a passwordless session — the phone's code
alone, one factor — is not enough for staff pages. The other admin,
``/admin/``, is django-otp's ``OTPAdminSite`` with its own login form.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from django.contrib import admin
from django.contrib.admin.apps import AdminConfig
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse

from django_sms2fa.session_keys import METHOD_KEY, PASSWORDLESS


class PlainAdminSite(admin.AdminSite):
    site_header = "django-sms2fa example: Django admin"

    def has_permission(self, request: HttpRequest) -> bool:
        passwordless = request.session.get(METHOD_KEY) == PASSWORDLESS
        return super().has_permission(request) and not passwordless

    def login(self, request: HttpRequest, extra_context: Any = None) -> HttpResponse:
        target = request.GET.get("next") or reverse("admin:index", current_app=self.name)
        return HttpResponseRedirect(f"{reverse('sms2fa:login')}?{urlencode({'next': target})}")


class ExampleAdminConfig(AdminConfig):
    default_site = "example.admin_site.PlainAdminSite"
