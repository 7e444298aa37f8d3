"""Forms of the MFA pages: plain Django forms (labels, autocomplete hints, length bounds)."""

from __future__ import annotations

from django import forms


class CodeForm(forms.Form):
    """A code from the authenticator app (6 digits) or a recovery code."""

    code = forms.CharField(
        label="Code",
        max_length=24,
        strip=True,
        widget=forms.TextInput(
            attrs={
                "autocomplete": "one-time-code",
                "inputmode": "text",
                "autocapitalize": "off",
                "spellcheck": "false",
                "autofocus": True,
            }
        ),
    )


class PasswordForm(forms.Form):
    """Re-authentication before a change to the second factor."""

    password = forms.CharField(
        label="Your password",
        max_length=4096,
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "current-password"}),
    )
