"""Reads on profiles and lists."""
from django.db.models import Count, Q, QuerySet

from profiles.models import List, Profile


def profile_list(*, search: str = "", email_status: str = "", list_id: int | None = None) -> QuerySet[Profile]:
    profiles = Profile.objects.all()
    if search:
        profiles = profiles.filter(
            Q(email__icontains=search) | Q(first_name__icontains=search) | Q(last_name__icontains=search)
        )
    if email_status:
        profiles = profiles.filter(email_status=email_status)
    if list_id is not None:
        profiles = profiles.filter(memberships__list_id=list_id)
    return profiles.order_by("id")


def list_list() -> QuerySet[List]:
    return List.objects.annotate(profile_count=Count("memberships")).order_by("name")


def profile_language(*, profile_id: int | None) -> str | None:
    """The language a profile's pages are shown in, if it is known."""
    if profile_id is None:
        return None
    return Profile.objects.filter(pk=profile_id).values_list("language", flat=True).first()
