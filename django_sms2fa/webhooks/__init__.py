"""Deprecated: delivery webhooks moved to :mod:`django_sms2fa.delivery`.

``webhooks.urls`` and ``webhooks.views`` still work for one release and warn
(``DeprecationWarning``) when imported; include ``django_sms2fa.delivery.urls``
instead. This package is removed in the release after.
"""
