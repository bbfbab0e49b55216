"""Target analysis: checks a delivery's content and runs the checks before sending, finds its links and
builds its delivery log."""
from __future__ import annotations

from collections import Counter

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction
from django.utils import timezone

from beacon.exceptions import ServiceError, TransitionNotAllowed
from deliveries.content import MIRROR_VARIABLE, UNSUBSCRIBE_VARIABLE, ContentError, PreparedContent
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
from deliveries.services.lifecycle import Actor, AuditAction, _audit, _locked, _transition
from deliveries.services.rendering import _check_renders, _prepare
from profiles.models import EmailStatus, Profile
from profiles.services import normalize_email

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


def delivery_analyze(*, delivery_id: int, actor: Actor = None) -> Delivery:
    """Target analysis: checks the content, finds its links, builds the delivery log.

    A template error, or a check before sending that fails with an error, leaves the delivery in draft
    with `analysis_error` set and raises a 400 (codes `template_error`, `checks_failed`: the failed checks'
    messages by field); the checks are stored on the delivery either way, warnings included.
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
    found = delivery_checks(delivery=delivery)
    checks = [check.as_dict() for check in found]
    blocking = checks_errors(found)
    if blocking:
        message = "The delivery fails its checks before sending. " + " ".join(
            message for messages in blocking.values() for message in messages
        )
        with transaction.atomic():
            delivery = _locked(delivery_id)
            delivery.status = DeliveryStatus.DRAFT
            delivery.analysis_error = message
            delivery.checks = checks
            delivery.save(update_fields=["status", "analysis_error", "checks", "updated_at"])
            _audit(delivery, AuditAction.ANALYZED, actor, error=message)
        raise ServiceError(message, code="checks_failed", fields=blocking)
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
            delivery.checks = checks
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
