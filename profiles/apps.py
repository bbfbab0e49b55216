from django.apps import AppConfig


class ProfilesConfig(AppConfig):
    name = "profiles"
    verbose_name = "Recipients"

    def ready(self) -> None:
        # The services queue imports through the Celery task without importing it (the task module
        # imports the services): the task is handed to them here, once the apps are loaded.
        from profiles import tasks
        from profiles.services import imports

        imports.list_import_queuer.hand_in(tasks.list_import_queue)
