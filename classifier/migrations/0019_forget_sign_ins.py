"""django-axes kept, by default and for ever, every successful sign-in: user name, address, browser and
times, deleted accounts' too. Nothing uses it, and it is no longer written (AXES_DISABLE_ACCESS_LOG);
what it holds goes. (Failed sign-ins, which the lockout counts, are kept for its cool-off time.)"""

from django.db import migrations


def forget_sign_ins(apps, schema_editor):
    apps.get_model("axes", "AccessLog").objects.all().delete()


class Migration(migrations.Migration):

    dependencies = [
        ("classifier", "0018_photo_client_key"),
        ("axes", "0010_accessattemptexpiration"),
    ]

    operations = [
        migrations.RunPython(forget_sign_ins, migrations.RunPython.noop),
    ]
