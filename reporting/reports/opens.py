"""Opens by operating system, device type and browser."""
from collections import Counter

from django.db.models import QuerySet

from deliveries.models import Delivery
from reporting.models import UserAgentRollup
from reporting.percentages import percent
from tracking.models import DeviceType, UserAgent

MOBILE_DEVICES = (DeviceType.MOBILE, DeviceType.TABLET)
UNKNOWN = "Unknown"


def report_opens_breakdown(*, delivery: Delivery, humans_only: bool = True) -> dict:
    """Opens by operating system, device type and browser; for all devices and for mobile ones
    (phones and tablets). User agents not parsed yet count as Unknown."""
    opens = dict(
        UserAgentRollup.objects.filter(delivery_id=delivery.pk, humans_only=humans_only).values_list(
            "user_agent_id", "opens"
        )
    )
    return opens_by_facet(opens, UserAgent.objects.filter(id__in=list(opens)))


def opens_by_facet(opens: dict[int, int], user_agents: QuerySet) -> dict:
    """The breakdown of `opens` (user agent id -> opens) by the facets of `user_agents`, a query of the
    user agents they name (one query); a user agent missing from it or not parsed yet counts as Unknown."""
    facets = {
        pk: (os_family or UNKNOWN, device_type or "unknown", browser_family or UNKNOWN)
        for pk, os_family, device_type, browser_family in user_agents.values_list(
            "id", "os_family", "device_type", "browser_family"
        )
    }
    breakdown = {scope: {"os": Counter(), "device": Counter(), "browser": Counter()} for scope in ("all", "mobile")}
    for user_agent_id, count in opens.items():
        os_family, device_type, browser_family = facets.get(user_agent_id, (UNKNOWN, "unknown", UNKNOWN))
        scopes = ("all", "mobile") if device_type in MOBILE_DEVICES else ("all",)
        for scope in scopes:
            breakdown[scope]["os"][os_family] += count
            breakdown[scope]["device"][device_type] += count
            breakdown[scope]["browser"][browser_family] += count

    def table(counter: Counter) -> list[dict]:
        total = sum(counter.values())
        return [
            {"name": name, "opens": count, "share": percent(count, total)}
            for name, count in sorted(counter.items(), key=lambda item: (-item[1], item[0]))
        ]

    return {
        scope: {"total_opens": sum(facets_["device"].values())} | {facet: table(c) for facet, c in facets_.items()}
        for scope, facets_ in breakdown.items()
    }
