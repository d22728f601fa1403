"""`manage.py install_models`: the shipped model folders MODELS_DIR lacks, copied into it (before
`migrate`, which registers them)."""

from django.conf import settings
from django.core.management.base import BaseCommand

from classifier import services


class Command(BaseCommand):
    help = "Copy the repository's model folders that MODELS_DIR lacks into it (never replacing one)."

    def handle(self, *args, **options):
        for name in services.shipped_models_install():
            self.stdout.write(f"installed {name} into {settings.MODELS_DIR}")
