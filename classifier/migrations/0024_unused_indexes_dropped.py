"""Two indexes nothing reads: Photo.sha256 (no query looks a photo up by it; the admin's search is a
substring match) and Prediction.margin (the review queue orders by the photo's own copy, migration
0015). Each only cost every upload and every prediction a write.

On PostgreSQL they are dropped CONCURRENTLY, outside a transaction: a plain DROP INDEX locks its
table until it commits, and would queue every upload and page behind any long query (an export, a
training run reading the photos)."""

from django.db import migrations, models

# The names Django gave them (db_index=True); the _like one is PostgreSQL's second, for LIKE.
INDEXES = [
    ("classifier_photo", "classifier_photo_sha256_7c4145ce", "sha256", ""),
    ("classifier_photo", "classifier_photo_sha256_7c4145ce_like", "sha256", " varchar_pattern_ops"),
    ("classifier_prediction", "classifier_prediction_margin_aa04360a", "margin", ""),
]


def drop(apps, schema_editor):
    postgresql = schema_editor.connection.vendor == "postgresql"
    for _, name, _, _ in INDEXES:
        schema_editor.execute(f'DROP INDEX {"CONCURRENTLY " if postgresql else ""}IF EXISTS "{name}"')


def create(apps, schema_editor):
    postgresql = schema_editor.connection.vendor == "postgresql"
    for table, name, column, opclass in INDEXES:
        if opclass and not postgresql:
            continue
        if postgresql:  # (one an interrupted CREATE ... CONCURRENTLY left INVALID would be kept as it is)
            schema_editor.execute(f'DROP INDEX CONCURRENTLY IF EXISTS "{name}"')
        schema_editor.execute(f'CREATE INDEX {"CONCURRENTLY " if postgresql else ""}IF NOT EXISTS "{name}" '
                              f'ON "{table}" ("{column}"{opclass})')


class Migration(migrations.Migration):
    atomic = False  # (CONCURRENTLY cannot run inside a transaction)

    dependencies = [
        ('classifier', '0023_photo_status_names'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name='photo',
                    name='sha256',
                    field=models.CharField(max_length=64),
                ),
                migrations.AlterField(
                    model_name='prediction',
                    name='margin',
                    field=models.FloatField(default=1.0,
                                            help_text='top probability minus the second: small means unsure'),
                ),
            ],
            database_operations=[migrations.RunPython(drop, create)],
        ),
    ]
