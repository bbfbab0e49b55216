"""Segments: audiences described by a rule on profiles' data, list membership and tracking."""
from django.conf import settings
from django.db import models


class Segment(models.Model):
    """A named rule (`audiences.rules`), evaluated in one SQL query whenever it is read: who is in it
    is who matches now (`audiences.selectors.segment_profiles`); freezing it makes a list."""

    name = models.CharField(max_length=200, unique=True)
    rule = models.JSONField()
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name
