"""`manage.py status`: what an operator asks first when something seems wrong, in a few lines, and
an exit status a monitor can use: 1 when photos wait on a classifier that looks stopped, or failed
for want of a model that loads (the staff page says the same), or the broker cannot be reached."""

from django.conf import settings
from django.core.management.base import BaseCommand
from django.utils import timezone

from classifier import selectors, tasks
from classifier.models import ModelVersion


class Command(BaseCommand):
    help = ("Say whether photos are waiting or failing for want of a model, what the queues hold and "
            "which training run is live; exit 1 when something needs a person.")

    def handle(self, *args, **options):
        now = timezone.now()
        active = ModelVersion.objects.filter(is_active=True).first()
        backlog = selectors.classification_backlog(ask_broker=True)
        self.stdout.write(f"active version: {active.name if active else 'none'}")
        waiting = f"photos waiting: {backlog['count']}"
        if backlog["oldest"] is not None:
            waiting += f", the oldest for {round((now - backlog['oldest']).total_seconds())} s"
        if backlog["broker_unreachable"]:
            waiting += " (none classified in 2 minutes: the broker cannot be reached)"
        elif backlog["stalled"]:
            waiting += " (none classified in 2 minutes: is the classification worker running?)"
        self.stdout.write(waiting)
        self.stdout.write(f"photos failed for want of a model that loads: {backlog['awaiting_model']}"
                          + (" (the worker's log says why: \"does not load\")" if backlog["awaiting_model"]
                             else ""))
        unreachable = backlog["broker_unreachable"]
        for queue in (settings.CELERY_TASK_DEFAULT_QUEUE, settings.EMAIL_QUEUE, settings.TRAINING_QUEUE):
            # (asked once: a broker that hangs would cost seconds a queue)
            count = None if unreachable else tasks.messages_waiting(queue)
            if unreachable := count is None:
                self.stdout.write("messages waiting: the broker cannot be reached (its log, or the worker's)")
                break
            self.stdout.write(f"messages waiting in {queue}: {count}")
        run = selectors.live_run()
        if run is None:
            self.stdout.write("training run: none live")
        else:
            since = run.stepped or run.started or run.created
            self.stdout.write(f"training run {run.pk}: {run.status}, last change "
                              f"{round((now - since).total_seconds())} s ago")
        if backlog["stalled"] or backlog["awaiting_model"] or unreachable:
            raise SystemExit(1)
