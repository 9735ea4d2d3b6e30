"""The conformance kit, run against the Acme SMS example provider."""

from __future__ import annotations

import unittest
from typing import Any

from django_sms2fa.testing import Answer, ProviderConformanceTests

from .acme_provider import AcmeProvider

API_KEY = "acme-test-key-0123456789abcdef"


class AcmeConformance(ProviderConformanceTests, unittest.TestCase):
    # Values that must never show in an error, a repr or a log line.
    secrets = (API_KEY,)
    # The part of the path that marks the send request.
    send_path = "/v1/messages"
    # What we know the provider does; dropping one by mistake fails a test.
    expects_provider_checked = False
    expects_status_lookup = True
    expects_delivery_reports = False
    expects_signed_webhooks = False

    def make_provider(self, base_url: str, **overrides: Any) -> AcmeProvider:
        return AcmeProvider(api_key=API_KEY, sender="Acme", base_url=base_url, **overrides)

    def accepted_answer(self) -> Answer:
        return Answer(201, {"message_id": "msg_7Hc2", "state": "queued"})

    def number_refused_answer(self) -> Answer:
        return Answer(400, {"error": {"code": "invalid_number", "message": "Not a mobile."}})

    def credentials_refused_answer(self) -> Answer:
        return Answer(401, {"error": {"code": "unauthorized", "message": "Unknown key."}})

    # Tests of your own use the same server and hooks.

    def test_the_request_is_what_acme_documents(self) -> None:
        self.play(self.accepted_answer())
        self.build().send(self.make_sms())
        (request,) = self.server.requests
        self.assertEqual((request.method, request.path), ("POST", "/v1/messages"))
        self.assertEqual(request.headers["authorization"], f"Bearer {API_KEY}")
        self.assertEqual(
            request.json(),
            {"to": self.phone, "text": f"Your code is {self.sms_code}", "sender": "Acme"},
        )

    def test_get_status_reads_the_state(self) -> None:
        self.play(Answer(200, {"message_id": "msg_7Hc2", "state": "delivered"}))
        result = self.build().get_status("msg_7Hc2")
        self.assertEqual(result.status, "delivered")
        self.assertEqual(self.server.requests[0].path, "/v1/messages/msg_7Hc2")
