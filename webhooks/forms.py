"""The webhooks page's form: what the API's input serializer takes, as a form."""
from django import forms

from webhooks.models import EventType
from webhooks.transport import MAX_URL_LENGTH


class SubscriptionForm(forms.Form):
    url = forms.CharField(label="URL", max_length=MAX_URL_LENGTH, help_text="Where Beacon POSTs, http or https.")
    events = forms.MultipleChoiceField(label="Events", choices=EventType.choices, widget=forms.CheckboxSelectMultiple)
    humans_only = forms.BooleanField(
        label="People only", required=False, initial=True,
        help_text="Leave out events flagged as machine (mail scanners, bots); each message says whether it is one.",
    )
    secret = forms.CharField(
        label="Secret", required=False, max_length=100, strip=False,
        help_text="Leave empty to have one made (shown once). Else whsec_ followed by the base64 of 24 to 64 bytes.",
    )
