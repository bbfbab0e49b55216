from django.apps import AppConfig


class TrackingConfig(AppConfig):
    name = "tracking"
    verbose_name = "Tracking"

    def ready(self) -> None:
        from anymail.signals import tracking as anymail_tracking

        from profiles.services.erasure import profile_eraser
        from tracking import services, tasks
        from tracking.esp.webhooks import anymail_tracking_received
        from tracking.ingest.store import user_agents_seen
        from tracking.lookups import connect_signals

        connect_signals()
        # Erasing a person changes messages and events, above profiles: its orchestration is handed down.
        profile_eraser.hand_in(services.profile_erase)
        # The store announces new user agents; only the app knows that a task parses them.
        user_agents_seen.connect(tasks.queue_user_agent_parsing, dispatch_uid="tracking.queue_user_agent_parsing")
        # What an ESP's webhooks report, once anymail has checked and parsed it (tracking.esp).
        anymail_tracking.connect(anymail_tracking_received, dispatch_uid="tracking.esp")
