"""TrackedUrl now belongs to deliveries (see deliveries' 0002): state only, nothing in the database
changes. The event's foreign key points at the moved model; it has no database constraint anyway."""
import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("deliveries", "0002_trackedurl_from_tracking"),
        ("tracking", "0004_event_fewer_indexes"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="trackingevent",
                    name="tracked_url",
                    field=models.ForeignKey(db_constraint=False, db_index=False, null=True, on_delete=django.db.models.deletion.DO_NOTHING, related_name="+", to="deliveries.trackedurl"),
                ),
                migrations.DeleteModel(name="TrackedUrl"),
            ],
        ),
    ]
