from django.apps import AppConfig


class ClassifierConfig(AppConfig):
    name = "classifier"
    verbose_name = "Cake classifier"

    def ready(self):
        from classifier import accounts, checks, signals  # noqa: F401 (registers them)
