"""Machine detection: which events a program made rather than a person.

Machine events are never dropped: they are stored with ``is_machine`` set and one of the reasons below
in ``machine_reason``, so "humans only" numbers leave them out and "all" keeps them.

The checks that need only the request run in the handler (pure computation, no queries); the burst,
honeypot-client and flood checks need the other clicks of the message and run as the clicks are stored
(``flag_click_patterns``, called by ``tracking.ingest.store``).
"""
import functools
import ipaddress
import re
from collections import defaultdict
from datetime import datetime, timedelta

from django.conf import settings

from tracking import lookups
from tracking.models import EventType, TrackingEvent

# Each reason is a string stored in TrackingEvent.machine_reason.
# A HEAD request: link checkers and scanners look without fetching.
REASON_HEAD = "head"
# The browser announced a speculative fetch (`Purpose: prefetch`, `Sec-Purpose: prefetch`).
REASON_PREFETCH = "prefetch"
# The user agent is a known security scanner, link expander or mail proxy (SCANNER_USER_AGENT_PATTERNS).
REASON_SCANNER = "scanner"
# A click within BEACON_MACHINE_CLICK_SECONDS of the message being sent: too fast for a person.
REASON_TOO_FAST = "too_fast"
# Every link of the message clicked within one second: a scanner following all links.
REASON_BURST = "burst"
# A click on a hidden honeypot link (TrackedUrl.mode == "honeypot"), which no person can see.
REASON_HONEYPOT = "honeypot"
# Another click of the message by the client (anonymized IP and user agent) that clicked its honeypot
# link, within a few seconds of it (HONEYPOT_CLIENT_WINDOW).
REASON_HONEYPOT_CLIENT = "honeypot_client"
# An open fetched by Apple Mail Privacy Protection's proxy, not by the reader.
REASON_APPLE_MPP = "apple_mpp"
# A click beyond the FLOOD_CLICKS-th of one message by one client (anonymized IP and user agent) within
# FLOOD_WINDOW: a link replayed by a program, not read by a person.
REASON_FLOOD = "flood"

MACHINE_REASONS = (
    REASON_HEAD,
    REASON_PREFETCH,
    REASON_SCANNER,
    REASON_TOO_FAST,
    REASON_BURST,
    REASON_HONEYPOT,
    REASON_HONEYPOT_CLIENT,
    REASON_APPLE_MPP,
    REASON_FLOOD,
)

# Substrings (case-insensitive) of user agents of security scanners, link expanders and mail proxies.
SCANNER_USER_AGENT_PATTERNS = (
    "barracuda",
    "mimecast",
    "proofpoint",
    "safelinks",
    "symantec",
    "messagelabs",
    "forcepoint",
    "trendmicro",
    "sophos",
    "fortiguard",
    "zscaler",
    "paloalto",
    "cisco ironport",
    "googleimageproxy",
    "yahoomailproxy",
    "bingpreview",
    "slackbot",
    "twitterbot",
    "facebookexternalhit",
    "linkedinbot",
    "whatsapp",
    "skypeuripreview",
    "discordbot",
    "python-requests",
    "python-urllib",
    "go-http-client",
    "curl/",
    "wget/",
    "httpclient",
    "okhttp",
    "java/",
    "libwww-perl",
    "headlesschrome",
    "phantomjs",
    "bot/",
    "bot;",
    "crawler",
    "spider",
    "scanner",
)
_SCANNER_RE = re.compile("|".join(re.escape(pattern) for pattern in SCANNER_USER_AGENT_PATTERNS), re.IGNORECASE)

# Apple's Mail Privacy Protection proxy fetches images with this bare user agent, from Apple's network.
APPLE_MPP_USER_AGENT = "Mozilla/5.0"
APPLE_NETWORKS = (ipaddress.ip_network("17.0.0.0/8"),)

PREFETCH_HEADERS = ("HTTP_PURPOSE", "HTTP_SEC_PURPOSE", "HTTP_X_PURPOSE", "HTTP_X_MOZ")

BURST_WINDOW = timedelta(seconds=1)
HONEYPOT_CLIENT_WINDOW = timedelta(seconds=5)
# A person reading a message may click a few of its links, some twice; not this many in ten minutes.
FLOOD_WINDOW = timedelta(minutes=10)
FLOOD_CLICKS = 20


@functools.lru_cache(maxsize=4096)
def is_scanner_user_agent(user_agent: str) -> bool:
    # Cached: a handful of user agents make most requests, and the pattern scan is the costly part.
    return not user_agent or bool(_SCANNER_RE.search(user_agent))


def is_apple_network(ip: str) -> bool:
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return any(address in network for network in APPLE_NETWORKS)


def request_machine_reason(meta: dict, method: str, user_agent: str) -> str:
    """The reason the request itself shows a machine (HEAD, prefetch, scanner UA), or ''."""
    if method == "HEAD":
        return REASON_HEAD
    for header in PREFETCH_HEADERS:
        if "prefetch" in meta.get(header, "").lower():
            return REASON_PREFETCH
    if is_scanner_user_agent(user_agent):
        return REASON_SCANNER
    return ""


def click_machine_reason(
    meta: dict, method: str, user_agent: str, *, sent_at: datetime | None, now: datetime, honeypot: bool
) -> str:
    if honeypot:
        return REASON_HONEYPOT
    reason = request_machine_reason(meta, method, user_agent)
    if reason:
        return reason
    if sent_at is not None and now - sent_at < timedelta(seconds=settings.BEACON_MACHINE_CLICK_SECONDS):
        return REASON_TOO_FAST
    return ""


def open_machine_reason(meta: dict, method: str, user_agent: str, ip: str) -> str:
    if user_agent.strip() == APPLE_MPP_USER_AGENT or is_apple_network(ip):
        return REASON_APPLE_MPP
    return request_machine_reason(meta, method, user_agent)


def _burst_ids(message_clicks: list) -> list:
    """The unflagged clicks of a time window of one second in which every link of the message was hit."""
    if len({click.tracked_url_id for click in message_clicks}) < 2:
        return []
    links = lookups.delivery_link_ids(message_clicks[0].delivery_id)
    if len(links) < 2:
        return []
    found = []
    start = 0
    for end in range(len(message_clicks)):
        while message_clicks[end].logged_at - message_clicks[start].logged_at > BURST_WINDOW:
            start += 1
        in_window = message_clicks[start : end + 1]
        if links <= {click.tracked_url_id for click in in_window}:
            found.extend(click.event_id for click in in_window if not click.is_machine)
    return found


def _honeypot_client_ids(message_clicks: list) -> list:
    """The unflagged clicks made by a client (anonymized IP and user agent) that clicked the message's
    honeypot link within HONEYPOT_CLIENT_WINDOW of them."""
    honeypot_times = defaultdict(list)
    for click in message_clicks:
        if click.machine_reason == REASON_HONEYPOT and click.ip is not None:
            honeypot_times[(click.ip, click.user_agent_id)].append(click.logged_at)
    if not honeypot_times:
        return []
    return [
        click.event_id
        for click in message_clicks
        if not click.is_machine
        and any(
            abs(click.logged_at - at) <= HONEYPOT_CLIENT_WINDOW
            for at in honeypot_times.get((click.ip, click.user_agent_id), ())
        )
    ]


def _flood_ids(message_clicks: list) -> list:
    """The unflagged clicks that a client (anonymized IP and user agent) made after FLOOD_CLICKS others of
    the message within FLOOD_WINDOW before them (the clicks are in time order)."""
    by_client = defaultdict(list)
    for click in message_clicks:
        by_client[(click.ip, click.user_agent_id)].append(click)
    found = []
    for clicks in by_client.values():
        start = 0
        for end, click in enumerate(clicks):
            while click.logged_at - clicks[start].logged_at > FLOOD_WINDOW:
                start += 1
            if end - start >= FLOOD_CLICKS and not click.is_machine:
                found.append(click.event_id)
    return found


def flag_click_patterns(*, message_ids: set[int], first: datetime, last: datetime) -> None:
    """Marks as machine, among the stored clicks of these messages, the clicks of a burst (every link of
    the message within one second), the other clicks of a client that clicked the honeypot link, and a
    client's clicks of a flood (more than FLOOD_CLICKS of the message within FLOOD_WINDOW).

    Called with the clicks just stored, logged between `first` and `last`, inside their transaction.
    """
    window = max(BURST_WINDOW, HONEYPOT_CLIENT_WINDOW)
    earliest, latest = first - max(window, FLOOD_WINDOW), last + window
    # The time window is applied here, not in SQL: with it in the query, the planner may pick the
    # logged_at index and read every recent event (it did on a freshly filled table, stats not yet
    # analyzed); without it, only the (message, type) index fits, and it reads the same rows anyway.
    candidates = (
        TrackingEvent.objects.filter(message_id__in=message_ids, type=EventType.CLICK)
        .values_list(
            "message_id", "delivery_id", "tracked_url_id", "logged_at", "event_id", "is_machine", "machine_reason",
            "ip", "user_agent_id", named=True,
        )
        .order_by("message_id", "logged_at")
    )
    by_message: dict[int, list] = defaultdict(list)
    for candidate in candidates:
        if earliest <= candidate.logged_at <= latest:
            by_message[candidate.message_id].append(candidate)
    burst_ids: set = set()
    honeypot_client_ids: set = set()
    flood_ids: set = set()
    for message_clicks in by_message.values():
        burst_ids.update(_burst_ids(message_clicks))
        honeypot_client_ids.update(_honeypot_client_ids(message_clicks))
        flood_ids.update(_flood_ids(message_clicks))
    for ids, reason in (
        (burst_ids, REASON_BURST),
        (honeypot_client_ids - burst_ids, REASON_HONEYPOT_CLIENT),
        (flood_ids - burst_ids - honeypot_client_ids, REASON_FLOOD),
    ):
        if ids:
            TrackingEvent.objects.filter(event_id__in=ids, is_machine=False).update(is_machine=True, machine_reason=reason)
