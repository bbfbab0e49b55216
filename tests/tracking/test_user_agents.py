import pytest

from tests.factories import UserAgentFactory
from tracking.ingest.event import new_event
from tracking.ingest.store import events_store
from tracking.models import DeviceType, UserAgent
from tracking.user_agents import user_agents_parse

pytestmark = pytest.mark.django_db

IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1"
)
IPAD = "Mozilla/5.0 (iPad; CPU OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/16.6 Mobile/15E148 Safari/604.1"
WINDOWS = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"
GOOGLEBOT = "Googlebot/2.1 (+http://www.google.com/bot.html)"


@pytest.mark.parametrize(
    "raw, os_family, browser, device_type, is_bot",
    [
        (IPHONE, "iOS", "Mobile Safari", DeviceType.MOBILE, False),
        (IPAD, "iOS", "Mobile Safari", DeviceType.TABLET, False),
        (WINDOWS, "Windows", "Chrome", DeviceType.DESKTOP, False),
        (GOOGLEBOT, "Other", "Googlebot", DeviceType.BOT, True),
    ],
)
def test_user_agents_are_parsed_once(raw, os_family, browser, device_type, is_bot):
    agent = UserAgentFactory(raw=raw)
    assert user_agents_parse() == 1
    agent.refresh_from_db()
    assert (agent.os_family, agent.browser_family, agent.device_type, agent.is_bot) == (
        os_family,
        browser,
        device_type,
        is_bot,
    )
    assert agent.parsed_at is not None
    assert user_agents_parse() == 0


def test_new_user_agents_are_queued_for_parsing_once_stored_and_rows_are_reused(
    sent_message, django_capture_on_commit_callbacks
):
    events = [
        new_event(
            type="open", delivery_id=sent_message.delivery_id, message_id=sent_message.id, profile_id=None, user_agent=ua
        )
        for ua in (IPHONE, IPHONE, WINDOWS)
    ]
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        events_store(events)
    assert len(callbacks) == 2  # the new user agents' parsing, and the batch announced (events_stored)
    assert UserAgent.objects.count() == 2
    assert not UserAgent.objects.filter(parsed_at__isnull=True).exists()


def test_an_unreachable_broker_does_not_lose_the_event(sent_message, monkeypatch, django_capture_on_commit_callbacks):
    from kombu.exceptions import OperationalError

    from tracking import tasks
    from tracking.models import TrackingEvent

    def broker_down(*args, **kwargs):
        raise OperationalError("broker unreachable")

    monkeypatch.setattr(tasks.parse_user_agents, "delay", broker_down)
    event = new_event(
        type="open", delivery_id=sent_message.delivery_id, message_id=sent_message.id, profile_id=None, user_agent=IPAD
    )
    with django_capture_on_commit_callbacks(execute=True):
        events_store([event])
    assert TrackingEvent.objects.count() == 1
    assert UserAgent.objects.get().parsed_at is None
    assert user_agents_parse() == 1
