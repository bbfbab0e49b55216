"""Faults during a stream of clicks: every 302 answered is exactly one stored event.

Run against the real Redis and PostgreSQL in CI (.ci/run). Redis is a private redis-server started by
the test (persisting like production must), so stopping it never disturbs the shared server.
"""
import itertools
import signal
import time

import pytest
import redis
from django.db import DatabaseError, connection
from django.test import Client

from deliveries.tokens import Purpose, make_token
from tests.factories import DeliveryFactory, MessageFactory, TrackedUrlFactory
from tests.reliability.conftest import database_down, free_port
from tracking.ingest import handoff
from tracking.ingest.consumer import stream_consume_batch
from tracking.ingest.handoff import journals_flush
from tracking.ingest.spool import spool_replay
from tracking.models import EventType, TrackingEvent

pytestmark = pytest.mark.django_db(transaction=True)

USER_AGENTS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_1) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Safari/605.1.15",
]


@pytest.fixture
def click_paths(settings, tmp_path):
    settings.BEACON_SPOOL_DIR = tmp_path / "spool"
    settings.BEACON_MACHINE_CLICK_SECONDS = 0
    delivery = DeliveryFactory()
    urls = [TrackedUrlFactory(delivery=delivery) for _ in range(4)]
    messages = [MessageFactory(delivery=delivery) for _ in range(10)]
    return [f"/r/{make_token(Purpose.CLICK, m.id, u.id)}" for m in messages for u in urls]


class ClickStream:
    """Clicks links in turn from several browsers and counts the 302s."""

    def __init__(self, paths) -> None:
        self.paths = itertools.cycle(paths)
        self.clients = itertools.cycle([Client() for _ in USER_AGENTS])
        self.agents = itertools.cycle(USER_AGENTS)
        self.redirects = 0
        self.refused = 0

    def click(self, count: int) -> None:
        for _ in range(count):
            response = next(self.clients).get(next(self.paths), HTTP_USER_AGENT=next(self.agents))
            if response.status_code == 302:
                self.redirects += 1
            else:
                assert response.status_code == 503 and "Location" not in response
                self.refused += 1


def stored_clicks() -> int:
    return TrackingEvent.objects.filter(type=EventType.CLICK).count()


def drain(consumer: str = "survivor") -> None:
    while stream_consume_batch(consumer=consumer, batch_size=50, block_ms=10, reclaim_idle_ms=0):
        pass


def test_redis_stopped_and_started_again_during_clicks(settings, private_redis, click_paths, monkeypatch):
    settings.BEACON_EVENT_REDIS_URL = private_redis.url
    monkeypatch.setattr(handoff, "REDIS_RETRY_SECONDS", 0.0)
    stream = ClickStream(click_paths)
    stream.click(40)
    stream_consume_batch(consumer="c1", batch_size=25)
    stream.click(20)  # left in the stream when Redis stops

    private_redis.stop()
    stream.click(40)  # written directly while Redis is down
    assert stored_clicks() == 25 + 40

    private_redis.start()
    stream.click(40)
    drain()

    assert stream.redirects == 140 and stream.refused == 0
    assert stored_clicks() == stream.redirects


def test_redis_stopped_and_started_again_during_journaled_clicks(settings, private_redis, click_paths, monkeypatch):
    """The production default: each click is written to the process's journal, and its shipper thread
    (every 10 ms here) moves them onto the stream, or into the database while Redis is down."""
    settings.BEACON_EVENT_REDIS_URL = private_redis.url
    settings.BEACON_EVENT_JOURNAL = True
    settings.BEACON_EVENT_JOURNAL_SHIP_MS = 10
    monkeypatch.setattr(handoff, "REDIS_RETRY_SECONDS", 0.0)
    client = redis.Redis.from_url(private_redis.url)
    stream = ClickStream(click_paths)
    stream.click(40)
    wait_for(lambda: client.xlen(settings.BEACON_EVENT_STREAM) == 40)
    client.close()
    stream_consume_batch(consumer="c1", batch_size=25)

    private_redis.kill()  # SIGKILL: what it acknowledged is in its append-only file
    stream.click(40)  # shipped into the database while Redis is down
    wait_for(lambda: not list(settings.BEACON_SPOOL_DIR.glob("*.journal")))  # all shipped, the process idle
    assert stored_clicks() == 25 + 40

    private_redis.start()
    stream.click(40)
    journals_flush()
    drain()

    assert stream.redirects == 120 and stream.refused == 0
    assert spool_replay() == 0
    assert stored_clicks() == stream.redirects
    assert TrackingEvent.objects.values("event_id").distinct().count() == stream.redirects
    assert list(settings.BEACON_SPOOL_DIR.iterdir()) == []


def test_web_process_killed_before_its_journal_is_shipped(settings, private_redis, click_paths, beacon_processes):
    settings.BEACON_EVENT_REDIS_URL = private_redis.url
    redirects = beacon_processes.run_web(click_paths, killed=True)
    assert redirects == len(click_paths)
    [orphan] = settings.BEACON_SPOOL_DIR.glob("*.journal")
    assert len(orphan.read_text().splitlines()) == redirects
    assert stored_clicks() == 0

    assert spool_replay() == redirects  # the replay task takes what the dead process left
    assert stored_clicks() == redirects
    assert list(settings.BEACON_SPOOL_DIR.iterdir()) == []


def test_web_process_ships_its_journal_as_it_exits(settings, private_redis, click_paths, beacon_processes):
    settings.BEACON_EVENT_REDIS_URL = private_redis.url
    redirects = beacon_processes.run_web(click_paths, killed=False)
    assert redirects == len(click_paths)
    assert list(settings.BEACON_SPOOL_DIR.iterdir()) == []
    client = redis.Redis.from_url(private_redis.url)
    assert client.xlen(settings.BEACON_EVENT_STREAM) == redirects
    client.close()
    drain()
    assert stored_clicks() == redirects


def wait_for(condition, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def wait_until_drained(client: redis.Redis, stream: str, consumers, survivor, *, deadline_seconds: float = 60) -> None:
    """Until the stream holds nothing: every entry stored and acknowledged (consumers XDEL what they XACK)."""
    deadline = time.monotonic() + deadline_seconds
    while client.xlen(stream):
        if survivor.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"the stream was not drained:\n{consumers.output(survivor)}")
        time.sleep(0.05)


def test_consumer_process_killed_between_commit_and_acknowledgement(
    settings, private_redis, click_paths, beacon_processes
):
    settings.BEACON_EVENT_REDIS_URL = private_redis.url
    client = redis.Redis.from_url(private_redis.url)
    stream = ClickStream(click_paths)
    stream.click(60)

    doomed = beacon_processes.start("doomed", killed_before_acknowledgement=True, batch_size=45)
    deadline = time.monotonic() + 60
    while doomed.poll() is None:  # the clicks go on while it starts, stores its batch and dies
        assert time.monotonic() < deadline, beacon_processes.output(doomed)
        stream.click(1)
    assert doomed.returncode == -signal.SIGKILL, beacon_processes.output(doomed)
    beacon_processes.sync()
    assert stored_clicks() == 45
    pending = client.xpending(settings.BEACON_EVENT_STREAM, settings.BEACON_EVENT_GROUP)
    assert pending["pending"] == 45 and pending["consumers"] == [{"name": b"doomed", "pending": 45}]
    stream.click(30)

    # A fresh consumer process reclaims the dead one's pending entries (XAUTOCLAIM) once idle 200 ms.
    survivor = beacon_processes.start("survivor", reclaim_idle_ms=200, batch_size=50)
    wait_until_drained(client, settings.BEACON_EVENT_STREAM, beacon_processes, survivor)
    survivor.send_signal(signal.SIGTERM)
    assert survivor.wait(timeout=30) == 0, beacon_processes.output(survivor)
    beacon_processes.sync()

    assert stream.redirects > 90 and stream.refused == 0
    assert stored_clicks() == stream.redirects
    assert TrackingEvent.objects.values("event_id").distinct().count() == stream.redirects
    assert client.xpending(settings.BEACON_EVENT_STREAM, settings.BEACON_EVENT_GROUP)["pending"] == 0


def test_database_down_without_redis_spools_then_replays(settings, click_paths):
    stream = ClickStream(click_paths)
    stream.click(len(click_paths))  # every link clicked once: the lookups are cached
    with database_down():
        stream.click(50)
    assert stored_clicks() == len(click_paths)

    assert spool_replay() == 50
    assert spool_replay() == 0
    assert stream.redirects == len(click_paths) + 50 and stream.refused == 0
    assert stored_clicks() == stream.redirects


def test_database_down_refuses_what_it_cannot_resolve(settings, click_paths):
    stream = ClickStream(click_paths[:5])
    stream.click(5)
    with database_down():
        cold = ClickStream(click_paths[20:25])
        cold.click(5)  # messages never seen: cannot be resolved, so 503, not acknowledged
        stream.click(5)
    assert cold.refused == 5 and cold.redirects == 0
    spool_replay()
    assert stored_clicks() == stream.redirects == 10


def test_database_down_with_redis_keeps_events_pending_until_it_returns(settings, private_redis, click_paths):
    settings.BEACON_EVENT_REDIS_URL = private_redis.url
    stream = ClickStream(click_paths)
    stream.click(len(click_paths))
    with database_down():
        stream.click(30)
        with pytest.raises(DatabaseError):
            stream_consume_batch(consumer="c1", batch_size=100)
    drain()
    assert stream.redirects == len(click_paths) + 30
    assert stored_clicks() == stream.redirects


def test_database_restarted_while_a_consumer_process_runs(
    settings, private_redis, click_paths, beacon_processes, database_restart
):
    settings.BEACON_EVENT_REDIS_URL = private_redis.url
    client = redis.Redis.from_url(private_redis.url)
    stream = ClickStream(click_paths)
    stream.click(len(click_paths))  # every link clicked once: the handlers' lookups are cached
    consumer = beacon_processes.start("steady", batch_size=20)
    wait_until_drained(client, settings.BEACON_EVENT_STREAM, beacon_processes, consumer)

    assert "consumer-steady" in database_restart.begin()
    deadline = time.monotonic() + 60
    while "retrying" not in beacon_processes.output(consumer):  # clicks go on; the consumer's inserts fail
        assert consumer.poll() is None and time.monotonic() < deadline, beacon_processes.output(consumer)
        stream.click(1)
    stream.click(20)
    database_restart.end()
    # The web process's dead connection: Django drops it at the end of a request (close_old_connections),
    # which the test client does not do.
    connection.close()
    stream.click(20)

    wait_until_drained(client, settings.BEACON_EVENT_STREAM, beacon_processes, consumer)
    consumer.send_signal(signal.SIGTERM)
    assert consumer.wait(timeout=30) == 0, beacon_processes.output(consumer)
    assert stream.refused == 0
    assert stored_clicks() == stream.redirects
    assert client.xpending(settings.BEACON_EVENT_STREAM, settings.BEACON_EVENT_GROUP)["pending"] == 0


def test_database_restarted_while_the_journal_ships_into_it_with_redis_down(settings, click_paths, database_restart):
    """Redis unreachable: the shipper thread writes each batch into the database itself. Cut off, its
    batches are kept for replay; once the database is back, its next batch reconnects."""
    settings.BEACON_EVENT_REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"
    settings.BEACON_EVENT_JOURNAL = True
    settings.BEACON_EVENT_JOURNAL_SHIP_MS = 10
    spool = settings.BEACON_SPOOL_DIR
    stream = ClickStream(click_paths)
    stream.click(len(click_paths))  # every link clicked once: the handlers' lookups are cached
    wait_for(lambda: not list(spool.glob("*.journal")))
    assert stored_clicks() == len(click_paths)

    database_restart.begin()
    stream.click(30)
    wait_for(lambda: not list(spool.glob("*.journal")) and list(spool.glob("*.replay")))
    database_restart.end()
    connection.close()  # the test's own connection was cut too
    stream.click(30)
    wait_for(lambda: not list(spool.glob("*.journal")))

    assert stream.redirects == len(click_paths) + 60 and stream.refused == 0
    kept = sum(len(path.read_text().splitlines()) for path in spool.glob("*.replay"))
    assert kept == 30
    assert stored_clicks() == stream.redirects - kept
    assert spool_replay() == kept
    assert stored_clicks() == stream.redirects
