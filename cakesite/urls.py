"""Project URLs: the site, accounts (django.contrib.auth) and the admin. Media is served by views
that check ownership, never as public files."""

from django.conf import settings
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.shortcuts import redirect
from django.templatetags.static import static
from django.urls import include, path
from django.utils import translation
from django.views.decorators.cache import cache_control
from django.views.decorators.vary import vary_on_cookie
from django.views.i18n import JavaScriptCatalog

from classifier import selectors, views
from classifier.forms import SetPasswordForm, SignInForm

# django.contrib.auth's views (the old password checked as a sign-in attempt, the reset e-mails
# limited), and the account page.
accounts = [
    path("", views.account, name="account"),
    path("token/", views.account_token, name="account-token"),
    path("two-factor/", views.two_factor, name="two-factor"),
    path("two-factor/backup-codes/", views.backup_codes_renew, name="two-factor-backup-codes"),
    path("email/resend/", views.account_email_resend, name="account-email-resend"),
    path("email/<str:token>/", views.email_confirm, name="email-confirm"),
    path("export/", views.account_export, name="account-export"),
    path("delete/", views.account_delete, name="account-delete"),
    path("login/", auth_views.LoginView.as_view(authentication_form=SignInForm), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("password_change/", views.PasswordChangeView.as_view(), name="password_change"),
    path("password_change/done/", auth_views.PasswordChangeDoneView.as_view(), name="password_change_done"),
    path("password_reset/", views.PasswordResetView.as_view(), name="password_reset"),
    path("password_reset/done/", auth_views.PasswordResetDoneView.as_view(
        extra_context={"reset_minutes": settings.PASSWORD_RESET_TIMEOUT // 60}), name="password_reset_done"),
    path("reset/<uidb64>/<token>/", auth_views.PasswordResetConfirmView.as_view(form_class=SetPasswordForm),
         name="password_reset_confirm"),
    path("reset/done/", auth_views.PasswordResetCompleteView.as_view(), name="password_reset_complete"),
]

_catalog = JavaScriptCatalog.as_view(packages=["classifier"])


@cache_control(max_age=3600)
@vary_on_cookie
def catalog(request):
    """The scripts' translations in the language the page names in the script's URL (base.html): a
    browser keeps one copy of each, never the other language's under the same URL and cookies (the
    account's language, in the session, changes with no cookie changing)."""
    language = request.GET.get("language")
    if not selectors.language_offered(language):
        return _catalog(request)
    with translation.override(language):
        return _catalog(request)

urlpatterns = [
    path("", include("classifier.urls")),
    path("accounts/", include(accounts)),
    path("api/", include("classifier.api.urls")),
    path("admin/", admin.site.urls),
    # The language chosen at the foot of each page (Django's set_language, which the account keeps
    # too), and the scripts' own translations (gettext() in static/js; locale/ only, not the
    # admin's), in the page's language: kept by the browser for an hour (a new release's new text is
    # English until then), asked for again when the language changes (Vary: Accept-Language, and
    # Cookie, which holds the one chosen, and the session, which holds the account's).
    path("i18n/setlang/", views.language_set, name="set_language"),
    path("jsi18n/", catalog, name="javascript-catalog"),
    # Browsers ask for it on pages that name no icon (the admin's): the site's own, not a 404. (Its
    # URL is looked up when asked: in production it is the collected file's hashed name.)
    path("favicon.ico", lambda request: redirect(static("favicon.svg"), permanent=True)),
]

# Too many files in one upload is found while parsing the body, which the CSRF check does before
# any view: this page says what the limit is (the rest as Django's own 400). With DEBUG on, Django
# shows its technical 400 page instead and never calls it.
handler400 = "classifier.views.bad_request"
handler500 = "classifier.views.server_error"  # the site's page; JSON under /api/
