#!/usr/bin/env python3
"""Reports across deliveries at scale: the messages and events of the reports benchmark spread over many
deliveries, one sent a day, in PostgreSQL.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/beacon .venv/bin/python bench/reports_across.py

Creates its own database (`beacon_bench_across`, dropped at the end unless --keep), generates the data with
COPY, builds every delivery's rollups with "Recompute delivery and tracking indicators", then measures the
median response time of each report across deliveries (`/api/reports/<name>/`) for a period of 30 days and
one of 366 days (every delivery), beside the same figures computed by scanning raw events and messages in
SQL, and the number of SQL queries of each, which must not grow with the number of deliveries. Writes its
section of bench/RESULTS.md.
"""
import argparse
import datetime as dt
import os
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.reports import DOMAINS, _copy, _ts, settle, timed, write_results  # noqa: E402

BENCH_DB = "beacon_bench_across"
SECTION_START, SECTION_END = "<!-- reports-across:start -->", "<!-- reports-across:end -->"
FIRST_SENT = dt.datetime(2026, 1, 1, 9, 0, tzinfo=dt.UTC)
LINKS = 10
AGENTS = 60
REPORTS = ("deliveries", "opens-breakdown", "over-time")

SCAN_QUERIES = {
    "deliveries": [
        "SELECT e.delivery_id, count(*) FILTER (WHERE e.type = 'open'), "
        "count(DISTINCT e.message_id) FILTER (WHERE e.type IN ('open', 'click')), count(*) FILTER (WHERE e.type = 'click'), "
        "count(DISTINCT e.message_id) FILTER (WHERE e.type = 'click'), count(*) FILTER (WHERE e.type = 'opt_out') "
        "FROM tracking_trackingevent e JOIN deliveries_delivery d ON d.id = e.delivery_id "
        "WHERE d.sending_started_at BETWEEN %(start)s AND %(end)s AND NOT e.is_machine GROUP BY 1",
        "SELECT m.delivery_id, m.failure_type, count(*) FROM deliveries_message m JOIN deliveries_delivery d "
        "ON d.id = m.delivery_id WHERE d.sending_started_at BETWEEN %(start)s AND %(end)s AND m.status = 'failed' GROUP BY 1, 2",
    ],
    "opens-breakdown": [
        f"SELECT ua.{facet}, count(*) FROM tracking_trackingevent e JOIN deliveries_delivery d ON d.id = e.delivery_id "
        "JOIN tracking_useragent ua ON ua.id = e.user_agent_id "
        "WHERE d.sending_started_at BETWEEN %(start)s AND %(end)s AND e.type = 'open' AND NOT e.is_machine GROUP BY 1"
        for facet in ("os_family", "device_type", "browser_family")
    ],
    "over-time": [
        "SELECT date_trunc('day', logged_at), count(*) FROM tracking_trackingevent "
        "WHERE logged_at BETWEEN %(start)s AND %(end)s AND type = 'opt_out' AND NOT is_machine GROUP BY 1",
        "SELECT date_trunc('day', sent_at), count(*), count(*) FILTER (WHERE status = 'failed') FROM deliveries_message "
        "WHERE sent_at BETWEEN %(start)s AND %(end)s AND status IN ('sent', 'failed') GROUP BY 1",
    ],
}


def _create_database(base_url: str) -> str:
    import psycopg2

    base = base_url.rsplit("/", 1)[0]
    connection = psycopg2.connect(base + "/postgres")
    connection.autocommit = True
    with connection.cursor() as cursor:
        cursor.execute(f"DROP DATABASE IF EXISTS {BENCH_DB} WITH (FORCE)")
        cursor.execute(f"CREATE DATABASE {BENCH_DB}")
    connection.close()
    return base + "/" + BENCH_DB


def _drop_database(base_url: str) -> None:
    import psycopg2

    connection = psycopg2.connect(base_url.rsplit("/", 1)[0] + "/postgres")
    connection.autocommit = True
    with connection.cursor() as cursor:
        cursor.execute(f"DROP DATABASE IF EXISTS {BENCH_DB} WITH (FORCE)")
    connection.close()


def generate(deliveries: int, messages: int, events: int) -> list[int]:
    """`deliveries` deliveries, one sent a day from FIRST_SENT, sharing `messages` messages and `events` events
    (reactions over three days after each send, as in the reports benchmark); their ids."""
    from django.db import connection

    from deliveries.models import Delivery, DeliveryStatus, TrackedUrl, TrackingMode
    from tracking.models import UserAgent

    rng = random.Random(4)
    agents = UserAgent.objects.bulk_create(
        UserAgent(digest=f"{n:040x}", raw=f"agent {n}", os_family=["iOS", "Android", "Windows", "macOS", "Linux"][n % 5],
                  browser_family=["Safari", "Chrome", "Firefox", "Edge", "Apple Mail"][n % 5],
                  device_type=["mobile", "mobile", "desktop", "desktop", "tablet"][(n // 5) % 5], parsed_at=FIRST_SENT)
        for n in range(AGENTS)
    )
    agent_ids = [agent.pk for agent in agents]
    per_delivery_messages, per_delivery_events = messages // deliveries, events // deliveries
    ids = []
    with connection.cursor() as cursor:
        for number in range(deliveries):
            sent = FIRST_SENT + dt.timedelta(days=number)
            delivery = Delivery.objects.create(
                label=f"Bench delivery {number + 1}", subject="Hello", from_email="news@beacon.example",
                status=DeliveryStatus.FINISHED, sending_started_at=sent, finished_at=sent + dt.timedelta(hours=1),
            )
            ids.append(delivery.pk)
            urls = TrackedUrl.objects.bulk_create(
                [TrackedUrl(delivery=delivery, url=f"https://shop.example.com/p/{n}", label=f"Link {n}", position=n, in_html=True)
                 for n in range(1, LINKS + 1)]
                + [TrackedUrl(delivery=delivery, url="{{ unsubscribe_url }}", label="Opt-out link", mode=TrackingMode.OPT_OUT)]
            )
            _copy(cursor, "deliveries_message",
                  "delivery_id, email, email_format, status, failure_type, failure_reason, failure_detail, smtp_message_id, "
                  "claimed_by, sent_at, created_at", _message_lines(rng, delivery.pk, sent, per_delivery_messages))
            cursor.execute("SELECT min(id), max(id) FROM deliveries_message WHERE delivery_id = %s", [delivery.pk])
            first_message_id, last_message_id = cursor.fetchone()
            cursor.execute(
                "UPDATE deliveries_delivery SET to_deliver = %s, processed = %s, success = (SELECT count(*) FROM "
                "deliveries_message WHERE delivery_id = %s AND status = 'sent'), errors = (SELECT count(*) FROM "
                "deliveries_message WHERE delivery_id = %s AND status = 'failed') WHERE id = %s",
                [per_delivery_messages, per_delivery_messages, delivery.pk, delivery.pk, delivery.pk],
            )
            _copy(cursor, "tracking_trackingevent",
                  "event_id, type, logged_at, delivery_id, message_id, tracked_url_id, user_agent_id, browser_id, page_url, "
                  "is_machine, machine_reason",
                  _event_lines(rng, number, delivery.pk, sent, first_message_id, last_message_id, urls, agent_ids,
                               per_delivery_events))
    return ids


def _message_lines(rng, delivery_id: int, sent: dt.datetime, count: int):
    created = _ts(sent)
    for n in range(count):
        roll = rng.random()
        if roll < 0.02:
            status, failure_type, reason = "failed", "hard", "user_unknown"
        elif roll < 0.035:
            status, failure_type, reason = "failed", "soft", "mailbox_full"
        else:
            status, failure_type, reason = "sent", "", ""
        email_format = "text" if rng.random() < 0.05 else "html"
        yield (f"{delivery_id}\tr{n}@{DOMAINS[n % len(DOMAINS)]}\t{email_format}\t{status}\t{failure_type}\t{reason}"
               f"\t\t\t\t{_ts(sent + dt.timedelta(seconds=n * 0.01))}\t{created}\n")


def _event_lines(rng, serial: int, delivery_id: int, sent: dt.datetime, first_message_id: int, last_message_id: int,
                 urls, agent_ids, count: int):
    content_ids, opt_out_id = [url.pk for url in urls[:LINKS]], urls[LINKS].pk
    span = last_message_id - first_message_id + 1
    for n in range(count):
        roll = rng.random()
        message_id = first_message_id + int(rng.random() ** 2 * span * 0.6)
        at = _ts(sent + dt.timedelta(seconds=int(rng.expovariate(1 / 14_400)) % 259_200))
        machine = "t" if roll < 0.12 or rng.random() < 0.03 else "f"
        if roll < 0.64:
            kind, url, agent, browser = "open", "\\N", str(agent_ids[message_id % len(agent_ids)]), ""
        elif roll < 0.97:
            kind, url, agent, browser = "click", str(rng.choice(content_ids)), "\\N", f"b{message_id}"
        else:
            kind, url, agent, browser = "opt_out", str(opt_out_id), "\\N", ""
        yield (f"{serial:08x}{n:024x}\t{kind}\t{at}\t{delivery_id}\t{message_id}\t{url}\t{agent}\t{browser}"
               f"\t\t{machine}\t{'scanner' if machine == 't' else ''}\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--deliveries", type=int, default=100)
    parser.add_argument("--messages", type=int, default=1_000_000, help="in all, shared by the deliveries")
    parser.add_argument("--events", type=int, default=5_000_000, help="in all, shared by the deliveries")
    parser.add_argument("--requests", type=int, default=21, help="API calls per report and period (median)")
    parser.add_argument("--keep", action="store_true", help="keep the bench database")
    parser.add_argument("--no-write", action="store_true", help="do not update bench/RESULTS.md")
    args = parser.parse_args()
    base_url = os.environ.get("DATABASE_URL", "")
    if not base_url.startswith("postgres"):
        print("Set DATABASE_URL to a PostgreSQL server (its database is not touched).", file=sys.stderr)
        return 2
    os.environ["DATABASE_URL"] = _create_database(base_url)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "beacon.settings")
    os.environ.setdefault("SECRET_KEY", "bench-only-secret-key-not-for-production")
    # As in production, where Celery beat consolidates: a report read never consolidates first.
    os.environ["BEACON_REPORTS_MAX_AGE_SECONDS"] = ""
    try:
        return run(args)
    finally:
        from django.db import connections

        connections.close_all()
        if not args.keep:
            _drop_database(base_url)


def run(args) -> int:
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client

    from reporting.consolidation.pointer import STATE_NAME
    from reporting.consolidation.recompute import delivery_recompute
    from reporting.models import ConsolidationState
    from tests.factories import UserFactory

    call_command("migrate", verbosity=0)
    print(f"generating {args.deliveries} deliveries sharing {args.messages:,} messages and {args.events:,} events ...", flush=True)
    generate_seconds, ids = timed(generate, args.deliveries, args.messages, args.events)
    print(f"  {generate_seconds:.1f} s", flush=True)
    with connection.cursor() as cursor:
        settle(cursor)
        cursor.execute("SELECT max(id) FROM tracking_trackingevent")
        ConsolidationState.objects.update_or_create(name=STATE_NAME, defaults={"pointer": cursor.fetchone()[0]})
    load_before_rollups = os.getloadavg()[0]
    started = time.perf_counter()
    for delivery_id in ids:
        delivery_recompute(delivery_id=delivery_id)
    rollup_seconds = time.perf_counter() - started
    print(f"rollups of every delivery (recompute, one by one): {rollup_seconds:.1f} s", flush=True)
    with connection.cursor() as cursor:
        settle(cursor)

    last_day = (FIRST_SENT + dt.timedelta(days=args.deliveries - 1)).date()
    periods = {
        "30 days": (last_day - dt.timedelta(days=29), last_day),
        "366 days": (last_day - dt.timedelta(days=365), last_day),
    }
    client = Client()
    client.force_login(UserFactory())
    load_before_reports = os.getloadavg()[0]
    rows = []
    for period_name, (first, last) in periods.items():
        query = f"from={first.isoformat()}&to={last.isoformat()}"
        in_period = client.get(f"/api/reports/deliveries/?{query}").json()["totals"]["deliveries"]
        for name in REPORTS:
            url = f"/api/reports/{name}/?{query}"
            queries = []
            # Counted as they run: the test client's request_started signal empties connection.queries.
            with connection.execute_wrapper(lambda execute, sql, *rest: queries.append(sql) or execute(sql, *rest)):
                assert client.get(url).status_code == 200
            samples = []
            for _ in range(args.requests):
                seconds, response = timed(client.get, url)
                assert response.status_code == 200
                samples.append(seconds)
            scan_samples = []
            bounds = {"start": dt.datetime.combine(first, dt.time.min, tzinfo=dt.UTC),
                      "end": dt.datetime.combine(last, dt.time.max, tzinfo=dt.UTC)}
            for _ in range(3):
                with connection.cursor() as cursor:
                    scan_started = time.perf_counter()
                    for sql in SCAN_QUERIES[name]:
                        cursor.execute(sql, bounds)
                        cursor.fetchall()
                    scan_samples.append(time.perf_counter() - scan_started)
            api_ms, scan_ms = statistics.median(samples) * 1000, statistics.median(scan_samples) * 1000
            rows.append((name, period_name, in_period, len(queries), api_ms, scan_ms))
            print(f"  {name:16} {period_name:9} ({in_period} deliveries, {len(queries)} queries) "
                  f"API median {api_ms:7.1f} ms   scan of raw rows {scan_ms:9.1f} ms", flush=True)

    figures = [
        "## Reports across deliveries (`bench/reports_across.py`)",
        "",
        f"Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on PostgreSQL {connection.pg_version // 10000}, "
        f"{os.cpu_count()} shared cores (1-minute load average before the rollups: {load_before_rollups:.2f}, before the "
        f"reports: {load_before_reports:.2f}): {args.deliveries} deliveries, one sent a day, sharing {args.messages:,} "
        f"messages and {args.events:,} events, generated with COPY ({generate_seconds:.0f} s); every delivery's rollups "
        f"built by its recompute ({rollup_seconds:.0f} s in all); the database vacuumed, analyzed and checkpointed "
        "before the reports.",
        "",
        f"Median response time of each report's API endpoint (humans only, {args.requests} calls through the full "
        "Django stack, JSON), its SQL queries per call (the same whatever the number of deliveries), beside the same "
        "figures computed by scanning raw events and messages in SQL (median of 3):",
        "",
        "| report | period (deliveries) | queries | API, from rollups | scanning raw rows | target |",
        "|---|---|---|---|---|---|",
    ]
    for name, period_name, in_period, query_count, api_ms, scan_ms in rows:
        figures.append(f"| {name} | {period_name} ({in_period}) | {query_count} | {api_ms:.1f} ms | {scan_ms:,.0f} ms | < 50 ms |")
    if not args.no_write:
        write_results("\n".join(figures), start=SECTION_START, end=SECTION_END)
        print("written to bench/RESULTS.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
