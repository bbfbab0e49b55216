"""The one table that turns a delivery failure into Beacon's failure type and reason.

Used for the relay's answer at send time (`deliveries.smtp_errors`) and for asynchronous bounces
(`deliveries.bounces.parse`); docs/bounces.md shows it to people. The rules are read top to bottom:
the first whose enhanced status code (RFC 3463, exact or a class prefix ending in ".") or wording
(a regular expression on the lower-cased text) matches gives the reason, and its failure type or,
when the rule leaves it open, the status class: 4 is soft, 5 is hard. Nothing matching: the class
decides the type and the reason is `undefined`.
"""
import re
from dataclasses import dataclass

from deliveries.models import FailureReason, FailureType


@dataclass(frozen=True)
class Rule:
    status: str | None
    wording: str | None
    failure_type: str | None
    reason: str

    def matches(self, status: str, lowered_text: str) -> bool:
        if self.status is not None:
            prefix_match = self.status.endswith(".") and status.startswith(self.status)
            if status != self.status and not prefix_match:
                return False
        return self.wording is None or re.search(self.wording, lowered_text) is not None


RULES: tuple[Rule, ...] = (
    Rule("5.2.2", None, FailureType.SOFT, FailureReason.MAILBOX_FULL),
    Rule("4.2.2", None, FailureType.SOFT, FailureReason.MAILBOX_FULL),
    Rule("5.1.1", None, FailureType.HARD, FailureReason.USER_UNKNOWN),
    Rule("5.1.2", None, FailureType.HARD, FailureReason.INVALID_DOMAIN),
    # RFC 7505 gives 5.1.10 to a domain that takes no mail (null MX); Exchange Online uses it for
    # "RecipientNotFound".
    Rule("5.1.10", r"null mx|domain", FailureType.HARD, FailureReason.INVALID_DOMAIN),
    Rule("5.1.10", None, FailureType.HARD, FailureReason.USER_UNKNOWN),
    Rule("5.4.4", None, FailureType.HARD, FailureReason.INVALID_DOMAIN),
    Rule("5.1.6", None, FailureType.HARD, FailureReason.ACCOUNT_DISABLED),
    Rule("5.2.1", None, FailureType.HARD, FailureReason.ACCOUNT_DISABLED),
    Rule("4.4.", None, FailureType.SOFT, FailureReason.UNREACHABLE),
    Rule("5.7.", None, FailureType.HARD, FailureReason.REFUSED),
    Rule("4.7.", None, FailureType.SOFT, FailureReason.REFUSED),
    Rule(None, r"quota|mailbox (is )?full|insufficient storage|out of storage|storage (space )?(exceeded|full)", None, FailureReason.MAILBOX_FULL),
    Rule(None, r"(host|domain)( name)? not found|name service error|no mx|unrouteable|domain\b.{0,80}\b(does not exist|not exist)|\bdns\b", None, FailureReason.INVALID_DOMAIN),
    Rule(None, r"disabled|inactive|suspended|deactivated|no longer (active|in use|available)", None, FailureReason.ACCOUNT_DISABLED),
    Rule(
        None,
        r"user unknown|no such (user|mailbox|recipient)|unknown (user|recipient|address)|does not exist|doesn't exist"
        r"|mailbox unavailable|recipient rejected|recipient not found|recipientnotfound|invalid recipient"
        r"|address rejected|not a valid mailbox|mailbox not found|doesn't have an? .{1,40} account",
        None,
        FailureReason.USER_UNKNOWN,
    ),
    # The address may be fine and its server down: never more than soft.
    Rule(None, r"connection (timed out|refused)|timed out|no route to host|unreachable|too many hops|mail loop|expired", FailureType.SOFT, FailureReason.UNREACHABLE),
    Rule(None, r"spam|blocked|policy|denied|blacklist|blocklist|reputation|dmarc", None, FailureReason.REFUSED),
)
# An ARF feedback-loop report: the person told their provider the message was unwanted. Hard, because
# the address must get no more mail (it is denylisted), although the message itself was delivered.
COMPLAINT = (FailureType.HARD, FailureReason.COMPLAINT)

ENHANCED_STATUS_RE = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")


def classify(status_class: int, enhanced_status: str, text: str) -> tuple[str, str]:
    """(failure type, reason) for a failure of class 4 (temporary) or 5 (permanent)."""
    lowered = text.lower()
    default_type = FailureType.SOFT if status_class == 4 else FailureType.HARD
    for rule in RULES:
        if rule.matches(enhanced_status, lowered):
            return rule.failure_type or default_type, rule.reason
    return default_type, FailureReason.UNDEFINED
