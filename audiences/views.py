"""The segment pages: `/segments/` (names; a marketer writes a new one with a count preview) and
`/segments/<id>/` (its count, its first members, edit, freeze into a list, delete), and the reports'
one-click audiences (`/segments/from-report/`). Viewers see names and counts, not members or rules."""
import json

from django import forms
from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from accounts.decorators import action_required
from accounts.roles import MANAGE, READ_PERSONAL_DATA, READ_REPORTS, can
from audiences import selectors, services
from audiences.rules import MAX_ID, MAX_STRING, REACTIONS
from beacon.exceptions import ServiceError
from beacon.parsers import loads

MEMBERS_SHOWN = 50
EXAMPLE_RULE = '{"all": [\n  {"event": "click", "within_days": 30},\n  {"field": "email_domain", "op": "ne", "value": "example.com"}\n]}'


class SegmentForm(forms.Form):
    name = forms.CharField(max_length=200)
    rule = forms.CharField(
        max_length=20_000, strip=False,
        widget=forms.Textarea(attrs={"rows": 10, "class": "code", "spellcheck": "false"}),
        help_text='JSON: all, any, not; {"field", "op", "value"}; {"list": id}; {"event", "delivery", "url_label", "within_days"}.',
    )

    def clean_rule(self):
        try:
            return loads(self.cleaned_data["rule"])
        except ValueError as exc:
            raise ValidationError(f"Not valid JSON: {exc}") from None


class FreezeForm(forms.Form):
    name = forms.CharField(max_length=200, label="New list name")


class FromReportForm(forms.Form):
    delivery = forms.IntegerField(min_value=1, max_value=MAX_ID)
    reaction = forms.ChoiceField(choices=list(REACTIONS.items()))
    url_label = forms.CharField(max_length=MAX_STRING, required=False)
    make = forms.ChoiceField(choices=[("segment", "Segment"), ("list", "List"), ("csv", "CSV")])


def _service_errors(form: forms.Form, error: ValidationError | ServiceError) -> None:
    if isinstance(error, ServiceError):
        for field, field_messages in (error.fields or {None: [error.message]}).items():
            form.add_error(field if field in form.fields else None, field_messages)
        return
    for field, field_messages in error.message_dict.items():
        form.add_error(field if field in form.fields else None, field_messages)


def _preview(form: SegmentForm) -> int | None:
    """The count of the typed rule, or None with the rule's fault on the form."""
    try:
        return selectors.rule_preview(rule=form.cleaned_data["rule"])[1]
    except ServiceError as exc:
        _service_errors(form, exc)
        return None


@action_required(READ_REPORTS)
@require_http_methods(["GET", "POST"])
def segment_list(request: HttpRequest) -> HttpResponse:
    """GET: the segments; POST (marketers): `preview` counts the typed rule, otherwise it is created."""
    may_manage = can(request.user, MANAGE)
    form = SegmentForm(request.POST or None, initial={"rule": EXAMPLE_RULE}) if may_manage else None
    preview_count, status = None, 200
    if request.method == "POST":
        if not may_manage:
            raise PermissionDenied
        if form.is_valid() and "preview" in request.POST:
            preview_count = _preview(form)
        elif form.is_valid():
            try:
                segment = services.segment_create(name=form.cleaned_data["name"], rule=form.cleaned_data["rule"], actor=request.user)
            except (ValidationError, ServiceError) as exc:
                _service_errors(form, exc)
            else:
                messages.success(request, "Segment created.")
                return redirect("audiences:segment-detail", segment_id=segment.pk)
        if form.errors:
            status = 400
    return render(request, "audiences/segment_list.html", {
        "segments": selectors.segment_list(),
        "form": form,
        "preview_count": preview_count,
    }, status=status)


@action_required(READ_REPORTS)
@require_http_methods(["GET", "POST"])
def segment_detail(request: HttpRequest, segment_id: int) -> HttpResponse:
    """GET: the count (and, to those who may read personal data, the rule and first members); POST
    (marketers): the edit, previewed or saved."""
    segment = selectors.segment_get(segment_id=segment_id)
    may_manage = can(request.user, MANAGE)
    personal = can(request.user, READ_PERSONAL_DATA)
    form = None
    preview_count, status = None, 200
    if may_manage:
        initial = {"name": segment.name, "rule": json.dumps(segment.rule, indent=2)}
        form = SegmentForm(request.POST or None, initial=initial)
    if request.method == "POST":
        if not may_manage:
            raise PermissionDenied
        if form.is_valid() and "preview" in request.POST:
            preview_count = _preview(form)
        elif form.is_valid():
            try:
                services.segment_update(
                    segment_id=segment.pk, name=form.cleaned_data["name"], rule=form.cleaned_data["rule"], actor=request.user,
                )
            except (ValidationError, ServiceError) as exc:
                _service_errors(form, exc)
            else:
                messages.success(request, "Segment saved.")
                return redirect("audiences:segment-detail", segment_id=segment.pk)
        if form.errors:
            status = 400
    members = selectors.segment_profiles(segment=segment)[:MEMBERS_SHOWN] if personal else None
    return render(request, "audiences/segment_detail.html", {
        "segment": segment,
        "count": selectors.segment_count(segment=segment),
        "rule_text": json.dumps(segment.rule, indent=2) if personal else "",
        "members": members,
        "members_shown": MEMBERS_SHOWN,
        "form": form,
        "freeze_form": FreezeForm() if may_manage else None,
        "preview_count": preview_count,
    }, status=status)


@action_required(MANAGE)
@require_POST
def segment_freeze(request: HttpRequest, segment_id: int) -> HttpResponse:
    form = FreezeForm(request.POST)
    if form.is_valid():
        try:
            list_obj = services.segment_freeze(segment_id=segment_id, list_name=form.cleaned_data["name"])
        except (ValidationError, ServiceError) as exc:
            _service_errors(form, exc)
        else:
            messages.success(request, f"The list “{list_obj.name}” holds who is in the segment now.")
            return redirect("profiles:list-detail", list_id=list_obj.pk)
    messages.error(request, " ".join(message for errors in form.errors.values() for message in errors))
    return redirect("audiences:segment-detail", segment_id=segment_id)


@action_required(MANAGE)
@require_POST
def segment_delete(request: HttpRequest, segment_id: int) -> HttpResponse:
    try:
        services.segment_delete(segment_id=segment_id)
    except ServiceError as exc:
        messages.error(request, exc.message)
        return redirect("audiences:segment-detail", segment_id=segment_id)
    messages.success(request, "Segment deleted.")
    return redirect("audiences:segment-list")


@action_required(MANAGE)
@require_POST
def segment_from_report(request: HttpRequest) -> HttpResponse:
    """The buttons of a delivery's reports: who opened, clicked (a link), did not open, as a new segment,
    a new list, or a CSV download."""
    form = FromReportForm(request.POST)
    if not form.is_valid():
        return HttpResponse("Invalid request: " + "; ".join(f"{k}: {' '.join(v)}" for k, v in form.errors.items()),
                            status=400, content_type="text/plain; charset=utf-8")
    wanted = dict(form.cleaned_data)
    make = wanted.pop("make")
    wanted["delivery_id"] = wanted.pop("delivery")
    try:
        if make == "segment":
            segment = services.segment_from_report(actor=request.user, **wanted)
            messages.success(request, f"Segment “{segment.name}” created.")
            return redirect("audiences:segment-detail", segment_id=segment.pk)
        if make == "list":
            list_obj = services.list_from_report(**wanted)
            messages.success(request, f"List “{list_obj.name}” created.")
            return redirect("profiles:list-detail", list_id=list_obj.pk)
        lines, file_name = selectors.report_audience_csv(**wanted)
    except (ValidationError, ServiceError) as exc:
        text = exc.message if isinstance(exc, ServiceError) else " ".join(exc.messages)
        return HttpResponse(f"Refused: {text}", status=400, content_type="text/plain; charset=utf-8")
    response = StreamingHttpResponse(lines, content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{file_name}"'
    return response
