"""Deliveries, their per-recipient messages (the delivery log), their links and their audit trail."""
from django.conf import settings
from django.db import models

from profiles.emails import email_domain


class DeliveryStatus(models.TextChoices):
    DRAFT = "draft", "Draft"
    ANALYZING = "analyzing", "Analyzing"
    READY = "ready", "Ready to send"
    # Analyzed and waiting for `Delivery.scheduled_at`; the scheduler (deliveries.services.scheduling) starts it.
    SCHEDULED = "scheduled", "Scheduled"
    SENDING = "sending", "Sending"
    PAUSED = "paused", "Paused"
    FINISHED = "finished", "Finished"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


class Delivery(models.Model):
    label = models.CharField(max_length=200)
    subject = models.CharField(max_length=998)
    from_email = models.CharField(max_length=254)
    reply_to = models.CharField(max_length=254, blank=True)
    html = models.TextField(blank=True)
    text = models.TextField(blank=True)
    lists = models.ManyToManyField("profiles.List", related_name="deliveries", blank=True)
    # Segment ids (the audiences app's, above this one), resolved at analysis: deliveries.services.audience.
    segments = models.JSONField(default=list, blank=True)
    track_opens = models.BooleanField(default=True)
    track_clicks = models.BooleanField(default=True)
    mirror_page = models.BooleanField(default=True)
    status = models.CharField(max_length=16, choices=DeliveryStatus.choices, default=DeliveryStatus.DRAFT)
    analysis_error = models.TextField(blank=True)
    # The checks before sending of the last analysis (`deliveries.services.checks`), as dicts.
    checks = models.JSONField(default=list, blank=True)
    # The analysis running in the background (deliveries.services.analysis): how far it is, in percent;
    # when it last showed a sign of life (older than ANALYSIS_LEASE: it died); which execution owns it.
    analysis_progress = models.PositiveSmallIntegerField(default=0)
    analysis_heartbeat_at = models.DateTimeField(null=True, blank=True)
    analysis_attempt = models.CharField(max_length=32, blank=True)

    # Counters, as Campaign's delivery summary shows them.
    initial_population = models.PositiveIntegerField(default=0)
    excluded_by_cause = models.JSONField(default=dict, blank=True)
    to_deliver = models.PositiveIntegerField(default=0)
    processed = models.PositiveIntegerField(default=0)
    success = models.PositiveIntegerField(default=0)
    errors = models.PositiveIntegerField(default=0)

    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    analyzed_at = models.DateTimeField(null=True, blank=True)
    sending_started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # When a scheduled delivery starts sending by itself (UTC); kept afterwards as the time it was due.
    scheduled_at = models.DateTimeField(null=True, blank=True)
    # At most this many messages handed to the email backend per hour, across workers; null: no limit
    # of its own (the per-domain rates of BEACON_DOMAIN_RATES hold anyway). See deliveries.services.throttling.
    max_per_hour = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "deliveries"
        indexes = [
            models.Index(fields=["status"], name="delivery_status_idx"),
            # The scheduler's query: scheduled deliveries that are due.
            models.Index(fields=["status", "scheduled_at"], name="delivery_status_scheduled_idx"),
        ]

    def __str__(self) -> str:
        return self.label


class MessageStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    SENDING = "sending", "Being sent"
    SENT = "sent", "Sent"
    FAILED = "failed", "Failed"
    IGNORED = "ignored", "Ignored"


class FailureType(models.TextChoices):
    HARD = "hard", "Hard"
    SOFT = "soft", "Soft"
    IGNORED = "ignored", "Ignored"


class FailureReason(models.TextChoices):
    USER_UNKNOWN = "user_unknown", "User unknown"
    INVALID_DOMAIN = "invalid_domain", "Invalid domain"
    UNREACHABLE = "unreachable", "Unreachable"
    ACCOUNT_DISABLED = "account_disabled", "Account disabled"
    MAILBOX_FULL = "mailbox_full", "Mailbox full"
    REFUSED = "refused", "Refused"
    # A feedback-loop report (ARF): the recipient marked a message as spam.
    COMPLAINT = "complaint", "Complaint"
    DENYLISTED = "denylisted", "Address on denylist"
    QUARANTINED = "quarantined", "Address in quarantine"
    DUPLICATE = "duplicate", "Duplicate"
    INVALID_ADDRESS = "invalid_address", "Invalid address"
    # The worker died after handing the message to SMTP but before recording the answer: Beacon
    # never retries such a message, since it may have gone out (at most one copy per recipient).
    INTERRUPTED = "interrupted", "Interrupted, not retried"
    UNDEFINED = "undefined", "Undefined"


class Message(models.Model):
    """One recipient of one delivery [Campaign: broadLog]."""

    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="messages")
    profile = models.ForeignKey("profiles.Profile", null=True, on_delete=models.SET_NULL, related_name="messages")
    email = models.CharField(max_length=254)
    email_format = models.CharField(max_length=8, default="html")
    status = models.CharField(max_length=16, choices=MessageStatus.choices, default=MessageStatus.PENDING)
    failure_type = models.CharField(max_length=8, choices=FailureType.choices, blank=True)
    failure_reason = models.CharField(max_length=24, choices=FailureReason.choices, blank=True)
    failure_detail = models.TextField(blank=True)
    # What put the recipient in the audience at analysis: `list:<id>` or `segment:<id>` (the first that held them).
    audience_source = models.CharField(max_length=32, blank=True)
    smtp_message_id = models.CharField(max_length=255, blank=True)
    # Which task execution claimed the message for sending; see deliveries.services.sending.
    claimed_by = models.CharField(max_length=64, blank=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    # When it failed: at sending, or later, when its bounce or complaint came back (a message sent then
    # failed keeps its `sent_at`). The failures-over-time report buckets by it.
    failed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            # What makes a double send impossible: one row per recipient and delivery.
            models.UniqueConstraint(fields=["delivery", "profile"], name="message_delivery_profile_unique"),
        ]
        indexes = [
            models.Index(fields=["delivery", "status"], name="message_delivery_status_idx"),
            models.Index(fields=["claimed_by"], name="message_claimed_by_idx"),
            models.Index(fields=["smtp_message_id"], name="message_smtp_id_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.email} ({self.status})"

    @property
    def domain(self) -> str:
        return email_domain(self.email)


class TrackingMode(models.TextChoices):
    TRACKED = "tracked", "Tracked"
    NOT_TRACKED = "not_tracked", "Not tracked"
    OPT_OUT = "opt_out", "Opt-out"
    MIRROR = "mirror", "Mirror page"
    # A link no human sees (hidden in the HTML); any click on it is a machine's. See tracking.machine.
    HONEYPOT = "honeypot", "Honeypot (hidden)"


class TrackedUrl(models.Model):
    """A link of one delivery [Campaign: trackingUrl]; found at target analysis."""

    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="tracked_urls")
    url = models.TextField(help_text="May hold {{ profile.<field> }} placeholders, resolved per recipient.")
    label = models.CharField(max_length=300, blank=True)
    # Named by the marketer rather than found in the content: a new analysis keeps it.
    label_edited = models.BooleanField(default=False)
    category = models.CharField(max_length=100, blank=True)
    mode = models.CharField(max_length=16, choices=TrackingMode.choices, default=TrackingMode.TRACKED)
    # Ordinal of the link in the HTML part (for Hot clicks); null for links only in the text part
    # and for the opt-out and mirror pseudo-links.
    position = models.PositiveIntegerField(null=True, blank=True)
    in_html = models.BooleanField(default=False)
    in_text = models.BooleanField(default=False)
    is_personalized = models.BooleanField(default=False)

    class Meta:
        # Created by the tracking app, which owned the model before; the table kept its name.
        db_table = "tracking_trackedurl"
        ordering = ["delivery", "position", "id"]
        indexes = [models.Index(fields=["delivery", "mode"], name="trackedurl_delivery_mode_idx")]

    def __str__(self) -> str:
        return self.label or self.url


class DeliveryAuditEntry(models.Model):
    """Who did what to a delivery, and when (the delivery's Audit tab)."""

    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="audit_entries")
    action = models.CharField(max_length=32)
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    at = models.DateTimeField(auto_now_add=True)
    details = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["at", "id"]
        verbose_name_plural = "delivery audit entries"

    def __str__(self) -> str:
        return f"{self.action} on {self.delivery_id}"


class ReturnedMailKind(models.TextChoices):
    """What a message at the bounce address is (`deliveries.bounces.parse.BounceKind`)."""

    BOUNCE = "bounce", "Bounce"
    COMPLAINT = "complaint", "Complaint"
    AUTO_REPLY = "auto_reply", "Auto-reply"
    NOT_A_BOUNCE = "not_a_bounce", "Not a bounce"


class ReturnedMailOutcome(models.TextChoices):
    # A bounce or complaint matched to its message and recorded (deliveries.services.returns).
    MATCHED = "matched", "Matched"
    # A bounce or complaint naming no message Beacon knows: kept for the operators to look at.
    UNMATCHED = "unmatched", "Unmatched"
    # Nothing to record: an auto-reply, not a bounce, or a delay (the sending server still tries).
    IGNORED = "ignored", "Ignored"


class ReturnedMail(models.Model):
    """One message read from the bounce mailbox (deliveries.services.bounce_intake), kept whatever it was.

    Its SHA-256 makes a message read twice (the mailbox failed to remove it after the commit) count once.
    """

    sha256 = models.CharField(max_length=64, unique=True)
    received_at = models.DateTimeField()
    kind = models.CharField(max_length=16, choices=ReturnedMailKind.choices)
    outcome = models.CharField(max_length=16, choices=ReturnedMailOutcome.choices)
    message = models.ForeignKey(Message, null=True, blank=True, on_delete=models.SET_NULL, related_name="returned_mail")
    # The failure recorded (or that would be, for an unmatched bounce): the first failed recipient's.
    failure_type = models.CharField(max_length=8, choices=FailureType.choices, blank=True)
    failure_reason = models.CharField(max_length=24, choices=FailureReason.choices, blank=True)
    subject = models.CharField(max_length=300, blank=True)
    sender = models.CharField(max_length=300, blank=True)
    # The parse: recipients (address, status, diagnostic, action, failure type and reason), the VERP
    # message id and the original Message-ID.
    summary = models.JSONField(default=dict, blank=True)
    # The message as it came, up to RAW_KEPT_BYTES; `size` is what was read.
    raw = models.BinaryField()
    size = models.PositiveBigIntegerField(default=0)

    class Meta:
        ordering = ["-received_at", "-id"]
        verbose_name_plural = "returned mail"
        indexes = [models.Index(fields=["outcome", "received_at"], name="returnedmail_outcome_idx")]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.received_at:%Y-%m-%d %H:%M} ({self.outcome})"


# The name of the bounce mailbox's `BounceMailboxState` row.
BOUNCE_MAILBOX_STATE = "bounces"


class BounceMailboxState(models.Model):
    """The one row of the bounce mailbox's reading: who holds it (a lease, so that two runs never read at
    once across their many transactions) and how the last run ended (the Settings page)."""

    name = models.CharField(max_length=32, unique=True)
    lease_holder = models.CharField(max_length=64, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)
    last_run_at = models.DateTimeField(null=True, blank=True)
    last_counts = models.JSONField(default=dict, blank=True)
    last_error = models.TextField(blank=True)

    def __str__(self) -> str:
        return self.name
class RateBucket(models.Model):
    """A token bucket of the send rate limits when there is no Redis (deliveries.services.throttling):
    `tokens` left at `refilled_at` (seconds since the epoch), changed only under a row lock."""

    key = models.CharField(max_length=300, unique=True)
    tokens = models.FloatField()
    refilled_at = models.FloatField()

    def __str__(self) -> str:
        return f"{self.key}: {self.tokens:.1f}"
