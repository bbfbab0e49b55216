from django.apps import AppConfig, apps
from django.db.models.signals import post_migrate


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Accounts and roles"

    def ready(self) -> None:
        # Every app's migrate ends with a post_migrate per app; the groups' permissions can be set only
        # once the last app's permissions exist, so the handler acts on that one (see `_sync_groups`).
        post_migrate.connect(_sync_groups, dispatch_uid="accounts.sync_role_groups")


def _sync_groups(sender, using: str = "default", **kwargs) -> None:
    # Django sends post_migrate for each app with a models module, in INSTALLED_APPS order
    # (`django.core.management.sql.emit_post_migrate_signal`); auth creates that app's permissions on the
    # same signal, connected earlier. After `flush` too, which empties the groups.
    last = [config for config in apps.get_app_configs() if config.models_module is not None][-1]
    if sender is not last:
        return
    from accounts.services import role_groups_sync

    role_groups_sync(using=using)
