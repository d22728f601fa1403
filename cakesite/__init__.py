"""The cakesite project: settings, URLs, the WSGI entry point and the Celery app."""

from cakesite.celery import app as celery_app

__all__ = ["celery_app"]
