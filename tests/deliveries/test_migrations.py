"""The data migrations of deliveries, run back and forth on the test database."""
import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

BEFORE = ("deliveries", "0004_analysis_in_the_background")
LABELS_FIXED = ("deliveries", "0005_trackedurl_labels_without_template_code")


def migrate(target: tuple[str, str]):
    """Migrates to `target` and returns the models as they were there."""
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate([target])
    return executor.loader.project_state([target]).apps


def migrate_to_latest() -> None:
    """Back to every app's latest migration, those that went back with deliveries' included, so that the
    tests after this one find the schema they expect."""
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())


@pytest.mark.django_db(transaction=True)
def test_labels_holding_template_code_are_named_again_as_analysis_names_them():
    old = migrate(BEFORE)
    try:
        delivery = old.get_model("deliveries", "Delivery").objects.create(
            label="Old", subject="Hi", from_email="news@beacon.example", html="", text=""
        )
        TrackedUrl = old.get_model("deliveries", "TrackedUrl")
        personalized = "https://shop.example.com/me?id={{ profile.id }}&n={{ profile.first_name }}"
        rows = {
            "text": TrackedUrl.objects.create(delivery=delivery, url="https://shop.example.com/", label="Hi {{ profile.first_name }}, {% if profile.last_name %}shop{% endif %} now"),
            "url": TrackedUrl.objects.create(delivery=delivery, url=personalized, label=personalized),
            "only code": TrackedUrl.objects.create(delivery=delivery, url="https://shop.example.com/{{ profile.id }}", label="{{ profile.first_name }}"),
            "plain": TrackedUrl.objects.create(delivery=delivery, url="https://shop.example.com/sale", label="Sale {curly}"),
            "broken": TrackedUrl.objects.create(delivery=delivery, url="https://shop.example.com/b", label="Broken {% if %}"),
        }

        new = migrate(LABELS_FIXED)

        labels = {name: new.get_model("deliveries", "TrackedUrl").objects.get(pk=row.pk).label for name, row in rows.items()}
        assert labels == {
            "text": "Hi , shop now",
            "url": "https://shop.example.com/me?id=…&n=…",
            "only code": "https://shop.example.com/…",
            "plain": "Sale {curly}",
            "broken": "Broken",
        }
        # Reversing keeps the new labels.
        migrate(BEFORE)
        assert old.get_model("deliveries", "TrackedUrl").objects.get(pk=rows["url"].pk).label == labels["url"]
    finally:
        migrate_to_latest()
