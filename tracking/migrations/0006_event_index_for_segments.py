# A segment's tracking test on a delivery reads event_delivery_type_time_idx alone (an index-only scan):
# the profile, the machine flag and the link join its key, after the columns it had.

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('tracking', '0005_trackedurl_to_deliveries'),
    ]

    operations = [
        migrations.RemoveIndex(
            model_name='trackingevent',
            name='event_delivery_type_time_idx',
        ),
        migrations.AddIndex(
            model_name='trackingevent',
            index=models.Index(fields=['delivery', 'type', 'logged_at', 'profile', 'is_machine', 'tracked_url'], name='event_delivery_type_time_idx'),
        ),
    ]
