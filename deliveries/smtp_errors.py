"""Synchronous SMTP errors at send time, normalized into Beacon's failure type and reason.

The table is `deliveries.bounces.classify.RULES`, shared with asynchronous bounces (docs/bounces.md);
the basic reply code gives the status class (4xx soft, 5xx hard). Errors of the
connection to our own relay (refused, timeout, disconnected) are soft `unreachable` and are not the
recipient's fault, so they do not count as a bounce of the address.
"""
import smtplib
from dataclasses import dataclass

from deliveries.bounces.classify import ENHANCED_STATUS_RE, classify
from deliveries.models import FailureReason, FailureType


@dataclass(frozen=True)
class Classification:
    failure_type: str
    failure_reason: str
    detail: str
    # Whether the answer is about the recipient's address (then it counts towards quarantine).
    is_bounce: bool


def classify_reply(code: int, text: str) -> Classification:
    """Classifies one SMTP reply (e.g. 550, "5.1.1 User unknown")."""
    enhanced_match = ENHANCED_STATUS_RE.search(text)
    enhanced = enhanced_match.group(0) if enhanced_match else ""
    failure_type, reason = classify(4 if 400 <= code < 500 else 5, enhanced, text)
    return Classification(failure_type, reason, f"{code} {text}".strip()[:1000], is_bounce=True)


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
