"""Opt-outs per half hour, and the indexes by time, for the reports across deliveries.

Opt-outs consolidated before this migration are in no half hour (0): "Recompute delivery and tracking
indicators" puts a delivery's in theirs.
"""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('deliveries', '0006_failure_reason_complaint'),
        ('reporting', '0004_message_rollup_without_counts'),
    ]

    operations = [
        migrations.AddField(
            model_name='timebucketrollup',
            name='opt_outs',
            field=models.BigIntegerField(default=0),
        ),
        migrations.AddIndex(
            model_name='throughputstats',
            index=models.Index(fields=['hour'], name='throughputstats_hour_idx'),
        ),
        migrations.AddIndex(
            model_name='timebucketrollup',
            index=models.Index(fields=['bucket_start'], name='timebucketrollup_start_idx'),
        ),
    ]
