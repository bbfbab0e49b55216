"""The Settings page: the tracking host, the signing keys by fingerprint and the queue health for
administrators; for every role, their own API token (tests/accounts/test_tokens.py)."""
import hashlib

import pytest
import redis
from django.test import Client

from accounts.roles import ADMINISTRATOR, MARKETER, VIEWER
from reporting import health
from reporting.statistics import reports_refresh
from tests.factories import MessageFactory, RoleUserFactory, TrackingEventFactory

pytestmark = pytest.mark.django_db

KEYS = ["the-new-signing-key", "the-old-signing-key"]


def fingerprint(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:8]


@pytest.fixture
def keys(settings):
    settings.BEACON_SIGNING_KEYS = KEYS
    settings.BEACON_PUBLIC_URL = "https://t.example.com"


def settings_html(role: str) -> str:
    client = Client()
    client.force_login(RoleUserFactory(role=role))
    response = client.get("/settings/")
    assert response.status_code == 200
    return response.content.decode()


def test_an_administrator_sees_host_keys_and_health_never_a_key(keys):
    html = settings_html(ADMINISTRATOR)
    assert "https://t.example.com" in html
    assert "2 keys" in html
    assert f"<code>{fingerprint(KEYS[0])}</code></td><td>signs and verifies" in html
    assert f"<code>{fingerprint(KEYS[1])}</code></td><td>verifies only" in html
    assert not any(key in html for key in KEYS)
    assert "no stream: events are written directly" in html
    assert "API token" in html


@pytest.mark.parametrize("role", [VIEWER, MARKETER])
def test_other_roles_see_only_their_token(role, keys):
    html = settings_html(role)
    assert "API token" in html
    assert "Signing keys" not in html and "Queue health" not in html and "https://t.example.com" not in html
    assert fingerprint(KEYS[0]) not in html


def test_consolidation_lag_counts_events_waiting_and_the_last_run():
    events = [TrackingEventFactory(message=MessageFactory()) for _ in range(3)]
    lag = health.consolidation_lag()
    assert (lag.waiting, lag.waiting_more, lag.last_run_at) == (3, False, None)
    assert "never" in settings_html(ADMINISTRATOR)

    reports_refresh()
    lag = health.consolidation_lag()
    assert lag.waiting == 0 and lag.last_run_at is not None
    TrackingEventFactory(message=events[0].message)
    assert health.consolidation_lag().waiting == 1


def test_consolidation_lag_stops_counting_at_its_limit(monkeypatch):
    monkeypatch.setattr(health, "LAG_COUNT_LIMIT", 2)
    for _ in range(3):
        TrackingEventFactory(message=MessageFactory())
    lag = health.consolidation_lag()
    assert (lag.waiting, lag.waiting_more) == (2, True)
    assert "more than 2" in settings_html(ADMINISTRATOR)


def test_spool_files_waiting_are_counted(settings, tmp_path):
    settings.BEACON_SPOOL_DIR = tmp_path / "spool"
    assert health.pipeline_health()["spool_files"] == 0  # no directory yet: nothing spooled
    settings.BEACON_SPOOL_DIR.mkdir()
    for name in ("events-1.jsonl", "segment-2.replay", "segment-3.journal", "segment-4.creating"):
        (settings.BEACON_SPOOL_DIR / name).write_text("")
    assert health.pipeline_health()["spool_files"] == 2


def test_the_stream_backlog_and_what_is_pending(settings, redis_url):
    settings.BEACON_EVENT_REDIS_URL = redis_url
    assert health.event_stream_state().backlog == (0, 0)  # no stream and no group yet
    client = redis.Redis.from_url(redis_url)
    for number in range(3):
        client.xadd(settings.BEACON_EVENT_STREAM, {"e": f"event {number}"})
    client.xgroup_create(settings.BEACON_EVENT_STREAM, settings.BEACON_EVENT_GROUP, id="0")
    client.xreadgroup(settings.BEACON_EVENT_GROUP, "consumer-1", {settings.BEACON_EVENT_STREAM: ">"}, count=1)
    state = health.event_stream_state()
    assert (state.configured, state.backlog, state.error) == (True, (3, 1), "")
    assert "3 waiting, of which 1 being stored" in settings_html(ADMINISTRATOR)


def test_an_unreachable_stream_is_shown_not_raised(settings):
    settings.BEACON_EVENT_REDIS_URL = "redis://127.0.0.1:1/0"
    state = health.event_stream_state()
    assert state.configured and state.backlog is None and state.error
    assert "Redis unreachable" in settings_html(ADMINISTRATOR)
