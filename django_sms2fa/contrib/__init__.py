"""Optional integrations with other authentication packages.

Each sub-package imports its package at import time, so install the matching
extra (``django-sms2fa[allauth]``, ``django-sms2fa[two-factor]``) before
pointing a setting at it.
"""
