"""Metrics (scikit-learn), plots (matplotlib) and the model card of an exported model folder."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, never a window
matplotlib.rcParams["text.parse_math"] = False  # a class named "$_$" is text, not a formula

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.calibration import calibration_curve  # noqa: E402
from sklearn.metrics import (  # noqa: E402
    accuracy_score,
    classification_report,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
)

from training.runtime import CONFIG_FILE, LABELS_FILE, METRICS_FILE  # noqa: E402


def metrics(y_true: np.ndarray, probs: np.ndarray, classes: list[str]) -> dict:
    """Top-1, macro F1, per-class precision/recall/F1 and the confusion matrix, JSON-ready.

    Every class gets a row, but macro F1 averages over the classes with photos in `y_true` only: a
    class the data lacks has nothing to get right (a photo taken for it still costs its true class).
    """
    labels = list(range(len(classes)))
    y_pred = probs.argmax(axis=1)
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=0
    )
    top3 = np.argsort(-probs, axis=1)[:, :3]
    present = np.unique(y_true)
    return {
        "n": int(len(y_true)),
        "top1": float(accuracy_score(y_true, y_pred)),
        "top3": float(np.mean([t in row for t, row in zip(y_true, top3)])),
        "macro_f1": float(f1_score(y_true, y_pred, labels=present, average="macro", zero_division=0)),
        "per_class": {
            name: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, name in enumerate(classes)
        },
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
    }


def calibration(y_true: np.ndarray, probs: np.ndarray, *, bins: int = 10, unsure_below: float = 0.6) -> dict:
    """How far the confidence shown (the top probability) is from how often the top label is right:
    per confidence bin (of `bins` equal ones, those with photos), and the expected calibration error
    (the bins' gaps weighted by their photos). And what "Not sure" below `unsure_below` does: how
    many results it marks, how many of the wrong ones among them, how often the others are right."""
    confidence, right = probs.max(axis=1), probs.argmax(axis=1) == y_true
    accuracy, mean_confidence = calibration_curve(right, confidence, n_bins=bins, strategy="uniform")
    edges = np.linspace(0.0, 1.0, bins + 1)
    counts = np.bincount(np.searchsorted(edges[1:-1], confidence), minlength=bins)  # as calibration_curve
    shown = np.flatnonzero(counts)  # (it leaves out the empty bins)
    unsure = confidence < unsure_below
    return {
        "ece": float(np.sum(counts[shown] / len(right) * np.abs(accuracy - mean_confidence))),
        "bins": [{"from": float(edges[i]), "to": float(edges[i + 1]), "n": int(counts[i]),
                  "confidence": float(c), "accuracy": float(a)}
                 for i, c, a in zip(shown, mean_confidence, accuracy)],
        "unsure_below": unsure_below, "unsure": int(unsure.sum()),
        "unsure_wrong": int((unsure & ~right).sum()), "wrong": int((~right).sum()),
        "sure_accuracy": float(right[~unsure].mean()) if (~unsure).any() else float("nan"),
    }


def text_report(y_true: np.ndarray, probs: np.ndarray, classes: list[str]) -> str:
    """scikit-learn's per-class table, on the classes with photos in `y_true` (as `metrics`)."""
    present = np.unique(y_true)
    return classification_report(
        y_true, probs.argmax(axis=1), labels=present, target_names=[classes[i] for i in present],
        digits=3, zero_division=0,
    )


MAX_CLASSES_NAMED, MAX_CLASSES_COUNTED = 60, 30  # (the figures are in metrics.json, whatever the plot)


def plot_confusion(matrix: list[list[int]], classes: list[str], path: Path, title: str) -> None:
    from matplotlib.ticker import MaxNLocator

    cm = np.asarray(matrix)
    # At most 40 inches (4,000 pixels) whatever the classes (a thousand would take a figure of 70,000
    # pixels, and more memory than a machine has); names and counts only while they can be read.
    size = min(max(4.0, 0.7 * len(classes) + 2), 40.0)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    image = ax.imshow(cm, cmap="Blues")
    # Large type: the staff page shows the picture at about half its size.
    if len(classes) <= MAX_CLASSES_NAMED:
        ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right", fontsize=13)
        ax.set_yticks(range(len(classes)), classes, fontsize=13)
    ax.set_xlabel("the model said", fontsize=13)
    ax.set_ylabel("it was", fontsize=13)  # (the words of the staff page's table)
    ax.set_title(title, fontsize=14)
    if len(classes) <= MAX_CLASSES_COUNTED:
        for (i, j), value in np.ndenumerate(cm):
            ax.text(j, i, str(value), ha="center", va="center", fontsize=13,
                    color="white" if value > cm.max() / 2 else "black")
    fig.colorbar(image, ax=ax, fraction=0.046, ticks=MaxNLocator(integer=True))  # whole photos
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_history(phases: list[dict], path: Path) -> None:
    """Loss and accuracy per epoch, training vs validation, phases joined end to end."""
    joined: dict[str, list[float]] = {}
    boundaries = []
    for phase in phases:
        for key, values in phase["history"].items():
            joined.setdefault(key, []).extend(values)
        boundaries.append(len(joined.get("loss", [])))
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, metric in zip(axes, ("loss", "accuracy")):
        for key, style in ((metric, "-"), (f"val_{metric}", "--")):
            if key in joined:
                epochs = range(1, len(joined[key]) + 1)
                ax.plot(epochs, joined[key], style, label=key)
        for b in boundaries[:-1]:
            ax.axvline(b + 0.5, color="grey", linewidth=0.8)
        ax.set_xlabel("epoch")
        ax.set_title(metric)
        ax.legend()
    fig.suptitle(" | ".join(p["name"] for p in phases))
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def display_names(folder: Path, classes: list[str]) -> list[str]:
    """The classes by the names the site shows ("Kue Dadar Gulung"), from the folder's labels.json;
    a class it does not name keeps its slug."""
    labels = folder / LABELS_FILE
    items = json.loads(labels.read_text()) if labels.is_file() else []
    names = {item["slug"]: item["name"] for item in items}
    return [names.get(slug, slug) for slug in classes]


def record(folder: Path, classes: list[str], results: dict[str, dict], *, card: bool = True) -> None:
    """Add `results` (split name -> `metrics(...)`) to the folder's metrics.json, draw each split's
    confusion matrix beside it, and (with `card`) renew MODEL_CARD.md from the figures."""
    metrics_file = folder / METRICS_FILE
    recorded = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
    metrics_file.write_text(json.dumps(recorded | results, indent=2) + "\n")
    shown = display_names(folder, classes)
    for name, m in results.items():
        plot_confusion(m["confusion_matrix"], shown, folder / f"confusion_{name}.png",
                       f"{folder.name}: {name}")
    if card:
        (folder / "MODEL_CARD.md").write_text(model_card(folder))


def model_card(folder: Path) -> str:
    """MODEL_CARD.md from the folder's config.json and metrics.json, so figures are never retyped."""
    config = json.loads((folder / CONFIG_FILE).read_text())
    results = json.loads((folder / METRICS_FILE).read_text())
    lines = [
        f"# Model card: {folder.name}",
        "",
        f"- Architecture: `{config['arch']}` at {config['image_size']} px, "
        f"{config['parameters']:,} parameters"
        + (" (ImageNet-pretrained MobileNetV2 backbone, Apache-2.0 weights, fine-tuned)"
           if config["arch"] == "mobilenet_v2" else " (trained from scratch)")
        + ".",
        f"- Classes ({len(config['classes'])}): " + ", ".join(f"`{c}`" for c in config["classes"]),
        f"- Training data: `{config['data']}`, {config['n_train']} photos for training and "
        + (f"{config['n_val']} for validation (stratified, seed {config['seed']}); "
           if config.get("retrain", {}).get("mode") != "fast"  # (a head refit uses no validation photos)
           else f"none for validation (its base's {config['n_val']} left out, though counted per class); ")
        + f"per class: {config['class_counts']}.",
        f"- Trained in {config['train_seconds']:.0f} s on {config['machine']}.",
    ]
    if "retrain" in config:  # the base's command would rebuild the base, not this folder
        retrain = config["retrain"]
        lines.append(f"- Retrained ({retrain['mode']}) from `{retrain['base']}` with "
                     f"{retrain['extra_photos']} extra photos.")
    elif "command" in config:
        lines.append(f"- Reproduce: `{config['command']}`")
    lines += [
        "",
        "## Figures",
        "",
        "| split | n | top-1 | top-3 | macro F1 | lowest recall |",
        "| --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for name, m in results.items():
        measured = [kv for kv in m["per_class"].items() if kv[1]["support"] > 0]
        worst = min(measured, key=lambda kv: kv[1]["recall"])
        lines.append(
            f"| {name} | {m['n']} | {m['top1']:.3f} | {m['top3']:.3f} | {m['macro_f1']:.3f} | "
            f"{worst[0]} {worst[1]['recall']:.2f} |"
        )
    for name, m in results.items():
        lines += ["", f"### Per class, {name}", "", "| class | precision | recall | F1 | n |",
                  "| --- | ---: | ---: | ---: | ---: |"]
        for cls, v in m["per_class"].items():
            lines.append(f"| {cls} | {v['precision']:.3f} | {v['recall']:.3f} | {v['f1']:.3f} | "
                         f"{v['support']} |")
    notes = folder / "NOTES.md"
    if notes.is_file():
        lines += ["", notes.read_text().strip()]
    return "\n".join(lines) + "\n"
