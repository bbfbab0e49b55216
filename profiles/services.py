"""Writes on profiles and lists: creation, opt-out, bounces and quarantine, list membership."""
from datetime import datetime

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from profiles.models import EmailStatus, List, ListMembership, Profile

# A hard bounce quarantines at once; soft bounces only from this many on (Campaign's rule).
SOFT_BOUNCES_BEFORE_QUARANTINE = 5


def normalize_email(email: str) -> str:
    """The canonical form used for uniqueness: trimmed, domain lower-cased and IDNA-encoded."""
    email = (email or "").strip()
    local, at, domain = email.rpartition("@")
    if not at:
        return email
    domain = domain.strip().rstrip(".").lower()
    try:
        domain = domain.encode("idna").decode("ascii")
    except UnicodeError:
        pass
    return f"{local}@{domain}"


def profile_create(
    *, email: str, first_name: str = "", last_name: str = "", attributes: dict | None = None, **extra
) -> Profile:
    email = normalize_email(email)
    try:
        validate_email(email)
    except ValidationError:
        raise ValidationError({"email": ["Enter a valid email address."]})
    if Profile.objects.filter(email__iexact=email).exists():
        raise ValidationError({"email": ["A profile with this email already exists."]})
    profile = Profile(
        email=email, first_name=first_name, last_name=last_name, attributes=attributes or {}, **extra
    )
    profile.full_clean()
    profile.save()
    return profile


def profile_opt_out(*, profile_id: int, at: datetime | None = None) -> bool:
    """Denylists the profile for email. Idempotent: returns False if it was already opted out."""
    at = at or timezone.now()
    updated = Profile.objects.filter(pk=profile_id, opted_out_at__isnull=True).update(
        opted_out_at=at, email_status=EmailStatus.DENYLISTED, updated_at=timezone.now()
    )
    return bool(updated)


def profile_record_bounce(*, profile_id: int, hard: bool, at: datetime | None = None) -> None:
    """A hard bounce quarantines the address; so does the 5th soft one. Denylisted stays denylisted."""
    at = at or timezone.now()
    with transaction.atomic():
        profile = Profile.objects.select_for_update().filter(pk=profile_id).first()
        if profile is None:
            return
        Profile.objects.filter(pk=profile_id).update(soft_bounce_count=F("soft_bounce_count") + (0 if hard else 1))
        profile.refresh_from_db(fields=["soft_bounce_count"])
        if profile.email_status == EmailStatus.VALID and (
            hard or profile.soft_bounce_count >= SOFT_BOUNCES_BEFORE_QUARANTINE
        ):
            Profile.objects.filter(pk=profile_id).update(
                email_status=EmailStatus.QUARANTINED, quarantined_at=at, updated_at=timezone.now()
            )


def list_add_profiles(*, list_obj: List, profile_ids: list[int]) -> int:
    """Adds existing profiles to a list; returns how many were new members. Unknown ids are an error."""
    wanted = set(profile_ids)
    found = set(Profile.objects.filter(pk__in=wanted).values_list("pk", flat=True))
    missing = sorted(wanted - found)
    if missing:
        raise ValidationError({"profile_ids": [f"Unknown profile ids: {', '.join(map(str, missing[:20]))}"]})
    before = ListMembership.objects.filter(list=list_obj).count()
    ListMembership.objects.bulk_create(
        [ListMembership(list=list_obj, profile_id=pk) for pk in sorted(found)], ignore_conflicts=True
    )
    return ListMembership.objects.filter(list=list_obj).count() - before
