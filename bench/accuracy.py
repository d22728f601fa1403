"""Accuracy of the model the product serves, through the worker's preprocessing and runtime.

    python -m bench.accuracy [--data ../shared/data/kue-indonesia/test] [--model DIR] [--baseline DIR]

The model is the active version of the site's database (the settings read DATABASE_URL as the
site does) unless `--model` names a folder; a database that cannot be read or has no active
version falls back to the shipped model, and the first line says which was measured.
Prints a per-class table for each model, then how well its confidence matches how often it is
right (per confidence bin, the expected calibration error, and what "Not sure" below the site's
UNSURE_BELOW marks), and ends with one line
`RESULT top1=<float> macro_f1=<float> n=<int> ece=<float>` for the served model (plus `baseline_*` keys
when a baseline folder, e.g. a simple-cnn trained by the same pipeline, is given).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from training.evaluate import evaluate, per_class_table  # noqa: E402
from training.report import calibration  # noqa: E402
from training.runtime import load  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "kue-indonesia" / "test"
DEFAULT_MODEL = ROOT / "models" / "kue-mobilenetv2"


def measure(folder: str | Path, data: str | Path) -> dict:
    started = time.perf_counter()
    classifier = load(folder)
    m, labels, probs = evaluate(classifier, data)
    print(f"\n{Path(folder).name} ({time.perf_counter() - started:.1f} s)")
    print(per_class_table(m))
    m["calibration"] = calibration(labels, probs, unsure_below=unsure_below())
    print(calibration_table(m["calibration"]))
    return m


def unsure_below() -> float:
    """The site's UNSURE_BELOW: below it a result is shown as "Not sure" (the settings read it from the
    environment as the site does)."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cakesite.settings")
    from django.conf import settings

    return settings.UNSURE_BELOW


def calibration_table(c: dict) -> str:
    rows = ["confidence     n  mean  right"]
    rows += [f"{b['from']:.1f} to {b['to']:.1f} {b['n']:>4} {b['confidence']:>5.2f} {b['accuracy']:>6.2f}"
             for b in c["bins"]]
    rows.append(f"expected calibration error {c['ece']:.4f}; \"Not sure\" below {c['unsure_below']:.2f} "
                f"marks {c['unsure']} results, {c['unsure_wrong']} of the {c['wrong']} wrong ones; "
                f"the others are right {c['sure_accuracy']:.1%} of the time")
    return "\n".join(rows)


def served_model() -> tuple[Path, str]:
    """The active version's folder in the site's database, or the shipped model; and why."""
    try:
        import django

        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cakesite.settings")
        django.setup()
        from classifier import selectors

        version = selectors.active_version()
    except Exception as exc:  # no database, not migrated, or Django not set up: say so, go on
        return DEFAULT_MODEL, f"the shipped model (the site's database could not be read: {exc})"
    if version is None:
        return DEFAULT_MODEL, "the shipped model (the site's database has no active version)"
    return version.folder, f"the active version {version.name!r}"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.accuracy", description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(DEFAULT_DATA), help="<class>/<file> folder")
    p.add_argument("--model", help="a model folder (default: the active version)")
    p.add_argument("--baseline", help="a second model folder to compare in the same run")
    args = p.parse_args(argv)
    model, which = (Path(args.model), "the folder given") if args.model else served_model()
    print(f"measuring {which}: {model}")
    served = measure(model, args.data)
    result = {"top1": f"{served['top1']:.4f}", "macro_f1": f"{served['macro_f1']:.4f}",
              "n": served["n"], "ece": f"{served['calibration']['ece']:.4f}"}
    if args.baseline:
        base = measure(args.baseline, args.data)
        result |= {"baseline_top1": f"{base['top1']:.4f}",
                   "baseline_macro_f1": f"{base['macro_f1']:.4f}"}
    print("\nRESULT " + " ".join(f"{k}={v}" for k, v in result.items()))


if __name__ == "__main__":
    main()
