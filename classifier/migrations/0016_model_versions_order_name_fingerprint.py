"""Model versions: listed newest first with the id breaking ties; their name is one plain folder
name (the runs retrained from a version name their folders after it); and they record the
fingerprint of their files. The shipped model's is written here, as its files are in this commit:
files changed in place later (a new export into the same folder) are then refused instead of served
under its name and figures, and need a new version or a migration."""

from pathlib import Path

import django.core.validators
from django.conf import settings
from django.db import migrations, models

SHIPPED = {"kue-mobilenetv2": "aa2d01ede5eaa254be3db00e99034877c41b49fa2bc69106bc4d3ec878382550"}


def fill(apps, schema_editor):
    from training.runtime import fingerprint  # plain hashing of files, no model code

    ModelVersion = apps.get_model("classifier", "ModelVersion")
    for version in ModelVersion.objects.filter(fingerprint=""):
        folder = Path(settings.MODELS_DIR) / version.path
        if version.path in SHIPPED and version.name == version.path:
            version.fingerprint = SHIPPED[version.path]
        elif folder.is_dir():  # as its files are now: from here on, a change is noticed
            version.fingerprint = fingerprint(folder)
        else:
            continue
        version.save(update_fields=["fingerprint"])


class Migration(migrations.Migration):

    dependencies = [
        ("classifier", "0015_photo_prediction_copies"),
    ]

    operations = [
        migrations.AlterModelOptions(
            name="modelversion",
            options={"ordering": ["-created", "-id"]},
        ),
        migrations.AlterField(
            model_name="modelversion",
            name="name",
            field=models.CharField(max_length=100, unique=True, validators=[
                django.core.validators.RegexValidator(
                    "\\A[A-Za-z0-9][A-Za-z0-9._+-]*\\Z",
                    "Use letters, digits and . _ + - only, starting with a letter or a digit.")]),
        ),
        migrations.AddField(
            model_name="modelversion",
            name="fingerprint",
            field=models.CharField(
                blank=True, max_length=64,
                help_text="SHA-256 of its files when registered (training.runtime.fingerprint): files changed "
                          "afterwards are neither activated nor served; empty: not checked",
            ),
        ),
        migrations.RunPython(fill, migrations.RunPython.noop),
    ]
