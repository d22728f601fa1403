"""Train a classifier on a `<class>/<file>` folder and export a model folder.

    python -m training.train --data DIR --out models/NAME [--arch mobilenet_v2|simple-cnn] [...]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from tqdm import tqdm  # noqa: E402

from training import data as datasets  # noqa: E402
from training import model as networks  # noqa: E402
from training import report  # noqa: E402
from training.data import DataError  # noqa: E402
from training.runtime import (  # noqa: E402
    CONFIG_FILE,
    EMBEDDINGS_FILE,
    LABELS_FILE,
    METRICS_FILE,
    MODEL_FILE,
    display_name,
    load,
    write_tflite,
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m training.train", description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="training folder: <class>/<image files>")
    p.add_argument("--out", required=True, help="model folder to write (e.g. models/kue-v1)")
    p.add_argument("--arch", choices=networks.ARCHITECTURES, default="mobilenet_v2")
    p.add_argument("--image-size", type=int, default=None,
                   help="input pixels (default 224 for mobilenet_v2, 128 for simple-cnn)")
    p.add_argument("--val-fraction", type=float, default=0.15)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--head-epochs", type=int, default=15, help="frozen backbone, head only")
    p.add_argument("--head-lr", type=float, default=1e-3)
    p.add_argument("--finetune-epochs", type=int, default=25, help="top blocks unfrozen")
    p.add_argument("--finetune-lr", type=float, default=1e-4)
    p.add_argument("--finetune-from", default="block_9_expand",
                   help="first backbone layer to unfreeze when fine-tuning")
    p.add_argument("--epochs", type=int, default=60, help="simple-cnn epochs")
    p.add_argument("--lr", type=float, default=1e-3, help="simple-cnn learning rate")
    p.add_argument("--patience", type=int, default=6, help="early stopping on validation loss")
    p.add_argument("--dropout", type=float, default=0.3)
    p.add_argument("--label-smoothing", type=float, default=0.1)
    p.add_argument("--max-steps", type=int, default=None,
                   help="cap steps per epoch (smoke tests)")
    p.add_argument("--weights", default=str(networks.MOBILENET_V2_NO_TOP),
                   help="ImageNet no-top weights file for mobilenet_v2")
    args = p.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # the command config.json records
    if args.image_size is None:
        args.image_size = 224 if args.arch == "mobilenet_v2" else 128
    if not 0 < args.val_fraction < 1:
        p.error("--val-fraction must be between 0 and 1: early stopping needs a validation split")
    # (checked here: TensorFlow's and Keras's own messages come deep inside training, some after
    # every photo was decoded, and speak of tensors)
    smallest = networks.SMALLEST_IMAGE_SIZE[args.arch]
    if args.image_size < smallest:
        p.error(f"--image-size must be at least {smallest} for {args.arch}")
    for option in ("batch_size", "head_epochs", "finetune_epochs", "epochs", "max_steps"):
        value = getattr(args, option)
        if value is not None and value < 1:
            p.error(f"--{option.replace('_', '-')} must be at least 1")
    if args.patience < 0:
        p.error("--patience cannot be negative")
    return args


def machine() -> str:
    """Where a training ran, for its config and model card."""
    return f"{platform.machine()}, {os.cpu_count()} CPUs"


def fit_phase(model, name, train_ds, val_ds, epochs, lr, class_weight, args, *,
              start_competes: bool = True, progress: Callable[[int, int], None] | None = None) -> dict:
    """One phase of training with early stopping; the weights with the lowest validation loss win.

    The weights the phase starts from compete too (unless `start_competes` is false): a phase that
    never beats their validation loss (a fine-tune worse than the head phase's best) ends with them
    unchanged, and early stopping's patience also counts the epochs that do not beat it. The
    summary's `kept` says which won: "epoch N" or "start".

    `progress`, if given, is called after each epoch with (epochs done, `epochs`), so a caller that
    waits minutes (the website's retrain) can show how far the phase has gone.
    """
    model.compile(
        optimizer=keras.optimizers.Adam(lr),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=args.label_smoothing),
        metrics=["accuracy"],
    )
    start_loss = start_weights = None
    if start_competes:
        start_loss = float(model.evaluate(val_ds, verbose=0, return_dict=True)["loss"])
        start_weights = model.get_weights()
    with tempfile.TemporaryDirectory() as tmp:
        best = Path(tmp) / "best.weights.h5"
        callbacks = [
            keras.callbacks.ModelCheckpoint(best, monitor="val_loss", save_best_only=True,
                                            save_weights_only=True, initial_value_threshold=start_loss),
            keras.callbacks.EarlyStopping(monitor="val_loss", patience=args.patience, baseline=start_loss),
        ]
        if progress is not None:
            callbacks.append(keras.callbacks.LambdaCallback(
                on_epoch_end=lambda epoch, logs: progress(epoch + 1, epochs)))
        print(f"\n== {name}: up to {epochs} epochs, lr {lr}"
              + (f", starting at val_loss {start_loss:.4f}" if start_competes else ""), flush=True)
        started = time.perf_counter()
        history = model.fit(
            train_ds, validation_data=val_ds, epochs=epochs, class_weight=class_weight,
            callbacks=callbacks, steps_per_epoch=args.max_steps,
            verbose=1 if sys.stdout.isatty() else 2,
            shuffle=False,  # (the dataset shuffles itself, training.data; Keras warned it ignored True)
        )
        losses = history.history["val_loss"]
        improved = start_loss is None or min(losses) < start_loss  # the checkpoint holds the best epoch
        if improved:
            model.load_weights(best)
        else:
            model.set_weights(start_weights)
            print(f"no epoch beat val_loss {start_loss:.4f}: kept the weights the phase started from")
    best_epoch = int(np.argmin(losses)) + 1
    return {
        "name": name,
        "epochs_run": len(losses),
        "best_epoch": best_epoch,
        "start_val_loss": start_loss,
        "val_loss": float(min(losses)) if improved else start_loss,
        "kept": f"epoch {best_epoch}" if improved else "start",
        "seconds": round(time.perf_counter() - started, 1),
        "history": {k: [float(v) for v in vs] for k, vs in history.history.items()},
    }


def embed(model: keras.Model, pixels: np.ndarray, batch_size: int) -> np.ndarray:
    """Pooled backbone features of un-augmented photos, float16 (the head-refit cache)."""
    features = networks.embedder(model)
    out = [np.zeros((0, features.output.shape[-1]), dtype=np.float32)] + [
        np.asarray(features(pixels[i:i + batch_size].astype(np.float32), training=False))
        for i in tqdm(range(0, len(pixels), batch_size), desc="embed", unit="batch", disable=None)
    ]
    return np.concatenate(out).astype(np.float16)


def deterministic(seed: int) -> None:
    """Seed Python, NumPy and TensorFlow and make TensorFlow's ops deterministic: the same run, the
    same network (training, and a full retrain seeded as its base was)."""
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def train(args: argparse.Namespace) -> Path:
    started = time.perf_counter()
    deterministic(args.seed)

    data = datasets.discover(args.data)
    train_idx, val_idx = datasets.split(data, args.val_fraction, args.seed)
    with datasets.decoded(data, args.image_size) as pixels:  # a file in TMPDIR, not memory
        return fit_and_export(args, data, pixels, train_idx, val_idx, started)


def fit_and_export(args: argparse.Namespace, data: datasets.Dataset, pixels: np.ndarray,
                   train_idx: np.ndarray, val_idx: np.ndarray, started: float) -> Path:
    classes, k = data.classes, len(data.classes)
    onehot = np.eye(k, dtype=np.float32)[data.labels]
    train_ds = datasets.pipeline(pixels, onehot[train_idx], args.batch_size, indices=train_idx,
                                 training=True, seed=args.seed)
    val_ds = datasets.pipeline(pixels, onehot[val_idx], args.batch_size, indices=val_idx)
    weights = datasets.class_weights(data.labels[train_idx], k)
    print(f"{len(data.files)} photos, {k} classes, {len(train_idx)} train / {len(val_idx)} val; "
          f"class weights {', '.join(f'{c}={w:.2f}' for c, w in zip(classes, weights.values()))}")
    if note := data.skipped_note():
        print(note)

    model = networks.build(args.arch, k, args.image_size, args.dropout,
                           weights=args.weights if args.arch == "mobilenet_v2" else None)
    if args.arch == "mobilenet_v2" and args.finetune_from not in networks.backbone_layers(model):
        # Now, not when the head phase has trained for minutes and fine-tuning starts.
        blocks = [name for name in networks.backbone_layers(model) if name.endswith("_expand")]
        raise DataError(f"--finetune-from {args.finetune_from!r} is not a layer of the {args.arch} "
                        f"backbone; its blocks start at {', '.join(blocks)}")
    phases = []
    if args.arch == "mobilenet_v2":
        networks.freeze_backbone(model)
        phases.append(fit_phase(model, "head (frozen backbone)", train_ds, val_ds,
                                args.head_epochs, args.head_lr, weights, args))
        n = networks.unfreeze_top(model, args.finetune_from)
        phases.append(fit_phase(model, f"fine-tune ({n} layers from {args.finetune_from})",
                                train_ds, val_ds, args.finetune_epochs, args.finetune_lr,
                                weights, args))
    else:
        phases.append(fit_phase(model, "from scratch", train_ds, val_ds, args.epochs, args.lr,
                                weights, args))
    train_seconds = time.perf_counter() - started

    config = {
        "arch": args.arch,
        "image_size": args.image_size,
        "classes": classes,
        "parameters": int(model.count_params()),
        "data": str(args.data),
        "class_counts": data.counts(),
        "n_train": int(len(train_idx)),
        "n_val": int(len(val_idx)),
        "val_files": [data.files[i] for i in val_idx],
        "seed": args.seed,
        "options": {k_: v for k_, v in vars(args).items() if k_ not in ("data", "out", "argv")},
        "phases": [{k_: v for k_, v in p.items() if k_ != "history"} for p in phases],
        "train_seconds": round(train_seconds, 1),
        "machine": machine(),
        "versions": {"tensorflow": tf.__version__, "keras": keras.__version__},
        "command": "python -m training.train " + shlex.join(args.argv),
    }
    out = export(Path(args.out), model, config, phases, embed(model, pixels, args.batch_size), data,
                 validation=(pixels[val_idx], data.labels[val_idx]),
                 labels=[{"slug": c, "name": display_name(c)} for c in classes])
    print(f"exported {out} in {time.perf_counter() - started:.0f} s")
    return out


def export(out: Path, model: keras.Model, config: dict, phases: list[dict], embeddings: np.ndarray,
           data: datasets.Dataset, *, validation: tuple[np.ndarray, np.ndarray], labels: list[dict]) -> Path:
    """Write the model folder: model, LiteRT file, labels, config, metrics, plots, embeddings and
    card. The validation figures (`validation`: pixels, labels) are measured through the exported
    LiteRT file, which is what the worker serves. `labels` ({"slug", "name"} per class) are given,
    not made from the slugs: a retrain keeps the display names a person edited in its base."""
    out.mkdir(parents=True, exist_ok=True)
    # An uncompiled copy: the optimizer's state would more than double the file and serves no one.
    serving = networks.build(config["arch"], len(config["classes"]), config["image_size"],
                             config["options"]["dropout"], weights=None)
    serving.set_weights(model.get_weights())
    serving.save(out / MODEL_FILE)
    write_tflite(serving, out)
    (out / LABELS_FILE).write_text(json.dumps(labels, indent=2) + "\n")
    (out / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
    val_pixels, val_labels = validation
    val_probs = load(out).predict_pixels(val_pixels)
    print(report.text_report(val_labels, val_probs, config["classes"]))
    (out / "history.json").write_text(json.dumps(phases) + "\n")
    np.savez_compressed(out / EMBEDDINGS_FILE, embeddings=embeddings, labels=data.labels,
                        files=np.array(data.files), classes=np.array(config["classes"]))
    report.plot_history(phases, out / "training_curves.png")
    (out / METRICS_FILE).unlink(missing_ok=True)  # a new network: figures of an earlier one go
    report.record(out, config["classes"],
                  {"validation": report.metrics(val_labels, val_probs, config["classes"])})
    return out


def main(argv: list[str] | None = None) -> None:
    """The command line: a mistake in the data or options is one `error:` line (status 2, as
    argparse's own errors); anything else is a bug and keeps its traceback."""
    args = parse_args(argv)
    try:
        train(args)
    except (FileNotFoundError, DataError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
