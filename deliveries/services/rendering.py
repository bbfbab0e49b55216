"""A delivery's content as its recipients get it: prepared once per send, rendered per message."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache

from django.conf import settings

from beacon.exceptions import ServiceError
from deliveries.content import HONEYPOT_VARIABLE, MIRROR_VARIABLE, PIXEL_VARIABLE, UNSUBSCRIBE_VARIABLE, ContentError
from deliveries.personalization import (
    PreparedContent,
    RenderedMessage,
    prepare_content,
    profile_context,
    render_url_with_context,
)
from deliveries.models import Delivery, Message, TrackedUrl, TrackingMode
from deliveries.tokens import Purpose, make_token, tracking_url
from profiles.models import EmailFormat, Profile


@dataclass
class SendContent:
    """A delivery's content and links, prepared once per send; `render` is the per-message work."""

    delivery_id: int
    prepared: PreparedContent
    # One entry per found link, in `prepared.parsed.links` order:
    # (TrackedUrl id, URL template, personalized, tracked: not set "not tracked" on the edit page)
    links: list[tuple[int, str, bool, bool]]
    optout_url_id: int
    mirror_url_id: int
    # 0 for a delivery without one (clicks not tracked, or analyzed before honeypots existed).
    honeypot_url_id: int
    track_opens: bool
    track_clicks: bool
    mirror_page: bool
    public_url: str

    def render(self, *, message_id: int, profile: Profile | None, text_only: bool) -> RenderedMessage:
        return self.render_with_unsubscribe(message_id=message_id, profile=profile, text_only=text_only)[0]

    def render_with_unsubscribe(self, *, message_id: int, profile: Profile | None, text_only: bool) -> tuple[RenderedMessage, str]:
        """The message and its opt-out URL (also needed for the List-Unsubscribe header)."""
        profile_values = profile_context(profile)
        base = self.public_url
        per_link = [
            tracking_url("r", make_token(Purpose.CLICK, message_id, url_id), public_url=base)
            if self.track_clicks and tracked
            else render_url_with_context(url, profile_values) if personalized else url
            for url_id, url, personalized, tracked in self.links
        ]
        parsed = self.prepared.parsed
        link_urls = [per_link[index] for index in parsed.html_link_indexes]
        link_urls += [per_link[index] for index in parsed.text_link_indexes]
        unsubscribe_url = tracking_url("u", make_token(Purpose.UNSUBSCRIBE, message_id, self.optout_url_id), public_url=base)
        extra = {
            UNSUBSCRIBE_VARIABLE: unsubscribe_url,
            MIRROR_VARIABLE: (
                tracking_url("m", make_token(Purpose.MIRROR, message_id, self.mirror_url_id), public_url=base)
                if self.mirror_page
                else ""
            ),
            PIXEL_VARIABLE: tracking_url("o", make_token(Purpose.OPEN, message_id), public_url=base),
            # A text-only recipient gets the HTML as text, where a link with an empty href leaves no trace.
            HONEYPOT_VARIABLE: (
                tracking_url("r", make_token(Purpose.CLICK, message_id, self.honeypot_url_id), public_url=base)
                if self.honeypot_url_id and not text_only
                else ""
            ),
        }
        rendered = self.prepared.render(profile_values=profile_values, link_urls=link_urls, extra=extra, text_only=text_only)
        return rendered, unsubscribe_url


def _prepare(delivery: Delivery, *, honeypot: bool) -> PreparedContent:
    return prepare_content(
        subject=delivery.subject, html=delivery.html, text=delivery.text, track_opens=delivery.track_opens,
        honeypot=honeypot,
    )


def _check_renders(delivery: Delivery, prepared: PreparedContent) -> None:
    """A render with a blank profile, so errors that only show at render time surface at analysis."""
    link_urls = ["https://example.invalid/"] * (
        len(prepared.parsed.html_link_indexes) + len(prepared.parsed.text_link_indexes)
    )
    extra = {UNSUBSCRIBE_VARIABLE: "", MIRROR_VARIABLE: "", PIXEL_VARIABLE: "", HONEYPOT_VARIABLE: ""}
    for text_only in (False, True):
        try:
            prepared.render(profile_values=profile_context(None), link_urls=link_urls, extra=extra, text_only=text_only)
        except Exception as exc:
            raise ContentError({"html": [f"Template error: {exc}"]}) from None


def _content_key(delivery: Delivery) -> str:
    parts = [delivery.subject, delivery.html, delivery.text, str(delivery.track_opens), str(delivery.track_clicks),
             str(delivery.mirror_page), str(delivery.analyzed_at), settings.BEACON_PUBLIC_URL]
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()


@lru_cache(maxsize=16)
def _send_content_cached(delivery_id: int, content_key: str) -> SendContent:
    delivery = Delivery.objects.get(pk=delivery_id)
    rows = list(TrackedUrl.objects.filter(delivery_id=delivery_id).order_by("id"))
    special_modes = (TrackingMode.OPT_OUT, TrackingMode.MIRROR, TrackingMode.HONEYPOT)
    special = {row.mode: row.id for row in rows if row.mode in special_modes}
    honeypot_url_id = special.get(TrackingMode.HONEYPOT, 0) if delivery.track_clicks else 0
    prepared = _prepare(delivery, honeypot=bool(honeypot_url_id))
    tracked = [row for row in rows if row.mode in (TrackingMode.TRACKED, TrackingMode.NOT_TRACKED)]
    by_position = {row.position: row for row in tracked if row.position is not None}
    text_only_rows = {row.url: row for row in tracked if row.position is None}
    links = []
    for link in prepared.parsed.links:
        row = by_position.get(link.position) if link.position is not None else text_only_rows.get(link.url)
        if row is None:
            raise ServiceError("The delivery's links changed since analysis; analyze it again.")
        links.append((row.id, row.url, row.is_personalized, row.mode == TrackingMode.TRACKED))
    return SendContent(
        delivery_id=delivery_id,
        prepared=prepared,
        links=links,
        optout_url_id=special.get(TrackingMode.OPT_OUT, 0),
        mirror_url_id=special.get(TrackingMode.MIRROR, 0),
        honeypot_url_id=honeypot_url_id,
        track_opens=delivery.track_opens,
        track_clicks=delivery.track_clicks,
        mirror_page=delivery.mirror_page,
        public_url=settings.BEACON_PUBLIC_URL,
    )


def send_content(delivery: Delivery) -> SendContent:
    return _send_content_cached(delivery.pk, _content_key(delivery))


def send_contents_forget() -> None:
    """Empties this process's prepared contents (the tests, whose rolled-back rows give ids again)."""
    _send_content_cached.cache_clear()


def delivery_preview_render(*, delivery: Delivery, profile: Profile | None) -> RenderedMessage:
    """The message as `profile` (None: a blank one) would get it, outside any send: links keep their
    personalized original URLs, no open pixel, the opt-out and mirror links go nowhere; so neither a
    preview nor a proof can ever count as an event. Raises ContentError for a bad template."""
    prepared = prepare_content(subject=delivery.subject, html=delivery.html, text=delivery.text, track_opens=False)
    profile_values = profile_context(profile)
    links = [
        render_url_with_context(link.url, profile_values) if link.is_personalized else link.url
        for link in prepared.parsed.links
    ]
    parsed = prepared.parsed
    link_urls = [links[i] for i in parsed.html_link_indexes] + [links[i] for i in parsed.text_link_indexes]
    extra = {UNSUBSCRIBE_VARIABLE: "#", MIRROR_VARIABLE: "#", PIXEL_VARIABLE: "", HONEYPOT_VARIABLE: ""}
    return prepared.render(profile_values=profile_values, link_urls=link_urls, extra=extra, text_only=False)


def message_render(*, message: Message) -> RenderedMessage:
    """The message exactly as its recipient received it (rewritten links, pixel): the mirror page."""
    delivery = Delivery.objects.get(pk=message.delivery_id)
    return send_content(delivery).render(
        message_id=message.id, profile=message.profile, text_only=message.email_format == EmailFormat.TEXT
    )
