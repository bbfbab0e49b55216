#!/usr/bin/env python3
"""Reports at scale: one delivery with 1,000,000 messages and 5,000,000 events in PostgreSQL.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/beacon .venv/bin/python bench/reports.py

Creates its own database (`beacon_bench_reports`, dropped at the end unless --keep), generates the data
with COPY, then measures: the full recompute of the delivery; incremental consolidation of 100,000 new
events; the median response time of each report's API endpoint (from rollups), each beside the same
report computed by scanning raw events as the peers do. Writes its section of bench/RESULTS.md.
"""
import argparse
import datetime as dt
import io
import os
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
BENCH_DB = "beacon_bench_reports"
RESULTS = ROOT / "bench" / "RESULTS.md"
SECTION_START, SECTION_END = "<!-- reports:start -->", "<!-- reports:end -->"
START = dt.datetime(2026, 11, 2, 8, 0, tzinfo=dt.UTC)
DOMAINS = [f"mail{n}.example" for n in range(40)] + ["gmail.com"] * 20 + ["outlook.com"] * 10 + ["yahoo.com"] * 5
LINKS = 20


def _create_database(base_url: str) -> str:
    import psycopg2

    base = base_url.rsplit("/", 1)[0]
    connection = psycopg2.connect(base + "/postgres")
    connection.autocommit = True
    with connection.cursor() as cursor:
        cursor.execute(f"DROP DATABASE IF EXISTS {BENCH_DB}")
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


def _copy(cursor, table: str, columns: str, lines) -> None:
    buffer = io.StringIO()
    count = 0
    for line in lines:
        buffer.write(line)
        count += 1
        if count % 500_000 == 0:
            buffer.seek(0)
            cursor.copy_expert(f"COPY {table} ({columns}) FROM STDIN", buffer)
            buffer = io.StringIO()
    buffer.seek(0)
    cursor.copy_expert(f"COPY {table} ({columns}) FROM STDIN", buffer)


def _ts(at: dt.datetime) -> str:
    return at.strftime("%Y-%m-%d %H:%M:%S.%f+00")


def generate(messages: int, events: int) -> dict:
    """The delivery, its messages, links, user agents and events, written with COPY."""
    from django.db import connection

    from deliveries.models import Delivery, DeliveryStatus
    from tracking.models import TrackedUrl, TrackingMode, UserAgent

    rng = random.Random(4)
    delivery = Delivery.objects.create(
        label="Bench: 1M recipients", subject="Hello", from_email="news@beacon.example", status=DeliveryStatus.FINISHED,
        html="".join(f'<p><a href="https://shop.example.com/p/{n}">Link {n}</a></p>' for n in range(1, LINKS + 1)),
        initial_population=messages + 1000, excluded_by_cause={"quarantined": 1000},
        sending_started_at=START, finished_at=START + dt.timedelta(hours=3),
    )
    urls = TrackedUrl.objects.bulk_create(
        [TrackedUrl(delivery=delivery, url=f"https://shop.example.com/p/{n}", label=f"Link {n % 12}",
                    category=["shop", "blog", "news", ""][n % 4], position=n, in_html=True) for n in range(1, LINKS + 1)]
        + [TrackedUrl(delivery=delivery, url="{{ unsubscribe_url }}", label="Opt-out link", mode=TrackingMode.OPT_OUT),
           TrackedUrl(delivery=delivery, url="{{ mirror_url }}", label="Mirror page link", mode=TrackingMode.MIRROR)]
    )
    content_urls, opt_out_url, mirror_url = urls[:LINKS], urls[LINKS], urls[LINKS + 1]
    agents = UserAgent.objects.bulk_create(
        UserAgent(digest=f"{n:040x}", raw=f"agent {n}", os_family=["iOS", "Android", "Windows", "macOS", "Linux"][n % 5],
                  browser_family=["Safari", "Chrome", "Firefox", "Edge", "Apple Mail"][n % 5],
                  device_type=["mobile", "mobile", "desktop", "desktop", "tablet"][(n // 5) % 5], parsed_at=START)
        for n in range(60)
    )
    agent_ids = [agent.pk for agent in agents]
    now = _ts(START)
    with connection.cursor() as cursor:
        def message_lines():
            for n in range(messages):
                roll = rng.random()
                if roll < 0.02:
                    status, failure_type, reason = "failed", "hard", "user_unknown"
                elif roll < 0.035:
                    status, failure_type, reason = "failed", "soft", "mailbox_full"
                else:
                    status, failure_type, reason = "sent", "", ""
                sent = _ts(START + dt.timedelta(seconds=n * 0.01))
                email_format = "text" if rng.random() < 0.05 else "html"
                yield (f"{delivery.pk}\tr{n}@{DOMAINS[n % len(DOMAINS)]}\t{email_format}\t{status}\t{failure_type}\t{reason}"
                       f"\t\t\t\t{sent}\t{now}\n")

        _copy(cursor, "deliveries_message",
              "delivery_id, email, email_format, status, failure_type, failure_reason, failure_detail, smtp_message_id, "
              "claimed_by, sent_at, created_at", message_lines())
        cursor.execute("SELECT min(id), max(id) FROM deliveries_message WHERE delivery_id = %s", [delivery.pk])
        first_message_id, last_message_id = cursor.fetchone()
        cursor.execute(
            "UPDATE deliveries_delivery SET to_deliver = %s, processed = %s, success = (SELECT count(*) FROM "
            "deliveries_message WHERE delivery_id = %s AND status = 'sent'), errors = (SELECT count(*) FROM "
            "deliveries_message WHERE delivery_id = %s AND status = 'failed') WHERE id = %s",
            [messages, messages, delivery.pk, delivery.pk, delivery.pk],
        )
        _copy_events(cursor, rng, delivery.pk, first_message_id, last_message_id, content_urls, opt_out_url, mirror_url,
                     agent_ids, events, serial=0)
        cursor.execute("ANALYZE")
    return {
        "delivery_id": delivery.pk, "first_message_id": first_message_id, "last_message_id": last_message_id,
        "content_urls": content_urls, "opt_out_url": opt_out_url, "mirror_url": mirror_url, "agent_ids": agent_ids,
    }


def _copy_events(cursor, rng, delivery_id, first_message_id, last_message_id, content_urls, opt_out_url, mirror_url,
                 agent_ids, count, serial) -> None:
    url_ids = [url.pk for url in content_urls]
    url_weights = [1 / (rank + 1) for rank in range(len(url_ids))]
    span = last_message_id - first_message_id + 1
    # Most reactions in the first hours, a long tail over three days.
    offsets = [int(rng.expovariate(1 / 14_400)) % 259_200 for _ in range(4096)]

    def lines():
        for n in range(count):
            roll = rng.random()
            # 60% of the recipients react: events concentrate on them.
            message_id = first_message_id + int(rng.random() ** 2 * span * 0.6)
            at = _ts(START + dt.timedelta(seconds=offsets[n % 4096] + (message_id % 600)))
            machine = "t" if roll < 0.12 or rng.random() < 0.03 else "f"
            if roll < 0.64:
                kind, url, agent, browser = "open", "\\N", str(agent_ids[message_id % len(agent_ids)]), ""
            elif roll < 0.97:
                kind, agent = "click", "\\N"
                url = str(rng.choices(url_ids, url_weights)[0])
                browser = f"b{message_id}" if rng.random() < 0.9 else f"f{message_id % 50_000}"
            elif roll < 0.98:
                kind, url, agent, browser = "opt_out", str(opt_out_url.pk), "\\N", ""
            else:
                kind, url, agent, browser = "mirror", str(mirror_url.pk), "\\N", ""
            yield (f"{serial:08x}{n:024x}\t{kind}\t{at}\t{delivery_id}\t{message_id}\t{url}\t{agent}\t{browser}"
                   f"\t\t{machine}\t{'scanner' if machine == 't' else ''}\n")

    _copy(cursor, "tracking_trackingevent",
          "event_id, type, logged_at, delivery_id, message_id, tracked_url_id, user_agent_id, browser_id, page_url, "
          "is_machine, machine_reason", lines())


SCAN_QUERIES = {
    "summary": [
        "SELECT status, count(*) FROM deliveries_message WHERE delivery_id = %(d)s GROUP BY status",
    ],
    "indicators": [
        "SELECT lower(split_part(m.email, '@', 2)) AS domain, count(*) FILTER (WHERE e.type = 'open'), "
        "count(DISTINCT e.message_id) FILTER (WHERE e.type IN ('open', 'click')), count(*) FILTER (WHERE e.type = 'click'), "
        "count(DISTINCT e.message_id) FILTER (WHERE e.type = 'click'), count(DISTINCT e.browser_id) FILTER (WHERE e.type = 'click'), "
        "count(*) FILTER (WHERE e.type = 'opt_out'), count(*) FILTER (WHERE e.type = 'mirror') "
        "FROM tracking_trackingevent e JOIN deliveries_message m ON m.id = e.message_id "
        "WHERE e.delivery_id = %(d)s AND NOT e.is_machine GROUP BY 1",
    ],
    "statistics": [
        "SELECT date_trunc('hour', logged_at), count(*) FILTER (WHERE type = 'open'), count(*) FILTER (WHERE type = 'click') "
        "FROM tracking_trackingevent WHERE delivery_id = %(d)s AND NOT is_machine GROUP BY 1 ORDER BY 1",
    ],
    "urls": [
        "SELECT tracked_url_id, count(*), count(DISTINCT message_id) FROM tracking_trackingevent "
        "WHERE delivery_id = %(d)s AND type = 'click' AND NOT is_machine GROUP BY 1",
        "SELECT a, b, count(*) FROM (SELECT tracked_url_id AS a, lead(tracked_url_id) OVER (PARTITION BY message_id "
        "ORDER BY logged_at) AS b FROM tracking_trackingevent WHERE delivery_id = %(d)s AND type = 'click' AND NOT is_machine) s "
        "WHERE b IS NOT NULL GROUP BY 1, 2",
    ],
    "hot-clicks": [
        "SELECT tracked_url_id, count(*) FROM tracking_trackingevent WHERE delivery_id = %(d)s AND type = 'click' "
        "AND NOT is_machine GROUP BY 1",
    ],
    "opens-breakdown": [
        f"SELECT ua.{facet}, count(*) FROM tracking_trackingevent e JOIN tracking_useragent ua ON ua.id = e.user_agent_id "
        "WHERE e.delivery_id = %(d)s AND e.type = 'open' AND NOT e.is_machine GROUP BY 1"
        for facet in ("os_family", "device_type", "browser_family")
    ],
    "bounces": [
        "SELECT failure_type, failure_reason, lower(split_part(email, '@', 2)), count(*) FROM deliveries_message "
        "WHERE delivery_id = %(d)s AND status IN ('failed', 'ignored') GROUP BY 1, 2, 3",
    ],
    "throughput": [
        "SELECT date_trunc('hour', sent_at), count(*) FILTER (WHERE status = 'sent'), count(*) FILTER (WHERE status = 'failed') "
        "FROM deliveries_message WHERE delivery_id = %(d)s GROUP BY 1",
    ],
}


def timed(function, *args, **kwargs) -> tuple[float, object]:
    started = time.perf_counter()
    result = function(*args, **kwargs)
    return time.perf_counter() - started, result


def write_results(text: str) -> None:
    current = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    section = f"{SECTION_START}\n{text.rstrip()}\n{SECTION_END}\n"
    if SECTION_START in current:
        head, rest = current.split(SECTION_START, 1)
        current = head + section + rest.split(SECTION_END, 1)[1].lstrip("\n")
    else:
        current = current.rstrip("\n") + "\n\n" + section
    RESULTS.write_text(current)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--events", type=int, default=5_000_000)
    parser.add_argument("--new-events", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=21, help="API calls per report (median)")
    parser.add_argument("--keep", action="store_true", help="keep the bench database")
    parser.add_argument("--no-write", action="store_true", help="do not update bench/RESULTS.md")
    args = parser.parse_args()
    base_url = os.environ.get("DATABASE_URL", "")
    if not base_url.startswith("postgres"):
        print("Set DATABASE_URL to a PostgreSQL server (its database is not touched).", file=sys.stderr)
        return 2
    os.environ["DATABASE_URL"] = _create_database(base_url)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "beacon.settings")
    os.environ.setdefault("SECRET_KEY", "bench-only")
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

    from reporting.models import ConsolidationState, DeliveryRollup
    from reporting.selectors import REPORT_NAMES
    from reporting.services import STATE_NAME, delivery_recompute, events_consolidate
    from tests.factories import UserFactory

    call_command("migrate", verbosity=0)
    figures = []
    print(f"generating {args.messages:,} messages and {args.events:,} events with COPY ...", flush=True)
    generate_seconds, data = timed(generate, args.messages, args.events)
    delivery_id = data["delivery_id"]
    print(f"  {generate_seconds:.1f} s", flush=True)
    with connection.cursor() as cursor:
        cursor.execute("SELECT max(id) FROM tracking_trackingevent")
        ConsolidationState.objects.update_or_create(name=STATE_NAME, defaults={"pointer": cursor.fetchone()[0]})

    recompute_seconds, _ = timed(delivery_recompute, delivery_id=delivery_id)
    print(f"full recompute: {recompute_seconds:.1f} s", flush=True)

    rng = random.Random(5)
    with connection.cursor() as cursor:
        _copy_events(cursor, rng, delivery_id, data["first_message_id"], data["last_message_id"], data["content_urls"],
                     data["opt_out_url"], data["mirror_url"], data["agent_ids"], args.new_events, serial=1)
    incremental_seconds, consolidated = timed(events_consolidate)
    print(f"incremental consolidation of {consolidated:,} events: {incremental_seconds:.2f} s", flush=True)

    incremental_rollup = list(DeliveryRollup.objects.filter(delivery_id=delivery_id).order_by("humans_only").values())
    second_recompute_seconds, _ = timed(delivery_recompute, delivery_id=delivery_id)
    recomputed_rollup = list(DeliveryRollup.objects.filter(delivery_id=delivery_id).order_by("humans_only").values())
    strip = lambda rows: [{k: v for k, v in row.items() if k != "id"} for row in rows]  # noqa: E731
    agrees = strip(incremental_rollup) == strip(recomputed_rollup)
    print(f"recompute after the increment: {second_recompute_seconds:.1f} s; equals incremental: {agrees}", flush=True)

    client = Client()
    client.force_login(UserFactory())
    report_rows = []
    for name in REPORT_NAMES:
        url = f"/api/deliveries/{delivery_id}/reports/{name}/"
        assert client.get(url).status_code == 200
        samples = []
        for _ in range(args.requests):
            seconds, response = timed(client.get, url)
            assert response.status_code == 200
            samples.append(seconds)
        scan_samples = []
        for _ in range(3):
            with connection.cursor() as cursor:
                started = time.perf_counter()
                for sql in SCAN_QUERIES[name]:
                    cursor.execute(sql, {"d": delivery_id})
                    cursor.fetchall()
                scan_samples.append(time.perf_counter() - started)
        api_ms, scan_ms = statistics.median(samples) * 1000, statistics.median(scan_samples) * 1000
        report_rows.append((name, api_ms, scan_ms))
        print(f"  {name:16} API median {api_ms:7.1f} ms   scan of raw rows {scan_ms:9.1f} ms", flush=True)

    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM tracking_trackingevent")
        total_events = cursor.fetchone()[0]
    figures.append("## Reports (`bench/reports.py`)")
    figures.append("")
    figures.append(
        f"Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on PostgreSQL {connection.pg_version // 10000}, "
        f"{os.cpu_count()} shared cores: one delivery, {args.messages:,} messages, {args.events:,} events generated "
        f"with COPY ({generate_seconds:.0f} s), then {args.new_events:,} more ({total_events:,} in all)."
    )
    figures.append("")
    figures.append("| measure | Beacon | target |")
    figures.append("|---|---|---|")
    figures.append(f"| full recompute of the delivery ({args.events:,} events) | {recompute_seconds:.1f} s | < 60 s |")
    figures.append(f"| incremental consolidation of {consolidated:,} new events | {incremental_seconds:.2f} s | < 5 s |")
    figures.append(
        f"| recompute after the increment ({total_events:,} events); equals the incremental rollups | "
        f"{second_recompute_seconds:.1f} s; {'yes' if agrees else 'NO'} | |"
    )
    figures.append("")
    figures.append(
        f"Median response time of each report's API endpoint (humans only, {args.requests} calls through the full "
        "Django stack, JSON) beside the same figures computed by scanning raw events/messages in SQL (median of 3):"
    )
    figures.append("")
    figures.append("| report | API, from rollups | scanning raw rows | target |")
    figures.append("|---|---|---|---|")
    for name, api_ms, scan_ms in report_rows:
        figures.append(f"| {name} | {api_ms:.1f} ms | {scan_ms:,.0f} ms | < 100 ms |")
    if not args.no_write:
        write_results("\n".join(figures))
        print(f"written to {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
