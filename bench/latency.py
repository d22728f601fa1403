"""Model-only latency for one photo: the worker's runtime against plain Keras `model.predict(x)`.

    python -m bench.latency [--model DIR] [--photos ../shared/data/kue-indonesia/test] [--rounds 500]

Batch 1, after warm-up, on the same model and the same decoded photos. "The worker's runtime" is
the worker's own call after decoding (`Classifier.pixels_with_heatmap`: the LiteRT file, the
head and the heat map). The two alternate call by call, in a seeded random order each round, so
that machine noise hits both alike. Decoding (Pillow, the photos as users sent them) is timed
apart. Ends with `RESULT p50_ms=.. p99_ms=.. baseline_p50_ms=.. speedup=..` (speedup = baseline
p50 / p50).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from training.data import discover  # noqa: E402
from training.preprocess import load_image  # noqa: E402
from training.runtime import load  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PHOTOS = ROOT.parent / "shared" / "data" / "kue-indonesia" / "test"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.latency", description=__doc__.splitlines()[0])
    p.add_argument("--model", default=str(ROOT / "models" / "kue-mobilenetv2"))
    photos = DEFAULT_PHOTOS if DEFAULT_PHOTOS.is_dir() else ROOT / "tests" / "photos"
    p.add_argument("--photos", default=str(photos),
                   help="<class>/<file> photos (default: the test split, else the samples under tests/)")
    p.add_argument("--rounds", type=int, default=500)
    args = p.parse_args(argv)
    classifier = load(args.model)
    data = discover(args.photos)
    paths = [data.root / f for f in data.files]
    decode_ms, photos = [], []
    for path in paths:  # each photo decoded once: timed, and kept for both paths
        started = time.perf_counter()
        photos.append(load_image(path, classifier.image_size))
        decode_ms.append((time.perf_counter() - started) * 1000)
    floats = [photo[None].astype(np.float32) for photo in photos]

    def worker(i: int) -> None:
        classifier.pixels_with_heatmap(photos[i % len(photos)])

    def keras_predict(i: int) -> None:
        classifier.model.predict(floats[i % len(floats)], verbose=0)

    for i in range(10):  # warm-up both paths
        worker(i)
        keras_predict(i)
    ms: dict = {worker: [], keras_predict: []}
    order = np.random.default_rng(0)
    for i in range(args.rounds):
        for path in [(worker, keras_predict), (keras_predict, worker)][order.integers(2)]:
            started = time.perf_counter()
            path(i)
            ms[path].append((time.perf_counter() - started) * 1000)
    ours, baseline = ms[worker], ms[keras_predict]
    p50, p99 = np.percentile(ours, 50), np.percentile(ours, 99)
    base50, base99 = np.percentile(baseline, 50), np.percentile(baseline, 99)
    print(f"{len(paths)} photos from {args.photos}, {args.rounds} calls of each path\n")
    print(f"{'path':<34} {'p50 ms':>8} {'p99 ms':>8}")
    runtime = "LiteRT + XNNPACK" if classifier.uses_litert else "compiled tf.function"
    print(f"{'runtime (' + runtime + ')':<34} {p50:>8.2f} {p99:>8.2f}")
    print(f"{'plain Keras model.predict(x)':<34} {base50:>8.2f} {base99:>8.2f}")
    print(f"{'decode + resize (Pillow), apart':<34} {np.percentile(decode_ms, 50):>8.2f} "
          f"{np.percentile(decode_ms, 99):>8.2f}")
    print(f"\nRESULT p50_ms={p50:.2f} p99_ms={p99:.2f} baseline_p50_ms={base50:.2f} "
          f"speedup={base50 / p50:.2f}")


if __name__ == "__main__":
    main()
