"""What follows a deletion, however it happens (a service, the admin, a bulk action, a deleted
user's cascade): the files of deleted photos and predictions go once the deletion is committed."""

from django.db import transaction
from django.db.models.signals import post_delete
from django.dispatch import receiver

from classifier.models import Photo, Prediction, display_upload_to


def delete_files_on_commit(*files) -> None:
    """Remove the stored files after the transaction commits (never before: a rollback keeps the row,
    and its files with it), each on its own: one the disk refuses (logged) does not keep the others."""
    def deleter(file):
        def delete_file() -> None:  # (a function: Django names it in the log if it raises)
            file.delete(save=False)
        return delete_file

    for file in files:
        if file:
            transaction.on_commit(deleter(file), robust=True)


@receiver(post_delete, sender=Photo)
def photo_files(sender, instance: Photo, **_kwargs) -> None:
    delete_files_on_commit(instance.image, instance.thumbnail, instance.display)
    if not instance.display and instance.image:  # one its page may have made since this was read
        storage, name = instance.display.storage, display_upload_to(instance, "")
        transaction.on_commit(lambda: storage.delete(name), robust=True)


@receiver(post_delete, sender=Prediction)
def prediction_files(sender, instance: Prediction, **_kwargs) -> None:
    delete_files_on_commit(instance.heatmap)
