from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class ClassifierConfig(AppConfig):
    name = "classifier"
    verbose_name = _("Cake classifier")

    def ready(self):
        from classifier import accounts, checks, signals  # noqa: F401 (registers them)
