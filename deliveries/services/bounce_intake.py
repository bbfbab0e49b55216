"""The bounce mailbox read: each message that came back is kept, matched to its Message, recorded, and
only then removed from the mailbox.

Per message, in one transaction: its SHA-256 is looked up (found: it was committed by a run that died
before removing it, so it counts nothing again and is only removed); it is parsed
(`deliveries.bounces.parse`, which never raises), matched to its Message by the signed VERP token first,
else by the returned message's Message-ID against `Message.smtp_message_id`; kept as a `ReturnedMail`
row (matched, unmatched, or ignored: an auto-reply, not a bounce, a delay); and a matched bounce or
complaint goes to `returns.returns_record`, which fails the message, moves the counters and feeds the
quarantine rule. After the commit the mailbox removes it.

Two runs never read at once: a run takes a lease on the `BounceMailboxState` row (renewed after each
message, so a run that died frees it after LEASE) and leaves with how it ended, which the Settings page
shows. A run reads at most `limit` messages (the periodic task runs every minute).
"""
from __future__ import annotations

import hashlib
import itertools
import json
import logging
import uuid
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from email.parser import BytesHeaderParser

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from beacon.exceptions import ServiceError
from beacon.mailbox_url import mailbox_url_parse
from beacon.storable import storable
from deliveries.bounces.mailbox import mailbox_open
from deliveries.bounces.message import MAX_BOUNCE_BYTES, header
from deliveries.bounces.parse import BounceKind, BounceReport, FailedRecipient, parse_bounce
from deliveries.models import (
    BOUNCE_MAILBOX_STATE,
    BounceMailboxState,
    FailureType,
    Message,
    ReturnedMail,
    ReturnedMailOutcome,
)
from deliveries.services.returns import BOUNCE, ReturnedFailure, ReturnsRecorded, returns_record
from profiles.services.quarantine import COMPLAINT

logger = logging.getLogger(__name__)

BATCH_LIMIT = 500
# Longer than the periodic task's time limit: a run that died frees the mailbox after this.
LEASE = timedelta(minutes=5)
# The parser reads no further; the rest is the returned message's body, never needed.
RAW_KEPT_BYTES = MAX_BOUNCE_BYTES
MAX_RECIPIENTS_KEPT = 50
_HEADER_BYTES = 64 * 1024
# What `returned_mail_intake` says of a message already stored by an earlier run.
ALREADY_STORED = "already_stored"


class MailboxBusy(ServiceError):
    """Another run holds the bounce mailbox."""

    status_code = 409


@dataclass
class BounceFetch:
    """What one run did."""

    read: int = 0
    matched: int = 0
    unmatched: int = 0
    ignored: int = 0
    # Read again after a run committed them but died before removing them: counted nothing.
    already_stored: int = 0
    messages_failed: int = 0
    complaints: int = 0

    def __str__(self) -> str:
        return (
            f"read {self.read}, matched {self.matched}, unmatched {self.unmatched}, ignored {self.ignored}, "
            f"already stored {self.already_stored}; messages failed {self.messages_failed}, complaints {self.complaints}"
        )


@dataclass(frozen=True)
class _Reading:
    report: BounceReport
    subject: str
    sender: str


def _read(raw: bytes) -> _Reading:
    """The parse and the headers an operator scans a list by; never raises (hostile mail is not a bounce)."""
    report = parse_bounce(raw)
    try:
        headers = BytesHeaderParser().parsebytes(raw[:_HEADER_BYTES])
        return _Reading(report, header(headers, "Subject")[:300], header(headers, "From")[:300])
    except Exception:  # a header block no parser makes sense of still leaves the message kept
        logger.warning("unreadable headers at the bounce address", exc_info=True)
        return _Reading(report, "", "")


def _matched_message(report: BounceReport) -> Message | None:
    if report.verp_message_id is not None:
        message = Message.objects.filter(pk=report.verp_message_id).only("id", "email").first()
        if message is not None:
            return message
    if report.original_message_id:
        return Message.objects.filter(smtp_message_id=report.original_message_id).only("id", "email").order_by("pk").first()
    return None


def _failed_recipient(report: BounceReport, message: Message | None) -> FailedRecipient | None:
    """The recipient whose failure counts: the matched message's address if the report names it, else the
    first that failed (a delay is no failure)."""
    failed = [r for r in report.recipients if r.failure_type in (FailureType.HARD, FailureType.SOFT)]
    if message is not None:
        own = [r for r in failed if r.address.lower() == message.email.lower()]
        failed = own or failed
    return failed[0] if failed else None


def _summary(report: BounceReport) -> dict:
    return {
        "recipients": [asdict(recipient) for recipient in report.recipients[:MAX_RECIPIENTS_KEPT]],
        "verp_message_id": report.verp_message_id,
        "original_message_id": report.original_message_id,
    }


@dataclass(frozen=True)
class Intake:
    # A `ReturnedMailOutcome`, or ALREADY_STORED when an earlier run kept the message.
    outcome: str
    recorded: ReturnsRecorded = ReturnsRecorded()


def returned_mail_intake(*, raw: bytes, received_at: datetime | None = None) -> Intake:
    """Keeps, matches and records one message read at the bounce address, in one transaction."""
    received_at = received_at or timezone.now()
    digest = hashlib.sha256(raw).hexdigest()
    if ReturnedMail.objects.filter(sha256=digest).exists():
        return Intake(ALREADY_STORED)
    reading = _read(raw)
    report = reading.report
    try:
        with transaction.atomic():
            message = _matched_message(report)
            recipient = _failed_recipient(report, message) if report.kind in (BounceKind.BOUNCE, BounceKind.COMPLAINT) else None
            if recipient is None:
                outcome = ReturnedMailOutcome.IGNORED
            else:
                outcome = ReturnedMailOutcome.MATCHED if message is not None else ReturnedMailOutcome.UNMATCHED
            ReturnedMail.objects.create(
                sha256=digest,
                received_at=received_at,
                kind=report.kind,
                outcome=outcome,
                message=message,
                failure_type=recipient.failure_type if recipient else "",
                failure_reason=recipient.failure_reason if recipient else "",
                subject=storable(reading.subject),
                sender=storable(reading.sender),
                summary=_summary(report),
                raw=raw[:RAW_KEPT_BYTES],
                size=len(raw),
            )
            recorded = ReturnsRecorded()
            if outcome == ReturnedMailOutcome.MATCHED:
                recorded = returns_record([
                    ReturnedFailure(
                        message_id=message.pk,
                        kind=COMPLAINT if report.kind == BounceKind.COMPLAINT else BOUNCE,
                        failure_type=recipient.failure_type,
                        failure_reason=recipient.failure_reason,
                        detail=recipient.diagnostic or recipient.status,
                    )
                ], at=received_at)
    except IntegrityError:
        # Another reader stored the same message meanwhile (the lease keeps runs apart; a hand-made call may not).
        if ReturnedMail.objects.filter(sha256=digest).exists():
            return Intake(ALREADY_STORED)
        raise
    return Intake(outcome, recorded)


def returned_unmatched_keep(
    *, source: str, event_key: str, kind: str, recipient: str, failure_type: str = "", failure_reason: str = "",
    detail: str = "", received_at: datetime | None = None,
) -> bool:
    """Keeps a bounce or complaint that an ESP reported by webhook for no message Beacon knows, beside the
    mailbox's, for the operators to look at. The provider's key of the event makes a replay kept once;
    returns whether it was new. What is kept is the report as read (no raw mail exists)."""
    summary = {"source": source, "event_key": event_key, "recipients": [{"address": recipient, "diagnostic": detail}]}
    raw = json.dumps(summary, ensure_ascii=False).encode()
    _, created = ReturnedMail.objects.get_or_create(
        sha256=hashlib.sha256(f"esp:{source}:{event_key}".encode()).hexdigest(),
        defaults={
            "received_at": received_at or timezone.now(),
            "kind": BounceKind.COMPLAINT if kind == COMPLAINT else BounceKind.BOUNCE,
            "outcome": ReturnedMailOutcome.UNMATCHED,
            "failure_type": failure_type,
            "failure_reason": failure_reason,
            "subject": storable(f"{source} webhook: {kind}")[:300],
            "sender": storable(source)[:300],
            "summary": summary,
            "raw": raw,
            "size": len(raw),
        },
    )
    return created


def _lease_take(holder: str, now: datetime) -> bool:
    BounceMailboxState.objects.get_or_create(name=BOUNCE_MAILBOX_STATE)
    free = Q(lease_until__isnull=True) | Q(lease_until__lt=now)
    return BounceMailboxState.objects.filter(free, name=BOUNCE_MAILBOX_STATE).update(lease_holder=holder, lease_until=now + LEASE) == 1


def _lease_renew(holder: str) -> bool:
    return BounceMailboxState.objects.filter(name=BOUNCE_MAILBOX_STATE, lease_holder=holder).update(lease_until=timezone.now() + LEASE) == 1


def _lease_release(holder: str, fetch: BounceFetch, error: str) -> None:
    BounceMailboxState.objects.filter(name=BOUNCE_MAILBOX_STATE, lease_holder=holder).update(
        lease_holder="", lease_until=None, last_run_at=timezone.now(), last_counts=asdict(fetch), last_error=storable(error[:2000]),
    )


def bounce_mailbox_fetch(*, limit: int = BATCH_LIMIT) -> BounceFetch | None:
    """Reads up to `limit` messages of BEACON_BOUNCE_MAILBOX; None when the setting is empty.

    Raises MailboxBusy when another run holds the mailbox, and `deliveries.bounces.mailbox.MailboxError`
    when the mailbox cannot be read (what was committed before stays, and is removed next time)."""
    if not settings.BEACON_BOUNCE_MAILBOX:
        return None
    url = mailbox_url_parse(settings.BEACON_BOUNCE_MAILBOX)
    holder = uuid.uuid4().hex
    if not _lease_take(holder, timezone.now()):
        raise MailboxBusy("Another run is reading the bounce mailbox.", code="mailbox_busy")
    fetch = BounceFetch()
    error = ""
    try:
        with mailbox_open(url, ca_file=settings.BEACON_BOUNCE_MAILBOX_CA_FILE) as reader:
            for item in itertools.islice(reader.messages(), limit):
                intake = returned_mail_intake(raw=item.raw)
                fetch.read += 1
                setattr(fetch, intake.outcome, getattr(fetch, intake.outcome) + 1)
                fetch.messages_failed += intake.recorded.messages_failed
                fetch.complaints += intake.recorded.complaints
                reader.remove(item.key)
                if not _lease_renew(holder):
                    break  # held past LEASE: another run may have started; leave the rest to it
    except BaseException as exc:
        error = f"{type(exc).__name__}: {exc}"
        raise
    finally:
        _lease_release(holder, fetch, error)
    return fetch
