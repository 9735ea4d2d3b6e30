"""Helpers shared by the REST API tests."""

from __future__ import annotations

API = "/api/2fa/"
ERROR_KEYS = {"code", "message", "fields", "attempts_left", "retry_after"}


def api_post(client, path, data=None):
    return client.post(API + path, {} if data is None else data, content_type="application/json")


def assert_error(response, status, code):
    """The one error shape; 429 with ``retry_after`` equal to ``Retry-After``."""
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert list(body) == ["error"], body
    error = body["error"]
    assert error["code"] == code, error
    assert isinstance(error["message"], str) and error["message"]
    assert set(error) <= ERROR_KEYS, error
    if status == 429:
        assert isinstance(error["retry_after"], int) and error["retry_after"] >= 0
        assert response["Retry-After"] == str(error["retry_after"])
    else:
        assert "retry_after" not in error
        assert not response.has_header("Retry-After")
    return error
