"""Property test: on random events, the tracking indicators read from the rollups (consolidated in
random slices, and after a full recompute) equal a plain Python evaluation of the formulas on the raw
events (reporting/reports/__init__.py gives them)."""
import datetime as dt
import uuid

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from deliveries.models import DeliveryStatus, TrackingMode
from reporting.consolidation.recompute import delivery_recompute
from reporting.reports import report_get
from reporting.statistics import reports_refresh
from tests.factories import DeliveryFactory, MessageFactory, TrackedUrlFactory
from tests.reporting.conftest import T0
from tracking.models import EventType, TrackingEvent

pytestmark = pytest.mark.django_db

MESSAGES = 6
TEXT_MESSAGES = {4, 5}
FIGURES = (
    "distinct_opens", "measured_distinct_opens", "total_opens", "distinct_clicks", "distinct_click_persons",
    "total_clicks", "estimated_forwards", "opt_outs", "mirror_page_views",
)

events_strategy = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=MESSAGES - 1),  # message
        st.sampled_from([EventType.OPEN, EventType.CLICK, EventType.OPT_OUT, EventType.MIRROR]),
        st.integers(min_value=0, max_value=1),  # tracked link of a click
        st.sampled_from(["", "b1", "b2", "b3"]),  # browser id
        st.booleans(),  # machine
        st.integers(min_value=0, max_value=600),  # minutes after T0
    ),
    max_size=40,
)


def expected(events: list[tuple], humans_only: bool) -> dict:
    """The indicators computed the plain way, from the events themselves."""
    kept = [e for e in events if not (humans_only and e[4])]
    opens = [e for e in kept if e[1] == EventType.OPEN]
    clicks = [e for e in kept if e[1] == EventType.CLICK]
    clickers = {e[0] for e in clicks}
    measured = len({e[0] for e in opens} | clickers)
    to_deliver, html = MESSAGES, MESSAGES - len(TEXT_MESSAGES)
    distinct_opens = int(measured * to_deliver / html + 0.5)
    persons = len({e[3] or f"message:{e[0]}" for e in clicks})
    return {
        "distinct_opens": distinct_opens,
        "measured_distinct_opens": measured,
        "total_opens": len(opens),
        "distinct_clicks": len(clickers),
        "distinct_click_persons": persons,
        "total_clicks": len(clicks),
        "estimated_forwards": max(persons - len(clickers), 0),
        "opt_outs": len([e for e in kept if e[1] == EventType.OPT_OUT]),
        "mirror_page_views": len([e for e in kept if e[1] == EventType.MIRROR]),
    }


def indicators(delivery_id: int, humans_only: bool) -> dict:
    data = report_get(delivery_id=delivery_id, name="indicators", humans_only=humans_only)
    return {name: data[name] for name in FIGURES}


@hypothesis_settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(events=events_strategy, slices=st.integers(min_value=1, max_value=4))
def test_indicators_equal_a_plain_evaluation_of_the_events(db, events, slices):
    delivery = DeliveryFactory(
        status=DeliveryStatus.FINISHED, to_deliver=MESSAGES, processed=MESSAGES, success=MESSAGES, sending_started_at=T0,
    )
    messages = [
        MessageFactory(delivery=delivery, email_format="text" if n in TEXT_MESSAGES else "html", sent_at=T0)
        for n in range(MESSAGES)
    ]
    links = [TrackedUrlFactory(delivery=delivery, url=f"https://shop.example.com/{n}", position=n + 1) for n in range(2)]
    opt_out_link = TrackedUrlFactory(delivery=delivery, url="https://beacon/u", mode=TrackingMode.OPT_OUT, position=None, in_html=False)
    rows = [
        TrackingEvent(
            event_id=uuid.uuid4(), type=kind, logged_at=T0 + dt.timedelta(minutes=minutes), delivery=delivery,
            message=messages[message], profile=messages[message].profile,
            tracked_url=links[link] if kind == EventType.CLICK else opt_out_link if kind == EventType.OPT_OUT else None,
            browser_id=browser, is_machine=machine, machine_reason="scanner" if machine else "",
        )
        for message, kind, link, browser, machine, minutes in events
    ]
    step = max(len(rows) // slices, 1)
    for start in range(0, len(rows), step):
        TrackingEvent.objects.bulk_create(rows[start:start + step])
        reports_refresh()
    reports_refresh()
    for humans_only in (True, False):
        assert indicators(delivery.pk, humans_only) == expected(events, humans_only), humans_only
    delivery_recompute(delivery_id=delivery.pk)
    for humans_only in (True, False):
        assert indicators(delivery.pk, humans_only) == expected(events, humans_only), humans_only
