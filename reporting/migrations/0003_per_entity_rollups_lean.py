"""Per-entity rollups (per message, per message and URL, per person) keyed by their natural key.

A recompute inserts a row per message, link and person of the delivery, and every consolidation updates
thousands, so each index and each constraint check counts: the natural key (leading with the delivery, so it
also serves a recompute's delete) becomes the primary key and the only index; the surrogate `id`, the separate
unique constraints and delivery indexes go, and so does the database constraint on `delivery` (Django still
deletes the rows with their delivery). Django cannot migrate a table to a composite primary key in place, so
each table is rebuilt: created under a new name, filled from the old one, which is dropped, and renamed.
"""
import django.db.models.deletion
from django.db import migrations, models

# The columns of each table, copied into the rebuilt one.
COLUMNS = {
    "MessageRollup": (
        "message_id", "delivery_id", "domain", "opens", "human_opens", "clicks", "human_clicks", "first_open_at",
        "first_human_open_at", "first_click_at", "first_human_click_at",
    ),
    "MessageLinkRollup": ("message_id", "tracked_url_id", "delivery_id", "first_click_at", "first_human_click_at"),
    "PersonRollup": ("delivery_id", "person_key", "domain", "human_domain"),
}


def _table(model_name: str) -> str:
    return f"reporting_{model_name.lower()}"


def copy_rows(source: str, target: str, columns: tuple[str, ...]):
    def run(apps, schema_editor):
        names = ", ".join(columns)
        schema_editor.execute(f"INSERT INTO {_table(target)} ({names}) SELECT {names} FROM {_table(source)}")

    return run


def set_fillfactor(fillfactor: int):
    def run(apps, schema_editor):
        if schema_editor.connection.vendor != "postgresql":
            return
        for model_name in COLUMNS:
            # Every consolidation updates these rows in place (counts, first times, never the key): room left in
            # each page lets PostgreSQL write the new version beside the old one, without a new index entry.
            schema_editor.execute(f"ALTER TABLE {_table(model_name)} SET (fillfactor = {fillfactor})")

    return run


def delivery_field():
    return models.ForeignKey(
        db_constraint=False, db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name="+",
        to="deliveries.delivery",
    )


def primary_key(*columns: str):
    return models.CompositePrimaryKey(*columns, blank=True, editable=False, primary_key=True, serialize=False)


NEW_FIELDS = {
    "MessageRollup": [
        ("pk", primary_key("delivery_id", "message_id")),
        ("message_id", models.BigIntegerField()),
        ("delivery", delivery_field()),
        ("domain", models.CharField(max_length=255)),
        ("opens", models.BigIntegerField(default=0)),
        ("human_opens", models.BigIntegerField(default=0)),
        ("clicks", models.BigIntegerField(default=0)),
        ("human_clicks", models.BigIntegerField(default=0)),
        ("first_open_at", models.DateTimeField(null=True)),
        ("first_human_open_at", models.DateTimeField(null=True)),
        ("first_click_at", models.DateTimeField(null=True)),
        ("first_human_click_at", models.DateTimeField(null=True)),
    ],
    "MessageLinkRollup": [
        ("pk", primary_key("delivery_id", "message_id", "tracked_url_id")),
        ("message_id", models.BigIntegerField()),
        ("tracked_url_id", models.BigIntegerField()),
        ("delivery", delivery_field()),
        ("first_click_at", models.DateTimeField(null=True)),
        ("first_human_click_at", models.DateTimeField(null=True)),
    ],
    "PersonRollup": [
        ("pk", primary_key("delivery_id", "person_key")),
        ("delivery", delivery_field()),
        ("person_key", models.CharField(max_length=40)),
        ("domain", models.CharField(max_length=255)),
        ("human_domain", models.CharField(max_length=255, null=True)),
    ],
}


def rebuild(model_name: str) -> list:
    keyed = "Keyed" + model_name
    columns = COLUMNS[model_name]
    return [
        migrations.CreateModel(name=keyed, fields=NEW_FIELDS[model_name]),
        migrations.RunPython(copy_rows(model_name, keyed, columns), copy_rows(keyed, model_name, columns)),
        migrations.DeleteModel(name=model_name),
        migrations.RenameModel(old_name=keyed, new_name=model_name),
    ]


class Migration(migrations.Migration):

    dependencies = [
        ("deliveries", "0001_initial"),
        ("reporting", "0002_message_link_per_url"),
    ]

    operations = [
        *rebuild("MessageRollup"),
        *rebuild("MessageLinkRollup"),
        *rebuild("PersonRollup"),
        migrations.RunPython(set_fillfactor(80), set_fillfactor(100)),
    ]
