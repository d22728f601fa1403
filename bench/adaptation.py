"""Does the feedback loop close a real gap? Users correct half the benchmark, a fast retrain runs.

    python -m bench.adaptation [--data ../shared/data/kue-indonesia/test] [--mode fast|full]

Protocol (fixed): split the benchmark photos into two stratified halves A and B (seed 0). Users
upload A through `services.photo_create`, the worker's task classifies each one, and every wrong
label is corrected through `services.feedback_record`; a fast training run then goes through
`services.training_run_start` and the real `tasks.train_model`. The new version is evaluated on B,
which it never saw. Then A and B swap, and the two halves are averaged. This protocol (here and in
`bench.queue_order`, which runs it through `fold_start` and `halves`) is the only place where
benchmark photos are trained on, and only the half that is not evaluated. (The split is by
photo: the test split holds two near-identical pairs, kastengel 2/20 and 3/21, which land in
different halves. A run leaves out a user photo that is a look-alike of a photo of the benchmark
it is measured on, half B here, so neither twin in A would be trained on; the shipped model labels
all four right anyway, so none is corrected.)

Runs on a throwaway SQLite database and media folder; prints per-class recall before and after and
ends with `RESULT top1_before=.. top1_after=.. serabi_before=.. serabi_after=.. fast_s=..`, where
`fast_s` is the whole training task's wall time (reading the user photos, the retrain, evaluating
the new and the active version, registering), averaged over the two folds.
`--mode full` runs the same protocol with the full fine-tune instead (it needs the base training
photos, CAKESITE_TRAINING_DATA_DIR) and reports `full_s` in place of `fast_s`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "kue-indonesia" / "test"


def setup_django(workdir: Path) -> None:
    """A private database, media folder and models folder (a copy of the shipped model)."""
    shutil.copytree(ROOT / "models", workdir / "models")
    os.environ.update({
        "DJANGO_SETTINGS_MODULE": "cakesite.settings",
        "DATABASE_URL": f"sqlite:///{workdir / 'db.sqlite3'}",
        "CAKESITE_VAR_DIR": str(workdir / "var"),
        "MEDIA_ROOT": str(workdir / "media"),
        "CAKESITE_MODELS_DIR": str(workdir / "models"),
        "CAKESITE_BENCHMARK_DIR": str(workdir / "evaluate"),
        # Tasks run in this process; what services enqueue goes to a folder nobody reads.
        "CELERY_BROKER_URL": "filesystem://",
    })
    sys.path.insert(0, str(ROOT))
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)


def halves(data_dir: Path) -> tuple[list[Path], list[Path]]:
    from sklearn.model_selection import train_test_split

    from training.data import discover

    data = discover(data_dir)
    a, b = train_test_split(range(len(data.files)), test_size=0.5, stratify=data.labels, random_state=0)
    return [data_dir / data.files[i] for i in sorted(a)], [data_dir / data.files[i] for i in sorted(b)]


def link_folder(paths: list[Path], folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)
    for path in paths:
        (folder / path.parent.name).mkdir(parents=True, exist_ok=True)
        (folder / path.parent.name / path.name).symlink_to(path)


def fold_start(held: list[Path], workdir: Path, fold: int):
    """The shipped version active again, no photo, `held` as the benchmark; the fold's user and
    staff accounts."""
    from django.contrib.auth import get_user_model

    from classifier import services
    from classifier.models import Feedback, ModelVersion, Photo

    shipped = ModelVersion.objects.get(name="kue-mobilenetv2")
    services.model_version_activate(shipped, confirmed=True)  # back to the start, whatever the last fold made
    Feedback.objects.all().delete()
    Photo.objects.all().delete()
    link_folder(held, workdir / "evaluate")
    User = get_user_model()
    user = User.objects.create_user(f"teacher{fold}", password="adaptation-bench-1")
    staff = User.objects.create_superuser(f"staff{fold}", password="adaptation-bench-1")
    return user, staff


def one_fold(teach: list[Path], held: list[Path], workdir: Path, fold: int, mode: str) -> dict:
    """Users teach with `teach`; the new version is measured on `held`."""
    from django.core.files.uploadedfile import SimpleUploadedFile

    from classifier import services, tasks
    from classifier.models import TrainingRun

    user, staff = fold_start(held, workdir, fold)
    wrong = 0
    for path in teach:
        upload = SimpleUploadedFile(path.name, path.read_bytes())
        photo = services.photo_create(owner=user, upload=upload)
        tasks.classify_photo(photo.pk)
        predicted = photo.predictions.get().label
        if predicted != path.parent.name:
            services.feedback_record(photo=photo, user=user, label=path.parent.name)
            wrong += 1
    run = services.training_run_start(user=staff, mode=mode)
    started = time.perf_counter()
    tasks.train_model(run.pk)
    seconds = time.perf_counter() - started  # the whole task, as staff wait for it
    run = TrainingRun.objects.get(pk=run.pk)
    if run.status != "succeeded":
        raise SystemExit(f"training run failed: {run.error}")
    print(f"fold {fold}: {len(teach)} photos uploaded, {wrong} corrected; {mode} run {seconds:.1f} s "
          f"(the retrain itself {run.metrics['retrain_seconds']:.1f} s; the rest reads the user photos, "
          "evaluates both versions and registers the new one)")
    return {"before": run.metrics["base"]["test"], "after": run.metrics["new"]["test"], "seconds": seconds}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.adaptation", description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(DEFAULT_DATA), help="<class>/<file> benchmark folder")
    p.add_argument("--mode", choices=("fast", "full"), default="fast", help="the training run's mode")
    args = p.parse_args(argv)
    data_dir = Path(args.data).resolve()
    with tempfile.TemporaryDirectory(prefix="cakesite-adaptation-") as tmp:
        workdir = Path(tmp)
        setup_django(workdir)
        a, b = halves(data_dir)
        folds = [one_fold(a, b, workdir, 1, args.mode), one_fold(b, a, workdir, 2, args.mode)]

    classes = list(folds[0]["before"]["per_class"])
    def mean(key: str, getter) -> float:
        return sum(getter(f[key]) for f in folds) / len(folds)
    print(f"\n{'class':<20} {'recall before':>14} {'recall after':>13}")
    for c in classes:
        before = mean("before", lambda m, c=c: m["per_class"][c]["recall"])
        after = mean("after", lambda m, c=c: m["per_class"][c]["recall"])
        print(f"{c:<20} {before:>14.3f} {after:>13.3f}")
    top1_before, top1_after = mean("before", lambda m: m["top1"]), mean("after", lambda m: m["top1"])
    print(f"{'top-1':<20} {top1_before:>14.3f} {top1_after:>13.3f}")
    result = {
        "top1_before": top1_before, "top1_after": top1_after,
        "serabi_before": mean("before", lambda m: m["per_class"]["kue_serabi"]["recall"]),
        "serabi_after": mean("after", lambda m: m["per_class"]["kue_serabi"]["recall"]),
        f"{args.mode}_s": sum(f["seconds"] for f in folds) / len(folds),
    }
    print("\nRESULT " + " ".join(f"{k}={v:.4f}" for k, v in result.items()))


if __name__ == "__main__":
    main()
