"""Photos remember the Idempotency-Key of the upload that stored them: a request sent again gets its
photos, not copies (a default, so that web processes of the release before still store photos)."""

from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('classifier', '0017_shipped_model_as_its_files'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name='photo',
            name='client_key',
            field=models.CharField(blank=True, db_default='', default='', max_length=80),
        ),
        migrations.AddConstraint(
            model_name='photo',
            constraint=models.UniqueConstraint(condition=models.Q(('client_key', ''), _negated=True), fields=('owner', 'client_key'), name='photo_client_key_once_per_owner'),
        ),
    ]
