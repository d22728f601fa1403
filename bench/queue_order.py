"""Does the review queue's order (least margin first) teach the model more per answer than another?

    python -m bench.queue_order [--data ../shared/data/kue-indonesia/test] [--budgets 10,20,40] [--seeds 5]

Protocol: `bench.adaptation`'s halves A and B of the benchmark (seed 0). For each fold a user
uploads the teach half through `services.photo_create` and the worker's task classifies each photo
once. Then, for each ordering of that user's review queue and each budget N: every answer is
deleted, the user answers the first N photos of the queue in that order as a user would (the true
label through `services.feedback_record`: a right prediction is confirmed, a wrong one corrected),
a fast training run goes through `services.training_run_start` and the real `tasks.train_model`,
and its new version's benchmark figures on the held half (never taught) are read from the run. The
shipped version stays active; the new version is deleted (and its folder with it) before the next.

Orderings: `margin` is the product's queue, `selectors.review_queue_for_user` as it is (least
margin between the two most probable cakes first); `entropy`, most entropy first, computed from the
stored prediction's probabilities (every class's: `Prediction.probabilities`); `confident`, largest
margin first (a floor); `random`, one shuffle per seed. Two references: `none`, a run with no answer
(the head refit alone), and `all wrong`, every wrong label corrected and nothing confirmed, no budget
(`bench.adaptation`'s figure). The first budget's margin run is trained twice, to show how much a
run moves by training alone.

Prints, per ordering and budget, top-1 and serabi recall on the held half after the run (the mean
of the two folds; for random the mean over seeds and the lowest and highest seed) and how many of
the N answers were corrections (per fold, averaged); ends with `RESULT before=.. b10_margin=..
b10_entropy=.. b10_random=.. b10_random_min=.. b10_random_max=.. b10_confident=.. ... all_wrong=..
wall_s=..` (top-1 each).
"""

from __future__ import annotations

import argparse
import math
import random
import tempfile
import time
from pathlib import Path

from bench.adaptation import DEFAULT_DATA, fold_start, halves, setup_django

ORDERINGS = ("margin", "entropy", "random", "confident")


def entropy(probabilities: dict[str, float]) -> float:
    return -sum(p * math.log(p) for p in probabilities.values() if p > 0)


def upload(teach: list[Path], held: list[Path], workdir: Path, fold: int):
    """The fold's user and staff accounts, and {photo id: true label} of the teach half, uploaded and
    classified once."""
    from django.core.files.uploadedfile import SimpleUploadedFile

    from classifier import services, tasks

    user, staff = fold_start(held, workdir, fold)
    truth = {}
    for path in teach:
        photo = services.photo_create(owner=user, upload=SimpleUploadedFile(path.name, path.read_bytes()))
        tasks.classify_photo(photo.pk)
        truth[photo.pk] = path.parent.name
    return user, staff, truth


def orders(user, seeds: int) -> dict[str, list[int]]:
    """Photo ids of the user's whole queue (nothing answered) in each ordering."""
    from classifier.selectors import review_queue_for_user

    queue = list(review_queue_for_user(user))
    ids = sorted(photo.pk for photo in queue)
    probabilities = {photo.pk: photo.prediction_list[0].probabilities for photo in queue}
    if any(len(p) != 8 for p in probabilities.values()):
        raise SystemExit("a stored prediction does not hold every class's probability")
    margin = {photo.pk: photo.margin for photo in queue}
    result = {
        "margin": [photo.pk for photo in queue],
        "entropy": sorted(ids, key=lambda pk: -entropy(probabilities[pk])),
        "confident": sorted(ids, key=lambda pk: -margin[pk]),
    }
    for seed in range(seeds):
        shuffled = list(ids)
        random.Random(seed).shuffle(shuffled)
        result[f"random{seed}"] = shuffled
    return result


def teach_and_train(user, staff, answers: list[tuple[int, str]]) -> dict:
    """Answer `answers` (photo id, label) afresh, run a fast training run, measure, clean up."""
    from classifier import services, tasks
    from classifier.models import Feedback, ModelVersion, Photo, TrainingRun

    Feedback.objects.all().delete()
    corrections = 0
    for pk, label in answers:
        answer = services.feedback_record(photo=Photo.objects.get(pk=pk), user=user, label=label)
        corrections += answer.is_correction
    run = services.training_run_start(user=staff, mode="fast")
    started = time.perf_counter()
    tasks.train_model(run.pk)
    seconds = time.perf_counter() - started
    run = TrainingRun.objects.get(pk=run.pk)
    if run.status != "succeeded":
        raise SystemExit(f"training run with {len(answers)} answers failed: {run.error}")
    new, base = run.metrics["new"]["test"], run.metrics["base"]["test"]
    services.model_version_activate(ModelVersion.objects.get(name="kue-mobilenetv2"), confirmed=True)
    services.model_version_delete(run.result_version)  # and its folder with it
    return {"top1": new["top1"], "serabi": new["per_class"]["kue_serabi"]["recall"],
            "before": base["top1"], "serabi_before": base["per_class"]["kue_serabi"]["recall"],
            "corrections": corrections, "trained": run.data["user_photos_trained"],
            "held_out": run.data["user_photos_heldout"], "seconds": seconds}


def fold_results(user, staff, truth: dict[int, str], budgets: list[int], seeds: int, fold: int) -> dict:
    from classifier.models import Feedback, Photo
    from classifier.selectors import review_queue_for_user

    Feedback.objects.all().delete()
    ordered = orders(user, seeds)
    results: dict = {}

    def one(key, answers):
        results[key] = r = teach_and_train(user, staff, answers)
        print(f"fold {fold} {key[0]:>10} N={key[1]!s:<3} top-1 {r['top1']:.3f} serabi {r['serabi']:.2f} "
              f"corrections {r['corrections']:>2} trained {r['trained']:>2} held out {r['held_out']:>2} "
              f"({r['seconds']:.1f} s)", flush=True)

    one(("none", 0), [])
    predicted = dict(Photo.objects.filter(pk__in=truth).values_list("pk", "predicted_label"))
    one(("all wrong", "all"), [(pk, label) for pk, label in truth.items() if predicted[pk] != label])
    for budget in budgets:
        for name in ordered:
            if name == "margin":  # the product's queue itself, asked afresh
                Feedback.objects.all().delete()
                picked = [photo.pk for photo in review_queue_for_user(user)[:budget]]
                assert picked == ordered["margin"][:budget]
            else:
                picked = ordered[name][:budget]
            one((name, budget), [(pk, truth[pk]) for pk in picked])
    # the same answers again: how much a run moves by training alone (threads, not the answers)
    one(("margin again", budgets[0]), [(pk, truth[pk]) for pk in ordered["margin"][:budgets[0]]])
    return results


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.queue_order", description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(DEFAULT_DATA), help="<class>/<file> benchmark folder")
    p.add_argument("--budgets", default="10,20,40", help="answers per run, comma-separated")
    p.add_argument("--seeds", type=int, default=5, help="random orderings")
    args = p.parse_args(argv)
    budgets = [int(b) for b in args.budgets.split(",")]
    data_dir = Path(args.data).resolve()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="cakesite-queue-order-") as tmp:
        workdir = Path(tmp)
        setup_django(workdir)
        a, b = halves(data_dir)
        folds = []
        for fold, (teach, held) in enumerate([(a, b), (b, a)], start=1):
            user, staff, truth = upload(teach, held, workdir, fold)
            folds.append(fold_results(user, staff, truth, budgets, args.seeds, fold))
    wall = time.perf_counter() - started

    def mean(key, field):
        return sum(f[key][field] for f in folds) / len(folds)

    before = sum(f[("none", 0)]["before"] for f in folds) / len(folds)
    serabi_before = sum(f[("none", 0)]["serabi_before"] for f in folds) / len(folds)
    print(f"\nthe held half, mean of {len(folds)} folds; the shipped version: top-1 {before:.3f}, "
          f"serabi {serabi_before:.2f}")
    print(f"{'ordering':<11} {'N':>4} {'top-1 after':>12} {'(random min-max)':>17} {'serabi after':>13} "
          f"{'corrections':>12} {'trained':>8}")
    result = {"before": before}

    def row(label, budget, keys):
        top1 = [mean(k, "top1") for k in keys]
        spread = f"{min(top1):.3f}-{max(top1):.3f}" if len(keys) > 1 else ""
        value = sum(top1) / len(top1)
        serabi = sum(mean(k, "serabi") for k in keys) / len(keys)
        corrections = sum(mean(k, "corrections") for k in keys) / len(keys)
        trained = sum(mean(k, "trained") for k in keys) / len(keys)
        print(f"{label:<11} {budget!s:>4} {value:>12.3f} {spread:>17} {serabi:>13.2f} "
              f"{corrections:>7.1f}/{budget!s:<4} {trained:>8.1f}")
        return value, top1

    row("none", 0, [("none", 0)])
    for budget in budgets:
        for name in ORDERINGS:
            keys = ([("random" + str(s), budget) for s in range(args.seeds)] if name == "random"
                    else [(name, budget)])
            value, top1 = row(name, budget, keys)
            result[f"b{budget}_{name}"] = value
            if name == "random":
                result[f"b{budget}_random_min"], result[f"b{budget}_random_max"] = min(top1), max(top1)
    result["all_wrong"], _ = row("all wrong", "all", [("all wrong", "all")])
    again = [abs(f[("margin again", budgets[0])]["top1"] - f[("margin", budgets[0])]["top1"]) for f in folds]
    print(f"margin N={budgets[0]} trained twice on the same answers: top-1 differs by "
          f"{', '.join(f'{d:.3f}' for d in again)} (fold by fold)")
    result["wall_s"] = wall
    figures = " ".join(f"{k}={v:.0f}" if k == "wall_s" else f"{k}={v:.4f}" for k, v in result.items())
    print(f"\nRESULT {figures}")


if __name__ == "__main__":
    main()
