"""Register the model shipped in the repository as the first, active version."""

import json
from pathlib import Path

from django.conf import settings
from django.db import migrations


def register(apps, schema_editor):
    ModelVersion = apps.get_model("classifier", "ModelVersion")
    folder = Path(settings.MODELS_DIR) / settings.SHIPPED_MODEL
    if not (folder / "labels.json").is_file() or ModelVersion.objects.filter(
        name=settings.SHIPPED_MODEL
    ).exists():
        return
    metrics_file = folder / "metrics.json"
    ModelVersion.objects.create(
        name=settings.SHIPPED_MODEL,
        path=settings.SHIPPED_MODEL,
        labels=json.loads((folder / "labels.json").read_text()),
        metrics=json.loads(metrics_file.read_text()) if metrics_file.is_file() else {},
        is_active=not ModelVersion.objects.filter(is_active=True).exists(),
    )


def unregister(apps, schema_editor):
    ModelVersion = apps.get_model("classifier", "ModelVersion")
    ModelVersion.objects.filter(name=settings.SHIPPED_MODEL, predictions__isnull=True).delete()


class Migration(migrations.Migration):
    dependencies = [("classifier", "0001_initial")]
    operations = [migrations.RunPython(register, unregister)]
