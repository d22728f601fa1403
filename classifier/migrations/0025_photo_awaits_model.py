"""Photo.awaits_model: a photo that failed for want of a model is queued again once one is active.
A column with a constant default: PostgreSQL adds it without rewriting the table."""

from django.db import migrations, models


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
    ]
