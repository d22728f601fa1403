"""Who may reach what: every URL of the site and the API, for an anonymous visitor, the photo's
owner, another user, read-only staff (may view photos, nothing else) and an administrator."""

import re
from urllib.parse import urlsplit

import pytest
from django.urls import URLPattern, URLResolver, get_resolver
from rest_framework.test import APIClient

from classifier import tasks
from classifier.models import ModelVersion, TrainingRun
from tests.conftest import api_token, make_photo

pytestmark = pytest.mark.django_db

ROLES = ["anonymous", "owner", "other", "staff", "admin"]

# (method, path with {photo} / {version}, expected status per role in ROLES order)
WEBSITE = [
    ("get", "/", [200, 200, 200, 200, 200]),
    ("get", "/signup/", [200, 200, 200, 200, 200]),
    ("get", "/accounts/login/", [200, 200, 200, 200, 200]),
    ("get", "/accounts/password_change/", [302, 200, 200, 200, 200]),
    ("get", "/accounts/password_reset/", [200, 200, 200, 200, 200]),
    ("get", "/accounts/", [302, 200, 200, 200, 200]),
    ("post", "/accounts/token/", [302, 400, 400, 400, 400]),  # a new token needs the password
    ("post", "/accounts/delete/", [302, 400, 400, 400, 400]),  # without the password
    ("get", "/accounts/export/", [302, 200, 200, 200, 200]),  # one's own photos only (tests/test_export.py)
    ("post", "/accounts/email/resend/", [302, 302, 302, 302, 302]),  # (none waits: said so)
    ("get", "/accounts/email/forged/", [404, 404, 404, 404, 404]),
    ("get", "/upload/", [302, 200, 200, 200, 200]),
    ("get", "/photos/", [302, 200, 200, 200, 200]),
    ("get", "/photos/status/?ids={photo}", [302, 200, 200, 200, 200]),
    ("get", "/photos/{photo}/", [302, 200, 404, 200, 200]),
    ("get", "/photos/{photo}/image/", [302, 200, 404, 200, 200]),
    ("get", "/photos/{photo}/thumbnail/", [302, 200, 404, 200, 200]),
    ("get", "/photos/{photo}/display/", [302, 200, 404, 200, 200]),
    ("get", "/photos/{photo}/heatmap/", [302, 200, 404, 200, 200]),
    ("post", "/photos/{photo}/retry/", [302, 302, 404, 403, 302]),  # staff may see it, not retry it
    ("post", "/photos/{photo}/feedback/", [302, 302, 404, 403, 302]),
    ("post", "/photos/{photo}/feedback/withdraw/", [302, 302, 404, 403, 302]),
    ("get", "/photos/{photo}/delete/", [302, 200, 404, 403, 200]),  # asks to confirm
    ("post", "/photos/{photo}/delete/", [302, 302, 404, 403, 302]),
    ("get", "/photos/delete/", [302, 200, 200, 200, 200]),  # a page of the photos each may delete
    # (another's photo among those ticked is left as one gone: said so; staff who see it, a 403)
    ("post", "/photos/delete/", [302, 302, 302, 403, 302]),
    ("get", "/review/", [302, 200, 200, 200, 200]),
    # staff pages: the model permissions too, as the API and the admin ask for the same data
    ("get", "/staff/models/", [302, 302, 302, 403, 200]),
    ("get", "/staff/models/?part=runs", [302, 302, 302, 403, 200]),
    ("get", "/staff/models/{version}/confusion/{split}.png", [302, 302, 302, 403, 200]),
    ("get", "/staff/models/{version}/curves.png", [302, 302, 302, 403, 200]),
    ("get", "/staff/feedback-accuracy.png", [302, 302, 302, 403, 200]),
    ("post", "/staff/models/{version}/activate/", [302, 302, 302, 403, 302]),
    ("post", "/staff/training/start/", [302, 302, 302, 403, 302]),
    ("post", "/staff/training/{run}/cancel/", [302, 302, 302, 403, 302]),  # (it has ended: said so)
    ("get", "/admin/", [302, 302, 302, 200, 200]),
    ("get", "/admin/classifier/photo/", [302, 302, 302, 200, 200]),
    ("get", "/admin/classifier/trainingrun/", [302, 302, 302, 403, 200]),
    ("get", "/media/photos/x.jpg", [404, 404, 404, 404, 404]),  # no public media URL
    ("post", "/i18n/setlang/", [302, 302, 302, 302, 302]),  # the language (tests/test_languages.py)
    ("get", "/jsi18n/", [200, 200, 200, 200, 200]),  # the scripts' translations
]
API = [
    ("get", "/api/schema/", [200, 200, 200, 200, 200]),
    ("get", "/api/docs/", [200, 200, 200, 200, 200]),
    ("options", "/api/docs/", [405, 405, 405, 405, 405]),  # an HTML page: nothing to describe
    ("get", "/api/photos/", [401, 200, 200, 200, 200]),
    ("post", "/api/photos/", [401, 400, 400, 400, 400]),  # no files: a 400 once allowed
    ("get", "/api/photos/{photo}/", [401, 200, 404, 200, 200]),
    ("get", "/api/photos/{photo}/image/", [401, 200, 404, 200, 200]),
    ("get", "/api/photos/{photo}/thumbnail/", [401, 200, 404, 200, 200]),
    ("get", "/api/photos/{photo}/display/", [401, 200, 404, 200, 200]),
    ("get", "/api/photos/{photo}/heatmap/", [401, 200, 404, 200, 200]),
    ("get", "/api/photos/review-queue/", [401, 200, 200, 200, 200]),
    ("get", "/api/stats/", [401, 200, 200, 200, 200]),
    ("put", "/api/photos/{photo}/feedback/", [401, 200, 404, 403, 200]),  # staff may see it, not answer
    ("delete", "/api/photos/{photo}/feedback/", [401, 200, 404, 403, 200]),  # (withdraws it)
    ("post", "/api/photos/{photo}/retry/", [401, 400, 404, 403, 400]),  # a done photo: not retried
    ("delete", "/api/photos/{photo}/", [401, 204, 404, 403, 204]),
    ("post", "/api/photos/delete/", [401, 200, 200, 403, 200]),  # another's photo: in `not_found`
    ("get", "/api/model-versions/", [401, 200, 200, 200, 200]),
    ("get", "/api/model-versions/{version}/", [401, 200, 200, 200, 200]),
    ("post", "/api/model-versions/{version}/activate/", [401, 403, 403, 403, 200]),
    ("get", "/api/model-versions/accuracy-by-day/", [401, 403, 403, 403, 200]),
    ("get", "/api/model-versions/{version}/history/", [401, 403, 403, 403, 200]),
    ("post", "/api/auth/token/", [400, 400, 400, 400, 400]),  # wrong password, whoever asks
    ("delete", "/api/auth/token/", [401, 204, 204, 204, 204]),  # one's own token
    ("post", "/api/account/", [400, 400, 400, 400, 400]),  # a sign-up without a name and password
    ("post", "/api/auth/password-reset/", [400, 400, 400, 400, 400]),  # without an address
    ("get", "/api/account/", [401, 200, 200, 200, 200]),  # one's own account
    ("patch", "/api/account/", [401, 400, 400, 400, 400]),  # without the password
    ("post", "/api/account/delete/", [401, 400, 400, 400, 400]),  # without the password
    ("post", "/api/account/password/", [401, 400, 400, 400, 400]),  # without the passwords
    ("get", "/api/account/export/", [401, 200, 200, 200, 200]),  # one's own photos only
    ("get", "/api/training-runs/", [401, 403, 403, 403, 200]),
    ("get", "/api/training-runs/{run}/", [401, 403, 403, 403, 200]),
    ("post", "/api/training-runs/", [401, 403, 403, 403, 201]),
    ("post", "/api/training-runs/{run}/cancel/", [401, 403, 403, 403, 409]),  # it has ended
    ("get", "/api/nothing-here/", [404, 404, 404, 404, 404]),
]


@pytest.fixture
def people(django_user_model, user, other_user, staff):
    admin = django_user_model.objects.create_superuser("root", password="lapis-legit-2026")
    return {"owner": user, "other": other_user, "staff": staff, "admin": admin}


def send(client, method: str, path: str, api: bool, photo: int):
    body = {"label": "kue_lapis"} if "feedback" in path else {}
    if path.endswith("/photos/delete/") and method == "post":
        body = {"ids": [photo]} if api else {"photo": [photo], "confirm": "1"}
    if path.endswith("/token/"):
        body = {"username": "ayu", "password": "not-the-password"}
    if api:
        return getattr(client, method)(path, body, format="json")
    return getattr(client, method)(path, body)


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("method, path, expected", WEBSITE + API,
                         ids=[f"{m} {p}" for m, p, _ in WEBSITE + API])
def test_each_url_answers_each_kind_of_visitor_as_intended(client, people, monkeypatch, method, path,
                                                           expected, role):
    monkeypatch.setattr(tasks.train_model, "apply_async", lambda *a, **k: None)  # the broker boundary
    photo = make_photo(people["owner"], status="done", label="kue_lapis")
    version = ModelVersion.objects.get(is_active=True)
    run = TrainingRun.objects.create(started_by=people["admin"], base_version=version, status="failed")
    api = path.startswith("/api/")
    if api:
        client = APIClient()
        if role != "anonymous":
            client.credentials(HTTP_AUTHORIZATION=f"Token {api_token(people[role])}")
    elif role != "anonymous":
        client.force_login(people[role])

    url = path.format(photo=photo.pk, version=version.pk, run=run.pk, split="test")
    response = send(client, method, url, api, photo.pk)

    assert response.status_code == expected[ROLES.index(role)]


def test_the_table_covers_every_url_of_the_site_and_the_api():
    """A new URL must be added to the table above (and so be decided for every kind of visitor)."""
    def routes(patterns, prefix=""):
        for p in patterns:
            if isinstance(p, URLResolver):
                if str(p.pattern) not in ("admin/", "accounts/"):  # Django's own admin and auth views
                    yield from routes(p.url_patterns, prefix + str(p.pattern))
            elif isinstance(p, URLPattern) and p.name:
                yield p.name, prefix + str(p.pattern)

    def shape(path: str) -> str:  # ids and converters alike become {}
        path = re.sub(r"\(\?P<\w+>[^)]*\)|<[^>]+>|\{\w+\}", "{}", path)
        return "/" + path.replace("^", "").replace("$", "").lstrip("/")

    tested = {shape(urlsplit(path).path) for _, path, _ in WEBSITE + API}
    missing = [(name, pattern) for name, pattern in routes(get_resolver().url_patterns)
               if "format" not in pattern and name != "api-root" and shape(pattern) not in tested]
    assert missing == []


def test_the_models_link_is_shown_only_to_staff_who_may_open_it(client, staff, django_user_model):
    client.force_login(staff)
    assert 'href="/staff/models/"' not in client.get("/photos/").content.decode()

    client.force_login(django_user_model.objects.create_superuser("root", password="lapis-legit-2026"))
    assert 'href="/staff/models/"' in client.get("/photos/").content.decode()


@pytest.mark.parametrize("holds, path, method, expected", [
    (["view_modelversion"], "/staff/models/", "get", 403),  # the runs need view_trainingrun too
    (["view_modelversion", "view_trainingrun"], "/staff/models/", "get", 200),
    (["view_modelversion", "view_trainingrun"], "/staff/models/{version}/activate/", "post", 403),
    (["view_modelversion", "view_trainingrun", "change_modelversion"], "/staff/models/{version}/activate/",
     "post", 302),
    (["view_modelversion", "view_trainingrun"], "/staff/training/start/", "post", 403),
])
def test_each_staff_page_asks_for_its_own_permission(client, django_user_model, monkeypatch, holds, path,
                                                      method, expected):
    from django.contrib.auth.models import Permission

    monkeypatch.setattr(tasks.train_model, "apply_async", lambda *a, **k: None)
    member = django_user_model.objects.create_user("staffer", password="lapis-legit-2026", is_staff=True)
    member.user_permissions.add(*Permission.objects.filter(codename__in=holds))
    client.force_login(member)

    url = path.format(version=ModelVersion.objects.get(is_active=True).pk)
    assert getattr(client, method)(url).status_code == expected


def test_a_get_on_a_buttons_address_goes_back_to_its_page(client, people):
    photo = make_photo(people["owner"], status="failed")
    version = ModelVersion.objects.get(is_active=True)

    client.force_login(people["owner"])
    assert client.get(f"/photos/{photo.pk}/retry/")["Location"] == f"/photos/{photo.pk}/"
    client.force_login(people["admin"])
    assert client.get(f"/staff/models/{version.pk}/activate/")["Location"] == "/staff/models/"
    assert client.get("/staff/training/start/")["Location"] == "/staff/models/"
    photo.refresh_from_db()
    assert photo.status == "failed" and TrainingRun.objects.count() == 0
