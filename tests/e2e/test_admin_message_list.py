"""The message audit list at a laptop's width: 1280 px shows each row's
provider and the provider's message id without scrolling sideways.

Those two are what staff look up first (the id is what a provider's support
asks for), and a table wider than the window hides its last columns behind a
horizontal scrollbar. The rows here carry long values, as real providers
return them: a 34-character message id, a long provider alias, an error code
and a provider status.
"""

from __future__ import annotations

import re
from datetime import timedelta

from django.utils import timezone

from django_sms2fa.models import Message
from django_sms2fa.providers import locmem

from .browser import expect

PHONE = "+46701234598"
WIDTH, HEIGHT = 1280, 800
MESSAGE_ID = "SM" + "0f3c9a7be41d4b2c8e6a5d9f1b7c3e20"  # Twilio's shape: SM + 32 hex
PROVIDER = "twilio-messaging-eu"


def _log_in_to_the_admin(page) -> None:
    """django-otp's admin login: password, then the code sent by SMS."""
    page.goto("/admin/login/")
    page.fill("#id_username", "root")
    page.fill("#id_password", "admin password 1")
    page.click("input[type=submit][value='Log in']")
    page.select_option("#id_otp_device", label="Phone")
    page.fill("#id_password", "admin password 1")
    page.click("input[name=otp_challenge]")
    expect(page.locator(".errornote")).to_contain_text("A code was sent by SMS")
    code = locmem.outbox[-1].code
    page.fill("#id_password", "admin password 1")
    page.fill("#id_otp_token", code)
    page.click("input[type=submit][value='Log in']")
    expect(page).to_have_url(re.compile(r"/admin/$"))


def _inside_viewport(page, locator) -> dict[str, float]:
    """The cell's box; fails unless it lies wholly within the window and is
    not clipped by the list's own horizontal scrolling."""
    expect(locator).to_be_visible()
    box = locator.bounding_box()
    assert box is not None
    assert box["x"] >= 0 and box["x"] + box["width"] <= WIDTH, (
        f"the cell spans x {box['x']:.0f}–{box['x'] + box['width']:.0f}, "
        f"outside the {WIDTH} px window"
    )
    assert box["y"] >= 0 and box["y"] + box["height"] <= HEIGHT, box
    # The list scrolls inside its own box (Django's .results): a cell past its
    # right edge is hidden even when the window is wider.
    clip = page.locator("#changelist .results").bounding_box()
    assert box["x"] + box["width"] <= clip["x"] + clip["width"] + 0.5, (box, clip)
    return box


def test_message_list_shows_provider_and_message_id_at_1280(page, make_user, screenshot):
    make_user("root", password="admin password 1", phone=PHONE, staff=True)
    page.set_viewport_size({"width": WIDTH, "height": HEIGHT})
    _log_in_to_the_admin(page)

    now = timezone.now()
    Message.objects.create(
        phone="+46701234567",
        provider=PROVIDER,
        provider_message_id=MESSAGE_ID,
        status="failed",
        provider_status="undelivered_by_carrier",
        error_code="30008-unknown-error",
        error_text="Unknown error from the carrier",
        text_masked="Your code is ••••••",
        created_at=now - timedelta(minutes=3),
        sent_at=now - timedelta(minutes=3),
        latency_ms=1234,
    )

    page.goto("/admin/django_sms2fa/message/")
    row = page.locator("#result_list tbody tr", has_text=MESSAGE_ID)
    expect(row).to_have_count(1)
    provider = row.locator("td", has_text=PROVIDER)
    message_id = row.locator("td", has_text=MESSAGE_ID)
    expect(provider).to_have_count(1)
    expect(message_id).to_have_count(1)
    screenshot(page, "admin_message_list_1280")
    _inside_viewport(page, provider)
    _inside_viewport(page, message_id)
    # The whole id is there to read and copy, not cut to an ellipsis.
    assert MESSAGE_ID in message_id.inner_text()
