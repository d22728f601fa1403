"""The shipped model's version describes the files it has, where they are a release's shipped model.

0016 recorded, for the shipped model, the fingerprint of its files as they are in that commit. But a
Docker installation keeps its models in a volume filled from the image it first started with: one
started before 2026-11-23 still holds that release's shipped model, and 0016 made every worker refuse
it, so no photo was classified any more. Here a shipped model folder whose files are exactly those of
a release (earlier or this one) gets their fingerprint, and the labels and figures read from them
(0002 read them once, at the first installation: a git checkout updated since holds newer files).
A folder that is no release's is left as 0016 left it: refused.

And the fingerprint column gets a database default (empty, "not checked"): a trainer of an earlier
release, still running while this one migrates, registers its version instead of failing on it."""

import json
from pathlib import Path

from django.conf import settings
from django.db import migrations, models

# training.runtime.fingerprint of models/kue-mobilenetv2 as each commit that changed it left it
# (git archive <commit> models/kue-mobilenetv2): 40b6ab5 and 068079b, bebb84e, 2b5359a, 27ad4be (the
# current files, the fingerprint 0016 records).
RELEASED = {"kue-mobilenetv2": {
    "0404afb4bc162740433f09b3b0608eb5802ad68f041598d0810752e817063dee",
    "a011e40f64f09178cb692b84b9a5ed0a85abb2f2c2223dcea0ee2e9b1129bc3e",
    "2645297b24c7d7cd9a0078495cd95d7b53970f822cbb5b701caa6a5a24f28493",
    "aa2d01ede5eaa254be3db00e99034877c41b49fa2bc69106bc4d3ec878382550",
}}
CURRENT = "aa2d01ede5eaa254be3db00e99034877c41b49fa2bc69106bc4d3ec878382550"


def describe_the_files(apps, schema_editor):
    from training.runtime import fingerprint  # plain hashing of files, no model code

    ModelVersion = apps.get_model("classifier", "ModelVersion")
    for name, released in RELEASED.items():
        version = ModelVersion.objects.filter(name=name, path=name).first()
        folder = Path(settings.MODELS_DIR) / name
        if version is None or not (folder / "labels.json").is_file():
            continue
        found = fingerprint(folder)
        if found not in released:
            continue  # changed by someone: stays refused
        if found != CURRENT:
            print(f"\n  {name}: {folder} holds an earlier release's shipped model, served as before. "
                  "(A Docker volume keeps the files it was first filled with.)")
        metrics = folder / "metrics.json"
        version.fingerprint = found
        version.labels = json.loads((folder / "labels.json").read_text())
        version.metrics = json.loads(metrics.read_text()) if metrics.is_file() else {}
        version.save(update_fields=["fingerprint", "labels", "metrics"])


class Migration(migrations.Migration):

    dependencies = [
        ("classifier", "0016_model_versions_order_name_fingerprint"),
    ]

    operations = [
        migrations.AlterField(
            model_name="modelversion",
            name="fingerprint",
            field=models.CharField(
                blank=True, db_default="", default="", max_length=64,
                help_text="SHA-256 of its files when registered (training.runtime.fingerprint): files changed "
                          "afterwards are neither activated nor served; empty: not checked",
            ),
        ),
        migrations.RunPython(describe_the_files, migrations.RunPython.noop),
    ]
