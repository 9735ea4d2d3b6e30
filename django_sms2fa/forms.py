"""Forms of the HTML pages: input shapes only.

Phones and codes are checked by the flows (one rule, in one place); these
forms only make sure something was typed, and render accessible fields: every
field has a ``<label for>``, and a field with an error says so
(``aria-invalid``) and points to its error text (``aria-describedby``), on
every Django version the app supports.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.utils.translation import gettext_lazy as _


class TelInput(forms.TextInput):
    input_type = "tel"


class AccessibleForm(forms.Form):
    """Ties each field's error list (``<id>_error``) and help text to its input."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("label_suffix", "")  # the label is "Code", not "Code:"
        super().__init__(*args, **kwargs)

    def full_clean(self) -> None:
        super().full_clean()
        self.mark_errors()

    def add_error(self, field: str | None, error: Any) -> None:
        super().add_error(field, error)
        self.mark_errors()

    def mark_errors(self) -> None:
        if not hasattr(self, "_errors") or self._errors is None:
            return
        for name, field in self.fields.items():
            bound = self[name]
            described = []
            if field.help_text:
                described.append(f"{bound.auto_id}_helptext")
            if name in self._errors:
                described.append(f"{bound.auto_id}_error")
                field.widget.attrs["aria-invalid"] = "true"
            else:
                field.widget.attrs.pop("aria-invalid", None)
            if described:
                field.widget.attrs["aria-describedby"] = " ".join(described)
            else:
                field.widget.attrs.pop("aria-describedby", None)


class LoginForm(AccessibleForm):
    username = forms.CharField(
        label=_("Username"),
        max_length=254,
        widget=forms.TextInput(attrs={"autocomplete": "username", "autocapitalize": "none"}),
    )
    password = forms.CharField(
        label=_("Password"),
        strip=False,
        max_length=4096,
        widget=forms.PasswordInput(attrs={"autocomplete": "current-password"}),
    )


class PhoneForm(AccessibleForm):
    phone = forms.CharField(
        label=_("Phone number"),
        # Long enough for any way of writing an E.164 number; the flows
        # normalize and check it.
        max_length=64,
        help_text=_("With the country code, for example +46 70 123 45 67."),
        widget=TelInput(attrs={"autocomplete": "tel"}),
    )


class CodeForm(AccessibleForm):
    code = forms.CharField(
        label=_("Code"),
        max_length=32,
        help_text=_("The code from the SMS we sent you."),
        widget=forms.TextInput(
            attrs={
                # Browsers and password managers offer the code from the SMS.
                "autocomplete": "one-time-code",
                "inputmode": "numeric",
                "autocapitalize": "none",
                "spellcheck": "false",
            }
        ),
    )

    def reject(self, message: Any) -> None:
        """Show ``message`` on the code field and do not echo what was typed:
        the page never holds a code, right or wrong."""
        data = self.data.copy()
        data["code"] = ""
        self.data = data
        self.add_error("code", message)


class AppCodeForm(CodeForm):
    """The code of an authenticator app."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["code"].help_text = _("The 6-digit code your authenticator app shows.")


class RecoveryCodeForm(CodeForm):
    """One of the user's recovery codes: letters and digits."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["code"]
        field.label = _("Recovery code")
        field.help_text = _("One of the recovery codes you saved, for example abcde-fghjk.")
        field.widget.attrs.update({"inputmode": "text", "autocomplete": "off"})
