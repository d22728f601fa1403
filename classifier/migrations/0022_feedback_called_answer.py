"""The admin names a Feedback row what the site calls it: an answer (its section was "Feedback")."""

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ('classifier', '0021_trainingrun_photos_used'),
    ]

    operations = [
        migrations.AlterModelOptions(
            name='feedback',
            options={'verbose_name': 'answer'},
        ),
    ]
