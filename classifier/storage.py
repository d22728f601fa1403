"""Where photos, their display copies, thumbnails and heat maps are stored: Django's
FileSystemStorage, except that a file takes its name only once it is whole."""

from __future__ import annotations

import os
import time
import uuid
from contextlib import suppress

from django.core.files.storage import FileSystemStorage

PARTIAL = ".partial-"
# No write takes this long: a partial file older than this was left by a process killed mid-write.
ABANDONED_AFTER_S = 3600


class WholeFileSystemStorage(FileSystemStorage):
    """Django writes a file under its final name, and a write that fails midway (a full disk, a
    time limit striking) leaves the part written there, under a name that is free again for
    the next photo and that no row points to. Here Django writes it under a temporary name in the
    same folder, which is removed whatever happens (short of a SIGKILL: see remove_abandoned); the
    file is linked to its name when complete (a link, unlike a rename, never replaces a file that
    took the name meanwhile)."""

    def _save(self, name, content):
        partial = os.path.join(os.path.dirname(name), f"{PARTIAL}{uuid.uuid4().hex}")
        try:
            super()._save(partial, content)  # makes the folder, writes, sets the permissions
            while True:
                try:
                    os.link(self.path(partial), self.path(name))
                    return str(name).replace("\\", "/")
                except FileExistsError:
                    name = self.get_available_name(name)
        finally:
            with suppress(FileNotFoundError):
                os.remove(self.path(partial))


def remove_abandoned(root: str | os.PathLike, older_than_s: float = ABANDONED_AFTER_S) -> int:
    """Remove the partial files under `root` that a process killed mid-write (a SIGKILL runs no
    `finally`) left behind, once old enough that no write can still be under way; how many."""
    removed, now = 0, time.time()
    for folder, _folders, names in os.walk(root):
        for name in names:
            if name.startswith(PARTIAL):
                path = os.path.join(folder, name)
                with suppress(FileNotFoundError):  # removed meanwhile by its writer or another sweep
                    if now - os.stat(path).st_mtime > older_than_s:
                        os.remove(path)
                        removed += 1
    return removed
