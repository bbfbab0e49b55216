import pytest
from django.core.management import call_command

from deliveries.models import Delivery
from profiles.models import EmailStatus, Profile
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
    assert {machine.REASON_SCANNER, machine.REASON_APPLE_MPP} <= reasons
    opted_out = events.filter(type=EventType.OPT_OUT).values_list("profile_id", flat=True)
    assert set(Profile.objects.filter(pk__in=opted_out).values_list("email_status", flat=True)) <= {EmailStatus.DENYLISTED}
    assert not UserAgent.objects.filter(parsed_at__isnull=True).exists()
    # Forwards: more persons (browsers) clicked than recipients.
    clicks = humans.filter(type=EventType.CLICK)
    assert clicks.values("browser_id").distinct().count() > clicks.values("message_id").distinct().count()

    before = TrackingEvent.objects.count()
    call_command("beacon_demo")
    assert TrackingEvent.objects.count() == before
