"""Machine detection: which events a program made rather than a person.

Machine events are never dropped: they are stored with ``is_machine`` set and one of the reasons below
in ``machine_reason``, so "humans only" numbers leave them out and "all" keeps them.

The checks that need only the request run in the handler (pure computation, no queries); the burst and
honeypot-client checks need the other clicks of the message and run at ingestion (``tracking.ingest``).
"""
import functools
import ipaddress
import re
from datetime import datetime, timedelta

from django.conf import settings

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
# link, within a few seconds of it (tracking.ingest.HONEYPOT_CLIENT_WINDOW).
REASON_HONEYPOT_CLIENT = "honeypot_client"
# An open fetched by Apple Mail Privacy Protection's proxy, not by the reader.
REASON_APPLE_MPP = "apple_mpp"

MACHINE_REASONS = (
    REASON_HEAD,
    REASON_PREFETCH,
    REASON_SCANNER,
    REASON_TOO_FAST,
    REASON_BURST,
    REASON_HONEYPOT,
    REASON_HONEYPOT_CLIENT,
    REASON_APPLE_MPP,
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
