"""Evaluate an exported model folder on a `<class>/<file>` folder, through the serving runtime.

    python -m training.evaluate --model models/NAME --data DIR [--name test --save]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from tqdm import tqdm  # noqa: E402

from training import report  # noqa: E402
from training.data import DataError, discover, raise_undecodable  # noqa: E402
from training.preprocess import ImageDecodeError  # noqa: E402
from training.runtime import METRICS_FILE, Classifier, load  # noqa: E402


def evaluate(classifier: Classifier, data_dir: str | Path) -> tuple[dict, np.ndarray, np.ndarray]:
    """Classify every photo one at a time, exactly as the worker does; return metrics and raw data.

    Photos that cannot be decoded are not skipped: one ImageDecodeError lists them all.
    """
    data = discover(data_dir, classes=classifier.slugs)
    probs, bad = [], []
    for f in tqdm(data.files, desc="classify", unit="img", disable=None):
        try:
            probs.append(classifier.classify(data.root / f))
        except ImageDecodeError as exc:
            bad.append(f"{data.root / f}: {exc}")
    raise_undecodable(bad)
    probs = np.stack(probs)
    metrics = report.metrics(data.labels, probs, classifier.slugs)
    metrics["digest"] = data.digest()  # which photos: two versions' figures compare only on the same
    return metrics, data.labels, probs


def per_class_table(m: dict) -> str:
    rows = [f"{'class':<20} {'n':>4} {'precision':>9} {'recall':>7} {'f1':>6}"]
    for cls, v in m["per_class"].items():
        rows.append(f"{cls:<20} {v['support']:>4} {v['precision']:>9.3f} {v['recall']:>7.3f} "
                    f"{v['f1']:>6.3f}")
    rows.append(f"{'all':<20} {m['n']:>4} top1={m['top1']:.4f} macro_f1={m['macro_f1']:.4f} "
                f"top3={m['top3']:.4f}")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m training.evaluate", description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="exported model folder")
    p.add_argument("--data", required=True, help="<class>/<image files> folder")
    p.add_argument("--name", default="test", help="name of this evaluation in metrics.json")
    p.add_argument("--save", action="store_true", help="write metrics.json, plot and model card")
    args = p.parse_args(argv)
    try:
        classifier = load(args.model)
        m, y_true, probs = evaluate(classifier, args.data)
    except (FileNotFoundError, DataError) as exc:  # a mistake in the folders given, not a bug
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    print(report.text_report(y_true, probs, classifier.slugs))
    print(per_class_table(m))
    if note := discover(args.data, classes=classifier.slugs).skipped_note():
        print(note)
    if args.save:
        report.record(classifier.folder, classifier.slugs, {args.name: m})
        print(f"saved '{args.name}' metrics to {classifier.folder / METRICS_FILE}")


if __name__ == "__main__":
    main()
