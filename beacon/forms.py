"""Form fields by the rules of the API's input (`beacon.parsers`), for the admin's forms."""
from django import forms
from django.core.exceptions import ValidationError
from django.forms.fields import InvalidJSONInput

from beacon.parsers import loads


class StorableJSONField(forms.JSONField):
    """Django's JSON form field, refusing as a field error what the database cannot store or Python
    cannot parse (NUL, lone surrogates, 1e400, nesting past `MAX_JSON_DEPTH`; each was a 500)."""

    def to_python(self, value):
        if isinstance(value, str) and value not in self.empty_values and not self.disabled:
            try:
                loads(value)
            except ValueError as exc:
                raise ValidationError(f"Enter valid JSON: {exc}.", code="invalid") from None
        return super().to_python(value)

    def bound_data(self, data, initial):
        # The refused text is shown back as it was typed, never parsed again.
        if isinstance(data, str) and not self.disabled:
            try:
                loads(data)
            except ValueError:
                return InvalidJSONInput(data)
        return super().bound_data(data, initial)
