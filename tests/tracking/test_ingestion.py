import json
from decimal import Decimal

import pytest
import redis
from django.db import OperationalError

from deliveries.tokens import Purpose, make_token
from tests.tracking.conftest import BROWSER
from tests.factories import TrackedUrlFactory
from tracking.ingest import consumer, store
from tracking.ingest.consumer import stream_consume_batch
from tracking.ingest.event import Event, new_event
from tracking.ingest.handoff import journals_flush
from tracking.ingest.spool import spool_replay
from tracking.ingest.store import COPY_THRESHOLD, events_store
from tracking.models import EventType, TrackingEvent

pytestmark = pytest.mark.django_db

# One event as the version before tracking.ingest.event wrote it to journals, the stream and spools.
PREVIOUS_VERSION_LINE = (
    b'{"id":"018f3a5b2c7d7e3f9a1b2c3d4e5f6a7b","ty":"click","at":1715000000.123456,"d":12,"m":3456,"p":789,'
    b'"u":55,"ua":"Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) \\u00e9","ip":"198.51.100.0",'
    b'"b":"0123456789abcdef0123456789abcdef","pg":"","am":null,"mr":""}'
)


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

    assert stream_consume_batch(consumer="test") == 2
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
        patched.setattr(consumer, "_acknowledge", die)
        with pytest.raises(SystemExit):
            stream_consume_batch(consumer="dead")
    assert TrackingEvent.objects.count() == 5
    assert stream.xpending("beacon:events", "beacon-ingest")["pending"] == 5

    # Not yet idle long enough: a live consumer leaves them to their owner.
    assert stream_consume_batch(consumer="alive", block_ms=10) == 0
    assert stream_consume_batch(consumer="alive", reclaim_idle_ms=0) == 5
    assert TrackingEvent.objects.count() == 5
    assert stream.xpending("beacon:events", "beacon-ingest")["pending"] == 0


def test_consumer_keeps_entries_when_the_database_fails(client, stream, click_path, monkeypatch):
    client.get(click_path, HTTP_USER_AGENT=BROWSER)

    def database_down(events, **kwargs):
        raise OperationalError("connection refused")

    with monkeypatch.context() as patched:
        patched.setattr(store, "events_store", database_down)
        with pytest.raises(OperationalError):
            stream_consume_batch(consumer="c1")
    # Its own failed batch is retried first, without waiting for the reclaim idle time.
    assert stream_consume_batch(consumer="c1", block_ms=10) == 1
    assert TrackingEvent.objects.count() == 1
    assert stream.xpending("beacon:events", "beacon-ingest")["pending"] == 0


def test_malformed_entries_are_dropped_and_acknowledged(stream):
    stream.xadd("beacon:events", {"e": "{not json"})
    stream.xadd("beacon:events", {"x": "1"})
    assert stream_consume_batch(consumer="c1") == 2
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
        patched.setattr(store, "events_store", database_down)
        for _ in range(3):
            assert client.get(click_path, HTTP_USER_AGENT=BROWSER).status_code == 302
    [spool] = tmp_path.glob("*.jsonl")
    lines = [json.loads(line) for line in spool.read_text().splitlines()]
    assert len(lines) == 3 and {line["ty"] for line in lines} == {"click"}
    assert TrackingEvent.objects.count() == 1

    assert spool_replay() == 3
    assert TrackingEvent.objects.count() == 4
    assert list(tmp_path.iterdir()) == []
    # A replay that died before deleting its file is replayed again without duplicates.
    spool.write_text("".join(json.dumps(line) + "\n" for line in lines))
    assert spool_replay() == 3
    assert TrackingEvent.objects.count() == 4


def test_nothing_stored_anywhere_means_503_not_a_redirect(client, settings, tmp_path, click_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("")
    settings.BEACON_SPOOL_DIR = blocker / "spool"

    def database_down(events, **kwargs):
        raise OperationalError("connection refused")

    monkeypatch.setattr(store, "events_store", database_down)
    response = client.get(click_path, HTTP_USER_AGENT=BROWSER)
    assert response.status_code == 503 and "Location" not in response


def test_events_store_is_idempotent_by_event_id(sent_message):
    event = new_event(
        type=EventType.OPEN, delivery_id=sent_message.delivery_id, message_id=sent_message.id, profile_id=None
    )
    events_store([event, Event(*event)])
    events_store([event])
    assert TrackingEvent.objects.count() == 1


def test_a_consumer_sized_batch_round_trips_every_field(sent_message):
    awkward = "https://shop.example.com/a\tb\\c\nd\re?q=ü"
    events = [
        new_event(
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
        for number in range(COPY_THRESHOLD * 2 + 1)
    ]
    events_store(events)
    events_store(events)
    stored = {str(event.event_id.hex): event for event in TrackingEvent.objects.all()}
    assert len(stored) == len(events)
    for number, payload in enumerate(events):
        event = stored[payload.event_id]
        assert event.page_url == awkward
        assert event.browser_id == f"{number:032x}"
        assert event.ip == ("2001:db8::" if number % 2 else "192.0.2.0")
        assert event.amount == (Decimal("12.50") if number % 3 == 0 else None)
        assert (event.is_machine, event.machine_reason) == ((True, "scanner") if number % 5 == 0 else (False, ""))
        assert event.profile_id == (None if number % 2 else sent_message.profile_id)
        assert abs(event.logged_at.timestamp() - payload.logged_at) < 0.001


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

    journals_flush()
    entries = journaled.xrange("beacon:events")
    assert [json.loads(fields[b"e"]) for _, fields in entries] == written
    assert list(tmp_path.iterdir()) == []
    assert stream_consume_batch(consumer="test") == 2
    assert TrackingEvent.objects.filter(type=EventType.CLICK).count() == 2


def test_with_the_journal_and_redis_down_the_shipment_is_written_directly(client, journaled, settings, tmp_path, click_path):
    settings.BEACON_EVENT_REDIS_URL = "redis://127.0.0.1:1/0"
    for _ in range(3):
        assert client.get(click_path, HTTP_USER_AGENT=BROWSER).status_code == 302
    assert TrackingEvent.objects.count() == 0

    journals_flush()
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
        patched.setattr(store, "events_store", database_down)
        journals_flush()
    [kept] = tmp_path.glob("*.replay")
    assert len(kept.read_text().splitlines()) == 3

    assert spool_replay() == 3
    assert TrackingEvent.objects.filter(type=EventType.CLICK).count() == 3
    assert list(tmp_path.iterdir()) == []


def test_a_journal_that_cannot_be_written_hands_the_click_to_redis_at_once(client, journaled, settings, tmp_path, click_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    settings.BEACON_SPOOL_DIR = blocker / "spool"
    assert client.get(click_path, HTTP_USER_AGENT=BROWSER).status_code == 302
    assert journaled.xlen("beacon:events") == 1


def test_an_event_line_of_the_previous_version_is_read_and_written_back_byte_for_byte():
    event = Event.from_wire(PREVIOUS_VERSION_LINE)
    assert event == Event(
        type="click",
        logged_at=1715000000.123456,
        delivery_id=12,
        message_id=3456,
        profile_id=789,
        tracked_url_id=55,
        user_agent="Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) \u00e9",
        ip="198.51.100.0",
        browser_id="0123456789abcdef0123456789abcdef",
        page_url="",
        amount=None,
        machine_reason="",
        event_id="018f3a5b2c7d7e3f9a1b2c3d4e5f6a7b",
    )
    assert event.to_wire() == PREVIOUS_VERSION_LINE


def test_a_spool_written_by_the_previous_version_is_replayed(settings, tmp_path):
    settings.BEACON_SPOOL_DIR = tmp_path
    (tmp_path / "events-1.jsonl").write_bytes(PREVIOUS_VERSION_LINE + b"\n")
    assert spool_replay() == 1
    stored = TrackingEvent.objects.select_related("user_agent").get()
    assert stored.event_id.hex == "018f3a5b2c7d7e3f9a1b2c3d4e5f6a7b"
    assert (stored.type, stored.delivery_id, stored.message_id, stored.profile_id, stored.tracked_url_id) == (
        "click", 12, 3456, 789, 55
    )
    assert stored.user_agent.raw.endswith("\u00e9")
    assert (stored.ip, stored.browser_id, stored.is_machine) == ("198.51.100.0", "0123456789abcdef0123456789abcdef", False)
    assert abs(stored.logged_at.timestamp() - 1715000000.123456) < 0.001
