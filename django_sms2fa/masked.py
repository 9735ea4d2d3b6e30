"""A password that hides itself from error reports.

Django's ``authenticate()`` marks only its own ``credentials`` as sensitive,
and that narrower mark applies to every frame below it: when something fails
inside an authentication backend (the database gone), Django's error report
(the mail ``AdminEmailHandler`` sends, the technical 500 page) prints the
backend's ``password`` argument in clear. Django's own ``LoginView`` has the
same gap. The app's login views hand backends a :class:`MaskedStr`, which is
the same text to every backend and hasher but whose ``repr`` — what the
report prints for a frame's variables — shows nothing of it.
"""

from __future__ import annotations


class MaskedStr(str):
    """A ``str`` whose ``repr`` never shows its value."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "'********************'"
