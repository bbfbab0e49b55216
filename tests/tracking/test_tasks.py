import pytest
from django.conf import settings as django_settings

from beacon.celery import app
from tests.tracking.conftest import BROWSER
from tracking import tasks
from tracking.ingest.event import new_event
from tracking.ingest.spool import spool_append
from tracking.models import TrackingEvent

pytestmark = pytest.mark.django_db


def test_the_beat_schedule_names_registered_tasks():
    app.loader.import_default_modules()
    for entry in django_settings.CELERY_BEAT_SCHEDULE.values():
        if entry["task"].startswith("tracking."):
            assert entry["task"] in app.tasks


def test_consume_task_drains_the_stream(settings, redis_url, sent_message, client):
    from deliveries.tokens import Purpose, make_token

    settings.BEACON_EVENT_REDIS_URL = redis_url
    for _ in range(3):
        client.get(f"/o/{make_token(Purpose.OPEN, sent_message.id)}", HTTP_USER_AGENT=BROWSER)
    assert TrackingEvent.objects.count() == 0
    assert tasks.consume_events.delay(max_seconds=5).get() == 3
    assert TrackingEvent.objects.count() == 3


def test_replay_task_stores_the_spool(settings, tmp_path, sent_message):
    settings.BEACON_SPOOL_DIR = tmp_path
    spool_append(
        [new_event(type="open", delivery_id=sent_message.delivery_id, message_id=sent_message.id, profile_id=None)]
    )
    assert tasks.replay_spool.delay().get() == 1
    assert TrackingEvent.objects.count() == 1
