"""Playwright's ``expect``, importable even where Playwright is missing (the
``browser`` fixture then skips or fails the tests with the reason)."""

from __future__ import annotations

from typing import Any

try:
    from playwright.sync_api import expect
except ImportError:  # pragma: no cover - reported by the browser fixture
    expect: Any = None

__all__ = ["expect"]
