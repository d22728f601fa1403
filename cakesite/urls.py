"""Project URLs: the site, accounts (django.contrib.auth) and the admin. Media is served by views
that check ownership, never as public files."""

from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("", include("classifier.urls")),
    path("accounts/", include("django.contrib.auth.urls")),
    path("api/", include("classifier.api.urls")),
    path("admin/", admin.site.urls),
]

# Too many files in one upload is found while parsing the body, which the CSRF check does before
# any view: this page says what the limit is (the rest as Django's own 400).
handler400 = "classifier.views.bad_request"
