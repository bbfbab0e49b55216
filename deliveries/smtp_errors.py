"""Synchronous SMTP errors at send time, normalized into Beacon's failure type and reason.

The table is read top to bottom; the first rule whose enhanced status code prefix (RFC 3463) or
wording matches wins, then the basic reply code decides (4xx soft, 5xx hard). Errors of the
connection to our own relay (refused, timeout, disconnected) are soft `unreachable` and are not the
recipient's fault, so they do not count as a bounce of the address.
"""
import re
import smtplib
from dataclasses import dataclass

from deliveries.models import FailureReason, FailureType


@dataclass(frozen=True)
class Classification:
    failure_type: str
    failure_reason: str
    detail: str
    # Whether the answer is about the recipient's address (then it counts towards quarantine).
    is_bounce: bool


# (enhanced status prefix, wording pattern, failure type or None for "from the reply code", reason)
RULES: list[tuple[str | None, str | None, str | None, str]] = [
    ("5.2.2", None, FailureType.SOFT, FailureReason.MAILBOX_FULL),
    ("4.2.2", None, FailureType.SOFT, FailureReason.MAILBOX_FULL),
    ("5.1.1", None, FailureType.HARD, FailureReason.USER_UNKNOWN),
    ("5.1.2", None, FailureType.HARD, FailureReason.INVALID_DOMAIN),
    ("5.1.10", None, FailureType.HARD, FailureReason.INVALID_DOMAIN),
    ("5.4.4", None, FailureType.HARD, FailureReason.INVALID_DOMAIN),
    ("5.2.1", None, FailureType.HARD, FailureReason.ACCOUNT_DISABLED),
    ("4.4.", None, FailureType.SOFT, FailureReason.UNREACHABLE),
    ("5.7.", None, FailureType.HARD, FailureReason.REFUSED),
    ("4.7.", None, FailureType.SOFT, FailureReason.REFUSED),
    (None, r"quota|mailbox (is )?full|insufficient storage", None, FailureReason.MAILBOX_FULL),
    (None, r"user unknown|no such user|unknown user|does not exist|mailbox unavailable|recipient rejected", None, FailureReason.USER_UNKNOWN),
    (None, r"(host|domain)( name)? not found|name service error|no mx|dns|unrouteable", None, FailureReason.INVALID_DOMAIN),
    (None, r"disabled|inactive|suspended", None, FailureReason.ACCOUNT_DISABLED),
    (None, r"spam|blocked|policy|denied|blacklist|blocklist", None, FailureReason.REFUSED),
]
_ENHANCED_RE = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")


def classify_reply(code: int, text: str) -> Classification:
    """Classifies one SMTP reply (e.g. 550, "5.1.1 User unknown")."""
    enhanced_match = _ENHANCED_RE.search(text)
    enhanced = enhanced_match.group(0) if enhanced_match else ""
    lowered = text.lower()
    default_type = FailureType.SOFT if 400 <= code < 500 else FailureType.HARD
    detail = f"{code} {text}".strip()[:1000]
    for prefix, pattern, failure_type, reason in RULES:
        if prefix is not None and not (enhanced == prefix or (prefix.endswith(".") and enhanced.startswith(prefix))):
            continue
        if pattern is not None and not re.search(pattern, lowered):
            continue
        return Classification(failure_type or default_type, reason, detail, is_bounce=True)
    return Classification(default_type, FailureReason.UNDEFINED, detail, is_bounce=True)


def _decoded(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def classify_exception(exc: BaseException) -> Classification:
    """Classifies an exception raised while handing one message to the email backend."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        code, text = next(iter(exc.recipients.values()), (550, b""))
        return classify_reply(code, _decoded(text))
    if isinstance(exc, smtplib.SMTPSenderRefused):
        # Our own sender address was refused: not the recipient's doing.
        result = classify_reply(exc.smtp_code, _decoded(exc.smtp_error))
        return Classification(result.failure_type, FailureReason.REFUSED, result.detail, is_bounce=False)
    if isinstance(exc, smtplib.SMTPResponseException) and not isinstance(exc, smtplib.SMTPConnectError):
        return classify_reply(exc.smtp_code, _decoded(exc.smtp_error))
    if isinstance(exc, (smtplib.SMTPServerDisconnected, smtplib.SMTPConnectError, OSError)):
        return Classification(FailureType.SOFT, FailureReason.UNREACHABLE, str(exc)[:1000] or type(exc).__name__, is_bounce=False)
    return Classification(FailureType.SOFT, FailureReason.UNDEFINED, f"{type(exc).__name__}: {exc}"[:1000], is_bounce=False)


def is_connection_error(exc: BaseException) -> bool:
    """Whether the connection is unusable after this error (it must be reopened)."""
    return isinstance(exc, (smtplib.SMTPServerDisconnected, smtplib.SMTPConnectError)) or (
        isinstance(exc, OSError) and not isinstance(exc, smtplib.SMTPException)
    )
