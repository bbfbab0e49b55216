"""Scheduled deliveries: schedule, move, unschedule and cancel; the scheduler starts each due delivery
exactly once, however late and however many schedulers run; the API and the pages, per role, with
hostile values. Time is passed to the services (`now`), never waited for."""
import json
import threading
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.core import mail
from django.core.exceptions import ValidationError
from django.db import connections
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.roles import ADMINISTRATOR, MARKETER, VIEWER
from beacon.exceptions import TransitionNotAllowed
from deliveries import services, tasks
from deliveries.models import Delivery, DeliveryAuditEntry, DeliveryStatus
from tests.accounts.conftest import ANONYMOUS, NO_ROLE
from tests.deliveries.concurrency import as_a_busy_timeout_would
from tests.factories import DeliveryFactory, ListFactory, ProfileFactory, RoleUserFactory

NOW = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)


def ready_delivery(recipients: int = 3) -> Delivery:
    delivery = DeliveryFactory(lists=[ListFactory(members=ProfileFactory.create_batch(recipients))])
    services.delivery_analyze(delivery_id=delivery.pk)
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.READY
    return delivery


def audit(delivery: Delivery, action: str) -> list[DeliveryAuditEntry]:
    return list(DeliveryAuditEntry.objects.filter(delivery=delivery, action=action))


# --- The services --------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_ready_delivery_is_scheduled_in_utc_and_the_audit_says_who_and_for_when():
    delivery = ready_delivery()
    marketer = RoleUserFactory(role=MARKETER)
    paris_morning = datetime(2026, 12, 2, 9, 30, tzinfo=ZoneInfo("Europe/Paris"))

    services.delivery_schedule(delivery_id=delivery.pk, at=paris_morning, actor=marketer, now=NOW)

    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.SCHEDULED
    assert delivery.scheduled_at == datetime(2026, 12, 2, 8, 30, tzinfo=UTC)
    [entry] = audit(delivery, "scheduled")
    assert entry.actor == marketer and entry.details == {"at": "2026-12-02T08:30:00+00:00"}


@pytest.mark.django_db
@pytest.mark.parametrize("at, message", [
    (NOW - timedelta(minutes=1), "past"),
    (NOW, "past"),
    (NOW + timedelta(days=367), "366 days"),
    (datetime(9999, 12, 31, 23, 59, tzinfo=UTC), "366 days"),
    (datetime(1, 1, 1, tzinfo=ZoneInfo("Pacific/Kiritimati")), "past"),
    (datetime(2026, 12, 2, 9, 0), "UTC offset"),
])
def test_a_time_past_too_far_or_without_offset_is_refused_and_nothing_changes(at, message):
    delivery = ready_delivery()

    with pytest.raises(ValidationError) as refused:
        services.delivery_schedule(delivery_id=delivery.pk, at=at, now=NOW)

    assert message in " ".join(refused.value.message_dict["at"])
    delivery.refresh_from_db()
    assert (delivery.status, delivery.scheduled_at) == (DeliveryStatus.READY, None)
    assert audit(delivery, "scheduled") == []


@pytest.mark.django_db
def test_a_draft_must_be_analyzed_before_it_is_scheduled_and_a_sending_one_cannot_be():
    draft = DeliveryFactory(lists=[ListFactory(members=ProfileFactory.create_batch(1))])
    with pytest.raises(TransitionNotAllowed, match="Analyze the delivery before scheduling it"):
        services.delivery_schedule(delivery_id=draft.pk, at=NOW + timedelta(hours=1), now=NOW)
    sending = ready_delivery()
    services.delivery_send(delivery_id=sending.pk)
    with pytest.raises(TransitionNotAllowed, match="sending"):
        services.delivery_schedule(delivery_id=sending.pk, at=NOW + timedelta(hours=1), now=NOW)
    draft.refresh_from_db()
    assert (draft.status, draft.scheduled_at) == (DeliveryStatus.DRAFT, None)


@pytest.mark.django_db
def test_a_scheduled_delivery_moves_to_another_time_then_is_unscheduled_back_to_ready():
    delivery = ready_delivery()
    services.delivery_schedule(delivery_id=delivery.pk, at=NOW + timedelta(hours=1), now=NOW)
    services.delivery_schedule(delivery_id=delivery.pk, at=NOW + timedelta(hours=5), now=NOW)
    delivery.refresh_from_db()
    assert (delivery.status, delivery.scheduled_at) == (DeliveryStatus.SCHEDULED, NOW + timedelta(hours=5))
    assert audit(delivery, "scheduled")[-1].details == {
        "at": (NOW + timedelta(hours=5)).isoformat(), "previous_at": (NOW + timedelta(hours=1)).isoformat(),
    }

    services.delivery_unschedule(delivery_id=delivery.pk)

    delivery.refresh_from_db()
    assert (delivery.status, delivery.scheduled_at) == (DeliveryStatus.READY, None)
    assert audit(delivery, "unscheduled")[0].details == {"previous_at": (NOW + timedelta(hours=5)).isoformat()}
    with pytest.raises(TransitionNotAllowed, match="Cannot unschedule a delivery that is ready to send"):
        services.delivery_unschedule(delivery_id=delivery.pk)
    assert services.deliveries_start_due(now=NOW + timedelta(days=1)) == 0


@pytest.mark.django_db
def test_a_scheduled_delivery_is_not_editable_until_unscheduled():
    delivery = ready_delivery()
    services.delivery_schedule(delivery_id=delivery.pk, at=NOW + timedelta(hours=1), now=NOW)
    with pytest.raises(TransitionNotAllowed, match="scheduled cannot be edited"):
        services.delivery_update(delivery_id=delivery.pk, subject="Changed")


@pytest.mark.django_db
def test_a_cancelled_scheduled_delivery_never_starts(django_capture_on_commit_callbacks):
    delivery = ready_delivery()
    services.delivery_schedule(delivery_id=delivery.pk, at=NOW + timedelta(hours=1), now=NOW)

    services.delivery_cancel(delivery_id=delivery.pk)
    with django_capture_on_commit_callbacks(execute=True):
        started = services.deliveries_start_due(now=NOW + timedelta(hours=2))

    delivery.refresh_from_db()
    assert (started, delivery.status, len(mail.outbox)) == (0, DeliveryStatus.CANCELLED, 0)


# --- The scheduler -------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_scheduler_starts_a_delivery_at_its_time_once(django_capture_on_commit_callbacks):
    delivery = ready_delivery(recipients=3)
    services.delivery_schedule(delivery_id=delivery.pk, at=NOW + timedelta(hours=1), now=NOW)

    assert services.deliveries_start_due(now=NOW + timedelta(minutes=59)) == 0
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.SCHEDULED

    with django_capture_on_commit_callbacks(execute=True):
        assert services.deliveries_start_due(now=NOW + timedelta(hours=1)) == 1
        assert services.deliveries_start_due(now=NOW + timedelta(hours=1, minutes=1)) == 0

    delivery.refresh_from_db()
    assert (delivery.status, delivery.success, len(mail.outbox)) == (DeliveryStatus.FINISHED, 3, 3)
    assert delivery.sending_started_at == NOW + timedelta(hours=1)
    [started] = audit(delivery, "sent")
    assert started.actor is None
    assert started.details == {"to_deliver": 3, "scheduled_at": (NOW + timedelta(hours=1)).isoformat(), "late_seconds": 0}


@pytest.mark.django_db
def test_a_time_missed_while_the_workers_were_down_starts_when_they_are_back_once(django_capture_on_commit_callbacks):
    delivery = ready_delivery(recipients=2)
    services.delivery_schedule(delivery_id=delivery.pk, at=NOW + timedelta(hours=1), now=NOW)
    back = NOW + timedelta(hours=7)

    with django_capture_on_commit_callbacks(execute=True):
        assert services.deliveries_start_due(now=back) == 1
        assert services.deliveries_start_due(now=back + timedelta(minutes=1)) == 0

    delivery.refresh_from_db()
    assert (delivery.status, len(mail.outbox)) == (DeliveryStatus.FINISHED, 2)
    assert audit(delivery, "sent")[0].details["late_seconds"] == 6 * 3600


@pytest.mark.django_db
def test_the_periodic_task_redelivered_starts_each_due_delivery_once(django_capture_on_commit_callbacks):
    deliveries = [ready_delivery(recipients=1) for _ in range(3)]
    past = timezone.now() - timedelta(minutes=5)
    # Scheduled "earlier": stored as the scheduler would find them now.
    Delivery.objects.filter(pk__in=[d.pk for d in deliveries]).update(status=DeliveryStatus.SCHEDULED, scheduled_at=past)

    with django_capture_on_commit_callbacks(execute=True):
        first = tasks.deliveries_start_scheduled_task.apply(task_id="beat-1").get()
        again = tasks.deliveries_start_scheduled_task.apply(task_id="beat-1").get()

    assert (first, again) == (3, 0)
    assert len(mail.outbox) == 3
    assert DeliveryAuditEntry.objects.filter(action="sent").count() == 3


@pytest.mark.django_db(transaction=True)
def test_two_schedulers_at_once_start_the_delivery_once():
    delivery = ready_delivery(recipients=4)
    services.delivery_schedule(delivery_id=delivery.pk, at=NOW + timedelta(hours=1), now=NOW)
    barrier = threading.Barrier(2)
    started: list[int] = []

    def scheduler() -> None:
        try:
            barrier.wait(timeout=30)
            started.append(as_a_busy_timeout_would(lambda: services.deliveries_start_due(now=NOW + timedelta(hours=1))))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=scheduler) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert sorted(started) == [0, 1]
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.FINISHED
    assert sorted(message.to[0] for message in mail.outbox) == sorted(delivery.messages.values_list("email", flat=True))
    assert DeliveryAuditEntry.objects.filter(delivery=delivery, action="sent").count() == 1


@pytest.mark.django_db
def test_the_scheduler_runs_every_minute_in_the_beat_schedule(settings):
    entry = settings.CELERY_BEAT_SCHEDULE["deliveries-start-scheduled"]
    assert (entry["task"], entry["schedule"]) == (tasks.deliveries_start_scheduled_task.name, 60.0)


# --- The API ---------------------------------------------------------------------------------------------


def api_as(role: str) -> APIClient:
    client = APIClient()
    if role != ANONYMOUS:
        client.force_authenticate(RoleUserFactory(role=None if role == NO_ROLE else role))
    return client


def in_an_hour() -> str:
    return (timezone.now() + timedelta(hours=1)).astimezone(ZoneInfo("America/New_York")).isoformat()


@pytest.mark.django_db
@pytest.mark.parametrize("role", [ANONYMOUS, NO_ROLE, VIEWER, MARKETER, ADMINISTRATOR])
def test_schedule_and_unschedule_in_the_api_per_role(role):
    delivery = ready_delivery()
    client = api_as(role)
    at = in_an_hour()

    scheduled = client.post(f"/api/deliveries/{delivery.pk}/schedule/", {"at": at}, format="json")

    if role in (MARKETER, ADMINISTRATOR):
        assert scheduled.status_code == 200, scheduled.json()
        body = scheduled.json()
        assert body["status"] == "scheduled"
        assert datetime.fromisoformat(body["scheduled_at"]) == datetime.fromisoformat(at)
        unscheduled = client.post(f"/api/deliveries/{delivery.pk}/unschedule/")
        assert (unscheduled.status_code, unscheduled.json()["status"], unscheduled.json()["scheduled_at"]) == (200, "ready", None)
    else:
        assert scheduled.status_code == (401 if role == ANONYMOUS else 403)
        assert client.post(f"/api/deliveries/{delivery.pk}/unschedule/").status_code == (401 if role == ANONYMOUS else 403)
        delivery.refresh_from_db()
        assert delivery.status == DeliveryStatus.READY


@pytest.mark.django_db
def test_scheduling_a_draft_in_the_api_is_a_conflict():
    draft = DeliveryFactory()
    response = api_as(MARKETER).post(f"/api/deliveries/{draft.pk}/schedule/", {"at": in_an_hour()}, format="json")
    assert response.status_code == 409
    assert response.json()["detail"] == "Analyze the delivery before scheduling it."


HOSTILE_AT = {
    "empty": '""',
    "words": '"tomorrow morning"',
    "month 13": '"2026-13-01T09:00:00+00:00"',
    "no offset": '"2027-01-01T09:00:00"',
    "offset 25h": '"2027-01-01T09:00:00+25:00"',
    "past": '"2001-01-01T09:00:00+00:00"',
    "year 9999": '"9999-12-31T23:59:59+00:00"',
    "year 1": '"0001-01-01T00:00:00+14:00"',
    "number": str(10**30),
    "1e400": "1e400",
    "list": '["2027-01-01T09:00:00+00:00"]',
    "object": '{"$gt": ""}',
    "null": "null",
    "nul": '"2027-01-01T09:00:00\\u0000+00:00"',
    "lone surrogate": '"\\ud800"',
    "long": json.dumps("2" * 100_000),
    "markup": json.dumps("<script>alert(1)</script>"),
    "deep": "[" * 10_000 + "]" * 10_000,
}


@pytest.mark.django_db
@pytest.mark.parametrize("value", HOSTILE_AT.values(), ids=HOSTILE_AT.keys())
def test_hostile_times_are_a_400_with_a_message_and_nothing_is_scheduled(value):
    delivery = ready_delivery(recipients=1)

    response = api_as(MARKETER).post(
        f"/api/deliveries/{delivery.pk}/schedule/", data='{"at": ' + value + "}", content_type="application/json"
    )

    assert response.status_code == 400, response.content[:300]
    body = response.json()
    assert body["fields"].get("at") or body["detail"], body
    delivery.refresh_from_db()
    assert (delivery.status, delivery.scheduled_at) == (DeliveryStatus.READY, None)
    assert audit(delivery, "scheduled") == []


# --- The pages -------------------------------------------------------------------------------------------


def page_as(role: str) -> Client:
    client = Client()
    if role != ANONYMOUS:
        client.force_login(RoleUserFactory(role=None if role == NO_ROLE else role))
    return client


def local_input(at: datetime, zone: str) -> str:
    return at.astimezone(ZoneInfo(zone)).strftime("%Y-%m-%dT%H:%M")


@pytest.mark.django_db
@pytest.mark.parametrize("role", [ANONYMOUS, NO_ROLE, VIEWER, MARKETER, ADMINISTRATOR])
def test_the_schedule_page_per_role(role, settings):
    delivery = ready_delivery(recipients=1)
    client = page_as(role)
    when = (timezone.now() + timedelta(days=2)).replace(second=0, microsecond=0)

    page = client.get(f"/deliveries/{delivery.pk}/schedule/")
    posted = client.post(f"/deliveries/{delivery.pk}/schedule/", {"at": local_input(when, "Asia/Tokyo"), "timezone": "Asia/Tokyo"})

    delivery.refresh_from_db()
    if role == ANONYMOUS:
        assert page.status_code == posted.status_code == 302 and page["Location"].startswith(settings.LOGIN_URL)
    elif role in (NO_ROLE, VIEWER):
        assert page.status_code == posted.status_code == 403
    else:
        assert page.status_code == 200 and 'type="datetime-local"' in page.content.decode()
        assert posted.status_code == 302
        assert (delivery.status, delivery.scheduled_at) == (DeliveryStatus.SCHEDULED, when)
        return
    assert (delivery.status, delivery.scheduled_at) == (DeliveryStatus.READY, None)


@pytest.mark.django_db
def test_the_delivery_page_shows_the_form_to_marketers_and_when_it_is_scheduled_to_all():
    delivery = ready_delivery(recipients=1)
    form_action = f'action="/deliveries/{delivery.pk}/schedule/"'
    assert form_action in page_as(MARKETER).get(f"/deliveries/{delivery.pk}/").content.decode()
    assert form_action not in page_as(VIEWER).get(f"/deliveries/{delivery.pk}/").content.decode()

    services.delivery_schedule(delivery_id=delivery.pk, at=datetime(2027, 1, 5, 7, 15, tzinfo=UTC), now=NOW)

    for role in (VIEWER, MARKETER):
        html = page_as(role).get(f"/deliveries/{delivery.pk}/").content.decode()
        assert 'Scheduled for <time datetime="2027-01-05T07:15:00+00:00" data-local-time>2027-01-05 07:15 UTC</time>' in html
        assert (f"/deliveries/{delivery.pk}/actions/unschedule/" in html) == (role == MARKETER)


@pytest.mark.django_db
def test_unschedule_from_the_page_after_its_confirmation():
    delivery = ready_delivery(recipients=1)
    services.delivery_schedule(delivery_id=delivery.pk, at=timezone.now() + timedelta(hours=3))
    client = page_as(MARKETER)

    confirm = client.get(f"/deliveries/{delivery.pk}/actions/unschedule/")
    done = client.post(f"/deliveries/{delivery.pk}/actions/unschedule/")

    assert "Unschedule: this delivery will not start by itself." in confirm.content.decode()
    assert done.status_code == 302
    delivery.refresh_from_db()
    assert (delivery.status, delivery.scheduled_at) == (DeliveryStatus.READY, None)


HOSTILE_FORM = {
    "past": {"at": "2001-01-01T09:00", "timezone": "UTC"},
    "far": {"at": "9999-12-31T23:59", "timezone": "Pacific/Kiritimati"},
    "bad date": {"at": "2027-02-30T09:00", "timezone": "UTC"},
    "nul": {"at": "2027-01-01T09:00\x00", "timezone": "UTC"},
    "unknown zone": {"at": "2027-01-01T09:00", "timezone": "Mars/Olympus_Mons"},
    "path zone": {"at": "2027-01-01T09:00", "timezone": "../../../etc/passwd"},
    "nul zone": {"at": "2027-01-01T09:00", "timezone": "Europe/Paris\x00"},
    "long": {"at": "2" * 100_000, "timezone": "x" * 100_000},
    "markup": {"at": "<script>alert(1)</script>", "timezone": "<b>UTC</b>"},
}


@pytest.mark.django_db
@pytest.mark.parametrize("data", HOSTILE_FORM.values(), ids=HOSTILE_FORM.keys())
def test_hostile_values_in_the_schedule_form_show_why_and_schedule_nothing(data):
    delivery = ready_delivery(recipients=1)

    response = page_as(MARKETER).post(f"/deliveries/{delivery.pk}/schedule/", data)

    assert response.status_code == 400
    assert 'class="field-error"' in response.content.decode()
    assert "<script>alert(1)</script>" not in response.content.decode()
    delivery.refresh_from_db()
    assert (delivery.status, delivery.scheduled_at) == (DeliveryStatus.READY, None)


@pytest.mark.django_db
def test_without_a_beat_the_pages_start_a_due_delivery(settings, django_capture_on_commit_callbacks):
    settings.BEACON_TASKS_IN_PROCESS = True
    delivery = ready_delivery(recipients=2)
    Delivery.objects.filter(pk=delivery.pk).update(status=DeliveryStatus.SCHEDULED, scheduled_at=timezone.now() - timedelta(minutes=1))

    with django_capture_on_commit_callbacks(execute=True):
        page_as(VIEWER).get(f"/deliveries/{delivery.pk}/progress/")

    delivery.refresh_from_db()
    assert (delivery.status, len(mail.outbox)) == (DeliveryStatus.FINISHED, 2)
