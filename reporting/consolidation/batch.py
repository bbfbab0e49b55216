"""One merge's batch: the events it reads, what each counts as, its temporary tables, and the increments it
adds to the small rollup tables.

The temporary tables' columns are named after the columns they come from (the events', then the rollups'),
which is what lets the merges write `SELECT b.*` and `INSERT INTO <rollup> (...) SELECT ...` by name.
"""
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from deliveries.models import Delivery, TrackedUrl, TrackingMode
from reporting.consolidation.sql import Table, add_counts, literal
from reporting.models import (
    ClickStreamRollup,
    DeliveryRollup,
    DomainRollup,
    LinkRollup,
    TimeBucketRollup,
    UserAgentRollup,
)
from tracking.models import EventType, TrackingEvent

EVENTS = Table(TrackingEvent)
DELIVERIES = Table(Delivery)
URLS = Table(TrackedUrl)

# What an event counts as (`kind`): an open, a click (not on the opt-out or mirror link), an opt-out, a view of
# the mirror page; 0: a click counted as none of these.
OPEN, CLICK, OPT_OUT, MIRROR = 1, 2, 3, 4
HUMAN = "NOT is_machine"
# Relations of one merge, temporary, dropped at its end.
BATCH = "reporting_batch_events"
BATCH_MESSAGES = "reporting_batch_messages"
BATCH_LINKS = "reporting_batch_links"
OLD_LINKS = "reporting_old_links"
NEW_LINKS = "reporting_new_links"
LINK_KEYS = "reporting_link_keys"
BATCH_PERSONS = "reporting_batch_persons"
TEMPORARY_TABLES = (BATCH, BATCH_MESSAGES, BATCH_LINKS, OLD_LINKS, NEW_LINKS, LINK_KEYS, BATCH_PERSONS)

# (counter of the small tables, the events it counts)
COUNTED = (
    ("opens", f"kind = {OPEN}"),
    ("clicks", f"kind = {CLICK}"),
    ("opt_outs", f"kind = {OPT_OUT}"),
    ("mirror_page_views", f"kind = {MIRROR}"),
)


def events_select(condition: str) -> str:
    """The events matching `condition` (SQL on `e`, the events table) that rollups count, with their `kind`;
    events of deleted deliveries are left out."""
    e = EVENTS
    columns = ", ".join(
        f"e.{column}" for column in (e.delivery, e.message, e.logged_at, e.is_machine, e.tracked_url, e.user_agent, e.browser_id)
    )
    open_, click, opt_out, mirror = (
        literal(event_type) for event_type in (EventType.OPEN, EventType.CLICK, EventType.OPT_OUT, EventType.MIRROR)
    )
    not_counted = f"{literal(TrackingMode.OPT_OUT)}, {literal(TrackingMode.MIRROR)}"
    return (
        f"SELECT {columns}, "
        f"CASE WHEN e.{e.type} = {open_} THEN {OPEN} "
        f"WHEN e.{e.type} = {click} AND (u.{URLS.mode} IS NULL OR u.{URLS.mode} NOT IN ({not_counted})) THEN {CLICK} "
        f"WHEN e.{e.type} = {opt_out} THEN {OPT_OUT} WHEN e.{e.type} = {mirror} THEN {MIRROR} ELSE 0 END AS kind "
        f"FROM {EVENTS} e JOIN {DELIVERIES} d ON d.{DELIVERIES.id} = e.{e.delivery} "
        f"LEFT JOIN {URLS} u ON u.{URLS.id} = e.{e.tracked_url} "
        f"WHERE ({condition}) AND e.{e.type} IN ({open_}, {click}, {opt_out}, {mirror})"
    )


def scopes_of(is_machine: bool) -> tuple[bool, ...]:
    """The `humans_only` rows an event counts in."""
    return (False,) if is_machine else (False, True)


@dataclass
class Deltas:
    """Increments to the small rollup tables, keyed as their unique constraints."""

    delivery: dict = field(default_factory=lambda: defaultdict(Counter))
    domain: dict = field(default_factory=lambda: defaultdict(Counter))
    bucket: dict = field(default_factory=lambda: defaultdict(Counter))
    link: dict = field(default_factory=lambda: defaultdict(Counter))
    stream: dict = field(default_factory=lambda: defaultdict(Counter))
    user_agent: dict = field(default_factory=lambda: defaultdict(Counter))

    def write(self) -> None:
        add_counts(DeliveryRollup, ("delivery_id", "humans_only"), self.delivery)
        add_counts(DomainRollup, ("delivery_id", "humans_only", "domain"), self.domain)
        add_counts(TimeBucketRollup, ("delivery_id", "humans_only", "bucket_start"), self.bucket)
        add_counts(LinkRollup, ("delivery_id", "humans_only", "kind", "key", "day"), self.link)
        add_counts(ClickStreamRollup, ("delivery_id", "humans_only", "from_url_id", "to_url_id"), self.stream)
        add_counts(UserAgentRollup, ("delivery_id", "humans_only", "user_agent_id"), self.user_agent)
