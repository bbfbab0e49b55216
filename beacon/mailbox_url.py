"""`BEACON_BOUNCE_MAILBOX`, the mailbox bounces come back to, read from its URL.

Three kinds (`deliveries.bounces.mailbox` reads them):

- ``maildir:///var/mail/bounces`` (an absolute path; a local MTA delivers there);
- ``imaps://user:password@host[:port]/INBOX`` (IMAP over TLS, port 993 by default, the folder INBOX
  unless another is named);
- ``pop3s://user:password@host[:port]`` (POP3 over TLS, port 995 by default).

The user and password are URL-encoded (``p%40ss`` for ``p@ss``). Settings load it at start-up, so a
wrong value stops Beacon with a clear message, which never repeats the password. No Django import: the
settings module uses it.
"""
import re
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

MAILDIR, IMAPS, POP3S = "maildir", "imaps", "pop3s"
DEFAULT_PORTS = {IMAPS: 993, POP3S: 995}
EXPECTED = (
    "maildir:///path, imaps://user:password@host[:port]/folder or pop3s://user:password@host[:port], "
    "with the user and password URL-encoded"
)


@dataclass(frozen=True)
class MailboxUrl:
    scheme: str
    path: str = ""
    host: str = ""
    port: int = 0
    user: str = ""
    password: str = field(default="", repr=False)
    folder: str = ""

    @property
    def shown(self) -> str:
        """The mailbox as an operator may see it: never the password."""
        if self.scheme == MAILDIR:
            return f"maildir://{self.path}"
        folder = f"/{self.folder}" if self.scheme == IMAPS else ""
        return f"{self.scheme}://{self.user}@{self.host}:{self.port}{folder}"


def mailbox_url_parse(value: str) -> MailboxUrl:
    """The mailbox `value` names; ValueError saying what is wrong (without the password) otherwise."""
    if not isinstance(value, str) or "\x00" in value or len(value) > 2000:
        raise ValueError(f"must be {EXPECTED}")
    scheme = value.partition(":")[0].lower() if ":" in value else ""
    if scheme not in (MAILDIR, IMAPS, POP3S):
        # The scheme is echoed only when it looks like one: a mistyped value may start with a password.
        why = f"the {scheme} scheme is not one of them" if re.fullmatch(r"[a-z][a-z0-9+.-]{0,15}", scheme) else "it has no scheme"
        raise ValueError(f"must be {EXPECTED}; {why}")
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        raise ValueError(f"must be {EXPECTED}; its host or port cannot be read") from None
    if parts.query or parts.fragment:
        raise ValueError("takes no query string or fragment")
    if scheme == MAILDIR:
        if parts.netloc or not parts.path.startswith("/"):
            raise ValueError("a maildir is maildir:///absolute/path (three slashes, no host)")
        return MailboxUrl(MAILDIR, path=unquote(parts.path))
    if not parts.hostname:
        raise ValueError(f"{scheme} needs a host")
    if not parts.username or parts.password is None:
        raise ValueError(f"{scheme} needs a user and a password (user:password@host)")
    folder = unquote(parts.path.lstrip("/"))
    if scheme == POP3S and folder:
        raise ValueError("POP3 has no folders: pop3s://user:password@host[:port]")
    if scheme == IMAPS and (not folder.isascii() or any(c in '/"\\' or ord(c) < 32 or ord(c) == 127 for c in folder)):
        raise ValueError("the IMAP folder must be a plain ASCII name such as INBOX")
    return MailboxUrl(
        scheme,
        host=parts.hostname,
        port=port or DEFAULT_PORTS[scheme],
        user=unquote(parts.username),
        password=unquote(parts.password),
        folder=(folder or "INBOX") if scheme == IMAPS else "",
    )
