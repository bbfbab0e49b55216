"""The failure table (deliveries.bounces.classify.RULES): its readings, and docs/bounces.md showing it."""
from pathlib import Path

import pytest

from deliveries.bounces.classify import RULES, classify
from deliveries.bounces.parse import parse_bounce
from deliveries.models import FailureReason as R
from deliveries.models import FailureType as T
from deliveries.smtp_errors import classify_reply

DOCS = Path(__file__).resolve().parents[2] / "docs" / "bounces.md"


@pytest.mark.parametrize(
    "status_class, status, text, expected",
    [
        (5, "5.1.10", "RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup", (T.HARD, R.USER_UNKNOWN)),
        (5, "5.1.10", "Recipient address has null MX", (T.HARD, R.INVALID_DOMAIN)),
        (5, "5.1.6", "Mailbox has moved", (T.HARD, R.ACCOUNT_DISABLED)),
        (5, "5.2.2", "over quota", (T.SOFT, R.MAILBOX_FULL)),
        (5, "", "The recipient's inbox is out of storage space", (T.HARD, R.MAILBOX_FULL)),
        (5, "", "Unrouteable address", (T.HARD, R.INVALID_DOMAIN)),
        (5, "", "domain example.invalid does not exist", (T.HARD, R.INVALID_DOMAIN)),
        (5, "", "This user doesn't have a yahoo.com account", (T.HARD, R.USER_UNKNOWN)),
        (5, "", "This account has been deactivated", (T.HARD, R.ACCOUNT_DISABLED)),
        (5, "", "retry timeout exceeded, message expired", (T.SOFT, R.UNREACHABLE)),
        (5, "", "Connection refused", (T.SOFT, R.UNREACHABLE)),
        (5, "", "Listed on a DNSBL blocklist", (T.HARD, R.REFUSED)),
        (4, "", "Greylisted, try again later", (T.SOFT, R.UNDEFINED)),
        (5, "", "Transaction failed", (T.HARD, R.UNDEFINED)),
    ],
)
def test_the_table_reads_statuses_and_wordings(status_class, status, text, expected):
    assert classify(status_class, status, text) == expected


def test_send_time_errors_and_bounces_share_the_table():
    text = "5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup"

    assert (classify_reply(550, text).failure_type, classify_reply(550, text).failure_reason) == classify(5, "5.1.10", text)


@pytest.mark.parametrize(
    "status_field, diagnostic, expected_status",
    [
        ("5.0.0", "smtp; 550-5.1.1 The email account does not exist", "5.1.1"),
        ("5.1.2", "smtp; 550 5.1.1 whatever", "5.1.2"),
        ("5.0.0", "smtp; 450 4.2.2 over quota", "5.0.0"),
        ("", "smtp; 552 5.2.2 full", "5.2.2"),
    ],
)
def test_a_generic_status_gives_way_to_the_diagnostics_precise_one(status_field, diagnostic, expected_status):
    raw = (
        "From: MAILER-DAEMON@x.example\nMIME-Version: 1.0\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\n\n'
        "--B\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; x\n\n"
        f"Final-Recipient: rfc822; a@example.org\nAction: failed\nStatus: {status_field}\nDiagnostic-Code: {diagnostic}\n\n--B--\n"
    ).encode()

    [recipient] = parse_bounce(raw).recipients

    assert recipient.status == expected_status


def table_rows() -> list[str]:
    """The rows docs/bounces.md must show, rendered from RULES."""
    rows = []
    for rule in RULES:
        status = "" if rule.status is None else f"`{rule.status}*`" if rule.status.endswith(".") else f"`{rule.status}`"
        wording = "" if rule.wording is None else "`" + rule.wording.replace("|", "\\|") + "`"
        failure_type = T(rule.failure_type).label.lower() if rule.failure_type else "by class"
        rows.append(f"| {status} | {wording} | {failure_type} | {R(rule.reason).label.lower()} |")
    return rows


def test_the_documented_table_is_the_codes_table_in_order():
    lines = DOCS.read_text().splitlines()
    start = lines.index("| Status | Wording | Type | Reason |") + 2
    documented = lines[start : lines.index("", start)]

    assert documented == table_rows()
