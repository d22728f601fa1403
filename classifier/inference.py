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
    version_id: int  # the version that actually classified
    heatmap: np.ndarray | None  # where it looked for `label` (0..1 on a coarse grid), if it can say


class ModelUnavailable(RuntimeError):
    """No model can be served: the active version's files do not load and none was loaded before."""


_lock = threading.Lock()
_loaded: tuple[int, runtime.Classifier] | None = None


def classifier_for(version: ModelVersion) -> tuple[int, runtime.Classifier]:
    """(version id, network) to classify with: this process's copy of `version`, loaded only when
    the version changes. If its files do not load, the process keeps serving the version it had
    (the id says which), and says so in the log; with nothing loaded before, ModelUnavailable."""
    global _loaded
    with _lock:
        if _loaded is None or _loaded[0] != version.pk:
            started = time.perf_counter()
            try:
                _loaded = (version.pk, runtime.check(version.folder))
            except ValueError as exc:
                if _loaded is None:
                    raise ModelUnavailable(f"model version {version.name} does not load: {exc}") from exc
                log.error("model version %s does not load (%s); still serving version id %s",
                          version.name, exc, _loaded[0])
                return _loaded
            log.info("loaded model version %s from %s in %.1f s", version.name, version.folder,
                     time.perf_counter() - started)
        return _loaded


def active_version() -> ModelVersion:
    """The version to serve, re-read on every call so an activation takes effect at once."""
    return ModelVersion.objects.get(is_active=True)


def warm_up() -> None:
    """Load the active model and run it once (`runtime.check`), so the first photo does not pay for it."""
    try:
        classifier_for(active_version())
    except ModelVersion.DoesNotExist:
        log.warning("no active model version yet; the first task will load it")
    except ModelUnavailable as exc:
        log.error("%s; photos will fail with this reason until a working version is active", exc)


def classify(version: ModelVersion, source: str | BinaryIO) -> Result:
    """Classify with `version`, or with the version this process still serves if it does not load."""
    version_id, model = classifier_for(version)
    started = time.perf_counter()
    probs, heatmap = model.classify_with_heatmap(source)
    elapsed = (time.perf_counter() - started) * 1000
    best = int(probs.argmax())
    return Result(
        probabilities={slug: round(float(p), 6) for slug, p in zip(model.slugs, probs)},
        label=model.slugs[best],
        confidence=float(probs[best]),
        inference_ms=elapsed,
        version_id=version_id,
        heatmap=heatmap,
    )
