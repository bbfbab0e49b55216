"""The pages of a person's erasure (`/profiles/<id>/erase/`): here, not in profiles, because erasing
changes tracking's events (`tracking.services.profile_erase`). The export's button on the profile page
downloads the API's JSON (`/api/profiles/<id>/export/`), which the signed-in session may read."""
from django.contrib import messages
from django.db.models import Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from accounts.decorators import action_required
from accounts.roles import REMOVE_PROFILES
from beacon.exceptions import ServiceError
from deliveries.models import Message
from profiles.selectors import profile_get
from tracking import services
from tracking.models import TrackingEvent


@action_required(REMOVE_PROFILES)
@require_http_methods(["GET", "POST"])
def profile_erase(request: HttpRequest, profile_id: int) -> HttpResponse:
    """GET: what erasing the person will do, and the button; POST: the erasure."""
    profile = profile_get(profile_id=profile_id)
    if request.method == "POST":
        try:
            services.profile_erase(profile_id=profile.pk, actor=request.user)
        except ServiceError as error:
            messages.error(request, error.message)
            return redirect("profiles:profile-detail", profile_id=profile.pk)
        messages.success(request, f"Profile {profile.pk} erased. Its events are kept anonymously.")
        return redirect("profiles:profile-list")
    sent = Message.objects.filter(profile_id=profile.pk)
    return render(request, "tracking/profile_erase.html", {
        "profile": profile,
        "message_count": sent.count(),
        "event_count": TrackingEvent.objects.filter(Q(profile_id=profile.pk) | Q(message_id__in=sent.values("id"))).count(),
    })
