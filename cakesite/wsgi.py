"""WSGI entry point for production servers."""

import os

from django.core.handlers.wsgi import WSGIRequest
from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cakesite.settings")


class Request(WSGIRequest):
    """Django's, reading a Content-Type whose parameters cannot be decoded (an RFC 2231 value in an
    unknown charset, `boundary*=xyz''%41`) as that type without parameters. Django raised there while
    it made the request, before any middleware, and the server answered any URL with its own bare
    500; now the site answers (the API with its 415 for a media type it cannot read)."""

    def _set_content_type_params(self, meta):
        try:
            super()._set_content_type_params(meta)
        except ValueError:
            self.content_type = meta.get("CONTENT_TYPE", "").partition(";")[0].strip().lower()
            self.content_params = {}


application = get_wsgi_application()
application.request_class = Request
