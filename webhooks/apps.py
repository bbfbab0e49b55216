from django.apps import AppConfig


class WebhooksConfig(AppConfig):
    name = "webhooks"
    verbose_name = "Webhooks"

    def ready(self) -> None:
        from deliveries.signals import delivery_finished, messages_returned
        from tracking.ingest.store import events_stored
        from tracking.signals import profile_erasing
        from webhooks.services import outbox, retention

        # The lower apps announce what happened; only this app knows that someone subscribed to it.
        events_stored.connect(outbox.tracking_events_enqueue, dispatch_uid="webhooks.tracking_events_enqueue")
        delivery_finished.connect(outbox.delivery_finished_enqueue, dispatch_uid="webhooks.delivery_finished_enqueue")
        messages_returned.connect(outbox.messages_returned_enqueue, dispatch_uid="webhooks.messages_returned_enqueue")
        profile_erasing.connect(retention.profile_notifications_erase, dispatch_uid="webhooks.profile_notifications_erase")
