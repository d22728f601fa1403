"""A copy of a large photo at the size its page shows it (a phone's photo is 4000 pixels wide and
megabytes: the page downloaded it whole). A default, so that web processes of the release before
still store photos; photos stored before have none, and their page shows the photo itself."""

import classifier.models
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('classifier', '0019_forget_sign_ins'),
    ]

    operations = [
        migrations.AddField(
            model_name='photo',
            name='display',
            field=models.ImageField(blank=True, db_default='', default='', upload_to=classifier.models.display_upload_to),
        ),
    ]
