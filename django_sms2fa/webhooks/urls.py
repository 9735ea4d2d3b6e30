"""Deprecated alias of :mod:`django_sms2fa.delivery.urls`, kept for one release.

Include the new module instead; the URLs, ``app_name`` and URL names are the
same, so only the ``include()`` line changes::

    path("webhooks/sms2fa/", include("django_sms2fa.delivery.urls"))
"""

import warnings

from ..delivery.urls import app_name, urlpatterns

__all__ = ["app_name", "urlpatterns"]

# Module level: Python imports a module once, so this warns once per process,
# at the include() that still names the old path.
warnings.warn(
    "django_sms2fa.webhooks.urls is deprecated; include django_sms2fa.delivery.urls",
    DeprecationWarning,
    stacklevel=2,
)
