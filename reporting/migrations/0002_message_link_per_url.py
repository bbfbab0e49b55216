from django.db import migrations, models


def keep_url_rows(apps, schema_editor):
    """Label and category first clicks now derive from the per-URL rows, whose key was the URL id."""
    MessageLinkRollup = apps.get_model("reporting", "MessageLinkRollup")
    MessageLinkRollup.objects.exclude(kind="url").delete()
    for row in MessageLinkRollup.objects.only("id", "key").iterator():
        MessageLinkRollup.objects.filter(pk=row.pk).update(tracked_url_id=int(row.key))


class Migration(migrations.Migration):

    dependencies = [
        ('deliveries', '0001_initial'),
        ('reporting', '0001_initial'),
    ]

    operations = [
        migrations.AddField(
            model_name='messagelinkrollup',
            name='tracked_url_id',
            field=models.BigIntegerField(default=0),
            preserve_default=False,
        ),
        migrations.RunPython(keep_url_rows, migrations.RunPython.noop),
        migrations.RemoveConstraint(
            model_name='messagelinkrollup',
            name='messagelinkrollup_key',
        ),
        migrations.RemoveIndex(
            model_name='messagelinkrollup',
            name='messagelinkrollup_deliv_idx',
        ),
        migrations.RemoveField(
            model_name='messagelinkrollup',
            name='key',
        ),
        migrations.RemoveField(
            model_name='messagelinkrollup',
            name='kind',
        ),
        migrations.AddIndex(
            model_name='messagelinkrollup',
            index=models.Index(fields=['delivery'], name='messagelinkrollup_dlv_idx'),
        ),
        migrations.AddConstraint(
            model_name='messagelinkrollup',
            constraint=models.UniqueConstraint(fields=('message_id', 'tracked_url_id'), name='messagelinkrollup_url_key'),
        ),
    ]
