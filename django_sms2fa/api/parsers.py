"""What the API reads (JSON, safely) and what it answers in (JSON, always).

:class:`JSONParser` is DRF's, with every malformed body a 400 ``parse_error``:
DRF's catches ``ValueError`` only, and the standard library's parser raises
``RecursionError`` on deep nesting (``[`` a hundred thousand times), which
became a 500. Only text charsets are decoded (a compression codec named as the
charset would inflate the body). Bodies are bounded in size
(``DATA_UPLOAD_MAX_MEMORY_SIZE``, 413 ``request_too_large``, as Django bounds
form bodies) and in depth (:data:`MAX_DEPTH`): no request of this API nests at
all, so nothing deep is handed on to code that might recurse over it.

:class:`JSONOnlyNegotiation` answers JSON whatever the client's ``Accept``
says: a browser (``Accept: text/html,…``) gets the JSON error, not DRF's
browsable HTML page, and no client gets a 406.
"""

from __future__ import annotations

import codecs
import json
from typing import IO, Any

from rest_framework import parsers
from rest_framework.exceptions import ParseError
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.renderers import BaseRenderer

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.utils.translation import gettext as _

#: Deepest nesting of arrays and objects a body may have. The API's bodies
#: are flat objects of strings and numbers (depth 1).
MAX_DEPTH = 32

PARSE_ERROR = "parse_error"


def _refuse_constant(name: str) -> Any:
    # NaN and ±Infinity are not JSON (RFC 8259), though Python writes them.
    raise ValueError(f"{name} is not valid JSON")


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser, but any body it cannot take is a ``ParseError``.

    The message is fixed (it never echoes the body) and the error code is
    ``parse_error``, as DRF's for a syntax error.
    """

    def parse(
        self,
        stream: IO[bytes],
        media_type: str | None = None,
        parser_context: dict[str, Any] | None = None,
    ) -> Any:
        parser_context = parser_context or {}
        encoding = parser_context.get("encoding", settings.DEFAULT_CHARSET)
        try:
            # Text codecs only: Django takes any charset codecs.lookup() knows,
            # and "bz2_codec" or "zlib_codec" would inflate a small body
            # without bound after its size was checked.
            "".encode(encoding)
        except (LookupError, UnicodeError):
            raise ParseError(_("The body's charset is not supported."), code=PARSE_ERROR) from None
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        raw = stream.read() if limit is None else stream.read(limit + 1)
        if limit is not None and len(raw) > limit:
            # Django refuses a form body this big; a JSON body gets the same.
            raise RequestDataTooBig(_("The request is too large."))
        try:
            text = codecs.decode(raw, encoding)
            data = json.loads(text, parse_constant=_refuse_constant)
        except RecursionError:
            raise ParseError(_("The JSON body is nested too deeply."), code=PARSE_ERROR) from None
        except ValueError:
            # Syntax errors, invalid UTF-8 (UnicodeDecodeError), numbers with
            # more digits than int() takes, NaN: all a ValueError.
            raise ParseError(_("The body is not valid JSON."), code=PARSE_ERROR) from None
        if _deeper_than(data, MAX_DEPTH):
            raise ParseError(_("The JSON body is nested too deeply."), code=PARSE_ERROR)
        return data


def _deeper_than(data: Any, limit: int) -> bool:
    """Whether ``data`` nests arrays/objects more than ``limit`` deep.

    Iterative: a recursive walk could itself overflow on what the parser let
    through."""
    stack = [(data, 0)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, (list, dict)):
            if depth >= limit:
                return True
            children = value.values() if isinstance(value, dict) else value
            stack.extend((child, depth + 1) for child in children)
    return False


class JSONOnlyNegotiation(DefaultContentNegotiation):
    """Always the view's first renderer (JSON), whatever ``Accept`` or
    ``?format=`` ask for.

    DRF would answer 406 to ``Accept: text/html`` with only JSON on offer; a
    browser sends such headers, and an error is more useful to it in the
    API's error shape than as a 406. Parsers are chosen as DRF does.
    """

    def select_renderer(
        self, request: Any, renderers: list[BaseRenderer], format_suffix: str | None = None
    ) -> tuple[BaseRenderer, str]:
        renderer = renderers[0]
        return renderer, renderer.media_type
