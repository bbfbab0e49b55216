from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("deliveries", "0002_trackedurl_from_tracking"),
    ]

    operations = [
        migrations.AddField(
            model_name="delivery",
            name="checks",
            field=models.JSONField(blank=True, default=list),
        ),
    ]
