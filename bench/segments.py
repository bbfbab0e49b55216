#!/usr/bin/env python3
"""Segments at scale: 1,000,000 profiles and 5,000,000 tracking events in PostgreSQL.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/beacon .venv/bin/python bench/segments.py

Creates its own database (`beacon_bench_segments`, dropped at the end unless --keep; --reuse measures a
kept one), generates the data with COPY, then counts segments with tracking tests through Beacon's one
ORM query (`audiences.selectors.segment_count`), each beside a hand-written raw SQL of the same rule in
the same run (median of --rounds, interleaved). Appends its section to bench/RESULTS.md. --profiles and
--events make it smaller where loading the full size takes too long.
"""
import argparse
import datetime as dt
import io
import os
import random
import statistics
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
BENCH_DB = "beacon_bench_segments"
RESULTS = ROOT / "bench" / "RESULTS.md"
DELIVERIES = 10
LABELS = ("Sale", "Blog", "News", "Shop", "Help")
DOMAINS = [f"mail{n}.example" for n in range(40)] + ["gmail.com"] * 20 + ["outlook.com"] * 10
COUNTRIES = ("FR", "DE", "US", "ES", "IT")


def _database(base_url: str, *, create: bool) -> str:
    import psycopg2

    base = base_url.rsplit("/", 1)[0]
    if create:
        connection = psycopg2.connect(base + "/postgres")
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS {BENCH_DB} WITH (FORCE)")
            cursor.execute(f"CREATE DATABASE {BENCH_DB}")
        connection.close()
    return base + "/" + BENCH_DB


def _drop(base_url: str) -> None:
    import psycopg2

    connection = psycopg2.connect(base_url.rsplit("/", 1)[0] + "/postgres")
    connection.autocommit = True
    with connection.cursor() as cursor:
        cursor.execute(f"DROP DATABASE IF EXISTS {BENCH_DB} WITH (FORCE)")
    connection.close()


def _copy(cursor, table: str, columns: str, lines) -> None:
    buffer, count = io.StringIO(), 0
    for line in lines:
        buffer.write(line)
        count += 1
        if count % 500_000 == 0:
            buffer.seek(0)
            cursor.copy_expert(f"COPY {table} ({columns}) FROM STDIN", buffer)
            buffer = io.StringIO()
    buffer.seek(0)
    cursor.copy_expert(f"COPY {table} ({columns}) FROM STDIN", buffer)


def generate(profiles: int, events: int, now: dt.datetime) -> None:
    """Profiles with a country attribute; deliveries with labelled links; events over 90 days, 15% machine."""
    from django.db import connection

    from deliveries.models import Delivery, DeliveryStatus, TrackedUrl

    rng = random.Random(14)
    stamp = now.strftime("%Y-%m-%d %H:%M:%S+00")
    deliveries = [
        Delivery.objects.create(label=f"Bench {n}", subject="Hi", from_email="news@beacon.example", status=DeliveryStatus.FINISHED)
        for n in range(DELIVERIES)
    ]
    urls = {
        delivery.pk: TrackedUrl.objects.bulk_create(
            TrackedUrl(delivery=delivery, url=f"https://shop.example.com/{label}", label=label, position=n, in_html=True)
            for n, label in enumerate(LABELS)
        )
        for delivery in deliveries
    }
    with connection.cursor() as cursor:
        def profile_lines():
            for n in range(profiles):
                country = COUNTRIES[n % len(COUNTRIES)]
                yield (f"p{n}@{DOMAINS[n % len(DOMAINS)]}\tName{n % 500}\tLast\t{{\"country\": \"{country}\", \"age\": {18 + n % 60}}}"
                       f"\tvalid\thtml\tt\t0\t\t{stamp}\t{stamp}\n")

        _copy(cursor, "profiles_profile",
              "email, first_name, last_name, attributes, email_status, email_format, tracking_consent, soft_bounce_count, "
              "email_status_reason, created_at, updated_at", profile_lines())
        cursor.execute("SELECT min(id), max(id) FROM profiles_profile")
        first, last = cursor.fetchone()
        span = last - first + 1

        def event_lines():
            for n in range(events):
                delivery = deliveries[int(rng.random() ** 1.5 * DELIVERIES)]
                roll = rng.random()
                kind = "open" if roll < 0.6 else "click" if roll < 0.95 else "opt_out"
                url = rng.choice(urls[delivery.pk]).pk if kind == "click" else "\\N"
                # 40% of the people react, a few of them a lot.
                profile = first + int(rng.random() ** 2 * span * 0.4)
                at = now - dt.timedelta(seconds=rng.randrange(90 * 86400))
                machine = "t" if rng.random() < 0.15 else "f"
                yield (f"{uuid.UUID(int=n)}\t{kind}\t{at:%Y-%m-%d %H:%M:%S}+00\t{delivery.pk}\t{profile}\t{url}"
                       f"\t\t\t{machine}\t{'machine_open' if machine == 't' else ''}\n")

        _copy(cursor, "tracking_trackingevent",
              "event_id, type, logged_at, delivery_id, profile_id, tracked_url_id, browser_id, page_url, is_machine, machine_reason",
              event_lines())
        cursor.execute("VACUUM ANALYZE")


def cases(delivery_id: int, since: dt.datetime) -> list[tuple[str, dict, str, list]]:
    """(what, rule, hand-written SQL of the same rule, its parameters)."""
    return [
        (
            "clicked delivery D in the last 30 days (people)",
            {"event": "click", "delivery": delivery_id, "within_days": 30},
            "SELECT count(*) FROM profiles_profile p WHERE p.id IN (SELECT e.profile_id FROM tracking_trackingevent e "
            "WHERE e.delivery_id = %s AND e.type = 'click' AND e.logged_at >= %s AND NOT e.is_machine)",
            [delivery_id, since],
        ),
        (
            "clicked the link “Sale” of D, country FR",
            {"all": [{"event": "click", "delivery": delivery_id, "url_label": "Sale"},
                     {"field": "attributes.country", "op": "eq", "value": "FR"}]},
            "SELECT count(*) FROM profiles_profile p WHERE p.attributes ->> 'country' = 'FR' AND p.id IN ("
            "SELECT e.profile_id FROM tracking_trackingevent e JOIN tracking_trackedurl u ON u.id = e.tracked_url_id "
            "WHERE e.delivery_id = %s AND e.type = 'click' AND u.label = 'Sale' AND NOT e.is_machine)",
            [delivery_id],
        ),
        (
            "opened D and did not click D",
            {"all": [{"event": "open", "delivery": delivery_id}, {"not": {"event": "click", "delivery": delivery_id}}]},
            "SELECT count(*) FROM (SELECT e.profile_id FROM tracking_trackingevent e WHERE e.delivery_id = %s "
            "AND e.type = 'open' AND NOT e.is_machine EXCEPT SELECT e.profile_id FROM tracking_trackingevent e "
            "WHERE e.delivery_id = %s AND e.type = 'click' AND NOT e.is_machine) AS openers JOIN profiles_profile p "
            "ON p.id = openers.profile_id",
            [delivery_id, delivery_id],
        ),
        (
            "any click in the last 30 days, any delivery (people)",
            {"event": "click", "within_days": 30},
            "SELECT count(*) FROM profiles_profile p WHERE p.id IN (SELECT e.profile_id FROM tracking_trackingevent e "
            "WHERE e.type = 'click' AND e.logged_at >= %s AND NOT e.is_machine)",
            [since],
        ),
    ]


def measure(rounds: int) -> list[dict]:
    from django.db import connection
    from django.utils import timezone

    from audiences.rules import rule_validate
    from audiences.selectors import rule_profiles
    from deliveries.models import Delivery

    delivery_id = Delivery.objects.order_by("id").values_list("pk", flat=True).first()
    # One instant for both, so that "the last 30 days" is the same window.
    now = timezone.now()
    rows = []
    for what, rule, sql, params in cases(delivery_id, now - dt.timedelta(days=30)):
        rule = rule_validate(rule)
        beacon_times, raw_times = [], []
        for _ in range(rounds):
            started = time.perf_counter()
            # What `segment_count` runs, at the raw SQL's instant.
            beacon_count = rule_profiles(rule=rule, now=now).order_by().count()
            beacon_times.append(time.perf_counter() - started)
            with connection.cursor() as cursor:
                started = time.perf_counter()
                cursor.execute(sql, params)
                raw_count = cursor.fetchone()[0]
                raw_times.append(time.perf_counter() - started)
        if beacon_count != raw_count:
            raise SystemExit(f"{what}: Beacon counts {beacon_count:,}, the raw SQL {raw_count:,}")
        rows.append({
            "what": what, "count": beacon_count, "beacon": statistics.median(beacon_times), "raw": statistics.median(raw_times),
        })
        print(f"{what}: {beacon_count:,} profiles, Beacon {rows[-1]['beacon'] * 1000:.0f} ms, raw SQL {rows[-1]['raw'] * 1000:.0f} ms")
    return rows


def write_results(rows: list[dict], profiles: int, events: int, load_seconds: float | None) -> None:
    lines = [
        "",
        f"## Segments (`bench/segments.py`), {dt.date.today():%Y-%m-%d}",
        "",
        f"{profiles:,} profiles, {events:,} tracking events (10 deliveries, 90 days, 15% machine), PostgreSQL on the shared "
        f"2-core machine{f'; loaded in {load_seconds:.0f} s' if load_seconds else ''}. Median of the rounds, Beacon's one ORM "
        "query (`rule_profiles(...).count()`, as `segment_count`) and a hand-written SQL of the same rule interleaved in the same run. Target: under 2 s.",
        "",
        "| segment | profiles | Beacon | raw SQL | Beacon / raw |",
        "|---|---:|---:|---:|---:|",
        *(f"| {row['what']} | {row['count']:,} | {row['beacon'] * 1000:.0f} ms | {row['raw'] * 1000:.0f} ms | "
          f"{row['beacon'] / row['raw']:.2f} |" for row in rows),
        "",
    ]
    with RESULTS.open("a") as results:
        results.write("\n".join(lines))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profiles", type=int, default=1_000_000)
    parser.add_argument("--events", type=int, default=5_000_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--keep", action="store_true", help="keep the database for --reuse")
    parser.add_argument("--reuse", action="store_true", help="measure the database a --keep run left")
    parser.add_argument("--no-write", action="store_true", help="print only; leave bench/RESULTS.md alone")
    options = parser.parse_args()
    base_url = os.environ.get("DATABASE_URL", "")
    if not base_url.startswith("postgres"):
        raise SystemExit("DATABASE_URL must point at PostgreSQL")
    os.environ["DATABASE_URL"] = _database(base_url, create=not options.reuse)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "beacon.settings")
    os.environ.setdefault("SECRET_KEY", "bench-only-secret-key-not-for-production")
    import django

    django.setup()
    from django.core.management import call_command
    from django.utils import timezone

    load_seconds = None
    try:
        if not options.reuse:
            call_command("migrate", verbosity=0)
            started = time.perf_counter()
            generate(options.profiles, options.events, timezone.now())
            load_seconds = time.perf_counter() - started
            print(f"loaded {options.profiles:,} profiles and {options.events:,} events in {load_seconds:.0f} s")
        rows = measure(options.rounds)
        if not options.no_write:
            write_results(rows, options.profiles, options.events, load_seconds)
    finally:
        from django.db import connections

        connections.close_all()
        if not options.keep:
            _drop(base_url)
    return 0


if __name__ == "__main__":
    sys.exit(main())
