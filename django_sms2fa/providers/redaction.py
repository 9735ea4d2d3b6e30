"""What a provider's text may keep before it is stored or logged.

A provider's error text is the provider's own words, and a provider may echo
our request back: the SMS text with the code in it, the number, a key in the
body, an ``Authorization`` header. Whatever a provider module already blanked,
every such text passes :func:`scrub_provider_text` before it reaches the audit
(``Message.error_text``) or a log line, so that no provider, present or future,
can put a live code or a credential where staff can read it.

The text is first *unfolded* — percent-encoding, ``+`` for space, JSON
``\\uXXXX`` escapes, HTML entities and compatibility characters (fullwidth
digits) decoded, invisible characters dropped — so an echo hides nothing
behind an encoding. Then:

* every registered secret (the providers' tokens, keys and passwords, and
  their encoded forms) is blanked;
* the values of credential and code fields (``"code": …``, ``key=…``,
  ``"password": …``, ``Authorization: Bearer …``) are blanked;
* the codes the caller knows (the one just sent) are blanked in any spelling
  — digits separated by spaces, dashes, dots or any other punctuation;
* every run of :data:`MIN_DIGITS` or more digits, with up to three
  separators between each, is masked: no code the flows make is shorter (and
  phone numbers go with them);
* shorter runs (a provider's own 4-digit code) are masked when ``is_live``
  says they are the challenge's live code.
"""

from __future__ import annotations

import html
import re
import unicodedata
from collections.abc import Callable, Iterable
from urllib.parse import unquote_plus

REDACTED = "[redacted]"
DIGITS = "[digits]"

#: The shortest code the flows make (``CODE_LENGTH`` is at least 6); every
#: digit run this long is masked whatever it is.
MIN_DIGITS = 6
#: Shortest and longest code any provider makes for us (telefon-ip: 4).
SHORTEST_PROVIDER_CODE, LONGEST_CODE = 4, 10
#: Characters allowed between two digits of one spelled-out number.
_SEP = r"[\W_]{0,3}"
_DIGIT_RUN = re.compile(rf"\d(?:{_SEP}\d)+")
_LONG_DIGIT_RUN = re.compile(rf"\d(?:{_SEP}\d){{{MIN_DIGITS - 1},}}")
# Field names whose value is a code or a credential, in the languages of the
# providers' answers (English, Portuguese, Russian).
_FIELD_NAMES = (
    r"code|codes|codigo|código|otp|pin|token|access_token|key|api_?key|apikey|secret|"
    r"password|passwd|pwd|pass|senha|пароль|код|токен|ключ"
)
_FIELD = re.compile(
    rf"""(?ix)
    (["']?\b(?:{_FIELD_NAMES})\b["']?\s*[:=]\s*)   # a name, then : or =
    ("(?:[^"\\]|\\.)*"|'[^']*'|[^\s,&;}}\]\)]+)      # a quoted or bare value
    """
)
_AUTH_SCHEME = re.compile(r"(?i)\b(bearer|basic|digest|token)\s+[A-Za-z0-9._~+/=-]{6,}")
# A run longer than this is masked without testing each window against the
# live code's hash (bounds the work a hostile answer can cause).
_MAX_LIVE_CANDIDATES_DIGITS = 64
_JSON_ESCAPE = re.compile(r"\\u([0-9a-fA-F]{4})|\\([\\/\"'])")


def _json_unescape(match: re.Match[str]) -> str:
    if match.group(1):
        return chr(int(match.group(1), 16))
    return match.group(2)


def unfold(text: str) -> str:
    """``text`` with its encodings decoded, as a person reading it would see it."""
    for _ in range(3):  # an echo of an echo is encoded twice
        previous = text
        text = html.unescape(text)
        text = _JSON_ESCAPE.sub(_json_unescape, text)
        if "%" in text or "+" in text:
            text = unquote_plus(text, errors="replace")
        if text == previous:
            break
    text = unicodedata.normalize("NFKC", text)
    # Zero-width and other format characters would split a number invisibly;
    # digits of other scripts (Arabic-Indic, Devanagari) read as ASCII ones;
    # control characters become spaces (a NUL byte from a garbage body cannot
    # even be stored in a PostgreSQL text column).
    return "".join(
        str(unicodedata.decimal(ch))
        if ch.isdecimal() and not ch.isascii()
        else " "
        if unicodedata.category(ch) == "Cc"
        else ch
        for ch in text
        if unicodedata.category(ch) != "Cf"
    )


def spelled(value: str) -> re.Pattern[str]:
    """A pattern for ``value`` with up to three separators between its characters."""
    return re.compile(_SEP.join(re.escape(ch) for ch in value), re.IGNORECASE)


def scrub_provider_text(
    text: str,
    *,
    codes: Iterable[str] = (),
    secrets: Iterable[str] = (),
    redact: Callable[[str], str] | None = None,
    is_live: Callable[[str], bool] | None = None,
    mask_long_digits: bool = True,
) -> str:
    """``text`` as it may be stored or logged: no code, no credential.

    :param codes: codes known to the caller (the one just sent), blanked in
        any spelling.
    :param secrets: credentials to blank besides the registered ones.
    :param redact: the registered-secrets redactor (``secret_registry.redact``).
    :param is_live: a test for a candidate digit string being the live code
        (the challenge's hash); runs shorter than :data:`MIN_DIGITS` that pass
        it are masked.
    :param mask_long_digits: mask every run of :data:`MIN_DIGITS` digits. Off
        only for provider-level texts whose message ids are long numbers; the
        audit always masks.
    """
    if not text:
        return text
    secrets = sorted({s for s in secrets if s}, key=len, reverse=True)
    # Before unfolding too: an encoded secret that unfolds into a slightly
    # different string would escape the plain comparison.
    text = _blank(text, secrets, redact)
    text = _blank(unfold(text), secrets, redact)
    text = _AUTH_SCHEME.sub(rf"\1 {REDACTED}", text)
    text = _FIELD.sub(rf"\1{REDACTED}", text)
    for code in sorted({c for c in codes if c}, key=len, reverse=True):
        text = spelled(code).sub(REDACTED, text)
    if is_live is not None:
        text = _DIGIT_RUN.sub(
            lambda m: DIGITS if _holds_live(m.group(), is_live) else m.group(), text
        )
    if mask_long_digits:
        text = _LONG_DIGIT_RUN.sub(DIGITS, text)
    return text


def blank_known_codes(text: str, codes: Iterable[str]) -> str:
    """``text`` with ``codes`` blanked in any spelling, changed as little as possible.

    The text is only unfolded (decoded) when an encoded spelling of a code
    hides in it; otherwise it comes back as it was, minus the plain spellings.
    """
    patterns = [spelled(c) for c in sorted({c for c in codes if c}, key=len, reverse=True)]
    if not text or not patterns:
        return text
    for pattern in patterns:
        text = pattern.sub(REDACTED, text)
    unfolded = unfold(text)
    if any(pattern.search(unfolded) for pattern in patterns):
        for pattern in patterns:
            unfolded = pattern.sub(REDACTED, unfolded)
        return unfolded
    return text


def _blank(text: str, secrets: list[str], redact: Callable[[str], str] | None) -> str:
    for secret in secrets:
        text = spelled(secret).sub(REDACTED, text) if len(secret) >= 4 else text
    return redact(text) if redact is not None else text


def _holds_live(run: str, is_live: Callable[[str], bool]) -> bool:
    digits = "".join(ch for ch in run if ch.isdigit())
    if len(digits) > _MAX_LIVE_CANDIDATES_DIGITS:
        return True  # too long to test window by window: masked unseen
    for length in range(SHORTEST_PROVIDER_CODE, min(len(digits), LONGEST_CODE) + 1):
        for start in range(len(digits) - length + 1):
            if is_live(digits[start : start + length]):
                return True
    return False
