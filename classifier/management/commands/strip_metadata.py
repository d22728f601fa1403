"""`manage.py strip_metadata`: the photos uploaded before every photo was stored without its metadata
(2026-12-06), stored again without it. Run it once after upgrading; it leaves the others alone."""

from django.core.management.base import BaseCommand

from classifier import services
from classifier.models import Photo


class Command(BaseCommand):
    help = ("Store again, without their metadata (such as where they were taken), the photos uploaded "
            "before every photo was stored without it.")

    def handle(self, *args, **options):
        # Not those waiting for the worker: it may be about to open the file that would be replaced.
        photos = Photo.objects.exclude(status__in=Photo.PENDING).filter(
            image_format__in=["jpg", "png", "webp", "gif"])  # (a BMP has none)
        stripped = sum(services.photo_metadata_strip(photo) for photo in photos.order_by("pk").iterator())
        self.stdout.write(f"{stripped} photos stored again without their metadata")
