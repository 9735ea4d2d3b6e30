"""django-phonenumber-field: its ``PhoneNumber`` objects are taken wherever a
phone is, and ``PHONENUMBER_DEFAULT_REGION`` serves as the default region.

With the real package (the ``test`` extra), not a stand-in.
"""

from __future__ import annotations

import pytest

pytest.importorskip("phonenumber_field")

from phonenumber_field.formfields import PhoneNumberField  # noqa: E402
from phonenumber_field.phonenumber import PhoneNumber  # noqa: E402

from django import forms  # noqa: E402
from django.core.checks import run_checks  # noqa: E402

from django_sms2fa import device_flows, flows, login_flows  # noqa: E402
from django_sms2fa.conf import app_settings  # noqa: E402
from django_sms2fa.exceptions import InvalidPhone, Sms2faConfigurationError  # noqa: E402
from django_sms2fa.models import PhoneDevice, Purpose  # noqa: E402
from django_sms2fa.phones import mask_phone, normalize_phone, number_type_of, region_of  # noqa: E402

PHONE = "+46701234567"


@pytest.fixture
def no_sms2fa_region(settings):
    """SMS2FA without a DEFAULT_REGION key (the test settings set "SE")."""
    settings.SMS2FA = {k: v for k, v in settings.SMS2FA.items() if k != "DEFAULT_REGION"}
    return settings


def test_a_phonenumber_field_number_is_normalized(settings):
    settings.PHONENUMBER_DEFAULT_REGION = "SE"
    number = PhoneNumber.from_string("070-123 45 67")
    assert isinstance(number, PhoneNumber)
    assert normalize_phone(number) == PHONE
    assert normalize_phone(PhoneNumber.from_string(PHONE), "US") == PHONE
    assert mask_phone(number) == mask_phone(PHONE)
    assert region_of(number) == "SE"
    assert number_type_of(number) == "MOBILE"


@pytest.mark.parametrize(
    "number",
    [
        PhoneNumber(),  # empty
        PhoneNumber(country_code=46, national_number=12),  # too short: not valid
        PhoneNumber(country_code=999, national_number=701234567),  # no such country
    ],
    ids=["empty", "invalid", "unknown-country"],
)
def test_an_invalid_phonenumber_is_refused(number):
    with pytest.raises(InvalidPhone):
        normalize_phone(number)
    assert mask_phone(number) == "" or "•" in mask_phone(number)


def test_a_form_fields_value_goes_straight_to_the_flows(db, user, outbox, settings):
    settings.PHONENUMBER_DEFAULT_REGION = "SE"

    class PhoneForm(forms.Form):
        phone = PhoneNumberField()

    form = PhoneForm({"phone": "070 123 45 67"})
    assert form.is_valid()
    value = form.cleaned_data["phone"]
    assert isinstance(value, PhoneNumber)
    device, challenge = device_flows.enrol_phone(user, value, verified_session=False)
    assert device.number == PHONE and challenge.phone == PHONE
    assert outbox[-1].to == PHONE


def test_request_challenge_takes_a_phonenumber(db, outbox):
    challenge = flows.request_challenge(
        phone=PhoneNumber.from_string(PHONE), purpose=Purpose.VERIFY_PHONE
    )
    assert challenge.phone == PHONE and outbox[-1].to == PHONE


def test_passwordless_takes_a_phonenumber(db, user, outbox):
    PhoneDevice.objects.create(user=user, number=PHONE, confirmed=True)
    challenge = login_flows.start_passwordless(PhoneNumber.from_string(PHONE))
    assert challenge.phone == PHONE and outbox[-1].to == PHONE


def test_staff_add_takes_a_phonenumber(db, user, admin_user):
    device = device_flows.add_phone_for_user(
        user, PhoneNumber.from_string(PHONE), actor=admin_user, confirmed=True
    )
    assert device.number == PHONE and device.confirmed


# ------------------------------------------------------------------ the region


def test_phonenumber_default_region_is_honoured(no_sms2fa_region, db, outbox):
    no_sms2fa_region.PHONENUMBER_DEFAULT_REGION = "se"
    assert app_settings.DEFAULT_REGION == "SE"
    challenge = flows.request_challenge(phone="070-123 45 67", purpose=Purpose.VERIFY_PHONE)
    assert challenge.phone == PHONE


def test_without_either_there_is_no_default_region(no_sms2fa_region):
    assert not hasattr(no_sms2fa_region, "PHONENUMBER_DEFAULT_REGION")
    assert app_settings.DEFAULT_REGION is None
    with pytest.raises(InvalidPhone):
        normalize_phone("070-123 45 67", app_settings.DEFAULT_REGION)


def test_sms2fas_own_setting_wins(settings):
    settings.PHONENUMBER_DEFAULT_REGION = "US"
    settings.SMS2FA = {**settings.SMS2FA, "DEFAULT_REGION": "NO"}
    assert app_settings.DEFAULT_REGION == "NO"
    # An explicit None in SMS2FA is a choice too: no default region.
    settings.SMS2FA = {**settings.SMS2FA, "DEFAULT_REGION": None}
    assert app_settings.DEFAULT_REGION is None


@pytest.mark.parametrize("bad", ["XX", "", 46])
def test_a_bad_phonenumber_default_region_is_e006(no_sms2fa_region, bad):
    no_sms2fa_region.PHONENUMBER_DEFAULT_REGION = bad
    with pytest.raises(Sms2faConfigurationError) as err:
        app_settings.DEFAULT_REGION  # noqa: B018
    assert err.value.check_id == "sms2fa.E006"
    assert "PHONENUMBER_DEFAULT_REGION" in str(err.value)
    errors = [m for m in run_checks(tags=["sms2fa"]) if m.id == "sms2fa.E006"]
    assert len(errors) == 1 and "PHONENUMBER_DEFAULT_REGION" in errors[0].msg
