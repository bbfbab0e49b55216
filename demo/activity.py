"""Demo tracking activity: opens, clicks, forwards, opt-outs and machines, made through the real
endpoints (Django's test client against Beacon's own URLs), so the demo's numbers are produced by the
same code as real traffic.

The demo delivery was sent days ago (the `beacon_demo` command backdates its send) and its readers
react over the following hours: most soon after it arrives, fewer and fewer later. Requests can only be
made now, so each one is given the time it plays at, and once its events are stored their logged times
are moved there: a demo-data step (`DemoTimeline`), done before the events are consolidated. Machine
detection ran on the real requests, as it does in production; the moves keep each request's events
together.
"""
import random
import time
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

from django.test import Client
from django.test.utils import override_settings
from django.utils import timezone

from deliveries.models import MessageStatus, TrackingMode
from deliveries.selectors import delivery_messages, delivery_tracked_urls
from deliveries.tokens import Purpose, make_token
from profiles.services import profile_opt_out_time_set
from tracking.ingest.consumer import stream_consume
from tracking.ingest.store import events_move
from tracking.models import EventType, TrackingEvent
from tracking.user_agents import user_agents_parse

IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.4 Mobile/15E148 Safari/604.1"
)
ANDROID = (
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Mobile Safari/537.36"
)
WINDOWS_CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36"
)
OUTLOOK = "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.17328; Pro)"
MAC_SAFARI = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15"
)
IPAD = (
    "Mozilla/5.0 (iPad; CPU OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.4 Mobile/15E148 Safari/604.1"
)
READERS = [IPHONE, IPHONE, ANDROID, WINDOWS_CHROME, WINDOWS_CHROME, OUTLOOK, MAC_SAFARI, IPAD]
SCANNER = "Mozilla/5.0 (compatible; Barracuda Sentinel link scanner)"
APPLE_PROXY = "Mozilla/5.0"

# When a reader first opens, after the message arrived: exponential, so most open within hours and a
# long tail the next days.
FIRST_OPEN_MEAN = timedelta(hours=6)
# A reader's later opens, after their first.
REOPEN_MEAN = timedelta(hours=10)
# A forwarded message's reader clicks, after the recipient's own click.
FORWARD_MEAN = timedelta(hours=5)


def _ip(rng: random.Random) -> str:
    return f"{rng.choice([81, 92, 176, 203])}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"


def _after(rng: random.Random, mean: timedelta) -> timedelta:
    return timedelta(seconds=rng.expovariate(1 / mean.total_seconds()))


def _seconds(rng: random.Random, low: float, high: float) -> timedelta:
    return timedelta(seconds=rng.uniform(low, high))


class DemoTimeline:
    """Demo-data step: the events of the requests made in `at(when)` get logged at `when` (plus the
    little time the requests took), by `apply` once they are stored.

    Every planned time is before the timeline's creation, so no moved event lands in a later window.
    """

    def __init__(self) -> None:
        self.latest = timezone.now() - timedelta(minutes=1)
        self._moves: list[tuple[float, float, datetime]] = []

    @contextmanager
    def at(self, when: datetime):
        started = time.time()
        yield
        self._moves.append((started, time.time(), min(when, self.latest)))

    def apply(self, *, delivery_id: int) -> int:
        """Moves the stored events of each window; returns how many were moved."""
        moved = 0
        for started, ended, when in self._moves:
            start = datetime.fromtimestamp(started, tz=UTC)
            moved += events_move(
                delivery_id=delivery_id, logged_from=start, logged_to=datetime.fromtimestamp(ended, tz=UTC),
                by=when - start,
            )
        # An opt-out's profile says when it opted out: at its event's new time.
        for profile_id, logged_at in TrackingEvent.objects.filter(
            delivery_id=delivery_id, type=EventType.OPT_OUT, profile_id__isnull=False
        ).values_list("profile_id", "logged_at"):
            profile_opt_out_time_set(profile_id=profile_id, at=logged_at)
        return moved


def demo_tracking_activity(*, delivery_id: int, seed: int = 7) -> int:
    """Makes a sent delivery's recipients open, click, forward and opt out over the hours after its
    send, and machines scan it; returns the requests made."""
    rng = random.Random(seed)
    sent = list(
        delivery_messages(delivery_id=delivery_id, status=MessageStatus.SENT).values_list("id", "sent_at")
    )
    urls = list(delivery_tracked_urls(delivery_id=delivery_id).values_list("id", "mode"))
    links = [pk for pk, mode in urls if mode == TrackingMode.TRACKED]
    special = {mode: pk for pk, mode in urls if mode != TrackingMode.TRACKED}
    timeline = DemoTimeline()
    requests = 0
    clicked_messages = set()

    def visit(client: Client, path: str, when: datetime, data: dict | None = None, *, method: str = "get") -> None:
        nonlocal requests
        with timeline.at(when):
            getattr(client, method)(path, data)
        requests += 1

    with override_settings(ALLOWED_HOSTS=["testserver"]):
        for message_id, sent_at in sent:
            open_path = f"/o/{make_token(Purpose.OPEN, message_id)}"
            reader = Client(HTTP_USER_AGENT=rng.choice(READERS), REMOTE_ADDR=_ip(rng))
            roll = rng.random()
            if roll < 0.1:
                # Apple Mail Privacy Protection fetches the pixel as the message arrives, read or not.
                proxy = Client(HTTP_USER_AGENT=APPLE_PROXY, REMOTE_ADDR="17.58.100.12")
                visit(proxy, open_path, sent_at + _seconds(rng, 30, 900))
            if roll > 0.45:
                continue
            opened_at = sent_at + _after(rng, FIRST_OPEN_MEAN)
            visit(reader, open_path, opened_at)
            for _ in range(rng.choice([0, 0, 1, 2])):
                visit(reader, open_path, opened_at + _after(rng, REOPEN_MEAN))
            if links and rng.random() < 0.55:
                clicked_messages.add(message_id)
                clicked_at = opened_at + _seconds(rng, 10, 180)
                clicked = rng.sample(links, rng.choice([1, 1, 2]))
                for url_id in clicked:
                    visit(reader, f"/r/{make_token(Purpose.CLICK, message_id, url_id)}", clicked_at)
                    clicked_at += _seconds(rng, 20, 240)
                page = {"url": "https://shop.example.com/spring-sale"}
                visit(reader, "/w/p.gif", clicked_at + _seconds(rng, 3, 30), page)
                if rng.random() < 0.3:
                    purchase = {"url": "https://shop.example.com/checkout", "amount": f"{rng.uniform(15, 180):.2f}"}
                    visit(reader, "/w/p.gif", clicked_at + _seconds(rng, 120, 900), purchase)
                if rng.random() < 0.25:
                    # Forwarded to a friend: another browser, another person, later.
                    friend = Client(HTTP_USER_AGENT=rng.choice(READERS), REMOTE_ADDR=_ip(rng))
                    forward = f"/r/{make_token(Purpose.CLICK, message_id, clicked[0])}"
                    visit(friend, forward, clicked_at + _after(rng, FORWARD_MEAN))
            if TrackingMode.MIRROR in special and rng.random() < 0.1:
                mirror = f"/m/{make_token(Purpose.MIRROR, message_id, special[TrackingMode.MIRROR])}"
                visit(reader, mirror, opened_at + _seconds(rng, 5, 60))
            if TrackingMode.OPT_OUT in special and rng.random() < 0.1:
                unsubscribe = f"/u/{make_token(Purpose.UNSUBSCRIBE, message_id, special[TrackingMode.OPT_OUT])}"
                left_at = opened_at + _seconds(rng, 20, 120)
                visit(reader, unsubscribe, left_at)
                visit(reader, unsubscribe, left_at + _seconds(rng, 5, 30), method="post")
        # Scanners get messages nobody clicked: the requests are all made within seconds, and a burst
        # (every link of a message within a second) would take a reader's clicks along.
        unclicked = [(pk, sent_at) for pk, sent_at in sent if pk not in clicked_messages]
        scanned = rng.sample(unclicked, min(4, len(unclicked)))
        for message_id, sent_at in scanned[:3]:
            # A security gateway following every link of the message, the hidden honeypot too, on arrival.
            scanner = Client(HTTP_USER_AGENT=SCANNER, REMOTE_ADDR="64.235.144.10")
            scanned_at = sent_at + _seconds(rng, 5, 90)
            for url_id in [*links, special.get(TrackingMode.HONEYPOT)]:
                if url_id:
                    visit(scanner, f"/r/{make_token(Purpose.CLICK, message_id, url_id)}", scanned_at)
        if links and TrackingMode.HONEYPOT in special and len(scanned) > 3:
            # A scanner passing for a browser: its honeypot click gives its other click away.
            message_id, sent_at = scanned[3]
            disguised = Client(HTTP_USER_AGENT=WINDOWS_CHROME, REMOTE_ADDR="52.114.6.20")
            scanned_at = sent_at + _seconds(rng, 30, 300)
            for url_id in (special[TrackingMode.HONEYPOT], links[0]):
                visit(disguised, f"/r/{make_token(Purpose.CLICK, message_id, url_id)}", scanned_at)
    stream_consume(consumer="beacon-demo", max_seconds=60, block_ms=100)
    timeline.apply(delivery_id=delivery_id)
    user_agents_parse(limit=10_000)
    return requests
