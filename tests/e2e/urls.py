"""The browser tests are served the example site's URLs: its home page (which
says who is logged in), the sms2fa pages at /2fa/, the OTP admin at /admin/
and the DEBUG-only dev outbox at /dev/outbox/."""

from example.urls import urlpatterns

__all__ = ["urlpatterns"]
