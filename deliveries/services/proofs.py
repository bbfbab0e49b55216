"""Proof sends: the delivery to a few given addresses, outside the delivery log and the statistics."""
from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.mail import EmailMultiAlternatives, get_connection
from django.core.mail.backends.base import BaseEmailBackend
from django.core.validators import validate_email

from beacon.exceptions import NotFound, ServiceError
from deliveries.content import ContentError
from deliveries.models import Delivery
from deliveries.services.lifecycle import Actor, AuditAction, _audit
from deliveries.services.rendering import delivery_preview_render
from deliveries.smtp_errors import classify_exception
from profiles.models import Profile

MAX_PROOF_ADDRESSES = 20


def delivery_proof(
    *,
    delivery_id: int,
    emails: list[str],
    actor: Actor = None,
    profile_id: int | None = None,
    connection: BaseEmailBackend | None = None,
) -> int:
    """Sends the delivery to the given addresses as a proof: not counted, no delivery log rows.

    Personalized as the profile `profile_id` (the one the preview page shows) when it exists, else as
    the first recipient of the delivery's lists (or a blank profile), rendered as the preview renders it
    (`delivery_preview_render`), so proofs never count as events.
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
        raise NotFound("No such delivery.")
    profile = Profile.objects.filter(pk=profile_id).first() if profile_id is not None else None
    profile = profile or Profile.objects.filter(memberships__list__deliveries=delivery).order_by("id").first()
    try:
        rendered = delivery_preview_render(delivery=delivery, profile=profile)
    except ContentError as exc:
        raise ServiceError(f"The content has a template error. {exc}", code="template_error", fields=exc.fields)
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
