"""A person's messages made anonymous when they are erased (`tracking.services.profile_erase` calls this).

A message row stays, so every count built from the delivery log (to deliver, successes, failures by type,
reason and domain, throughput) and every rollup keyed by message id is unchanged, before and after a
recompute. What goes is the person: the profile link, and the address, which becomes
`erased@<its domain>` so that the per-domain statistics, which read the domain from the address, still
count the message in the same domain. Any copy of the address in the relay's diagnostic goes too, and
so do the bounces and complaints matched to the person's messages (`ReturnedMail`: the mail as it came
back, which names them; what they counted stays on the messages).
"""
import re

from django.db.models import Value
from django.db.models.functions import Concat

from beacon.exceptions import TransitionNotAllowed
from deliveries.models import DeliveryStatus, Message, MessageStatus, ReturnedMail
from profiles.emails import email_domain, email_domain_expression

ERASED_LOCAL_PART = "erased"
# Deliveries that may still hand a pending message to the relay.
_ACTIVE_DELIVERY_STATUSES = (DeliveryStatus.ANALYZING, DeliveryStatus.READY, DeliveryStatus.SENDING, DeliveryStatus.PAUSED)


def erased_address(email: str) -> str:
    """What an erased message's address becomes: the same domain, nobody's mailbox."""
    return f"{ERASED_LOCAL_PART}@{email_domain(email)}"


def profile_messages_anonymize(*, profile_id: int, addresses: set[str]) -> int:
    """Unlinks the profile's messages and replaces their addresses (and `addresses` wherever a failure's
    detail quotes one) by `erased@<domain>`; returns how many messages. Refused while a delivery may still
    send to the person: erasing them then would leave a message to send with no one to send it to."""
    messages = Message.objects.filter(profile_id=profile_id)
    in_progress = (
        messages.filter(status__in=(MessageStatus.PENDING, MessageStatus.SENDING), delivery__status__in=_ACTIVE_DELIVERY_STATUSES)
        .values_list("delivery_id", flat=True)
        .first()
    )
    if in_progress is not None:
        raise TransitionNotAllowed(
            f"Delivery {in_progress} may still send to this person. Erase them once it is finished or cancelled.",
            code="delivery_in_progress",
        )
    known = {address.lower() for address in addresses} | set(
        messages.values_list("email", flat=True).distinct().iterator()
    )
    quoted = re.compile("|".join(re.escape(address) for address in sorted(known, key=len, reverse=True)), re.IGNORECASE)
    detailed = [
        message for message in messages.exclude(failure_detail="").only("id", "email", "failure_detail")
        if quoted.search(message.failure_detail)
    ]
    for message in detailed:
        message.failure_detail = quoted.sub(lambda match: erased_address(match.group(0)), message.failure_detail)
    Message.objects.bulk_update(detailed, ["failure_detail"], batch_size=1000)
    ReturnedMail.objects.filter(message__profile_id=profile_id).delete()
    return messages.update(profile=None, email=Concat(Value(f"{ERASED_LOCAL_PART}@"), email_domain_expression("email")))
