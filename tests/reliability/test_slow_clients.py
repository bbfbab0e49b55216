"""Slow clients: connections that never finish their request must not stop clicks being answered.

gunicorn's sync workers each read one connection's request themselves, so a few idle connections hold
them all. The README's production set-up puts nginx in front (deploy/nginx.conf), which holds such
connections itself and hands gunicorn complete requests only. These tests run that very file
(deploy/local_nginx.py) in front of gunicorn with two sync workers on the test database, with the
production settings the README gives. Required in CI (.ci/run installs nginx), never skipped there.
"""
import http.client
import os
import re
import socket
import ssl
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

import pytest
from django.conf import settings

from deliveries.tokens import Purpose, make_token
from deploy import local_nginx
from tests.factories import MessageFactory, TrackedUrlFactory
from tests.reliability.conftest import free_port
from tracking.models import EventType, TrackingEvent

pytestmark = pytest.mark.django_db(transaction=True)

IDLE_CONNECTIONS = 50
USER_AGENT = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"
# The certificate is the test's own, self-signed.
UNVERIFIED = ssl._create_unverified_context()


@dataclass
class Click:
    path: str
    target: str


@dataclass
class Production:
    gunicorn_port: int
    http_port: int
    https_port: int


@pytest.fixture
def click() -> Click:
    url = TrackedUrlFactory()
    message = MessageFactory(delivery=url.delivery)
    return Click(f"/r/{make_token(Purpose.CLICK, message.id, url.id)}", url.url)


@pytest.fixture
def production(click, beacon_processes, tmp_path) -> Production:
    """gunicorn (2 sync workers) on loopback behind nginx with deploy/nginx.conf, over TLS.

    Depends on `click` so the message exists before gunicorn opens the test database (on SQLite, a copy)."""
    if local_nginx.nginx_binary() is None:
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail(f"nginx is required in CI and is not installed ({local_nginx.INSTALL_HINT})")
        pytest.skip(f"nginx is not installed ({local_nginx.INSTALL_HINT})")
    ports = Production(free_port(), free_port(), free_port())
    beacon_processes.start_gunicorn(
        ports.gunicorn_port, DEBUG="false", ALLOWED_HOSTS="127.0.0.1", BEACON_HTTPS="true", BEACON_BEHIND_PROXY="true",
        BEACON_TRUST_X_FORWARDED_FOR="true", BEACON_EVENT_REDIS_URL="",
    )
    static_root = tmp_path / "staticfiles"
    static_root.mkdir()
    (static_root / "probe.txt").write_text("served by nginx")
    directory = tmp_path / "nginx"
    directory.mkdir()
    site = local_nginx.site_render(
        upstream=f"127.0.0.1:{ports.gunicorn_port}", http_port=ports.http_port, https_port=ports.https_port,
        static_root=static_root, certificate=local_nginx.certificate_make(directory),
    )
    nginx = local_nginx.LocalNginx(directory, site, [ports.http_port, ports.https_port])
    nginx.start()
    yield ports
    nginx.stop()


def connection(port: int, *, tls: bool) -> http.client.HTTPConnection:
    # One second for each step (connecting, the TLS handshake, every read): a held server never answers.
    if tls:
        return http.client.HTTPSConnection("127.0.0.1", port, timeout=1.0, context=UNVERIFIED)
    return http.client.HTTPConnection("127.0.0.1", port, timeout=1.0)


@dataclass
class Answer:
    status: int
    location: str | None
    body: bytes


def get(port: int, path: str, *, tls: bool, headers: dict | None = None) -> Answer:
    client = connection(port, tls=tls)
    try:
        client.request("GET", path, headers={"User-Agent": USER_AGENT, **(headers or {})})
        response = client.getresponse()
        return Answer(response.status, response.getheader("Location"), response.read())
    finally:
        client.close()


# What a slow client sends before it goes quiet: nothing at all, half its headers, or half its body. The
# body is that of a sign-in that passes CSRF's first checks, so Django reads it (looking for the token).
UNFINISHED_REQUESTS = (
    b"",
    b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: slow",
    b"POST /login/ HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: https://127.0.0.1\r\nCookie: csrftoken=" + b"a" * 32
    + b"\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000\r\n\r\ncsrfmiddlewaretoken=a",
)


@contextmanager
def idle_connections(port: int, *, tls: bool):
    """IDLE_CONNECTIONS connections, each sending the start of a request and then nothing, held open until
    the block ends."""
    with ExitStack() as stack:
        held = []
        for number in range(IDLE_CONNECTIONS):
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            stack.callback(sock.close)
            unfinished = UNFINISHED_REQUESTS[number % len(UNFINISHED_REQUESTS)]
            if tls and unfinished:
                sock = UNVERIFIED.wrap_socket(sock, server_hostname="127.0.0.1")
                stack.callback(sock.close)
            sock.sendall(unfinished)
            held.append(sock)
        yield held


def still_open(sock: socket.socket) -> bool:
    """Nothing was answered on the connection, and it was not closed."""
    sock.setblocking(False)
    try:
        return sock.recv(1) != b""  # data: an answer to an unfinished request
    except (BlockingIOError, ssl.SSLWantReadError):
        return True
    except OSError:
        return False
    finally:
        sock.setblocking(True)


def stored_clicks(beacon_processes) -> list[TrackingEvent]:
    beacon_processes.sync()
    return list(TrackingEvent.objects.filter(type=EventType.CLICK))


def test_clicks_are_answered_through_nginx_while_idle_connections_hang(production, click, beacon_processes):
    with idle_connections(production.https_port, tls=True) as held:
        # The client's own X-Forwarded-* claims are replaced by nginx's: https, and the peer's address.
        answers = [
            get(production.https_port, click.path, tls=True,
                headers={"X-Forwarded-Proto": "http", "X-Forwarded-For": "203.0.113.7"})
            for _ in range(10)
        ]
        assert [(a.status, a.location) for a in answers] == [(302, click.target)] * 10
        assert sum(still_open(sock) for sock in held) == IDLE_CONNECTIONS

    assert [event.ip for event in stored_clicks(beacon_processes)] == ["127.0.0.0"] * 10


def test_without_nginx_the_same_idle_connections_hold_every_gunicorn_worker(production, click):
    # gunicorn answers straight away when nothing holds it (it trusts X-Forwarded-Proto: nginx sets it).
    direct = {"X-Forwarded-Proto": "https"}
    answer = get(production.gunicorn_port, click.path, tls=False, headers=direct)
    assert (answer.status, answer.location) == (302, click.target)

    with idle_connections(production.gunicorn_port, tls=False):
        with pytest.raises(TimeoutError):
            get(production.gunicorn_port, click.path, tls=False, headers=direct)


def test_plain_http_is_redirected_to_https_whatever_the_client_claims(production, click, beacon_processes):
    answer = get(production.http_port, click.path, tls=False, headers={"X-Forwarded-Proto": "https"})

    assert (answer.status, answer.location) == (301, f"https://127.0.0.1{click.path}")
    assert stored_clicks(beacon_processes) == []


def test_nginx_serves_static_files_and_refuses_a_body_over_the_import_limit_before_reading_it(production):
    static = get(production.https_port, "/static/probe.txt", tls=True)
    assert (static.status, static.body) == (200, b"served by nginx")

    client = connection(production.https_port, tls=True)
    client.putrequest("POST", "/api/lists/1/import/")
    client.putheader("Content-Type", "multipart/form-data; boundary=x")
    client.putheader("Content-Length", str(60 * 1024 * 1024))
    client.endheaders()
    refused = client.getresponse()
    assert refused.status == 413
    assert refused.getheader("Content-Type") == "application/json"
    assert b'"code": "too_large"' in refused.read()
    client.close()


def test_nginx_accepts_the_largest_import_with_its_form_and_not_much_more():
    size = re.search(r"^\s*client_max_body_size (\d+)m;$", local_nginx.SITE.read_text(), re.M)
    limit = int(size.group(1)) * 1024 * 1024
    assert settings.BEACON_IMPORT_MAX_BYTES < limit <= settings.BEACON_IMPORT_MAX_BYTES + 2 * 1024 * 1024
