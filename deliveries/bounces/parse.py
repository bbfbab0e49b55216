"""What a message that came back to the bounce address says: bounce, complaint, auto-reply or none.

`parse_bounce(raw)` reads RFC 3464 delivery status notifications (multipart/report;
report-type=delivery-status: Postfix, Sendmail, Exchange/Office 365, Gmail), the text-only bounces of
Exim, qmail and Yahoo (`deliveries.bounces.plain`), ARF feedback-loop reports (report-type=
feedback-report: complaints) and auto-replies (out-of-office, `Auto-Submitted`, `X-Autoreply`,
`Precedence: auto_reply`), in that order: a bounce often carries `Auto-Submitted` itself.
"""
import logging
import re
from dataclasses import dataclass
from email import message_from_bytes
from email.message import Message
from enum import StrEnum

from deliveries.bounces import plain
from deliveries.bounces.classify import COMPLAINT, ENHANCED_STATUS_RE, classify
from deliveries.bounces.message import (
    MAX_BOUNCE_BYTES,
    all_headers,
    field_blocks,
    header,
    headers_of,
    one_line,
    parts,
    text,
)
from deliveries.bounces.verp import verp_message_id
from deliveries.models import FailureType

logger = logging.getLogger(__name__)


class BounceKind(StrEnum):
    BOUNCE = "bounce"
    COMPLAINT = "complaint"
    AUTO_REPLY = "auto_reply"
    NOT_A_BOUNCE = "not_a_bounce"


@dataclass(frozen=True)
class FailedRecipient:
    # "" when the bounce does not say: the matched message's address is the one.
    address: str
    # The enhanced status code (RFC 3463), e.g. "5.1.1"; "" when the bounce gives none.
    status: str
    diagnostic: str
    # "failed" or "delayed" (a delay is no failure yet: its type is `ignored`); "" for a complaint.
    action: str
    failure_type: str
    failure_reason: str


@dataclass(frozen=True)
class BounceReport:
    kind: BounceKind
    recipients: tuple[FailedRecipient, ...] = ()
    # The message named by a VERP address (deliveries.bounces.verp) the report was sent to or quotes.
    verp_message_id: int | None = None
    # The Message-ID of the returned message, e.g. "<42.abc@example.com>"; the second way to match.
    original_message_id: str = ""


NOT_A_BOUNCE = BounceReport(BounceKind.NOT_A_BOUNCE)
# Where a bounce's envelope recipient (our VERP address) shows, in the order MTAs write them.
_ENVELOPE_HEADERS = ("Delivered-To", "X-Original-To", "Envelope-To", "X-Envelope-To", "X-Original-Recipient", "To")
_VERP_CANDIDATE_RE = re.compile(r"[^\s<>\"'(),;:]{1,64}\+[A-Za-z0-9_-]{16,64}@[A-Za-z0-9.-]{1,255}")
_MESSAGE_ID_RE = re.compile(r"^\s*Message-ID:\s*(<[^<>\s]{1,250}>)", re.I | re.M)
_BASIC_CODE_RE = re.compile(r"(?:^|[\s;])([245])\d\d(?=[\s:-]|$)")
_AUTO_REPLY_SUBJECT_RE = re.compile(
    r"^\s*(auto(matic|matische)?[ _-]?(reply|response|answer|antwort)|auto:|autoreply|out of (the )?office"
    r"|vacation|on leave|abwesen|absence|r[ée]ponse automatique|respuesta autom[áa]tica|risposta automatica"
    r"|fuori sede|afwezig)",
    re.I,
)


def parse_bounce(raw: bytes | str, *, envelope_recipient: str = "") -> BounceReport:
    """Reads one message received at the bounce address. Never raises: what cannot be read is
    `not_a_bounce`. `envelope_recipient` is the address it was delivered to, when the mailbox knows."""
    try:
        if isinstance(raw, str):
            raw = raw.encode("utf-8", "replace")
        message = message_from_bytes(raw[:MAX_BOUNCE_BYTES])
        return _parse(message, envelope_recipient)
    except Exception:  # hostile or broken input (deep nesting, bad encodings) must not stop the mailbox
        logger.warning("unreadable message at the bounce address", exc_info=True)
        return NOT_A_BOUNCE


def _parse(message: Message, envelope_recipient: str) -> BounceReport:
    all_parts = parts(message)
    report_type = message.get_param("report-type", "", header="content-type")
    report_type = report_type.lower() if isinstance(report_type, str) else ""
    by_type: dict[str, Message] = {}
    for part, _depth in all_parts:
        by_type.setdefault(part.get_content_type(), part)
    original = _original_headers(by_type)

    if "message/feedback-report" in by_type or report_type == "feedback-report":
        return _complaint(message, by_type, original, envelope_recipient)
    if "message/delivery-status" in by_type:
        recipients, named_any = _dsn_recipients(by_type["message/delivery-status"])
        if recipients:
            return _report(BounceKind.BOUNCE, recipients, message, original, envelope_recipient, "")
        if named_any:
            return NOT_A_BOUNCE  # a report of success (delivered, relayed, expanded)
    own_text, original_text = plain.split_original(_body_text(all_parts))
    if original is None and original_text:
        original = headers_of(original_text)
    if _looks_like_plain_bounce(message, own_text):
        return _report(BounceKind.BOUNCE, _plain_recipients(message, own_text), message, original, envelope_recipient, original_text)
    if _is_auto_reply(message):
        return _report(BounceKind.AUTO_REPLY, [], message, original, envelope_recipient, "")
    return NOT_A_BOUNCE


def _report(
    kind: BounceKind, recipients: list[FailedRecipient], message: Message, original: Message | None,
    envelope_recipient: str, original_text: str,
) -> BounceReport:
    message_id = header(original, "Message-ID") if original is not None else ""
    if not message_id and original_text:
        found = _MESSAGE_ID_RE.search(original_text)
        message_id = found.group(1) if found else ""
    if not message_id and kind == BounceKind.AUTO_REPLY:
        message_id = header(message, "In-Reply-To")
    message_id = message_id if re.fullmatch(r"<[^<>\s]{1,250}>", message_id) else ""
    return BounceReport(kind, tuple(recipients), _verp_message_id(message, original, envelope_recipient, original_text), message_id)


def _verp_message_id(message: Message, original: Message | None, envelope_recipient: str, original_text: str) -> int | None:
    candidates = [envelope_recipient if isinstance(envelope_recipient, str) else ""]
    for name in _ENVELOPE_HEADERS:
        candidates += all_headers(message, name)
    if original is not None:
        candidates += all_headers(original, "Return-Path")
    candidates += _VERP_CANDIDATE_RE.findall(original_text[:20000])[:20]
    for candidate in candidates:
        for address in _VERP_CANDIDATE_RE.findall(candidate)[:5]:
            if (message_id := verp_message_id(address)) is not None:
                return message_id
    return None


def _original_headers(by_type: dict[str, Message]) -> Message | None:
    returned = by_type.get("message/rfc822")
    if returned is not None:
        payload = returned.get_payload()
        if isinstance(payload, list) and payload and isinstance(payload[0], Message):
            return payload[0]
    headers_part = by_type.get("text/rfc822-headers")
    return headers_of(text(headers_part)) if headers_part is not None else None


def _body_text(all_parts: list[tuple[Message, int]]) -> str:
    texts = [text(part) for part, _depth in all_parts if part.get_content_type() == "text/plain"]
    if not any(t.strip() for t in texts):
        texts = [text(part) for part, _depth in all_parts if part.get_content_type() == "text/html"]
    return "\n\n".join(texts)


def _status_and_class(status_field: str, diagnostic: str, action: str) -> tuple[str, int]:
    """The most precise enhanced status (a generic X.0.0 gives way to the diagnostic's) and its class."""
    found = ENHANCED_STATUS_RE.search(status_field)
    status = found.group(0) if found else ""
    in_diagnostic = ENHANCED_STATUS_RE.search(diagnostic)
    if in_diagnostic and (not status or (status.endswith(".0.0") and in_diagnostic.group(1) == status[0])):
        status = in_diagnostic.group(0)
    if status:
        return status, int(status[0])
    basic = _BASIC_CODE_RE.search(diagnostic)
    if basic:
        return "", int(basic.group(1))
    return "", 4 if action == "delayed" else 5


def _recipient(address: str, status_field: str, diagnostic: str, action: str) -> FailedRecipient | None:
    status, status_class = _status_and_class(status_field, diagnostic, action)
    if status_class == 2:
        return None
    failure_type, reason = classify(status_class, status, diagnostic)
    if action == "delayed":
        # The sending server keeps trying; its final answer, if any, is what counts.
        failure_type = FailureType.IGNORED
    return FailedRecipient(address, status, diagnostic, action or "failed", failure_type, reason)


def _without_type(value: str) -> str:
    """`rfc822; bob@example.com` -> `bob@example.com`; `smtp; 550 ...` -> `550 ...`."""
    kind, semicolon, rest = value.partition(";")
    return (rest if semicolon and len(kind) <= 20 and " " not in kind.strip() else value).strip().strip("<>")


def _dsn_recipients(status_part: Message) -> tuple[list[FailedRecipient], bool]:
    """The failed recipients of a delivery-status part, and whether it named any recipient at all."""
    recipients = []
    named_any = False
    for block in field_blocks(status_part):
        address = _without_type(header(block, "Final-Recipient") or header(block, "Original-Recipient"))
        if not address:
            continue
        named_any = True
        action = header(block, "Action").lower()
        if action and action not in ("failed", "delayed"):
            continue  # delivered, relayed, expanded: not a failure
        diagnostic = one_line(_without_type(header(block, "Diagnostic-Code")), 1000)
        recipient = _recipient(one_line(address, 254), header(block, "Status"), diagnostic, action)
        if recipient is not None:
            recipients.append(recipient)
    return recipients, named_any


def _looks_like_plain_bounce(message: Message, own_text: str) -> bool:
    if header(message, "X-Failed-Recipients"):
        return True
    sender = f"{header(message, 'From')} {header(message, 'Return-Path')} {header(message, 'Sender')}"
    from_a_daemon = bool(plain.BOUNCE_SENDER_RE.search(sender)) or header(message, "Return-Path") == "<>"
    says_so = bool(plain.BOUNCE_SUBJECT_RE.search(header(message, "Subject")) or plain.BOUNCE_WORDING_RE.search(own_text[:20000]))
    return from_a_daemon and says_so


def _plain_recipients(message: Message, own_text: str) -> list[FailedRecipient]:
    found = plain.failed_addresses(own_text)
    named = [a.strip().strip("<>").lower() for a in header(message, "X-Failed-Recipients").split(",") if "@" in a]
    if named:
        diagnostics = dict(found)
        found = [(address, diagnostics.get(address, "")) for address in named]
    general = plain.smtp_lines(own_text)
    if not found:
        found = [("", general)]
    action = "delayed" if plain.is_temporary(f"{header(message, 'Subject')} {own_text[:20000]}") else "failed"
    recipients = []
    for address, diagnostic in found:
        recipient = _recipient(one_line(address, 254), "", diagnostic or general, action)
        if recipient is not None:
            recipients.append(recipient)
    return recipients


def _complaint(message: Message, by_type: dict[str, Message], original: Message | None, envelope_recipient: str) -> BounceReport:
    fields = by_type.get("message/feedback-report")
    blocks = field_blocks(fields) if fields is not None else []
    feedback_type = next((header(b, "Feedback-Type") for b in blocks if header(b, "Feedback-Type")), "abuse").lower()
    if feedback_type == "not-spam":
        return NOT_A_BOUNCE
    addresses = [_without_type(a) for b in blocks for a in all_headers(b, "Original-Rcpt-To") + all_headers(b, "Removed-Recipient")]
    if not addresses and original is not None:
        addresses = [a.strip().strip("<>") for a in header(original, "To").split(",")][:1]
    failure_type, reason = COMPLAINT
    recipients = [
        FailedRecipient(one_line(address, 254), "", f"Feedback-Type: {feedback_type}", "", failure_type, reason)
        for address in dict.fromkeys(a for a in addresses if a) or [""]
    ]
    mail_from = next((header(b, "Original-Mail-From") for b in blocks if header(b, "Original-Mail-From")), "")
    report = _report(BounceKind.COMPLAINT, recipients, message, original, envelope_recipient, "")
    if report.verp_message_id is None and mail_from:
        return BounceReport(report.kind, report.recipients, verp_message_id(_without_type(mail_from)), report.original_message_id)
    return report


def _is_auto_reply(message: Message) -> bool:
    auto_submitted = header(message, "Auto-Submitted").lower()
    if auto_submitted and auto_submitted != "no":
        return True
    if any(header(message, name) for name in ("X-Autoreply", "X-Autorespond", "X-Autoresponder", "X-Autogenerated")):
        return True
    if header(message, "Precedence").lower() == "auto_reply" or header(message, "X-Precedence").lower() == "auto_reply":
        return True
    return bool(_AUTO_REPLY_SUBJECT_RE.search(header(message, "Subject")))
