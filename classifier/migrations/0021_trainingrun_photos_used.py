"""The users' answers a run learnt from and measured on, by photo id: which ones a version knows, and
so whether a later run learnt anything new. A database default, so that workers of the release
before still record runs; runs before it record none."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('classifier', '0020_photo_display'),
    ]

    operations = [
        migrations.AddField(
            model_name='trainingrun',
            name='photos_used',
            field=models.JSONField(blank=True, db_default={}, default=dict, help_text='{"trained": [[photo id, label], ...], "held_out": [...]}: the users\' answers it learnt from and those it measured on ({} for runs before it was recorded)'),
        ),
    ]
