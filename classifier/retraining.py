"""A training run, start to finish: gather what users taught, retrain, evaluate, register, decide."""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from collections import Counter
from pathlib import Path

import numpy as np
from django import db
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db.models import Q
from PIL import Image

from classifier import selectors, services
from classifier.models import ModelVersion, TrainingRun, version_name
from training import report
from training.data import DataError, counts_per_class, discover, remove_leftover_pixels, split_as_before
from training.preprocess import ImageDecodeError, load_image
from training.runtime import CONFIG_FILE

log = logging.getLogger(__name__)

# Photos whose difference hashes are at most this many bits apart count as one picture when the
# user photos are split (tests/photos saved again at JPEG quality 70 or 95, as PNG or at half size
# moved at most 1 bit of 64).
LOOK_ALIKE_BITS = 4

# A class's user photos are split into trained on and held out from this many pictures on.
HELD_OUT_FROM = 5


def split_user_photos(items: list[tuple]) -> tuple[list, list]:
    """(photo, label, key) items, the key in hex: train and held-out parts.

    A fifth of each class's photos is held out for evaluation, chosen by content (the key: the
    photo's group in `look_alike_groups`), not by id: copies of one photo, uploaded twice, always
    land on the same side, so a held-out photo is never one the new version trained on. A class with
    fewer than HELD_OUT_FROM pictures is trained on whole: held out, its few corrections would not be
    learnt at all (one user's two photos of a class the model gets wrong, say).
    """
    pictures: dict = {}
    for _, label, key in items:
        pictures.setdefault(label, set()).add(key)
    held = [len(pictures[label]) >= HELD_OUT_FROM and int(key[:8], 16) % 5 == 0 for _, label, key in items]
    return [i for i, h in zip(items, held) if not h], [i for i, h in zip(items, held) if h]


def user_photos_split(labels: list[int], keys: list[int]) -> tuple[list[int], list[int], list[int]]:
    """The user photos with these labels and `look_alike_key`s, by index: those to train on, those
    held out, and those left out because copies of their picture carry different labels (two users
    disagree, or one changed their mind on a copy; nothing says which is right).

    The held-out part has one photo of each picture: copies would count one picture's answer
    several times, and alone meet AUTO_ACTIVATE_MIN_HELDOUT."""
    groups = look_alike_groups(keys)
    labels_of: dict[str, set[int]] = {}
    for label, group in zip(labels, groups):
        labels_of.setdefault(group, set()).add(label)
    agreeing = [(i, label, group) for i, (label, group) in enumerate(zip(labels, groups))
                if len(labels_of[group]) == 1]
    train, held = split_user_photos(agreeing)
    pictures: dict[str, int] = {}
    for i, _, group in held:
        pictures.setdefault(group, i)
    disagreeing = [i for i, group in enumerate(groups) if len(labels_of[group]) > 1]
    return [i for i, *_ in train], list(pictures.values()), disagreeing


def look_alike_key(pixels: np.ndarray) -> int:
    """A difference hash of a decoded photo: 64 bits, each saying whether a cell of a 9 x 8 grey
    copy is brighter than its right neighbour. The same picture uploaded again, though
    re-compressed, resized or stripped of its metadata by a messaging app (another file, so another
    SHA-256), keeps all of them or all but one or two."""
    cells = np.asarray(Image.fromarray(pixels).convert("L").resize((9, 8), Image.Resampling.BILINEAR),
                       dtype=np.int16)
    return int.from_bytes(np.packbits(cells[:, 1:] > cells[:, :-1]).tobytes(), "big")


def look_alike_groups(keys: list[int], bits: int = LOOK_ALIKE_BITS) -> list[str]:
    """For each photo, as hex, the smallest `look_alike_key` of its group: the photos linked to it by
    keys at most `bits` apart (different photos are about 32 apart). One pass over every pair, a
    block of rows at a time: 20,000 photos take a few seconds, once per run."""
    codes = np.array(keys, dtype=np.uint64)
    group = list(range(len(keys)))

    def root(i: int) -> int:
        while group[i] != i:
            group[i] = group[group[i]]
            i = group[i]
        return i

    for start in range(0, len(codes), 256):
        near = np.bitwise_count(codes[start:start + 256, None] ^ codes[None, :]) <= bits
        for i, j in zip(*np.nonzero(near)):
            a, b = root(start + int(i)), root(int(j))
            if a != b:
                group[max(a, b)] = min(a, b)
    smallest: dict[int, int] = {}
    for i, key in enumerate(keys):
        smallest[root(i)] = min(key, smallest.get(root(i), key))
    return [f"{smallest[root(i)]:016x}" for i in range(len(keys))]


def benchmark_files(benchmark: Path | None, slugs: list[str]) -> list[Path]:
    """Every photo of the benchmark split, as its evaluation reads them (class folders that are
    links included). A user photo that is a copy of one is never trained on: the benchmark decides
    auto-activation, and a version that has learnt some of its photos would win there by memory."""
    if benchmark is None:
        return []
    return [benchmark / name for name in discover(benchmark, classes=slugs).files]


def validation_files(config: dict, data_dir: Path, slugs: list[str]) -> list[Path]:
    """A base's validation photos in `data_dir`, the split a full run keeps its best epoch by
    (`training.data.split_as_before`, as `retrain.finetune` takes it): a user photo that is a copy
    of one (the same web picture) is not trained on, or the epoch would be chosen, and the version
    measured, on photos it learnt. `config`: the base's config.json."""
    data = discover(data_dir, classes=slugs)
    _, validation = split_as_before(data, config.get("val_files"), config["options"]["val_fraction"],
                                    config["options"]["seed"])
    return [data.root / data.files[i] for i in validation]


def file_hashes(paths: list[Path]) -> set[str]:
    """The SHA-256 of each file: a user photo with one of them is a byte-for-byte copy (the photo
    as it was downloaded), known without decoding it."""
    return {hashlib.sha256(path.read_bytes()).hexdigest() for path in paths}


def reference_keys(paths: list[Path], size: int) -> np.ndarray:
    """The `look_alike_key` of each photo (the benchmark's, a base's validation photos), decoded as
    for training, to know a user photo that is a copy of one saved again as another file (re-
    compressed, resized, mirrored: `look_alike_copies`). About 5 ms a photo."""
    keys = []
    for path in paths:
        try:
            keys.append(look_alike_key(load_image(path, size)))
        except ImageDecodeError as exc:
            log.warning("training: cannot read %s to know copies of it: %s", path, exc)
    return np.array(keys, dtype=np.uint64)


def look_alike_copies(keys: list[int], mirrored: list[int], reference: np.ndarray,
                      bits: int = LOOK_ALIKE_BITS) -> list[bool]:
    """For each photo, whether its `look_alike_key` (in `keys`) or that of it mirrored (in
    `mirrored`: training flips photos, so a mirrored copy teaches the same) is within `bits` of a
    `reference_keys` photo. A block of photos at a time, as `look_alike_groups`."""
    if not len(reference):
        return [False] * len(keys)
    both = np.array([keys, mirrored], dtype=np.uint64).T  # (photo, its key and its mirror's)
    near = []
    for start in range(0, len(both), 1024):
        distance = np.bitwise_count(both[start:start + 1024, :, None] ^ reference[None, None, :])
        near += [bool(copy) for copy in (distance <= bits).any(axis=(1, 2))]
    return near


def new_version_name(base: ModelVersion, run: TrainingRun) -> str:
    """A name, and folder under MODELS_DIR, that nothing uses yet (so a failed run may remove its
    folder without touching anyone's): after the first version of the line, not the whole chain
    (kue-mobilenetv2+run7 is retrained as kue-mobilenetv2+run9, so names never outgrow their
    column), with -2, -3... if a folder or version of that name is left from elsewhere (a database
    started afresh beside old model folders)."""
    line = base.name.partition("+run")[0][:80]
    try:
        version_name(line)
    except ValidationError:  # (a name from before names were checked: no folder may come of it)
        line = "version"
    stem = f"{line}+run{run.pk}"
    name, n = stem, 1
    while (Path(settings.MODELS_DIR) / name).exists() or \
            ModelVersion.objects.filter(Q(name=name) | Q(path=name)).exists():
        n += 1
        name = f"{stem}-{n}"
    return name


def load_user_photos(rows: list[tuple], slugs: list[str], size: int) -> tuple[list[tuple], int]:
    """(row, pixels, label index) of each `selectors.labelled_photos` row whose file reads; and how
    many were skipped (a file missing or unreadable, or the photo deleted meanwhile)."""
    from classifier.models import Photo

    photos = Photo.objects.in_bulk([row[0] for row in rows])
    loaded = []
    for row in rows:
        try:
            with photos[row[0]].image.open("rb") as f:
                loaded.append((row, load_image(f, size), slugs.index(row[1])))
        except (ImageDecodeError, FileNotFoundError, KeyError) as exc:
            log.warning("training: skipping photo %s: %s", row[0], exc)
    return loaded, len(rows) - len(loaded)


def stacked(photos: list[tuple], indices: list[int], size: int) -> tuple[np.ndarray, np.ndarray]:
    """The pixels and label indices of the (row, pixels, label index) photos at `indices`, as one
    array each. Each photo's own pixels are let go as they are copied (its row and label stay), so
    that the user photos are held once, not twice (150 KB each at 224 px: 7.5 GB for 25,000)."""
    pixels, labels = np.empty((len(indices), size, size, 3), np.uint8), np.empty(len(indices), np.int64)
    for n, i in enumerate(indices):
        row, picture, label = photos[i]
        pixels[n], labels[n] = picture, label
        photos[i] = (row, None, label)
    return pixels, labels


def evaluate_version(folder: Path, benchmark: Path | None, held_pixels, held_labels) -> dict:
    """Metrics of a model folder on the benchmark split and on the held-out user photos."""
    from training.evaluate import evaluate
    from training.runtime import load

    classifier = load(folder)
    results = {}
    if benchmark:
        results["test"], _, _ = evaluate(classifier, benchmark)
    if len(held_labels):
        probs = classifier.predict_pixels(held_pixels)
        results["user_heldout"] = report.metrics(held_labels, probs, classifier.slugs)
    return results


def largest_account(trained: list[str], held_out: list[str]) -> dict | None:
    """The account that gave the most of the answers a run used (the names of the accounts that gave
    the photos trained on, and those held out): its name and how many of each. One account's answers
    teach what it says: the photos it got wrong, carelessly or on purpose, as they are, and the held-out
    part it gave measures the new version by its own answers. None if there was no answer (of an
    account still there: the answers of deleted accounts, whose name is None, are no one's)."""
    counts = Counter(name for name in trained + held_out if name is not None)
    if not counts:
        return None
    name = counts.most_common(1)[0][0]
    return {"account": name, "trained": trained.count(name), "held_out": held_out.count(name)}


def answers_against(trained: list[list], base: ModelVersion) -> tuple[int | None, int | None]:
    """Of the answers a run trained on ([photo id, label] each): how many its base had not learnt,
    and how many the base learnt that it did not train on (None, None: unknown)."""
    learnt = selectors.answers_learnt(base)
    if learnt is None:
        return None, None
    mine = {(pk, label) for pk, label in trained}
    return len(mine - learnt), len(learnt - mine)


def repeats_base(run: TrainingRun, base: ModelVersion, new: int | None, dropped: int | None,
                 base_photos: int) -> bool | None:
    """Whether the run trained its base again on what the base was trained on, the same way: the
    same answers (none new, none gone), the same mode and as many base photos as the run that made
    it (a version made by hand: only a fast run, which refits its head on its fixed cached
    embeddings). Then what differs from the base is the noise of training again. None if unknown."""
    if new is None or dropped is None:
        return None
    made_by = getattr(base, "training_run", None)
    same_way = (run.mode == TrainingRun.Mode.FAST if made_by is None
                else made_by.mode == run.mode and made_by.data.get("base_photos") == base_photos)
    return new == 0 and dropped == 0 and same_way


def decide(run: TrainingRun, new: dict, base: dict) -> tuple[bool, str]:
    """Auto-activate only if asked, at least as good on the benchmark (no cake's recall there
    selectors.RECALL_DROP_POINTS or more lower), better on enough held-out user photos
    (AUTO_ACTIVATE_MIN_HELDOUT), and not its base trained again on the same answers the same way
    (`repeats_base`: then its figures differ from the base's by the noise of training alone)."""
    if "test" not in new:
        text, better = "no benchmark split was available to compare on (CAKESITE_BENCHMARK_DIR)", False
    else:
        text, better = benchmark_comparison(new, base, run.base_version.name)
    repeats = (f"it repeats {run.base_version.name}'s training ({selectors.REPEAT}), so what differs "
               "comes from training again on the same data, not from users' answers"
               if run.data.get("repeats_base") else "")
    if not run.auto_activate:
        return False, f"Not activated (auto-activation off): {text}{'; ' + repeats if repeats else ''}."
    if better and repeats:
        return False, f"Not activated: {repeats}; {text}."
    if better:
        return True, f"Activated: {text}."
    also = f"; also, {repeats}" if repeats else ""
    return False, (f"Not activated: it must match the benchmark and beat the user photos, on at least "
                   f"{settings.AUTO_ACTIVATE_MIN_HELDOUT} held out; {text}{also}.")


def benchmark_comparison(new: dict, base: dict, base_name: str) -> tuple[str, bool]:
    """The new version's figures against its base's (the version active when the run started), and
    whether it is better."""
    bench_new, bench_base = new["test"]["top1"], base["test"]["top1"]
    text = f"benchmark top-1 {bench_new:.3f} vs {bench_base:.3f} ({base_name})"
    # (a cake taught as another loses its recall while top-1 barely moves: selectors.RECALL_DROP_POINTS)
    drops = selectors.recall_drops(new["test"], base["test"])
    for slug, mine, theirs in drops:
        text += (f"; recall of {slug} on the benchmark {mine:.3f} vs {theirs:.3f}, "
                 f"{selectors.RECALL_DROP_POINTS} points or more lower")
    if "user_heldout" in new:
        user_new, user_base = new["user_heldout"]["top1"], base["user_heldout"]["top1"]
        n = new["user_heldout"]["n"]
        text += f"; held-out user photos ({n} pictures) top-1 {user_new:.3f} vs {user_base:.3f}"
        better = (bench_new >= bench_base and not drops and user_new > user_base
                  and n >= settings.AUTO_ACTIVATE_MIN_HELDOUT)
    else:
        text += "; no held-out user photos yet"
        better = False
    return text, better


def working_connection() -> None:
    """Before a write that follows a step of minutes (a full run's epoch, reading the users' photos,
    the evaluations), over which the database may have cut the run's connection (a restart, a
    failover): as Django does before each request, the connection is checked, and replaced if it
    was cut, instead of the run failing on it (never inside a transaction, which it would end)."""
    if not db.connection.in_atomic_block:
        db.close_old_connections()


def progress(run: TrainingRun, stage: str, percent: int) -> None:
    working_connection()
    services.training_run_progress(run, stage, percent)


def execute(run: TrainingRun) -> ModelVersion:
    """Retrain for `run` (fast or full) and register its version (the caller marks failures)."""
    from training import retrain

    base = run.base_version
    slugs = [item["slug"] for item in base.labels]
    # A full run whose worker was killed (a SIGKILL, the machine's memory) left every photo it
    # decoded, users' included, in a temporary folder: gone before any next run, in either mode.
    for leftover in remove_leftover_pixels():
        log.warning("training: removed %s, left by a run whose worker was killed", leftover)
    progress(run, "collecting labelled photos", 5)
    benchmark = Path(settings.BENCHMARK_DIR) if Path(settings.BENCHMARK_DIR).is_dir() else None
    benchmark_photos = benchmark_files(benchmark, slugs)
    copies = file_hashes(benchmark_photos)
    data_dir = Path(settings.TRAINING_DATA_DIR)
    if run.mode == TrainingRun.Mode.FULL and not data_dir.is_dir():
        raise FileNotFoundError(f"the full mode needs the base training photos in {data_dir} "
                                "(CAKESITE_TRAINING_DATA_DIR); the fast mode does not")
    # (the fast mode, which may run without the base photos, finds the copies where they are: a full
    # run of a later version keeps its best epoch by the same photos; a folder the base was not
    # trained on fails a full run, and leaves a fast one to go on without)
    config = json.loads((base.folder / CONFIG_FILE).read_text())
    validation_photos = []
    if data_dir.is_dir():
        try:
            validation_photos = validation_files(config, data_dir, slugs)
        except DataError:
            if run.mode == TrainingRun.Mode.FULL:
                raise
            log.warning("training: %s holds none of %s's validation photos", data_dir, base.name)
    validation = file_hashes(validation_photos) - copies
    labelled = [row for row in selectors.labelled_photos() if row[1] in slugs]
    usable = [row for row in labelled if row[3] not in copies | validation]
    size = config["image_size"]
    photos, unreadable = load_user_photos(usable, slugs, size)
    # Copies saved again as other files: known by the picture, as the held-out split knows them.
    keys = [look_alike_key(p) for _, p, _ in photos]
    mirrored = [look_alike_key(p[:, ::-1]) for _, p, _ in photos]
    like_benchmark = look_alike_copies(keys, mirrored, reference_keys(benchmark_photos, size))
    like_validation = look_alike_copies(keys, mirrored, reference_keys(validation_photos, size))
    kept = [i for i, (b, v) in enumerate(zip(like_benchmark, like_validation)) if not (b or v)]
    photos, keys = [photos[i] for i in kept], [keys[i] for i in kept]
    train_rows, held_rows, disagreeing = user_photos_split([label for *_, label in photos], keys)
    train_pixels, train_labels = stacked(photos, train_rows, size)
    held_pixels, held_labels = stacked(photos, held_rows, size)
    corrected = sum(1 for i in train_rows if photos[i][0][2])
    largest = largest_account([photos[i][0][4] for i in train_rows], [photos[i][0][4] for i in held_rows])
    run.photos_used = {"trained": [[photos[i][0][0], photos[i][0][1]] for i in train_rows],
                       "held_out": [[photos[i][0][0], photos[i][0][1]] for i in held_rows]}
    working_connection()  # (after decoding every user photo)
    new_to_base, dropped = answers_against(run.photos_used["trained"], base)
    del photos
    name = new_version_name(base, run)
    services.training_run_folder(run, name)
    folder = Path(settings.MODELS_DIR) / name
    started = time.perf_counter()
    try:  # a run that fails leaves no half-made folder behind (it is ~20 MB)
        if run.mode == TrainingRun.Mode.FULL:
            progress(run, "fine-tuning on the base and user photos", 30)

            def epoch_done(done: int, planned: int) -> None:  # minutes a run: the page shows each epoch
                progress(
                    run, f"fine-tuning on the base and user photos: epoch {done} of {planned}",
                    30 + 40 * done // planned)

            summary = retrain.finetune(base.folder, folder, data_dir, train_pixels, train_labels,
                                       epochs=settings.FULL_RETRAIN_EPOCHS, progress=epoch_done)
        else:
            progress(run, "refitting the head", 30)
            summary = retrain.refit_head(base.folder, folder, train_pixels, train_labels)
        run.data = {
            "base_photos": summary["base_photos"],  # trained on (validation photos apart)
            "validation_photos": summary.get("validation_photos", 0),
            "user_photos_train": counts_per_class(train_labels, slugs),
            "user_photos_trained": int(len(train_labels)),
            "user_photos_heldout": int(len(held_labels)),
            "corrected": corrected,  # of the photos trained on
            "user_photos_new": new_to_base,  # trained on, and not learnt by the base (None: unknown)
            "user_photos_dropped": dropped,  # learnt by the base, not trained on (disabled, deleted...)
            "repeats_base": repeats_base(run, base, new_to_base, dropped, summary["base_photos"]),
            "benchmark_copies": sum(1 for row in labelled if row[3] in copies) + sum(like_benchmark),
            "validation_copies": sum(1 for row in labelled if row[3] in validation)
            + sum(1 for b, v in zip(like_benchmark, like_validation) if v and not b),
            "unreadable": unreadable,
            "disagreeing": len(disagreeing),
            "largest_account": largest,
        }
        progress(run, "evaluating", 70)
        new = evaluate_version(folder, benchmark, held_pixels, held_labels)
        before = evaluate_version(base.folder, benchmark, held_pixels, held_labels)
        report.record(folder, slugs, new)  # with its model card (a full run's gets these figures too)
        run.metrics = {"new": new, "base": before, "retrain_seconds": summary["seconds"],
                       "total_seconds": round(time.perf_counter() - started, 1)}
        working_connection()
        version = services.training_run_register(run, name)
    except BaseException:  # a failure, or services.RunStopped: the run was cancelled
        shutil.rmtree(folder, ignore_errors=True)
        raise
    activate, run.decision = decide(run, new, before)
    if activate:
        try:  # only in place of the version it was compared with, and only if it was not cancelled
            services.training_run_activate(run, version, replacing=base)
        except ValidationError as exc:
            rule = run.decision.removeprefix("Activated: ").rstrip(".")
            run.decision = f"Not activated, although it met the rule ({rule}): {' '.join(exc.messages)}"
    return version
