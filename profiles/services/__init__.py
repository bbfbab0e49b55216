"""Writes on profiles and lists: creation, opt-out, list membership. The CSV import: `imports.py`; a
person's erasure: `erasure.py`; bounces, complaints and quarantine: `quarantine.py`."""
from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, connection, transaction
from django.db.models import F, QuerySet
from django.utils import timezone

from profiles.models import EmailStatus, List, ListMembership, Profile
from profiles.services.quarantine import OPT_OUT


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


EMAIL_TAKEN = "A profile with this email already exists."
LIST_NAME_TAKEN = "A list with this name already exists."


def _save_unique(obj: Profile | List, *, field: str, message: str, taken: Callable[[], bool]) -> None:
    """Saves `obj`, whose `field` was checked free just before: a request that took it in between
    (the unique constraint refuses this one) is the same refusal as the check's, not an IntegrityError."""
    try:
        with transaction.atomic():
            obj.save()
    except IntegrityError:
        if not taken():
            raise
        raise ValidationError({field: [message]}) from None


def _email_taken(email: str, *, other_than: int | None = None) -> bool:
    return Profile.objects.filter(email__iexact=email).exclude(pk=other_than).exists()


def profile_create(
    *, email: str, first_name: str = "", last_name: str = "", attributes: dict | None = None, **extra
) -> Profile:
    email = normalize_email(email)
    try:
        validate_email(email)
    except ValidationError:
        raise ValidationError({"email": ["Enter a valid email address."]})
    if _email_taken(email):
        raise ValidationError({"email": [EMAIL_TAKEN]})
    profile = Profile(
        email=email, first_name=first_name, last_name=last_name, attributes=attributes or {}, **extra
    )
    # Its only constraint, the email's uniqueness, is checked above and by the save.
    profile.full_clean(validate_constraints=False)
    _save_unique(profile, field="email", message=EMAIL_TAKEN, taken=lambda: _email_taken(email))
    return profile


def profile_opt_out(*, profile_id: int, at: datetime | None = None) -> bool:
    """Denylists the profile for email. Idempotent: returns False if it was already opted out."""
    at = at or timezone.now()
    updated = Profile.objects.filter(pk=profile_id, opted_out_at__isnull=True).update(
        opted_out_at=at, email_status=EmailStatus.DENYLISTED, email_status_reason=OPT_OUT, email_status_changed_at=at,
        updated_at=timezone.now(),
    )
    return bool(updated)


def profile_opt_out_time_set(*, profile_id: int, at: datetime) -> bool:
    """Moves an opted-out profile's opt-out time to `at` (demo data, whose activity is made now and moved
    to when it plays); returns False if the profile has not opted out."""
    return bool(Profile.objects.filter(pk=profile_id, opted_out_at__isnull=False).update(opted_out_at=at))


def list_create(*, name: str, description: str = "") -> List:
    list_obj = List(name=name, description=description)
    return _list_save(list_obj)


def list_update(*, list_obj: List, **fields) -> List:
    for name, value in fields.items():
        setattr(list_obj, name, value)
    return _list_save(list_obj)


def _list_save(list_obj: List) -> List:
    def taken() -> bool:
        return List.objects.filter(name=list_obj.name).exclude(pk=list_obj.pk).exists()

    if taken():
        raise ValidationError({"name": [LIST_NAME_TAKEN]})
    list_obj.full_clean(validate_unique=False)
    _save_unique(list_obj, field="name", message=LIST_NAME_TAKEN, taken=taken)
    return list_obj


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


def list_add_matching(*, list_obj: List, profiles: QuerySet[Profile]) -> int:
    """Adds every profile of `profiles` to the list in one INSERT ... SELECT (a frozen segment of a
    million people is one statement, not a million rows through Python); returns how many were new."""
    # Named, so that the outer SELECT can name it on SQLite too; `WHERE 1 = 1` is SQLite's way to tell an
    # INSERT ... SELECT's ON CONFLICT from a join's ON.
    select_sql, params = profiles.order_by().annotate(member_id=F("pk")).values("member_id").query.sql_with_params()
    table = ListMembership._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (list_id, profile_id, added_at) SELECT %s, matching.member_id, %s FROM ({select_sql}) AS matching WHERE 1 = 1 "
            "ON CONFLICT (list_id, profile_id) DO NOTHING",
            (list_obj.pk, timezone.now(), *params),
        )
        return cursor.rowcount


def list_remove_profiles(*, list_obj: List, profile_ids: list[int]) -> int:
    deleted, _ = ListMembership.objects.filter(list=list_obj, profile_id__in=profile_ids).delete()
    return deleted


def profile_update(*, profile: Profile, **fields) -> Profile:
    if fields.get("email_status", profile.email_status) != profile.email_status:
        # Bounces, complaints and opt-outs set it; only an administrator's audited release lifts it.
        raise ValidationError({"email_status": [
            "The email status is not edited: it follows bounces, complaints and opt-outs, and an administrator "
            "releases an address (POST /api/profiles/<id>/release/)."
        ]})
    if "email" in fields:
        email = normalize_email(fields["email"])
        try:
            validate_email(email)
        except ValidationError:
            raise ValidationError({"email": ["Enter a valid email address."]})
        if _email_taken(email, other_than=profile.pk):
            raise ValidationError({"email": [EMAIL_TAKEN]})
        fields["email"] = email
    for name, value in fields.items():
        setattr(profile, name, value)
    profile.full_clean(validate_constraints=False)
    _save_unique(profile, field="email", message=EMAIL_TAKEN, taken=lambda: _email_taken(profile.email, other_than=profile.pk))
    return profile
