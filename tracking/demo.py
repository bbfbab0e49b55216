"""Demo tracking activity: opens, clicks, forwards, opt-outs and machines, made through the real
endpoints (Django's test client against Beacon's own URLs), so the demo's numbers are produced by the
same code as real traffic."""
import random

from django.test import Client
from django.test.utils import override_settings

from deliveries.models import MessageStatus
from deliveries.selectors import delivery_messages, delivery_tracked_urls
from tracking import ingest
from tracking.models import TrackingMode
from tracking.services import user_agents_parse
from tracking.tokens import Purpose, make_token

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


def _ip(rng: random.Random) -> str:
    return f"{rng.choice([81, 92, 176, 203])}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"


def demo_tracking_activity(*, delivery_id: int, seed: int = 7) -> int:
    """Makes a sent delivery's recipients open, click, forward and opt out; returns the requests made."""
    rng = random.Random(seed)
    messages = list(delivery_messages(delivery_id=delivery_id, status=MessageStatus.SENT).values_list("id", flat=True))
    urls = list(delivery_tracked_urls(delivery_id=delivery_id).values_list("id", "mode"))
    links = [pk for pk, mode in urls if mode == TrackingMode.TRACKED]
    special = {mode: pk for pk, mode in urls if mode in (TrackingMode.OPT_OUT, TrackingMode.MIRROR)}
    requests = 0
    # The demo clicks seconds after its own send; real readers are not that fast, scanners are.
    with override_settings(ALLOWED_HOSTS=["testserver"], BEACON_MACHINE_CLICK_SECONDS=0):
        for message_id in messages:
            reader = Client(HTTP_USER_AGENT=rng.choice(READERS), REMOTE_ADDR=_ip(rng))
            roll = rng.random()
            if roll < 0.1:
                # Apple Mail Privacy Protection fetches the pixel whether or not anyone reads.
                Client(HTTP_USER_AGENT=APPLE_PROXY, REMOTE_ADDR="17.58.100.12").get(
                    f"/o/{make_token(Purpose.OPEN, message_id)}"
                )
                requests += 1
            if roll > 0.45:
                continue
            for _ in range(rng.choice([1, 1, 2, 3])):
                reader.get(f"/o/{make_token(Purpose.OPEN, message_id)}")
                requests += 1
            if links and rng.random() < 0.55:
                clicked = rng.sample(links, rng.choice([1, 1, 2]))
                for url_id in clicked:
                    reader.get(f"/r/{make_token(Purpose.CLICK, message_id, url_id)}")
                    requests += 1
                reader.get("/w/p.gif", {"url": "https://shop.example.com/spring-sale"})
                requests += 1
                if rng.random() < 0.3:
                    reader.get("/w/p.gif", {"url": "https://shop.example.com/checkout", "amount": f"{rng.uniform(15, 180):.2f}"})
                    requests += 1
                if rng.random() < 0.25:
                    # Forwarded to a friend: another browser, another person.
                    friend = Client(HTTP_USER_AGENT=rng.choice(READERS), REMOTE_ADDR=_ip(rng))
                    friend.get(f"/r/{make_token(Purpose.CLICK, message_id, clicked[0])}")
                    requests += 1
            if TrackingMode.MIRROR in special and rng.random() < 0.1:
                reader.get(f"/m/{make_token(Purpose.MIRROR, message_id, special[TrackingMode.MIRROR])}")
                requests += 1
            if TrackingMode.OPT_OUT in special and rng.random() < 0.06:
                path = f"/u/{make_token(Purpose.UNSUBSCRIBE, message_id, special[TrackingMode.OPT_OUT])}"
                reader.get(path)
                reader.post(path)
                requests += 2
        for message_id in rng.sample(messages, min(3, len(messages))):
            # A security gateway following every link of the message at once.
            scanner = Client(HTTP_USER_AGENT=SCANNER, REMOTE_ADDR="64.235.144.10")
            for url_id in links:
                scanner.get(f"/r/{make_token(Purpose.CLICK, message_id, url_id)}")
                requests += 1
    ingest.stream_consume(consumer="beacon-demo", max_seconds=60, block_ms=100)
    user_agents_parse(limit=10_000)
    return requests
