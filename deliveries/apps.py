from django.apps import AppConfig


class DeliveriesConfig(AppConfig):
    name = "deliveries"
    verbose_name = "Deliveries"

    def ready(self) -> None:
        # The services queue send batches and analyses through the Celery tasks without importing them
        # (the task module imports the services): the tasks are handed to them here, once apps are loaded.
        from deliveries import services, tasks

        services.send_batch_queuer.hand_in(tasks.delivery_send_batch_queue)
        services.analysis_queuer.hand_in(tasks.delivery_analysis_queue)
