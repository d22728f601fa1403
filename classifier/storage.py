"""Where photos, thumbnails and heat maps are stored: Django's FileSystemStorage, except that a file
takes its name only once it is whole."""

from __future__ import annotations

import os
import uuid
from contextlib import suppress

from django.core.files.storage import FileSystemStorage


class WholeFileSystemStorage(FileSystemStorage):
    """Django writes a file under its final name, and a write that fails midway (a full disk, a
    time limit striking) leaves the part written there, under a name that is free again for
    the next photo and that no row points to. Here Django writes it under a temporary name in the
    same folder, which is removed whatever happens; the file is linked to its name when complete
    (a link, unlike a rename, never replaces a file that took the name meanwhile)."""

    def _save(self, name, content):
        partial = os.path.join(os.path.dirname(name), f".partial-{uuid.uuid4().hex}")
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
