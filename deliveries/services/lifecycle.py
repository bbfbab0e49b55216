"""The delivery status machine, edition and the user's actions on a delivery, with their audit trail.

Status machine (`ALLOWED_TRANSITIONS`): draft → analyzing → ready (⇄ scheduled) → sending ⇄ paused →
finished | failed | cancelled. A scheduled delivery starts sending by itself (`deliveries.services.scheduling`). Every change happens under `select_for_update()` in `transaction.atomic()`, writes a
`DeliveryAuditEntry`, and queues follow-up tasks with `transaction.on_commit`.

An analysis runs in the background and renews a lease as it goes (`Delivery.analysis_heartbeat_at`); a
delivery left `analyzing` past `ANALYSIS_LEASE` lost its worker, and goes back to draft with a message
(`deliveries_analysis_recover`): before any action on it, on its pages, and every minute in Celery beat.
"""
from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from beacon.exceptions import NotFound, TransitionNotAllowed
from beacon.handed_in import HandedIn
from deliveries.content import ContentError
from deliveries.personalization import prepare_content
from deliveries.models import Delivery, DeliveryAuditEntry, DeliveryStatus
from deliveries.services.audience import segments_check
from profiles.models import List

# Who acts on a delivery: a user, or nobody (a task); an anonymous user is recorded as nobody.
Actor = AbstractBaseUser | AnonymousUser | None

S = DeliveryStatus
ALLOWED_TRANSITIONS: dict[str, set[str]] = {
    S.DRAFT: {S.ANALYZING, S.CANCELLED},
    S.ANALYZING: {S.READY, S.DRAFT, S.FAILED, S.CANCELLED},
    S.READY: {S.ANALYZING, S.DRAFT, S.SCHEDULED, S.SENDING, S.CANCELLED},
    S.SCHEDULED: {S.READY, S.SENDING, S.CANCELLED},
    S.SENDING: {S.PAUSED, S.FINISHED, S.FAILED, S.CANCELLED},
    S.PAUSED: {S.SENDING, S.CANCELLED},
    S.FINISHED: set(),
    S.FAILED: set(),
    S.CANCELLED: set(),
}
EDITABLE_STATUSES = {S.DRAFT, S.READY}
# Fields that change how a delivery is sent, not whom to or what: a ready delivery stays ready.
SETTINGS_WITHOUT_ANALYSIS = {"max_per_hour"}
# Five times what Gmail shows before clipping: more is a mistake (a pasted file), not an email.
MAX_CONTENT_CHARACTERS = 500_000
# An analysis renews its lease at least this often (at each chunk of the delivery log it writes, see
# deliveries.services.analysis); one silent for longer died with its worker.
ANALYSIS_LEASE = timedelta(minutes=10)
ANALYSIS_LOST_MESSAGE = (
    "The analysis stopped before it finished (its worker was stopped or lost). Nothing was sent: analyze again."
)
# Deliveries recovered per run of the periodic recovery: a bounded batch.
RECOVERY_BATCH = 100


class AuditAction:
    CREATED = "created"
    CHANGED = "changed"
    ANALYZED = "analyzed"
    SENT = "sent"
    PAUSED = "paused"
    RESUMED = "resumed"
    CANCELLED = "cancelled"
    SCHEDULED = "scheduled"
    UNSCHEDULED = "unscheduled"
    FINISHED = "finished"
    PROOF = "proof"


def _audit(delivery: Delivery, action: str, actor: Actor = None, **details: Any) -> None:
    DeliveryAuditEntry.objects.create(
        delivery=delivery, action=action, actor=actor if getattr(actor, "pk", None) else None, details=details
    )


def _locked(delivery_id: int) -> Delivery:
    delivery = Delivery.objects.select_for_update().filter(pk=delivery_id).first()
    if delivery is None:
        raise NotFound("No such delivery.")
    return delivery


def _transition(delivery: Delivery, to_status: str, *, action: str) -> None:
    if to_status not in ALLOWED_TRANSITIONS[delivery.status]:
        raise TransitionNotAllowed(
            f"Cannot {action} a delivery that is {delivery.get_status_display().lower()}.",
        )
    delivery.status = to_status


# How a sending delivery's batches and an analysis get queued: the Celery tasks, handed in by
# `deliveries.apps` at start-up. Handed in, not imported, because the task module imports these services.
send_batch_queuer: HandedIn[Callable[[int], None]] = HandedIn("send batch queuer", handed_in_by="deliveries.apps")
analysis_queuer: HandedIn[Callable[[int, int | None], None]] = HandedIn("analysis queuer", handed_in_by="deliveries.apps")


def _queue_send_batch(delivery_id: int) -> None:
    queuer = send_batch_queuer.get()
    transaction.on_commit(lambda: queuer(delivery_id))


def _queue_analysis(delivery_id: int, actor: Actor) -> None:
    queuer = analysis_queuer.get()
    actor_id = actor.pk if getattr(actor, "pk", None) else None
    transaction.on_commit(lambda: queuer(delivery_id, actor_id))


# --- Analyses that died -----------------------------------------------------------------------------


def _analysis_is_lost(delivery: Delivery, now) -> bool:
    heartbeat = delivery.analysis_heartbeat_at
    return delivery.status == DeliveryStatus.ANALYZING and (heartbeat is None or heartbeat < now - ANALYSIS_LEASE)


def deliveries_analysis_recover(*, delivery_id: int | None = None) -> int:
    """Puts back to draft, with `ANALYSIS_LOST_MESSAGE` and an audit entry, each delivery (or the one given)
    whose analysis showed no sign of life for `ANALYSIS_LEASE`; returns how many. Cheap when none is."""
    now = timezone.now()
    lost = Delivery.objects.filter(status=DeliveryStatus.ANALYZING).filter(
        Q(analysis_heartbeat_at__isnull=True) | Q(analysis_heartbeat_at__lt=now - ANALYSIS_LEASE)
    )
    if delivery_id is not None:
        lost = lost.filter(pk=delivery_id)
    recovered = 0
    for pk in lost.order_by("pk").values_list("pk", flat=True)[:RECOVERY_BATCH]:
        with transaction.atomic():
            delivery = Delivery.objects.select_for_update().filter(pk=pk).first()
            if delivery is None or not _analysis_is_lost(delivery, now):
                continue
            _transition(delivery, DeliveryStatus.DRAFT, action="recover")
            delivery.analysis_error = ANALYSIS_LOST_MESSAGE
            delivery.analysis_attempt = ""
            delivery.save(update_fields=["status", "analysis_error", "analysis_attempt", "updated_at"])
            _audit(delivery, AuditAction.ANALYZED, None, error=ANALYSIS_LOST_MESSAGE)
            recovered += 1
    return recovered


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
    for name, value in (("html", html), ("text", text)):
        if len(value) > MAX_CONTENT_CHARACTERS:
            errors[name] = [f"At most {MAX_CONTENT_CHARACTERS:,} characters (this is {len(value):,})."]
    if not html.strip() and not text.strip():
        errors["html"] = ["The delivery needs HTML or text content."]
    elif not errors.keys() & {"html", "text"}:
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


def delivery_save(*, delivery: Delivery, actor: Actor = None, changed: list[str] | None = None) -> Delivery:
    """Saves a delivery edited as a whole (the admin form): a new one is created, an existing one must
    still be editable and goes back to draft."""
    _validate(delivery)
    if delivery.pk is not None:
        # Before the action's transaction, so the recovery holds even if the action is refused.
        deliveries_analysis_recover(delivery_id=delivery.pk)
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


def delivery_create(*, actor: Actor = None, lists: list[List] | None = None, **fields: Any) -> Delivery:
    if "segments" in fields:
        fields["segments"] = segments_check(fields["segments"])
    delivery = Delivery(**fields, created_by=actor if getattr(actor, "pk", None) else None)
    _validate(delivery)
    with transaction.atomic():
        delivery.save()
        if lists:
            delivery.lists.set(lists)
        _audit(delivery, AuditAction.CREATED, actor)
    return delivery


def delivery_update(*, delivery_id: int, actor: Actor = None, lists: list[List] | None = None, **fields: Any) -> Delivery:
    """Edits a draft or ready delivery; a ready one goes back to draft (it must be analyzed again), unless
    only its sending settings (`SETTINGS_WITHOUT_ANALYSIS`) changed."""
    deliveries_analysis_recover(delivery_id=delivery_id)
    if "segments" in fields:
        fields["segments"] = segments_check(fields["segments"])
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
            if set(changed) - SETTINGS_WITHOUT_ANALYSIS:
                delivery.status = DeliveryStatus.DRAFT
            delivery.save()
            _audit(delivery, AuditAction.CHANGED, actor, fields=changed)
    return delivery


def delivery_delete(*, delivery_id: int, actor: Actor = None) -> None:
    deliveries_analysis_recover(delivery_id=delivery_id)
    with transaction.atomic():
        delivery = _locked(delivery_id)
        if delivery.status not in EDITABLE_STATUSES:
            raise TransitionNotAllowed(f"A delivery that is {delivery.get_status_display().lower()} cannot be deleted.")
        delivery.delete()


# --- Sending, pause, resume, cancel ---------------------------------------------------------------


def delivery_send(*, delivery_id: int, actor: Actor = None) -> Delivery:
    """Starts sending an analyzed delivery; the batches run in Celery."""
    deliveries_analysis_recover(delivery_id=delivery_id)
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


def delivery_pause(*, delivery_id: int, actor: Actor = None) -> Delivery:
    with transaction.atomic():
        delivery = _locked(delivery_id)
        _transition(delivery, DeliveryStatus.PAUSED, action="pause")
        delivery.save(update_fields=["status", "updated_at"])
        _audit(delivery, AuditAction.PAUSED, actor, processed=delivery.processed)
    return delivery


def delivery_resume(*, delivery_id: int, actor: Actor = None) -> Delivery:
    with transaction.atomic():
        delivery = _locked(delivery_id)
        if delivery.status != DeliveryStatus.PAUSED:
            raise TransitionNotAllowed(f"Cannot resume a delivery that is {delivery.get_status_display().lower()}.")
        _transition(delivery, DeliveryStatus.SENDING, action="resume")
        delivery.save(update_fields=["status", "updated_at"])
        _audit(delivery, AuditAction.RESUMED, actor, processed=delivery.processed)
        _queue_send_batch(delivery.pk)
    return delivery


def delivery_cancel(*, delivery_id: int, actor: Actor = None) -> Delivery:
    deliveries_analysis_recover(delivery_id=delivery_id)
    with transaction.atomic():
        delivery = _locked(delivery_id)
        _transition(delivery, DeliveryStatus.CANCELLED, action="cancel")
        delivery.finished_at = timezone.now()
        delivery.save(update_fields=["status", "finished_at", "updated_at"])
        _audit(delivery, AuditAction.CANCELLED, actor, processed=delivery.processed)
    return delivery
