"""Ingestion benchmark: sustained events/s from the Redis stream into PostgreSQL.

    .venv/bin/python bench/ingest.py [--events 200000] [--batch-size 2000] [--consumers 1,2]

Fills the stream of a private redis-server with realistic click and open payloads (as the handlers
write them: many messages and links, a few dozen user agents), then runs the real consumer
(`tracking.ingest.consumer.stream_consume_batch`: read a batch in the consumer group, one bulk INSERT ... ON
CONFLICT DO NOTHING, burst and honeypot-client checks, commit, XACK + XDEL) until the stream is
drained, and reports events stored per second of consumer wall time. Uses the PostgreSQL database `beacon_bench_tracking`
(created if missing; its events table is emptied first). Writes its section of bench/RESULTS.md.
"""
import argparse
import multiprocessing
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.redirect import DATABASE_URL, ensure_database, free_port, wait_for_port, write_section  # noqa: E402

USER_AGENTS = [
    f"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{v}.0 Safari/537.36"
    for v in range(100, 130)
] + [
    f"Mozilla/5.0 (iPhone; CPU iPhone OS {v}_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148"
    for v in range(12, 18)
]


def setup_django(redis_url: str) -> None:
    os.environ.update(
        DJANGO_SETTINGS_MODULE="beacon.settings",
        DATABASE_URL=DATABASE_URL,
        REDIS_URL=redis_url,
        SECRET_KEY="bench-only-secret-key-not-for-production",
        CELERY_TASK_ALWAYS_EAGER="true",
    )
    import django

    django.setup()


def fill_stream(redis_url: str, count: int) -> None:
    import redis
    from django.conf import settings

    from tracking.ingest.event import new_event

    rng = random.Random(1)
    client = redis.Redis.from_url(redis_url)
    pipe = client.pipeline(transaction=False)
    for number in range(count):
        message_id = rng.randrange(1, 500_000)
        is_click = rng.random() < 0.4
        event = new_event(
            type="click" if is_click else "open",
            delivery_id=1 + message_id % 20,
            message_id=message_id,
            profile_id=message_id,
            tracked_url_id=rng.randrange(1, 200) if is_click else None,
            user_agent=rng.choice(USER_AGENTS),
            ip=f"198.51.{rng.randrange(256)}.0",
            browser_id=f"{rng.getrandbits(128):032x}",
            machine_reason="scanner" if rng.random() < 0.03 else "",
        )
        pipe.xadd(settings.BEACON_EVENT_STREAM, {"e": event.to_wire()})
        if number % 5000 == 4999:
            pipe.execute()
    pipe.execute()


def consume(redis_url: str, batch_size: int, name: str, results) -> None:
    setup_django(redis_url)
    from tracking.ingest.consumer import stream_consume_batch

    stored = 0
    started = time.perf_counter()
    while True:
        count = stream_consume_batch(consumer=name, batch_size=batch_size, block_ms=200)
        if not count:
            break
        stored += count
    results.put((stored, time.perf_counter() - started - 0.2))


def run(events: int, batch_size: int, consumers: int) -> tuple[int, int, int, float]:
    """Fills a fresh stream with `events` and drains it with `consumers` processes."""
    redis_port = free_port()
    redis_dir = tempfile.mkdtemp(prefix="bench-redis-")
    redis_url = f"redis://127.0.0.1:{redis_port}/0"
    redis_server = subprocess.Popen(
        ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--dir", redis_dir, "--save", "",
         "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    try:
        wait_for_port(redis_port)
        os.environ["REDIS_URL"] = redis_url
        from django.conf import settings
        from django.db import connection

        from tracking.models import TrackingEvent

        settings.BEACON_EVENT_REDIS_URL = redis_url
        with connection.cursor() as cursor:
            cursor.execute(f"TRUNCATE {TrackingEvent._meta.db_table}")
        connection.close()
        fill_stream(redis_url, events)
        results = multiprocessing.Queue()
        workers = [
            multiprocessing.Process(target=consume, args=(redis_url, batch_size, f"bench-{n}", results))
            for n in range(consumers)
        ]
        for worker in workers:
            worker.start()
        outcomes = [results.get() for _ in workers]
        for worker in workers:
            worker.join()
        stored = TrackingEvent.objects.count()
    finally:
        redis_server.terminate()
        redis_server.wait(timeout=30)
        shutil.rmtree(redis_dir, ignore_errors=True)
    return consumers, stored, sum(count for count, _ in outcomes), max(seconds for _, seconds in outcomes)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--batch-size", type=int, default=2000)
    parser.add_argument("--consumers", default="1,2", help="consumer process counts to run, one run each")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    ensure_database()
    setup_django("")
    from django.core.management import call_command

    call_command("migrate", verbosity=0)

    runs = [run(args.events, args.batch_size, int(count)) for count in args.consumers.split(",")]
    lines = "\n".join(
        f"| {consumers} | {stored} | {acknowledged} | {seconds:.2f} | **{stored / seconds:,.0f}** |"
        for consumers, stored, acknowledged, seconds in runs
    )
    best = max(stored / seconds for _, stored, _, seconds in runs)
    complete = all(stored == args.events for _, stored, _, _ in runs)
    verdict = "met" if best >= 20_000 and complete else "NOT met"
    body = f"""## Ingestion, stream to PostgreSQL (bench/ingest.py)

Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {platform.node()} ({os.cpu_count()} CPUs shared by the consumers, PostgreSQL
and Redis; load average before the run {load:.2f}): {args.events} events (40% clicks, 60% opens, 36 user agents,
500,000 messages) in the stream, batches of {args.batch_size}; each batch: XREADGROUP, COPY into a temporary table,
one INSERT ... SELECT ... ON CONFLICT (event_id) DO NOTHING, burst and honeypot-client checks, commit, XACK + XDEL.

| consumers | stored | acknowledged | seconds | events/s |
|---|---|---|---|---|
{lines}

Best **{best:,.0f} events/s** (target >= 20,000/s): **{verdict}**.
"""
    write_section("bench/ingest.py", body)
    print(body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
