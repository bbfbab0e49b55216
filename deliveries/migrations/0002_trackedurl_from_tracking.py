"""TrackedUrl moves from the tracking app to deliveries: state only, the table keeps its name.

The database already has the table (`tracking_trackedurl`, created by tracking's migrations), so only
Django's state changes here; tracking's 0005 removes the model from its own state. The content type
row is renamed too, so the permissions already granted on tracked URLs (and admin history) follow
the model instead of being left on a stale content type.
"""
import django.db.models.deletion
from django.db import migrations, models


def _move_content_type(apps, from_app: str, to_app: str) -> None:
    content_types = apps.get_model("contenttypes", "ContentType").objects
    if not content_types.filter(app_label=to_app, model="trackedurl").exists():
        content_types.filter(app_label=from_app, model="trackedurl").update(app_label=to_app)


def content_type_to_deliveries(apps, schema_editor) -> None:
    _move_content_type(apps, "tracking", "deliveries")


def content_type_to_tracking(apps, schema_editor) -> None:
    _move_content_type(apps, "deliveries", "tracking")


class Migration(migrations.Migration):

    dependencies = [
        ("contenttypes", "0002_remove_content_type_name"),
        ("deliveries", "0001_initial"),
        ("tracking", "0004_event_fewer_indexes"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="TrackedUrl",
                    fields=[
                        ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                        ("url", models.TextField(help_text="May hold {{ profile.<field> }} placeholders, resolved per recipient.")),
                        ("label", models.CharField(blank=True, max_length=300)),
                        ("category", models.CharField(blank=True, max_length=100)),
                        ("mode", models.CharField(choices=[("tracked", "Tracked"), ("not_tracked", "Not tracked"), ("opt_out", "Opt-out"), ("mirror", "Mirror page"), ("honeypot", "Honeypot (hidden)")], default="tracked", max_length=16)),
                        ("position", models.PositiveIntegerField(blank=True, null=True)),
                        ("in_html", models.BooleanField(default=False)),
                        ("in_text", models.BooleanField(default=False)),
                        ("is_personalized", models.BooleanField(default=False)),
                        ("delivery", models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name="tracked_urls", to="deliveries.delivery")),
                    ],
                    options={
                        "db_table": "tracking_trackedurl",
                        "ordering": ["delivery", "position", "id"],
                        "indexes": [models.Index(fields=["delivery", "mode"], name="trackedurl_delivery_mode_idx")],
                    },
                ),
            ],
        ),
        migrations.RunPython(content_type_to_deliveries, content_type_to_tracking, elidable=False),
    ]
