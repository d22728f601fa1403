"""The staff page of model versions: side by side, confusion matrices, activation and rollback."""

import re

import pytest
from django.urls import reverse

from classifier import tasks
from classifier.models import ModelVersion, TrainingRun
from tests.conftest import make_photo

pytestmark = pytest.mark.django_db


@pytest.fixture
def root(django_user_model):
    return django_user_model.objects.create_superuser("root", password="kue-bika-ambon-1")


def test_staff_see_every_version_with_its_figures_and_confusion_matrices(client, root):
    client.force_login(root)

    page = client.get(reverse("model-versions")).content.decode()
    shipped = ModelVersion.objects.get(is_active=True)
    image = client.get(reverse("model-version-confusion", args=[shipped.pk, "test"]))

    assert "kue-mobilenetv2" in page and "active" in page
    assert "test (162 photos): top-1 86.4%, macro F1 0.853" in page
    assert image.status_code == 200 and image["Content-Type"] == "image/png"
    assert client.get(reverse("model-version-confusion", args=[shipped.pk, "nope"])).status_code == 404


def test_the_page_costs_the_same_queries_for_one_or_four_versions_made_by_runs(client, root):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    shipped = ModelVersion.objects.get(is_active=True)

    def made_by_a_run(n: int) -> None:
        for _ in range(n):
            version = ModelVersion.objects.create(name=f"v{ModelVersion.objects.count()}", path=shipped.path,
                                                  labels=shipped.labels, metrics=shipped.metrics)
            TrainingRun.objects.create(started_by=root, base_version=shipped, result_version=version,
                                       status="succeeded", photos_used={"trained": [], "held_out": []})

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert client.get(reverse("model-versions")).status_code == 200
        return len(captured)

    client.force_login(root)
    made_by_a_run(1)
    one = queries()
    made_by_a_run(3)

    assert queries() == one


def test_people_who_are_not_staff_are_sent_to_the_admin_login(client, user):
    client.force_login(user)

    response = client.get(reverse("model-versions"))

    assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_the_points_between_two_versions_are_those_between_the_figures_shown(client, root):
    """87.7% against 86.4% is 1.3 points, as a reader subtracts them (unrounded, 1.23)."""
    shipped = ModelVersion.objects.get(is_active=True)
    assert shipped.metrics["test"]["top1"] == pytest.approx(140 / 162)
    better = {**shipped.metrics, "test": {**shipped.metrics["test"], "top1": 142 / 162}}
    newer = ModelVersion.objects.create(name="kue-v2", path=shipped.path, labels=shipped.labels,
                                        metrics=better)
    client.force_login(root)

    assert "top-1 87.7% (+1.3 points against the active version)" in client.get(
        reverse("model-versions")).content.decode()
    client.post(reverse("model-version-activate", args=[newer.pk]))
    page = client.get(reverse("model-versions")).content.decode()
    assert "top-1 86.4% (-1.3 points against the active version)" in page
    assert ("It is 1.3 points below the active version on the benchmark split (top-1 86.4% against 87.7%)."
            in page)


def test_activating_and_rolling_back_from_the_page(client, root):
    shipped = ModelVersion.objects.get(is_active=True)
    make_photo(root, status="done", label="kue_lapis")  # classified by the shipped version
    better = {**shipped.metrics, "test": {**shipped.metrics["test"], "top1": 0.9}}
    newer = ModelVersion.objects.create(name="kue-v2", path=shipped.path, labels=shipped.labels,
                                        metrics=better)
    client.force_login(root)

    same = ModelVersion.objects.create(name="kue-v1b", path=shipped.path, labels=shipped.labels,
                                       metrics=shipped.metrics)
    page = client.get(reverse("model-versions")).content.decode()
    assert "top-1 90.0% (+3.6 points against the active version)" in page
    assert "top-1 86.4% (the same as the active version)" in page  # kue-v1b's
    same.delete()
    response = client.post(reverse("model-version-activate", args=[newer.pk]), follow=True)
    assert "kue-v2 is now the active version" in response.content.decode()
    page = client.get(reverse("model-versions")).content.decode()
    assert "top-1 86.4% (-3.6 points against the active version)" in page
    # the shipped version classified photos: it was active
    assert 'Activate<span class="visually-hidden"> kue-mobilenetv2</span> (roll back)' in page
    client.post(reverse("model-version-activate", args=[shipped.pk]), {"confirm": "on"})

    assert list(ModelVersion.objects.filter(is_active=True)) == [shipped]


@pytest.mark.parametrize("figures", ["lower", "none", "elsewhere", "swapped"])
def test_a_version_worse_on_the_benchmark_or_never_measured_is_activated_only_when_staff_confirm(
        client, root, figures):
    """Also one measured on another benchmark (a changed split, another CAKESITE_BENCHMARK_DIR),
    even of as many photos: its top-1, higher or not, says nothing against the active version's."""
    shipped = ModelVersion.objects.get(is_active=True)
    before_digests = {key: value for key, value in shipped.metrics["test"].items() if key != "digest"}
    metrics = {"lower": {"test": {**shipped.metrics["test"], "top1": 0.858}}, "none": {},
               "elsewhere": {"test": {**before_digests, "top1": 0.938, "n": 16}},  # by size alone
               "swapped": {"test": {**shipped.metrics["test"], "top1": 0.938, "digest": "0" * 64}}}[figures]
    other = ModelVersion.objects.create(name="kue-v2", path=shipped.path, labels=shipped.labels,
                                        metrics=metrics)
    warning = {"lower": "It is 0.6 points below the active version on the benchmark split (top-1 85.8% "
                        "against 86.4%).",
               "none": "It was not measured on the benchmark split.",
               "elsewhere": "It was measured on another benchmark than the active version (16 photos "
                            "against 162): their top-1 cannot be compared.",
               "swapped": "It was measured on another benchmark than the active version (as many photos, "
                          "162, but not the same ones): their top-1 cannot be compared."}[figures]
    client.force_login(root)

    page = client.get(reverse("model-versions")).content.decode()
    refused = client.post(reverse("model-version-activate", args=[other.pk]), follow=True).content.decode()
    assert ModelVersion.objects.get(is_active=True) == shipped
    client.post(reverse("model-version-activate", args=[other.pk]), {"confirm": "on"})

    assert warning in page and 'name="confirm" required' in page and "(roll back)" not in page
    if figures in ("elsewhere", "swapped"):
        assert "points against the active version" not in page
        assert "top-1 93.8% (not comparable with the active version's: other photos)" in page
    assert f"kue-v2 was not activated. {warning} Tick the box" in refused
    assert ModelVersion.objects.get(is_active=True) == other


def test_a_version_that_lost_one_cakes_recall_is_activated_only_when_staff_confirm_even_if_top1_rose(
        client, root):
    """Answers that teach one cake as another (one account's kue lumpur answered as kue serabi) take
    that cake's recall down while top-1 barely moves, and other users' answers may make up for it."""
    shipped = ModelVersion.objects.get(is_active=True)
    test = shipped.metrics["test"]
    per_class = {**test["per_class"], "kue_lumpur": {**test["per_class"]["kue_lumpur"], "recall": 0.65},
                 "kue_serabi": {**test["per_class"]["kue_serabi"], "recall": 0.6},
                 "kue_klepon": {**test["per_class"]["kue_klepon"], "recall": 0.8}}  # 2 photos: luck
    other = ModelVersion.objects.create(name="kue-v2", path=shipped.path, labels=shipped.labels,
                                        metrics={"test": {**test, "top1": 0.87, "per_class": per_class}})
    client.force_login(root)

    page = client.get(reverse("model-versions")).content.decode()
    refused = client.post(reverse("model-version-activate", args=[other.pk]), follow=True).content.decode()

    warning = ("Its recall of Kue Lumpur on the benchmark is 25.0 points below the active version&#x27;s "
               "(65.0% against 90.0%).")
    assert warning in page and 'name="confirm" required' in page and "Klepon on the benchmark" not in page
    assert "top-1 87.0% (+0.6 points against the active version)" in page
    assert f"kue-v2 was not activated. {warning} Tick the box" in refused
    assert ModelVersion.objects.get(is_active=True) == shipped
    client.post(reverse("model-version-activate", args=[other.pk]), {"confirm": "on"})
    assert ModelVersion.objects.get(is_active=True) == other


def test_staff_see_only_the_buttons_their_permissions_allow(client, django_user_model):
    from django.contrib.auth.models import Permission

    viewer = django_user_model.objects.create_user("viewer", password="kue-bika-ambon-1", is_staff=True)
    viewer.user_permissions.add(*Permission.objects.filter(codename__in=["view_modelversion",
                                                                        "view_trainingrun"]))
    shipped = ModelVersion.objects.get(is_active=True)
    ModelVersion.objects.create(name="kue-v2", path=shipped.path, labels=shipped.labels)
    client.force_login(viewer)

    page = client.get(reverse("model-versions")).content.decode()
    admin = client.get(reverse("admin:classifier_trainingrun_changelist")).content.decode()

    assert "kue-v2" in page and "Start a training run" not in page and ">Activate" not in page
    assert "Training runs" in admin and "Start a training run" not in admin


def test_the_runs_part_the_page_polls_changes_when_a_version_is_activated_elsewhere(client, root):
    """The page's script reloads when it does: it never marks the wrong version active for long."""
    shipped = ModelVersion.objects.get(is_active=True)
    other = ModelVersion.objects.create(name="kue-v2", path=shipped.path, labels=shipped.labels,
                                        metrics=shipped.metrics)
    client.force_login(root)

    def state():
        part = client.get(reverse("model-versions"), {"part": "runs"}).content.decode()
        return part.split('id="versions-state" data-state="')[1].split('"')[0]

    before = state()
    client.post(reverse("model-version-activate", args=[other.pk]))  # in another tab, say
    assert state() != before


def test_starting_a_run_from_the_page(client, root, monkeypatch, settings,
                                      django_capture_on_commit_callbacks):
    settings.AUTO_ACTIVATE_MIN_HELDOUT = 30
    sent = []
    monkeypatch.setattr(tasks.train_model, "apply_async", lambda args, **_: sent.append(args[0]))
    client.force_login(root)
    form = client.get(reverse("model-versions")).content.decode()

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("training-run-start"), {"auto_activate": "on", "mode": "full"},
                               follow=True)

    # The modes as radios (a select clipped their words on a phone), the quick one ticked.
    assert '<legend>How to train</legend>' in form
    assert '<input type="radio" name="mode" value="fast" checked> fast: refit the head' in form
    assert '<input type="radio" name="mode" value="full"> full: fine-tune the top blocks' in form
    run = TrainingRun.objects.get()
    assert run.auto_activate and run.mode == "full" and sent == [run.pk]
    page = response.content.decode()
    assert f"Training run {run.pk} is queued" in page
    assert "better on the held-out user photos (at least 30 of them)" in page  # the rule it will follow
    assert 'id="runs" data-live-runs' in page and "js/runs.js" in page  # it updates itself while live
    assert "disabled aria-describedby=\"start-help\"" in page and "the next can start when it ends" in page
    assert '<noscript><p class="help">A training run is still going: <a href="">reload' in page
    part = client.get(reverse("model-versions"), {"part": "runs"}).content.decode()
    assert part.lstrip().startswith("<section") and 'data-live-runs' in part and "<h1>" not in part

    assert "<progress" in part  # while it goes
    TrainingRun.objects.filter(pk=run.pk).update(status="succeeded", progress=100)  # the script reloads
    ended = client.get(reverse("model-versions"), {"part": "runs"}).content.decode()
    assert 'data-live-runs' not in ended and "<progress" not in ended and "<td>done</td>" in ended


def test_a_running_run_shows_when_it_last_began_a_step(client, root):
    """A run whose worker was killed stays "running" until the sweep gives up on it (about an hour):
    its last step's time tells staff whether it still moves."""
    from datetime import timedelta

    from django.utils import timezone

    from classifier import services

    run = TrainingRun.objects.create(started_by=root, base_version=ModelVersion.objects.get(is_active=True))
    services.training_run_begin(run)
    forty_minutes_ago = timezone.now() - timedelta(minutes=40)
    TrainingRun.objects.filter(pk=run.pk).update(started=forty_minutes_ago, stepped=forty_minutes_ago)
    run.refresh_from_db()
    client.force_login(root)
    begun = client.get("/staff/models/", {"part": "runs"}).content.decode()

    services.training_run_progress(run, "collecting labelled photos", 5)
    stepped = client.get("/staff/models/", {"part": "runs"}).content.decode()

    since = f"running since {timezone.localtime(run.started):%H:%M} UTC"
    assert since in begun and "last step" not in begun
    assert f"{since}, last step at {timezone.localtime(run.stepped):%H:%M} UTC" in stepped
    assert run.log == f"{run.stepped:%H:%M:%S} UTC collecting labelled photos\n"  # (the log's zone said)
    assert client.get(f"/api/training-runs/{run.pk}/").json()["stepped"] == (
        run.stepped.isoformat().replace("+00:00", "Z"))


def test_the_dashboard_draws_accuracy_by_answers_over_time_and_the_training_curves(client, root, user):
    import io

    from PIL import Image

    from classifier import services

    for label in ("kue_lapis", "kue_klepon", "kue_lapis"):
        photo = make_photo(user, status="done", label="kue_lapis")
        services.feedback_record(photo=photo, user=user, label=label)
    client.force_login(root)
    shipped = ModelVersion.objects.get(is_active=True)

    page = client.get(reverse("model-versions")).content.decode()
    plot = client.get(reverse("feedback-accuracy-plot"))
    curves = client.get(reverse("model-version-curves", args=[shipped.pk]))

    assert reverse("feedback-accuracy-plot") in page
    assert reverse("model-version-curves", args=[shipped.pk]) in page
    assert plot["Content-Type"] == "image/png" and Image.open(io.BytesIO(plot.content)).width == 700
    assert curves.status_code == 200 and curves["Content-Type"] == "image/png"
    # the chart's figures as a table too: 3 reviewed today, 2 confirmed
    assert "<td>kue-mobilenetv2</td><td>3</td><td>2</td><td>67%</td><td>21 to 94%</td>" in page


def test_the_accuracy_chart_draws_how_sure_each_days_figure_is():
    """A day of two answers says little: its point is drawn with its interval, not alone."""
    from datetime import date

    from classifier import plots

    def chart(low: float, high: float) -> bytes:
        return plots.feedback_accuracy_png([{"version": "v", "day": date(2026, 12, 7), "reviewed": 2,
                                             "confirmed": 1, "accuracy": 0.5, "accuracy_low": low,
                                             "accuracy_high": high}])

    assert chart(0.09, 0.91) != chart(0.5, 0.5)
    assert chart(0.09, 0.91) == chart(0.09, 0.91)  # (drawn the same each time: the bars make it differ)


def test_the_accuracy_chart_speaks_the_pages_language(client, root):
    """Its words and months are drawn in the picture: English ones on an Indonesian page before."""
    client.force_login(root)

    english = client.get(reverse("feedback-accuracy-plot"), HTTP_ACCEPT_LANGUAGE="en")
    indonesian = client.get(reverse("feedback-accuracy-plot"), HTTP_ACCEPT_LANGUAGE="id")

    assert english.content != indonesian.content
    assert english.content == client.get(reverse("feedback-accuracy-plot"), HTTP_ACCEPT_LANGUAGE="en").content
    assert "Accept-Language" in indonesian["Vary"]  # (a cache keeps one picture per language)


def test_the_accuracy_charts_days_are_named_in_the_pages_language_by_utc(monkeypatch):
    """The test above draws no day (no answers): its pictures differ by "No answers yet" alone."""
    from datetime import date

    from django.utils import timezone, translation
    from matplotlib import pyplot

    from classifier import plots

    drawn, close = [], pyplot.close
    monkeypatch.setattr(pyplot, "close", drawn.append)
    rows = [{"version": "v", "day": date(2026, 12, 7), "reviewed": 1, "confirmed": 1, "accuracy": 1.0,
             "accuracy_low": 0.21, "accuracy_high": 1.0}]

    def days(language: str) -> list[str]:
        with translation.override(language), timezone.override("America/Los_Angeles"):
            plots.feedback_accuracy_png(rows)
            figure = drawn.pop()
            figure.canvas.draw()
            shown = [label.get_text() for label in figure.axes[0].get_xticklabels()]  # (formatted again)
        close(figure)
        return shown

    assert "7 Des" in days("id") and "7 Dec" in days("en")  # (the day in UTC, not the zone's 6th)


def test_the_accuracy_table_rounds_as_every_other_page(client, root, user):
    """1 of 8 confirmed is 13%, as the review page says it (half up), not 12% (half to even)."""
    from classifier import services

    for label in ["kue_lapis"] + ["kue_klepon"] * 7:
        photo = make_photo(user, status="done", label="kue_lapis")
        services.feedback_record(photo=photo, user=user, label=label)
    client.force_login(root)

    page = client.get(reverse("model-versions")).content.decode()

    assert "<td>kue-mobilenetv2</td><td>8</td><td>1</td><td>13%</td><td>2 to 47%</td>" in page


def test_the_confusion_matrix_is_also_a_table_for_who_cannot_see_the_picture(client, root):
    client.force_login(root)
    shipped = ModelVersion.objects.get(is_active=True)
    matrix = shipped.metrics["test"]["confusion_matrix"]
    serabi = [item["slug"] for item in shipped.labels].index("kue_serabi")

    page = client.get(reverse("model-versions")).content.decode()

    table = page.split('aria-label="Confusion matrix of kue-mobilenetv2 on test"')[1]
    row = table.split('<th scope="row">Kue Serabi</th>')[1]
    cells = [int(c.split("<")[0]) for c in row.split("</tr>")[0].split("<td>")[1:]]
    assert cells == matrix[serabi] and sum(cells) == 20
    assert page.index("test (162 photos)") < page.index("validation (")  # the benchmark first, on any DB
    assert "<caption>Rows: the cake it was; columns: the cake the model said</caption>" in page


def test_the_cakes_figures_are_listed_a_to_z_as_the_confusion_matrix_on_any_database(client, root):
    """PostgreSQL's jsonb gives a version's per-class figures shortest key first (Lapis, Klepon,
    Lumpur, Serabi, ... Dadar Gulung): the table followed that order, the matrix beside it A to Z."""
    client.force_login(root)
    shipped = ModelVersion.objects.get(is_active=True)

    page = client.get(reverse("model-versions")).content.decode()

    table = page.split('aria-label="Figures per cake of kue-mobilenetv2 on test"')[1].split("</table>")[0]
    listed = re.findall(r"<tr><td>([^<]+)</td>", table)
    assert listed == sorted(item["name"] for item in shipped.labels)


def test_the_newest_version_comes_first(client, root):
    from datetime import timedelta

    shipped = ModelVersion.objects.get(is_active=True)
    older = ModelVersion.objects.create(name="kue-v0", path=shipped.path, labels=shipped.labels)
    ModelVersion.objects.filter(pk=older.pk).update(created=shipped.created - timedelta(days=30))
    ModelVersion.objects.create(name="kue-v2", path=shipped.path, labels=shipped.labels)
    client.force_login(root)

    page = client.get(reverse("model-versions")).content.decode()

    headings = [page.index(f"<h2>{name}") for name in ("kue-v2", "kue-mobilenetv2", "kue-v0")]
    assert headings == sorted(headings)


def test_a_version_without_training_curves_shows_no_broken_curves_picture(client, root, tmp_path):
    """A head refit draws no curves: the page must not point at a picture that is a 404."""
    shipped = ModelVersion.objects.get(is_active=True)
    (tmp_path / "refit").mkdir()  # its folder, without training_curves.png
    refit = ModelVersion.objects.create(name="kue-refit", path=str(tmp_path / "refit"), labels=shipped.labels)
    client.force_login(root)

    page = client.get(reverse("model-versions")).content.decode()

    assert client.get(reverse("model-version-curves", args=[refit.pk])).status_code == 404
    assert "<h2>kue-refit" in page and "Training curves of kue-refit" not in page
    assert reverse("model-version-curves", args=[refit.pk]) not in page
    assert reverse("model-version-curves", args=[shipped.pk]) in page  # the shipped version has them


def test_a_held_out_table_shows_no_figures_for_cakes_without_held_out_photos(client, root):
    shipped = ModelVersion.objects.get(is_active=True)
    per_class = {"kue_lapis": {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 2},
                 "kue_klepon": {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}}
    ModelVersion.objects.create(name="kue-v2", path=shipped.path, labels=shipped.labels, metrics={
        "user_heldout": {"n": 2, "top1": 1.0, "macro_f1": 1.0, "per_class": per_class}})
    client.force_login(root)

    html = " ".join(client.get("/staff/models/").content.decode().split())

    assert "<td>Kue Lapis</td><td>2</td><td>1.00</td><td>1.00</td>" in html  # by name, as the matrix
    assert "<td>Kue Klepon</td><td>0</td><td>–</td><td>–</td>" in html  # not a recall of 0


def test_the_page_says_when_runs_or_photos_wait_longer_than_a_working_worker_lets_them(client, root):
    """With a worker stopped, nothing else says it: a run stays queued, photos stay waiting."""
    from datetime import timedelta

    from django.utils import timezone

    from classifier.models import Photo

    version = ModelVersion.objects.get(is_active=True)
    run = TrainingRun.objects.create(started_by=root, base_version=version)
    waiting = [make_photo(root, status="queued") for _ in range(3)]
    client.force_login(root)

    fresh = client.get(reverse("model-versions")).content.decode()
    TrainingRun.objects.filter(pk=run.pk).update(created=timezone.now() - timedelta(minutes=5))
    Photo.objects.filter(pk=waiting[0].pk).update(waiting_since=timezone.now() - timedelta(minutes=5))
    late = client.get(reverse("model-versions")).content.decode()

    assert f"{run.pk} ({timezone.localtime(run.created):%-d %b %H:%M} UTC, root)" in fresh  # who started it
    assert "3 photos waiting for the classifier" in fresh
    assert "is the classification worker running?" not in fresh
    since = f"queued since {timezone.localtime(run.created):%H:%M}"
    assert since in fresh and "no training worker has taken it" not in fresh
    assert "no training worker has taken it; is one running?" in late
    assert "the oldest\n  for 5" in late and "is the classification worker running?" in late
    make_photo(root, status="done", label="kue_lapis")  # the worker classified one just now: it runs
    busy = client.get(reverse("model-versions")).content.decode()
    assert "is the classification worker running?" not in busy


def test_when_the_broker_is_what_is_down_the_page_and_status_say_so_not_the_worker(client, root, monkeypatch):
    """Uploads are stored and never sent: asking whether the worker runs would send staff to the
    wrong place."""
    import io
    from datetime import timedelta

    from django.core.management import call_command
    from django.utils import timezone

    from classifier.models import Photo

    monkeypatch.setattr(tasks, "messages_waiting", lambda queue: None)  # the broker does not answer
    photo = make_photo(root)
    Photo.objects.filter(pk=photo.pk).update(waiting_since=timezone.now() - timedelta(minutes=5))
    client.force_login(root)

    page = " ".join(client.get(reverse("model-versions")).content.decode().split())
    out = io.StringIO()
    with pytest.raises(SystemExit):
        call_command("status", stdout=out)

    assert "The broker (Redis) cannot be reached: photos are stored but not sent to the worker." in page
    assert "is the classification worker running?" not in page + out.getvalue()
    assert "photos waiting: 1, the oldest for 300 s (none classified in 2 minutes: the broker cannot be " \
           "reached)" in out.getvalue()
    assert "messages waiting: the broker cannot be reached" in out.getvalue()


def test_the_page_says_when_photos_failed_for_want_of_a_model_that_loads(client, root):
    """The active version's files deleted or damaged: it still shows as active with its figures, and
    users' photos fail; the page says so, and what to do."""
    from classifier.models import Photo

    photo = make_photo(root, status="failed")
    make_photo(root, status="failed")  # (failed for another reason: retried by its owner)
    client.force_login(root)
    fine = " ".join(client.get(reverse("model-versions")).content.decode().split())
    Photo.objects.filter(pk=photo.pk).update(awaits_model=True)

    page = " ".join(client.get(reverse("model-versions")).content.decode().split())

    assert "no model that loads" not in fine
    assert ("1 photo failed because the classification worker has no model that loads (its log says why: "
            "\"does not load\"). Put the active version's files back") in page


def test_manage_py_status_says_what_the_staff_page_says_and_exits_1_when_a_person_is_needed(
        root, monkeypatch):
    """For an operator's shell or a monitor: photos waiting on a stopped classifier, or failed for
    want of a model that loads, or a broker that does not answer."""
    import io
    from datetime import timedelta

    from django.core.management import call_command
    from django.utils import timezone

    from classifier.models import Photo

    def status() -> tuple[int, str]:
        out = io.StringIO()
        try:
            call_command("status", stdout=out)
        except SystemExit as exc:
            return exc.code, out.getvalue()
        return 0, out.getvalue()

    fine = status()
    photo = make_photo(root)
    Photo.objects.filter(pk=photo.pk).update(waiting_since=timezone.now() - timedelta(minutes=5))
    stalled = status()
    Photo.objects.filter(pk=photo.pk).update(status="failed", awaits_model=True)
    failing = status()

    assert fine[0] == 0 and "photos waiting: 0\n" in fine[1] and "active version: kue-mobilenetv2" in fine[1]
    assert stalled[0] == 1 and "photos waiting: 1, the oldest for 30" in stalled[1]
    assert "is the classification worker running?" in stalled[1]
    assert failing[0] == 1 and "photos failed for want of a model that loads: 1 (" in failing[1]
    assert "training run: none live" in failing[1]
    Photo.objects.all().delete()
    monkeypatch.setattr(tasks, "messages_waiting", lambda queue: None)  # the broker does not answer
    unreachable = status()
    assert unreachable[0] == 1 and "the broker cannot be reached" in unreachable[1]


def test_a_photo_retried_long_after_its_upload_is_not_a_stalled_backlog(client, root):
    """The backlog's oldest wait counts from when each photo began to wait: a photo of last week
    retried now has waited seconds, and the worker is not said to be stopped."""
    import io
    from datetime import timedelta

    from django.core.management import call_command
    from django.utils import timezone

    from classifier import services
    from classifier.models import Photo

    photo = make_photo(root, status="failed")
    Photo.objects.filter(pk=photo.pk).update(created=timezone.now() - timedelta(days=7))
    services.photo_retry(photo)
    out = io.StringIO()
    call_command("status", stdout=out)  # (exits 1 when it looks stalled)
    client.force_login(root)
    page = client.get(reverse("model-versions")).content.decode()

    assert "photos waiting: 1, the oldest for 0 s\n" in out.getvalue()
    assert "1 photo waiting for the classifier, the oldest\n  for 0" in page
    assert "is the classification worker running?" not in out.getvalue() + page
