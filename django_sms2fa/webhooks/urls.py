"""Delivery webhook URLs; include them under any prefix::

    path("webhooks/sms2fa/", include("django_sms2fa.webhooks.urls"))

One URL per provider alias: ``<prefix><alias>/?secret=<WEBHOOK_SECRETS[alias]>``.
"""

from django.urls import path

from . import views

app_name = "sms2fa_webhooks"

urlpatterns = [
    path("<str:alias>/", views.delivery_report, name="delivery_report"),
]
