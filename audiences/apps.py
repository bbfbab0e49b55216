from django.apps import AppConfig


class AudiencesConfig(AppConfig):
    name = "audiences"
    verbose_name = "Audiences"

    def ready(self) -> None:
        # A delivery's audience may name segments; analysis (in deliveries, below) resolves them through
        # the conditions handed in here, since it cannot import the rule language.
        from audiences import selectors
        from deliveries.services import segment_choices, segment_conditions

        segment_conditions.hand_in(selectors.segment_conditions)
        segment_choices.hand_in(selectors.segment_choices)
