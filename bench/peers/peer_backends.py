"""Fake senders for the peers: each keeps the last code it was given to send."""

from phone_verify.backends.base import BaseBackend
from trench.backends.base import AbstractMessageDispatcher
from trench.responses import SuccessfulDispatchResponse

#: The last code each peer "sent", read by bench/peers/run.py.
sent: dict[str, str] = {}


class PhoneVerifyOutbox(BaseBackend):
    """django-phone-verify backend: the message is the bare security code."""

    def send_sms(self, number, message):
        sent["phone_verify"] = message

    def send_bulk_sms(self, numbers, message):  # pragma: no cover
        sent["phone_verify"] = message


class TrenchOutbox(AbstractMessageDispatcher):
    """django-trench handler: an SMS method whose provider is a dict."""

    def dispatch_message(self):
        sent["trench"] = self.create_code()
        return SuccessfulDispatchResponse(details="sent")
