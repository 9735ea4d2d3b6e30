"""Schemathesis hooks for the django-sms2fa API (loaded by run.sh through
SCHEMATHESIS_HOOKS; not a pytest module).

Django routes ``devices/<int:device_id>/`` and ``challenges/<str:challenge_id>/``
before any API code runs: a path value the URL pattern cannot match (``-1``,
``1.5``, ``""``, a value with a ``/``) gets Django's own 404 page, which is
HTML and not part of the API. Negative cases that put such a value in the path
are sent with a routable id that does not exist instead, so they still test
the API's own answer to a bad id (a JSON 404), and everything else they
mutate is sent as generated.
"""

from __future__ import annotations

import re
from typing import Any

import schemathesis

_DIGITS = re.compile(r"[0-9]+")
# Ids that route but name nothing: the API answers them 404 (JSON).
_UNKNOWN_DEVICE_ID = "987654321"
_UNKNOWN_CHALLENGE_ID = "not-a-challenge"


def _routable_device_id(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    return isinstance(value, (int, str)) and bool(_DIGITS.fullmatch(str(value)))


def _routable_challenge_id(value: Any) -> bool:
    # Lists, objects, booleans and null are serialised in ways that may be
    # empty or hold a "/": treat them as unroutable.
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        return False
    text = str(value)
    return bool(text) and "/" not in text and text not in {".", ".."}


@schemathesis.hook
def map_case(context: Any, case: Any) -> Any:
    params = case.path_parameters
    if not params:
        return case
    if "device_id" in params and not _routable_device_id(params["device_id"]):
        params["device_id"] = _UNKNOWN_DEVICE_ID
    if "challenge_id" in params and not _routable_challenge_id(params["challenge_id"]):
        params["challenge_id"] = _UNKNOWN_CHALLENGE_ID
    return case
