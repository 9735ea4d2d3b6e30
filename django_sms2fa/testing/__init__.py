"""Test helpers for provider authors: a loopback HTTP server and a conformance kit.

::

    import unittest

    from django_sms2fa.testing import Answer, ProviderConformanceTests

    class AcmeConformance(ProviderConformanceTests, unittest.TestCase):
        ...

See docs/writing-a-provider.md. Nothing here needs pytest; the test cases
need configured Django settings, as any test of this app does.
"""

from __future__ import annotations

from .conformance import (
    ProviderConformanceTests,
    ProviderDeclarationTests,
    Script,
    capture_logs,
)
from .loopback import Answer, LoopbackServer, Recorded, free_port

__all__ = [
    "Answer",
    "LoopbackServer",
    "ProviderConformanceTests",
    "ProviderDeclarationTests",
    "Recorded",
    "Script",
    "capture_logs",
    "free_port",
]
