"""The worker's runtime: the active model version, loaded once per process and swapped on activation."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np

from classifier.models import ModelVersion
from training import runtime

log = logging.getLogger(__name__)


@dataclass
class Result:
    probabilities: dict[str, float]
    label: str
    confidence: float
    inference_ms: float


_lock = threading.Lock()
_loaded: tuple[int, runtime.Classifier] | None = None


def classifier_for(version: ModelVersion) -> runtime.Classifier:
    """This process's copy of `version`'s network, loading it only when the version changes."""
    global _loaded
    with _lock:
        if _loaded is None or _loaded[0] != version.pk:
            started = time.perf_counter()
            _loaded = (version.pk, runtime.load(version.folder))
            log.info("loaded model version %s from %s in %.1f s", version.name, version.folder,
                     time.perf_counter() - started)
        return _loaded[1]


def active_version() -> ModelVersion:
    """The version to serve, re-read on every call so an activation takes effect at once."""
    return ModelVersion.objects.get(is_active=True)


def warm_up() -> None:
    """Load the active model and run it once, so the first photo does not pay for it."""
    try:
        version = active_version()
    except ModelVersion.DoesNotExist:
        log.warning("no active model version yet; the first task will load it")
        return
    model = classifier_for(version)
    model.predict_pixels(np.zeros((1, model.image_size, model.image_size, 3), dtype=np.uint8))


def classify(version: ModelVersion, source: str | BinaryIO) -> Result:
    model = classifier_for(version)
    started = time.perf_counter()
    probs = model.classify(source)
    elapsed = (time.perf_counter() - started) * 1000
    best = int(probs.argmax())
    return Result(
        probabilities={slug: round(float(p), 6) for slug, p in zip(model.slugs, probs)},
        label=model.slugs[best],
        confidence=float(probs[best]),
        inference_ms=elapsed,
    )
