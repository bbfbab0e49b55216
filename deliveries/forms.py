"""The forms of the delivery pages (and the admin's): they check the shape of what was typed; the
delivery services decide the rest, and their field messages land beside the right input."""
import zoneinfo
from datetime import datetime
from functools import cache

from django import forms
from django.conf import settings
from django.core.exceptions import ValidationError

from beacon.send_rates import MAX_RATE_PER_HOUR
from beacon.storable import UNSTORABLE_MESSAGE, is_storable
from deliveries.models import Delivery, TrackingMode
from deliveries.services import CONTENT_LINK_MODES, MAX_CONTENT_CHARACTERS, MAX_ID, segment_choices
from profiles.models import List

DELIVERY_FIELDS = [
    "label", "subject", "from_email", "reply_to", "html", "text", "lists", "segments", "track_opens", "track_clicks", "mirror_page",
    "max_per_hour",
]


def add_service_errors(form: forms.BaseForm, error: ValidationError) -> None:
    """Adds a service's field messages to the form, except on a field the form already refused: the
    service saw that field as blank (it failed its own checks), so "required" would repeat the error."""
    for field, messages in (error.message_dict if hasattr(error, "error_dict") else {None: error.messages}).items():
        field = field if field in form.fields else None
        if field is None or field not in form.errors:
            form.add_error(field, messages)


class ListsField(forms.ModelMultipleChoiceField):
    """Lists by id; an id no database column can hold is refused before the query (SQLite raises
    OverflowError for it, where PostgreSQL finds nothing)."""

    def _check_values(self, value):
        for pk in value:
            text = str(pk)
            if not (text.isascii() and text.isdigit() and 0 < int(text) <= MAX_ID):
                raise ValidationError(self.error_messages["invalid_pk_value"], code="invalid_pk_value", params={"pk": text[:50]})
        return super()._check_values(value)


class DeliveryForm(forms.Form):
    """A delivery's content, audience and options, as the services take them (`delivery_create`, `delivery_update`)."""

    label = forms.CharField(max_length=200)
    subject = forms.CharField(max_length=998, widget=forms.TextInput(attrs={"data-personalize": "1"}))
    from_email = forms.EmailField(max_length=254, label="From")
    reply_to = forms.EmailField(max_length=254, required=False, label="Reply-to")
    html = forms.CharField(
        required=False, strip=False, max_length=MAX_CONTENT_CHARACTERS, label="HTML content",
        widget=forms.Textarea(attrs={"rows": 18, "class": "code", "data-personalize": "1", "spellcheck": "false"}),
    )
    text = forms.CharField(
        required=False, strip=False, max_length=MAX_CONTENT_CHARACTERS, label="Text content",
        widget=forms.Textarea(attrs={"rows": 8, "class": "code", "data-personalize": "1"}),
    )
    lists = ListsField(
        queryset=List.objects.order_by("name"), required=False, widget=forms.CheckboxSelectMultiple, label="Audience lists",
    )
    segments = forms.TypedMultipleChoiceField(
        coerce=int, required=False, widget=forms.CheckboxSelectMultiple, label="Audience segments",
        help_text="Who is in a segment when the delivery is analyzed gets it.",
    )
    track_opens = forms.BooleanField(required=False, initial=True, label="Track opens")
    track_clicks = forms.BooleanField(required=False, initial=True, label="Track clicks")
    mirror_page = forms.BooleanField(required=False, initial=True, label="Mirror page")
    max_per_hour = forms.IntegerField(
        required=False, min_value=1, max_value=MAX_RATE_PER_HOUR, label="At most this many messages per hour",
        help_text="Empty: as fast as the relay and the domain rates allow.",
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # The maxlength attribute would cut a paste silently in the browser; the form says it instead.
        for field in self.fields.values():
            field.widget.attrs.pop("maxlength", None)
        self.fields["segments"].choices = segment_choices.get()()

    @staticmethod
    def initial_of(delivery: Delivery) -> dict:
        return {name: getattr(delivery, name) for name in DELIVERY_FIELDS if name != "lists"} | {
            "lists": list(delivery.lists.all()),
        }


class TrackedUrlForm(forms.Form):
    """One link found at analysis: its label and category in the reports, and whether it is tracked."""

    id = forms.IntegerField(widget=forms.HiddenInput, min_value=1, max_value=MAX_ID)
    label = forms.CharField(max_length=300, required=False)
    category = forms.CharField(max_length=100, required=False)
    mode = forms.ChoiceField(choices=[(mode, TrackingMode(mode).label) for mode in CONTENT_LINK_MODES])


TrackedUrlFormSet = forms.formset_factory(TrackedUrlForm, extra=0, max_num=1000, absolute_max=1000)


class ProofForm(forms.Form):
    emails = forms.CharField(
        max_length=5000, label="Send a proof to",
        help_text="One or more addresses, separated by commas or new lines.",
        widget=forms.Textarea(attrs={"rows": 2}),
    )
    # The profile the page previews as, so that the proof is what the marketer saw; none: the first recipient.
    profile = forms.IntegerField(required=False, min_value=1, max_value=MAX_ID, widget=forms.HiddenInput)

    def clean_emails(self) -> list[str]:
        return [address for address in self.cleaned_data["emails"].replace(",", "\n").split() if address]


@cache
def _time_zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


class LocalTimeField(forms.DateTimeField):
    """A `datetime-local` value. Python's date parsing stops at a NUL and would take what comes before
    it: the field refuses it first."""

    def to_python(self, value):
        if isinstance(value, str) and not is_storable(value):
            raise ValidationError(f"This value {UNSTORABLE_MESSAGE}.", code="unstorable")
        return super().to_python(value)


class ScheduleForm(forms.Form):
    """When a delivery starts: a wall-clock time in the marketer's time zone, which the page's script
    fills in from the browser (`static/deliveries/schedule.js`); without it, the server's `TIME_ZONE`.
    The browser's zone, not a setting per user: it is where the marketer is as they type, and the page
    shows it beside the field, so the time they read is the time they mean."""

    at = LocalTimeField(
        label="Start sending at",
        input_formats=["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S"],
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
    )
    timezone = forms.CharField(required=False, max_length=64, widget=forms.HiddenInput(attrs={"data-browser-timezone": "1"}))

    def clean_timezone(self) -> str:
        name = self.cleaned_data["timezone"] or settings.TIME_ZONE
        if name not in _time_zones() and name != "UTC":
            raise ValidationError("Unknown time zone.")
        return name

    def clean(self) -> dict:
        data = super().clean()
        if isinstance(data.get("at"), datetime) and data.get("timezone"):
            # The field made the typed time aware in the server's zone; it was typed in the marketer's.
            data["at"] = data["at"].replace(tzinfo=None).replace(tzinfo=zoneinfo.ZoneInfo(data["timezone"]))
        return data
