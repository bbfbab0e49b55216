"""Click redirect benchmark: `/r/<token>` against a bare Django view answering the same 302, under gunicorn.

    .venv/bin/python bench/redirect.py [--rounds 8] [--duration 5] [--connections 16] [--workers 2xCPUs+1]
        [--no-journal [--unix-socket]] [--appendfsync always|everysec] [--nginx]

Starts a private redis-server (append-only file; `appendfsync everysec` by default: a Redis crash
loses nothing, a power cut up to about a second; `--appendfsync always` for no loss even then, at a
large cost per click) and gunicorn on loopback with REDIS_URL (and BEACON_EVENT_REDIS_URL) set, so every
click goes to the event stream: through the worker's journal, shipped in batches by its thread (the
default), or with `--no-journal` as one synchronous XADD. The workers' shippers run in gunicorn and are
measured with it; they ship what is left as they exit, and the stream is counted after that. No
consumer runs during the measurement (in production it runs elsewhere). Uses the
PostgreSQL database `beacon_bench_tracking` (created if missing). Both views go through the same
middleware. The baseline is `/bare/`, which answers the very 302 a first click gets (same headers,
same two cookies, made by the same function) with no token check, lookup or event; `/bare-location/`,
a 302 with a Location header only, is measured for reference.

With `--nginx`, the README's production set-up is measured beside gunicorn alone: deploy/nginx.conf run
by deploy/local_nginx.py (plain HTTP on loopback, so the figures are the proxy hop's, not TLS's) in front
of the same gunicorn, the click and the bare 302 through it, in the same rotating rounds. Needs nginx
(Debian: apt-get install -y nginx).

Throughput on a shared virtual machine drifts by 20% or more within seconds, so the views are measured
in many short rounds, one after the other, in an order that rotates each round; a ratio is taken within
each round, and the verdict uses the median of those ratios. Needs `wrk` (Debian: apt-get install -y
wrk). Writes its section of bench/RESULTS.md (one per Redis transport).
"""
import argparse
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from deploy import local_nginx  # noqa: E402
RESULTS = ROOT / "bench" / "RESULTS.md"
DATABASE_URL = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/beacon_bench_tracking")
BARE, CLICK, LOCATION = "bare 302 (same response)", "/r/ click", "bare 302 (Location only)"
VIEWS = ((BARE, "bare"), (CLICK, "r"), (LOCATION, "bare-location"))
NGINX_BARE, NGINX_CLICK = "bare 302 (same response) through nginx", "/r/ click through nginx"
NGINX_VIEWS = ((NGINX_BARE, "bare"), (NGINX_CLICK, "r"))
USER_AGENT = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on port {port}")


def ensure_database() -> None:
    import psycopg2

    name = DATABASE_URL.rsplit("/", 1)[1]
    admin = psycopg2.connect(DATABASE_URL.rsplit("/", 1)[0] + "/postgres")
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name])
        if not cursor.fetchone():
            cursor.execute(f'CREATE DATABASE "{name}"')
    admin.close()


def prepare_click_token() -> str:
    """Migrates the bench database and returns a click token of a sent message."""
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)
    from django.conf import settings

    from deliveries.models import Delivery, DeliveryStatus, Message, MessageStatus, TrackedUrl
    from deliveries.tokens import Purpose, make_token
    from profiles.models import Profile

    profile, _ = Profile.objects.get_or_create(email="bench@example.org", defaults={"first_name": "Bench"})
    delivery, _ = Delivery.objects.get_or_create(
        label="Redirect benchmark",
        defaults={"subject": "Bench", "from_email": "bench@example.org", "status": DeliveryStatus.FINISHED},
    )
    message, _ = Message.objects.get_or_create(
        delivery=delivery,
        profile=profile,
        defaults={"email": profile.email, "status": MessageStatus.SENT, "sent_at": datetime.now(UTC) - timedelta(days=1)},
    )
    url, _ = TrackedUrl.objects.get_or_create(delivery=delivery, url=settings.BENCH_TARGET_URL, defaults={"label": "Sale"})
    return make_token(Purpose.CLICK, message.id, url.id)


def parse_duration_ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if match is None:
        raise ValueError(f"unexpected wrk duration {text!r}")
    value, unit = match.groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def run_wrk(url: str, duration: int, connections: int) -> dict:
    output = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{duration}s", "--latency", "-H", f"User-Agent: {USER_AGENT}", url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    if "Latency Distribution" not in output or re.search(r"^\s*50%\s+\d", output, re.M) is None:
        raise RuntimeError(f"wrk failed:\n{output}")
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    socket_errors = re.search(r"Socket errors: (.*)", output)
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1)),
        "requests": int(re.search(r"(\d+) requests in", output).group(1)),
        "p50": parse_duration_ms(re.search(r"^\s*50%\s+(\S+)", output, re.M).group(1)),
        "p99": parse_duration_ms(re.search(r"^\s*99%\s+(\S+)", output, re.M).group(1)),
        "bad_status": int(errors.group(1)) if errors else 0,
        "socket_errors": socket_errors.group(1).strip() if socket_errors else "",
    }


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of these processes and their children, from /proc."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        for child in [pid, *children(pid)]:
            try:
                fields = Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()
            except FileNotFoundError:
                continue
            total += int(fields[11]) + int(fields[12])
    return total / ticks


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(child) for child in (task / "children").read_text().split()]
        except FileNotFoundError:
            continue
    return found


def measured(url: str, duration: int, connections: int, web_pid: int, redis_pid: int, nginx_pids: list[int]) -> dict:
    web_before, redis_before, nginx_before = cpu_seconds([web_pid]), cpu_seconds([redis_pid]), cpu_seconds(nginx_pids)
    result = run_wrk(url, duration, connections)
    requests = max(result["requests"], 1)
    result["web_cpu_ms"] = (cpu_seconds([web_pid]) - web_before) * 1000 / requests
    result["redis_cpu_ms"] = (cpu_seconds([redis_pid]) - redis_before) * 1000 / requests
    result["nginx_cpu_ms"] = (cpu_seconds(nginx_pids) - nginx_before) * 1000 / requests
    result["cpu_ms"] = result["web_cpu_ms"] + result["redis_cpu_ms"] + result["nginx_cpu_ms"]
    result["load"] = os.getloadavg()[0]
    return result


def median(rounds: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in rounds)


def nginx_trade_off(rounds: dict, medians: dict, connections: int) -> str:
    """What nginx in front costs a click, compared within each round with the click sent to gunicorn."""
    throughput = [n["rps"] / d["rps"] for n, d in zip(rounds[NGINX_CLICK], rounds[CLICK])]
    p50 = [n["p50"] - d["p50"] for n, d in zip(rounds[NGINX_CLICK], rounds[CLICK])]
    p99 = [n["p99"] - d["p99"] for n, d in zip(rounds[NGINX_CLICK], rounds[CLICK])]
    bare = [n["rps"] / d["rps"] for n, d in zip(rounds[NGINX_BARE], rounds[BARE])]
    direct, proxied = medians[CLICK], medians[NGINX_CLICK]
    return f"""
**nginx in front (deploy/nginx.conf, plain HTTP on loopback) against gunicorn alone**, median of the rounds'
ratios: a click's throughput through nginx is {statistics.median(throughput):.0%} of the click sent straight to
gunicorn (rounds: {", ".join(f"{ratio:.0%}" for ratio in throughput)}); the bare 302's, {statistics.median(bare):.0%}.
A click's latency through nginx minus alone: p50 {statistics.median(p50):+.2f} ms, p99 {statistics.median(p99):+.2f} ms.
CPU per click (gunicorn + redis + nginx): {direct['cpu_ms']:.3f} ms alone, {proxied['cpu_ms']:.3f} ms through nginx, of which
nginx {proxied['nginx_cpu_ms']:.3f} ms and gunicorn {proxied['web_cpu_ms'] - direct['web_cpu_ms']:+.3f} ms. gunicorn's sync
workers close every connection after one answer: sent straight to them, wrk opens a connection per
request; to nginx it keeps its {connections} alive, and nginx opens one to gunicorn per request (wrk's own CPU is
not counted).
"""


def write_section(name: str, body: str) -> None:
    start, end = f"<!-- {name}: start -->", f"<!-- {name}: end -->"
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    section = f"{start}\n{body.rstrip()}\n{end}"
    if start in text:
        text = re.sub(re.escape(start) + ".*?" + re.escape(end), lambda _: section, text, flags=re.S)
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    RESULTS.write_text(text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2 * (os.cpu_count() or 1) + 1, help="gunicorn's advice: 2 x CPUs + 1")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--unix-socket", action="store_true", help="hand events to Redis over its Unix socket (BEACON_EVENT_REDIS_URL), not TCP")
    parser.add_argument("--appendfsync", choices=["always", "everysec"], default="everysec")
    parser.add_argument("--no-journal", action="store_true", help="one synchronous XADD per click (BEACON_EVENT_JOURNAL=false)")
    parser.add_argument("--nginx", action="store_true", help="also through deploy/nginx.conf in front of the same gunicorn")
    args = parser.parse_args()
    if args.unix_socket and not args.no_journal:
        parser.error("--unix-socket measures the synchronous XADD: use it with --no-journal")
    if shutil.which("wrk") is None:
        sys.exit("wrk is missing: apt-get install -y wrk")
    if args.nginx and local_nginx.nginx_binary() is None:
        sys.exit(f"nginx is missing: {local_nginx.INSTALL_HINT}")

    redis_port, web_port = free_port(), free_port()
    redis_dir = tempfile.mkdtemp(prefix="bench-redis-")
    socket_path = os.path.join(redis_dir, "redis.sock")
    redis_url = f"redis://127.0.0.1:{redis_port}/0"
    # As README advises where Redis is local: the event stream over the socket, the rest over TCP.
    event_redis_url = f"unix://{socket_path}?db=0" if args.unix_socket else redis_url
    os.environ.update(
        DJANGO_SETTINGS_MODULE="bench.tracking_settings",
        DATABASE_URL=DATABASE_URL,
        REDIS_URL=redis_url,
        BEACON_EVENT_REDIS_URL=event_redis_url,
        SECRET_KEY="bench-only-secret-key-not-for-production",
        ALLOWED_HOSTS="127.0.0.1",
        DB_CONN_MAX_AGE="600",
        BEACON_SPOOL_DIR=os.path.join(redis_dir, "spool"),
        BEACON_EVENT_JOURNAL="false" if args.no_journal else "true",
    )
    ensure_database()
    token = prepare_click_token()
    from django.conf import settings

    ship_ms = settings.BEACON_EVENT_JOURNAL_SHIP_MS
    load_before = os.getloadavg()[0]
    redis_server = subprocess.Popen(
        ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--dir", redis_dir, "--save", "",
         "--unixsocket", socket_path, "--appendonly", "yes", "--appendfsync", args.appendfsync],
        stdout=subprocess.DEVNULL,
    )
    gunicorn = nginx = None
    try:
        wait_for_port(redis_port)
        gunicorn = subprocess.Popen(
            [str(ROOT / ".venv" / "bin" / "gunicorn"), "beacon.wsgi", "-w", str(args.workers),
             "-b", f"127.0.0.1:{web_port}", "--log-level", "warning", "--no-control-socket"],
            cwd=ROOT,
        )
        wait_for_port(web_port)
        base = f"http://127.0.0.1:{web_port}"
        urls = {label: f"{base}/{prefix}/{token}" for label, prefix in VIEWS}
        if args.nginx:
            nginx_port = free_port()
            nginx_dir = Path(redis_dir) / "nginx"
            nginx_dir.mkdir()
            site = local_nginx.site_render(
                upstream=f"127.0.0.1:{web_port}", http_port=free_port(), https_port=nginx_port,
                static_root=Path(redis_dir), certificate=None,
            )
            nginx = local_nginx.LocalNginx(nginx_dir, site, [nginx_port])
            nginx.start()
            urls.update({label: f"http://127.0.0.1:{nginx_port}/{prefix}/{token}" for label, prefix in NGINX_VIEWS})
        import redis

        stream = redis.Redis.from_url(redis_url)
        # Warm up every view (imports, caches, connections) until all answer in one pass (on a loaded
        # machine gunicorn's workers take many seconds to boot), then empty the stream once the warm-up's
        # clicks are shipped.
        deadline = time.monotonic() + 300
        while not all([run_wrk(url, 2, args.connections)["requests"] > 0 for url in urls.values()]):
            if time.monotonic() > deadline:
                raise RuntimeError("the views did not answer within 5 minutes")
        time.sleep(1)
        stream.delete("beacon:events")
        rounds = {label: [] for label in urls}
        labels = list(urls)
        for number in range(args.rounds):
            shift = number % len(labels)
            for label in labels[shift:] + labels[:shift]:
                rounds[label].append(
                    measured(urls[label], args.duration, args.connections, gunicorn.pid, redis_server.pid,
                             nginx.pids() if nginx else [])
                )
        # The workers ship what their journals hold as they exit.
        gunicorn.terminate()
        gunicorn.wait(timeout=30)
        stream_entries = stream.xlen("beacon:events")
        unshipped = sum(1 for _ in Path(os.environ["BEACON_SPOOL_DIR"]).glob("*.journal"))
    finally:
        if nginx is not None:
            nginx.stop()
        if gunicorn is not None and gunicorn.poll() is None:
            gunicorn.terminate()
            gunicorn.wait(timeout=30)
        redis_server.terminate()
        redis_server.wait(timeout=30)
        shutil.rmtree(redis_dir, ignore_errors=True)

    keys = ("rps", "p50", "p99", "cpu_ms", "web_cpu_ms", "redis_cpu_ms", "nginx_cpu_ms")
    medians = {label: {key: median(view_rounds, key) for key in keys} for label, view_rounds in rounds.items()}
    bare, click = medians[BARE], medians[CLICK]
    click_labels = [CLICK, NGINX_CLICK] if args.nginx else [CLICK]
    clicks_answered = sum(r["requests"] - r["bad_status"] for label in click_labels for r in rounds[label])
    # Requests in flight when wrk stopped may be recorded without their answers being counted.
    all_stored = stream_entries >= clicks_answered and unshipped == 0
    # Within a round the views ran seconds apart, under the same conditions: compare them there.
    throughput_ratios = [c["rps"] / b["rps"] for c, b in zip(rounds[CLICK], rounds[BARE])]
    p99_ratios = [c["p99"] / b["p99"] for c, b in zip(rounds[CLICK], rounds[BARE])]
    location_ratios = [c["rps"] / b["rps"] for c, b in zip(rounds[CLICK], rounds[LOCATION])]
    throughput_ratio, p99_ratio = statistics.median(throughput_ratios), statistics.median(p99_ratios)
    pooled_ratio = sum(r["requests"] for r in rounds[CLICK]) / sum(r["requests"] for r in rounds[BARE])
    verdict = "met" if throughput_ratio >= 0.8 and p99_ratio < 2 and all_stored else "NOT met"
    transport = "a Unix socket" if args.unix_socket else "TCP on loopback"
    nginx_cpu = (lambda m: f" + {m['nginx_cpu_ms']:.3f}") if args.nginx else (lambda m: "")
    rows = "\n".join(
        f"| {label} | {m['rps']:.0f} ({min(r['rps'] for r in rounds[label]):.0f}-{max(r['rps'] for r in rounds[label]):.0f}) "
        f"| {m['p50']:.2f} | {m['p99']:.2f} | {m['web_cpu_ms']:.3f} + {m['redis_cpu_ms']:.3f}{nginx_cpu(m)} | {sum(r['bad_status'] for r in rounds[label])} |"
        for label, m in medians.items()
    )
    loads = [r["load"] for view_rounds in rounds.values() for r in view_rounds]
    per_round = ", ".join(f"{ratio:.0%}" for ratio in throughput_ratios)
    options = (
        (" --no-journal" if args.no_journal else "") + (" --unix-socket" if args.unix_socket else "")
        + (" --nginx" if args.nginx else "")
    )
    hand_off = (
        "one synchronous XADD per click (`BEACON_EVENT_JOURNAL=false`)" if args.no_journal
        else f"each click written to the worker's journal, shipped every {ship_ms} ms by its thread in one pipelined XADD round trip"
    )
    body = f"""## Click redirect (bench/redirect.py{options}), Redis over {transport}

Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {platform.node()} ({os.cpu_count()} CPUs, shared with wrk and Redis;
load average before the run {load_before:.2f}, after each view {min(loads):.2f}-{max(loads):.2f}): gunicorn {args.workers} sync workers, wrk 2 threads /
{args.connections} connections, {args.rounds} rounds of {args.duration} s per view in rotating order, Redis over
{transport} with `appendonly yes`, `appendfsync {args.appendfsync}`;
{hand_off}; PostgreSQL for the (cached) lookups.

| view (median of {args.rounds} rounds) | req/s (lowest-highest) | p50 ms | p99 ms | CPU ms/request: gunicorn + redis{" + nginx" if args.nginx else ""} | non-3xx |
|---|---|---|---|---|---|
{rows}

`{BARE}` answers the same 302 as a first click (Location, Cache-Control, Referrer-Policy, the browser-id and
web-tracking cookies, made by the same function) without verifying a token, looking anything up or handing
an event on; `{LOCATION}` is a 302 with a Location header only, for reference. CPU is user + system time per
answered request, of the gunicorn workers and of redis-server{" (and of nginx's processes)" if args.nginx else ""}.

Against the same 302, median of the rounds' ratios: throughput {throughput_ratio:.0%} (target >= 80%), p99
{p99_ratio:.2f}x (target < 2x): **{verdict}**. Throughput ratio of each round: {per_round}; of all requests
together: {pooled_ratio:.0%}. Against the Location-only 302: throughput {statistics.median(location_ratios):.0%}.
{"Every answered click is in the stream" if all_stored else "**Answered clicks are missing from the stream**"}: {clicks_answered} clicks answered, {stream_entries} stream
entries, {unshipped} journal segments left unshipped (more entries than answers: the requests in flight when
wrk stopped were recorded, their answers not counted).

A click costs {click['web_cpu_ms'] - bare['web_cpu_ms']:.3f} ms more gunicorn CPU than the same 302 answered bare, plus
{click['redis_cpu_ms']:.3f} ms in redis-server: the token check, the cached lookups, the machine checks, the event's
JSON and its hand-off ({"the synchronous XADD round trip" if args.no_journal else "the journal write, and the batched shipping"}).
gunicorn, wrk and Redis{" (and nginx)" if args.nginx else ""} share {os.cpu_count()} CPUs, so throughput follows CPU per request.
{nginx_trade_off(rounds, medians, args.connections) if args.nginx else ""}"""
    write_section("bench/redirect.py" + options, body)
    print(body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
