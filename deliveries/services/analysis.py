"""Target analysis: checks a delivery's content and runs the checks before sending, finds its links and
builds its delivery log.

It runs in the background: `delivery_analysis_request` (the pages, the API, the admin) makes the delivery
`analyzing` and queues the Celery task `deliveries.analyze`, which calls `delivery_analysis_run`. The run
writes the delivery log in chunks, each committed with the progress and a renewed lease; it owns the
analysis through `analysis_attempt`, checked under the delivery's row lock before each write, so a newer
run (a redelivered task) takes over and an older one stops, and a cancel stops it at its next chunk. A
run that dies leaves the delivery `analyzing` until its lease runs out (`deliveries_analysis_recover`).
A run starts over from the beginning: what an earlier one wrote is deleted first.
"""
from __future__ import annotations

import logging
import uuid
from datetime import datetime
from collections import Counter, defaultdict

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction
from django.db.models import Value
from django.utils import timezone

from beacon.exceptions import ServiceError
from deliveries.content import MIRROR_VARIABLE, UNSUBSCRIBE_VARIABLE, ContentError
from deliveries.personalization import PreparedContent
from deliveries.models import (
    Delivery,
    DeliveryStatus,
    FailureReason,
    FailureType,
    Message,
    MessageStatus,
    TrackedUrl,
    TrackingMode,
)
from deliveries.services.checks import checks_errors, delivery_checks
from deliveries.services.lifecycle import (
    Actor,
    AuditAction,
    _audit,
    _locked,
    _queue_analysis,
    _transition,
    deliveries_analysis_recover,
)
from deliveries.services.rendering import _check_renders, _prepare
from deliveries.services.tracked_urls import CONTENT_LINK_MODES
from deliveries.services.audience import audience_profiles
from profiles.models import EmailStatus, Profile
from profiles.services import normalize_email

logger = logging.getLogger(__name__)

ANALYSIS_CHUNK_SIZE = 2000
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


class _Superseded(Exception):
    """The analysis is no longer this run's: cancelled, recovered, or taken over by a newer run."""


def _owned(delivery_id: int, attempt: str) -> Delivery:
    """The delivery locked, if this run still owns its analysis (to be called in a transaction)."""
    delivery = _locked(delivery_id)
    if delivery.status != DeliveryStatus.ANALYZING or delivery.analysis_attempt != attempt:
        raise _Superseded()
    return delivery


def _links_reconcile(delivery: Delivery, prepared: PreparedContent) -> None:
    """The delivery's links made to match its content, keeping what the marketer set on the links still in
    it: a link found again (same URL at the same position, else the same URL at the nearest position)
    keeps its row, category, tracking mode and a label they named; new links are added, vanished ones
    dropped. Beacon's own links (opt-out, mirror, honeypot) are matched by their mode."""
    found = _found_links_to_rows(delivery, prepared)
    existing = list(TrackedUrl.objects.filter(delivery=delivery).order_by("id"))
    by_place: defaultdict[tuple, list[int]] = defaultdict(list)
    by_url: defaultdict[str, list[int]] = defaultdict(list)
    by_mode: defaultdict[str, list[int]] = defaultdict(list)
    for i, row in enumerate(existing):
        if row.mode in CONTENT_LINK_MODES:
            by_place[(row.url, row.position)].append(i)
            by_url[row.url].append(i)
        else:
            by_mode[row.mode].append(i)
    unused = set(range(len(existing)))
    matches: dict[int, TrackedUrl] = {}

    def take(index: int, candidates: list[int]) -> None:
        for candidate in candidates:
            if candidate in unused:
                unused.discard(candidate)
                matches[index] = existing[candidate]
                return

    for index, link in enumerate(found):
        take(index, by_place[(link.url, link.position)] if link.mode in CONTENT_LINK_MODES else by_mode[link.mode])
    for index, link in enumerate(found):
        if index not in matches and link.mode in CONTENT_LINK_MODES:
            position = link.position or 0
            take(index, sorted(by_url[link.url], key=lambda i: abs((existing[i].position or 0) - position)))
    kept = []
    for index, row in matches.items():
        link = found[index]
        row.url, row.position, row.in_html, row.in_text = link.url, link.position, link.in_html, link.in_text
        row.is_personalized = link.is_personalized
        if not row.label_edited:
            row.label = link.label
        kept.append(row)
    TrackedUrl.objects.filter(pk__in=[existing[i].pk for i in unused]).delete()
    TrackedUrl.objects.bulk_update(kept, ["url", "position", "in_html", "in_text", "is_personalized", "label"])
    TrackedUrl.objects.bulk_create([link for index, link in enumerate(found) if index not in matches])


def _status_detail(email_status: str, reason: str, since: datetime | None) -> str:
    """Why the address is excluded, as the delivery log shows it: `Quarantined since 2026-11-29 13:05 UTC: user_unknown`."""
    detail = EmailStatus(email_status).label
    if since:
        detail += f" since {since:%Y-%m-%d %H:%M} UTC"
    return f"{detail}: {reason}" if reason else detail


def _write_audience_messages(delivery_id: int, attempt: str) -> tuple[int, Counter]:
    """One message per distinct profile of the delivery's lists and segments (who is in a segment now),
    excluded ones ignored with a reason, each with the audience source that brought them in.

    Streams the audience and writes it in chunks, each committed with the progress and a renewed lease
    (raises _Superseded when the run lost the analysis), so memory stays flat for large lists.
    """
    delivery = Delivery.objects.get(pk=delivery_id)
    audience = audience_profiles(delivery)
    if audience is None:
        audience = Profile.objects.none().annotate(audience_source=Value(""))
    total = audience.order_by().count()
    profiles = audience.order_by("id").values_list(
        "id", "email", "email_status", "email_format", "email_status_reason", "email_status_changed_at", "audience_source"
    )
    chunk: list[Message] = []
    seen: set[str] = set()
    excluded: Counter = Counter()
    population = 0

    def flush() -> None:
        with transaction.atomic():
            current = _owned(delivery_id, attempt)
            Message.objects.bulk_create(chunk)
            current.analysis_progress = min(99, population * 100 // total) if total else 99
            current.analysis_heartbeat_at = timezone.now()
            current.save(update_fields=["analysis_progress", "analysis_heartbeat_at", "updated_at"])
        chunk.clear()

    rows = profiles.iterator(chunk_size=ANALYSIS_CHUNK_SIZE)
    for profile_id, email, email_status, email_format, status_reason, status_since, source in rows:
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
        message = Message(
            delivery_id=delivery_id, profile_id=profile_id, email=email, email_format=email_format, audience_source=source,
        )
        if reason:
            message.status = MessageStatus.IGNORED
            message.failure_type = FailureType.IGNORED
            message.failure_reason = reason
            if reason in (FailureReason.DENYLISTED, FailureReason.QUARANTINED):
                message.failure_detail = _status_detail(email_status, status_reason, status_since)
            excluded[str(reason)] += 1
        chunk.append(message)
        if len(chunk) >= ANALYSIS_CHUNK_SIZE:
            flush()
    flush()
    return population, excluded


def _analysis_begin(delivery: Delivery) -> None:
    _transition(delivery, DeliveryStatus.ANALYZING, action="analyze")
    delivery.analysis_progress = 0
    delivery.analysis_heartbeat_at = timezone.now()
    delivery.analysis_attempt = ""
    delivery.save(update_fields=["status", "analysis_progress", "analysis_heartbeat_at", "analysis_attempt", "updated_at"])


def delivery_analysis_request(*, delivery_id: int, actor: Actor = None) -> Delivery:
    """Starts the target analysis in the background: the delivery is `analyzing` (its progress in
    `analysis_progress`) until the task makes it ready, or puts it back to draft with `analysis_error`."""
    deliveries_analysis_recover(delivery_id=delivery_id)
    with transaction.atomic():
        delivery = _locked(delivery_id)
        _analysis_begin(delivery)
        _queue_analysis(delivery.pk, actor)
    return delivery


def delivery_analyze(*, delivery_id: int, actor: Actor = None) -> Delivery:
    """The whole target analysis in this process (the demo data, scripts and tests; the pages, the API
    and the admin use `delivery_analysis_request`). Raises as `delivery_analysis_run` does."""
    deliveries_analysis_recover(delivery_id=delivery_id)
    with transaction.atomic():
        _analysis_begin(_locked(delivery_id))
    return delivery_analysis_run(delivery_id=delivery_id, actor_id=getattr(actor, "pk", None))


def _analysis_fail(delivery_id: int, attempt: str, actor: Actor, message: str, **fields) -> None:
    """Back to draft with the reason, if the run still owns the analysis."""
    with transaction.atomic():
        try:
            delivery = _owned(delivery_id, attempt)
        except _Superseded:
            return
        _transition(delivery, DeliveryStatus.DRAFT, action="stop the analysis of")
        delivery.analysis_error = message
        delivery.analysis_attempt = ""
        for name, value in fields.items():
            setattr(delivery, name, value)
        delivery.save(update_fields=["status", "analysis_error", "analysis_attempt", *fields, "updated_at"])
        _audit(delivery, AuditAction.ANALYZED, actor, error=message)


def _abandon(delivery_id: int) -> None:
    """After a cancel or a recovery stopped the run: the part of the delivery log it wrote goes too (a
    newer run that took over deletes it itself)."""
    with transaction.atomic():
        delivery = _locked(delivery_id)
        if delivery.status in (DeliveryStatus.CANCELLED, DeliveryStatus.DRAFT):
            Message.objects.filter(delivery_id=delivery_id).delete()


def delivery_analysis_run(*, delivery_id: int, actor_id: int | None = None) -> Delivery | None:
    """The analysis of a delivery that is `analyzing`: checks the content, finds its links, builds the
    delivery log; None when there is nothing to do (no longer analyzing) or the run was superseded.

    A template error, a render past the size limit, or a check before sending that fails with an error
    puts the delivery back to draft with `analysis_error` and raises a 400 (codes `template_error`,
    `checks_failed`: the failed checks' messages by field); the checks are stored either way, warnings
    included.
    """
    actor = get_user_model().objects.filter(pk=actor_id).first() if actor_id else None
    attempt = uuid.uuid4().hex
    with transaction.atomic():
        delivery = _locked(delivery_id)
        if delivery.status != DeliveryStatus.ANALYZING:
            return None
        delivery.analysis_attempt = attempt
        delivery.analysis_progress = 0
        delivery.analysis_heartbeat_at = timezone.now()
        delivery.save(update_fields=["analysis_attempt", "analysis_progress", "analysis_heartbeat_at", "updated_at"])
    try:
        try:
            prepared = _prepare(delivery, honeypot=_has_honeypot(delivery))
            _check_renders(delivery, prepared)
        except ContentError as exc:
            _analysis_fail(delivery_id, attempt, actor, str(exc))
            raise ServiceError(f"The content has a template error. {exc}", code="template_error", fields=exc.fields)
        found = delivery_checks(delivery=delivery)
        checks = [check.as_dict() for check in found]
        blocking = checks_errors(found)
        if blocking:
            message = "The delivery fails its checks before sending. " + " ".join(
                message for messages in blocking.values() for message in messages
            )
            _analysis_fail(delivery_id, attempt, actor, message, checks=checks)
            raise ServiceError(message, code="checks_failed", fields=blocking)
        with transaction.atomic():
            delivery = _owned(delivery_id, attempt)
            Message.objects.filter(delivery=delivery).delete()
            _links_reconcile(delivery, prepared)
            delivery.analysis_heartbeat_at = timezone.now()
            delivery.save(update_fields=["analysis_heartbeat_at", "updated_at"])
        population, excluded = _write_audience_messages(delivery_id, attempt)
        with transaction.atomic():
            delivery = _owned(delivery_id, attempt)
            delivery.initial_population = population
            delivery.excluded_by_cause = dict(sorted(excluded.items()))
            delivery.to_deliver = population - sum(excluded.values())
            delivery.processed = delivery.success = delivery.errors = 0
            delivery.analysis_error = ""
            delivery.analysis_attempt = ""
            delivery.analysis_progress = 100
            delivery.checks = checks
            delivery.analyzed_at = timezone.now()
            _transition(delivery, DeliveryStatus.READY, action="finish the analysis of")
            delivery.save()
            _audit(
                delivery, AuditAction.ANALYZED, actor,
                initial_population=population, to_deliver=delivery.to_deliver, excluded=delivery.excluded_by_cause,
            )
    except _Superseded:
        _abandon(delivery_id)
        return None
    except ServiceError:
        raise
    except BaseException as exc:
        # Any other failure, a time limit included: back to draft, saying why, rather than stuck (if the
        # database cannot take even that, the lease runs out and the recovery does it).
        try:
            _analysis_fail(delivery_id, attempt, actor, f"Analysis failed: {exc or type(exc).__name__}")
        except Exception:
            logger.exception("delivery %s: the failed analysis could not be put back to draft", delivery_id)
        raise
    return delivery
