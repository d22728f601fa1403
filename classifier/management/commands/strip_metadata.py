"""`manage.py strip_metadata`: the photos uploaded before every photo was stored without its metadata
(2026-12-06), stored again without it. Run it once after upgrading; it leaves the others alone."""

from django.core.management.base import BaseCommand

from classifier import selectors, services


class Command(BaseCommand):
    help = ("Store again, without their metadata (such as where they were taken), the photos uploaded "
            "before every photo was stored without it.")

    def handle(self, *args, **options):
        photos = selectors.photos_that_may_carry_metadata()
        stripped = sum(services.photo_metadata_strip(photo) for photo in photos.iterator())
        self.stdout.write(f"{stripped} photos stored again without their metadata")
