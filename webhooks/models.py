"""Outgoing webhooks: subscriptions, the outbox of what each is owed, and the log of every attempt."""
import uuid

from django.conf import settings
from django.db import models


class EventType(models.TextChoices):
    """What a subscription may ask for; each is the payload's `type`."""

    # A recipient opened a message (tracking pixel).
    OPEN = "open", "Open"
    # A recipient clicked a tracked link.
    CLICK = "click", "Click"
    # A recipient opted out through the message's unsubscribe link.
    OPT_OUT = "opt_out", "Opt-out"
    # A message came back as undeliverable (at sending or later, from the bounce mailbox).
    BOUNCE = "bounce", "Bounce"
    # A recipient reported a message as spam (ARF).
    COMPLAINT = "complaint", "Complaint"
    # A delivery has sent to its last recipient.
    DELIVERY_FINISHED = "delivery_finished", "Delivery finished"


# The test action's message: never subscribed to, sent only when an administrator asks.
PING = "ping"


class Subscription(models.Model):
    """A receiver's URL and the events it wants, signed with its secret (Standard Webhooks)."""

    url = models.URLField(max_length=2000)
    event_types = models.JSONField(default=list, help_text="Values of EventType.")
    # Kept in clear: every message is signed with it. Shown to the administrator once, at creation.
    secret = models.CharField(max_length=100)
    is_active = models.BooleanField(default=True)
    humans_only = models.BooleanField(default=True, help_text="Leave out events flagged as machine (scanners, bots).")
    # Failed attempts since the last success; at BEACON_WEBHOOK_MAX_ATTEMPTS the subscription is disabled.
    failure_count = models.PositiveIntegerField(default=0)
    disabled_at = models.DateTimeField(null=True, blank=True)
    disabled_reason = models.TextField(blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return self.url[:100]


class NotificationStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    DELIVERED = "delivered", "Delivered"
    # Every attempt failed: given up.
    FAILED = "failed", "Failed"


class Notification(models.Model):
    """One event owed to one subscription: the outbox row. Unique per (subscription, event), so an event
    stored twice, or announced twice, is sent once."""

    subscription = models.ForeignKey(Subscription, on_delete=models.CASCADE, related_name="notifications")
    event_id = models.UUIDField(help_text="The event's own id (a tracking event's, or one derived from its source).")
    # The Standard Webhooks `webhook-id`: the same on every retry, so a receiver can skip a repeat.
    webhook_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    event_type = models.CharField(max_length=32)
    payload = models.JSONField()
    status = models.CharField(max_length=16, choices=NotificationStatus.choices, default=NotificationStatus.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField()
    # A sender's claim: the rows it is sending, until `claimed_until` (a dead sender's claim expires).
    claimed_by = models.CharField(max_length=40, blank=True)
    claimed_until = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    last_response_ms = models.PositiveIntegerField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["subscription", "event_id"], name="webhook_notification_once_per_event"),
        ]
        indexes = [models.Index(fields=["status", "next_attempt_at"], name="webhook_notification_due_idx")]

    def __str__(self) -> str:
        return f"{self.event_type} {self.header_id}"

    @property
    def header_id(self) -> str:
        """The `webhook-id` header's value."""
        return f"msg_{self.webhook_id.hex}"


class Attempt(models.Model):
    """One HTTP request of a notification to its subscription's URL: the delivery log."""

    notification = models.ForeignKey(Notification, on_delete=models.CASCADE, related_name="attempt_log")
    subscription = models.ForeignKey(Subscription, on_delete=models.CASCADE, related_name="attempts")
    number = models.PositiveIntegerField()
    attempted_at = models.DateTimeField()
    succeeded = models.BooleanField()
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    error = models.TextField(blank=True)
    response_ms = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["subscription", "-attempted_at"], name="webhook_attempt_recent_idx")]

    def __str__(self) -> str:
        return f"{self.notification_id} #{self.number}"
