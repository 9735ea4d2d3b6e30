"""Deprecated alias of :mod:`django_sms2fa.delivery.webhooks`, kept for one release.

Import ``delivery_report`` and the constants from the new module. Setting an
attribute here changes nothing in the view: it reads its own module.
"""

import warnings
from typing import Any

from ..delivery import webhooks as _new
from ..delivery.webhooks import MAX_BODY_BYTES, SECRET_HEADER, SECRET_PARAM, delivery_report

__all__ = ["MAX_BODY_BYTES", "SECRET_HEADER", "SECRET_PARAM", "delivery_report"]

warnings.warn(
    "django_sms2fa.webhooks.views is deprecated; use django_sms2fa.delivery.webhooks",
    DeprecationWarning,
    stacklevel=2,
)


def __getattr__(name: str) -> Any:
    # Anything else the old module had (its helpers, its logger) still resolves.
    return getattr(_new, name)
