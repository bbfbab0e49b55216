"""The marketer's delivery pages: write a delivery (new, edit, its links), preview it as a recipient, send
proofs, schedule it, and the actions (analyze, send, unschedule, pause, resume, cancel), each confirmed on
a page that says what will happen before the POST acts (scheduling's confirmation is the time typed). Every write calls the delivery services, as the API and the admin do."""
from django.conf import settings
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.clickjacking import xframe_options_sameorigin
from django.views.decorators.http import require_http_methods, require_POST

from accounts.decorators import action_required
from accounts.roles import MANAGE, READ_PERSONAL_DATA, can
from beacon.exceptions import NotFound, ServiceError
from deliveries import selectors, services
from deliveries.content import MIRROR_VARIABLE, UNSUBSCRIBE_VARIABLE, ContentError
from deliveries.forms import MAX_ID, DeliveryForm, ProofForm, ScheduleForm, TrackedUrlFormSet, add_service_errors
from deliveries.personalization import PROFILE_FIELDS
from deliveries.models import Delivery, DeliveryStatus

DELIVERY_ACTIONS = {
    "analyze": services.delivery_analysis_request,
    "send": services.delivery_send,
    "unschedule": services.delivery_unschedule,
    "pause": services.delivery_pause,
    "resume": services.delivery_resume,
    "cancel": services.delivery_cancel,
}
# What each action does to a delivery, as its confirmation page says it cannot be.
ACTION_PARTICIPLES = {
    "analyze": "analyzed", "send": "sent", "unschedule": "unscheduled", "pause": "paused", "resume": "resumed", "cancel": "cancelled",
}
# Which buttons a delivery page offers in each status; the services enforce the transitions anyway.
ACTIONS_BY_STATUS = {
    DeliveryStatus.DRAFT: ("analyze", "cancel"),
    DeliveryStatus.ANALYZING: ("cancel",),
    DeliveryStatus.READY: ("analyze", "send", "cancel"),
    DeliveryStatus.SCHEDULED: ("send", "unschedule", "cancel"),
    DeliveryStatus.SENDING: ("pause", "cancel"),
    DeliveryStatus.PAUSED: ("resume", "cancel"),
}
# The statuses a delivery can be scheduled (or moved to another time) from.
SCHEDULABLE_STATUSES = (DeliveryStatus.READY, DeliveryStatus.SCHEDULED)
# Marketer HTML must never run on Beacon's origin: the preview frame is framed with `sandbox=""` (an
# opaque origin, no script, no form) and served under this policy, which also holds if the frame's URL
# is opened on its own (`sandbox` here too): nothing is fetched but images, no script, no form target.
PREVIEW_CSP = (
    "default-src 'none'; img-src * data:; style-src 'unsafe-inline'; "
    "sandbox; form-action 'none'; base-uri 'none'; frame-ancestors 'self'"
)


def _delivery(delivery_id: int) -> Delivery:
    return get_object_or_404(Delivery, pk=delivery_id)


# --- Writing ----------------------------------------------------------------------------------------


def _edit_page(request: HttpRequest, form: DeliveryForm, delivery: Delivery | None = None, links=None) -> HttpResponse:
    editable = delivery is None or delivery.status in services.EDITABLE_STATUSES
    if not editable:
        for field in form.fields.values():
            field.disabled = True
    rows = list(selectors.delivery_content_links(delivery_id=delivery.pk)) if delivery else []
    if links is None and rows:
        links = TrackedUrlFormSet(initial=[
            {"id": row.pk, "label": row.label, "category": row.category, "mode": row.mode} for row in rows
        ], prefix="links")
    urls = {str(row.pk): row.url for row in rows}
    return render(request, "deliveries/delivery_form.html", {
        "form": form,
        "delivery": delivery,
        "editable": editable,
        "links": links,
        "link_rows": [(link_form, urls.get(str(link_form["id"].value()), "")) for link_form in links or ()],
        "checks": delivery.checks if delivery else [],
        "profile_fields": PROFILE_FIELDS,
        "attribute_keys": selectors.profile_attribute_keys(),
        "engine_variables": (UNSUBSCRIBE_VARIABLE, MIRROR_VARIABLE),
    })


def _save(request: HttpRequest, form: DeliveryForm, delivery: Delivery | None) -> Delivery | None:
    """The delivery saved through its service, or None with the service's messages added to the form."""
    if not form.is_valid():
        return None
    fields = dict(form.cleaned_data)
    lists = list(fields.pop("lists"))
    try:
        if delivery is None:
            return services.delivery_create(actor=request.user, lists=lists, **fields)
        return services.delivery_update(delivery_id=delivery.pk, actor=request.user, lists=lists, **fields)
    except ValidationError as error:
        add_service_errors(form, error)
    except ServiceError as error:
        form.add_error(None, error.message)
    return None


@action_required(MANAGE)
@require_http_methods(["GET", "POST"])
def delivery_new(request: HttpRequest) -> HttpResponse:
    form = DeliveryForm(request.POST or None)
    if request.method == "POST":
        delivery = _save(request, form, None)
        if delivery is not None:
            messages.success(request, "Delivery created. Analyze it to run the checks and find its links.")
            return redirect("deliveries:delivery-edit", delivery_id=delivery.pk)
    return _edit_page(request, form)


@action_required(MANAGE)
@require_http_methods(["GET", "POST"])
def delivery_edit(request: HttpRequest, delivery_id: int) -> HttpResponse:
    delivery = _delivery(delivery_id)
    if request.method == "POST":
        form = DeliveryForm(request.POST, initial=DeliveryForm.initial_of(delivery))
        saved = _save(request, form, delivery)
        if saved is not None:
            messages.success(request, "Delivery saved.")
            return redirect("deliveries:delivery-edit", delivery_id=delivery.pk)
    else:
        form = DeliveryForm(initial=DeliveryForm.initial_of(delivery))
    return _edit_page(request, form, delivery)


@action_required(MANAGE)
@require_POST
def delivery_links(request: HttpRequest, delivery_id: int) -> HttpResponse:
    """The links found at analysis: label, category and tracking, saved together or not at all."""
    delivery = _delivery(delivery_id)
    links = TrackedUrlFormSet(request.POST, prefix="links")
    if links.is_valid():
        try:
            services.tracked_urls_update(delivery_id=delivery.pk, changes=[row for row in links.cleaned_data if row])
        except (ValidationError, ServiceError, NotFound) as error:
            messages.error(request, " ".join(getattr(error, "messages", None) or [error.message]))
        else:
            messages.success(request, "Links saved.")
            return redirect("deliveries:delivery-edit", delivery_id=delivery.pk)
    return _edit_page(request, DeliveryForm(initial=DeliveryForm.initial_of(delivery)), delivery, links=links)


# --- Preview and proofs -----------------------------------------------------------------------------


def _requested_profile_id(request: HttpRequest) -> int | None:
    """The id of `?profile=`, or None unless it is a plain positive id."""
    wanted = request.GET.get("profile", "").strip()
    return int(wanted) if wanted.isascii() and wanted.isdigit() and 0 < int(wanted) <= MAX_ID else None


def _preview_page(
    request: HttpRequest, delivery: Delivery, profile_id: int | None, proof_form: ProofForm | None = None
) -> HttpResponse:
    profile = selectors.delivery_preview_profile(delivery=delivery, profile_id=profile_id)
    try:
        rendered, content_error = services.delivery_preview_render(delivery=delivery, profile=profile), ""
    except ContentError as error:
        rendered, content_error = None, str(error)
    search = request.GET.get("q", "").strip()[:254]
    return render(request, "deliveries/delivery_preview.html", {
        "delivery": delivery,
        "profile": profile,
        "rendered": rendered,
        "content_error": content_error,
        "search": search,
        "found_profiles": selectors.profile_search(email=search),
        "proof_form": proof_form or ProofForm(),
        "can_manage": can(request.user, MANAGE),
        "frame_url": reverse("deliveries:delivery-preview-frame", args=[delivery.pk]) + (f"?profile={profile.pk}" if profile else ""),
    })


@action_required(READ_PERSONAL_DATA)
@require_http_methods(["GET", "HEAD"])
def delivery_preview(request: HttpRequest, delivery_id: int) -> HttpResponse:
    return _preview_page(request, _delivery(delivery_id), _requested_profile_id(request))


@action_required(READ_PERSONAL_DATA)
@require_http_methods(["GET", "HEAD"])
@xframe_options_sameorigin
def delivery_preview_frame(request: HttpRequest, delivery_id: int) -> HttpResponse:
    """The HTML part as the chosen profile gets it, for the preview page's sandboxed frame only."""
    delivery = _delivery(delivery_id)
    try:
        profile = selectors.delivery_preview_profile(delivery=delivery, profile_id=_requested_profile_id(request))
        html = services.delivery_preview_render(delivery=delivery, profile=profile).html
    except ContentError:
        html = ""
    response = HttpResponse(html or "<p>This delivery has no HTML content.</p>", content_type="text/html; charset=utf-8")
    response["Content-Security-Policy"] = PREVIEW_CSP
    response["X-Content-Type-Options"] = "nosniff"
    response["Referrer-Policy"] = "no-referrer"
    response["Cache-Control"] = "no-store"
    return response


@action_required(MANAGE)
@require_POST
def delivery_proof(request: HttpRequest, delivery_id: int) -> HttpResponse:
    """Sends a proof personalized as the profile the page previewed as: the form's hidden `profile`, else
    the `?profile=` of the form's address (as a page served before the hidden field posts it)."""
    delivery = _delivery(delivery_id)
    form = ProofForm(request.POST)
    if form.is_valid():
        profile_id = form.cleaned_data["profile"] or _requested_profile_id(request)
        try:
            sent = services.delivery_proof(
                delivery_id=delivery.pk, emails=form.cleaned_data["emails"], profile_id=profile_id, actor=request.user,
            )
        except ValidationError as error:
            add_service_errors(form, error)
        except ServiceError as error:
            form.add_error(None, error.message)
        else:
            messages.success(request, f"Proof sent to {sent} address{'es' if sent != 1 else ''}.")
            query = f"?profile={profile_id}" if profile_id else ""
            return redirect(reverse("deliveries:delivery-preview", args=[delivery.pk]) + query)
    shown_profile_id = form.cleaned_data.get("profile") or _requested_profile_id(request)
    return _preview_page(request, delivery, shown_profile_id, proof_form=form)


# --- Actions ----------------------------------------------------------------------------------------


def _confirmation(delivery: Delivery, action: str) -> tuple[str, str]:
    """What the action will do, in numbers: the question and what follows from it."""
    not_sent = max(delivery.to_deliver - delivery.processed, 0)
    if action == "analyze":
        audience = selectors.delivery_audience_count(delivery=delivery)
        return (
            f"Analyze for {audience:,} recipient{'s' if audience != 1 else ''}?",
            "Beacon runs the checks before sending, finds the links and builds the delivery log in the "
            "background; the delivery's page shows how far it is. Nothing is sent.",
        )
    if action == "send" and delivery.status == DeliveryStatus.SCHEDULED:
        return (
            f"Send now to {delivery.to_deliver:,} recipient{'s' if delivery.to_deliver != 1 else ''}, without waiting for its time?",
            "The messages go out in batches from now on; you can pause or cancel while they do.",
        )
    if action == "unschedule":
        return (
            "Unschedule: this delivery will not start by itself.",
            "It stays ready to send: send it or schedule it again when you want.",
        )
    if action == "send":
        return (
            f"Send to {delivery.to_deliver:,} recipient{'s' if delivery.to_deliver != 1 else ''}?",
            "The messages go out in batches from now on; you can pause or cancel while they do.",
        )
    if action == "pause":
        return f"Pause: {not_sent:,} messages not yet sent will wait until you resume.", "Messages already sent stay sent."
    if action == "resume":
        return f"Resume: {not_sent:,} messages not yet sent will be sent.", "Sending starts again where it stopped."
    if delivery.status == DeliveryStatus.DRAFT:
        return "Cancel: this delivery will never be sent.", "This cannot be undone."
    if delivery.status == DeliveryStatus.ANALYZING:
        return "Cancel: the analysis stops and this delivery will never be sent.", "This cannot be undone."
    if delivery.status == DeliveryStatus.SCHEDULED:
        return "Cancel: this delivery will not start at its time, nor ever be sent.", "This cannot be undone."
    return f"Cancel: {not_sent:,} messages not yet sent will not be sent.", "This cannot be undone."


@action_required(MANAGE)
@require_http_methods(["GET", "POST"])
def delivery_action(request: HttpRequest, delivery_id: int, action: str) -> HttpResponse:
    """GET: the confirmation page; POST: the act, through the delivery service."""
    if action not in DELIVERY_ACTIONS:
        raise Http404("No such action.")
    if request.method == "GET":
        delivery = _delivery(delivery_id)
        question, consequence = _confirmation(delivery, action)
        return render(request, "deliveries/delivery_confirm.html", {
            "delivery": delivery,
            "action": action,
            "question": question,
            "consequence": consequence,
            "allowed": action in ACTIONS_BY_STATUS.get(delivery.status, ()),
            "participle": ACTION_PARTICIPLES[action],
            "checks": services.delivery_checks(delivery=delivery) if action == "analyze" else [],
        })
    try:
        DELIVERY_ACTIONS[action](delivery_id=delivery_id, actor=request.user)
    except ServiceError as error:
        messages.error(request, error.message)
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
    else:
        messages.success(request, "Analysis started." if action == "analyze" else f"Delivery: {action} done.")
    # Back to the delivery's page (the reporting app draws it), by its route name: no import of reporting.
    return redirect("reporting:delivery-summary", delivery_id=delivery_id)


# --- Scheduling -------------------------------------------------------------------------------------


@action_required(MANAGE)
@require_http_methods(["GET", "POST"])
def delivery_schedule(request: HttpRequest, delivery_id: int) -> HttpResponse:
    """GET: the schedule form on its own page; POST (from it or the delivery's page): schedules, or shows
    the form again with why not."""
    delivery = _delivery(delivery_id)
    form = ScheduleForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            services.delivery_schedule(delivery_id=delivery.pk, at=form.cleaned_data["at"], actor=request.user)
        except ValidationError as error:
            add_service_errors(form, error)
        except ServiceError as error:
            form.add_error(None, error.message)
        else:
            messages.success(request, "Delivery scheduled.")
            return redirect("reporting:delivery-summary", delivery_id=delivery.pk)
    return render(request, "deliveries/delivery_schedule.html", {
        "delivery": delivery,
        "schedule_form": form,
        "allowed": delivery.status in SCHEDULABLE_STATUSES,
        "server_timezone": settings.TIME_ZONE,
    }, status=400 if form.errors else 200)
