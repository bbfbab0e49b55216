"""Incremental consolidation: exactly once, late commits, late events, concurrency; recompute agrees."""
import datetime as dt
import random
import threading
import uuid

import pytest
from django.db import connection
from django.utils import timezone

from deliveries.models import DeliveryStatus, TrackedUrl, TrackingMode
from reporting.consolidation import pointer, recompute
from reporting.consolidation.pointer import events_consolidate
from reporting.consolidation.recompute import delivery_recompute
from reporting.models import (
    ClickStreamRollup,
    ConsolidationGap,
    DeliveryRollup,
    DomainRollup,
    LinkRollup,
    MessageLinkRollup,
    MessageRollup,
    PersonRollup,
    TimeBucketRollup,
    UserAgentRollup,
)
from reporting.reports import REPORT_NAMES, report_get
from reporting.statistics import reports_refresh
from tests.factories import DeliveryFactory, MessageFactory, ProfileFactory, TrackedUrlFactory, UserAgentFactory
from tests.reporting.conftest import T0, make_event
from tracking.models import EventType, TrackingEvent

ROLLUPS = (
    DeliveryRollup, DomainRollup, TimeBucketRollup, LinkRollup, ClickStreamRollup, UserAgentRollup, MessageRollup,
    MessageLinkRollup, PersonRollup,
)
COUNTERS = {"opens", "distinct_opens", "clicks", "distinct_clicks", "persons", "opt_outs", "mirror_page_views", "recipients"}


def rollup_snapshot(delivery_id: int) -> dict:
    """Every rollup row of the delivery, without ids; rows whose counters are all 0 are left out."""
    snapshot = {}
    for model in ROLLUPS:
        rows = set()
        for row in model.objects.filter(delivery_id=delivery_id).values():
            row.pop("id", None)  # per-entity rollups are keyed by their natural key
            if COUNTERS & row.keys() and not any(row[name] for name in COUNTERS & row.keys()):
                continue
            rows.add(tuple(sorted(row.items())))
        snapshot[model.__name__] = rows
    return snapshot


def all_reports(delivery_id: int) -> dict:
    """Every report's numbers (not `as_of`, the time of the run that made them)."""
    return {
        (name, humans_only): report_get(delivery_id=delivery_id, name=name, humans_only=humans_only) | {"as_of": None}
        for name in REPORT_NAMES
        for humans_only in (True, False)
    }


def opens_of(delivery, humans_only=True) -> DeliveryRollup:
    return DeliveryRollup.objects.get(delivery=delivery, humans_only=humans_only)


def generate_events(deliveries, rng: random.Random, count: int) -> None:
    """Random events over random messages and links, including machines, links deleted later, opt-out
    and mirror links, clicks without an open, events without a message or browser, late events."""
    events = []
    for delivery in deliveries:
        messages = list(delivery.messages.all())
        urls = list(TrackedUrl.objects.filter(delivery=delivery))
        for _ in range(count):
            message = rng.choice(messages + [None]) if rng.random() < 0.05 else rng.choice(messages)
            event_type = rng.choices(
                [EventType.OPEN, EventType.CLICK, EventType.OPT_OUT, EventType.MIRROR, EventType.WEB_PAGE],
                weights=[50, 40, 4, 4, 2],
            )[0]
            events.append(TrackingEvent(
                event_id=uuid.uuid4(),
                type=event_type,
                logged_at=T0 + dt.timedelta(minutes=rng.randrange(0, 3 * 24 * 60), microseconds=rng.randrange(10**6)),
                delivery=delivery,
                message=message,
                tracked_url=rng.choice(urls) if event_type == EventType.CLICK and rng.random() < 0.97 else None,
                user_agent_id=rng.choice([None, 1, 2, 3]) if event_type == EventType.OPEN else None,
                browser_id=rng.choice(["", "", "", "x1", "x2", "x3", f"r{rng.randrange(40)}"]),
                is_machine=rng.random() < 0.2,
            ))
    rng.shuffle(events)
    TrackingEvent.objects.bulk_create(events)


@pytest.mark.django_db
def test_recompute_equals_incremental_on_generated_data():
    rng = random.Random(20261123)
    for raw in ("ua one", "ua two", "ua three"):
        UserAgentFactory(raw=raw)
    deliveries = []
    for _ in range(2):
        delivery = DeliveryFactory(status=DeliveryStatus.FINISHED, to_deliver=40, processed=40, success=40)
        for number in range(40):
            MessageFactory(
                delivery=delivery, profile=ProfileFactory(), email=f"r{number}@{rng.choice(['a.example', 'b.example', 'Mixed.Example'])}",
                email_format=rng.choice(["html", "html", "text"]),
            )
        for position in range(6):
            TrackedUrlFactory(delivery=delivery, position=position, label=rng.choice(["", "Shop", "News"]),
                              category=rng.choice(["", "promo"]))
        TrackedUrlFactory(delivery=delivery, mode=TrackingMode.OPT_OUT)
        TrackedUrlFactory(delivery=delivery, mode=TrackingMode.MIRROR)
        deliveries.append(delivery)
    generate_events(deliveries, rng, 100)
    TrackedUrl.objects.filter(pk=TrackedUrl.objects.filter(delivery=deliveries[0]).first().pk).delete()
    # Arrive in several waves, consolidated in small batches, events late in time included.
    for _wave in range(3):
        generate_events(deliveries, rng, 150)
        events_consolidate(batch_size=97)
    reports_refresh()

    for delivery in deliveries:
        incremental, incremental_reports = rollup_snapshot(delivery.pk), all_reports(delivery.pk)
        delivery_recompute(delivery_id=delivery.pk)
        assert rollup_snapshot(delivery.pk) == incremental
        assert all_reports(delivery.pk) == incremental_reports
    assert sum(row.opens for row in DeliveryRollup.objects.filter(humans_only=False)) == TrackingEvent.objects.filter(
        type=EventType.OPEN
    ).count()


def test_consolidating_twice_counts_each_event_once(scenario):
    assert events_consolidate() == 15
    assert events_consolidate() == 0
    make_event(scenario.messages[2], EventType.OPEN, minutes=300)
    assert events_consolidate() == 1
    assert opens_of(scenario.delivery).opens == 4


def test_a_late_commit_below_the_pointer_is_consolidated(scenario):
    """Ids are taken at insert and become visible at commit, so a lower id can appear after a higher one."""
    message = scenario.messages[2]
    base = 10_000_000
    make_event(message, EventType.OPEN, pk=base + 1)
    make_event(message, EventType.OPEN, pk=base + 4)
    events_consolidate()
    assert list(ConsolidationGap.objects.filter(first_id__gt=base).values_list("first_id", "last_id")) == [(base + 2, base + 3)]
    make_event(message, EventType.OPEN, pk=base + 3)  # the late commit
    assert events_consolidate() == 1
    assert opens_of(scenario.delivery).opens == 3 + 3
    assert list(ConsolidationGap.objects.filter(first_id__gt=base).values_list("first_id", "last_id")) == [(base + 2, base + 2)]
    assert events_consolidate() == 0


def test_an_expired_gap_is_dropped(scenario):
    base = 10_000_000
    make_event(scenario.messages[2], EventType.OPEN, pk=base + 5)
    events_consolidate()
    ConsolidationGap.objects.update(noted_at=timezone.now() - pointer.GAP_TIME_TO_LIVE - dt.timedelta(seconds=1))
    events_consolidate()
    assert not ConsolidationGap.objects.exists()


def test_a_late_event_lands_in_its_own_bucket_and_moves_the_first_open(scenario):
    events_consolidate()
    message = scenario.messages[2]  # first human open at 09:40
    make_event(message, EventType.OPEN, minutes=-120)  # logged at 07:00, consolidated now
    events_consolidate()
    buckets = {
        row.bucket_start.astimezone(dt.UTC).strftime("%H:%M"): row
        for row in TimeBucketRollup.objects.filter(delivery=scenario.delivery, humans_only=True)
    }
    assert (buckets["07:00"].opens, buckets["07:00"].distinct_opens) == (1, 1)
    assert buckets["09:30"].distinct_opens == 1  # was 2 (m2 and m9): m2's first open moved to 07:00
    assert opens_of(scenario.delivery).distinct_opens == 5
    incremental = rollup_snapshot(scenario.delivery.pk)
    delivery_recompute(delivery_id=scenario.delivery.pk)
    assert rollup_snapshot(scenario.delivery.pk) == incremental


def test_events_of_a_deleted_link_still_count(scenario):
    scenario.url_b.delete()
    events_consolidate()
    data = report_get(delivery_id=scenario.delivery.pk, name="urls")
    assert [(row["name"], row["clicks"]) for row in data["links"]] == [("Sale", 5), ("(deleted link)", 1)]
    assert report_get(delivery_id=scenario.delivery.pk, name="indicators")["total_clicks"] == 6


def test_events_of_a_deleted_delivery_are_skipped(db):
    message = MessageFactory()
    make_event(message, EventType.OPEN)
    message.delivery.delete()
    assert events_consolidate() == 1
    assert not DeliveryRollup.objects.exists()


def test_recompute_refreshes_counters_from_messages(scenario):
    type(scenario.delivery).objects.filter(pk=scenario.delivery.pk).update(success=0, errors=0, processed=0)
    delivery = delivery_recompute(delivery_id=scenario.delivery.pk)
    assert (delivery.to_deliver, delivery.processed, delivery.success, delivery.errors) == (10, 10, 9, 1)
    assert opens_of(scenario.delivery).distinct_opens == 5


@pytest.mark.django_db(transaction=True)
def test_concurrent_runs_count_each_event_once():
    message = MessageFactory()
    TrackingEvent.objects.bulk_create(
        TrackingEvent(event_id=uuid.uuid4(), type=EventType.OPEN, logged_at=T0, delivery=message.delivery, message=message)
        for _ in range(300)
    )
    errors = []

    def run() -> None:
        try:
            while events_consolidate(batch_size=7, max_batches=5):
                pass
        except Exception as error:  # surfaced by the assertion below
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    events_consolidate()
    assert errors == []
    rollup = DeliveryRollup.objects.get(delivery=message.delivery, humans_only=False)
    assert (rollup.opens, rollup.distinct_opens) == (300, 1)


def test_recompute_counts_events_not_yet_consolidated_once(db):
    message = MessageFactory()
    base = 20_000_000
    make_event(message, EventType.OPEN, pk=base + 1)
    make_event(message, EventType.OPEN, pk=base + 3)  # base + 2 not committed yet: a gap
    events_consolidate()
    make_event(message, EventType.OPEN, pk=base + 2)  # the late commit, in the gap
    make_event(message, EventType.OPEN, pk=base + 4)  # past the pointer
    delivery_recompute(delivery_id=message.delivery_id)
    assert opens_of(message.delivery, humans_only=False).opens == 4
    assert events_consolidate() == 0
    assert opens_of(message.delivery, humans_only=False).opens == 4
    assert not ConsolidationGap.objects.filter(first_id__lte=base + 2, last_id__gte=base + 2).exists()


def test_recompute_leaves_an_event_in_a_gap_to_the_next_run(db, monkeypatch):
    message = MessageFactory()
    base = 30_000_000
    make_event(message, EventType.OPEN, pk=base + 1)
    make_event(message, EventType.OPEN, pk=base + 3)  # base + 2 not committed yet: a gap
    events_consolidate()
    # Committed while the recompute runs, after the consolidation it starts with.
    make_event(message, EventType.OPEN, pk=base + 2)
    with monkeypatch.context() as patch:
        patch.setattr(recompute, "consolidate_batch", lambda state, batch_size: (0, False))
        delivery_recompute(delivery_id=message.delivery_id)
    assert opens_of(message.delivery, humans_only=False).opens == 2
    assert events_consolidate() == 1
    assert opens_of(message.delivery, humans_only=False).opens == 3
