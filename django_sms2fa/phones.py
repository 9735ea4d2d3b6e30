"""Phone numbers: parse anything a person types, keep E.164, show it masked.

All limits and look-ups key on the E.164 form, so ``+46 70-123 45 67`` and
``0046701234567`` are one number.
"""

from __future__ import annotations

import unicodedata
from typing import NamedTuple

import phonenumbers

from .exceptions import InvalidPhone

# Longer input is not a phone number; refusing it early bounds parser work.
MAX_INPUT_LENGTH = 64


def normalize_phone(raw: object, region: str | None = None) -> str:
    """Return ``raw`` as E.164 (``+46701234567``) or raise :class:`InvalidPhone`.

    ``raw`` is text, or a parsed ``phonenumbers.PhoneNumber`` — which is what
    django-phonenumber-field's ``PhoneNumberField`` holds (its ``PhoneNumber``
    subclasses it), so such a field's value can be passed as it is. A parsed
    number is checked like typed text: by its E.164 form, which must be valid.

    ``region`` (e.g. ``"SE"``) is assumed for numbers typed without a country
    code. Full-width digits are understood (``phonenumbers`` maps them); control
    characters such as NUL, and anything that is not a valid number for its
    region, are refused; so are control and format characters (NUL, C1 controls,
    zero-width and bidi marks) anywhere in the input, and letters, which
    ``phonenumbers`` would dial as keypad digits (only an extension marker such
    as ``ext.`` after the number may hold letters; the extension is dropped).
    """
    if isinstance(raw, phonenumbers.PhoneNumber):
        raw = _e164_of(raw)
    if not isinstance(raw, str) or len(raw) > MAX_INPUT_LENGTH:
        raise InvalidPhone()
    # Control (Cc) and format (Cf: zero-width, bidi overrides) characters are
    # refused wherever they stand, before strip() could quietly drop some of
    # them; ordinary surrounding spaces, tabs and line breaks are forgiven.
    text = raw.strip(" \t\r\n")
    if not text or any(unicodedata.category(ch) in ("Cc", "Cf") for ch in text):
        raise InvalidPhone()
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException as err:
        raise InvalidPhone() from err
    if _has_letters(text, number.extension):
        raise InvalidPhone()
    if not phonenumbers.is_valid_number(number):
        raise InvalidPhone()
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    if len(e164) > 16:  # E.164: at most 15 digits after "+"
        raise InvalidPhone()
    _remember(e164, number)
    return e164


def _e164_of(number: phonenumbers.PhoneNumber) -> str | None:
    """The E.164 text of a parsed number, to be checked like any typed one
    (``None`` when it has no country code: it is not a number to send to)."""
    if not number.country_code or number.national_number is None:
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _as_text(phone: object) -> str:
    """An E.164 string, or a parsed number as one (the helpers below take both)."""
    if isinstance(phone, phonenumbers.PhoneNumber):
        return _e164_of(phone) or ""
    return phone if isinstance(phone, str) else ""


class _Facts(NamedTuple):
    region: str | None
    number_type: str
    country_code: str


#: What a request asks of its number — region, type, country code — from one
#: parse. Kept per process for the numbers seen last (bounded): a request,
#: and the next login of the same number, parse it once.
_FACTS: dict[str, _Facts] = {}
_FACTS_SIZE = 4096
_TYPE_NAMES = {
    value: name
    for name, value in vars(phonenumbers.PhoneNumberType).items()
    if isinstance(value, int)
}


def _remember(e164: str, number: phonenumbers.PhoneNumber) -> _Facts:
    facts = _Facts(
        phonenumbers.region_code_for_number(number),
        _TYPE_NAMES.get(phonenumbers.number_type(number), "UNKNOWN"),
        str(number.country_code),
    )
    if len(_FACTS) >= _FACTS_SIZE:
        _FACTS.clear()  # simpler than an LRU, and as good for a working set this size
    _FACTS[e164] = facts
    return facts


def _facts(e164: str) -> _Facts | None:
    facts = _FACTS.get(e164)
    if facts is None:
        try:
            facts = _remember(e164, phonenumbers.parse(e164, None))
        except phonenumbers.NumberParseException:
            return None
    return facts


def _has_letters(text: str, extension: str | None) -> bool:
    """Whether ``text`` has a letter outside a trailing extension marker.

    ``phonenumbers`` dials letters as keypad digits (``+46 70 ABC 45 67`` becomes
    +46702224567, someone else's phone) and skips letters around the digits, so
    a letter typed for a digit would send the SMS to another number. The one
    place a letter is allowed is the marker of an extension ``phonenumbers``
    found (``ext.``, ``x``, ``;ext=``, ``доб``): it sits between the number and
    the extension's digits at the end, and the extension is not part of E.164.
    A leading ``tel:`` (an RFC 3966 link, copied from a page) is allowed too.
    """
    if text[:4].lower() == "tel:":
        text = text[4:]
    if extension:
        # Strip what follows the number: trailing punctuation ("#"), then the
        # extension's digits (in whatever script they were typed), then the
        # marker, i.e. everything back to the number's last digit.
        end = len(text)
        while end and not text[end - 1].isdecimal():
            end -= 1
        digits = 0
        while end and text[end - 1].isdecimal() and digits < len(extension):
            end -= 1
            digits += 1
        while end and not text[end - 1].isdecimal():
            end -= 1
        text = text[:end]
    return any(unicodedata.category(ch).startswith("L") for ch in text)


def region_of(e164: str | phonenumbers.PhoneNumber) -> str | None:
    """The ISO region of an E.164 number (``"SE"``), or ``None``."""
    e164 = _as_text(e164)
    facts = _facts(e164)
    return facts.region if facts is not None else None


def mask_phone(e164: str | phonenumbers.PhoneNumber) -> str:
    """A display form that identifies a number to its owner only.

    Keeps the country code and the last two digits: ``+46•••••••67``.
    """
    e164 = _as_text(e164)
    if not e164:
        return ""
    facts = _facts(e164)
    country = facts.country_code if facts is not None else ""
    digits = e164.lstrip("+")
    rest = digits[len(country) :]
    if len(rest) <= 4:
        return "+" + country + "•" * len(rest)
    return "+" + country + "•" * (len(rest) - 2) + rest[-2:]


def number_type_of(e164: str | phonenumbers.PhoneNumber) -> str:
    """The ``phonenumbers.PhoneNumberType`` name of a number (``"MOBILE"``, ``"PREMIUM_RATE"``)."""
    e164 = _as_text(e164)
    facts = _facts(e164)
    return facts.number_type if facts is not None else "UNKNOWN"
