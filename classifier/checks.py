"""System checks (`manage.py check`, and `migrate`, which docker-compose runs before the web starts; a worker
refuses to start on them, see cakesite.celery): settings that only work together."""

from django.conf import settings
from django.core.checks import Error, Warning, register


@register()
def time_limits(app_configs, **kwargs) -> list[Error]:
    errors = []
    if settings.CELERY_TASK_TIME_LIMIT >= settings.REQUEUE_AFTER_S:
        errors.append(Error(
            f"CELERY_TASK_TIME_LIMIT ({settings.CELERY_TASK_TIME_LIMIT} s) must be below REQUEUE_AFTER_S "
            f"({settings.REQUEUE_AFTER_S} s): the sweep would resend a photo while a worker still has it.",
            id="classifier.E001"))
    if settings.TRAINING_TIME_LIMIT_S <= 300:
        errors.append(Error(
            f"TRAINING_TIME_LIMIT_S ({settings.TRAINING_TIME_LIMIT_S} s) must be above 300: the soft limit, "
            "which lets a run record its failure, is 300 s before it.", id="classifier.E002"))
    if settings.CLASSIFY_MAX_STARTS <= 4:
        errors.append(Error(
            f"CLASSIFY_MAX_STARTS ({settings.CLASSIFY_MAX_STARTS}) must be above 4: the retries of one "
            "delivery on a lost database start a photo up to 4 times.", id="classifier.E004"))
    visibility = settings.CELERY_BROKER_TRANSPORT_OPTIONS.get("visibility_timeout")
    if visibility is not None and visibility <= settings.TRAINING_TIME_LIMIT_S:
        errors.append(Error(
            f"The broker's visibility timeout ({visibility} s) must be above TRAINING_TIME_LIMIT_S "
            f"({settings.TRAINING_TIME_LIMIT_S} s): Redis would hand a running training task to another "
            "worker.", id="classifier.E003"))
    return errors


@register(deploy=True)
def email_is_sent(app_configs, **kwargs) -> list[Warning]:
    if settings.EMAIL_HOST:
        return []
    return [Warning("EMAIL_HOST is not set: password reset and address confirmation links, and the codes "
                    "staff with an address type before setting up two-factor sign-in, are written to the "
                    "log, not sent.",
                    hint="Set EMAIL_HOST, and EMAIL_HOST_USER, EMAIL_HOST_PASSWORD and DEFAULT_FROM_EMAIL "
                         "as the mail server needs.", id="classifier.W001")]


@register(deploy=True)
def counters_are_shared(app_configs, **kwargs) -> list[Warning]:
    if settings.CACHE_URL.startswith("redis"):
        return []
    return [Warning("CACHE_URL is not set: each web process counts the API's rate limits, the e-mails "
                    "asked for and the long polls per user on its own, so several processes allow more.",
                    hint="Set CACHE_URL=redis://... (docker-compose.yml does).", id="classifier.W002")]
