"""Photo.awaits_model: a photo that failed for want of a model is queued again once one is active
(services.photos_awaiting_model_requeue). A column with a constant default: PostgreSQL adds it
without rewriting the table. The photos that failed so before it are marked too, their message
made the new one (the old asked their owner to retry)."""

from django.db import migrations, models

# (the messages classifier.tasks gave before, and gives now)
AS_BEFORE_AND_NOW = [
    ("No model is active yet; an administrator must activate one.",
     "No model is active yet; the photo is classified once an administrator activates one."),
    ("The model cannot be loaded right now; retry once an administrator has activated a working version.",
     "The model cannot be loaded right now; the photo is classified once a working version is active."),
]


def mark_failed_for_want_of_a_model(apps, schema_editor):
    Photo = apps.get_model("classifier", "Photo")
    for before, now in AS_BEFORE_AND_NOW:
        Photo.objects.filter(status="failed", error=before).update(awaits_model=True, error=now)


class Migration(migrations.Migration):

    dependencies = [
        ('classifier', '0024_unused_indexes_dropped'),
    ]

    operations = [
        migrations.AddField(
            model_name='photo',
            name='awaits_model',
            field=models.BooleanField(db_default=False, default=False),
        ),
        migrations.RunPython(mark_failed_for_want_of_a_model, migrations.RunPython.noop),
    ]
