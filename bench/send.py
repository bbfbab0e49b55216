#!/usr/bin/env python3
"""Sending throughput: personalized, link-rewritten messages per second to a local SMTP server.

    .venv/bin/python bench/send.py [--messages 5000] [--no-write]

Runs on PostgreSQL if DATABASE_URL is set (in a throw-away database `bench_send`), else on a SQLite
file. A local aiosmtpd server in its own process accepts and discards every message. The delivery has
10 tracked links (4 personalized) and an open pixel; it is analyzed, then sent through the real Celery
task code path, in-process (eager), over real SMTP. The figure goes to bench/RESULTS.md.
"""
import argparse
import multiprocessing
import os
import platform
import socket
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "bench" / "RESULTS.md"
SECTION_START = "<!-- bench/send.py: start -->"
SECTION_END = "<!-- bench/send.py: end -->"

LINKS = "\n".join(
    f'<p><a href="https://shop.example.com/item/{n}?ref=news">Item {n}</a></p>' for n in range(6)
) + "\n".join(
    f'<p><a href="https://shop.example.com/u/{n}?id={{{{ profile.id }}}}&amp;city={{{{ profile.attributes.city }}}}">For you {n}</a></p>'
    for n in range(4)
)
HTML = f"""<html><head><title>News</title></head><body>
<h1>Hello {{{{ profile.first_name }}}} {{{{ profile.last_name }}}}</h1>
<p>{"Some newsletter copy. " * 40}</p>
{LINKS}
<p><a href="{{{{ mirror_url }}}}">View online</a> · <a href="{{{{ unsubscribe_url }}}}">Unsubscribe</a></p>
</body></html>"""
TEXT = "Hello {{ profile.first_name }},\nhttps://shop.example.com/item/0?ref=news\nUnsubscribe: {{ unsubscribe_url }}\n"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _smtp_server(port: int, ready) -> None:
    from aiosmtpd.controller import Controller

    class Discard:
        async def handle_DATA(self, server, session, envelope):
            return "250 OK"

    controller = Controller(Discard(), hostname="127.0.0.1", port=port)
    controller.start()
    ready.set()
    while True:
        time.sleep(3600)


def _cpu_seconds(pid: int) -> float:
    """CPU time used so far by a process (Linux /proc); 0 where unavailable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _write_results(lines: list[str]) -> None:
    section = "\n".join([SECTION_START, *lines, SECTION_END])
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    if SECTION_START in text and SECTION_END in text:
        before, rest = text.split(SECTION_START, 1)
        after = rest.split(SECTION_END, 1)[1]
        text = before + section + after
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    RESULTS.write_text(text)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3, help="deliveries sent one after the other")
    parser.add_argument("--no-write", action="store_true", help="print only, leave RESULTS.md alone")
    args = parser.parse_args()

    port = _free_port()
    ready = multiprocessing.Event()
    server = multiprocessing.Process(target=_smtp_server, args=(port, ready), daemon=True)
    server.start()
    ready.wait(10)

    sqlite_file = None
    if not os.environ.get("DATABASE_URL"):
        sqlite_file = tempfile.NamedTemporaryFile(suffix=".sqlite3", delete=False).name
    os.environ["BEACON_TEST_DB_NAME"] = sqlite_file or "bench_send"
    # A throw-away database and links nobody follows: a fixed key is fine here.
    os.environ.setdefault("SECRET_KEY", "bench-send-secret-key-not-for-production")
    os.environ.update(
        DJANGO_SETTINGS_MODULE="beacon.settings",
        EMAIL_HOST="127.0.0.1",
        EMAIL_PORT=str(port),
        EMAIL_BACKEND="django.core.mail.backends.smtp.EmailBackend",
        CELERY_TASK_ALWAYS_EAGER="true",
        LOG_LEVEL="WARNING",
    )
    import django

    django.setup()
    from django.db import connection

    from beacon.celery import app as celery_app

    celery_app.conf.task_always_eager = True
    connection.creation.create_test_db(verbosity=0, autoclobber=True, keepdb=False)
    try:
        figures = _run(args.messages, args.rounds, server.pid)
    finally:
        connection.creation.destroy_test_db(connection.settings_dict["NAME"], verbosity=0)
        server.terminate()
        if sqlite_file:
            Path(sqlite_file).unlink(missing_ok=True)

    engine = connection.vendor
    runs = sorted(figures["runs"], key=lambda run: run["per_second"])
    median, best = runs[len(runs) // 2], runs[-1]
    loads = ", ".join(f"{run['load_before']:.1f}" for run in figures["runs"])
    all_rounds = ", ".join(f"{run['per_second']:.0f}" for run in figures["runs"])
    lines = [
        "## Sending (bench/send.py)",
        "",
        f"- Run {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC on {engine}, {os.cpu_count()} cores shared with other "
        f"work (1-minute load average before each round: {loads}), Python {platform.python_version()}.",
        f"- {figures['messages']} messages per round, {len(runs)} rounds; 10 tracked links each (4 personalized) + "
        "opt-out + mirror links + open pixel, multipart text/HTML, real SMTP to a local aiosmtpd server "
        "(separate process, discards); batches of "
        f"{figures['batch_size']} over one SMTP connection each, through the Celery task code path (eager).",
        f"- Target analysis: {median['analyze_seconds']:.2f} s ({figures['messages'] / median['analyze_seconds']:.0f} recipients/s).",
        f"- **Send: median {median['per_second']:.0f} messages/s, best {best['per_second']:.0f} messages/s** "
        f"(all rounds: {all_rounds}; target ≥ 500/s).",
        f"- CPU per message (median round): sender {median['cpu_ms_per_message']:.2f} ms, SMTP server "
        f"{median['server_cpu_ms_per_message']:.2f} ms.",
    ]
    print("\n".join(lines))
    if not args.no_write:
        _write_results(lines)
    return 0


def _run(count: int, rounds: int, server_pid: int) -> dict:
    from django.conf import settings

    from deliveries import services
    from deliveries.models import Delivery, DeliveryStatus, MessageStatus
    from profiles.models import List, ListMembership, Profile

    Profile.objects.bulk_create(
        [
            Profile(email=f"reader{n}@bench.example.com", first_name=f"Reader{n}", last_name="Bench",
                    attributes={"city": ["Paris", "São Paulo", "New York"][n % 3]})
            for n in range(count)
        ],
        batch_size=2000,
    )
    audience = List.objects.create(name="Bench")
    ListMembership.objects.bulk_create(
        [ListMembership(list=audience, profile_id=pk) for pk in Profile.objects.values_list("pk", flat=True)],
        batch_size=2000,
    )
    runs = []
    for round_number in range(rounds):
        delivery = services.delivery_create(
            lists=[audience], label=f"Bench {round_number}", subject="News for {{ profile.first_name }}",
            from_email="news@bench.example.com", html=HTML, text=TEXT,
        )
        started = time.perf_counter()
        services.delivery_analyze(delivery_id=delivery.pk)
        analyze_seconds = time.perf_counter() - started

        load_before = os.getloadavg()[0]
        started, cpu_started, server_started = time.perf_counter(), time.process_time(), _cpu_seconds(server_pid)
        services.delivery_send(delivery_id=delivery.pk)
        send_seconds = time.perf_counter() - started
        cpu_seconds = time.process_time() - cpu_started
        server_cpu_seconds = _cpu_seconds(server_pid) - server_started

        delivery = Delivery.objects.get(pk=delivery.pk)
        assert delivery.status == DeliveryStatus.FINISHED, delivery.status
        assert delivery.success == count, (delivery.success, delivery.errors)
        assert not delivery.messages.exclude(status=MessageStatus.SENT).exists()
        runs.append({
            "load_before": load_before,
            "analyze_seconds": analyze_seconds,
            "send_seconds": send_seconds,
            "per_second": count / send_seconds,
            "cpu_ms_per_message": cpu_seconds * 1000 / count,
            "server_cpu_ms_per_message": server_cpu_seconds * 1000 / count,
        })
        print(f"round {round_number + 1}: {count / send_seconds:.0f} messages/s (load {load_before:.2f})", flush=True)
    return {"messages": count, "runs": runs, "batch_size": settings.BEACON_SEND_BATCH_SIZE}


if __name__ == "__main__":
    sys.exit(main())
