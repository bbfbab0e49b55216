"""The three role groups. Their permissions are set after every migrate by
`accounts.services.role_groups_sync`: on a new database, permissions exist only once migrate is over."""
from django.db import migrations

GROUP_NAMES = ("Administrators", "Marketers", "Viewers")


def create_groups(apps, schema_editor) -> None:
    Group = apps.get_model("auth", "Group")
    for name in GROUP_NAMES:
        Group.objects.using(schema_editor.connection.alias).get_or_create(name=name)


def delete_groups(apps, schema_editor) -> None:
    Group = apps.get_model("auth", "Group")
    Group.objects.using(schema_editor.connection.alias).filter(name__in=GROUP_NAMES).delete()


class Migration(migrations.Migration):
    dependencies = [("auth", "0012_alter_user_first_name_max_length")]

    operations = [migrations.RunPython(create_groups, delete_groups)]
