from django.apps import AppConfig


class DeliveriesConfig(AppConfig):
    name = "deliveries"
    verbose_name = "Deliveries"

    def ready(self) -> None:
        # The services queue send batches through the Celery task without importing it (the task
        # module imports the services): the task is handed to them here, once the apps are loaded.
        from deliveries import services, tasks

        services.send_batch_queuer_register(tasks.delivery_send_batch_queue)
