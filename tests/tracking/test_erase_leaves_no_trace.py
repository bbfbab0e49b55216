"""An erased person leaves no trace: their address is in no text, char, JSON or binary column of any model,
whether it was stored before the erase (profile, messages, events, the kept list imports and their
rejected rows) or still in transit, on the stream, when they were erased."""
import os
from datetime import timedelta

import pytest
import redis
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import DEFAULT_DB_ALIAS, connection, connections
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.roles import ADMINISTRATOR
from deliveries.tokens import Purpose, make_token
from profiles.models import ListImportRejection, Profile
from profiles.services.imports import list_import_create, list_import_run
from tests.factories import ListFactory, MessageFactory, ProfileFactory, RoleUserFactory, TrackedUrlFactory, TrackingEventFactory
from tests.tracking.conftest import BROWSER, models_holding
from tracking import services as tracking_services
from tracking.ingest import store
from tracking.ingest.consumer import stream_consume_batch
from tracking.ingest.event import new_event
from tracking.ingest.store import ERASURES_LOCK_KEY
from tracking.models import EventType, TrackingEvent

pytestmark = pytest.mark.django_db

ADDRESS = "grace.hopper@private-mail.example"
IP = "203.0.113.77"
ANONYMIZED_IP = "203.0.113.0"


def erase(profile: Profile) -> None:
    client = APIClient()
    client.force_authenticate(RoleUserFactory(role=ADMINISTRATOR))
    response = client.post(f"/api/profiles/{profile.pk}/erase/")
    assert response.status_code == 200, response.content


def test_after_an_erase_no_column_of_any_model_holds_the_address(django_capture_on_commit_callbacks):
    person = ProfileFactory(email=ADDRESS, first_name="Grace")
    message = MessageFactory(profile=person, failure_detail=f"550 5.1.1 <{ADDRESS}>: no such user")
    TrackingEventFactory(message=message, type=EventType.CLICK, page_url=f"https://shop.example.com/?who={ADDRESS}")
    other = ProfileFactory(email="alan.turing@example.com")
    list_obj = ListFactory(members=[person])
    csv_text = (
        "email,first_name,email_format\n"
        f"{ADDRESS},Grace,\n"
        "alan.turing@example.com,Alan,\n"
        f"{ADDRESS.upper()},Grace again,fax\n"
    )
    upload = SimpleUploadedFile("people.csv", csv_text.encode(), content_type="text/csv")
    list_import = list_import_create(list_obj=list_obj, file=upload, map_by_header=True)
    list_import_run(import_id=list_import.pk)
    assert {"profiles.Profile.email", "deliveries.Message.email", "deliveries.Message.failure_detail",
            "tracking.TrackingEvent.page_url", "profiles.ListImport.content",
            "profiles.ListImportRejection.values"} <= set(models_holding(ADDRESS))  # the search sees each

    erase(person)

    assert models_holding(ADDRESS) == []
    # The others' rows stay, and the import's counters and rejected line numbers still tell its run.
    list_import.refresh_from_db()
    assert "alan.turing@example.com,Alan," in bytes(list_import.content).decode()
    assert (list_import.total, list_import.processed, list_import.rejected) == (3, 3, 1)
    assert list(ListImportRejection.objects.values_list("line", "reason", "values")) == [
        (4, "email_format must be one of html, text", ["", "", ""]),
    ]
    assert Profile.objects.filter(pk=other.pk).exists()


@pytest.fixture
def stream(settings, redis_url):
    settings.BEACON_EVENT_REDIS_URL = redis_url
    return redis.Redis.from_url(redis_url)


def test_events_on_the_stream_when_their_person_is_erased_are_stored_without_them(client, stream):
    person = ProfileFactory(email=ADDRESS)
    message = MessageFactory(profile=person, sent_at=timezone.now() - timedelta(hours=1))
    url = TrackedUrlFactory(delivery=message.delivery, url="https://shop.example.com/")
    bystander = MessageFactory(delivery=message.delivery, sent_at=timezone.now() - timedelta(hours=1))
    headers = {"HTTP_USER_AGENT": BROWSER, "REMOTE_ADDR": IP}
    assert client.get(f"/r/{make_token(Purpose.CLICK, message.id, url.id)}", **headers).status_code == 302
    page = f"https://shop.example.com/thanks?email={ADDRESS}&order=7"
    assert client.get("/w/p.gif", {"url": page}, **headers).status_code == 200
    assert client.get(f"/o/{make_token(Purpose.OPEN, bystander.id)}", **headers).status_code == 200
    assert stream.xlen("beacon:events") == 3 and not TrackingEvent.objects.exists()

    erase(person)
    assert stream_consume_batch(consumer="test") == 3

    assert models_holding(ADDRESS) == []
    erased = TrackingEvent.objects.filter(message=message).order_by("type")
    assert [(event.type, event.profile_id, event.ip, event.user_agent_id, event.browser_id, event.page_url)
            for event in erased] == [
        (EventType.CLICK, None, None, None, "", ""),
        (EventType.WEB_PAGE, None, None, None, "", "https://shop.example.com/thanks?email=&order=7"),
    ]
    # Only the erased person's events: the bystander's, in the same batch, keep theirs.
    kept = TrackingEvent.objects.get(message=bystander)
    assert (kept.profile_id, kept.ip, kept.user_agent_id is not None) == (bystander.profile_id, ANONYMIZED_IP, True)
    assert not TrackingEvent.objects.filter(ip=ANONYMIZED_IP, message=message).exists()


@pytest.fixture
def other_session():
    """A second PostgreSQL session, as another process (a consumer, a web process) has; required, never
    skipped, in CI. Each of its statements commits: an `xact` lock it gets is released at once."""
    if connection.vendor != "postgresql":
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail("CI runs on PostgreSQL (DATABASE_URL), which this test needs")
        pytest.skip("needs PostgreSQL (DATABASE_URL): SQLite orders its writing transactions as they begin")
    other = connections.create_connection(DEFAULT_DB_ALIAS)

    def gets(lock: str) -> bool:
        with other.cursor() as cursor:
            cursor.execute(f"SELECT {lock}(%s)", [ERASURES_LOCK_KEY])
            return cursor.fetchone()[0]

    yield gets
    other.close()


def test_a_batch_being_stored_keeps_an_erase_waiting_and_lets_other_batches_through(other_session, monkeypatch):
    seen = []
    insert_rows = store._insert_rows

    def insert_rows_watched(rows):
        seen.append((other_session("pg_try_advisory_xact_lock"), other_session("pg_try_advisory_xact_lock_shared")))
        insert_rows(rows)

    monkeypatch.setattr(store, "_insert_rows", insert_rows_watched)
    message = MessageFactory()
    store.events_store([new_event(type=EventType.OPEN, delivery_id=message.delivery_id, message_id=message.id, profile_id=None)])
    assert seen == [(False, True)]


def test_an_erase_keeps_the_batches_to_store_waiting(other_session, monkeypatch):
    seen = []
    messages_anonymize = tracking_services.profile_messages_anonymize

    def messages_anonymize_watched(**kwargs):
        seen.append(other_session("pg_try_advisory_xact_lock_shared"))
        return messages_anonymize(**kwargs)

    monkeypatch.setattr(tracking_services, "profile_messages_anonymize", messages_anonymize_watched)
    erase(ProfileFactory())
    assert seen == [False]
