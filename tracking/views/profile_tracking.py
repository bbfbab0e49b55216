"""A profile's Tracking tab, a page of the marketer's workspace signed in like the others: here because
it reads tracking's events, and tracking may import profiles, not the reverse."""
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.http import urlencode

from accounts.decorators import action_required
from accounts.roles import READ_PERSONAL_DATA
from profiles.selectors import profile_get
from tracking import selectors
from tracking.models import EventType

PROFILE_TRACKING_PAGE_SIZE = 50
# The sort keys of the Tracking tab's columns, each with its reverse.
PROFILE_TRACKING_SORTS = (("logged_at", "Date and time"), ("type", "Type"), ("delivery", "Delivery"))


@action_required(READ_PERSONAL_DATA)
def profile_tracking(request: HttpRequest, profile_id: int) -> HttpResponse:
    """A profile's Tracking tab: every event of that person in the deliveries that still exist, with the
    link as that person saw it; filtered by type, sorted by any column."""
    profile = profile_get(profile_id=profile_id)
    event_type = request.GET.get("type", "")
    if event_type not in EventType.values:
        event_type = ""
    ordering = request.GET.get("sort", "-logged_at")
    if ordering not in selectors.PROFILE_TRACKING_ORDERINGS:
        ordering = "-logged_at"
    events = selectors.profile_tracking(profile_id=profile.pk, types=[event_type] if event_type else None, ordering=ordering)
    page = Paginator(events, PROFILE_TRACKING_PAGE_SIZE).get_page(request.GET.get("page"))
    rows = [
        {"event": event, "label": selectors.event_label(event, profile), "url": selectors.event_url(event, profile)}
        for event in page.object_list
    ]
    sorts = [
        {"key": key, "title": title, "sorted": ordering.lstrip("-") == key, "descending": ordering == f"-{key}",
         "query": urlencode({"sort": key if ordering == f"-{key}" else f"-{key}", **({"type": event_type} if event_type else {})})}
        for key, title in PROFILE_TRACKING_SORTS
    ]
    filters = {key: value for key, value in (("type", event_type), ("sort", ordering)) if value}
    return render(request, "tracking/profile_tracking.html", {
        "profile": profile,
        "page": page,
        "rows": rows,
        "event_type": event_type,
        "event_types": EventType.choices,
        "ordering": ordering,
        "sorts": sorts,
        "pager_query": "&" + urlencode(filters),
    })
