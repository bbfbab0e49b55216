"""Edits of a delivery's links (found at target analysis)."""
from __future__ import annotations

from deliveries.models import TrackedUrl


def tracked_url_update(*, tracked_url: TrackedUrl, label: str | None = None, category: str | None = None) -> TrackedUrl:
    """Renames or categorizes a link; links sharing a label count together in reports."""
    if label is not None:
        tracked_url.label = label.strip() or tracked_url.url[:300]
    if category is not None:
        tracked_url.category = category.strip()
    tracked_url.save(update_fields=["label", "category"])
    return tracked_url
