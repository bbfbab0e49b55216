import smtplib
import socket

import pytest

from deliveries.models import FailureReason as R
from deliveries.models import FailureType as T
from deliveries.smtp_errors import classify_exception, classify_reply, is_connection_error


@pytest.mark.parametrize(
    "code, text, failure_type, reason",
    [
        (550, "5.1.1 <bob@example.com>: Recipient address rejected: User unknown", T.HARD, R.USER_UNKNOWN),
        (550, "5.1.2 Bad destination system address", T.HARD, R.INVALID_DOMAIN),
        (550, "Host or domain name not found. Name service error", T.HARD, R.INVALID_DOMAIN),
        (452, "4.2.2 Mailbox full", T.SOFT, R.MAILBOX_FULL),
        (552, "5.2.2 Mailbox full, over quota", T.SOFT, R.MAILBOX_FULL),
        (550, "5.2.1 The email account that you tried to reach is disabled", T.HARD, R.ACCOUNT_DISABLED),
        (554, "5.7.1 Message rejected as spam", T.HARD, R.REFUSED),
        (421, "4.7.0 Try again later, rate limited", T.SOFT, R.REFUSED),
        (451, "4.4.1 No answer from host", T.SOFT, R.UNREACHABLE),
        (450, "Requested mail action not taken: mailbox unavailable", T.SOFT, R.USER_UNKNOWN),
        (550, "No such user here", T.HARD, R.USER_UNKNOWN),
        (451, "Temporary local problem", T.SOFT, R.UNDEFINED),
        (554, "Transaction failed", T.HARD, R.UNDEFINED),
    ],
)
def test_replies_are_classified(code, text, failure_type, reason):
    result = classify_reply(code, text)

    assert (result.failure_type, result.failure_reason) == (failure_type, reason)
    assert result.is_bounce
    assert str(code) in result.detail


def test_recipient_refused_uses_the_rcpt_answer():
    exc = smtplib.SMTPRecipientsRefused({"a@example.com": (550, b"5.1.1 User unknown")})

    result = classify_exception(exc)

    assert (result.failure_type, result.failure_reason, result.is_bounce) == (T.HARD, R.USER_UNKNOWN, True)


def test_data_error_is_classified_from_its_reply():
    result = classify_exception(smtplib.SMTPDataError(552, b"5.2.2 Quota exceeded"))

    assert (result.failure_type, result.failure_reason) == (T.SOFT, R.MAILBOX_FULL)


def test_sender_refused_is_not_the_recipients_bounce():
    result = classify_exception(smtplib.SMTPSenderRefused(553, b"5.7.1 Sender not allowed", "news@example.com"))

    assert (result.failure_type, result.failure_reason, result.is_bounce) == (T.HARD, R.REFUSED, False)


@pytest.mark.parametrize(
    "exc",
    [ConnectionRefusedError(111, "Connection refused"), socket.timeout("timed out"), smtplib.SMTPServerDisconnected("gone"),
     smtplib.SMTPConnectError(421, b"busy")],
)
def test_connection_problems_are_soft_unreachable_and_not_bounces(exc):
    result = classify_exception(exc)

    assert (result.failure_type, result.failure_reason, result.is_bounce) == (T.SOFT, R.UNREACHABLE, False)
    assert is_connection_error(exc)


def test_a_refused_recipient_keeps_the_connection_usable():
    assert not is_connection_error(smtplib.SMTPRecipientsRefused({"a@example.com": (550, b"no")}))
