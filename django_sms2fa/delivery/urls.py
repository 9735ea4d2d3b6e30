"""Delivery webhook URLs; include them under any prefix::

    path("webhooks/sms2fa/", include("django_sms2fa.delivery.urls"))

One URL per provider alias: ``<prefix><alias>/?secret=<WEBHOOK_SECRETS[alias]>``.
"""

from django.urls import path

from . import webhooks

app_name = "sms2fa_webhooks"

urlpatterns = [
    path("<str:alias>/", webhooks.delivery_report, name="delivery_report"),
]
