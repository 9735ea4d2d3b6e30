"""Template tag libraries of django_sms2fa (``{% load sms2fa_admin %}``)."""
