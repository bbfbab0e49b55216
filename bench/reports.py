#!/usr/bin/env python3
"""Reports at scale: one delivery with 1,000,000 messages and 5,000,000 events in PostgreSQL.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/beacon .venv/bin/python bench/reports.py

Creates its own database (`beacon_bench_reports`, dropped at the end unless --keep), generates the data
with COPY, then measures: the full recompute of the delivery; incremental consolidation of 100,000 new
events; the median response time of each report's API endpoint (from rollups), each beside the same
report computed by scanning raw events as the peers do. Writes its section of bench/RESULTS.md.

--reuse measures against the database a --keep run left, without generating again: it first puts it back
as generation left it (the events added by the measurements deleted, the event id sequence rewound,
rollups and statistics emptied). --statements N prints the N slowest SQL statements of each measure.
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
DELIVERY_LABEL = "Bench: 1M recipients"
# Generated event ids are "{serial:08x}{n:024x}": serial 0 is the generated data set, 1 the increment.
FIRST_INCREMENT_EVENT_ID = "00000001-0000-0000-0000-000000000000"


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

    from deliveries.models import Delivery, DeliveryStatus, TrackedUrl, TrackingMode
    from tracking.models import UserAgent

    rng = random.Random(4)
    delivery = Delivery.objects.create(
        label=DELIVERY_LABEL, subject="Hello", from_email="news@beacon.example", status=DeliveryStatus.FINISHED,
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
    return _data_of(delivery.pk)


def _data_of(delivery_id: int) -> dict:
    """What the measurements need to know of the generated delivery."""
    from deliveries.models import Message, TrackedUrl
    from tracking.models import UserAgent

    messages = Message.objects.filter(delivery_id=delivery_id).order_by("id")
    urls = list(TrackedUrl.objects.filter(delivery_id=delivery_id).order_by("id"))
    return {
        "delivery_id": delivery_id, "first_message_id": messages.first().pk, "last_message_id": messages.last().pk,
        "content_urls": urls[:LINKS], "opt_out_url": urls[LINKS], "mirror_url": urls[LINKS + 1],
        "agent_ids": list(UserAgent.objects.order_by("id").values_list("id", flat=True)),
    }


def reset_generated(messages: int, events: int) -> dict:
    """The kept database as `generate` left it: events added by earlier measurements deleted (and their
    ids given back to the sequence), rollups, statistics and consolidation state emptied."""
    from django.db import connection

    from deliveries.models import Delivery, Message
    from reporting.models import (
        ConsolidationGap, ConsolidationState, DeliveryReportState, DomainMessageStats, FailureStats, FailureTimeStats,
        ThroughputStats,
    )
    from reporting.consolidation.recompute import EVENT_ROLLUPS

    delivery = Delivery.objects.filter(label=DELIVERY_LABEL).first()
    if delivery is None or Message.objects.filter(delivery=delivery).count() != messages:
        raise SystemExit(f"{BENCH_DB} does not hold the generated delivery with {messages:,} messages: run with --keep first")
    emptied = (*EVENT_ROLLUPS, ConsolidationGap, ConsolidationState, DomainMessageStats, FailureStats, FailureTimeStats,
               ThroughputStats, DeliveryReportState)
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM tracking_trackingevent WHERE event_id >= %s", [FIRST_INCREMENT_EVENT_ID])
        cursor.execute("SELECT count(*) FROM tracking_trackingevent")
        if cursor.fetchone()[0] != events:
            raise SystemExit(f"{BENCH_DB} does not hold {events:,} generated events: run with --keep first")
        cursor.execute(
            "SELECT setval(pg_get_serial_sequence('tracking_trackingevent', 'id'), max(id)) FROM tracking_trackingevent"
        )
        cursor.execute("TRUNCATE " + ", ".join(model._meta.db_table for model in emptied))
    return _data_of(delivery.pk)


def settle(cursor) -> None:
    """Statistics and visibility map as autovacuum leaves them for data this old, and no checkpoint pending
    from writing it, so that each measure starts from the same state whether generated or reused."""
    cursor.execute("VACUUM ANALYZE")
    cursor.execute("CHECKPOINT")


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


class StatementTimes:
    """Prints the slowest SQL statements run within the block (nothing if `count` is 0)."""

    def __init__(self, title: str, count: int) -> None:
        self.title, self.count, self.times = title, count, []

    def __call__(self, execute, sql, params, many, context):
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            self.times.append((time.perf_counter() - started, sql))

    def __enter__(self):
        from django.db import connection

        self.wrapping = connection.execute_wrapper(self)
        self.wrapping.__enter__()
        return self

    def __exit__(self, *exc_info):
        self.wrapping.__exit__(*exc_info)
        if self.count:
            total = sum(seconds for seconds, _ in self.times)
            print(f"  {self.title}: {len(self.times)} statements, {total:.2f} s; slowest:")
            for seconds, sql in sorted(self.times, key=lambda item: -item[0])[:self.count]:
                print(f"    {seconds:7.3f} s  {' '.join(sql.split())[:200]}")


def measure(title: str, statements: int, function, *args, **kwargs) -> tuple[float, float, object]:
    """(1-minute load average before, seconds, result) of one measure."""
    load = os.getloadavg()[0]
    with StatementTimes(title, statements):
        seconds, result = timed(function, *args, **kwargs)
    return load, seconds, result


def write_results(text: str, *, start: str = SECTION_START, end: str = SECTION_END) -> None:
    """`text` as the section of RESULTS.md between the markers `start` and `end` (this benchmark's by default)."""
    current = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    section = f"{start}\n{text.rstrip()}\n{end}\n"
    if start in current:
        head, rest = current.split(start, 1)
        following = rest.split(end, 1)[1].lstrip("\n")
        current = head + section + ("\n" + following if following else "")
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
    parser.add_argument("--reuse", action="store_true", help="measure against the database a --keep run left (kept)")
    parser.add_argument("--statements", type=int, default=0, metavar="N", help="print the N slowest statements of each measure")
    parser.add_argument("--no-write", action="store_true", help="do not update bench/RESULTS.md")
    args = parser.parse_args()
    base_url = os.environ.get("DATABASE_URL", "")
    if not base_url.startswith("postgres"):
        print("Set DATABASE_URL to a PostgreSQL server (its database is not touched).", file=sys.stderr)
        return 2
    if args.reuse:
        args.keep = True
        os.environ["DATABASE_URL"] = base_url.rsplit("/", 1)[0] + "/" + BENCH_DB
    else:
        os.environ["DATABASE_URL"] = _create_database(base_url)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "beacon.settings")
    os.environ.setdefault("SECRET_KEY", "bench-only-secret-key-not-for-production")
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

    from reporting.models import ConsolidationGap, ConsolidationState, DeliveryRollup
    from reporting.reports import REPORT_NAMES
    from reporting.consolidation.pointer import STATE_NAME, events_consolidate
    from reporting.consolidation.recompute import delivery_recompute
    from tests.factories import UserFactory

    call_command("migrate", verbosity=0)
    figures = []
    if args.reuse:
        print(f"reusing {BENCH_DB}: back to the generated {args.messages:,} messages and {args.events:,} events", flush=True)
        generate_seconds, data = None, reset_generated(args.messages, args.events)
    else:
        print(f"generating {args.messages:,} messages and {args.events:,} events with COPY ...", flush=True)
        generate_seconds, data = timed(generate, args.messages, args.events)
        print(f"  {generate_seconds:.1f} s", flush=True)
    delivery_id = data["delivery_id"]
    with connection.cursor() as cursor:
        settle(cursor)
        cursor.execute("SELECT max(id) FROM tracking_trackingevent")
        ConsolidationState.objects.update_or_create(name=STATE_NAME, defaults={"pointer": cursor.fetchone()[0]})

    recompute_load, recompute_seconds, _ = measure(
        "full recompute", args.statements, delivery_recompute, delivery_id=delivery_id
    )
    print(f"full recompute: {recompute_seconds:.1f} s (load average before: {recompute_load:.2f})", flush=True)

    rng = random.Random(5)
    with connection.cursor() as cursor:
        # The rollups settle; the new events are consolidated fresh from ingestion, as every minute.
        settle(cursor)
        _copy_events(cursor, rng, delivery_id, data["first_message_id"], data["last_message_id"], data["content_urls"],
                     data["opt_out_url"], data["mirror_url"], data["agent_ids"], args.new_events, serial=1)
        pointer = ConsolidationState.objects.get(name=STATE_NAME).pointer
        cursor.execute("SELECT count(*), min(id) FROM tracking_trackingevent WHERE id > %s", [pointer])
        unconsolidated, first_new_id = cursor.fetchone()
    # Exactly the new events are waiting, right after the pointer, and nothing else.
    assert unconsolidated == args.new_events and first_new_id == pointer + 1, (unconsolidated, first_new_id, pointer)
    assert not ConsolidationGap.objects.exists()
    incremental_load, incremental_seconds, consolidated = measure("incremental consolidation", args.statements, events_consolidate)
    assert consolidated == args.new_events, consolidated
    print(f"incremental consolidation of {consolidated:,} events: {incremental_seconds:.2f} s "
          f"(load average before: {incremental_load:.2f})", flush=True)

    incremental_rollup = list(DeliveryRollup.objects.filter(delivery_id=delivery_id).order_by("humans_only").values())
    with connection.cursor() as cursor:
        settle(cursor)
    second_load, second_recompute_seconds, _ = measure(
        "recompute after the increment", args.statements, delivery_recompute, delivery_id=delivery_id
    )
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
    generated = f"generated with COPY ({generate_seconds:.0f} s)" if generate_seconds else "generated by an earlier run"
    figures.append(
        f"Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on PostgreSQL {connection.pg_version // 10000}, "
        f"{os.cpu_count()} shared cores (1-minute load average before each measure: {recompute_load:.2f}, "
        f"{incremental_load:.2f}, {second_load:.2f}): one delivery, {args.messages:,} messages, {args.events:,} events "
        f"{generated}, then {args.new_events:,} more ({total_events:,} in all). Before each measure the database is "
        "vacuumed, analyzed and checkpointed (as autovacuum and time leave data this old), except the 100,000 "
        "new events, consolidated as ingestion left them."
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
