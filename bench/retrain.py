"""Wall time of the two retraining modes on this machine, on the shipped model.

    python -m bench.retrain [--data ../shared/data/kue-indonesia/train] [--extra tests/photos]

The fast mode refits the head on the cached embeddings plus the extra photos; the full mode
fine-tunes the top blocks on the training folder plus the extra photos (FULL epochs, early
stopping). Both as a training run does them (`training.retrain`), timed end to end including
decoding the extra photos, model loading and export. (The default extra photos, the samples under
tests/, mostly come from the shipped model's validation part, so in the full mode they are both
trained on and used for early stopping: this times the work, it measures no accuracy.) Ends with
`RESULT fast_s=<f> full_s=<f>`.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from training.data import discover, load_pixels
from training.retrain import finetune, refit_head
from training.runtime import CONFIG_FILE, load

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.retrain", description=__doc__.splitlines()[0])
    p.add_argument("--model", default=str(ROOT / "models" / "kue-mobilenetv2"))
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "kue-indonesia" / "train"))
    p.add_argument("--extra", default=str(ROOT / "tests" / "photos"), help="<class>/<file> user photos")
    p.add_argument("--epochs", type=int, default=8, help="full mode epochs (as FULL_RETRAIN_EPOCHS)")
    args = p.parse_args(argv)
    extra = discover(args.extra, classes=load(args.model).slugs)
    size = json.loads((Path(args.model) / CONFIG_FILE).read_text())["image_size"]
    with tempfile.TemporaryDirectory() as tmp:
        # Each mode's clock includes decoding the extra photos, as a training run does it.
        started = time.perf_counter()
        refit_head(args.model, Path(tmp) / "fast", load_pixels(extra, size), extra.labels)
        fast = time.perf_counter() - started
        started = time.perf_counter()
        summary = finetune(args.model, Path(tmp) / "full", args.data, load_pixels(extra, size), extra.labels,
                           epochs=args.epochs)
        full = time.perf_counter() - started
    print(f"\n{'mode':<6} {'seconds':>8}  photos")
    print(f"{'fast':<6} {fast:>8.1f}  {len(np.load(Path(args.model) / 'embeddings.npz')['labels'])} cached + "
          f"{len(extra.labels)} extra")
    print(f"{'full':<6} {full:>8.1f}  {summary['base_photos']} base + {len(extra.labels)} extra, "
          f"{summary['epochs_run']} epochs")
    print(f"\nRESULT fast_s={fast:.1f} full_s={full:.1f}")


if __name__ == "__main__":
    main()
