import datetime as dt
import uuid

import pytest

from deliveries.models import Delivery, DeliveryStatus, FailureReason, FailureType, Message, MessageStatus, TrackingMode
from tests.factories import DeliveryFactory, MessageFactory, TrackedUrlFactory, UserAgentFactory
from tracking.models import EventType, TrackingEvent

T0 = dt.datetime(2026, 11, 2, 9, 0, tzinfo=dt.UTC)


def make_event(message: Message | None, event_type: str, *, delivery: Delivery | None = None, minutes: float = 0,
               url=None, browser_id: str = "", machine: bool = False, user_agent=None, pk: int | None = None) -> TrackingEvent:
    """A tracking event as ingestion would store it (written directly: reporting tests never need the
    tracking endpoints)."""
    return TrackingEvent.objects.create(
        **({"id": pk} if pk is not None else {}),
        event_id=uuid.uuid4(),
        type=event_type,
        logged_at=T0 + dt.timedelta(minutes=minutes),
        delivery=delivery or message.delivery,
        message=message,
        profile=message.profile if message else None,
        tracked_url=url,
        user_agent=user_agent,
        browser_id=browser_id,
        is_machine=machine,
        machine_reason="scanner" if machine else "",
    )


class Scenario:
    """The hand-computed delivery of test_indicators (numbers worked out in that module's docstring)."""

    def __init__(self) -> None:
        self.delivery = DeliveryFactory(
            status=DeliveryStatus.FINISHED, initial_population=12, excluded_by_cause={"quarantined": 1, "duplicate": 1},
            to_deliver=10, processed=10, success=9, errors=1, sending_started_at=T0,
        )
        m = {}
        for number in range(1, 12):
            domain = "a.example" if number <= 5 else "b.example"
            m[number] = MessageFactory(
                delivery=self.delivery, email=f"person{number}@{domain}", status=MessageStatus.SENT,
                email_format="text" if number in (9, 10) else "html", sent_at=T0 + dt.timedelta(minutes=number),
            )
        Message.objects.filter(pk=m[8].pk).update(
            status=MessageStatus.FAILED, failure_type=FailureType.HARD, failure_reason=FailureReason.USER_UNKNOWN
        )
        Message.objects.filter(pk=m[11].pk).update(
            status=MessageStatus.IGNORED, failure_type=FailureType.IGNORED, failure_reason=FailureReason.QUARANTINED,
            sent_at=None,
        )
        self.messages = m
        self.url_a = TrackedUrlFactory(delivery=self.delivery, url="https://shop.example.com/a", label="Sale", category="shop", position=1)
        self.url_b = TrackedUrlFactory(delivery=self.delivery, url="https://shop.example.com/b", label="Blog", category="", position=2)
        self.url_opt_out = TrackedUrlFactory(delivery=self.delivery, url="https://beacon/u", label="Unsubscribe", mode=TrackingMode.OPT_OUT, position=None, in_html=False)
        self.iphone = UserAgentFactory(raw="iPhone Mail", os_family="iOS", browser_family="Mobile Safari", device_type="mobile")
        self.desktop = UserAgentFactory(raw="Desktop Chrome", os_family="Windows", browser_family="Chrome", device_type="desktop")
        a, b, opt_out = self.url_a, self.url_b, self.url_opt_out
        make_event(m[1], EventType.OPEN, minutes=5, user_agent=self.iphone)
        make_event(m[1], EventType.OPEN, minutes=65, user_agent=self.desktop)
        make_event(m[1], EventType.CLICK, minutes=6, url=a, browser_id="b1")
        make_event(m[1], EventType.CLICK, minutes=7, url=b, browser_id="b1")
        make_event(m[2], EventType.OPEN, minutes=1, machine=True)
        make_event(m[2], EventType.OPEN, minutes=40, user_agent=self.desktop)
        make_event(m[3], EventType.CLICK, minutes=20, url=a, browser_id="b2")
        make_event(m[4], EventType.OPEN, minutes=2, machine=True)
        make_event(m[4], EventType.CLICK, minutes=2, url=a, machine=True)
        make_event(m[5], EventType.CLICK, minutes=30, url=opt_out, browser_id="b9")
        make_event(m[5], EventType.OPT_OUT, minutes=30)
        make_event(m[6], EventType.MIRROR, minutes=90)
        make_event(m[7], EventType.CLICK, minutes=100, url=a, browser_id="b3")
        make_event(m[7], EventType.CLICK, minutes=1500, url=a, browser_id="b4")
        make_event(m[9], EventType.CLICK, minutes=35, url=a, browser_id="b5")


@pytest.fixture
def scenario(db) -> Scenario:
    return Scenario()
