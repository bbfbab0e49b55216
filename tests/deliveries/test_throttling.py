"""Send rate limits: the token buckets in Redis and in the database on a fake clock, two workers drawing
from one bucket, a throttled send (deferred, never twice, never lost), the task's countdown, the
expected end, and `max_per_hour` in the API and the form with hostile values."""
import threading
from datetime import timedelta

import pytest
from django.core import mail
from django.core.mail.backends.locmem import EmailBackend as LocmemBackend
from django.db import connections
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.roles import MARKETER, VIEWER
from deliveries import selectors, services, tasks
from deliveries.models import Delivery, DeliveryStatus, Message, MessageStatus
from deliveries.services import throttling
from deliveries.services.throttling import DatabaseBuckets, Limit, RedisBuckets
from tests.deliveries.concurrency import as_a_busy_timeout_would
from tests.factories import DeliveryFactory, ListFactory, ProfileFactory, RoleUserFactory

T0 = 1_800_000_000.0
BACKENDS = ["database", "redis"]


@pytest.fixture
def make_buckets(request):
    """A factory of buckets of the backend of the test's parameter (each worker makes its own)."""
    if request.param == "redis":
        url = request.getfixturevalue("redis_url")
        return lambda: RedisBuckets(url)
    return DatabaseBuckets


def granted_count(grant) -> int:
    return sum(grant.granted)


# --- The buckets, on a fake clock ----------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("make_buckets", BACKENDS, indirect=True)
def test_a_bucket_gives_its_capacity_then_its_rate(make_buckets):
    buckets = make_buckets()
    hourly = Limit("delivery:1", 3600)  # a token a second, a minute's worth (60) at most
    ask = [(0,)] * 100

    first = buckets.take([hourly], ask, T0)
    assert first.granted == [True] * 60 + [False] * 40
    assert first.wait_seconds == pytest.approx(1.0)
    half_a_second = buckets.take([hourly], ask, T0 + 0.5)
    assert granted_count(half_a_second) == 0 and half_a_second.wait_seconds == pytest.approx(0.5)
    assert granted_count(buckets.take([hourly], ask, T0 + 10.5)) == 10
    # Idle for a day: never more than the capacity at once.
    assert granted_count(buckets.take([hourly], ask, T0 + 86_400)) == 60


@pytest.mark.django_db
@pytest.mark.parametrize("make_buckets", BACKENDS, indirect=True)
def test_a_message_needs_a_token_of_each_of_its_buckets(make_buckets):
    buckets = make_buckets()
    delivery_limit, domain_limit = Limit("delivery:2", 3600), Limit("domain:slow.example", 360)  # 60 and 6 tokens
    # Every other message is to the slow domain.
    ask = [(0, 1) if n % 2 == 0 else (0,) for n in range(20)]

    grant = buckets.take([delivery_limit, domain_limit], ask, T0)

    assert grant.granted == [n % 2 == 1 or n < 12 for n in range(20)]
    assert grant.wait_seconds == pytest.approx(10.0)  # a token of the slow domain every 10 s
    # The delivery's bucket gave only for the messages that went: 60 - 16 left.
    assert granted_count(buckets.take([delivery_limit], [(0,)] * 60, T0)) == 44


@pytest.mark.django_db
@pytest.mark.parametrize("make_buckets", BACKENDS, indirect=True)
def test_a_clock_behind_the_last_take_adds_no_tokens(make_buckets):
    buckets = make_buckets()
    limit = Limit("domain:skew.example", 3600)
    assert granted_count(buckets.take([limit], [(0,)] * 60, T0 + 100)) == 60
    assert granted_count(buckets.take([limit], [(0,)] * 60, T0 + 40)) == 0
    assert granted_count(buckets.take([limit], [(0,)] * 60, T0 + 105)) == 5


@pytest.mark.django_db
def test_a_redis_bucket_expires_when_it_would_be_full_again(redis_url):
    import redis

    RedisBuckets(redis_url).take([Limit("delivery:3", 3600)], [(0,)] * 30, T0)
    ttl_ms = redis.Redis.from_url(redis_url).pttl(throttling.REDIS_KEY_PREFIX + "delivery:3")
    assert 30_000 < ttl_ms <= 31_000


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("make_buckets", BACKENDS, indirect=True)
def test_two_workers_never_take_more_than_the_rate_together(make_buckets):
    """Two threads, each with its own connection, take batches of 5 from one bucket on a shared fake clock
    (half a second a step, the same for both): in every window, no more than the capacity plus the rate."""
    limit = Limit("delivery:4", 3600)
    steps, barrier = 120, threading.Barrier(2)
    taken: dict[int, list[int]] = {0: [0] * steps, 1: [0] * steps}
    errors: list[BaseException] = []

    def worker(number: int) -> None:
        buckets = make_buckets()
        try:
            for step in range(steps):
                barrier.wait(timeout=30)
                grant = as_a_busy_timeout_would(lambda: buckets.take([limit], [(0,)] * 5, T0 + step * 0.5))
                taken[number][step] = granted_count(grant)
        except BaseException as error:  # reported by the test, not lost in the thread
            errors.append(error)
            barrier.abort()
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker, args=(n,)) for n in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert not errors, errors
    per_step = [taken[0][step] + taken[1][step] for step in range(steps)]
    for start in range(steps):
        for end in range(start, steps):
            assert sum(per_step[start : end + 1]) <= limit.capacity + limit.per_second * (end - start) * 0.5 + 1e-9
    # And the rate is used, not refused: the first minute's capacity plus a token a second after.
    assert sum(per_step) == 60 + int((steps - 1) * 0.5)
    assert sum(taken[0]) > 0 and sum(taken[1]) > 0


# --- Sending within the limits ---------------------------------------------------------------------------


@pytest.fixture(params=BACKENDS)
def bucket_backend(request, settings):
    """The send path's buckets: Redis (REDIS_URL at the tests' Redis) or the database (no REDIS_URL)."""
    settings.REDIS_URL = request.getfixturevalue("redis_url") if request.param == "redis" else ""
    return request.param


def sending_delivery(emails: list[str], **fields) -> Delivery:
    delivery = DeliveryFactory(lists=[ListFactory(members=[ProfileFactory(email=email) for email in emails])], **fields)
    services.delivery_analyze(delivery_id=delivery.pk)
    Delivery.objects.filter(pk=delivery.pk).update(status=DeliveryStatus.SENDING, sending_started_at=timezone.now())
    return delivery


def batch(delivery: Delivery, now, task_id: str = "worker-1"):
    return services.delivery_send_batch(delivery_id=delivery.pk, task_id=task_id, connection=LocmemBackend(), now=now)


def pending_unclaimed(delivery: Delivery) -> int:
    return Message.objects.filter(delivery=delivery, status=MessageStatus.PENDING, claimed_by="").count()


@pytest.mark.django_db
def test_max_per_hour_defers_what_has_no_token_and_sends_each_message_once(bucket_backend):
    delivery = sending_delivery([f"p{n}@example.org" for n in range(8)], max_per_hour=120)  # 2 at once, then one each 30 s
    now = timezone.now()

    assert batch(delivery, now) == services.BatchOutcome(more=True)
    assert (len(mail.outbox), pending_unclaimed(delivery)) == (2, 6)
    throttled = batch(delivery, now + timedelta(seconds=1))
    assert throttled.more and throttled.wait_seconds == pytest.approx(29.0)
    assert (len(mail.outbox), pending_unclaimed(delivery)) == (2, 6)
    batch(delivery, now + timedelta(seconds=30))
    assert len(mail.outbox) == 3

    later = now + timedelta(seconds=30)
    while (outcome := batch(delivery, later)).more:
        later += timedelta(seconds=max(outcome.wait_seconds, 1))
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.FINISHED and delivery.success == 8
    assert sorted(m.to[0] for m in mail.outbox) == [f"p{n}@example.org" for n in range(8)]
    # One every 30 s after the first two: never faster than the rate.
    assert later - now >= timedelta(seconds=30 * 5)


@pytest.mark.django_db
def test_a_domain_rate_holds_back_that_domain_only(bucket_backend, settings):
    settings.BEACON_DOMAIN_RATES = {"slow.example": 60}  # one at once, then one a minute
    emails = [f"s{n}@slow.example" for n in range(3)] + [f"f{n}@fast.example" for n in range(3)]
    delivery = sending_delivery(emails)
    now = timezone.now()

    assert batch(delivery, now).more
    assert sorted(m.to[0] for m in mail.outbox) == ["f0@fast.example", "f1@fast.example", "f2@fast.example", "s0@slow.example"]
    throttled = batch(delivery, now)
    assert throttled.wait_seconds == pytest.approx(60.0)
    batch(delivery, now + timedelta(seconds=60))
    assert len(mail.outbox) == 5 and pending_unclaimed(delivery) == 1


@pytest.mark.django_db(transaction=True)
def test_two_sending_workers_keep_the_rate_and_send_nobody_twice(bucket_backend):
    delivery = sending_delivery([f"p{n}@example.org" for n in range(40)], max_per_hour=360)  # 6 at once, one each 10 s
    start, barrier = timezone.now(), threading.Barrier(2)
    errors: list[BaseException] = []

    def worker(name: str) -> None:
        try:
            for step in range(12):
                barrier.wait(timeout=30)
                as_a_busy_timeout_would(lambda: batch(delivery, start + timedelta(seconds=5 * step), task_id=name))
        except BaseException as error:
            errors.append(error)
            barrier.abort()
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker, args=(name,)) for name in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert not errors, errors
    # 55 s on the clock: at most the 6 of the burst and one each 10 s after, whichever worker took them
    # (fewer only where a batch was made again after SQLite refused it: its tokens were spent).
    recipients = [m.to[0] for m in mail.outbox]
    assert len(recipients) == len(set(recipients))
    assert 0 < len(recipients) <= 6 + 5
    # Nobody lost: whoever was not sent waits, unclaimed, for a later batch.
    assert Message.objects.filter(delivery=delivery, status=MessageStatus.PENDING, claimed_by="").count() == 40 - len(recipients)


@pytest.mark.django_db
def test_a_batch_asks_the_buckets_once_and_not_at_all_without_a_limit(bucket_backend, monkeypatch):
    takes = []
    real = throttling.rate_buckets

    def counting():
        buckets = real()
        original = buckets.take

        class Counted:
            def take(self, *args):
                takes.append(len(args[1]))
                return original(*args)

        return Counted()

    monkeypatch.setattr(throttling, "rate_buckets", counting)
    limited = sending_delivery([f"p{n}@example.org" for n in range(50)], max_per_hour=100_000)
    free = sending_delivery([f"q{n}@example.org" for n in range(50)])

    batch(limited, timezone.now())
    batch(free, timezone.now())

    assert takes == [50]
    assert len(mail.outbox) == 100


@pytest.mark.django_db
def test_with_redis_down_nothing_is_sent_and_the_batch_is_given_back_for_a_retry(settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    delivery = sending_delivery([f"p{n}@example.org" for n in range(3)], max_per_hour=3600)

    with pytest.raises(services.RateLimitsUnavailable):
        batch(delivery, timezone.now())

    assert len(mail.outbox) == 0 and pending_unclaimed(delivery) == 3
    assert services.RateLimitsUnavailable in tasks.delivery_send_batch_task.autoretry_for


@pytest.mark.django_db
def test_a_throttled_task_queues_itself_again_with_the_wait_instead_of_sleeping(monkeypatch, settings):
    settings.REDIS_URL = ""
    delivery = sending_delivery([f"p{n}@example.org" for n in range(3)], max_per_hour=60)  # one token, then one a minute
    queued = []
    monkeypatch.setattr(tasks.delivery_send_batch_task, "apply_async", lambda args, countdown=None: queued.append((args, countdown)))

    def run_as_a_worker(task_id: str) -> None:
        tasks.delivery_send_batch_task.push_request(id=task_id, is_eager=False)
        try:
            tasks.delivery_send_batch_task.run(delivery.pk)
        finally:
            tasks.delivery_send_batch_task.pop_request()

    run_as_a_worker("task-1")
    run_as_a_worker("task-2")

    assert len(mail.outbox) == 1
    assert queued[0] == ((delivery.pk,), None)
    assert queued[1][0] == (delivery.pk,) and 55 < queued[1][1] <= 60


# --- Expected end, API and form ------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_expected_end_comes_from_what_is_left_and_the_slower_rate():
    now = timezone.now()
    delivery = DeliveryFactory(
        status=DeliveryStatus.SENDING, to_deliver=1000, processed=100, sending_started_at=now - timedelta(minutes=10), max_per_hour=3600,
    )
    # 100 in 600 s made so far is slower than 3600/h: 900 left at 1/6 a second.
    assert selectors.delivery_expected_end(delivery=delivery, now=now) == now + timedelta(seconds=5400)
    delivery.max_per_hour = 60
    assert selectors.delivery_expected_end(delivery=delivery, now=now) == now + timedelta(hours=15)
    delivery.status = DeliveryStatus.PAUSED
    assert selectors.delivery_expected_end(delivery=delivery, now=now) is None


@pytest.mark.django_db
def test_the_expected_end_is_in_the_api_and_the_progress(api_client):
    delivery = DeliveryFactory(
        status=DeliveryStatus.SENDING, to_deliver=10, processed=0, sending_started_at=timezone.now(), max_per_hour=3600,
    )
    progress = Client()
    progress.force_login(RoleUserFactory(role=VIEWER))
    before = timezone.now()
    api = api_client.get(f"/api/deliveries/{delivery.pk}/").json()
    page = progress.get(f"/deliveries/{delivery.pk}/progress/").json()
    after = timezone.now()
    # Nothing sent yet: 10 left at max_per_hour's one a second, from the moment of the answer.
    for expected_end in (api["expected_end_at"], page["expected_end_at"]):
        assert before + timedelta(seconds=10) <= timezone.datetime.fromisoformat(expected_end) <= after + timedelta(seconds=10)
    assert page["expected_end"].endswith(" UTC")
    html = progress.get(f"/deliveries/{delivery.pk}/").content.decode()
    assert f'Expected end: <span data-field="expected_end">{page["expected_end"]}</span>' in html


@pytest.mark.django_db
def test_max_per_hour_through_the_api_keeps_a_ready_delivery_ready(api_client):
    delivery = DeliveryFactory(lists=[ListFactory(members=ProfileFactory.create_batch(2))])
    services.delivery_analyze(delivery_id=delivery.pk)

    changed = api_client.patch(f"/api/deliveries/{delivery.pk}/", {"max_per_hour": 500}, format="json")
    assert (changed.status_code, changed.json()["max_per_hour"], changed.json()["status"]) == (200, 500, "ready")
    cleared = api_client.patch(f"/api/deliveries/{delivery.pk}/", {"max_per_hour": None}, format="json")
    assert (cleared.status_code, cleared.json()["max_per_hour"]) == (200, None)


HOSTILE_RATES = {
    "zero": "0", "negative": "-1", "huge": str(10**30), "1e400": "1e400", "fraction": "1.5", "text": '"fast"',
    "nul": '"1\\u00000"', "list": "[1]", "object": '{"$gt": 0}', "markup": '"<script>alert(1)</script>"', "true": "true",
    "past the limit": "100000001",
}


@pytest.mark.django_db
@pytest.mark.parametrize("value", HOSTILE_RATES.values(), ids=HOSTILE_RATES.keys())
def test_hostile_max_per_hour_is_a_400_and_nothing_changes(value):
    delivery = DeliveryFactory(max_per_hour=100)
    client = APIClient()
    client.force_authenticate(RoleUserFactory(role=MARKETER))

    response = client.patch(f"/api/deliveries/{delivery.pk}/", data='{"max_per_hour": ' + value + "}", content_type="application/json")

    assert response.status_code == 400, response.content[:300]
    delivery.refresh_from_db()
    assert delivery.max_per_hour == 100


@pytest.mark.django_db
@pytest.mark.parametrize("value, expected", [("250", 250), ("", None), ("0", "error"), ("99999999999999999999", "error"), ("1\x00", "error")])
def test_max_per_hour_in_the_delivery_form(value, expected):
    delivery = DeliveryFactory(max_per_hour=100)
    client = Client()
    client.force_login(RoleUserFactory(role=MARKETER))
    form = {
        "label": delivery.label, "subject": delivery.subject, "from_email": delivery.from_email, "html": delivery.html,
        "text": delivery.text, "track_opens": "on", "track_clicks": "on", "mirror_page": "on", "max_per_hour": value,
    }

    response = client.post(f"/deliveries/{delivery.pk}/edit/", form)

    delivery.refresh_from_db()
    if expected == "error":
        assert response.status_code == 200 and 'class="field-error"' in response.content.decode()
        assert delivery.max_per_hour == 100
    else:
        assert response.status_code == 302 and delivery.max_per_hour == expected
