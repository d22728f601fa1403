# Photo.image no longer names width_field/height_field (models.Photo): nothing in the database changes,
# so the state alone (on SQLite an AlterField would copy the whole table for nothing).

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
        ]),
    ]
