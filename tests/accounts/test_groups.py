"""The role groups: made by the data migration, their permissions set after every migrate."""
import importlib
from types import SimpleNamespace

import pytest
from django.apps import apps
from django.contrib.auth.models import Group, Permission
from django.db import connection

from accounts.roles import GROUP_NAMES, ROLE_MODEL_PERMISSIONS
from accounts.services import role_groups_sync

pytestmark = pytest.mark.django_db

MIGRATION = importlib.import_module("accounts.migrations.0001_roles")


def codenames(group_name: str) -> set[str]:
    return set(Group.objects.get(name=group_name).permissions.values_list("codename", flat=True))


def memberships() -> list[tuple]:
    through = Group.permissions.through
    return sorted(through.objects.values_list("id", "group_id", "permission_id"))


def test_after_migrate_the_three_groups_hold_their_permissions():
    assert set(Group.objects.values_list("name", flat=True)) >= {"Administrators", "Marketers", "Viewers"}
    assert codenames("Viewers") == {
        "view_delivery", "view_deliveryauditentry", "view_trackedurl", "view_deliveryreport", "view_list",
    }
    marketers = codenames("Marketers")
    assert {"add_profile", "change_profile", "view_profile", "delete_list", "delete_delivery", "view_message",
            "view_trackingevent", "view_profiletracking", "change_trackedurl", "view_listimport",
            "view_listimportrejection"} <= marketers
    # Removing a person, changing raw data, users and operations are an administrator's.
    assert not marketers & {"delete_profile", "change_message", "change_trackingevent", "add_user", "change_group",
                            "view_consolidationstate", "view_token"}
    assert codenames("Administrators") == set(Permission.objects.values_list("codename", flat=True))


def test_viewers_see_no_recipient_data_in_the_admin():
    assert not codenames("Viewers") & {"view_profile", "view_message", "view_trackingevent", "view_profiletracking",
                                       "view_listmembership", "view_useragent", "view_listimport",
                                       "view_listimportrejection"}


def test_every_model_the_table_names_exists():
    names = {model._meta.model_name for model in apps.get_models()}
    for table in ROLE_MODEL_PERMISSIONS.values():
        assert set(table) <= names


def test_the_sync_run_twice_changes_nothing():
    role_groups_sync()
    before = memberships()
    role_groups_sync()
    assert memberships() == before


def test_the_sync_restores_what_was_changed_by_hand():
    viewers = Group.objects.get(name="Viewers")
    viewers.permissions.add(Permission.objects.get(codename="view_profile"))
    Group.objects.get(name="Marketers").delete()

    role_groups_sync()

    assert "view_profile" not in codenames("Viewers")
    assert "add_profile" in codenames("Marketers")


def test_the_migration_creates_the_groups_and_its_reverse_removes_them():
    assert MIGRATION.GROUP_NAMES == tuple(sorted(GROUP_NAMES.values()))
    schema_editor = SimpleNamespace(connection=connection)

    MIGRATION.delete_groups(apps, schema_editor)
    assert not Group.objects.filter(name__in=GROUP_NAMES.values()).exists()
    MIGRATION.create_groups(apps, schema_editor)
    MIGRATION.create_groups(apps, schema_editor)  # twice: still one of each
    assert sorted(Group.objects.values_list("name", flat=True)) == ["Administrators", "Marketers", "Viewers"]
