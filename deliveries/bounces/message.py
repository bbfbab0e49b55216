"""Careful reading of an untrusted email: bounded walks, decoded text, headers as clean strings.

Nothing here raises on malformed input: a part that cannot be decoded reads as empty text.
"""
import re
from email.header import decode_header, make_header
from email.message import Message
from email.parser import HeaderParser

# A bounce's own text and the headers of the message it returns come first; the rest (the returned
# message's body, its attachments) is never needed, so a bounce is read up to this size.
MAX_BOUNCE_BYTES = 512 * 1024
MAX_PARTS = 200
MAX_DEPTH = 12
MAX_TEXT_CHARS = 200_000
MAX_FIELD_CHARS = 2000
_WHITESPACE_RE = re.compile(r"\s+")
_TAG_RE = re.compile(r"<[^>]{0,2000}>")


def clean(value: str, limit: int = MAX_FIELD_CHARS) -> str:
    """A string safe to store: undecodable bytes as U+FFFD, no NUL, no lone surrogate, bounded."""
    try:
        # The parser keeps a header's non-ASCII bytes as surrogate escapes; most are UTF-8.
        value = value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    except UnicodeEncodeError:
        value = value.encode("utf-8", "replace").decode("utf-8")
    return value.replace("\x00", "")[:limit]


def one_line(value: str, limit: int = MAX_FIELD_CHARS) -> str:
    return clean(_WHITESPACE_RE.sub(" ", value).strip(), limit)


def header(message: Message, name: str) -> str:
    """A header's decoded value on one line ("" when absent or unreadable)."""
    value = message.get(name)
    if value is None:
        return ""
    value = str(value)
    try:
        value = str(make_header(decode_header(value)))
    except Exception:  # an encoded word in an unknown charset or broken base64: keep it raw
        pass
    return one_line(value)


def all_headers(message: Message, name: str) -> list[str]:
    return [one_line(str(value)) for value in (message.get_all(name) or [])]


def parts(message: Message) -> list[tuple[Message, int]]:
    """The parts of a message, depth first, with their depth; stops at MAX_DEPTH and MAX_PARTS.

    A returned message (message/rfc822) and a report's fields are parts of their own, not walked into.
    """
    found = []
    stack = [(message, 0)]
    while stack and len(found) < MAX_PARTS:
        part, depth = stack.pop()
        found.append((part, depth))
        if depth >= MAX_DEPTH or not part.is_multipart() or part.get_content_maintype() == "message":
            continue
        children = part.get_payload()
        if isinstance(children, list):
            stack.extend((child, depth + 1) for child in reversed(children) if isinstance(child, Message))
    return found


def text(part: Message) -> str:
    """The decoded text of a leaf part, in its charset (UTF-8 when unknown); HTML reduced to text."""
    try:
        payload = part.get_payload(decode=True)
    except Exception:
        return ""
    if not isinstance(payload, bytes):
        return ""
    payload = payload[: MAX_TEXT_CHARS * 4]
    try:
        decoded = payload.decode(part.get_content_charset() or "utf-8", "replace")
    except (LookupError, ValueError):
        decoded = payload.decode("utf-8", "replace")
    if part.get_content_subtype() == "html":
        decoded = _TAG_RE.sub(" ", decoded).replace("&lt;", "<").replace("&gt;", ">").replace("&nbsp;", " ").replace("&amp;", "&")
    return clean(decoded, MAX_TEXT_CHARS)


def field_blocks(part: Message) -> list[Message]:
    """The blocks of fields of a report part (message/delivery-status, message/feedback-report)."""
    payload = part.get_payload()
    if isinstance(payload, list) and all(isinstance(block, Message) for block in payload):
        blocks = payload[:MAX_PARTS]
        # The feedback-report parser reads one block; a delivery-status one may hold all in one too.
        if len(blocks) == 1 and blocks[0].get_payload() and isinstance(blocks[0].get_payload(), str):
            return [blocks[0], *_blocks_of(blocks[0].get_payload())]
        return blocks
    return _blocks_of(text(part))


def _blocks_of(raw: str) -> list[Message]:
    parser = HeaderParser()
    return [parser.parsestr(block.strip() + "\n") for block in re.split(r"\n\s*\n", raw.replace("\r\n", "\n")) if block.strip()][:MAX_PARTS]


def headers_of(raw: str) -> Message:
    """The header block at the start of `raw` (a returned message pasted as text)."""
    return HeaderParser().parsestr(raw.lstrip("\r\n")[:MAX_TEXT_CHARS])
