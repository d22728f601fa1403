"""Two indexes nothing reads: Photo.sha256 (no query looks a photo up by it; the admin's search is a
substring match) and Prediction.margin (the review queue orders by the photo's own copy, migration
0015). Each only cost every upload and every prediction a write."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('classifier', '0023_photo_status_names'),
    ]

    operations = [
        migrations.AlterField(
            model_name='photo',
            name='sha256',
            field=models.CharField(max_length=64),
        ),
        migrations.AlterField(
            model_name='prediction',
            name='margin',
            field=models.FloatField(default=1.0, help_text='top probability minus the second: small means unsure'),
        ),
    ]
