import json
from decimal import Decimal

import pytest
import redis
from django.db import OperationalError

from deliveries.tokens import Purpose, make_token
from tests.tracking.conftest import BROWSER
from tests.factories import TrackedUrlFactory
from tracking import ingest
from tracking.models import EventType, TrackingEvent

pytestmark = pytest.mark.django_db


@pytest.fixture
def stream(settings, redis_url):
    settings.BEACON_EVENT_REDIS_URL = redis_url
    return redis.Redis.from_url(redis_url)


@pytest.fixture
def click_path(sent_message):
    url = TrackedUrlFactory(delivery=sent_message.delivery, url="https://shop.example.com/")
    return f"/r/{make_token(Purpose.CLICK, sent_message.id, url.id)}"


def test_with_redis_a_warm_click_makes_no_query_and_the_consumer_stores_it(
    client, stream, click_path, django_assert_num_queries
):
    client.get(click_path, HTTP_USER_AGENT=BROWSER)
    with django_assert_num_queries(0):
        assert client.get(click_path, HTTP_USER_AGENT=BROWSER).status_code == 302
    assert stream.xlen("beacon:events") == 2
    assert TrackingEvent.objects.count() == 0

    assert ingest.stream_consume_batch(consumer="test") == 2
    assert TrackingEvent.objects.filter(type=EventType.CLICK).count() == 2
    assert stream.xlen("beacon:events") == 0
    assert stream.xpending("beacon:events", "beacon-ingest")["pending"] == 0


def test_consumer_killed_after_insert_before_ack_is_reclaimed_without_duplicates(
    client, stream, click_path, monkeypatch
):
    for _ in range(5):
        client.get(click_path, HTTP_USER_AGENT=BROWSER)

    def die(*args):
        raise SystemExit("killed")

    with monkeypatch.context() as patched:
        patched.setattr(ingest, "_acknowledge", die)
        with pytest.raises(SystemExit):
            ingest.stream_consume_batch(consumer="dead")
    assert TrackingEvent.objects.count() == 5
    assert stream.xpending("beacon:events", "beacon-ingest")["pending"] == 5

    # Not yet idle long enough: a live consumer leaves them to their owner.
    assert ingest.stream_consume_batch(consumer="alive", block_ms=10) == 0
    assert ingest.stream_consume_batch(consumer="alive", reclaim_idle_ms=0) == 5
    assert TrackingEvent.objects.count() == 5
    assert stream.xpending("beacon:events", "beacon-ingest")["pending"] == 0


def test_consumer_keeps_entries_when_the_database_fails(client, stream, click_path, monkeypatch):
    client.get(click_path, HTTP_USER_AGENT=BROWSER)

    def database_down(events, **kwargs):
        raise OperationalError("connection refused")

    with monkeypatch.context() as patched:
        patched.setattr(ingest, "events_store", database_down)
        with pytest.raises(OperationalError):
            ingest.stream_consume_batch(consumer="c1")
    # Its own failed batch is retried first, without waiting for the reclaim idle time.
    assert ingest.stream_consume_batch(consumer="c1", block_ms=10) == 1
    assert TrackingEvent.objects.count() == 1
    assert stream.xpending("beacon:events", "beacon-ingest")["pending"] == 0


def test_malformed_entries_are_dropped_and_acknowledged(stream):
    stream.xadd("beacon:events", {"e": "{not json"})
    stream.xadd("beacon:events", {"x": "1"})
    assert ingest.stream_consume_batch(consumer="c1") == 2
    assert TrackingEvent.objects.count() == 0
    assert stream.xlen("beacon:events") == 0


def test_unreachable_redis_falls_back_to_a_direct_write(client, settings, click_path):
    settings.BEACON_EVENT_REDIS_URL = "redis://127.0.0.1:1/0"
    assert client.get(click_path, HTTP_USER_AGENT=BROWSER).status_code == 302
    assert client.get(click_path, HTTP_USER_AGENT=BROWSER).status_code == 302
    assert TrackingEvent.objects.count() == 2


def test_database_down_spools_and_replay_stores_once(client, settings, tmp_path, click_path, monkeypatch):
    settings.BEACON_SPOOL_DIR = tmp_path
    client.get(click_path, HTTP_USER_AGENT=BROWSER)

    def database_down(events, **kwargs):
        raise OperationalError("connection refused")

    with monkeypatch.context() as patched:
        patched.setattr(ingest, "events_store", database_down)
        for _ in range(3):
            assert client.get(click_path, HTTP_USER_AGENT=BROWSER).status_code == 302
    [spool] = tmp_path.glob("*.jsonl")
    lines = [json.loads(line) for line in spool.read_text().splitlines()]
    assert len(lines) == 3 and {line["ty"] for line in lines} == {"click"}
    assert TrackingEvent.objects.count() == 1

    assert ingest.spool_replay() == 3
    assert TrackingEvent.objects.count() == 4
    assert list(tmp_path.iterdir()) == []
    # A replay that died before deleting its file is replayed again without duplicates.
    spool.write_text("".join(json.dumps(line) + "\n" for line in lines))
    assert ingest.spool_replay() == 3
    assert TrackingEvent.objects.count() == 4


def test_nothing_stored_anywhere_means_503_not_a_redirect(client, settings, tmp_path, click_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("")
    settings.BEACON_SPOOL_DIR = blocker / "spool"

    def database_down(events, **kwargs):
        raise OperationalError("connection refused")

    monkeypatch.setattr(ingest, "events_store", database_down)
    response = client.get(click_path, HTTP_USER_AGENT=BROWSER)
    assert response.status_code == 503 and "Location" not in response


def test_events_store_is_idempotent_by_event_id(sent_message):
    event = ingest.event_payload(
        type=EventType.OPEN, delivery_id=sent_message.delivery_id, message_id=sent_message.id, profile_id=None
    )
    ingest.events_store([event, dict(event)])
    ingest.events_store([event])
    assert TrackingEvent.objects.count() == 1


def test_a_consumer_sized_batch_round_trips_every_field(sent_message):
    awkward = "https://shop.example.com/a\tb\\c\nd\re?q=ü"
    events = [
        ingest.event_payload(
            type=EventType.WEB_PAGE,
            delivery_id=sent_message.delivery_id,
            message_id=sent_message.id,
            profile_id=None if number % 2 else sent_message.profile_id,
            tracked_url_id=None,
            user_agent=f"Agent {number % 3}",
            ip="2001:db8::" if number % 2 else "192.0.2.0",
            browser_id=f"{number:032x}",
            page_url=awkward,
            amount="12.5" if number % 3 == 0 else None,
            machine_reason="scanner" if number % 5 == 0 else "",
        )
        for number in range(ingest.COPY_THRESHOLD * 2 + 1)
    ]
    ingest.events_store(events)
    ingest.events_store(events)
    stored = {str(event.event_id.hex): event for event in TrackingEvent.objects.all()}
    assert len(stored) == len(events)
    for number, payload in enumerate(events):
        event = stored[payload["id"]]
        assert event.page_url == awkward
        assert event.browser_id == f"{number:032x}"
        assert event.ip == ("2001:db8::" if number % 2 else "192.0.2.0")
        assert event.amount == (Decimal("12.50") if number % 3 == 0 else None)
        assert (event.is_machine, event.machine_reason) == ((True, "scanner") if number % 5 == 0 else (False, ""))
        assert event.profile_id == (None if number % 2 else sent_message.profile_id)
        assert abs(event.logged_at.timestamp() - payload["at"]) < 0.001


@pytest.fixture
def journaled(settings, stream, tmp_path):
    """The production default with Redis: events go through the process's journal."""
    settings.BEACON_EVENT_JOURNAL = True
    settings.BEACON_EVENT_JOURNAL_SHIP_MS = 3_600_000  # the tests ship by hand
    settings.BEACON_SPOOL_DIR = tmp_path
    return stream


def test_with_the_journal_a_click_is_on_disk_when_answered_and_on_the_stream_once_shipped(
    client, journaled, tmp_path, click_path, django_assert_num_queries
):
    client.get(click_path, HTTP_USER_AGENT=BROWSER)
    with django_assert_num_queries(0):
        assert client.get(click_path, HTTP_USER_AGENT=BROWSER).status_code == 302
    [segment] = tmp_path.glob("*.journal")
    written = [json.loads(line) for line in segment.read_text().splitlines()]
    assert [event["ty"] for event in written] == ["click", "click"]
    assert journaled.xlen("beacon:events") == 0

    ingest.journals_flush()
    entries = journaled.xrange("beacon:events")
    assert [json.loads(fields[b"e"]) for _, fields in entries] == written
    assert list(tmp_path.iterdir()) == []
    assert ingest.stream_consume_batch(consumer="test") == 2
    assert TrackingEvent.objects.filter(type=EventType.CLICK).count() == 2


def test_with_the_journal_and_redis_down_the_shipment_is_written_directly(client, journaled, settings, tmp_path, click_path):
    settings.BEACON_EVENT_REDIS_URL = "redis://127.0.0.1:1/0"
    for _ in range(3):
        assert client.get(click_path, HTTP_USER_AGENT=BROWSER).status_code == 302
    assert TrackingEvent.objects.count() == 0

    ingest.journals_flush()
    assert TrackingEvent.objects.filter(type=EventType.CLICK).count() == 3
    assert list(tmp_path.iterdir()) == []


def test_with_the_journal_redis_and_the_database_down_the_events_wait_for_the_replay(
    client, journaled, settings, tmp_path, click_path, monkeypatch
):
    settings.BEACON_EVENT_REDIS_URL = "redis://127.0.0.1:1/0"
    for _ in range(3):
        assert client.get(click_path, HTTP_USER_AGENT=BROWSER).status_code == 302

    def database_down(events, **kwargs):
        raise OperationalError("connection refused")

    with monkeypatch.context() as patched:
        patched.setattr(ingest, "events_store", database_down)
        ingest.journals_flush()
    [kept] = tmp_path.glob("*.replay")
    assert len(kept.read_text().splitlines()) == 3

    assert ingest.spool_replay() == 3
    assert TrackingEvent.objects.filter(type=EventType.CLICK).count() == 3
    assert list(tmp_path.iterdir()) == []


def test_a_journal_that_cannot_be_written_hands_the_click_to_redis_at_once(client, journaled, settings, tmp_path, click_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    settings.BEACON_SPOOL_DIR = blocker / "spool"
    assert client.get(click_path, HTTP_USER_AGENT=BROWSER).status_code == 302
    assert journaled.xlen("beacon:events") == 1
