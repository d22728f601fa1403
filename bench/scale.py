"""How the pages users and staff see behave as the database grows: the same requests at N/100 photos
and at N photos, in one run, on PostgreSQL.

    DATABASE_URL=postgres://... python -m bench.scale [--photos 100000] [--users 300]

A query that reads every photo (a count, a sort, a subquery per row, a DISTINCT for a filter) is
quick on a developer's few hundred photos and slow on a real site's hundred thousand; the unit tests,
on a handful of rows, cannot tell. This benchmark fills a private database (created on the server
DATABASE_URL points at, dropped at the end) with a site's worth of rows: U users, one of whom owns
30% of the photos, and a staff superuser; photos mostly classified (one prediction each, a softmax
over the shipped model's classes, by the model version active when the photo came), a few failed or
queued, a fifth answered (mostly confirmed, some corrected, a few "none of these"); four model
versions with their training runs. Rows are bulk-inserted and share one placeholder file each (no
image is decoded); their dates are spread over a year; the tables are then vacuumed and analysed,
as autovacuum would. First N/100 photos are loaded and every page is measured, then the rest and
every page again: the small size is the baseline, so the ratios do not depend on the machine.

Each page is asked for through Django's test client with DEBUG off (one warm-up, one with its
queries counted, then the median of 5): the gallery and the review page (first and last pages),
the API's list (plain, filtered, ordered by confidence and by margin, unreviewed, its last page),
its review queue and counters, the staff's model versions page and the admin's lists. Ends with
`RESULT photos=.. review_staff_ms=.. label_staff_ms=.. gallery_ms=.. api_list_ms=.. worst_ratio=..
worst=.. queries_grow=..` (queries_grow: how many pages ran more queries at the full size).
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import statistics
import sys
import tempfile
import time
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import numpy as np
from PIL import Image

from bench.pipeline import ROOT, private_database

REPEATS = 5
LABEL = "kue_klepon"  # the label the filtered pages ask for
VERSION_AGES = [365, 270, 180, 90]  # days ago each model version came; the newest is active
FILES = ["photos/placeholder.png", "thumbnails/placeholder.jpg", "heatmaps/placeholder.png"]


@contextmanager
def own_timestamps(*models):
    """bulk_create keeps the dates given instead of now (auto_now and auto_now_add off meanwhile)."""
    fields = [f for m in models for f in m._meta.concrete_fields if hasattr(f, "auto_now_add")]
    saved = [(f, f.auto_now, f.auto_now_add) for f in fields]
    for f in fields:
        f.auto_now = f.auto_now_add = False
    try:
        yield
    finally:
        for f, auto_now, auto_now_add in saved:
            f.auto_now, f.auto_now_add = auto_now, auto_now_add


def make_site(users: int, now) -> dict:
    """Users (one heavy uploader, one staff superuser, the rest ordinary), their API tokens, and four
    model versions (the shipped one first, the newest active) with the runs that made them."""
    from django.conf import settings
    from django.contrib.auth.models import User
    from django_otp.plugins.otp_totp.models import TOTPDevice

    from classifier.models import ModelVersion, TrainingRun
    from classifier.services import api_token_new

    people = User.objects.bulk_create([User(username=f"user{i:05d}", password="!") for i in range(users - 2)])
    heavy = User.objects.create(username="heavy", password="!")
    staff = User.objects.create(username="staff", password="!", is_staff=True, is_superuser=True)
    # its authenticator app, set up before its token (with STAFF_TWO_FACTOR, one made before would not work)
    TOTPDevice.objects.create(user=staff, name="app")
    shipped = ModelVersion.objects.filter(name=settings.SHIPPED_MODEL).first()
    if shipped is None:
        raise SystemExit(f"the shipped model {settings.SHIPPED_MODEL} was not registered (no labels.json?)")
    versions = [shipped] + [ModelVersion.objects.create(
        name=f"{shipped.name}-retrain-{i}", path=shipped.path, labels=shipped.labels, metrics=shipped.metrics)
        for i in range(1, len(VERSION_AGES))]
    ModelVersion.objects.update(is_active=False)
    ModelVersion.objects.filter(pk=versions[-1].pk).update(is_active=True)
    for version, days in zip(versions, VERSION_AGES, strict=True):
        ModelVersion.objects.filter(pk=version.pk).update(created=now - timedelta(days=days))
    TrainingRun.objects.bulk_create([TrainingRun(
        started_by=staff, status=TrainingRun.Status.SUCCEEDED, base_version=base, result_version=result,
        stage="done", progress=100, decision="activated") for base, result in zip(versions, versions[1:])])
    return {"heavy": heavy, "staff": staff, "others": [u.pk for u in people], "versions": versions,
            "tokens": {u: api_token_new(u)[1] for u in (heavy, staff)},
            "labels": [item["slug"] for item in shipped.labels]}


def add_photos(count: int, site: dict, rng: np.random.Generator, now) -> None:
    """`count` more photos, with their predictions and answers, dated over the last year."""
    from django.db import connection

    from classifier.models import Feedback, Photo, Prediction

    labels, versions, staff = site["labels"], site["versions"], site["staff"]
    age_days = rng.uniform(0, 365, count)
    created = [now - timedelta(days=float(d)) for d in age_days]
    owners = np.where(rng.random(count) < 0.3, site["heavy"].pk, rng.choice(site["others"], count))
    roll = rng.random(count)
    status = np.where(roll < 0.01, "failed", np.where(roll < 0.013, "queued", "done"))
    # The model's answer: a softmax whose top class stands out by a random amount (sure and unsure).
    logits = rng.normal(0, 1, (count, len(labels)))
    logits[np.arange(count), rng.integers(0, len(labels), count)] += rng.uniform(0, 7, count)
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    top = np.sort(probs, axis=1)[:, ::-1]
    version = (age_days[:, None] <= np.array(VERSION_AGES)).sum(axis=1) - 1
    done = [i for i in range(count) if status[i] == "done"]
    predicted = {i: labels[int(probs[i].argmax())] for i in done}
    with own_timestamps(Photo, Prediction, Feedback):
        photos = Photo.objects.bulk_create([Photo(
            owner_id=int(owners[i]), image=FILES[0], thumbnail=FILES[1], image_format="png", width=48,
            height=36, sha256=secrets.token_hex(32), status=status[i], starts=int(status[i] != "queued"),
            error="the model could not read it" if status[i] == "failed" else "",
            created=created[i], updated=created[i] + timedelta(seconds=2),
            # the prediction's copies, as services.prediction_record writes them
            predicted_label=predicted.get(i, ""), confidence=float(top[i, 0]) if i in predicted else None,
            margin=float(top[i, 0] - top[i, 1]) if i in predicted else None,
        ) for i in range(count)], batch_size=2000)
        Prediction.objects.bulk_create([Prediction(
            photo=photos[i], model_version=versions[version[i]], label=predicted[i],
            probabilities=dict(zip(labels, map(float, probs[i]), strict=True)),
            confidence=float(top[i, 0]), margin=float(top[i, 0] - top[i, 1]),
            inference_ms=float(rng.uniform(3, 8)), heatmap=FILES[2],
            created=created[i] + timedelta(seconds=1),
        ) for i in done], batch_size=2000)
        answers = []
        for i in [i for i in done if rng.random() < 0.2]:  # a fifth answered
            kind = rng.random()  # 80% confirmed, 17% corrected, 3% none of these
            label = (predicted[i] if kind < 0.8 else Feedback.NONE if kind >= 0.97
                     else rng.choice([s for s in labels if s != predicted[i]]))
            when = min(now, created[i] + timedelta(hours=float(rng.uniform(0, 72))))
            answers.append(Feedback(
                photo=photos[i], user_id=staff.pk if rng.random() < 0.1 else int(owners[i]), label=label,
                predicted_label=predicted[i], model_version=versions[version[i]],
                is_correction=label != predicted[i], created=when, updated=when))
        Feedback.objects.bulk_create(answers, batch_size=2000)
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")  # as autovacuum would have by now


def measure(client, url: str) -> tuple[float, int]:
    """(median ms of REPEATS requests, queries of one), after one warm-up request."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    if (status := client.get(url).status_code) != 200:
        raise SystemExit(f"{url} answered {status}")
    with CaptureQueriesContext(connection) as queries:
        client.get(url)
    count = len(queries)  # now: the next request's start clears the log it reads
    times = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        client.get(url)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), count


def last_page() -> int:
    """The number of the API list's last page for staff (20 photos a page), at the size loaded now."""
    from classifier.api.pagination import PageNumberPagination
    from classifier.models import Photo

    return -(-Photo.objects.count() // PageNumberPagination.page_size)


def pages(site: dict) -> dict[str, tuple[object, str]]:
    """Each endpoint: the client (signed in or with a token) and the URL (or what makes it, for the
    size loaded)."""
    from django.test import Client
    from django.urls import reverse
    from django_otp import DEVICE_ID_SESSION_KEY
    from django_otp.plugins.otp_totp.models import TOTPDevice

    web = {}
    for who in ("heavy", "staff"):
        web[who] = Client()
        web[who].force_login(site[who])
    session = web["staff"].session  # signed in with the app's code too (STAFF_TWO_FACTOR)
    session[DEVICE_ID_SESSION_KEY] = TOTPDevice.objects.get(user=site["staff"]).persistent_id
    session.save()
    api = {who: Client(HTTP_AUTHORIZATION=f"Token {site['tokens'][site[who]]}") for who in ("heavy", "staff")}
    photos = reverse("api:photo-list")
    return {
        "gallery_heavy": (web["heavy"], reverse("gallery")),
        "gallery_label_heavy": (web["heavy"], f"{reverse('gallery')}?label={LABEL}"),
        "gallery_label_staff": (web["staff"], f"{reverse('gallery')}?label={LABEL}"),
        "review_heavy": (web["heavy"], reverse("review")),
        "review_staff": (web["staff"], reverse("review")),
        # the deepest pages (a number past the last gives the last): the longest OFFSET
        "gallery_last_page_staff": (web["staff"], f"{reverse('gallery')}?page=999999"),
        "review_last_page_staff": (web["staff"], f"{reverse('review')}?page=999999"),
        "api_list_heavy": (api["heavy"], photos),
        "api_list_staff": (api["staff"], photos),
        "api_label_heavy": (api["heavy"], f"{photos}?label={LABEL}"),
        "api_confidence_heavy": (api["heavy"], f"{photos}?ordering=-confidence"),
        "api_confidence_staff": (api["staff"], f"{photos}?ordering=-confidence"),
        "api_margin_staff": (api["staff"], f"{photos}?ordering=margin"),
        "api_last_page_staff": (api["staff"], lambda: f"{photos}?page={last_page()}"),  # the deepest OFFSET
        "api_unreviewed_heavy": (api["heavy"], f"{photos}?reviewed=false"),
        "api_review_staff": (api["staff"], reverse("api:photo-review-queue")),
        "api_stats_staff": (api["staff"], reverse("api:stats")),
        "model_versions_staff": (web["staff"], reverse("model-versions")),
        "admin_photos": (web["staff"], reverse("admin:classifier_photo_changelist")),
        "admin_predictions": (web["staff"], reverse("admin:classifier_prediction_changelist")),
        "admin_feedback": (web["staff"], reverse("admin:classifier_feedback_changelist")),
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__.split("\n\n")[0])
    p.add_argument("--photos", type=int, default=100_000, help="photos at the full size (the small: 1/100)")
    p.add_argument("--users", type=int, default=300, help="users, the heavy uploader and staff included")
    args = p.parse_args(argv)
    database = os.environ.get("DATABASE_URL", "")
    if not database.startswith("postgres"):
        raise SystemExit("bench.scale needs DATABASE_URL=postgres://... (its figures are PostgreSQL's "
                         "plans; SQLite is not measured)")
    if args.photos < 1000 or args.users < 3:
        raise SystemExit("--photos must be at least 1000 and --users at least 3")

    started = time.perf_counter()
    tag = f"cakesite_scale_{os.getpid()}"
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a kill or a timeout drops the database too
    with tempfile.TemporaryDirectory(prefix="cakesite-scale-") as tmp:
        os.environ.update({
            "DATABASE_URL": urlunsplit(urlsplit(database)._replace(path="/" + tag)), "DEBUG": "0",
            "SECRET_KEY": secrets.token_urlsafe(50), "ALLOWED_HOSTS": "testserver",
            "SECURE_SSL_REDIRECT": "0", "THROTTLE_USER": "1000000/minute",
            "CAKESITE_VAR_DIR": tmp, "MEDIA_ROOT": f"{tmp}/media", "LOG_LEVEL": "WARNING",
            "DJANGO_SETTINGS_MODULE": "cakesite.settings",
        })
        os.environ.pop("CACHE_URL", None)  # the process's own cache: nothing left in a shared Redis
        sys.path.insert(0, str(ROOT))
        import django

        django.setup()
        from django.core.management import call_command
        from django.db import connections
        from django.utils import timezone

        try:
            private_database(database, tag)
            call_command("migrate", verbosity=0)
            call_command("collectstatic", interactive=False, verbosity=0)  # DEBUG off: the manifest
            for name in FILES:  # one small placeholder of each kind, shared by every row
                (Path(tmp) / "media" / name).parent.mkdir(parents=True, exist_ok=True)
                Image.new("RGB", (48, 36), (200, 40, 40)).save(Path(tmp) / "media" / name)
            rng, now = np.random.default_rng(0), timezone.now()
            site = make_site(args.users, now)
            endpoints, results, load_s = pages(site), {}, []
            for size, adding in (("small", args.photos // 100), ("full", args.photos - args.photos // 100)):
                loading = time.perf_counter()
                add_photos(adding, site, rng, now)
                load_s.append(time.perf_counter() - loading)
                results[size] = {name: measure(client, url() if callable(url) else url)
                                 for name, (client, url) in endpoints.items()}
        finally:
            connections.close_all()
            private_database(database, tag, drop=True)

    print(f"{args.photos // 100} then {args.photos} photos, {args.users} users (the heavy one owns 30%); "
          f"loading took {load_s[0]:.1f} s and {load_s[1]:.1f} s; median of {REPEATS} requests, DEBUG off")
    print(f"{'endpoint':<22} {'ms small':>9} {'ms full':>9} {'ratio':>7} {'queries small':>14} "
          f"{'queries full':>13}")
    ratios = {}
    for name in endpoints:
        (small_ms, small_q), (full_ms, full_q) = results["small"][name], results["full"][name]
        ratios[name] = full_ms / small_ms
        print(f"{name:<22} {small_ms:>9.1f} {full_ms:>9.1f} {ratios[name]:>7.2f} {small_q:>14} {full_q:>13}")
    worst = max(ratios, key=ratios.get)
    full = {name: ms for name, (ms, _) in results["full"].items()}
    grow = sum(results["full"][name][1] > results["small"][name][1] for name in endpoints)
    print(f"total {time.perf_counter() - started:.0f} s")
    print(f"RESULT photos={args.photos} review_staff_ms={full['review_staff']:.1f} "
          f"label_staff_ms={full['gallery_label_staff']:.1f} gallery_ms={full['gallery_heavy']:.1f} "
          f"api_list_ms={full['api_list_heavy']:.1f} worst_ratio={ratios[worst]:.2f} worst={worst} "
          f"queries_grow={grow}")


if __name__ == "__main__":
    main()
