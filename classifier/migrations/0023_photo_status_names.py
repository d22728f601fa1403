"""A photo's states named as the upload page names them: Waiting, Being classified, Classified, Failed
(no change to the stored values)."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('classifier', '0022_feedback_called_answer'),
    ]

    operations = [
        migrations.AlterField(
            model_name='photo',
            name='status',
            field=models.CharField(choices=[('queued', 'Waiting'), ('processing', 'Being classified'), ('done', 'Classified'), ('failed', 'Failed')], db_index=True, default='queued', max_length=12),
        ),
    ]
