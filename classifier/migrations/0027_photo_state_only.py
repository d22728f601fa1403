# Nothing in the database changes: Photo.image no longer names width_field/height_field (models.Photo),
# and awaits_model has a name for the admin's filter. The state alone, then (on SQLite an AlterField
# of the image would copy the whole table for nothing).

import classifier.models
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('classifier', '0026_trainingrun_stepped'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(state_operations=[
            migrations.AlterField(
                model_name='photo',
                name='image',
                field=models.ImageField(upload_to=classifier.models.photo_upload_to),
            ),
            migrations.AlterField(
                model_name='photo',
                name='awaits_model',
                field=models.BooleanField(db_default=False, default=False, verbose_name='awaits a model that loads'),
            ),
        ]),
    ]
