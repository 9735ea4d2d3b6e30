"""OpenAPI annotations through drf-spectacular, when it is installed.

drf-spectacular is an optional extra (``pip install django-sms2fa[openapi]``);
without it the decorators do nothing and the API works the same.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

try:
    from drf_spectacular.utils import extend_schema
except ImportError:  # pragma: no cover - exercised when the extra is absent

    def extend_schema(*args: Any, **kwargs: Any) -> Callable[[Any], Any]:
        def decorate(view: Any) -> Any:
            return view

        return decorate


__all__ = ["extend_schema"]
