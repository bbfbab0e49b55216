"""User-agent parsing: each distinct user agent (a UserAgent row) is parsed once, after it is stored.

The store creates the rows unparsed and announces them (``tracking.ingest.store.user_agents_seen``);
the task ``tracking.parse_user_agents`` fills them in here, and its periodic run takes whatever was
left unparsed (a broker that could not be reached, say).
"""
from django.utils import timezone
from ua_parser import parse as parse_user_agent

from tracking.machine import is_scanner_user_agent
from tracking.models import DeviceType, UserAgent


def _device_type(result) -> str:
    device = (result.device.family if result.device else "") or ""
    os_family = (result.os.family if result.os else "") or ""
    raw = result.string.lower()
    if device == "Spider":
        return DeviceType.BOT
    if "ipad" in raw or "tablet" in raw or (os_family == "Android" and "mobile" not in raw):
        return DeviceType.TABLET
    if os_family in {"iOS", "Android", "Windows Phone", "BlackBerry OS"} or "mobile" in raw:
        return DeviceType.MOBILE
    if os_family in {"Windows", "Mac OS X", "Linux", "Ubuntu", "Chrome OS", "Fedora"}:
        return DeviceType.DESKTOP
    return DeviceType.OTHER


def user_agents_parse(*, ids: list[int] | None = None, limit: int = 1000) -> int:
    """Fills the parsed fields of unparsed user agents (the given ones, else up to `limit`)."""
    queryset = UserAgent.objects.filter(parsed_at__isnull=True)
    if ids is not None:
        queryset = queryset.filter(pk__in=ids)
    agents = list(queryset.order_by("id")[:limit])
    now = timezone.now()
    for agent in agents:
        result = parse_user_agent(agent.raw)
        agent.os_family = ((result.os.family if result.os else "") or "Other")[:100]
        agent.browser_family = ((result.user_agent.family if result.user_agent else "") or "Other")[:100]
        agent.device_family = ((result.device.family if result.device else "") or "Other")[:100]
        agent.device_type = _device_type(result)
        agent.is_bot = agent.device_type == DeviceType.BOT or is_scanner_user_agent(agent.raw)
        agent.parsed_at = now
    UserAgent.objects.bulk_update(
        agents, ["os_family", "browser_family", "device_family", "device_type", "is_bot", "parsed_at"], batch_size=500
    )
    return len(agents)
