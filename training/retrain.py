"""Retraining an exported model folder on extra labelled photos (user corrections), no Django.

Fast mode refits only the softmax head on backbone embeddings: the base training photos come from
the folder's float16 cache (no base images needed), the extra photos are embedded once. Seconds.
Full mode fine-tunes the top blocks again, from the folder's weights, on the base training photos
plus the extra ones, with augmentation and early stopping on the base validation split. Minutes.

Either way the new folder's cache holds the base photos only. The extra photos are given afresh to
every retrain (with their labels of the day, without the ones deleted or held out since), so a
retrain of a retrained version never trains on an earlier run's extra photos a second time.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from training.data import counts_per_class
from training.runtime import (
    CONFIG_FILE,
    EMBEDDINGS_FILE,
    LABELS_FILE,
    MODEL_FILE,
    TFLITE_FILE,
    load,
    read_json,
    write_head,
    write_tflite,
)


def fit_head(embeddings: np.ndarray, labels: np.ndarray, sample_weight: np.ndarray, num_classes: int,
             init: list[np.ndarray], *, epochs: int = 60, seed: int = 1) -> list[np.ndarray]:
    """Train a softmax layer on fixed embeddings, starting from the current head; returns its weights."""
    import keras

    keras.utils.set_random_seed(seed)
    head = keras.Sequential([keras.Input((embeddings.shape[1],)),
                             keras.layers.Dense(num_classes, activation="softmax")])
    head.layers[-1].set_weights(init)
    head.compile(optimizer=keras.optimizers.Adam(1e-3),
                 loss=keras.losses.CategoricalCrossentropy(label_smoothing=0.1))
    onehot = np.eye(num_classes, dtype=np.float32)[labels]
    head.fit(embeddings.astype(np.float32), onehot, sample_weight=sample_weight, epochs=epochs,
             batch_size=64, shuffle=True, verbose=0)
    return head.layers[-1].get_weights()


def sample_weights(base_labels: np.ndarray, extra_labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Per-photo loss weights for base photos then extra ones: classes balanced, and, on top of that,
    fewer extra photos than an average base class has are scaled up together to count as many
    photos as that class (their total weight then comes near a base class's, not always up to it:
    the balance already weighs a photo of a large class less); never down."""
    y = np.concatenate([base_labels, extra_labels]).astype(np.int64)
    counts = np.bincount(y, minlength=num_classes)
    weights = len(y) / (num_classes * np.maximum(counts[y], 1))
    if len(extra_labels):
        weights[len(base_labels):] *= max(1.0, len(base_labels) / (num_classes * len(extra_labels)))
    return weights


def link_or_copy(source: Path, target: Path) -> None:
    """`target` as a second name of `source` (9 MB less on disk for each version a fast run makes;
    an export writes a new file under the name, never over the old one: runtime.write_tflite), or a
    copy where the disk cannot link."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copy(source, target)


def refit_head(base: str | Path, out: str | Path, extra_pixels: np.ndarray, extra_labels: np.ndarray,
               *, epochs: int = 60, seed: int = 1) -> dict:
    """Write `out`: `base` with a head refit on the cached base embeddings plus the extra photos.

    Extra photos are what users taught the model; `sample_weights` keeps a handful of corrections
    from being drowned out by a thousand base photos. The base's validation photos (`val_files`)
    are left out, as from every training of the line: a full retrain of this version early-stops
    and reports on them. Returns a summary (counts, seconds) that is also saved in config.json.
    """
    from training.model import HEAD
    from training.train import embed, machine

    started = time.perf_counter()
    base, out = Path(base), Path(out)
    classifier = load(base)
    classes = classifier.slugs
    cache = np.load(base / EMBEDDINGS_FILE)
    # Folders written before the cache held base photos only also list earlier extra photos, as
    # user/<file>: skip them. Unless `user` is a class: then user/<file> is one of its base photos.
    kept = np.ones(len(cache["files"]), dtype=bool)
    if "user" not in classes:
        kept = ~np.char.startswith(cache["files"].astype(str), "user/")
    base_embeddings, base_labels, base_files = (cache[key][kept] for key in ("embeddings", "labels", "files"))
    base_labels = base_labels.astype(np.int64)
    config = json.loads((base / CONFIG_FILE).read_text())
    fit = ~np.isin(base_files.astype(str), np.array(config.get("val_files", []), dtype=str))
    k = len(classes)
    extra = embed(classifier.model, extra_pixels, batch_size=32).astype(np.float32)
    x = np.concatenate([base_embeddings[fit].astype(np.float32), extra])
    y = np.concatenate([base_labels[fit], np.asarray(extra_labels, dtype=np.int64)])
    weights = sample_weights(base_labels[fit], extra_labels, k)
    head = classifier.model.get_layer(HEAD)
    new_weights = fit_head(x, y, weights, k, head.get_weights(), epochs=epochs, seed=seed)
    head.set_weights(new_weights)

    out.mkdir(parents=True, exist_ok=True)
    classifier.model.save(out / MODEL_FILE)
    if classifier.head_outside_litert:  # the backbone is unchanged: so is its LiteRT file
        link_or_copy(base / TFLITE_FILE, out / TFLITE_FILE)
        write_head(classifier.model, out)
    else:
        write_tflite(classifier.model, out)
    shutil.copy(base / LABELS_FILE, out / LABELS_FILE)
    np.savez_compressed(out / EMBEDDINGS_FILE, embeddings=base_embeddings.astype(np.float16),
                        labels=base_labels, files=base_files, classes=np.array(classes))
    summary = {
        "mode": "fast",
        "base": base.name,
        "base_photos": int(fit.sum()),  # (without the base's validation photos: never trained on)
        "extra_photos": int(len(extra)),
        "extra_per_class": counts_per_class(extra_labels, classes),
        "epochs": epochs,
        "seconds": round(time.perf_counter() - started, 1),
    }
    # What this run did, not the base's phases, time and command (which would rebuild the base).
    phase = {"name": f"head refit on cached embeddings ({epochs} epochs)", "epochs_run": epochs}
    config |= {"retrain": summary, "train_seconds": summary["seconds"], "machine": machine(),
               "n_train": int(len(y)), "phases": [phase],
               "class_counts": counts_per_class(np.concatenate([base_labels, extra_labels]), classes)}
    config.pop("command", None)
    (out / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
    return summary


def finetune(base: str | Path, out: str | Path, data_dir: str | Path, extra_pixels: np.ndarray,
             extra_labels: np.ndarray, *, epochs: int = 8, lr: float = 5e-5, max_steps: int | None = None,
             finetune_from: str | None = None, progress: Callable[[int, int], None] | None = None) -> dict:
    """Write `out`: `base` fine-tuned further on `data_dir` (its training part) plus the extra photos.

    The validation split is the one `base` was trained with (its `val_files` still in `data_dir`;
    photos added since train), so early stopping never sees the extra photos or any photo `base`
    trained on.
    The base weights do not compete with the epochs: they were chosen as the best on that very split,
    which holds none of the extra photos, so they would nearly always win and the retrain would learn
    nothing from them. The run's evaluation decides whether the new version is any better.

    The new folder keeps the base's labels (display names a person edited included). Its config.json
    says what this run did: `retrain`, and `phases` this run's phase, with no `command` (the base's
    would rebuild the base, not this). `progress`, if given, is called after each epoch with
    (epochs done, `epochs`): a run takes minutes.
    """
    from types import SimpleNamespace

    from training import data as datasets
    from training import model as networks
    from training.train import deterministic, embed, export, fit_phase, machine

    started = time.perf_counter()
    base, out = Path(base), Path(out)
    config = json.loads((base / CONFIG_FILE).read_text())
    options = config["options"]
    deterministic(options["seed"])  # as the base was: the same retrain, the same network, whatever ran before
    classifier = load(base)
    model, classes, size = classifier.model, classifier.slugs, classifier.image_size
    frozen_from = finetune_from or options.get("finetune_from", "block_9_expand")
    n = networks.unfreeze_top(model, frozen_from)  # a wrong layer name fails before any decoding
    data = datasets.discover(data_dir, classes=classes)
    if note := data.skipped_note():  # (the worker's log, in a run of the website's)
        print(f"{data_dir}: {note}", flush=True)
    train_idx, val_idx = datasets.split_as_before(data, config.get("val_files"), options["val_fraction"],
                                                  options["seed"])
    extra_labels = np.asarray(extra_labels, dtype=np.int64)
    n_base = len(data.files)
    train_rows = np.concatenate([train_idx, n_base + np.arange(len(extra_labels))])
    y = np.concatenate([data.labels[train_idx], extra_labels])
    onehot = np.eye(len(classes), dtype=np.float32)
    args = SimpleNamespace(label_smoothing=options["label_smoothing"], patience=3, max_steps=max_steps)
    with datasets.decoded(data, size, extra_pixels) as pixels:  # base rows, then the extra ones
        train_ds = datasets.pipeline(pixels, onehot[y], options["batch_size"], indices=train_rows,
                                     training=True, seed=options["seed"])
        val_ds = datasets.pipeline(pixels, onehot[data.labels[val_idx]], options["batch_size"],
                                   indices=val_idx)
        phase = fit_phase(model, f"full retrain ({n} layers from {frozen_from})", train_ds, val_ds,
                          epochs, lr, datasets.class_weights(y, len(classes)), args, start_competes=False,
                          progress=progress)

        summary = {
            "mode": "full", "base": base.name, "base_photos": int(len(train_idx)),
            "validation_photos": int(len(val_idx)),  # the base's photos it kept its best epoch by
            "extra_photos": int(len(extra_labels)),
            "extra_per_class": counts_per_class(extra_labels, classes),
            "epochs_run": phase["epochs_run"], "kept": phase["kept"],
            "seconds": round(time.perf_counter() - started, 1),
        }
        config |= {"retrain": summary, "train_seconds": summary["seconds"], "machine": machine(),
                   "n_train": int(len(y)), "n_val": int(len(val_idx)),
                   "class_counts": counts_per_class(np.concatenate([data.labels, extra_labels]), classes),
                   "val_files": [data.files[i] for i in val_idx],
                   "phases": [{k: v for k, v in phase.items() if k != "history"}]}
        config.pop("command", None)
        export(out, model, config, [phase], embed(model, pixels[:n_base], options["batch_size"]), data,
               validation=(pixels[val_idx], data.labels[val_idx]), labels=read_json(base, LABELS_FILE))
        return summary
