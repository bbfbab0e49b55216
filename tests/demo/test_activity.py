from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from deliveries.models import Delivery, Message
from profiles.models import EmailStatus, Profile
from reporting import selectors as reports
from tracking import machine
from tracking.models import EventType, TrackingEvent, UserAgent

pytestmark = pytest.mark.django_db


def test_demo_makes_realistic_activity_through_the_endpoints(settings, tmp_path):
    settings.BASE_DIR = tmp_path
    call_command("beacon_demo")
    delivery = Delivery.objects.get(label="Demo: spring newsletter")
    events = TrackingEvent.objects.filter(delivery=delivery)
    types = set(events.values_list("type", flat=True))
    assert {EventType.OPEN, EventType.CLICK, EventType.WEB_PAGE} <= types
    humans = events.filter(is_machine=False)
    assert humans.filter(type=EventType.OPEN).count() > 10
    assert humans.filter(type=EventType.CLICK).count() > 5
    reasons = set(events.filter(is_machine=True).values_list("machine_reason", flat=True))
    assert {machine.REASON_SCANNER, machine.REASON_APPLE_MPP, machine.REASON_HONEYPOT, machine.REASON_HONEYPOT_CLIENT} <= reasons
    opted_out = events.filter(type=EventType.OPT_OUT).values_list("profile_id", flat=True)
    assert opted_out
    assert set(Profile.objects.filter(pk__in=opted_out).values_list("email_status", flat=True)) <= {EmailStatus.DENYLISTED}
    opt_out_times = dict(events.filter(type=EventType.OPT_OUT).values_list("profile_id", "logged_at"))
    assert dict(Profile.objects.filter(pk__in=opted_out).values_list("pk", "opted_out_at")) == opt_out_times
    assert not UserAgent.objects.filter(parsed_at__isnull=True).exists()
    # Forwards: more persons (browsers) clicked than recipients.
    clicks = humans.filter(type=EventType.CLICK)
    assert clicks.values("browser_id").distinct().count() > clicks.values("message_id").distinct().count()

    before = TrackingEvent.objects.count()
    call_command("beacon_demo")
    assert TrackingEvent.objects.count() == before


def test_demo_delivery_was_sent_days_ago_and_its_activity_decays_over_the_following_hours(settings, tmp_path):
    settings.BASE_DIR = tmp_path
    started = timezone.now()
    call_command("beacon_demo")
    delivery = Delivery.objects.get(label="Demo: spring newsletter")
    sent_at = delivery.sending_started_at
    assert started - timedelta(days=3) <= sent_at <= timezone.now() - timedelta(days=3)
    assert delivery.created_at <= sent_at <= delivery.finished_at < started - timedelta(days=2)
    assert not Message.objects.filter(delivery=delivery, sent_at__gte=started - timedelta(days=2)).exists()

    events = TrackingEvent.objects.filter(delivery=delivery)
    assert not events.filter(logged_at__lt=sent_at).exists()
    assert not events.filter(logged_at__gt=started).exists()
    # Machines act on arrival; people over hours and days.
    arrival = sent_at + timedelta(minutes=20)
    assert not events.filter(is_machine=True, logged_at__gt=arrival).exclude(machine_reason=machine.REASON_BURST).exists()
    assert events.filter(is_machine=False, logged_at__gt=sent_at + timedelta(days=1)).exists()

    # Consolidated at once: the hourly series spreads over many hours, most opens in the first day.
    statistics = reports.report_statistics(delivery=delivery, params={"granularity": "hour"})
    opening_hours = [row["start"] for row in statistics["series"] if row["opens"]]
    assert len(opening_hours) >= 10
    first_day = sum(row["opens"] for row in statistics["series"] if row["start"] < sent_at + timedelta(days=1))
    assert statistics["totals"]["opens"] == events.filter(type=EventType.OPEN, is_machine=False).count()
    assert first_day > statistics["totals"]["opens"] / 2
    assert first_day < statistics["totals"]["opens"]
    throughput = reports.report_throughput(delivery=delivery)
    assert [hour["hour"] for hour in throughput["hours"]] == [sent_at.replace(minute=0, second=0, microsecond=0)]
    assert reports.report_indicators(delivery=delivery)["total_clicks"] > 5
