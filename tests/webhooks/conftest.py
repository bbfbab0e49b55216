import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.accounts.conftest import NO_ROLE
from webhooks.selectors import active_subscriptions_forget


class Receiver:
    """A local HTTP server that records every request and answers with `statuses` in turn (the last
    repeats), or redirects to `redirect_to`."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.statuses = [204]
        self.redirect_to = ""
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver._lock:
                    receiver.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                    status = receiver.statuses[min(len(receiver.requests), len(receiver.statuses)) - 1]
                self.send_response(status)
                if receiver.redirect_to:
                    self.send_header("Location", receiver.redirect_to)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/beacon"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def paths(self) -> list[str]:
        return [request["path"] for request in self.requests]


@pytest.fixture
def receiver():
    receiver = Receiver()
    receiver.thread.start()
    try:
        yield receiver
    finally:
        receiver.server.shutdown()
        receiver.server.server_close()


@pytest.fixture(autouse=True)
def _webhooks_to_localhost(settings):
    """The receiver is on 127.0.0.1: the tests allow private addresses unless they test refusing them.
    Each test starts without a remembered set of active subscriptions (tests roll rows back)."""
    settings.BEACON_WEBHOOK_ALLOW_PRIVATE_ADDRESSES = True
    settings.BEACON_WEBHOOK_TIMEOUT_SECONDS = 5
    settings.BEACON_WEBHOOK_MAX_ATTEMPTS = 4
    active_subscriptions_forget()
    yield
    active_subscriptions_forget()


@pytest.fixture
def role_user(db):
    from tests.factories import RoleUserFactory

    def make(caller: str):
        return RoleUserFactory(role=None if caller == NO_ROLE else caller)

    return make
