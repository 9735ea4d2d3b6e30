"""Letters in a phone number are refused, never dialled as keypad digits.

``phonenumbers`` reads ``+46 70 ABC 45 67`` as a vanity number and dials the keypad
digits (ABC -> 222): the SMS would go to +46702224567, a stranger's phone. It also
skips a stray letter before or after the digits (``+46 70 123 4567O``), so a typo
of O for 0 reaches some other number. ``normalize_phone`` refuses letters wherever
they stand, except in an extension marker (``ext.``, ``x``, ``;ext=``, ``доб``)
after a complete number, which it accepts as before (the extension is dropped from
the E.164 form). Tried through the flows, the REST API and the HTML pages: a
400/field error with the stable ``invalid_phone`` code, no challenge, no SMS.
"""

from __future__ import annotations

import pytest

from django_sms2fa import flows, login_flows
from django_sms2fa.exceptions import InvalidPhone
from django_sms2fa.models import Challenge, PhoneDevice
from django_sms2fa.phones import normalize_phone

from .api_support import api_post, assert_error

E164 = "+46701234567"
# What phonenumbers makes of the letters: the keypad digits of ABC are 222.
KEYPAD = "+46702224567"

LETTERED = [
    pytest.param("+46 70 ABC 45 67", id="vanity letters (ABC -> 222)"),
    pytest.param("+46 70 abc 45 67", id="lower-case vanity letters"),
    pytest.param("+46 70 ABC 4567", id="letters, other grouping"),
    pytest.param("+1 800 FLOWERS", id="US vanity number"),
    pytest.param("+46 70 123 4567O", id="letter O after the digits"),
    pytest.param("+46 70 123 45 6O", id="letter O for the last zero"),
    pytest.param("O+46701234567", id="letter before the plus"),
    pytest.param("call +46701234567", id="a word before the number"),
    pytest.param("+46701234567 please", id="a word after the number"),
    pytest.param("+46 70 АВС 45 67", id="Cyrillic letters"),
    pytest.param("+46 70 ＡＢＣ 45 67", id="full-width letters"),
    pytest.param("+46 70 ÀBC 45 67", id="accented letter"),
    pytest.param("+46 70 123 45 67 ext ABC", id="letters as the extension"),
]


@pytest.mark.parametrize("raw", LETTERED)
def test_letters_are_refused(raw):
    with pytest.raises(InvalidPhone) as excinfo:
        normalize_phone(raw)
    assert excinfo.value.code == "invalid_phone"


def test_the_reported_number_is_refused_and_never_becomes_its_keypad_digits():
    """The reported case (docs/security.md): +46 70 ABC 45 67 went to +46702224567."""
    with pytest.raises(InvalidPhone):
        normalize_phone("+46 70 ABC 45 67")
    with pytest.raises(InvalidPhone):
        normalize_phone("070 ABC 45 67", "SE")
    # The keypad number itself, typed as digits, is an ordinary number.
    assert normalize_phone("+46 70 222 45 67") == KEYPAD


@pytest.mark.parametrize(
    ("raw", "region"),
    [
        pytest.param("+46 70 123 45 67", None, id="plain"),
        pytest.param("＋４６７０１２３４５６７", None, id="full-width digits"),
        pytest.param("+٤٦٧٠١٢٣٤٥٦٧", None, id="Arabic-Indic digits"),
        pytest.param("+۴۶۷۰۱۲۳۴۵۶۷", None, id="extended Arabic-Indic digits"),
        pytest.param("070-123 45 67", "SE", id="national"),
        pytest.param("+46 70 123 45 67 ext. 12", None, id="extension: ext."),
        pytest.param("+46 70 123 45 67 ext 12", None, id="extension: ext"),
        pytest.param("+46 70 123 45 67 extension 12", None, id="extension: extension"),
        pytest.param("+46701234567 x12", None, id="extension: x"),
        pytest.param("+46701234567 X12", None, id="extension: X"),
        pytest.param("+46701234567;ext=12", None, id="extension: RFC 3966"),
        pytest.param("+46 70 123 45 67 #12", None, id="extension: #"),
        pytest.param("+46701234567 доб 5", None, id="extension: Russian"),
        pytest.param("+46701234567 anexo 5", None, id="extension: Spanish"),
        pytest.param("+46701234567ｘ５", None, id="extension: full-width"),
        pytest.param("tel:+46701234567", None, id="tel: URI"),
        pytest.param("TEL:+46-70-123-45-67", None, id="tel: URI, upper case"),
    ],
)
def test_every_other_accepted_form_still_gives_the_same_number(raw, region):
    assert normalize_phone(raw, region) == E164


# ---------------------------------------------------------------- the flows


@pytest.mark.django_db
@pytest.mark.parametrize("purpose", ["verify_phone", "passwordless"])
def test_request_challenge_refuses_letters_and_sends_nothing(purpose, outbox):
    with pytest.raises(InvalidPhone):
        flows.request_challenge(phone="+46 70 ABC 45 67", purpose=purpose)
    assert outbox == []
    assert not Challenge.objects.exists()


@pytest.mark.django_db
def test_passwordless_refuses_letters_even_when_the_keypad_number_has_an_account(
    django_user_model, outbox
):
    """The keypad number is someone's phone: letters must not send them a login code."""
    owner = django_user_model.objects.create_user(username="keypad", password="x" * 12)
    PhoneDevice.objects.create(user=owner, number=KEYPAD, confirmed=True)
    with pytest.raises(InvalidPhone):
        login_flows.start_passwordless("+46 70 ABC 45 67")
    assert outbox == []
    assert not Challenge.objects.exists()


# ---------------------------------------------------------------- the API


@pytest.mark.django_db
@pytest.mark.parametrize("purpose", ["verify_phone", "passwordless"])
def test_api_challenges_answers_400_invalid_phone(client, purpose, outbox):
    response = api_post(client, "challenges/", {"phone": "+46 70 ABC 45 67", "purpose": purpose})
    assert_error(response, 400, "invalid_phone")
    assert outbox == []
    assert not Challenge.objects.exists()


@pytest.mark.django_db
def test_api_devices_refuses_a_lettered_phone(client, user, outbox):
    client.force_login(user)  # no phone yet: a first enrolment needs no second factor
    response = api_post(client, "devices/", {"phone": "+46 70 ABC 45 67"})
    assert_error(response, 400, "invalid_phone")
    assert outbox == []
    assert not PhoneDevice.objects.exists()


# ---------------------------------------------------------------- the pages


@pytest.mark.django_db
def test_passwordless_page_refuses_a_lettered_phone(client, django_user_model, outbox):
    owner = django_user_model.objects.create_user(username="keypad", password="x" * 12)
    PhoneDevice.objects.create(user=owner, number=KEYPAD, confirmed=True)
    response = client.post("/2fa/phone-login/", {"phone": "+46 70 ABC 45 67"})
    assert response.status_code == 200  # the form again, with a field error
    assert 'aria-invalid="true"' in response.content.decode()
    assert outbox == []
    assert not Challenge.objects.exists()


@pytest.mark.django_db
def test_add_phone_page_refuses_a_lettered_phone(client, user, outbox):
    client.force_login(user)
    response = client.post("/2fa/phones/add/", {"phone": "070 ABC 45 67"})
    assert response.status_code == 200
    assert 'aria-invalid="true"' in response.content.decode()
    assert outbox == []
    assert not PhoneDevice.objects.exists()
