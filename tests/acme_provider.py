"""Acme SMS: a small provider for an imaginary JSON API.

The example of docs/writing-a-provider.md. The API:

* ``POST /v1/messages`` with ``{"to": "+46701234567", "text": "...",
  "sender": "Acme"}`` (``sender`` optional) and ``Authorization: Bearer
  <api key>`` answers ``201 {"message_id": "msg_7Hc2", "state": "queued"}``;
* ``GET /v1/messages/<message_id>`` answers ``200`` with the same object,
  ``state`` one of ``queued``, ``sent``, ``delivered``, ``failed``;
* errors are ``{"error": {"code": "...", "message": "..."}}`` with status
  400 (``invalid_number`` …), 401 or 403 (the key), 404, 429 (with
  ``Retry-After``) or 5xx.
"""

from __future__ import annotations

import re
from typing import Any

from django_sms2fa.exceptions import (
    ProviderRejected,
    ProviderUnavailable,
    Sms2faConfigurationError,
)
from django_sms2fa.providers.http import HttpAnswer, HttpProvider
from django_sms2fa.types import (
    DELIVERED,
    FAILED,
    QUEUED,
    SENT,
    UNKNOWN,
    Capabilities,
    OutgoingSms,
    SendResult,
)

# Acme's states, as our normalized statuses.
STATES = {"queued": QUEUED, "sent": SENT, "delivered": DELIVERED, "failed": FAILED}
# A message id goes into a URL path: nothing but letters, digits, - and _.
_MESSAGE_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


class AcmeProvider(HttpProvider):
    """Sends our text through Acme SMS; we make and check the code.

    :param api_key: the account's API key (required, secret).
    :param sender: the sender name the phone shows (optional).

    plus the :class:`HttpProvider` options (``base_url``, timeouts …).
    """

    provider_name = "Acme SMS"
    default_base_url = "https://api.acme-sms.example"
    # Mode (a): Acme delivers the text we give it, code included.
    capabilities = Capabilities(delivers_text=True)

    def __init__(self, *, api_key: str, sender: str = "", **options: Any) -> None:
        # HttpProvider takes the common options and refuses unknown ones.
        super().__init__(**options)
        if not isinstance(api_key, str) or not api_key.strip():
            # Name the option, never its value.
            raise Sms2faConfigurationError(
                f"AcmeProvider (provider {self.alias!r}) needs a non-empty api_key.",
                check_id="sms2fa.E002",
            )
        self._api_key = api_key.strip()
        # From here on the key is blanked in every error text and log line.
        self.add_secrets(self._api_key)
        self.sender = sender

    def _send(self, sms: OutgoingSms) -> SendResult:
        body = {"to": sms.to, "text": sms.text}
        if self.sender:
            body["sender"] = self.sender
        answer = self.call("POST", "/v1/messages", json_body=body, headers=self._headers())
        return self._result(answer)

    def get_status(self, message_id: str) -> SendResult:
        """Look up a sent message's state."""
        if not _MESSAGE_ID.fullmatch(message_id):
            raise self.rejected(None, "invalid_message_id", "not an Acme message id")
        answer = self.call("GET", f"/v1/messages/{message_id}", headers=self._headers())
        return self._result(answer)

    # --------------------------------------------------------------- helpers

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._api_key}", "Accept": "application/json"}

    def _result(self, answer: HttpAnswer) -> SendResult:
        """The message a 2xx answer describes; any other answer raises."""
        if not 200 <= answer.status < 300:
            raise self._error(answer)
        data = answer.json()
        message_id = data.get("message_id") if isinstance(data, dict) else None
        if not isinstance(message_id, str) or not message_id.strip():
            # HTML, empty, not JSON, no id: Acme may or may not have taken
            # the SMS, so it is an uncertain outcome, never a success.
            raise self.malformed(answer, "no message_id in Acme's answer")
        state = str(data.get("state") or "")
        return SendResult(
            message_id=message_id.strip(),
            status=STATES.get(state, UNKNOWN),
            provider_status=state[:64],
            # Only what we read: an echo of our request would carry the code.
            raw={"message_id": message_id.strip(), "state": state},
        )

    def _error(self, answer: HttpAnswer) -> ProviderRejected | ProviderUnavailable:
        data = answer.json()
        error = data.get("error") if isinstance(data, dict) else None
        error = error if isinstance(error, dict) else {}
        code = str(error.get("code") or "")[:64]
        text = str(error.get("message") or "")
        if answer.status in (401, 403):
            code = "auth"  # the key: another provider may take the SMS
        # http_error applies the failover rule: 429/502/503 not sent,
        # other 5xx may have sent, 4xx a refusal; it also redacts the text.
        return self.http_error(answer, provider_code=code, provider_text=text)
