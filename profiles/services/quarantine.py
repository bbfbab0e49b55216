"""The quarantine rule: what bounces, complaints and successful sends do to an address.

- A hard bounce quarantines the address at once.
- Soft bounces quarantine it at the `SOFT_BOUNCES_BEFORE_QUARANTINE`th within
  `BEACON_SOFT_BOUNCE_WINDOW_DAYS`, counting only those since the last successful send or release.
- A complaint denylists it, reason `complaint`.
- An administrator may release a quarantined or denylisted address (not an opt-out: only the person
  opts back in), audited as an `AddressRelease`.

Sending, the bounce mailbox and the ESP webhooks all report through `address_outcomes_record`, in bulk:
its number of queries does not grow with the number of addresses.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from django.conf import settings
from django.db import transaction
from django.db.models import Count, F, Q
from django.db.models.functions import Lower
from django.utils import timezone

from beacon.exceptions import NotFound, TransitionNotAllowed
from profiles.models import AddressFailure, AddressFailureType, AddressRelease, EmailStatus, Profile

if TYPE_CHECKING:  # the auth models cannot be imported before the app registry is ready
    from django.contrib.auth.models import User

SOFT_BOUNCES_BEFORE_QUARANTINE = 5
COMPLAINT = "complaint"
OPT_OUT = "opt_out"


@dataclass(frozen=True)
class AddressFailureReport:
    """One failure to record: the address by profile id or by email, its type and reason (a bounce
    reason such as `user_unknown`, or `complaint`), the event's key for idempotency (blank: none), and
    the message (and its delivery) that failed, when known: what ties the failure to a delivery's
    reports ("new quarantines") and shows it on the profile page. The key must name no address: the
    failure outlives the person's erasure."""

    failure_type: str
    reason: str
    profile_id: int | None = None
    email: str = ""
    event_key: str = ""
    message_id: int | None = None
    delivery_id: int | None = None


def _profile_ids_by_email(emails: Collection[str]) -> dict[str, int]:
    if not emails:
        return {}
    rows = Profile.objects.annotate(email_lower=Lower("email")).filter(email_lower__in=emails)
    return dict(rows.values_list("email_lower", "pk"))


@transaction.atomic
def address_outcomes_record(
    *, failures: Sequence[AddressFailureReport] = (), delivered_profile_ids: Collection[int] = (), at: datetime | None = None
) -> int:
    """Records failures (quarantining or denylisting per the rule) and successful sends (clearing the
    soft count) at `at`; returns how many failures were new. A failure whose `event_key` its profile
    already holds is a replay and counts nothing; an unknown address is skipped. The profiles' rows are
    locked in one statement, in id order, so concurrent callers cannot deadlock on them."""
    at = at or timezone.now()
    by_email = _profile_ids_by_email({report.email.lower() for report in failures if report.profile_id is None and report.email})
    resolved = [
        (report.profile_id or by_email.get(report.email.lower()), report)
        for report in failures
        if report.failure_type in AddressFailureType.values
    ]
    resolved = [(profile_id, report) for profile_id, report in resolved if profile_id]
    failed_ids = {profile_id for profile_id, _ in resolved}
    delivered = set(delivered_profile_ids) - failed_ids
    if not failed_ids and not delivered:
        return 0
    profiles = {
        profile.pk: profile
        for profile in Profile.objects.select_for_update()
        .filter(Q(pk__in=failed_ids) | Q(pk__in=delivered, soft_bounce_count__gt=0))
        .order_by("pk")
    }
    if delivered:
        Profile.objects.filter(pk__in=delivered, soft_bounce_count__gt=0).update(
            soft_bounce_count=0, soft_bounces_cleared_at=at, updated_at=timezone.now()
        )
    keys = {report.event_key for _, report in resolved if report.event_key}
    seen = set(
        AddressFailure.objects.filter(profile_id__in=failed_ids, event_key__in=keys).values_list("profile_id", "event_key")
    ) if keys else set()
    new_failures = []
    for profile_id, report in resolved:
        if profile_id not in profiles or (report.event_key and (profile_id, report.event_key) in seen):
            continue
        if report.event_key:
            seen.add((profile_id, report.event_key))
        new_failures.append(AddressFailure(
            profile_id=profile_id, failure_type=report.failure_type, reason=report.reason[:32], occurred_at=at,
            event_key=report.event_key[:200], message_id=report.message_id, delivery_id=report.delivery_id,
        ))
    if not new_failures:
        return 0
    # The soft count includes the new soft bounces (unless a clear came after `at`): the ones already
    # written, counted before these are, plus these; so each failure is written once, knowing what it did.
    new_soft = Counter(f.profile_id for f in new_failures if f.failure_type == AddressFailureType.SOFT)
    soft_counts = _soft_counts(set(new_soft), at)
    changed = []
    for failure in new_failures:
        profile = profiles[failure.profile_id]
        if failure.failure_type == AddressFailureType.COMPLAINT:
            if profile.email_status != EmailStatus.DENYLISTED:
                failure.status_set = _status_set(profile, EmailStatus.DENYLISTED, COMPLAINT, at)
        elif failure.failure_type == AddressFailureType.HARD:
            if profile.email_status == EmailStatus.VALID:
                failure.status_set = _status_set(profile, EmailStatus.QUARANTINED, failure.reason, at)
        else:
            cleared_at = profile.soft_bounces_cleared_at
            counted_now = new_soft[profile.pk] if cleared_at is None or at > cleared_at else 0
            profile.soft_bounce_count = soft_counts.get(profile.pk, 0) + counted_now
            if profile.email_status == EmailStatus.VALID and profile.soft_bounce_count >= SOFT_BOUNCES_BEFORE_QUARANTINE:
                failure.status_set = _status_set(profile, EmailStatus.QUARANTINED, failure.reason, at)
        profile.updated_at = timezone.now()
        changed.append(profile)
    AddressFailure.objects.bulk_create(new_failures)
    Profile.objects.bulk_update(
        {profile.pk: profile for profile in changed}.values(),
        ["email_status", "email_status_reason", "email_status_changed_at", "quarantined_at", "soft_bounce_count", "updated_at"],
    )
    return len(new_failures)


def _soft_counts(profile_ids: set[int], at: datetime) -> dict[int, int]:
    """Per profile, its soft bounces within the window ending at `at`, since its last clear."""
    if not profile_ids:
        return {}
    window_start = at - timedelta(days=settings.BEACON_SOFT_BOUNCE_WINDOW_DAYS)
    rows = (
        AddressFailure.objects.filter(
            profile_id__in=profile_ids, failure_type=AddressFailureType.SOFT, occurred_at__gt=window_start, occurred_at__lte=at
        )
        .exclude(occurred_at__lte=F("profile__soft_bounces_cleared_at"))
        .values("profile_id")
        .annotate(soft=Count("id"))
    )
    return {row["profile_id"]: row["soft"] for row in rows}


def _status_set(profile: Profile, status: str, reason: str, at: datetime) -> str:
    """Puts the (in-memory) profile in `status`; returns the status, which its failure keeps."""
    profile.email_status = status
    profile.email_status_reason = reason
    profile.email_status_changed_at = at
    if status == EmailStatus.QUARANTINED:
        profile.quarantined_at = at
    return status


@transaction.atomic
def address_release(*, profile_id: int, released_by: User | None, at: datetime | None = None) -> AddressRelease:
    """Puts a quarantined or denylisted address back to valid, its soft count reset, and keeps who did
    it, when, and what it was. Raises TransitionNotAllowed (409) for a valid address or an opt-out."""
    at = at or timezone.now()
    profile = Profile.objects.select_for_update().filter(pk=profile_id).first()
    if profile is None:
        raise NotFound("No such profile.")
    if profile.email_status == EmailStatus.VALID:
        raise TransitionNotAllowed("This address is neither quarantined nor denylisted: there is nothing to release.")
    if profile.opted_out_at is not None:
        raise TransitionNotAllowed("This person opted out: only they can opt back in.")
    release = AddressRelease.objects.create(
        profile=profile, released_by=released_by, released_at=at,
        previous_status=profile.email_status, previous_reason=profile.email_status_reason,
    )
    Profile.objects.filter(pk=profile_id).update(
        email_status=EmailStatus.VALID, email_status_reason="", email_status_changed_at=at, quarantined_at=None,
        soft_bounce_count=0, soft_bounces_cleared_at=at, updated_at=timezone.now(),
    )
    return release
