"""The worker's runtime: the active model version, loaded once per process and swapped on activation."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np

from classifier import selectors
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
_unavailable = False  # this process had no model to serve (ModelUnavailable) since it last said so


def classifier_for(version_id: int) -> tuple[int, runtime.Classifier]:
    """(version id, network) to classify with: this process's copy of version `version_id`, loaded
    only when the version changes (its row is read then, not on every photo). If its files do not
    load, the process keeps serving the version it had (the id says which), and says so in the log;
    with nothing loaded before, ModelUnavailable."""
    global _loaded, _unavailable
    with _lock:
        if _loaded is None or _loaded[0] != version_id:
            started = time.perf_counter()
            version = ModelVersion.objects.filter(pk=version_id).first()
            try:
                if version is None:
                    raise ValueError("it is no longer registered")
                _loaded = (version_id, runtime.check(version.folder, version.fingerprint))
            except ValueError as exc:
                name = version.name if version else f"id {version_id}"
                if _loaded is None:
                    _unavailable = True
                    raise ModelUnavailable(f"model version {name} does not load: {exc}") from exc
                log.error("model version %s does not load (%s); still serving version id %s",
                          name, exc, _loaded[0])
                return _loaded
            log.info("loaded model version %s from %s in %.1f s", version.name, version.folder,
                     time.perf_counter() - started)
        return _loaded


def served_again() -> bool:
    """Whether this process serves a model after it had none to serve (ModelUnavailable): its files
    mended in place, say. True once, then False until that happens again."""
    global _unavailable
    with _lock:
        again, _unavailable = _unavailable and _loaded is not None, _unavailable and _loaded is None
    return again


def warm_up() -> None:
    """Load the active model and run it once (`runtime.check`), so the first photo does not pay for it."""
    version = selectors.active_version()
    if version is None:
        log.warning("no active model version yet; the first task will load it")
        return
    try:
        classifier_for(version.pk)
    except ModelUnavailable as exc:
        log.error("%s; photos will fail with this reason until a working version is active", exc)


def classify(version_id: int, source: str | BinaryIO) -> Result:
    """Classify with version `version_id`, or with the version this process still serves if it does
    not load."""
    served_id, model = classifier_for(version_id)
    started = time.perf_counter()
    probs, heatmap = model.classify_with_heatmap(source)
    elapsed = (time.perf_counter() - started) * 1000
    best = int(probs.argmax())
    probabilities = {slug: round(float(p), 6) for slug, p in zip(model.slugs, probs)}
    return Result(
        probabilities=probabilities,
        label=model.slugs[best],
        confidence=probabilities[model.slugs[best]],  # (as its top-k shows it)
        inference_ms=elapsed,
        version_id=served_id,
        heatmap=heatmap,
    )
