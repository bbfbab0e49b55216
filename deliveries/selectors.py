"""Reads on deliveries, their delivery log and their links, and what the delivery pages offer to pick
(attribute keys, profiles)."""
import re
from datetime import datetime, timedelta

from django.db import connection
from django.db.models import QuerySet
from django.utils import timezone

from beacon.exceptions import ServiceError
from beacon.storable import fits_in
from deliveries.models import (
    BOUNCE_MAILBOX_STATE,
    BounceMailboxState,
    Delivery,
    DeliveryAuditEntry,
    DeliveryStatus,
    Message,
    ReturnedMail,
    ReturnedMailOutcome,
    TrackedUrl,
    TrackingMode,
)
from deliveries.services.audience import audience_profiles
from profiles.models import Profile

# The audit details that name recipients: a proof's addresses, the profile it was personalized for.
PERSONAL_AUDIT_DETAILS = frozenset({"emails", "profile_id"})


def delivery_list(*, status: str = "", search: str = "") -> QuerySet[Delivery]:
    deliveries = Delivery.objects.all()
    if status:
        deliveries = deliveries.filter(status=status)
    if not fits_in(Delivery, search, "label"):
        return deliveries.none()
    if search:
        deliveries = deliveries.filter(label__icontains=search)
    return deliveries.prefetch_related("lists")


def delivery_messages(*, delivery_id: int, status: str = "", failure_type: str = "", failure_reason: str = "") -> QuerySet[Message]:
    """A delivery's log, in id order; each non-blank filter narrows it."""
    messages = Message.objects.filter(delivery_id=delivery_id)
    filters = {"status": status, "failure_type": failure_type, "failure_reason": failure_reason}
    return messages.filter(**{name: value for name, value in filters.items() if value}).order_by("id")


def delivery_tracked_urls(*, delivery_id: int) -> QuerySet[TrackedUrl]:
    return TrackedUrl.objects.filter(delivery_id=delivery_id).order_by("position", "id")


def delivery_content_links(*, delivery_id: int) -> QuerySet[TrackedUrl]:
    """The links found in the content (not Beacon's opt-out, mirror and honeypot links)."""
    return delivery_tracked_urls(delivery_id=delivery_id).filter(mode__in=(TrackingMode.TRACKED, TrackingMode.NOT_TRACKED))


def delivery_audit(*, delivery_id: int) -> QuerySet[DeliveryAuditEntry]:
    return DeliveryAuditEntry.objects.filter(delivery_id=delivery_id).select_related("actor")


def delivery_audience_count(*, delivery: Delivery) -> int:
    """The distinct profiles of the delivery's lists and segments, before analysis excludes any (0 when a
    segment is gone: the analysis then stops, saying so)."""
    try:
        audience = audience_profiles(delivery)
    except ServiceError:
        return 0
    return audience.order_by().count() if audience is not None else 0


# The distinct keys of `Profile.attributes`, in SQL, over the newest profiles only: bounded work, however
# many profiles there are (a key only old profiles have is rare, and can still be typed by hand).
ATTRIBUTE_KEYS_SAMPLE = 10_000
# The keys a template can name: `{{ profile.attributes.<key> }}` takes no space, dot or leading underscore.
_ATTRIBUTE_KEY_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_]*")
ATTRIBUTE_KEYS_LIMIT = 100
_ATTRIBUTE_KEYS_SQL = {
    "postgresql": (
        "SELECT DISTINCT k FROM (SELECT attributes FROM {table} ORDER BY id DESC LIMIT %s) p, "
        "jsonb_object_keys(p.attributes) AS k WHERE jsonb_typeof(p.attributes) = 'object' ORDER BY k LIMIT %s"
    ),
    "sqlite": (
        "SELECT DISTINCT e.key FROM (SELECT attributes FROM {table} ORDER BY id DESC LIMIT %s) p, "
        "json_each(p.attributes) AS e WHERE json_type(p.attributes) = 'object' ORDER BY e.key LIMIT %s"
    ),
}


def profile_attribute_keys() -> list[str]:
    """The attribute keys the personalization picker offers (`{{ profile.attributes.<key> }}`)."""
    sql = _ATTRIBUTE_KEYS_SQL[connection.vendor].format(table=connection.ops.quote_name(Profile._meta.db_table))
    with connection.cursor() as cursor:
        cursor.execute(sql, [ATTRIBUTE_KEYS_SAMPLE, ATTRIBUTE_KEYS_LIMIT])
        return [key for (key,) in cursor.fetchall() if _ATTRIBUTE_KEY_RE.fullmatch(key)]


def delivery_preview_profile(*, delivery: Delivery, profile_id: int | None) -> Profile | None:
    """The profile to preview the delivery as: that one if it exists, else the delivery's first recipient;
    None when there is neither."""
    profile = Profile.objects.filter(pk=profile_id).first() if profile_id is not None else None
    return profile or Profile.objects.filter(memberships__list__deliveries=delivery).order_by("id").first()


def profile_search(*, email: str, limit: int = 20) -> list[Profile]:
    """Profiles whose email contains `email`, for the preview's profile chooser."""
    if not email or not fits_in(Profile, email, "email"):
        return []
    return list(Profile.objects.filter(email__icontains=email).order_by("email")[:limit])


def audit_details_visible(details: dict, *, personal_data: bool) -> dict:
    """An audit entry's details as a caller may read them: without `personal_data`, none that name recipients."""
    if personal_data:
        return details
    return {key: value for key, value in details.items() if key not in PERSONAL_AUDIT_DETAILS}


def returned_mail_unmatched_count() -> int:
    """Bounces and complaints read at the bounce address that name no message Beacon knows."""
    return ReturnedMail.objects.filter(outcome=ReturnedMailOutcome.UNMATCHED).count()


def bounce_mailbox_state() -> BounceMailboxState | None:
    """How the last read of the bounce mailbox ended; None before the first."""
    return BounceMailboxState.objects.filter(name=BOUNCE_MAILBOX_STATE).first()


def delivery_expected_end(*, delivery: Delivery, now: datetime | None = None) -> datetime | None:
    """While a delivery sends: when it should be done, from what is left and its rate. The rate is the
    slower of its `max_per_hour` and what it has made since it started (which the domain rates and the
    relay's speed hold down; a pause counts as time spent). None when not sending, or before any rate
    is known; read from the delivery's counters only, so the progress can poll it."""
    if delivery.status != DeliveryStatus.SENDING:
        return None
    now = now or timezone.now()
    left = max(delivery.to_deliver - delivery.processed, 0)
    if not left:
        return now
    per_second = []
    if delivery.max_per_hour:
        per_second.append(delivery.max_per_hour / 3600)
    if delivery.sending_started_at and delivery.processed:
        elapsed = (now - delivery.sending_started_at).total_seconds()
        if elapsed > 0:
            per_second.append(delivery.processed / elapsed)
    if not per_second:
        return None
    return now + timedelta(seconds=left / min(per_second))
