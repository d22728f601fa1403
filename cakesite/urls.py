"""Project URLs: the site, accounts (django.contrib.auth) and the admin. Media is served by views
that check ownership, never as public files."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.shortcuts import redirect
from django.templatetags.static import static
from django.urls import include, path

# django.contrib.auth's views, less the password reset by e-mail: sign-up asks for no address.
accounts = [
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("password_change/", auth_views.PasswordChangeView.as_view(), name="password_change"),
    path("password_change/done/", auth_views.PasswordChangeDoneView.as_view(), name="password_change_done"),
]

urlpatterns = [
    path("", include("classifier.urls")),
    path("accounts/", include(accounts)),
    path("api/", include("classifier.api.urls")),
    path("admin/", admin.site.urls),
    # Browsers ask for it on pages that name no icon (the admin's): the site's own, not a 404. (Its
    # URL is looked up when asked: in production it is the collected file's hashed name.)
    path("favicon.ico", lambda request: redirect(static("favicon.svg"), permanent=True)),
]

# Too many files in one upload is found while parsing the body, which the CSRF check does before
# any view: this page says what the limit is (the rest as Django's own 400). With DEBUG on, Django
# shows its technical 400 page instead and never calls it.
handler400 = "classifier.views.bad_request"
handler500 = "classifier.views.server_error"  # the site's page; JSON under /api/
