"""`manage.py storage`: the stored files and the rows that name them, checked against each other. A
file no row names (an upload, a heat map or a page's copy whose process was killed before its row
committed, a deletion killed before its files went) costs only room; a row whose file is gone (a
restore without its files) shows a broken photo. Exit 1 when it finds either, as `status` does;
`--delete-orphans` removes the files no row names (older than `--older-than`, an hour: an upload
under way is never touched)."""

from datetime import timedelta

from django.core.management.base import BaseCommand

from classifier import selectors, services

SHOWN = 10  # rows named one by one, per kind (all of them with -v 2)


class Command(BaseCommand):
    help = ("Report the files in the media storage that no row names, and the rows (photos, heat maps, "
            "model versions) whose files are missing; exit 1 when there are any. --delete-orphans removes "
            "the files no row names.")

    def add_arguments(self, parser):
        parser.add_argument("--delete-orphans", action="store_true",
                            help="remove the files no row names (never one a row names, nor a younger one)")
        parser.add_argument("--older-than", type=int, default=int(selectors.ORPHAN_AFTER.total_seconds()),
                            metavar="SECONDS", help="a file no row names counts once this old "
                                                    "(default: %(default)s; at least 600: a file is "
                                                    "written before its row)")

    def handle(self, *args, delete_orphans=False, older_than=3600, verbosity=1, **options):
        older = timedelta(seconds=max(older_than, 600))
        check = selectors.media_check(older)
        orphan_bytes = sum(size for _name, size in check.orphans)
        self.stdout.write(f"files no row names: {len(check.orphans)} ({megabytes(orphan_bytes)}), older than "
                          f"{round(older.total_seconds())} s; {check.young} younger left alone")
        self.listed([f"{name} ({megabytes(size)})" for name, size in check.orphans], verbosity)
        problems = bool(check.orphans)
        if delete_orphans and check.orphans:
            removed, size = services.media_orphans_remove([name for name, _size in check.orphans], older)
            self.stdout.write(f"removed {removed} of them ({megabytes(size)})")
            problems = removed < len(check.orphans)
        self.stdout.write(f"rows whose file is missing: {len(check.missing)}")
        self.listed([f"{kind} {pk}: its {field} {name}" for kind, pk, field, name in check.missing],
                    verbosity)
        versions = selectors.model_versions_missing_files()
        self.stdout.write(f"model versions whose files are missing: {len(versions)}")
        self.listed([f"{version.name}: {what}" for version, what in versions], verbosity)
        if problems or check.missing or versions:
            raise SystemExit(1)

    def listed(self, lines: list[str], verbosity: int) -> None:
        for line in lines[:None if verbosity > 1 else SHOWN]:
            self.stdout.write(f"  {line}")
        if verbosity <= 1 and len(lines) > SHOWN:
            self.stdout.write(f"  and {len(lines) - SHOWN} more (-v 2 lists them all)")


def megabytes(size: int) -> str:
    return f"{size / 1e6:.1f} MB"
