import email
import email.policy
import socket
from dataclasses import dataclass, field

import pytest
from aiosmtpd.controller import Controller


@dataclass
class Received:
    sender: str
    recipients: list[str]
    message: email.message.EmailMessage


@dataclass
class RecordingHandler:
    """Accepts mail like a real server; answers `rejections[address]` (e.g. "550 5.1.1 ...") at RCPT."""

    received: list[Received] = field(default_factory=list)
    rejections: dict[str, str] = field(default_factory=dict)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.rejections:
            return self.rejections[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        parsed = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
        self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), parsed))
        return "250 Message accepted for delivery"

    def to(self, address: str) -> list[email.message.EmailMessage]:
        return [item.message for item in self.received if address in item.recipients]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def smtp_server(settings):
    """A real SMTP server on a free local port; Django's SMTP backend is pointed at it."""
    handler = RecordingHandler()
    controller = Controller(handler, hostname="127.0.0.1", port=_free_port())
    controller.start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST = "127.0.0.1"
    settings.EMAIL_PORT = controller.port
    settings.EMAIL_USE_TLS = False
    settings.EMAIL_HOST_USER = ""
    settings.EMAIL_HOST_PASSWORD = ""
    try:
        yield handler
    finally:
        controller.stop()


@pytest.fixture(scope="session")
def tls_certificate(tmp_path_factory):
    """A self-signed certificate for 127.0.0.1 and its key (the CA file the readers are told to trust)."""
    from tests.deliveries.mailbox_servers import self_signed_certificate

    return self_signed_certificate(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def bounce_maildir(tmp_path, settings):
    """An empty maildir that BEACON_BOUNCE_MAILBOX names."""
    import mailbox

    folder = tmp_path / "bounces"
    settings.BEACON_BOUNCE_MAILBOX = f"maildir://{folder}"
    return mailbox.Maildir(folder, create=True)


def _mail_server(kind, tls_certificate, settings):
    from tests.deliveries.mailbox_servers import MailServer

    server = MailServer(kind, *tls_certificate)
    settings.BEACON_BOUNCE_MAILBOX = server.url
    settings.BEACON_BOUNCE_MAILBOX_CA_FILE = str(tls_certificate[0])
    return server


@pytest.fixture
def imap_server(tls_certificate, settings):
    """A fake IMAP server over TLS that BEACON_BOUNCE_MAILBOX names, its certificate trusted."""
    server = _mail_server("imaps", tls_certificate, settings)
    yield server
    server.stop()


@pytest.fixture
def pop3_server(tls_certificate, settings):
    """A fake POP3 server over TLS that BEACON_BOUNCE_MAILBOX names, its certificate trusted."""
    server = _mail_server("pop3s", tls_certificate, settings)
    yield server
    server.stop()
