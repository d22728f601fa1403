"""Where one photo's CPU goes: the upload request, the classification task and the client's long poll,
each timed on its own thread's CPU clock, in one process.

    DATABASE_URL=postgres://... CELERY_BROKER_URL=redis://... python -m bench.stages [--photos DIR]
        [--count 200]

The same code as the pipeline (Django's middleware, DRF, token auth and throttles, services, the
task, the worker's model), on the real PostgreSQL and Redis, but without the HTTP server, Celery's
worker machinery and the other processes: what is left is the application's own cost. Run
alternately against the commit before, it shows a change of a millisecond in the stage it touches,
which the pipeline (5 to 20% apart from run to run on this machine) cannot. Each photo: the
upload (a private database, the throttle cache in Redis); then the long poll starts on a second
thread and waits, as a client's does; then the task runs on the main thread and the poll answers
when it commits. The first 10 photos are warm-up.

Ends with `RESULT upload_ms=.. task_ms=.. poll_ms=.. total_ms=..` (means, CPU ms per photo).
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench.pipeline import DEFAULT_PHOTOS, ROOT, forget_queue, private_database, servers_and_photos

WARM_UP = 10


class Counted:
    """A database execute wrapper that counts the statements run inside it."""

    def __init__(self):
        self.statements = 0

    def __call__(self, execute, sql, params, many, context):
        self.statements += 1
        return execute(sql, params, many, context)


def measure(photos: list[Path], count: int) -> dict[str, tuple[list[float], list[int]]]:
    from django.contrib.auth.models import User
    from django.db import connection, connections
    from django.test import Client

    from classifier.services import api_token_new
    from classifier.tasks import classify_photo

    user = User.objects.create_user("bench", password=None)
    client = Client(HTTP_AUTHORIZATION=f"Token {api_token_new(user)[1]}")
    stages: dict[str, tuple[list[float], list[int]]] = {name: ([], []) for name in ("upload", "task", "poll")}

    def timed(stage: str, action):
        counted = Counted()
        started = time.thread_time()
        with connection.execute_wrapper(counted):
            result = action()
        stages[stage][0].append((time.thread_time() - started) * 1000)
        stages[stage][1].append(counted.statements)
        return result

    # One thread polls, keeping its database and Redis connections, as a web server's thread does.
    poller = ThreadPoolExecutor(max_workers=1)
    for i in range(count):
        with open(photos[i % len(photos)], "rb") as f:
            response = timed("upload", lambda: client.post("/api/photos/", {"files": f}))  # noqa: B023
        if response.status_code != 201:
            raise SystemExit(f"upload refused: {response.status_code} {response.content[:300]!r}")
        photo = response.json()["results"][0]["photo"]
        poll = poller.submit(timed, "poll", lambda: client.get(photo["url"], {"wait": 10}))  # noqa: B023
        time.sleep(0.02)  # the poll is waiting, as a client's is when the worker takes the photo
        timed("task", lambda: classify_photo(photo["id"]))  # noqa: B023
        if poll.result(15).json().get("status") != "done":
            raise SystemExit(f"photo {photo['url']} did not end done")
        if i + 1 == WARM_UP:
            for times, statements in stages.values():
                times.clear()
                statements.clear()
    poller.submit(connections.close_all).result()
    poller.shutdown()
    return stages


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--photos", default=str(DEFAULT_PHOTOS), help="folder of photos (any depth)")
    p.add_argument("--count", type=int, default=200, help="photos to send, warm-up included")
    args = p.parse_args(argv)

    database, broker, photos = servers_and_photos("bench.stages", args.photos)
    if args.count <= WARM_UP:
        raise SystemExit(f"--count must be above the {WARM_UP} warm-up photos")

    tag = f"cakesite_stages_{os.getpid()}"
    with tempfile.TemporaryDirectory(prefix="cakesite-stages-") as tmp:
        os.environ.update({
            "DATABASE_URL": private_database(database, tag),
            "CELERY_QUEUE": tag,  # the upload enqueues here; this process runs the task itself
            "CACHE_URL": broker, "CACHE_KEY_PREFIX": tag, "SECRET_KEY": secrets.token_urlsafe(50),
            "DEBUG": "0", "ALLOWED_HOSTS": "testserver", "SECURE_SSL_REDIRECT": "0",
            "THROTTLE_UPLOADS": "1000000/minute", "THROTTLE_USER": "1000000/minute",
            "INFERENCE_THREADS": "1", "CAKESITE_VAR_DIR": tmp, "MEDIA_ROOT": f"{tmp}/media",
            "LOG_LEVEL": "WARNING", "DJANGO_SETTINGS_MODULE": "cakesite.settings",
        })
        sys.path.insert(0, str(ROOT))
        import django

        django.setup()
        from django.core.management import call_command
        from django.db import connections

        try:
            call_command("migrate", verbosity=0)
            stages = measure(photos, args.count)
        finally:
            connections.close_all()
            private_database(database, tag, drop=True)
            forget_queue(broker, tag)

    n = args.count - WARM_UP
    print(f"{n} photos after {WARM_UP} warm-up; CPU ms of the thread doing each stage")
    print(f"{'stage':10s} {'mean ms':>8s} {'p50 ms':>8s} {'statements':>11s}")
    for name, (times, statements) in stages.items():
        print(f"{name:10s} {statistics.mean(times):8.2f} {statistics.median(times):8.2f} "
              f"{statistics.mean(statements):11.1f}")
    means = {name: statistics.mean(times) for name, (times, _) in stages.items()}
    print(f"RESULT upload_ms={means['upload']:.2f} task_ms={means['task']:.2f} poll_ms={means['poll']:.2f} "
          f"total_ms={sum(means.values()):.2f}")


if __name__ == "__main__":
    main()
