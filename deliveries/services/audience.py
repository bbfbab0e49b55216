"""Who a delivery's audience is: the members of its lists and the profiles of its segments, resolved when
it is read (at analysis, who is in a segment then is who gets the delivery).

Segments are the audiences app's, above this one: their conditions on Profile are handed in at start-up
(`segment_conditions`, by `audiences/apps.py`). A delivery keeps its segments as a list of ids
(`Delivery.segments`), beside its lists, so that its whole audience is its own row, edited under its
own lock; the audiences app refuses to delete a segment that a delivery not yet analyzed names.
"""
from __future__ import annotations

from collections.abc import Callable

from django.db.models import Case, CharField, Exists, OuterRef, Q, QuerySet, Value, When

from beacon.exceptions import ServiceError
from beacon.handed_in import HandedIn
from deliveries.models import Delivery
from profiles.models import ListMembership, Profile

# segment ids -> {id: condition on Profile}; raises ServiceError (field `segments`) naming unknown ids.
segment_conditions: HandedIn[Callable[[list[int]], dict[int, Q]]] = HandedIn(
    "segment resolver", handed_in_by="audiences/apps.py"
)
# () -> [(id, name)] of every segment, by name: the choices of the delivery form.
segment_choices: HandedIn[Callable[[], list[tuple[int, str]]]] = HandedIn(
    "segment choices", handed_in_by="audiences/apps.py"
)
MAX_SEGMENTS = 20


def segments_check(segment_ids: list[int]) -> list[int]:
    """The ids as a delivery stores them (distinct, in order), or a ServiceError naming unknown ones."""
    ids = sorted(set(segment_ids))
    if len(ids) > MAX_SEGMENTS:
        raise ServiceError(f"At most {MAX_SEGMENTS} segments.", fields={"segments": [f"At most {MAX_SEGMENTS} segments."]})
    if ids:
        segment_conditions.get()(ids)
    return ids


def audience_profiles(delivery: Delivery) -> QuerySet[Profile] | None:
    """The distinct profiles of the delivery's lists and segments, each annotated with `audience_source`:
    the first of `list:<id>` (lists by id) then `segment:<id>` that holds it; None when the delivery names
    no list and no segment. One query; a segment that no longer exists is a ServiceError."""
    list_ids = sorted(delivery.lists.values_list("pk", flat=True)) if delivery.pk else []
    conditions = segment_conditions.get()(list(delivery.segments)) if delivery.segments else {}
    sources = [
        (f"list:{list_id}", Q(Exists(ListMembership.objects.filter(profile_id=OuterRef("pk"), list_id=list_id))))
        for list_id in list_ids
    ] + [(f"segment:{segment_id}", condition) for segment_id, condition in conditions.items()]
    if not sources:
        return None
    members = Q()
    if list_ids:
        members |= Q(Exists(ListMembership.objects.filter(profile_id=OuterRef("pk"), list_id__in=list_ids)))
    for condition in conditions.values():
        members |= condition
    return Profile.objects.filter(members).annotate(
        audience_source=Case(*(When(condition, then=Value(name)) for name, condition in sources), output_field=CharField())
    )
