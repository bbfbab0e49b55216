from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("profiles", "0002_list_imports")]

    operations = [
        migrations.AddField(
            model_name="profile",
            name="language",
            field=models.CharField(
                blank=True,
                choices=[("en", "English"), ("es", "Español"), ("pt", "Português"), ("it", "Italiano"), ("nl", "Nederlands"), ("sv", "Svenska")],
                max_length=8,
                null=True,
            ),
        ),
    ]
