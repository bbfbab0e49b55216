"""Per-message open and click counts go: no report reads them, and keeping them meant rewriting the row of every
message a consolidation batch touches, where its first times move for a few."""
from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ('reporting', '0003_per_entity_rollups_lean'),
    ]

    operations = [
        migrations.RemoveField(
            model_name='messagerollup',
            name='clicks',
        ),
        migrations.RemoveField(
            model_name='messagerollup',
            name='human_clicks',
        ),
        migrations.RemoveField(
            model_name='messagerollup',
            name='human_opens',
        ),
        migrations.RemoveField(
            model_name='messagerollup',
            name='opens',
        ),
    ]
