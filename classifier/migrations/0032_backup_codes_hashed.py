"""Backup codes kept as digests: the codes django-otp kept in plain text become their HMAC under
SECRET_KEY (services.backup_code_digest), so each still signs in once and a copy of the database no
longer does. Going back leaves digests the release before compares as codes: none of them works,
and each staff member makes new ones (their account page) after signing in with the app."""

from django.db import migrations
from django.utils.crypto import salted_hmac

BACKUP_CODE_SALT = "cakesite.backup-code"  # services.BACKUP_CODE_SALT, as it was at this migration


def is_digest(token: str) -> bool:
    return len(token) == 16 and all(c in "0123456789abcdef" for c in token)


def keep_digests(apps, schema_editor):
    StaticToken = apps.get_model("otp_static", "StaticToken")
    for token in StaticToken.objects.all():
        if not is_digest(token.token):  # (django-otp's codes are 8 letters and digits of base 32)
            digest = salted_hmac(BACKUP_CODE_SALT, token.token, algorithm="sha256").hexdigest()[:16]
            StaticToken.objects.filter(pk=token.pk).update(token=digest)


class Migration(migrations.Migration):
    dependencies = [
        ("classifier", "0031_account_settings"),
        ("otp_static", "0003_add_timestamps"),
    ]

    operations = [migrations.RunPython(keep_digests, migrations.RunPython.noop, elidable=True)]
