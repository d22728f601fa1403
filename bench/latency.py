"""Model-only latency for one photo: the worker's runtime against plain Keras `model.predict(x)`.

    python -m bench.latency [--model DIR] [--photos tests/photos] [--rounds 200]

Batch 1, after warm-up, on the same model and the same decoded photos, the two alternating call
by call so that machine noise hits both alike. Decoding is timed apart. Ends with
`RESULT p50_ms=.. p99_ms=.. baseline_p50_ms=.. speedup=..` (speedup = baseline p50 / p50).
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


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.latency", description=__doc__.splitlines()[0])
    p.add_argument("--model", default=str(ROOT / "models" / "kue-mobilenetv2"))
    p.add_argument("--photos", default=str(ROOT / "tests" / "photos"), help="<class>/<file> photos")
    p.add_argument("--rounds", type=int, default=200)
    args = p.parse_args(argv)
    classifier = load(args.model)
    data = discover(args.photos)
    paths = [data.root / f for f in data.files]
    decode_ms = []
    for path in paths:
        started = time.perf_counter()
        load_image(path, classifier.image_size)
        decode_ms.append((time.perf_counter() - started) * 1000)
    batches = [load_image(path, classifier.image_size)[None] for path in paths]
    floats = [b.astype(np.float32) for b in batches]
    for i in range(10):  # warm-up both paths
        classifier.predict_pixels(batches[i % len(batches)])
        classifier.model.predict(floats[i % len(floats)], verbose=0)
    ours, baseline = [], []
    for i in range(args.rounds):
        started = time.perf_counter()
        classifier.predict_pixels(batches[i % len(batches)])
        ours.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        classifier.model.predict(floats[i % len(floats)], verbose=0)
        baseline.append((time.perf_counter() - started) * 1000)
    p50, p99 = np.percentile(ours, 50), np.percentile(ours, 99)
    base50, base99 = np.percentile(baseline, 50), np.percentile(baseline, 99)
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
