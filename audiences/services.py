"""Writes on segments: create, change, delete, freeze into a list, and the report's one-click audiences
("who opened", "who clicked this link", "who did not open" a delivery) as a segment or a list."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from audiences import selectors
from audiences.models import Segment
from audiences.rules import MAX_STRING, REACTIONS, report_rule, rule_validate
from beacon.exceptions import NotFound, TransitionNotAllowed
from deliveries.models import Delivery, DeliveryStatus
from profiles import services as profile_services
from profiles.models import List

if TYPE_CHECKING:  # the auth models cannot be imported before the app registry is ready
    from django.contrib.auth.models import User

SEGMENT_NAME_TAKEN = "A segment with this name already exists."
# A delivery in these statuses resolves its segments at its next analysis: they must still exist then.
UNANALYZED_STATUSES = (DeliveryStatus.DRAFT, DeliveryStatus.ANALYZING, DeliveryStatus.READY)


def _name_taken(name: str, other_than: int | None) -> bool:
    return Segment.objects.filter(name=name).exclude(pk=other_than).exists()


def _save(segment: Segment) -> Segment:
    if _name_taken(segment.name, segment.pk):
        raise ValidationError({"name": [SEGMENT_NAME_TAKEN]})
    segment.full_clean(validate_unique=False)
    try:
        with transaction.atomic():
            segment.save()
    except IntegrityError:
        if not _name_taken(segment.name, segment.pk):
            raise
        raise ValidationError({"name": [SEGMENT_NAME_TAKEN]}) from None
    return segment


def segment_create(*, name: str, rule: Any, actor: User | None = None) -> Segment:
    """A new segment; its rule is validated (`audiences.rules`), a bad one is a 400 naming the fault."""
    return _save(Segment(name=name, rule=rule_validate(rule), created_by=actor, updated_by=actor))


def segment_update(*, segment_id: int, actor: User | None = None, name: str | None = None, rule: Any = None) -> Segment:
    with transaction.atomic():
        segment = Segment.objects.select_for_update().filter(pk=segment_id).first()
        if segment is None:
            raise NotFound("No such segment.")
        if name is not None:
            segment.name = name
        if rule is not None:
            segment.rule = rule_validate(rule)
        segment.updated_by = actor
        return _save(segment)


def segment_delete(*, segment_id: int) -> None:
    """Deletes the segment, unless a delivery still to be analyzed names it in its audience (409): its
    analysis would find the audience gone."""
    with transaction.atomic():
        segment = Segment.objects.select_for_update().filter(pk=segment_id).first()
        if segment is None:
            raise NotFound("No such segment.")
        using = [
            label for label, segment_ids in Delivery.objects.filter(status__in=UNANALYZED_STATUSES).values_list("label", "segments")
            if segment_id in segment_ids
        ]
        if using:
            raise TransitionNotAllowed(
                f"The segment is the audience of deliveries not yet analyzed: {', '.join(sorted(using)[:5])}. "
                "Take it out of their audience first."
            )
        segment.delete()


def segment_freeze(*, segment_id: int, list_name: str, description: str = "") -> List:
    """A new list holding who is in the segment now, in one statement (`profiles.services.list_add_matching`):
    the list and its members are written together or not at all."""
    segment = selectors.segment_get(segment_id=segment_id)
    return _list_of(selectors.segment_profiles(segment=segment), list_name, description or f"Frozen from the segment {segment.name}")


def _list_of(profiles, list_name: str, description: str) -> List:
    with transaction.atomic():
        list_obj = profile_services.list_create(name=list_name, description=description[:MAX_STRING])
        profile_services.list_add_matching(list_obj=list_obj, profiles=profiles)
    return list_obj


def report_audience_name(*, delivery_id: int, reaction: str, url_label: str = "") -> str:
    """A name for a report's audience that says what it is and when it was taken."""
    delivery = Delivery.objects.filter(pk=delivery_id).only("label").first()
    if delivery is None:
        raise NotFound("No such delivery.")
    what = REACTIONS.get(reaction, reaction)
    if url_label:
        what += f" “{url_label[:60]}”"
    return f"{what}: {delivery.label[:100]} ({timezone.now():%Y-%m-%d %H:%M:%S} UTC)"


def segment_from_report(*, delivery_id: int, reaction: str, url_label: str = "", actor: User | None = None) -> Segment:
    rule = report_rule(delivery_id=delivery_id, reaction=reaction, url_label=url_label)
    name = report_audience_name(delivery_id=delivery_id, reaction=reaction, url_label=url_label)
    return segment_create(name=name, rule=rule, actor=actor)


def list_from_report(*, delivery_id: int, reaction: str, url_label: str = "") -> List:
    name = report_audience_name(delivery_id=delivery_id, reaction=reaction, url_label=url_label)
    rule = rule_validate(report_rule(delivery_id=delivery_id, reaction=reaction, url_label=url_label))
    return _list_of(selectors.rule_profiles(rule=rule), name, f"Frozen from the reports of delivery {delivery_id}")
