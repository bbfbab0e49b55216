"""Bounces without a delivery-status part: Exim, qmail, Yahoo's, old Sendmail and the like write
the failed addresses as text, each on a line of its own followed by what the server said.

Recognized by their sender (MAILER-DAEMON, postmaster), their subject or their wording, or by
Exim's `X-Failed-Recipients` header. The text before the returned message is read; a line holding
only an address (``<bob@example.com>:``, ``  bob@example.com``) opens that address's diagnostic,
which runs to the next blank line or address line.
"""
import re

from deliveries.bounces.message import one_line

_ADDRESS = r"[^\s<>@\"(),;:]{1,64}@[A-Za-z0-9.-]{1,255}"
_ADDRESS_LINE_RE = re.compile(rf"^\s*<?({_ADDRESS})>?:?\s*$")
BOUNCE_SENDER_RE = re.compile(r"mailer-daemon|postmaster|mail delivery (system|subsystem)|microsoftexchange", re.I)
BOUNCE_SUBJECT_RE = re.compile(
    r"undeliver|delivery (status notification|failure|failed|has failed|problem|notification)|mail delivery failed"
    r"|returned mail|returning message|failure notice|could not be delivered|non-?delivery|nondeliverable"
    r"|delivery report|message .{0,40} delayed",
    re.I,
)
BOUNCE_WORDING_RE = re.compile(
    r"qmail-send program|could not be delivered|following addresses? (had permanent fatal errors|failed)"
    r"|unable to deliver|wasn't able to deliver|transcript of session follows|delivery has failed"
    r"|permanent error|address\(es\) failed|message could not be delivered",
    re.I,
)
# Where the copy of the returned message starts in the text (it must not be read as the bounce's).
_ORIGINAL_START_RE = re.compile(
    r"^.{0,20}(this is a copy of the message|below this line is a copy of the message|original message follows"
    r"|original message headers|unsent message follows|returned message|undelivered message headers|original message) ?.{0,40}$",
    re.I | re.M,
)
_SMTP_LINE_RE = re.compile(r"\b[45]\d\d[ -]|\b[45]\.\d{1,3}\.\d{1,3}\b")
_TEMPORARY_RE = re.compile(r"temporary|delayed|will (continue|keep) (to )?try|still trying|not yet been delivered", re.I)
_PERMANENT_RE = re.compile(r"permanent|given up|giving up|fatal", re.I)


def split_original(body: str) -> tuple[str, str]:
    """(the bounce's own text, the returned message's text from its headers on)."""
    match = _ORIGINAL_START_RE.search(body)
    if not match:
        return body, ""
    return body[: match.start()], body[match.end() :]


def failed_addresses(own_text: str) -> list[tuple[str, str]]:
    """(address, diagnostic) per address line of the bounce's own text, in order, once each."""
    found: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in own_text.replace("\r\n", "\n").split("\n")[:5000]:
        match = _ADDRESS_LINE_RE.match(line)
        if match:
            current = found.setdefault(match.group(1).lower(), [])
        elif not line.strip():
            current = None
        elif current is not None and len(current) < 40:
            current.append(line.strip())
    return [(address, one_line(" ".join(lines), 1000)) for address, lines in found.items()]


def smtp_lines(own_text: str) -> str:
    """The lines of the text that quote a server's answer, as one diagnostic."""
    return one_line(" ".join(line.strip() for line in own_text.split("\n")[:5000] if _SMTP_LINE_RE.search(line))[:4000], 1000)


def is_temporary(text: str) -> bool:
    """Whether the bounce says it is only a delay (the server keeps trying)."""
    return bool(_TEMPORARY_RE.search(text)) and not _PERMANENT_RE.search(text)
