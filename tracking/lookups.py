"""The few reads the tracking endpoints need, cached per process.

A message's delivery and profile, a tracked URL and a recipient's personalized URL do not change once
the message is sent, so each is read once and kept in a small per-process LRU with a time limit (the
consent flag and the deletion of a delivery are seen within ``TTL_SECONDS``; a deletion in this process
clears the caches at once). Values are plain tuples: no model instances on the hot path.
"""
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Hashable
from urllib.parse import urlsplit

from django.utils.encoding import iri_to_uri

from deliveries.models import Delivery, Message, TrackedUrl, TrackingMode
from profiles.models import Profile

TTL_SECONDS = 30.0
_MISSING = object()


class TTLCache:
    """A thread-safe LRU whose entries expire after `ttl` seconds."""

    def __init__(self, maxsize: int, ttl: float = TTL_SECONDS) -> None:
        self.maxsize = maxsize
        self.ttl = ttl
        self._data: OrderedDict[Hashable, tuple[float, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> Any:
        with self._lock:
            entry = self._data.get(key)
            if entry is None:
                return _MISSING
            expires, value = entry
            if expires < time.monotonic():
                del self._data[key]
                return _MISSING
            self._data.move_to_end(key)
            return value

    def set(self, key: Hashable, value: Any) -> None:
        with self._lock:
            self._data[key] = (time.monotonic() + self.ttl, value)
            self._data.move_to_end(key)
            while len(self._data) > self.maxsize:
                self._data.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()


@dataclass(frozen=True, slots=True)
class MessageInfo:
    id: int
    delivery_id: int
    profile_id: int | None
    tracking_consent: bool
    sent_at: datetime | None

    @property
    def event_profile_id(self) -> int | None:
        """The profile to link events to: none when the recipient has not consented to tracking."""
        return self.profile_id if self.tracking_consent else None


@dataclass(frozen=True, slots=True)
class TrackedUrlInfo:
    id: int
    delivery_id: int
    url: str
    mode: str
    is_personalized: bool
    # For a link without personalization: the URL if it is a safe redirect target, else None.
    fixed_target: str | None


_messages = TTLCache(maxsize=50_000)
_urls = TTLCache(maxsize=20_000)
_personal_urls = TTLCache(maxsize=50_000)
_delivery_links = TTLCache(maxsize=2_000)


def clear_caches() -> None:
    for cache in (_messages, _urls, _personal_urls, _delivery_links):
        cache.clear()


def message_info(message_id: int) -> MessageInfo | None:
    """The message's delivery, profile and consent; None if it (or its delivery) no longer exists."""
    info = _messages.get(message_id)
    if info is _MISSING:
        row = (
            Message.objects.filter(pk=message_id)
            .values_list("delivery_id", "profile_id", "profile__tracking_consent", "sent_at")
            .first()
        )
        info = None if row is None else MessageInfo(message_id, row[0], row[1], bool(row[2]), row[3])
        _messages.set(message_id, info)
    return info


def tracked_url_info(url_id: int) -> TrackedUrlInfo | None:
    info = _urls.get(url_id)
    if info is _MISSING:
        row = (
            TrackedUrl.objects.filter(pk=url_id)
            .values_list("delivery_id", "url", "mode", "is_personalized")
            .first()
        )
        info = None
        if row is not None:
            delivery_id, url, mode, is_personalized = row
            fixed_target = None if is_personalized else redirect_uri(url)
            info = TrackedUrlInfo(url_id, delivery_id, url, mode, is_personalized, fixed_target)
        _urls.set(url_id, info)
    return info


def is_safe_target(url: str) -> bool:
    """An absolute http(s) URL with a host and nothing a header could be split on."""
    if not url or any(ord(char) < 0x21 or ord(char) == 0x7F for char in url):
        return False
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.scheme in {"http", "https"} and bool(parts.hostname)


def redirect_uri(url: str) -> str | None:
    """`url` as a Location header carries it, if it is a safe target (else None): only ASCII. A URL with
    other characters (an IRI, RFC 3987) has its host in IDNA and the rest percent-encoded as UTF-8;
    Django would otherwise send it MIME-encoded (RFC 2047) or as raw Latin-1, and browsers go astray."""
    if not is_safe_target(url):
        return None
    if url.isascii():
        return url
    try:
        netloc = urlsplit(url).netloc
        userinfo, at, host_port = netloc.rpartition("@")
        host, colon, port = host_port.partition(":") if not host_port.startswith("[") else (host_port, "", "")
        if not host.isascii():
            host = host.encode("idna").decode("ascii")
        start = url.index("//") + 2  # a safe target is scheme://netloc...
        if url[start:start + len(netloc)] != netloc:
            return None
        uri = iri_to_uri(url[:start] + userinfo + at) + host + colon + iri_to_uri(port + url[start + len(netloc):])
    except (UnicodeError, ValueError):
        return None
    return uri if uri.isascii() and is_safe_target(uri) else None


def redirect_target(message: MessageInfo, url: TrackedUrlInfo) -> str | None:
    """The recipient's URL for this link: the stored URL, personalized for them; None if unusable."""
    if not url.is_personalized:
        return url.fixed_target
    key = (message.id, url.id)
    target = _personal_urls.get(key)
    if target is _MISSING:
        from deliveries.personalization import render_link_url

        profile = Profile.objects.filter(pk=message.profile_id).first() if message.profile_id else None
        target = render_link_url(url.url, profile)
        if target is not None:
            target = redirect_uri(target)
        _personal_urls.set(key, target)
    return target


def delivery_link_ids(delivery_id: int) -> frozenset[int]:
    """The ids of the delivery's tracked (visible, counted) links: what a burst would click."""
    ids = _delivery_links.get(delivery_id)
    if ids is _MISSING:
        ids = frozenset(
            TrackedUrl.objects.filter(delivery_id=delivery_id, mode=TrackingMode.TRACKED).values_list("pk", flat=True)
        )
        _delivery_links.set(delivery_id, ids)
    return ids


def _forget_delivery(sender, instance, **kwargs) -> None:
    clear_caches()


def connect_signals() -> None:
    from django.db.models.signals import post_delete

    post_delete.connect(_forget_delivery, sender=Delivery, dispatch_uid="tracking-forget-delivery")
