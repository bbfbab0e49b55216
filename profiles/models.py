"""Recipient profiles, lists and their CSV imports."""
from django.conf import settings
from django.db import models
from django.db.models.functions import Lower

from profiles.emails import email_domain


class EmailStatus(models.TextChoices):
    VALID = "valid", "Valid"
    QUARANTINED = "quarantined", "Quarantined"
    DENYLISTED = "denylisted", "Denylisted"


class EmailFormat(models.TextChoices):
    HTML = "html", "HTML"
    TEXT = "text", "Text only"


class Profile(models.Model):
    """A recipient [Campaign: recipient]."""

    email = models.EmailField(max_length=254)
    first_name = models.CharField(max_length=100, blank=True)
    last_name = models.CharField(max_length=100, blank=True)
    attributes = models.JSONField(default=dict, blank=True)
    email_status = models.CharField(max_length=16, choices=EmailStatus.choices, default=EmailStatus.VALID)
    email_format = models.CharField(max_length=8, choices=EmailFormat.choices, default=EmailFormat.HTML)
    # When off, this person's events are still counted but not linked to the profile.
    tracking_consent = models.BooleanField(default=True)
    opted_out_at = models.DateTimeField(null=True, blank=True)
    # Soft bounces counted toward quarantine: those within BEACON_SOFT_BOUNCE_WINDOW_DAYS, since the
    # last successful send or release (`soft_bounces_cleared_at`).
    soft_bounce_count = models.PositiveIntegerField(default=0)
    soft_bounces_cleared_at = models.DateTimeField(null=True, blank=True)
    quarantined_at = models.DateTimeField(null=True, blank=True)
    # Why the address is quarantined or denylisted (a bounce reason, `complaint`, `opt_out`), and since when.
    email_status_reason = models.CharField(max_length=32, blank=True)
    email_status_changed_at = models.DateTimeField(null=True, blank=True)
    # The language of the pages this person sees (unsubscribe, opt-out); unknown: the browser's.
    language = models.CharField(max_length=8, choices=settings.LANGUAGES, null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(Lower("email"), name="profile_email_ci_unique"),
        ]
        indexes = [models.Index(fields=["email_status"], name="profile_email_status_idx")]

    def __str__(self) -> str:
        return self.email

    @property
    def domain(self) -> str:
        return email_domain(self.email)


class AddressFailureType(models.TextChoices):
    HARD = "hard", "Hard bounce"
    SOFT = "soft", "Soft bounce"
    COMPLAINT = "complaint", "Complaint"


class AddressFailure(models.Model):
    """One failure of an address (a bounce or a complaint), as the quarantine rule counts it. Erasing the
    person keeps it without its profile (it holds no address), so that its delivery's new quarantines stay."""

    profile = models.ForeignKey(Profile, null=True, on_delete=models.SET_NULL, related_name="address_failures")
    failure_type = models.CharField(max_length=16, choices=AddressFailureType.choices)
    reason = models.CharField(max_length=32)
    occurred_at = models.DateTimeField()
    # The caller's name for the event (e.g. `message:12:smtp`): the same event reported twice counts once.
    event_key = models.CharField(max_length=200, blank=True)
    # The message that bounced or was complained about, and its delivery, when the caller knows them: how
    # a failure is tied to a delivery (its summary's "new quarantines", the profile page). Plain ids, with
    # no database constraint, since profiles sits below deliveries.
    message_id = models.BigIntegerField(null=True, blank=True)
    delivery_id = models.BigIntegerField(null=True, blank=True)
    # The status this failure put the address in (quarantined or denylisted); blank when it changed
    # nothing. Kept as history: a later release does not change it.
    status_set = models.CharField(max_length=16, choices=EmailStatus.choices, blank=True)

    class Meta:
        ordering = ["profile", "occurred_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["profile", "event_key"], condition=~models.Q(event_key=""), name="address_failure_event_unique"
            ),
        ]
        indexes = [
            models.Index(fields=["profile", "failure_type", "occurred_at"], name="address_failure_window_idx"),
            # A delivery's failures that set a status: its new quarantines, and how the reports job sees them.
            models.Index(
                fields=["delivery_id", "message_id"], condition=~models.Q(status_set=""), name="address_failure_delivery_idx"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.failure_type} {self.reason} of {self.profile_id}"


class AddressRelease(models.Model):
    """The audit of an administrator putting a quarantined or denylisted address back to valid."""

    profile = models.ForeignKey(Profile, on_delete=models.CASCADE, related_name="address_releases")
    released_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    released_at = models.DateTimeField()
    previous_status = models.CharField(max_length=16, choices=EmailStatus.choices)
    previous_reason = models.CharField(max_length=32, blank=True)

    class Meta:
        ordering = ["-released_at", "-id"]

    def __str__(self) -> str:
        return f"{self.profile_id} released from {self.previous_status}"


class List(models.Model):
    """A named set of profiles, the audience of deliveries."""

    name = models.CharField(max_length=200, unique=True)
    description = models.TextField(blank=True)
    profiles = models.ManyToManyField(Profile, through="ListMembership", related_name="lists")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class ListMembership(models.Model):
    list = models.ForeignKey(List, on_delete=models.CASCADE, related_name="memberships")
    profile = models.ForeignKey(Profile, on_delete=models.CASCADE, related_name="memberships")
    added_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["list", "profile"], name="list_membership_unique")]

    def __str__(self) -> str:
        return f"{self.profile_id} in {self.list_id}"


class ListImportStatus(models.TextChoices):
    # Uploaded; waits for its columns to be mapped (the page's second step).
    MAPPING = "mapping", "Waiting for the column mapping"
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    FINISHED = "finished", "Finished"
    FAILED = "failed", "Failed"


def _no_columns() -> list[str]:
    # Not `default=list`: in ListImport's body, `list` is its foreign key to List.
    return []


class ListImport(models.Model):
    """A CSV file being imported into a list, in the background (`profiles.tasks.list_import_run`).

    The file is kept in the database, not under MEDIA_ROOT: the Celery worker that reads it may run on
    another machine than the web process that received it, and the database is what both share.
    `processed` counts the data rows whose writes are committed, in the same transaction as those
    writes, so a run that dies resumes after them without counting anything twice.
    """

    list = models.ForeignKey(List, on_delete=models.CASCADE, related_name="imports")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    file_name = models.CharField(max_length=255)
    content = models.BinaryField()
    encoding = models.CharField(max_length=16)
    delimiter = models.CharField(max_length=1)
    header = models.JSONField(default=_no_columns)
    # One target per column of `header`: a profile field, `attributes.<name>`, or `ignore`.
    mapping = models.JSONField(default=_no_columns)
    update_existing = models.BooleanField(default=False)
    status = models.CharField(max_length=16, choices=ListImportStatus.choices, default=ListImportStatus.MAPPING)
    total = models.PositiveIntegerField(null=True, blank=True, help_text="Data rows in the file, counted when the run starts.")
    processed = models.PositiveIntegerField(default=0)
    created = models.PositiveIntegerField(default=0)
    updated = models.PositiveIntegerField(default=0)
    added_to_list = models.PositiveIntegerField(default=0)
    rejected = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.file_name} into {self.list_id} ({self.status})"


class ListImportRejection(models.Model):
    """A row of an import that was not imported, and why."""

    list_import = models.ForeignKey(ListImport, on_delete=models.CASCADE, related_name="rejections")
    # The line of the file the row ends on (the header is line 1).
    line = models.PositiveIntegerField()
    reason = models.CharField(max_length=200)
    values = models.JSONField(default=list)

    class Meta:
        ordering = ["list_import", "line"]
        # A re-run of the same rows writes nothing twice (insert with ignore_conflicts).
        constraints = [models.UniqueConstraint(fields=["list_import", "line"], name="list_import_rejection_line_unique")]

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}"


class ProfileErasure(models.Model):
    """The record that a person was erased (`tracking.services.profile_erase`): who, when, and how much was
    anonymized, keyed by the id the profile had. Never the address: keeping it would undo the erasure."""

    profile_id = models.BigIntegerField()
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    erased_at = models.DateTimeField(auto_now_add=True)
    messages_anonymized = models.PositiveIntegerField(default=0)
    events_anonymized = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-erased_at", "-id"]

    def __str__(self) -> str:
        return f"profile {self.profile_id} erased"
