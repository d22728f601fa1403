# Photo.waiting_since: since when a photo waits for the classifier. The column comes empty (no table
# rewrite), the photos waiting now get their upload's time (what their page and `manage.py status`
# counted from before), and only then does the database fill it for new photos.

import django.db.models.functions.datetime
from django.db import migrations, models
from django.db.models import F


def pending_photos_wait_since_upload(apps, schema_editor):
    Photo = apps.get_model("classifier", "Photo")
    Photo.objects.filter(status__in=["queued", "processing"]).update(waiting_since=F("created"))


class Migration(migrations.Migration):

    dependencies = [
        ('classifier', '0027_photo_state_only'),
    ]

    operations = [
        migrations.AddField(
            model_name='photo',
            name='waiting_since',
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.RunPython(pending_photos_wait_since_upload, migrations.RunPython.noop),
        migrations.AlterField(
            model_name='photo',
            name='waiting_since',
            field=models.DateTimeField(blank=True, db_default=django.db.models.functions.datetime.Now(), null=True),
        ),
    ]
