"""Recipient profiles and lists."""
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
    soft_bounce_count = models.PositiveIntegerField(default=0)
    quarantined_at = models.DateTimeField(null=True, blank=True)
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
