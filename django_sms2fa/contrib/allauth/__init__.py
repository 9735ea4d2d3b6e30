"""django-allauth's phone codes through this app (docs/integrations/allauth.md).

Point ``ACCOUNT_ADAPTER`` at
:class:`django_sms2fa.contrib.allauth.adapter.Sms2faAccountAdapter`. No app to
add to ``INSTALLED_APPS``: the phones are this app's ``PhoneDevice`` rows.
"""
