"""Distinct user agents and tracking events."""
import uuid

from django.db import models

from deliveries.models import TrackedUrl
from profiles.models import Profile


class DeviceType(models.TextChoices):
    DESKTOP = "desktop", "Desktop"
    MOBILE = "mobile", "Mobile"
    TABLET = "tablet", "Tablet"
    BOT = "bot", "Bot"
    OTHER = "other", "Other"


class UserAgent(models.Model):
    """A distinct user-agent string, parsed once (off the hot path)."""

    digest = models.CharField(max_length=40, unique=True, help_text="SHA-1 of the raw string.")
    raw = models.TextField()
    os_family = models.CharField(max_length=100, blank=True)
    browser_family = models.CharField(max_length=100, blank=True)
    device_family = models.CharField(max_length=100, blank=True)
    device_type = models.CharField(max_length=16, choices=DeviceType.choices, blank=True)
    is_bot = models.BooleanField(default=False)
    parsed_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return self.raw[:80]


class EventType(models.TextChoices):
    OPEN = "open", "Open"
    CLICK = "click", "Click"
    OPT_OUT = "opt_out", "Opt-out"
    MIRROR = "mirror", "Mirror page"
    WEB_PAGE = "web_page", "Web page"


class TrackingEvent(models.Model):
    """One recorded action [Campaign: trackingLogRcp].

    Foreign keys carry no database constraint: ingestion writes in bulk and must never fail because a
    delivery or URL was deleted meanwhile; readers join to what still exists. Nor do they carry an
    index of their own: every index slows the bulk insert, so only the composite ones below exist.
    """

    event_id = models.UUIDField(default=uuid.uuid4, unique=True)
    type = models.CharField(max_length=16, choices=EventType.choices)
    logged_at = models.DateTimeField()
    delivery = models.ForeignKey(
        "deliveries.Delivery", null=True, on_delete=models.DO_NOTHING, db_constraint=False, db_index=False, related_name="+"
    )
    message = models.ForeignKey(
        "deliveries.Message", null=True, on_delete=models.DO_NOTHING, db_constraint=False, db_index=False, related_name="+"
    )
    # Empty when the recipient's tracking consent is off: counted, but not linked to the person.
    profile = models.ForeignKey(
        "profiles.Profile", null=True, on_delete=models.DO_NOTHING, db_constraint=False, db_index=False, related_name="+"
    )
    tracked_url = models.ForeignKey(
        TrackedUrl, null=True, on_delete=models.DO_NOTHING, db_constraint=False, db_index=False, related_name="+"
    )
    user_agent = models.ForeignKey(
        UserAgent, null=True, on_delete=models.DO_NOTHING, db_constraint=False, db_index=False, related_name="+"
    )
    ip = models.GenericIPAddressField(null=True, blank=True, help_text="Anonymized.")
    browser_id = models.CharField(max_length=32, blank=True)
    page_url = models.TextField(blank=True)
    amount = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True)
    is_machine = models.BooleanField(default=False)
    machine_reason = models.CharField(max_length=32, blank=True)

    class Meta:
        indexes = [
            # Profile, machine flag and link last: a segment's tracking test on a delivery ("who clicked the
            # link Sale of D in 30 days, people only") reads this index alone (an index-only scan), not
            # 100k heap pages (bench/segments.py).
            models.Index(
                fields=["delivery", "type", "logged_at", "profile", "is_machine", "tracked_url"], name="event_delivery_type_time_idx",
            ),
            models.Index(fields=["profile", "logged_at"], name="event_profile_time_idx"),
            models.Index(fields=["message", "type"], name="event_message_type_idx"),
            models.Index(fields=["logged_at"], name="event_logged_at_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.event_id}"


class ProfileTracking(Profile):
    """A profile seen through its tracking events: the admin's profile Tracking tab."""

    class Meta:
        proxy = True
        verbose_name = "profile tracking"
        verbose_name_plural = "profile tracking"
