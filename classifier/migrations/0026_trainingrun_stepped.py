"""TrainingRun.stepped: when a run last began a step, shown beside "running since"."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('classifier', '0025_photo_awaits_model'),
    ]

    operations = [
        migrations.AddField(
            model_name='trainingrun',
            name='stepped',
            field=models.DateTimeField(blank=True, help_text='when it last began a step (its worker was alive then): one killed leaves it running until the sweep gives up on it', null=True),
        ),
    ]
