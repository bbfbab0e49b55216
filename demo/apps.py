from django.apps import AppConfig


class DemoConfig(AppConfig):
    """The embedded default's demo data set; the top of the app layers, as it uses every app."""

    name = "demo"
    default_auto_field = "django.db.models.BigAutoField"
