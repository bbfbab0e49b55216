"""Small IMAP and POP3 servers over TLS, for the bounce mailbox tests: just the commands Beacon's readers
send, each in a thread, holding their messages in memory like a real mailbox."""
import re
import socketserver
import ssl
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

USER, PASSWORD = "bounces", "p@ss word"
_TOKEN_RE = re.compile(rb'"((?:[^"\\]|\\.)*)"|(\S+)')


def self_signed_certificate(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, made with the openssl command."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True, timeout=60,
    )
    return cert, key


@dataclass
class FakeMailbox:
    """The messages by number (a UID for IMAP); `deleted` are flagged (IMAP) or marked (POP3) but still there."""

    messages: dict[int, bytes] = field(default_factory=dict)
    deleted: set[int] = field(default_factory=set)
    commands: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, raw: bytes) -> int:
        with self.lock:
            number = max(self.messages, default=0) + 1
            self.messages[number] = raw
            return number


class _TlsHandler(socketserver.StreamRequestHandler):
    def setup(self):
        self.request = self.server.tls.wrap_socket(self.request, server_side=True)
        super().setup()

    def send(self, data: bytes) -> None:
        self.wfile.write(data)
        self.wfile.flush()


class _ImapHandler(_TlsHandler):
    def handle(self):
        box: FakeMailbox = self.server.mailbox
        self.send(b"* OK fake IMAP ready\r\n")
        for line in self.rfile:
            tag, _, rest = line.rstrip(b"\r\n").partition(b" ")
            words = [quoted if quoted or not bare else bare for quoted, bare in _TOKEN_RE.findall(rest)]
            command = words[0].upper().decode() if words else ""
            if command == "UID":
                command, words = "UID " + words[1].upper().decode(), words[1:]
            box.commands.append(command)
            if command == "CAPABILITY":
                self.send(b"* CAPABILITY IMAP4rev1\r\n" + tag + b" OK done\r\n")
            elif command == "LOGIN":
                user, password = (w.replace(b'\\"', b'"').replace(b"\\\\", b"\\").decode() for w in words[1:3])
                ok = (user, password) == (USER, PASSWORD)
                self.send(tag + (b" OK logged in\r\n" if ok else b" NO [AUTHENTICATIONFAILED] invalid credentials\r\n"))
            elif command == "SELECT":
                self.send(b"* %d EXISTS\r\n* FLAGS (\\Deleted \\Seen)\r\n" % len(box.messages) + tag + b" OK [READ-WRITE] selected\r\n")
            elif command == "UID SEARCH":
                with box.lock:
                    uids = [uid for uid in sorted(box.messages) if uid not in box.deleted]
                self.send(b"* SEARCH" + b"".join(b" %d" % uid for uid in uids) + b"\r\n" + tag + b" OK searched\r\n")
            elif command == "UID FETCH":
                uid = int(words[1])
                length = int(re.search(rb"<0\.(\d+)>", words[2] + b" ".join(words[3:])).group(1))
                raw = box.messages.get(uid)
                if raw is not None:
                    body = raw[:length]
                    self.send(b"* 1 FETCH (UID %d BODY[]<0> {%d}\r\n" % (uid, len(body)) + body + b")\r\n")
                self.send(tag + b" OK fetched\r\n")
            elif command == "UID STORE":
                with box.lock:
                    box.deleted.add(int(words[1]))
                self.send(tag + b" OK stored\r\n")
            elif command == "EXPUNGE":
                with box.lock:
                    for uid in box.deleted:
                        box.messages.pop(uid, None)
                    box.deleted.clear()
                self.send(tag + b" OK expunged\r\n")
            elif command == "LOGOUT":
                self.send(b"* BYE\r\n" + tag + b" OK bye\r\n")
                return
            else:
                self.send(tag + b" BAD unknown command\r\n")


class _Pop3Handler(_TlsHandler):
    def handle(self):
        box: FakeMailbox = self.server.mailbox
        marked: set[int] = set()
        user = ""
        self.send(b"+OK fake POP3 ready\r\n")
        for line in self.rfile:
            command, _, argument = line.rstrip(b"\r\n").decode("utf-8").partition(" ")
            command = command.upper()
            box.commands.append(command)
            if command == "USER":
                user = argument
                self.send(b"+OK\r\n")
            elif command == "PASS":
                self.send(b"+OK\r\n" if (user, argument) == (USER, PASSWORD) else b"-ERR invalid credentials\r\n")
            elif command == "LIST":
                listing = b"".join(b"%d %d\r\n" % (n, len(raw)) for n, raw in sorted(box.messages.items()) if n not in marked)
                self.send(b"+OK\r\n" + listing + b".\r\n")
            elif command == "RETR":
                raw = box.messages[int(argument)]
                lines = raw.replace(b"\r\n", b"\n").split(b"\n")
                stuffed = b"".join((b"." + line if line.startswith(b".") else line) + b"\r\n" for line in lines)
                self.send(b"+OK\r\n" + stuffed + b".\r\n")
            elif command == "DELE":
                marked.add(int(argument))
                self.send(b"+OK marked\r\n")
            elif command == "QUIT":
                # Only a QUIT applies the deletions (RFC 1939, the UPDATE state).
                with box.lock:
                    for number in marked:
                        box.messages.pop(number, None)
                self.send(b"+OK bye\r\n")
                return
            else:
                self.send(b"-ERR unknown command\r\n")


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address):
        # A client refusing the certificate is what some tests mean to happen.
        if not isinstance(sys.exc_info()[1], (ssl.SSLError, ConnectionError)):
            super().handle_error(request, client_address)


class MailServer:
    """A running fake server: `url` for BEACON_BOUNCE_MAILBOX, `mailbox` its messages."""

    def __init__(self, kind: str, cert: Path, key: Path):
        self.mailbox = FakeMailbox()
        handler = _ImapHandler if kind == "imaps" else _Pop3Handler
        self._server = _Server(("127.0.0.1", 0), handler)
        self._server.tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._server.tls.load_cert_chain(cert, key)
        self._server.mailbox = self.mailbox
        port = self._server.server_address[1]
        folder = "/INBOX" if kind == "imaps" else ""
        self.url = f"{kind}://{USER}:p%40ss%20word@127.0.0.1:{port}{folder}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
