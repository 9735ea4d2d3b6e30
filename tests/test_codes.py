"""Codes: how they are made, cleaned, hashed and compared (django_sms2fa.codes)."""

from __future__ import annotations

import hmac
import re
import secrets
from collections import Counter
from unittest import mock

import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from django_sms2fa.codes import (
    MAX_SUBMITTED_LENGTH,
    clean_submitted_code,
    code_matches,
    generate_code,
    hash_code,
    mask_code_in,
)
from django_sms2fa.exceptions import InvalidCode

# Hypothesis must not write a .hypothesis/ example database into the project.
FUZZ = hypothesis_settings(max_examples=500, database=None, deadline=None)

ASCII_CODE = re.compile(r"[0-9]{1,25}", re.ASCII)
HEX_64 = re.compile(r"[0-9a-f]{64}", re.ASCII)

# Chi-square critical value for 9 degrees of freedom (10 digits) at p = 0.001.
CHI2_9DF_P001 = 27.88


# --- generate_code -----------------------------------------------------------------------------


@pytest.mark.parametrize("length", range(6, 11))
def test_generate_code_has_the_requested_length_and_only_ascii_digits(length):
    """Every code has exactly ``length`` characters, all of them ASCII 0-9."""
    for _ in range(200):
        code = generate_code(length)
        assert len(code) == length
        assert ASCII_CODE.fullmatch(code), code


def test_generate_code_draws_from_the_secrets_csprng():
    """The code comes from ``secrets.randbelow(10**length)``, not from ``random``."""
    with mock.patch("django_sms2fa.codes.secrets.randbelow", wraps=secrets.randbelow) as randbelow:
        generate_code(8)
    randbelow.assert_called_once_with(10**8)


def test_generate_code_pads_the_csprng_value_with_leading_zeros():
    """A small random value becomes a full-length code (zero padded), not a short one."""
    with mock.patch("django_sms2fa.codes.secrets.randbelow", return_value=42):
        assert generate_code(6) == "000042"


def test_generate_code_refuses_a_non_positive_length():
    """Length 0 or less is a programming error, not an empty code."""
    with pytest.raises(ValueError):
        generate_code(0)


def test_generated_codes_keep_leading_zeros():
    """About one code in ten starts with "0": leading zeros are part of the code space."""
    codes = [generate_code(6) for _ in range(20_000)]
    leading_zeros = sum(code.startswith("0") for code in codes)
    # Expected 2,000 (binomial sd ~42); the bounds only catch "never" or a gross skew.
    assert 1_500 < leading_zeros < 2_500
    assert all(len(code) == 6 for code in codes)


def test_generated_digits_are_uniformly_distributed():
    """Chi-square over 100,000 digits: no digit is favoured (fails by chance 1 in 1,000)."""
    digits = "".join(generate_code(10) for _ in range(10_000))
    assert len(digits) == 100_000
    counts = Counter(digits)
    assert set(counts) == set("0123456789")
    expected = len(digits) / 10
    chi2 = sum((counts[d] - expected) ** 2 / expected for d in "0123456789")
    assert chi2 < CHI2_9DF_P001, (chi2, counts)


# --- clean_submitted_code ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("123456", "123456"),
        ("  123456  ", "123456"),
        ("\t123456\n", "123456"),
        ("123-456", "123456"),
        (" 123-456 ", "123456"),
        ("012345", "012345"),
        ("1" * MAX_SUBMITTED_LENGTH, "1" * MAX_SUBMITTED_LENGTH),
    ],
)
def test_clean_submitted_code_accepts_digits_with_whitespace_around_and_one_dash(raw, expected):
    """Surrounding whitespace and one inner dash are dropped; leading zeros are kept."""
    assert clean_submitted_code(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param("12-34-56", id="two dashes"),
        pytest.param("-123456", id="leading dash"),
        pytest.param("123456-", id="trailing dash"),
        pytest.param("-", id="dash only"),
        pytest.param("123 456", id="space inside"),
        pytest.param("123\t456", id="tab inside"),
        pytest.param("１２３４５６", id="full-width digits"),
        pytest.param("١٢٣٤٥٦", id="arabic-indic digits"),
        pytest.param("12345٦", id="one arabic-indic digit"),
        pytest.param("123\u200b456", id="zero-width space inside"),
        pytest.param("\u200b123456", id="zero-width space in front"),
        pytest.param("123\x00456", id="NUL inside"),
        pytest.param("123456\x00", id="NUL at the end"),
        pytest.param("123\u2011456", id="non-breaking hyphen"),
        pytest.param("+123456", id="plus sign"),
        pytest.param("12345a", id="letter"),
        pytest.param("", id="empty"),
        pytest.param("   ", id="whitespace only"),
        pytest.param("1" * (MAX_SUBMITTED_LENGTH + 1), id="26 digits"),
        pytest.param("1" * 13 + "-" + "1" * 13, id="26 digits with a dash"),
        pytest.param(None, id="None"),
        pytest.param(123456, id="int"),
        pytest.param(b"123456", id="bytes"),
        pytest.param(["123456"], id="list"),
    ],
)
def test_clean_submitted_code_refuses_anything_but_ascii_digits(raw):
    """Look-alike, malformed or non-str input raises InvalidCode('invalid_code')."""
    with pytest.raises(InvalidCode) as excinfo:
        clean_submitted_code(raw)
    assert excinfo.value.code == "invalid_code"


# Characters likely to confuse a cleaner, mixed with anything Unicode has to offer.
_TRICKY = st.sampled_from(list("0123456789- \t\n\x00\u200b\u2011\u00a0١٣۳१１９+"))


@FUZZ
@given(st.one_of(st.text(), st.text(alphabet=_TRICKY, max_size=30)))
def test_clean_submitted_code_returns_only_ascii_digit_strings(raw):
    """For any text: InvalidCode, or 1-25 ASCII digits. Never another exception or result."""
    try:
        cleaned = clean_submitted_code(raw)
    except InvalidCode as err:
        assert err.code == "invalid_code"
    else:
        assert ASCII_CODE.fullmatch(cleaned), repr(cleaned)


_NON_ASCII_DECIMAL = st.characters(categories=["Nd"], exclude_characters="0123456789")


@FUZZ
@given(st.text(alphabet=_NON_ASCII_DECIMAL, min_size=1, max_size=12))
def test_clean_submitted_code_refuses_every_non_ascii_decimal_digit(raw):
    """Digits of any other script (Unicode 'Nd' outside 0-9) never pass as a code."""
    assert not raw.isascii()
    with pytest.raises(InvalidCode):
        clean_submitted_code(raw)


# --- hash_code / code_matches ------------------------------------------------------------------

BINDING = {
    "challenge_id": "6f1c7e8a-0b7e-4c59-9a53-2f7f2a3f0d11",
    "purpose": "login",
    "phone": "+46701234567",
    "user_id": 42,
}
CODE = "123456"


def test_hash_is_64_lowercase_hex_and_does_not_contain_the_code():
    """The stored value is an opaque SHA-256 hex digest; the code is not recoverable from it."""
    stored = hash_code(CODE, **BINDING)
    assert HEX_64.fullmatch(stored), stored
    assert CODE not in stored


def test_hash_depends_on_the_code():
    """Two different codes under the same binding hash differently."""
    assert hash_code(CODE, **BINDING) != hash_code("123457", **BINDING)


def test_the_right_code_matches_its_hash():
    """A code verifies against the hash made for it with the same binding."""
    stored = hash_code(CODE, **BINDING)
    assert code_matches(CODE, stored, **BINDING) is True


def test_a_wrong_code_does_not_match():
    """A different code (even one digit off) does not verify."""
    stored = hash_code(CODE, **BINDING)
    assert code_matches("123457", stored, **BINDING) is False
    assert code_matches("", stored, **BINDING) is False


@pytest.mark.parametrize(
    ("field", "other"),
    [
        ("challenge_id", "0d5a1e31-4f7b-4a9e-8c3e-6b1f5e3a9c22"),
        ("purpose", "change_phone"),
        ("phone", "+46701234568"),
        ("user_id", 43),
        ("user_id", None),
    ],
)
def test_a_code_is_bound_to_challenge_purpose_phone_and_user(field, other):
    """Security: a right code for one challenge/purpose/phone/user fails for any other."""
    stored = hash_code(CODE, **BINDING)
    assert code_matches(CODE, stored, **{**BINDING, field: other}) is False


@pytest.mark.parametrize("empty", ["", None])
def test_an_empty_stored_hash_never_matches(empty):
    """A challenge without a stored hash (provider-side code) cannot be passed locally."""
    assert code_matches(CODE, empty, **BINDING) is False
    assert code_matches("", empty, **BINDING) is False


def test_code_matches_compares_in_constant_time():
    """The comparison goes through ``hmac.compare_digest``, not ``==``."""
    stored = hash_code(CODE, **BINDING)
    with mock.patch(
        "django_sms2fa.codes.hmac.compare_digest", wraps=hmac.compare_digest
    ) as compare:
        assert code_matches(CODE, stored, **BINDING) is True
    assert compare.called
    compare.assert_any_call(stored, stored)


def test_a_hash_made_before_key_rotation_still_matches_via_fallbacks(settings):
    """After SECRET_KEY rotation, the old key in SECRET_KEY_FALLBACKS keeps codes valid."""
    settings.SECRET_KEY = "old"
    settings.SECRET_KEY_FALLBACKS = []
    stored = hash_code(CODE, **BINDING)
    assert code_matches(CODE, stored, **BINDING) is True

    settings.SECRET_KEY = "new"
    settings.SECRET_KEY_FALLBACKS = ["old"]
    assert code_matches(CODE, stored, **BINDING) is True
    assert code_matches("654321", stored, **BINDING) is False

    settings.SECRET_KEY_FALLBACKS = []
    assert code_matches(CODE, stored, **BINDING) is False


def test_every_fallback_key_is_tried(settings):
    """A hash under the last of several fallback keys still matches."""
    stored = hash_code(CODE, **BINDING, secret="oldest")
    settings.SECRET_KEY = "new"
    settings.SECRET_KEY_FALLBACKS = ["old", "oldest"]
    assert code_matches(CODE, stored, **BINDING) is True


def test_a_hash_under_a_never_configured_key_does_not_match(settings):
    """Security: only SECRET_KEY and its fallbacks are trusted, not any key."""
    settings.SECRET_KEY = "new"
    settings.SECRET_KEY_FALLBACKS = ["old"]
    stored = hash_code(CODE, **BINDING, secret="never-configured")
    assert code_matches(CODE, stored, **BINDING) is False


# --- mask_code_in ------------------------------------------------------------------------------


def test_mask_code_in_replaces_every_occurrence_with_bullets():
    """The code disappears from the text; each digit becomes one bullet."""
    text = "Your code is 123456. Again: 123456."
    masked = mask_code_in(text, "123456")
    assert "123456" not in masked
    assert masked == "Your code is ••••••. Again: ••••••."


def test_mask_code_in_leaves_text_alone_without_a_code():
    """An empty code masks nothing (and does not insert bullets everywhere)."""
    assert mask_code_in("Your code is 123456.", "") == "Your code is 123456."
