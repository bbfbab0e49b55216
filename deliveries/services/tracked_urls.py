"""Edits of a delivery's links (found at target analysis)."""
from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction

from beacon.exceptions import NotFound, TransitionNotAllowed
from deliveries.models import Delivery, TrackedUrl, TrackingMode
from deliveries.services.lifecycle import EDITABLE_STATUSES

# The modes a link of the content can take; the opt-out, mirror and honeypot links are Beacon's own.
CONTENT_LINK_MODES = (TrackingMode.TRACKED, TrackingMode.NOT_TRACKED)


def tracked_url_update(
    *, tracked_url: TrackedUrl, label: str | None = None, category: str | None = None, mode: str | None = None
) -> TrackedUrl:
    """Renames or categorizes a link (links sharing a label count together in reports), or turns its
    tracking on or off. The mode changes only before sending: the messages already sent keep their links."""
    if mode is not None and mode != tracked_url.mode:
        if tracked_url.mode not in CONTENT_LINK_MODES or mode not in CONTENT_LINK_MODES:
            raise ValidationError({"mode": ["Only a link of the content can be tracked or not tracked."]})
        status = Delivery.objects.filter(pk=tracked_url.delivery_id).values_list("status", flat=True).first()
        if status not in EDITABLE_STATUSES:
            raise TransitionNotAllowed("The tracking of a link cannot change once sending has started.")
        tracked_url.mode = mode
    if label is not None and (label.strip() or tracked_url.url[:300]) != tracked_url.label:
        tracked_url.label = label.strip() or tracked_url.url[:300]
        tracked_url.label_edited = True
    if category is not None:
        tracked_url.category = category.strip()
    tracked_url.save(update_fields=["label", "label_edited", "category", "mode"])
    return tracked_url


def tracked_urls_update(*, delivery_id: int, changes: list[dict[str, Any]]) -> list[TrackedUrl]:
    """Several links of one delivery at once (the edit page's table), all or none: `changes` holds one
    `{id, label, category, mode}` per link."""
    with transaction.atomic():
        rows = {row.pk: row for row in TrackedUrl.objects.select_for_update().filter(delivery_id=delivery_id)}
        updated = []
        for change in changes:
            row = rows.get(change["id"])
            if row is None:
                raise NotFound("No such link in this delivery.")
            updated.append(tracked_url_update(
                tracked_url=row, label=change.get("label"), category=change.get("category"), mode=change.get("mode"),
            ))
    return updated
