import os

import pytest
from rest_framework.test import APIClient

from beacon.celery import app as celery_app
from beacon.translations import messages_compile
from tests.factories import UserFactory

# Runs of pytest alone, without dev.py, see the recipient pages' translations too.
messages_compile()

# Tests run tasks in-process, whatever REDIS_URL says; workers are exercised by the reliability tests.
celery_app.conf.task_always_eager = True
celery_app.conf.task_eager_propagates = True


def _service_missing(what: str) -> None:
    if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
        pytest.fail(f"{what} is required in CI but cannot be reached")
    pytest.skip(f"{what} not available")


@pytest.fixture
def redis_url() -> str:
    """A Redis database of the tests' own, emptied before each test; fails (never skips) in CI."""
    import redis

    url = os.environ.get("BEACON_TEST_REDIS_URL", "redis://127.0.0.1:6379/9")
    client = redis.Redis.from_url(url, socket_connect_timeout=1)
    try:
        client.flushdb()
    except redis.RedisError:
        _service_missing("Redis")
    yield url
    client.flushdb()
    client.close()


@pytest.fixture
def user(db):
    return UserFactory()


@pytest.fixture
def api_client(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.fixture(autouse=True)
def _no_failed_api_tokens_counted():
    """Each test starts with no failed API token authentication counted for the test client's address: the
    cache may be Redis, which outlives a test."""
    from accounts.authentication import api_token_failures_clear

    api_token_failures_clear(address="127.0.0.1")


@pytest.fixture(autouse=True)
def _reports_consolidated_by_hand(settings):
    """Tests consolidate when they mean to: reading a report does not (tests/reporting/test_freshness.py
    turns it on)."""
    settings.BEACON_REPORTS_MAX_AGE_SECONDS = None


@pytest.fixture(autouse=True)
def _tracking_direct_and_fresh(settings):
    """Tracking events are written directly (tests that test the stream point it at their own Redis,
    and those of the journal turn it on), and tracking's per-process caches start empty: tests roll
    rows back, so ids get reused."""
    from tracking.ingest.handoff import reset_process_state

    settings.BEACON_EVENT_REDIS_URL = ""
    settings.BEACON_EVENT_JOURNAL = False
    reset_process_state()
    yield
    reset_process_state()


@pytest.fixture(autouse=True)
def _send_contents_fresh():
    """Each test prepares its deliveries' contents anew: with rows rolled back, ids come again, and a
    content prepared in an earlier test would save a later one its queries (SQLite)."""
    from deliveries.services.rendering import send_contents_forget

    send_contents_forget()
