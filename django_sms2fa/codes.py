"""Codes: made with a CSPRNG, stored only as a keyed hash, compared in constant time.

The hash is HMAC-SHA256 under a key derived from ``SECRET_KEY`` (Django's
``salted_hmac``), over the code *and* what it is bound to: the challenge id, the
user, the purpose and the phone (docs/security.md item 12). A leaked database
therefore yields neither codes nor anything usable for another challenge, and
a code cannot be replayed against a different purpose or person.

After a key rotation, hashes made under a key now in ``SECRET_KEY_FALLBACKS``
still verify, so pending challenges survive a deploy.
"""

from __future__ import annotations

import hmac
import re
import secrets

from django.conf import settings
from django.utils.crypto import salted_hmac
from django.views.decorators.debug import sensitive_variables

from .exceptions import InvalidCode

KEY_SALT = "django_sms2fa.codes.v1"

# `[0-9]` and not `\d`: in Python `\d` also matches full-width and Arabic-Indic
# digits, which must be refused (docs/security.md item 21).
_ASCII_DIGITS = re.compile(r"[0-9]+")
# Longest code any supported provider makes (iP1 allows 25).
MAX_SUBMITTED_LENGTH = 25


def generate_code(length: int) -> str:
    """A code of ``length`` ASCII digits from the OS CSPRNG; leading zeros kept."""
    if length < 1:
        raise ValueError("length must be positive")
    return str(secrets.randbelow(10**length)).zfill(length)


@sensitive_variables()
def clean_submitted_code(raw: object) -> str:
    """Turn what the user typed into a code, or raise :class:`InvalidCode`.

    Surrounding whitespace and one dash (``123-456``, as some SMS format it) are
    dropped. Anything else that is not an ASCII digit (spaces inside, full-width
    or Arabic-Indic digits, zero-width characters, NUL) is refused rather than
    "fixed", so no look-alike input ever reaches the comparison.
    """
    if not isinstance(raw, str):
        raise InvalidCode()
    code = raw.strip()
    if code.count("-") == 1 and not code.startswith("-") and not code.endswith("-"):
        code = code.replace("-", "")
    if not _ASCII_DIGITS.fullmatch(code) or len(code) > MAX_SUBMITTED_LENGTH:
        raise InvalidCode()
    return code


def _message(code: str, *, challenge_id: str, purpose: str, phone: str, user_id: str) -> str:
    # "|" cannot occur in any field (uuid, purpose slug, E.164, digits, pk), so
    # the encoding is unambiguous.
    return f"{challenge_id}|{user_id}|{purpose}|{phone}|{code}"


@sensitive_variables()
def hash_code(
    code: str,
    *,
    challenge_id: object,
    purpose: str,
    phone: str,
    user_id: object = None,
    secret: str | bytes | None = None,
) -> str:
    """The keyed hash stored for ``code`` (64 hex characters)."""
    message = _message(
        code,
        challenge_id=str(challenge_id),
        purpose=purpose,
        phone=phone,
        user_id="" if user_id is None else str(user_id),
    )
    return salted_hmac(KEY_SALT, message, secret=secret, algorithm="sha256").hexdigest()


def signing_secrets() -> list[str | bytes]:
    """``SECRET_KEY`` and then every key in ``SECRET_KEY_FALLBACKS``: a hash
    made under any of them still verifies, so a key rotation locks nobody out."""
    return [settings.SECRET_KEY, *getattr(settings, "SECRET_KEY_FALLBACKS", [])]


@sensitive_variables()
def code_matches(
    code: str,
    stored_hash: str,
    *,
    challenge_id: object,
    purpose: str,
    phone: str,
    user_id: object = None,
) -> bool:
    """Whether ``code`` is the one hashed into ``stored_hash``.

    Tries ``SECRET_KEY`` and then every fallback key, always all of them, with
    ``hmac.compare_digest``, so the time taken does not depend on how much of
    the code was right. An empty stored hash never matches.
    """
    if not stored_hash:
        return False
    matched = False
    for secret in signing_secrets():
        candidate = hash_code(
            code,
            challenge_id=challenge_id,
            purpose=purpose,
            phone=phone,
            user_id=user_id,
            secret=secret,
        )
        matched |= hmac.compare_digest(candidate, stored_hash)
    return matched


@sensitive_variables()
def mask_code_in(text: str, code: str) -> str:
    """``text`` with every occurrence of ``code`` replaced by bullets."""
    return text.replace(code, "•" * len(code)) if code else text
