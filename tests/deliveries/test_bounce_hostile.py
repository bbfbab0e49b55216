"""Whatever arrives at the bounce address, parse_bounce answers with a clean report, never raises."""
import random
from pathlib import Path

import pytest

from deliveries.bounces.message import MAX_PARTS
from deliveries.bounces.parse import BounceKind, BounceReport, parse_bounce
from deliveries.models import FailureReason, FailureType

CORPUS = Path(__file__).parent / "bounces"


def assert_clean(report: BounceReport) -> None:
    assert isinstance(report, BounceReport) and report.kind in BounceKind
    strings = [report.original_message_id]
    for recipient in report.recipients:
        strings += [recipient.address, recipient.status, recipient.diagnostic, recipient.action]
        assert recipient.failure_type in FailureType.values and recipient.failure_reason in FailureReason.values
        assert len(recipient.address) <= 254 and len(recipient.diagnostic) <= 1000
    for value in strings:
        assert "\x00" not in value
        value.encode("utf-8")  # no lone surrogate


def dsn(status_part: str, *, report_headers: str = "", text_charset: str = "us-ascii", text: str = "The mail system") -> bytes:
    return (
        "From: MAILER-DAEMON@mail.example.org\nSubject: Undelivered Mail Returned to Sender\nMIME-Version: 1.0\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="XX"\n\n'
        f"--XX\nContent-Type: text/plain; charset={text_charset}\n\n{text}\n\n"
        f"--XX\nContent-Type: message/delivery-status\n{report_headers}\n{status_part}\n--XX--\n"
    ).encode("utf-8", "surrogateescape")


@pytest.mark.parametrize("seed", range(5))
def test_random_bytes_are_not_a_bounce(seed):
    raw = random.Random(seed).randbytes(20_000)

    report = parse_bounce(raw)

    assert_clean(report)
    assert report.kind == BounceKind.NOT_A_BOUNCE


@pytest.mark.parametrize("raw", [b"", b"\x00" * 1000, b"\r\n" * 1000, b":" * 10_000, "Subject: \ud800\x00\n\nhi\udcff", None, 42])
def test_empty_and_odd_inputs_are_not_a_bounce(raw):
    report = parse_bounce(raw)

    assert_clean(report)
    assert report.kind == BounceKind.NOT_A_BOUNCE


def test_a_huge_bounce_is_read_from_its_start():
    raw = (CORPUS / "postfix_user_unknown.eml").read_bytes().replace(
        b"Date: Sun, 29 Nov 2026 10:00:58 +0000\n", b"Date: Sun, 29 Nov 2026 10:00:58 +0000\n\n" + b"x" * 80 + b"\n" * 1 + (b"y" * 999 + b"\n") * 30_000
    )
    assert len(raw) > 20_000_000 // 2

    report = parse_bounce(raw)

    assert_clean(report)
    assert [(r.address, r.status) for r in report.recipients] == [("alice@example.org", "5.1.1")]


def test_a_huge_header_line_is_bounded():
    report = parse_bounce(b"From: MAILER-DAEMON@x\nX-Failed-Recipients: " + b"a" * 2_000_000 + b"@example.com\nSubject: failure notice\n\nhi")

    assert_clean(report)


@pytest.mark.parametrize("depth", [50, 5_000])
def test_deep_mime_nesting_is_a_clean_result(depth):
    opening = "".join(f'Content-Type: multipart/mixed; boundary="b{i}"\n\n--b{i}\n' for i in range(depth))
    closing = "".join(f"\n--b{i}--\n" for i in reversed(range(depth)))
    status = "Content-Type: message/delivery-status\n\nReporting-MTA: dns; x\n\nFinal-Recipient: rfc822; deep@example.org\nAction: failed\nStatus: 5.1.1\n"
    raw = f"From: MAILER-DAEMON@mail.example.org\nMIME-Version: 1.0\n{opening}{status}{closing}".encode()

    report = parse_bounce(raw)

    assert_clean(report)
    assert report.kind in (BounceKind.NOT_A_BOUNCE, BounceKind.BOUNCE)


def test_a_report_nested_a_few_levels_down_is_still_read():
    inner = dsn("Final-Recipient: rfc822; nested@example.org\nAction: failed\nStatus: 5.1.1\n").decode()
    raw = ('MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary="OUT"\n\n--OUT\n' + inner.split("MIME-Version: 1.0\n", 1)[1] + "\n--OUT--\n").encode()

    assert [r.address for r in parse_bounce(raw).recipients] == ["nested@example.org"]


def test_thousands_of_recipient_blocks_are_bounded():
    blocks = "".join(f"Final-Recipient: rfc822; user{i}@example.org\nAction: failed\nStatus: 5.1.1\n\n" for i in range(5_000))

    report = parse_bounce(dsn("Reporting-MTA: dns; x\n\n" + blocks))

    assert_clean(report)
    assert 0 < len(report.recipients) <= MAX_PARTS


@pytest.mark.parametrize(
    "charset, text",
    [("x-no-such-charset", "caf\xe9"), ("utf-7", "+AGEAYgBj-"), ("utf-8", "\udcff\udcfe broken"), ('"', "quote"), ("utf-16", "\x00\x00")],
)
def test_bad_charsets_in_a_report_are_read_cleanly(charset, text):
    raw = dsn(
        "Final-Recipient: rfc822; \udce9l\udce8ve@example.org\nAction: failed\nStatus: 5.2.2\nDiagnostic-Code: smtp; 552 \udcff\x00 full",
        text_charset=charset, text=text,
    )

    report = parse_bounce(raw)

    assert_clean(report)
    [recipient] = report.recipients
    assert (recipient.status, recipient.failure_reason) == ("5.2.2", FailureReason.MAILBOX_FULL)


def test_a_base64_report_part_that_does_not_decode_is_a_clean_result():
    raw = dsn("!!!! not base64 \x00 ====\n", report_headers="Content-Transfer-Encoding: base64\n")

    assert_clean(parse_bounce(raw))


@pytest.mark.parametrize(
    "subject",
    ["=?x-unknown?q?Undeliverable?=", "=?utf-8?b?!!!?=", "=?utf-8?q?Out_of_office=FF=FE?="],
)
def test_broken_encoded_words_are_read_cleanly(subject):
    assert_clean(parse_bounce(f"From: someone@example.org\nSubject: {subject}\n\nhello".encode()))


def test_a_forged_verp_address_matches_nothing():
    raw = (CORPUS / "exim_user_unknown.eml").read_bytes().replace(b"DgVoAD22a8X1anktbaQ", b"DgVoAD22a8X1anktbaR")

    report = parse_bounce(raw)

    assert report.kind == BounceKind.BOUNCE and report.verp_message_id is None
