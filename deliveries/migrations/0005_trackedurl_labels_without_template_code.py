"""Links named before analysis left template code out of labels: `Hi {{ profile.first_name }}` showed raw
in the reports. Each such label is named again as analysis names a link now (`deliveries.content.link_label`):
a label that was the link's URL becomes the URL with `…` for each placeholder, any other loses its code.
Reversing keeps the new labels: the raw ones helped nobody."""
from django.db import migrations
from django.db.models import Q

BATCH_SIZE = 1000


def labels_without_template_code(apps, schema_editor):
    # The function analysis uses, imported on purpose: these labels must match the ones of new analyses.
    from deliveries.content import MAX_LABEL_LENGTH, link_label

    TrackedUrl = apps.get_model("deliveries", "TrackedUrl")
    with_code = TrackedUrl.objects.filter(
        Q(label__contains="{{") | Q(label__contains="{%") | Q(label__contains="{#")
    ).only("id", "label", "url").order_by("id")
    changed = []
    for row in with_code.iterator(chunk_size=BATCH_SIZE):
        named_by_url = row.label == row.url[:MAX_LABEL_LENGTH]
        label = link_label("" if named_by_url else row.label, row.url)
        if label != row.label:
            row.label = label
            changed.append(row)
        if len(changed) >= BATCH_SIZE:
            TrackedUrl.objects.bulk_update(changed, ["label"])
            changed = []
    TrackedUrl.objects.bulk_update(changed, ["label"])


class Migration(migrations.Migration):
    dependencies = [
        ("deliveries", "0004_analysis_in_the_background"),
    ]

    operations = [
        migrations.RunPython(labels_without_template_code, migrations.RunPython.noop),
    ]
