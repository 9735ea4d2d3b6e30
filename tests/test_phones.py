"""Phone numbers: parsing to E.164, refusing junk, masking (django_sms2fa.phones)."""

from __future__ import annotations

import re

import pytest
from hypothesis import example, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from django_sms2fa.exceptions import InvalidPhone
from django_sms2fa.phones import MAX_INPUT_LENGTH, mask_phone, normalize_phone, region_of

E164 = "+46701234567"

# E.164: "+", a country code that does not start with 0, at most 15 digits in all.
# The lower bound is 6 digits, not 7: phonenumbers holds valid 6-digit numbers (Austrian
# "+431110", Iranian "+989601"), see test_the_shortest_valid_numbers_have_six_digits.
E164_PATTERN = re.compile(r"\+[1-9][0-9]{5,14}", re.ASCII)


@pytest.mark.parametrize(
    ("raw", "region"),
    [
        ("+46 70 123 45 67", None),
        ("+46701234567", None),
        ("+46-70-123 45 67", None),
        ("+46 (0)70-123 45 67", None),  # the "(0)" national prefix is understood
        ("  +46701234567\n", None),
        ("0046701234567", "SE"),  # "00" is Sweden's international prefix
        ("070-123 45 67", "SE"),
        ("0701234567", "SE"),
        ("+46 70 123 45 67", "US"),  # an explicit country code wins over the region
        ("＋４６７０１２３４５６７", None),  # full-width plus and digits
        ("+٤٦٧٠١٢٣٤٥٦٧", None),  # Arabic-Indic digits are digits to phonenumbers
    ],
)
def test_formatting_variants_of_one_number_give_one_e164(raw, region):
    """Every way of typing the same Swedish mobile normalizes to the same E.164 string."""
    assert normalize_phone(raw, region) == E164


@pytest.mark.parametrize(
    ("raw", "region"),
    [
        pytest.param("+4670\x001234567", None, id="NUL inside"),
        pytest.param("+46701234567\x00", None, id="NUL at the end"),
        pytest.param("\x00+46701234567", None, id="NUL in front"),
        pytest.param("+46\x01701234567", None, id="SOH inside"),
        pytest.param("+46\x1b701234567", None, id="ESC inside"),
        pytest.param("+46\t701234567", None, id="tab inside"),
        pytest.param("+46\n701234567", None, id="newline inside"),
        pytest.param("+46\x7f701234567", None, id="DEL inside"),
        pytest.param("", None, id="empty"),
        pytest.param("   \t\n", None, id="whitespace only"),
        pytest.param("+" + "4" * MAX_INPUT_LENGTH, None, id="over 64 characters"),
        pytest.param("not a phone", None, id="letters"),
        pytest.param("+46 7O1 234 567", None, id="letter O for zero"),
        pytest.param("+46701234567abc", None, id="letters after"),
        pytest.param("+4612", None, id="too short for Sweden"),
        pytest.param("+46 12", "SE", id="too short with region"),
        pytest.param("0701234567", None, id="national number without region"),
        pytest.param("0046701234567", None, id="international prefix without region"),
        pytest.param("+4670123456789012", None, id="16 digits"),
        pytest.param("+1234567890123456789", None, id="19 digits"),
        pytest.param("+0701234567", None, id="country code 0"),
    ],
)
def test_junk_is_refused_as_invalid_phone(raw, region):
    """Control characters, empty/oversized input, letters, invalid or over-long numbers."""
    with pytest.raises(InvalidPhone) as excinfo:
        normalize_phone(raw, region)
    assert excinfo.value.code == "invalid_phone"


# C0 controls and DEL that are not whitespace to str.strip(). phonenumbers itself ignores
# them before or after a number, so only normalize_phone's own check refuses these.
_C0_NOT_WHITESPACE = [chr(o) for o in [*range(0x00, 0x09), *range(0x0E, 0x1C), 0x7F]]


@pytest.mark.parametrize("position", ["start", "end"])
@pytest.mark.parametrize("control", _C0_NOT_WHITESPACE, ids=lambda ch: f"U+{ord(ch):04X}")
def test_control_characters_around_a_valid_number_are_refused(control, position):
    """A control character is refused even where the parser would skip it."""
    raw = control + E164 if position == "start" else E164 + control
    with pytest.raises(InvalidPhone):
        normalize_phone(raw)


@pytest.mark.parametrize("control", ["\x80", "\x9b"], ids=["U+0080", "U+009B"])
def test_c1_control_characters_are_refused(control):
    """C1 controls are control characters too (category Cc) and should be refused."""
    with pytest.raises(InvalidPhone):
        normalize_phone(E164 + control)


@pytest.mark.parametrize("raw", [None, 46701234567, b"+46701234567", ["+46701234567"]])
def test_non_str_input_is_refused(raw):
    """Only str is parsed: ints, bytes and None raise InvalidPhone, not TypeError."""
    with pytest.raises(InvalidPhone) as excinfo:
        normalize_phone(raw)
    assert excinfo.value.code == "invalid_phone"


def test_input_length_is_capped_at_64_characters():
    """The same number padded inside to 64 characters parses; at 65 it is refused unread."""
    at_limit = "+46" + " " * (MAX_INPUT_LENGTH - len(E164)) + "701234567"
    assert len(at_limit) == MAX_INPUT_LENGTH
    assert normalize_phone(at_limit) == E164
    with pytest.raises(InvalidPhone):
        normalize_phone(at_limit[:3] + " " + at_limit[3:])


def test_the_shortest_valid_numbers_have_six_digits():
    """Documents why E164_PATTERN allows 6 digits: phonenumbers calls these valid."""
    assert normalize_phone("+43 1110") == "+431110"
    assert normalize_phone("+98 9601") == "+989601"


def test_region_of_names_the_country():
    """region_of maps an E.164 number to its ISO region, and junk to None."""
    assert region_of(E164) == "SE"
    assert region_of("+16502530000") == "US"
    assert region_of("not a number") is None


def test_mask_phone_keeps_country_code_and_last_two_digits_only():
    """The masked form shows "+46" and "67"; the full number and its middle are hidden."""
    masked = mask_phone(E164)
    assert masked.startswith("+46")
    assert masked.endswith("67")
    assert E164 not in masked
    assert "46701234567" not in masked
    middle = masked[len("+46") : -2]
    assert middle and set(middle) == {"•"}
    for fragment in ("70", "123", "0123", "12345"):
        assert fragment not in masked
    assert masked == "+46•••••••67"


def test_mask_phone_hides_short_numbers_entirely():
    """With four or fewer digits after the country code, none of them is shown."""
    assert mask_phone("+431110") == "+43••••"
    assert mask_phone("") == ""


# Characters a fuzzer should lean on: controls, invisible format characters, non-ASCII
# digits, full-width and punctuation that phonenumbers treats specially.
_TRICKY = st.sampled_from(
    list("0123456789+ -()./\t\n")
    + ["\x00", "\x01", "\x1c", "\x7f", "\x85", "\u200b", "\u2060", "\ufeff"]
    + ["٣", "۳", "१", "１", "＋", "x", "e", "t", ";", ":"]
)
_PHONE_LIKE = st.builds(
    lambda prefix, body: prefix + body,
    st.sampled_from(["", "+", "+46", "+46 70", "0", "00", "+1", "＋４６"]),
    st.text(alphabet=_TRICKY, max_size=24),
)


@hypothesis_settings(max_examples=1000, database=None, deadline=None)
@given(
    raw=st.one_of(st.text(max_size=80), _PHONE_LIKE),
    region=st.sampled_from([None, "SE", "US", "DE", "IN"]),
)
@example(raw="+46701234567", region=None)
@example(raw="+4670\x001234567", region=None)
@example(raw="+46 70 123 45 67\u200b", region=None)
@example(raw="٣" * 10, region="SE")
@example(raw="１" * 10, region="SE")
def test_normalize_phone_returns_e164_or_raises_invalid_phone(raw, region):
    """For any text and region: InvalidPhone, or a clean E.164 string. Nothing else."""
    try:
        result = normalize_phone(raw, region)
    except InvalidPhone as err:
        assert err.code == "invalid_phone"
    else:
        assert E164_PATTERN.fullmatch(result), repr(result)


@pytest.mark.parametrize(
    "raw",
    ["+46 70\u200b123 45 67", "\u202e+46701234567", "+46701234567\u2066", "+4670\ufeff1234567"],
)
def test_format_characters_anywhere_are_refused(raw):
    """Zero-width and bidi characters are refused, not silently dropped."""
    with pytest.raises(InvalidPhone):
        normalize_phone(raw)
