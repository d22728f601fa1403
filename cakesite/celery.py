"""The Celery app: configured from Django settings (CELERY_*), tasks found in the apps."""

import os

from celery import Celery
from celery.signals import worker_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cakesite.settings")

app = Celery("cakesite")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_init.connect
def refuse_time_limits_that_do_not_fit(**_kwargs) -> None:
    """A worker does not start on time limits that do not fit together (classifier.checks): it is
    what they govern. (Celery's own Django checks at start only log what they find.) Celery's
    CELERY_SKIP_CHECKS skips this too: the fault tests resend work after a second on purpose."""
    from classifier.checks import time_limits

    errors = [] if os.environ.get("CELERY_SKIP_CHECKS") else time_limits(None)
    if errors:
        raise SystemExit("; ".join(error.msg for error in errors))  # Celery logs other exceptions and goes on
