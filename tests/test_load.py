"""A bounded load test on loopback: several users at once upload photos through the API and browse
the website (gallery, photo pages, the JSON list) against gunicorn, a real worker, Redis and
PostgreSQL. No 5xx, no upload lost, every photo classified. bench/pipeline.py measures the speed;
this checks that nothing breaks under concurrency."""

import re
import threading
import time

import pytest
import requests

from classifier.models import Photo
from tests.conftest import PHOTOS, api_token
from tests.processes import app_env, free_port, require_services, start_web, start_worker, wait_for

USERS = 4
SECONDS = 12.0


def log_in(base: str, username: str, password: str) -> requests.Session:
    session = requests.Session()
    form = session.get(f"{base}/accounts/login/", timeout=30).text
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form).group(1)
    session.post(f"{base}/accounts/login/", timeout=30, headers={"Referer": f"{base}/accounts/login/"},
                 data={"username": username, "password": password, "csrfmiddlewaretoken": token})
    return session


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_users_uploading_and_browsing_at_once_get_no_errors_and_every_photo_is_classified(
        settings, tmp_path, django_user_model):
    require_services()
    env = app_env(settings, tmp_path, THROTTLE_UPLOADS="100000/minute", THROTTLE_USER="100000/minute")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    people = [django_user_model.objects.create_user(f"eater{i}", password="kue-cubit-2026")
              for i in range(USERS)]
    tokens = [api_token(u) for u in people]
    photos = sorted(PHOTOS.glob("*/*.jpg"))
    statuses: list[int] = []
    uploaded: list[int] = []
    lock = threading.Lock()

    def user_session(i: int) -> None:
        browser = log_in(base, people[i].username, "kue-cubit-2026")
        api = requests.Session()
        api.headers["Authorization"] = f"Token {tokens[i]}"
        stop, n = time.monotonic() + SECONDS, 0
        while time.monotonic() < stop:
            path = photos[(i * 5 + n) % len(photos)]
            n += 1
            with path.open("rb") as f:
                response = api.post(f"{base}/api/photos/", files={"files": f}, timeout=60)
            seen = [response.status_code]
            if response.status_code == 201:
                pk = response.json()["results"][0]["photo"]["id"]
                with lock:
                    uploaded.append(pk)
                seen.append(browser.get(f"{base}/photos/{pk}/", timeout=60).status_code)
            seen.append(browser.get(f"{base}/photos/", timeout=60).status_code)
            seen.append(api.get(f"{base}/api/photos/?page_size=10", timeout=60).status_code)
            with lock:
                statuses.extend(seen)

    web = start_web(env, tmp_path / "web.log", port)
    worker = start_worker(env, tmp_path / "worker.log", "--concurrency=2", "-Q", "celery")
    try:
        threads = [threading.Thread(target=user_session, args=(i,)) for i in range(USERS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=SECONDS + 120)
        classified = wait_for(lambda: Photo.objects.filter(status="done").count() == len(uploaded), 120)
    finally:
        worker.stop()
        web.stop()

    assert len(uploaded) >= USERS and not any(t.is_alive() for t in threads)
    assert [s for s in statuses if s >= 500] == [], web.tail()
    assert set(statuses) <= {200, 201}, sorted(set(statuses))
    assert classified, worker.tail()
    assert Photo.objects.count() == len(uploaded)  # nothing stored twice, nothing lost
    assert all(p.predictions.count() == 1 for p in Photo.objects.all())
