"""Writes on deliveries: the status machine, target analysis, sending, proofs.

Status machine (`ALLOWED_TRANSITIONS`): draft → analyzing → ready → sending ⇄ paused → finished |
failed | cancelled. Every change happens under `select_for_update()` in `transaction.atomic()`, writes a
`DeliveryAuditEntry`, and queues follow-up tasks with `transaction.on_commit`.

Sending is at most once per recipient. A batch task reserves messages (`claimed_by` = its task id),
then moves one group of `SEND_FLUSH_SIZE` at a time to status `sending`, committed *before* the group is
handed to SMTP, and records the group's results right after. If the worker dies in between, the
redelivered task (same id) or a later one (after `CLAIM_LEASE`) finds messages still `sending`: they
may have gone out, and SMTP gives no way to ask, so they are marked failed/`interrupted`, never resent.
Reserved messages still `pending` were never handed over and are simply released.
"""
from __future__ import annotations

import hashlib
import logging
import sys
import uuid
from collections import Counter, deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from email.policy import Compat32
from functools import lru_cache

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.mail import EmailMessage, EmailMultiAlternatives, get_connection
from django.core.validators import validate_email
from django.db import transaction
from django.db.models import CharField, F, Q, Value
from django.db.models.functions import Cast, Concat
from django.utils import timezone

from beacon.exceptions import ServiceError, TransitionNotAllowed
from deliveries.content import (
    HONEYPOT_VARIABLE,
    MIRROR_VARIABLE,
    PIXEL_VARIABLE,
    UNSUBSCRIBE_VARIABLE,
    ContentError,
    PreparedContent,
    RenderedMessage,
    prepare_content,
    profile_context,
    render_url_with_context,
)
from deliveries.models import (
    Delivery,
    DeliveryAuditEntry,
    DeliveryStatus,
    FailureReason,
    FailureType,
    Message,
    MessageStatus,
)
from deliveries.smtp_errors import classify_exception, is_connection_error
from profiles.emails import email_domain
from profiles.models import EmailFormat, EmailStatus, List, Profile
from profiles.services import normalize_email, profile_record_bounce
from deliveries.models import TrackedUrl, TrackingMode
from deliveries.tokens import Purpose, make_token

logger = logging.getLogger(__name__)

S = DeliveryStatus
ALLOWED_TRANSITIONS: dict[str, set[str]] = {
    S.DRAFT: {S.ANALYZING, S.CANCELLED},
    S.ANALYZING: {S.READY, S.DRAFT, S.FAILED},
    S.READY: {S.ANALYZING, S.DRAFT, S.SENDING, S.CANCELLED},
    S.SENDING: {S.PAUSED, S.FINISHED, S.FAILED, S.CANCELLED},
    S.PAUSED: {S.SENDING, S.CANCELLED},
    S.FINISHED: set(),
    S.FAILED: set(),
    S.CANCELLED: set(),
}
EDITABLE_STATUSES = {S.DRAFT, S.READY}


class AuditAction:
    CREATED = "created"
    CHANGED = "changed"
    ANALYZED = "analyzed"
    SENT = "sent"
    PAUSED = "paused"
    RESUMED = "resumed"
    CANCELLED = "cancelled"
    FINISHED = "finished"
    PROOF = "proof"


class RelayUnavailable(Exception):
    """The email backend cannot be reached; nothing was sent, the batch can be retried later."""


SEND_FLUSH_SIZE = 20
SENDING_SWITCH_INTERVAL = 0.001
# Longer than a batch task's hard time limit: a claim older than this belongs to a dead worker.
CLAIM_LEASE = timedelta(minutes=15)
ANALYSIS_CHUNK_SIZE = 2000
MAX_PROOF_ADDRESSES = 20


def _audit(delivery: Delivery, action: str, actor=None, **details) -> None:
    DeliveryAuditEntry.objects.create(
        delivery=delivery, action=action, actor=actor if getattr(actor, "pk", None) else None, details=details
    )


def _locked(delivery_id: int) -> Delivery:
    delivery = Delivery.objects.select_for_update().filter(pk=delivery_id).first()
    if delivery is None:
        raise ServiceError("No such delivery.", code="not_found")
    return delivery


def _transition(delivery: Delivery, to_status: str, *, action: str) -> None:
    if to_status not in ALLOWED_TRANSITIONS[delivery.status]:
        raise TransitionNotAllowed(
            f"Cannot {action} a delivery that is {delivery.get_status_display().lower()}.",
        )
    delivery.status = to_status


def _queue_send_batch(delivery_id: int) -> None:
    from deliveries.tasks import delivery_send_batch_task

    transaction.on_commit(lambda: delivery_send_batch_task.delay(delivery_id))


# --- Creation and edition -------------------------------------------------------------------------


def delivery_validate(*, label: str, subject: str, from_email: str, reply_to: str, html: str, text: str) -> None:
    """Raises a ValidationError with field messages for anything that would stop analysis or sending."""
    errors: dict[str, list[str]] = {}
    if not label.strip():
        errors["label"] = ["A label is required."]
    if not subject.strip():
        errors["subject"] = ["A subject is required."]
    for name, value in (("from_email", from_email), ("reply_to", reply_to)):
        if not value.strip() and name == "reply_to":
            continue
        try:
            validate_email(value.strip())
        except ValidationError:
            errors[name] = ["Enter a valid email address."]
    if not html.strip() and not text.strip():
        errors["html"] = ["The delivery needs HTML or text content."]
    else:
        try:
            prepare_content(subject=subject, html=html, text=text, track_opens=False)
        except ContentError as exc:
            errors.update(exc.fields)
    if errors:
        raise ValidationError(errors)


def _validate(delivery: Delivery) -> None:
    delivery_validate(
        label=delivery.label, subject=delivery.subject, from_email=delivery.from_email,
        reply_to=delivery.reply_to, html=delivery.html, text=delivery.text,
    )


def delivery_save(*, delivery: Delivery, actor=None, changed: list[str] | None = None) -> Delivery:
    """Saves a delivery edited as a whole (the admin form): a new one is created, an existing one must
    still be editable and goes back to draft."""
    _validate(delivery)
    with transaction.atomic():
        if delivery.pk is None:
            delivery.created_by = actor if getattr(actor, "pk", None) else None
            delivery.save()
            _audit(delivery, AuditAction.CREATED, actor)
            return delivery
        current = _locked(delivery.pk)
        if current.status not in EDITABLE_STATUSES:
            raise TransitionNotAllowed(f"A delivery that is {current.get_status_display().lower()} cannot be edited.")
        delivery.status = DeliveryStatus.DRAFT
        delivery.save()
        _audit(delivery, AuditAction.CHANGED, actor, fields=changed or [])
    return delivery


def delivery_create(*, actor=None, lists: list[List] | None = None, **fields) -> Delivery:
    delivery = Delivery(**fields, created_by=actor if getattr(actor, "pk", None) else None)
    _validate(delivery)
    with transaction.atomic():
        delivery.save()
        if lists:
            delivery.lists.set(lists)
        _audit(delivery, AuditAction.CREATED, actor)
    return delivery


def delivery_update(*, delivery_id: int, actor=None, lists: list[List] | None = None, **fields) -> Delivery:
    """Edits a draft or ready delivery; a ready one goes back to draft (it must be analyzed again)."""
    with transaction.atomic():
        delivery = _locked(delivery_id)
        if delivery.status not in EDITABLE_STATUSES:
            raise TransitionNotAllowed(f"A delivery that is {delivery.get_status_display().lower()} cannot be edited.")
        changed = [name for name, value in fields.items() if getattr(delivery, name) != value]
        for name in changed:
            setattr(delivery, name, fields[name])
        if lists is not None and {item.pk for item in lists} != set(delivery.lists.values_list("pk", flat=True)):
            delivery.lists.set(lists)
            changed.append("lists")
        _validate(delivery)
        if changed:
            delivery.status = DeliveryStatus.DRAFT
            delivery.save()
            _audit(delivery, AuditAction.CHANGED, actor, fields=changed)
    return delivery


def delivery_delete(*, delivery_id: int, actor=None) -> None:
    with transaction.atomic():
        delivery = _locked(delivery_id)
        if delivery.status not in EDITABLE_STATUSES:
            raise TransitionNotAllowed(f"A delivery that is {delivery.get_status_display().lower()} cannot be deleted.")
        delivery.delete()


# --- Target analysis ------------------------------------------------------------------------------


HONEYPOT_LABEL = "Hidden honeypot link (machine clicks only)"


def _has_honeypot(delivery: Delivery) -> bool:
    """Whether the delivery's HTML gets the hidden honeypot link: only where clicks are tracked."""
    return delivery.track_clicks and bool(delivery.html.strip())


def _found_links_to_rows(delivery: Delivery, prepared: PreparedContent) -> list[TrackedUrl]:
    rows = [
        TrackedUrl(
            delivery=delivery,
            url=link.url,
            label=link.label,
            mode=TrackingMode.TRACKED,
            position=link.position,
            in_html=link.in_html,
            in_text=link.in_text,
            is_personalized=link.is_personalized,
        )
        for link in prepared.parsed.links
    ]
    rows.append(TrackedUrl(delivery=delivery, url=UNSUBSCRIBE_VARIABLE, label="Opt-out link", mode=TrackingMode.OPT_OUT))
    rows.append(TrackedUrl(delivery=delivery, url=MIRROR_VARIABLE, label="Mirror page link", mode=TrackingMode.MIRROR))
    if _has_honeypot(delivery):
        rows.append(
            TrackedUrl(
                delivery=delivery, url=f"{settings.BEACON_PUBLIC_URL}/", label=HONEYPOT_LABEL,
                mode=TrackingMode.HONEYPOT, in_html=True,
            )
        )
    return rows


def _create_audience_messages(delivery: Delivery) -> tuple[int, Counter]:
    """One message per distinct profile of the delivery's lists, excluded ones ignored with a reason.

    Streams the audience and writes it in chunks, so memory stays flat for large lists.
    """
    profiles = (
        Profile.objects.filter(memberships__list__deliveries=delivery)
        .distinct()
        .order_by("id")
        .values_list("id", "email", "email_status", "email_format")
    )
    chunk: list[Message] = []
    seen: set[str] = set()
    excluded: Counter = Counter()
    population = 0
    for profile_id, email, email_status, email_format in profiles.iterator(chunk_size=ANALYSIS_CHUNK_SIZE):
        population += 1
        normalized = normalize_email(email).lower()
        reason = ""
        try:
            validate_email(normalized)
        except ValidationError:
            reason = FailureReason.INVALID_ADDRESS
        if not reason and email_status == EmailStatus.DENYLISTED:
            reason = FailureReason.DENYLISTED
        elif not reason and email_status == EmailStatus.QUARANTINED:
            reason = FailureReason.QUARANTINED
        elif not reason and normalized in seen:
            reason = FailureReason.DUPLICATE
        seen.add(normalized)
        message = Message(delivery=delivery, profile_id=profile_id, email=email, email_format=email_format)
        if reason:
            message.status = MessageStatus.IGNORED
            message.failure_type = FailureType.IGNORED
            message.failure_reason = reason
            excluded[str(reason)] += 1
        chunk.append(message)
        if len(chunk) >= ANALYSIS_CHUNK_SIZE:
            Message.objects.bulk_create(chunk)
            chunk = []
    Message.objects.bulk_create(chunk)
    return population, excluded


def delivery_analyze(*, delivery_id: int, actor=None) -> Delivery:
    """Target analysis: checks the content, finds its links, builds the delivery log.

    A template error leaves the delivery in draft with `analysis_error` set and raises a 400.
    """
    with transaction.atomic():
        delivery = _locked(delivery_id)
        _transition(delivery, DeliveryStatus.ANALYZING, action="analyze")
        delivery.save(update_fields=["status", "updated_at"])
    try:
        prepared = _prepare(delivery, honeypot=_has_honeypot(delivery))
        _check_renders(delivery, prepared)
    except ContentError as exc:
        with transaction.atomic():
            delivery = _locked(delivery_id)
            delivery.status = DeliveryStatus.DRAFT
            delivery.analysis_error = str(exc)
            delivery.save(update_fields=["status", "analysis_error", "updated_at"])
            _audit(delivery, AuditAction.ANALYZED, actor, error=str(exc))
        raise ServiceError(f"The content has a template error. {exc}", code="template_error", fields=exc.fields)
    try:
        with transaction.atomic():
            delivery = _locked(delivery_id)
            if delivery.status != DeliveryStatus.ANALYZING:
                raise TransitionNotAllowed("The delivery changed during analysis.")
            Message.objects.filter(delivery=delivery).delete()
            TrackedUrl.objects.filter(delivery=delivery).delete()
            TrackedUrl.objects.bulk_create(_found_links_to_rows(delivery, prepared))
            population, excluded = _create_audience_messages(delivery)
            delivery.initial_population = population
            delivery.excluded_by_cause = dict(sorted(excluded.items()))
            delivery.to_deliver = population - sum(excluded.values())
            delivery.processed = delivery.success = delivery.errors = 0
            delivery.analysis_error = ""
            delivery.analyzed_at = timezone.now()
            delivery.status = DeliveryStatus.READY
            delivery.save()
            _audit(
                delivery, AuditAction.ANALYZED, actor,
                initial_population=population, to_deliver=delivery.to_deliver, excluded=delivery.excluded_by_cause,
            )
    except Exception as exc:
        if not isinstance(exc, TransitionNotAllowed):
            Delivery.objects.filter(pk=delivery_id, status=DeliveryStatus.ANALYZING).update(
                status=DeliveryStatus.DRAFT, analysis_error=f"Analysis failed: {exc}"
            )
        raise
    return delivery


# --- Rendering ------------------------------------------------------------------------------------


@dataclass
class SendContent:
    """A delivery's content and links, prepared once per send; `render` is the per-message work."""

    delivery_id: int
    prepared: PreparedContent
    # One entry per found link, in `prepared.parsed.links` order: (TrackedUrl id, URL template, personalized)
    links: list[tuple[int, str, bool]]
    optout_url_id: int
    mirror_url_id: int
    # 0 for a delivery without one (clicks not tracked, or analyzed before honeypots existed).
    honeypot_url_id: int
    track_opens: bool
    track_clicks: bool
    mirror_page: bool
    public_url: str

    def render(self, *, message_id: int, profile: Profile | None, text_only: bool) -> RenderedMessage:
        return self.render_with_unsubscribe(message_id=message_id, profile=profile, text_only=text_only)[0]

    def render_with_unsubscribe(self, *, message_id: int, profile: Profile | None, text_only: bool) -> tuple[RenderedMessage, str]:
        """The message and its opt-out URL (also needed for the List-Unsubscribe header)."""
        profile_values = profile_context(profile)
        base = self.public_url
        if self.track_clicks:
            per_link = [f"{base}/r/{make_token(Purpose.CLICK, message_id, url_id)}" for url_id, _, _ in self.links]
        else:
            per_link = [
                render_url_with_context(url, profile_values) if personalized else url for _, url, personalized in self.links
            ]
        parsed = self.prepared.parsed
        link_urls = [per_link[index] for index in parsed.html_link_indexes]
        link_urls += [per_link[index] for index in parsed.text_link_indexes]
        unsubscribe_url = f"{base}/u/{make_token(Purpose.UNSUBSCRIBE, message_id, self.optout_url_id)}"
        extra = {
            UNSUBSCRIBE_VARIABLE: unsubscribe_url,
            MIRROR_VARIABLE: f"{base}/m/{make_token(Purpose.MIRROR, message_id, self.mirror_url_id)}" if self.mirror_page else "",
            PIXEL_VARIABLE: f"{base}/o/{make_token(Purpose.OPEN, message_id)}",
            # A text-only recipient gets the HTML as text, where a link with an empty href leaves no trace.
            HONEYPOT_VARIABLE: (
                f"{base}/r/{make_token(Purpose.CLICK, message_id, self.honeypot_url_id)}"
                if self.honeypot_url_id and not text_only
                else ""
            ),
        }
        rendered = self.prepared.render(profile_values=profile_values, link_urls=link_urls, extra=extra, text_only=text_only)
        return rendered, unsubscribe_url


def _prepare(delivery: Delivery, *, honeypot: bool) -> PreparedContent:
    return prepare_content(
        subject=delivery.subject, html=delivery.html, text=delivery.text, track_opens=delivery.track_opens,
        honeypot=honeypot,
    )


def _check_renders(delivery: Delivery, prepared: PreparedContent) -> None:
    """A render with a blank profile, so errors that only show at render time surface at analysis."""
    link_urls = ["https://example.invalid/"] * (
        len(prepared.parsed.html_link_indexes) + len(prepared.parsed.text_link_indexes)
    )
    extra = {UNSUBSCRIBE_VARIABLE: "", MIRROR_VARIABLE: "", PIXEL_VARIABLE: "", HONEYPOT_VARIABLE: ""}
    for text_only in (False, True):
        try:
            prepared.render(profile_values=profile_context(None), link_urls=link_urls, extra=extra, text_only=text_only)
        except Exception as exc:
            raise ContentError({"html": [f"Template error: {exc}"]}) from None


def _content_key(delivery: Delivery) -> str:
    parts = [delivery.subject, delivery.html, delivery.text, str(delivery.track_opens), str(delivery.track_clicks),
             str(delivery.mirror_page), str(delivery.analyzed_at), settings.BEACON_PUBLIC_URL]
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()


@lru_cache(maxsize=16)
def _send_content_cached(delivery_id: int, content_key: str) -> SendContent:
    delivery = Delivery.objects.get(pk=delivery_id)
    rows = list(TrackedUrl.objects.filter(delivery_id=delivery_id).order_by("id"))
    special_modes = (TrackingMode.OPT_OUT, TrackingMode.MIRROR, TrackingMode.HONEYPOT)
    special = {row.mode: row.id for row in rows if row.mode in special_modes}
    honeypot_url_id = special.get(TrackingMode.HONEYPOT, 0) if delivery.track_clicks else 0
    prepared = _prepare(delivery, honeypot=bool(honeypot_url_id))
    tracked = [row for row in rows if row.mode == TrackingMode.TRACKED]
    by_position = {row.position: row for row in tracked if row.position is not None}
    text_only_rows = {row.url: row for row in tracked if row.position is None}
    links = []
    for link in prepared.parsed.links:
        row = by_position.get(link.position) if link.position is not None else text_only_rows.get(link.url)
        if row is None:
            raise ServiceError("The delivery's links changed since analysis; analyze it again.")
        links.append((row.id, row.url, row.is_personalized))
    return SendContent(
        delivery_id=delivery_id,
        prepared=prepared,
        links=links,
        optout_url_id=special.get(TrackingMode.OPT_OUT, 0),
        mirror_url_id=special.get(TrackingMode.MIRROR, 0),
        honeypot_url_id=honeypot_url_id,
        track_opens=delivery.track_opens,
        track_clicks=delivery.track_clicks,
        mirror_page=delivery.mirror_page,
        public_url=settings.BEACON_PUBLIC_URL,
    )


def send_content(delivery: Delivery) -> SendContent:
    return _send_content_cached(delivery.pk, _content_key(delivery))


def message_render(*, message: Message) -> RenderedMessage:
    """The message exactly as its recipient received it (rewritten links, pixel): the mirror page."""
    delivery = Delivery.objects.get(pk=message.delivery_id)
    return send_content(delivery).render(
        message_id=message.id, profile=message.profile, text_only=message.email_format == EmailFormat.TEXT
    )


class _FastHeaderPolicy(Compat32):
    """Python's default email policy, except that a short ASCII header is written as is: that is
    what the Header folding algorithm produces for it anyway, at a fraction of the cost."""

    def _fold(self, name, value, sanitize):
        if (
            isinstance(value, str)
            and value.isascii()
            and len(name) + 2 + len(value) <= (self.max_line_length or 78)
            and value == value.strip()
            and "\n" not in value
            and "\r" not in value
        ):
            return f"{name}: {value}{self.linesep}"
        return super()._fold(name, value, sanitize)


FAST_HEADER_POLICY = _FastHeaderPolicy()


class PreparedEmail(EmailMultiAlternatives):
    """An email whose MIME form is built and serialized by `prepare()` on the rendering thread, so
    the sending thread only talks to the server. Any backend still gets a regular EmailMessage."""

    _mime = None

    def prepare(self) -> "PreparedEmail":
        mime = super().message()
        if mime.is_multipart():
            # A random boundary cannot occur in the content; setting it spares the generator a
            # regular-expression compile per message to check that.
            mime.set_boundary(f"=_beacon_{uuid.uuid4().hex}")
        mime.policy = FAST_HEADER_POLICY
        smtp_bytes = mime.as_bytes(linesep="\r\n")
        serialize = mime.as_bytes

        def as_bytes(unixfrom: bool = False, linesep: str = "\n") -> bytes:
            return smtp_bytes if (not unixfrom and linesep == "\r\n") else serialize(unixfrom=unixfrom, linesep=linesep)

        mime.as_bytes = as_bytes
        self._mime = mime
        return self

    def message(self):
        return self._mime if self._mime is not None else super().message()


def _email_for(delivery: Delivery, content: SendContent, message: Message, connection) -> PreparedEmail:
    rendered, unsubscribe_url = content.render_with_unsubscribe(
        message_id=message.id, profile=message.profile, text_only=message.email_format == EmailFormat.TEXT
    )
    list_unsubscribe = f"<{unsubscribe_url}>"
    if settings.BEACON_UNSUBSCRIBE_MAILTO:
        token = unsubscribe_url.rpartition("/")[2]
        list_unsubscribe += f", <mailto:{settings.BEACON_UNSUBSCRIBE_MAILTO}?subject=unsubscribe-{token}>"
    headers = {
        "Message-ID": message.smtp_message_id,
        "List-Unsubscribe": list_unsubscribe,
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }
    email = PreparedEmail(
        rendered.subject, rendered.text or rendered.html, delivery.from_email, [message.email],
        headers=headers, reply_to=[delivery.reply_to] if delivery.reply_to else None, connection=connection,
    )
    if rendered.html and rendered.text:
        email.attach_alternative(rendered.html, "text/html")
    elif rendered.html:
        email.content_subtype = "html"
    return email.prepare()


# --- Sending --------------------------------------------------------------------------------------


def delivery_send(*, delivery_id: int, actor=None) -> Delivery:
    """Starts sending an analyzed delivery; the batches run in Celery."""
    with transaction.atomic():
        delivery = _locked(delivery_id)
        if delivery.status == DeliveryStatus.DRAFT:
            raise TransitionNotAllowed("Analyze the delivery before sending it.")
        _transition(delivery, DeliveryStatus.SENDING, action="send")
        delivery.sending_started_at = timezone.now()
        delivery.save(update_fields=["status", "sending_started_at", "updated_at"])
        _audit(delivery, AuditAction.SENT, actor, to_deliver=delivery.to_deliver)
        _queue_send_batch(delivery.pk)
    return delivery


def delivery_pause(*, delivery_id: int, actor=None) -> Delivery:
    with transaction.atomic():
        delivery = _locked(delivery_id)
        _transition(delivery, DeliveryStatus.PAUSED, action="pause")
        delivery.save(update_fields=["status", "updated_at"])
        _audit(delivery, AuditAction.PAUSED, actor, processed=delivery.processed)
    return delivery


def delivery_resume(*, delivery_id: int, actor=None) -> Delivery:
    with transaction.atomic():
        delivery = _locked(delivery_id)
        if delivery.status != DeliveryStatus.PAUSED:
            raise TransitionNotAllowed(f"Cannot resume a delivery that is {delivery.get_status_display().lower()}.")
        _transition(delivery, DeliveryStatus.SENDING, action="resume")
        delivery.save(update_fields=["status", "updated_at"])
        _audit(delivery, AuditAction.RESUMED, actor, processed=delivery.processed)
        _queue_send_batch(delivery.pk)
    return delivery


def delivery_cancel(*, delivery_id: int, actor=None) -> Delivery:
    with transaction.atomic():
        delivery = _locked(delivery_id)
        _transition(delivery, DeliveryStatus.CANCELLED, action="cancel")
        delivery.finished_at = timezone.now()
        delivery.save(update_fields=["status", "finished_at", "updated_at"])
        _audit(delivery, AuditAction.CANCELLED, actor, processed=delivery.processed)
    return delivery


def _recover_claims(delivery_id: int, task_id: str, now) -> int:
    """Settles messages a dead execution left behind; returns how many became `interrupted`."""
    stale = now - CLAIM_LEASE
    mine_or_stale = Message.objects.filter(delivery_id=delivery_id).exclude(claimed_by="").filter(
        Q(claimed_by=task_id) | Q(claimed_at__lt=stale)
    )
    with transaction.atomic():
        # Soft: the address did nothing wrong, so no bounce is recorded against it.
        interrupted = mine_or_stale.filter(status=MessageStatus.SENDING).update(
            status=MessageStatus.FAILED,
            failure_type=FailureType.SOFT,
            failure_reason=FailureReason.INTERRUPTED,
            failure_detail="The worker stopped while this message was being handed to SMTP; not resent.",
        )
        if interrupted:
            Delivery.objects.filter(pk=delivery_id).update(
                processed=F("processed") + interrupted, errors=F("errors") + interrupted
            )
        mine_or_stale.filter(status=MessageStatus.PENDING).update(claimed_by="", claimed_at=None)
    if interrupted:
        logger.warning("delivery %s: %s message(s) marked interrupted (not resent)", delivery_id, interrupted)
    return interrupted


def _finish_if_done(delivery_id: int) -> bool:
    with transaction.atomic():
        delivery = _locked(delivery_id)
        if delivery.status != DeliveryStatus.SENDING:
            return True
        if Message.objects.filter(
            delivery_id=delivery_id, status__in=[MessageStatus.PENDING, MessageStatus.SENDING]
        ).exists():
            return False
        _transition(delivery, DeliveryStatus.FINISHED, action="finish")
        delivery.finished_at = timezone.now()
        delivery.save(update_fields=["status", "finished_at", "updated_at"])
        _audit(delivery, AuditAction.FINISHED, None, processed=delivery.processed, success=delivery.success, errors=delivery.errors)
        return True


@dataclass
class _Outcome:
    message: Message
    bounce_hard: bool | None = None


def _record_outcomes(delivery_id: int, outcomes: list[_Outcome], sent_at) -> None:
    """Writes one flush group's results: one UPDATE for the sent ones, counters with F()."""
    sent_ids = [o.message.id for o in outcomes if o.message.status == MessageStatus.SENT]
    failed = [o.message for o in outcomes if o.message.status == MessageStatus.FAILED]
    if sent_ids:
        Message.objects.filter(id__in=sent_ids).update(status=MessageStatus.SENT, sent_at=sent_at)
    if failed:
        Message.objects.bulk_update(failed, ["status", "failure_type", "failure_reason", "failure_detail"])
    Delivery.objects.filter(pk=delivery_id).update(
        processed=F("processed") + len(outcomes),
        success=F("success") + len(sent_ids),
        errors=F("errors") + len(failed),
        updated_at=sent_at,
    )
    for outcome in outcomes:
        if outcome.bounce_hard is not None and outcome.message.profile_id:
            profile_record_bounce(profile_id=outcome.message.profile_id, hard=outcome.bounce_hard)


def _flush_and_advance(delivery_id: int, outcomes: list[_Outcome], next_group: list[Message], remaining_ids: list[int], message_id_suffix: str) -> bool:
    """In one transaction: records the last group's results and, if the delivery is still sending,
    marks the next group `sending` (with its Message-IDs) before it is handed to SMTP. Returns False
    (and releases the unsent reservations) when the delivery was paused or cancelled meanwhile."""
    now = timezone.now()
    with transaction.atomic():
        if outcomes:
            _record_outcomes(delivery_id, outcomes, now)
        if not next_group:
            return True
        status = Delivery.objects.select_for_update().filter(pk=delivery_id).values_list("status", flat=True).first()
        if status != DeliveryStatus.SENDING:
            Message.objects.filter(id__in=remaining_ids, status=MessageStatus.PENDING).update(claimed_by="", claimed_at=None)
            return False
        Message.objects.filter(id__in=[m.id for m in next_group]).update(
            status=MessageStatus.SENDING,
            claimed_at=now,
            smtp_message_id=Concat(Value("<"), Cast("id", CharField()), Value(message_id_suffix), output_field=CharField()),
        )
    for message in next_group:
        message.smtp_message_id = f"<{message.id}{message_id_suffix}"
    return True


def _failed(message: Message, exc: BaseException) -> _Outcome:
    result = classify_exception(exc)
    message.status = MessageStatus.FAILED
    message.failure_type = result.failure_type
    message.failure_reason = result.failure_reason
    message.failure_detail = result.detail
    outcome = _Outcome(message)
    if result.is_bounce and result.failure_type in (FailureType.HARD, FailureType.SOFT):
        outcome.bounce_hard = result.failure_type == FailureType.HARD
    return outcome


def _hand_over(message: Message, email: EmailMessage, connection) -> _Outcome:
    """Runs on the batch's sending thread: the only code that talks to the backend."""
    try:
        connection.send_messages([email])
    except Exception as exc:
        if is_connection_error(exc):
            connection.close()
            try:
                connection.open()
            except OSError:
                logger.warning("SMTP connection could not be reopened", exc_info=True)
        return _failed(message, exc)
    message.status = MessageStatus.SENT
    return _Outcome(message)


def _hand_over_group(items: list[tuple[Message, EmailMessage] | _Outcome], connection) -> list[_Outcome]:
    return [item if isinstance(item, _Outcome) else _hand_over(*item, connection) for item in items]


def _submit_group(delivery: Delivery, content: SendContent, group: list[Message], connection, sender: ThreadPoolExecutor) -> Future:
    """Renders the group here and queues it, whole, on the sending thread: the next group is
    rendered and the previous one recorded while this one goes through the SMTP round trips."""
    items: list[tuple[Message, EmailMessage] | _Outcome] = []
    for message in group:
        try:
            items.append((message, _email_for(delivery, content, message, connection)))
        except Exception as exc:
            items.append(_failed(message, exc))
    return sender.submit(_hand_over_group, items, connection)


def delivery_send_batch(*, delivery_id: int, task_id: str, batch_size: int | None = None, connection=None) -> bool:
    """Sends the next batch of a sending delivery over one connection; True if another batch is due."""
    batch_size = batch_size or settings.BEACON_SEND_BATCH_SIZE
    now = timezone.now()
    _recover_claims(delivery_id, task_id, now)
    with transaction.atomic():
        delivery = _locked(delivery_id)
        if delivery.status != DeliveryStatus.SENDING:
            return False
        claimed_ids = list(
            Message.objects.select_for_update(skip_locked=True)
            .filter(delivery_id=delivery_id, status=MessageStatus.PENDING, claimed_by="")
            .order_by("id")
            .values_list("id", flat=True)[:batch_size]
        )
        Message.objects.filter(id__in=claimed_ids).update(claimed_by=task_id, claimed_at=now)
    if not claimed_ids:
        _finish_if_done(delivery_id)
        return False
    content = send_content(delivery)
    messages = list(Message.objects.filter(id__in=claimed_ids).select_related("profile").order_by("id"))
    # Message-ID: the message id plus a random part, so it is unique and known before the hand-over.
    domain = email_domain(delivery.from_email) or "beacon.local"
    message_id_suffix = f".{uuid.uuid4().hex[:16]}@{domain}>"
    connection = connection or get_connection()
    try:
        connection.open()
    except OSError as exc:  # smtplib's errors are OSErrors too
        Message.objects.filter(id__in=claimed_ids, status=MessageStatus.PENDING).update(claimed_by="", claimed_at=None)
        raise RelayUnavailable(f"The email backend cannot be reached: {exc}") from exc
    # Groups handed to the sending thread and not yet recorded: at most two at any time, so a crash
    # leaves at most 2 * SEND_FLUSH_SIZE messages uncertain (marked interrupted, never resent).
    in_flight: deque[Future] = deque()
    outcomes: list[_Outcome] = []
    # The sending thread wakes up on every SMTP reply; with Python's default 5 ms GIL switch
    # interval it would wait behind the rendering thread each time. Restored when the batch ends.
    switch_interval = sys.getswitchinterval()
    sys.setswitchinterval(SENDING_SWITCH_INTERVAL)
    try:
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="beacon-smtp") as sender:
            for start in range(0, len(messages), SEND_FLUSH_SIZE):
                group = messages[start : start + SEND_FLUSH_SIZE]
                if not _flush_and_advance(delivery_id, outcomes, group, claimed_ids[start:], message_id_suffix):
                    # Paused or cancelled: what was already handed over completes and is recorded.
                    _flush_and_advance(delivery_id, [o for f in in_flight for o in f.result()], [], [], message_id_suffix)
                    return False
                in_flight.append(_submit_group(delivery, content, group, connection, sender))
                outcomes = in_flight.popleft().result() if len(in_flight) > 1 else []
            outcomes += [o for f in in_flight for o in f.result()]
            in_flight.clear()
            _flush_and_advance(delivery_id, outcomes, [], [], message_id_suffix)
    except BaseException:
        for future in in_flight:
            future.cancel()
        raise
    finally:
        sys.setswitchinterval(switch_interval)
        connection.close()
    return not _finish_if_done(delivery_id)


# --- Proofs ---------------------------------------------------------------------------------------


def delivery_proof(*, delivery_id: int, emails: list[str], actor=None, connection=None) -> int:
    """Sends the delivery to the given addresses as a proof: not counted, no delivery log rows.

    Personalized with the first recipient of the delivery's lists (or a blank profile); links keep
    their personalized original URLs and there is no open pixel, so proofs never count as events.
    """
    errors = {}
    cleaned = []
    if not emails:
        errors["emails"] = ["Give at least one address."]
    for email in emails[: MAX_PROOF_ADDRESSES + 1]:
        try:
            validate_email(email)
            cleaned.append(email)
        except ValidationError:
            errors.setdefault("emails", []).append(f"Not a valid email address: {email}")
    if len(emails) > MAX_PROOF_ADDRESSES:
        errors["emails"] = [f"At most {MAX_PROOF_ADDRESSES} addresses."]
    if errors:
        raise ValidationError(errors)
    delivery = Delivery.objects.filter(pk=delivery_id).first()
    if delivery is None:
        raise ServiceError("No such delivery.", code="not_found")
    try:
        prepared = prepare_content(subject=delivery.subject, html=delivery.html, text=delivery.text, track_opens=False)
    except ContentError as exc:
        raise ServiceError(f"The content has a template error. {exc}", code="template_error", fields=exc.fields)
    profile = Profile.objects.filter(memberships__list__deliveries=delivery).order_by("id").first()
    profile_values = profile_context(profile)
    links = [
        render_url_with_context(link.url, profile_values) if link.is_personalized else link.url
        for link in prepared.parsed.links
    ]
    parsed = prepared.parsed
    link_urls = [links[i] for i in parsed.html_link_indexes] + [links[i] for i in parsed.text_link_indexes]
    extra = {UNSUBSCRIBE_VARIABLE: "#", MIRROR_VARIABLE: "#", PIXEL_VARIABLE: ""}
    rendered = prepared.render(profile_values=profile_values, link_urls=link_urls, extra=extra, text_only=False)
    connection = connection or get_connection()
    reply_to = [delivery.reply_to] if delivery.reply_to else None
    proofs = []
    for address in cleaned:
        email = EmailMultiAlternatives(
            f"[Proof] {rendered.subject}", rendered.text, delivery.from_email, [address],
            reply_to=reply_to, connection=connection,
        )
        if rendered.html:
            if rendered.text:
                email.attach_alternative(rendered.html, "text/html")
            else:
                email.body = rendered.html
                email.content_subtype = "html"
        proofs.append(email)
    try:
        sent = connection.send_messages(proofs)
    except Exception as exc:
        raise ServiceError(f"The proof could not be sent: {classify_exception(exc).detail}", code="proof_failed")
    _audit(delivery, AuditAction.PROOF, actor, emails=cleaned, profile_id=profile.pk if profile else None)
    return sent or 0


def tracked_url_update(*, tracked_url: TrackedUrl, label: str | None = None, category: str | None = None) -> TrackedUrl:
    """Renames or categorizes a link; links sharing a label count together in reports."""
    if label is not None:
        tracked_url.label = label.strip() or tracked_url.url[:300]
    if category is not None:
        tracked_url.category = category.strip()
    tracked_url.save(update_fields=["label", "category"])
    return tracked_url
