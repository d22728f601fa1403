"""API URLs under /api/: a DRF router, the token endpoint, the OpenAPI schema and its docs."""

from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularSwaggerSplitView
from rest_framework.routers import DefaultRouter

from classifier.api import views

app_name = "api"

router = DefaultRouter(use_regex_path=False)  # path converters: <int:pk>, typed in the schema
router.include_format_suffixes = False  # no /api/photos.json: one URL a resource
router.register("photos", views.PhotoViewSet, basename="photo")
router.register("model-versions", views.ModelVersionViewSet, basename="modelversion")
router.register("training-runs", views.TrainingRunViewSet, basename="trainingrun")

urlpatterns = [
    path("auth/token/", views.TokenView.as_view(), name="token"),
    path("account/", views.AccountView.as_view(), name="account"),
    path("account/export/", views.account_export, name="account-export"),
    path("account/delete/", views.account_delete, name="account-delete"),
    path("account/password/", views.account_password, name="account-password"),
    path("auth/password-reset/", views.password_reset, name="password-reset"),
    path("stats/", views.stats, name="stats"),
    # (public: no authentication, so a token no longer valid in the header is no 401 there)
    path("schema/", views.SchemaView.as_view(authentication_classes=[]), name="schema"),
    # (its script in a file of its own, as the Content-Security-Policy allows no inline one)
    # (GET only: DRF's OPTIONS answer through its HTML renderer, which has no template, was a 500)
    path("docs/", SpectacularSwaggerSplitView.as_view(url_name="api:schema", authentication_classes=[],
                                                       http_method_names=["get", "head"]), name="docs"),
    path("", include(router.urls)),
    re_path(r"^[\s\S]*$", views.not_found),  # anything else under /api/, a newline too: a JSON 404, not HTML
]
