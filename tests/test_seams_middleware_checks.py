"""Without SecondFactorMiddleware (or OTPMiddleware, or in the wrong order) a
password alone reaches protected views: the system checks must say so.

Each setup is shown two ways: the attack (a password-only session of a user
with a phone opens a ``login_required`` view) and the check that fires for it
(an Error with a stable id). The site's real order passes quietly, and there
the same attack fails — so each check can fail.

This module is its own URLconf (``pytest.mark.urls``).
"""

from __future__ import annotations

import pytest

from django.conf import settings as django_settings
from django.contrib.auth.decorators import login_required
from django.core import checks
from django.http import HttpResponse
from django.test import override_settings
from django.urls import path

from django_sms2fa.middleware import SecondFactorMiddleware
from django_sms2fa.models import PhoneDevice

pytestmark = [pytest.mark.django_db, pytest.mark.urls(__name__)]

SESSION_MW = "django.contrib.sessions.middleware.SessionMiddleware"
AUTH_MW = "django.contrib.auth.middleware.AuthenticationMiddleware"
OTP_MW = "django_otp.middleware.OTPMiddleware"
SF_MW = "django_sms2fa.middleware.SecondFactorMiddleware"


@login_required
def private(request):
    return HttpResponse("private")


urlpatterns = [path("private/", private)]


class MySecondFactor(SecondFactorMiddleware):
    """A site's own subclass."""


def without(*names: str) -> list[str]:
    return [entry for entry in django_settings.MIDDLEWARE if entry not in names]


def moved_before(name: str, anchor: str) -> list[str]:
    entries = without(name)
    entries.insert(entries.index(anchor), name)
    return entries


def sms2fa_errors() -> dict[str, int]:
    return {
        message.id: message.level
        for message in checks.run_checks(tags=["sms2fa"])
        if message.id and message.id.startswith("sms2fa.E02")
    }


@pytest.fixture
def password_only_session(client, user):
    PhoneDevice.objects.create(user=user, number="+46701234567", confirmed=True)
    client.force_login(user)
    return client


def test_the_test_settings_are_quiet_and_the_attack_fails(password_only_session):
    assert sms2fa_errors() == {}
    assert password_only_session.get("/private/").status_code == 302


def test_without_second_factor_middleware_a_password_alone_gets_in(password_only_session):
    with override_settings(MIDDLEWARE=without(SF_MW)):
        assert password_only_session.get("/private/").status_code == 200  # the attack
        assert sms2fa_errors() == {"sms2fa.E020": checks.ERROR}


def test_without_otp_middleware_it_is_an_error(password_only_session):
    with override_settings(MIDDLEWARE=without(OTP_MW)):
        assert sms2fa_errors().get("sms2fa.E021") == checks.ERROR


def test_without_either_both_errors(password_only_session):
    with override_settings(MIDDLEWARE=without(OTP_MW, SF_MW)):
        assert password_only_session.get("/private/").status_code == 200  # the attack
        errors = sms2fa_errors()
        assert errors.get("sms2fa.E020") == errors.get("sms2fa.E021") == checks.ERROR


@pytest.mark.parametrize(
    "middleware",
    [
        pytest.param(lambda: moved_before(SF_MW, OTP_MW), id="second factor before otp"),
        pytest.param(lambda: moved_before(SF_MW, AUTH_MW), id="second factor before auth"),
        pytest.param(lambda: moved_before(OTP_MW, AUTH_MW), id="otp before auth"),
        pytest.param(lambda: moved_before(AUTH_MW, SESSION_MW), id="auth before session"),
    ],
)
def test_a_misordered_chain_is_an_error(middleware):
    with override_settings(MIDDLEWARE=middleware()):
        assert sms2fa_errors().get("sms2fa.E022") == checks.ERROR


def test_without_sessions_or_authentication_it_is_an_error():
    with override_settings(MIDDLEWARE=without(SESSION_MW, AUTH_MW)):
        assert sms2fa_errors().get("sms2fa.E022") == checks.ERROR


def test_a_subclass_counts_as_the_middleware():
    with override_settings(
        MIDDLEWARE=[
            f"{__name__}.MySecondFactor" if entry == SF_MW else entry
            for entry in django_settings.MIDDLEWARE
        ]
    ):
        assert sms2fa_errors() == {}
