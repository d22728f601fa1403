"""A trained model folder, loaded for inference: the code path of the worker, evaluation and benches."""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import numpy as np

from training.preprocess import load_image

if TYPE_CHECKING:
    import keras

MODEL_FILE = "model.keras"
TFLITE_FILE = "model.tflite"  # the network up to its feature map, for LiteRT (XNNPACK): what the worker runs
LABELS_FILE = "labels.json"
CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.json"
EMBEDDINGS_FILE = "embeddings.npz"
HEAD_FILE = "head.npz"  # the softmax layer's weights: the probabilities and heat maps from the feature map


@dataclass(frozen=True)
class Label:
    slug: str
    name: str


def display_name(slug: str) -> str:
    """`kue_putri_salju` -> "Kue Putri Salju"; a human can override it in labels.json.

    Words are split on spaces, `_` and `-`; each gets a capital first letter and keeps the rest as
    it was written ("BMW_M3" -> "BMW M3", not "Bmw M3").
    """
    words = " ".join(part[0].upper() + part[1:] for part in re.split(r"[\s_-]+", slug) if part)
    return words or slug  # ("_" has no words: it is called as it is)


@dataclass
class Classifier:
    """A model folder in memory: its labels, the input size it was trained at, and the network.

    Serving runs the folder's LiteRT file (then the head from head.npz) when there is one, so a
    worker never loads TensorFlow; the Keras network (`model`, for retraining and embeddings)
    loads on first use.
    """

    folder: Path
    labels: list[Label]
    image_size: int

    def __post_init__(self) -> None:
        self._lock = threading.Lock()  # a LiteRT interpreter serves one call at a time
        self._keras = None
        self._forward = None
        self._interpreter = None
        if (self.folder / TFLITE_FILE).is_file():
            from ai_edge_litert.interpreter import Interpreter

            self._interpreter = Interpreter(model_path=str(self.folder / TFLITE_FILE),
                                            num_threads=int(os.environ.get("INFERENCE_THREADS", 2)))
            self._interpreter.allocate_tensors()
            self._input = self._interpreter.get_input_details()[0]["index"]
            outputs = {len(d["shape"]): d["index"] for d in self._interpreter.get_output_details()}
            self._feature_map = outputs.get(4)  # (1, h, w, channels): what the head pools
            self._output = outputs.get(2)  # (1, classes): probabilities, in files written before 11-23
            head = self.folder / HEAD_FILE
            self._head = dict(np.load(head)) if head.is_file() and self._feature_map is not None else None
            if self._head is None and self._output is None:
                raise ValueError(f"{TFLITE_FILE} gives no probabilities and {HEAD_FILE} is missing")

    @property
    def model(self) -> keras.Model:
        if self._keras is None:
            os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
            import keras

            self._keras = keras.saving.load_model(self.folder / MODEL_FILE, compile=False)
        return self._keras

    @property
    def uses_litert(self) -> bool:
        return self._interpreter is not None

    @property
    def slugs(self) -> list[str]:
        return [label.slug for label in self.labels]

    def predict_pixels(self, pixels: np.ndarray) -> np.ndarray:
        """Class probabilities (N, classes) for a uint8 batch made by `preprocess.load_image`."""
        batch = np.asarray(pixels, dtype=np.float32)
        if self._interpreter is None:
            return np.asarray(self.compiled()(batch), dtype=np.float64)
        # The LiteRT graph takes one photo at a time: the worker's case.
        return np.asarray([self._invoke(row)[0] for row in batch], dtype=np.float64)

    @property
    def head_outside_litert(self) -> bool:
        """True when head.npz turns the LiteRT file's feature map into probabilities (any softmax
        output the file also has, as files written before 11-23 do, goes unused): a head refit
        then keeps the file as it is."""
        return self._head is not None

    def _invoke(self, row: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """One LiteRT pass over one photo: the probabilities, and the feature map when the file has it.

        The head is global average pooling, then one dense softmax layer (dropout is off when
        serving), so it is a few thousand multiplications done here in NumPy.
        """
        with self._lock:
            self._interpreter.set_tensor(self._input, row[None])
            self._interpreter.invoke()
            features = None
            if self._feature_map is not None:
                features = self._interpreter.get_tensor(self._feature_map)[0].astype(np.float64)
            if self._head is None:
                return self._interpreter.get_tensor(self._output)[0].astype(np.float64), features
        logits = features.mean(axis=(0, 1)) @ self._head["kernel"] + self._head["bias"]
        exp = np.exp(logits - logits.max())
        return exp / exp.sum(), features

    def classify_with_heatmap(self, source: str | Path | BinaryIO) -> tuple[np.ndarray, np.ndarray | None]:
        """Probabilities and, when the folder allows it, a heat map (h x w, 0..1) of where the network
        looked for the most probable class; from the same single forward pass.

        The head is global average pooling then one dense softmax layer, so Grad-CAM for class c
        (gradients of the class score, averaged over the map, as channel weights) is exactly the
        class activation map sum_k W[k, c] * A_k up to a positive factor: no gradients needed.
        """
        return self.pixels_with_heatmap(load_image(source, self.image_size))

    def pixels_with_heatmap(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """`classify_with_heatmap` of one photo already decoded by `preprocess.load_image`: the
        model's own part of the worker's call (what `bench.latency` times)."""
        pixels = np.asarray(pixels, dtype=np.float32)
        if self._interpreter is None or self._head is None:
            return self.predict_pixels(pixels[None])[0], None
        probs, features = self._invoke(pixels)
        cam = np.maximum(features @ self._head["kernel"][:, int(probs.argmax())], 0.0)
        peak = cam.max()
        return probs, (cam / peak if peak > 0 else cam)

    def compiled(self):
        """Without a LiteRT file: one compiled graph with a fixed signature (an eager Keras call
        costs ~8x more per photo)."""
        if self._forward is None:
            import tensorflow as tf

            model = self.model
            self._forward = tf.function(
                lambda x: model(x, training=False), autograph=False, reduce_retracing=True,
                input_signature=[tf.TensorSpec((None, self.image_size, self.image_size, 3), tf.float32)],
            )
        return self._forward

    def classify(self, source: str | Path | BinaryIO) -> np.ndarray:
        """Class probabilities for one photo (a path or an open binary file)."""
        return self.predict_pixels(load_image(source, self.image_size)[None])[0]


def read_json(folder: Path, name: str) -> dict | list:
    return json.loads((folder / name).read_text())


def load(folder: str | Path) -> Classifier:
    """Load an exported model folder (see `train.export`): labels, input size, serving network."""
    folder = Path(folder)
    if not (folder / MODEL_FILE).is_file():
        raise FileNotFoundError(f"no {MODEL_FILE} in {folder}")
    labels = [Label(**item) for item in read_json(folder, LABELS_FILE)]
    image_size = int(read_json(folder, CONFIG_FILE)["image_size"])
    return Classifier(folder=folder, labels=labels, image_size=image_size)


# What a version is: the files that decide its answers, and those a head refit starts from.
FINGERPRINTED = (LABELS_FILE, CONFIG_FILE, MODEL_FILE, TFLITE_FILE, HEAD_FILE, EMBEDDINGS_FILE)


def fingerprint(folder: str | Path) -> str:
    """SHA-256 over the folder's FINGERPRINTED files that exist, each with its name: recorded when a
    version is registered, so that files changed afterwards (a new export into the same folder) are
    not served under its name and figures."""
    digest = hashlib.sha256()
    for name in FINGERPRINTED:
        path = Path(folder) / name
        if path.is_file():
            digest.update(f"{name}\0{path.stat().st_size}\0".encode())
            with path.open("rb") as file:
                while chunk := file.read(1 << 20):
                    digest.update(chunk)
    return digest.hexdigest()


def check(folder: str | Path, expected_fingerprint: str = "") -> Classifier:
    """Load a folder and classify one blank photo with it; raises ValueError saying what is wrong
    (missing or corrupt files, outputs that do not match the labels, or files other than those
    `expected_fingerprint` was taken of: looked at first, a hash being much cheaper than a load that
    falls back to Keras; a worker asks again at each photo while its files are broken)."""
    if expected_fingerprint and fingerprint(folder) != expected_fingerprint:
        missing = [name for name in FINGERPRINTED if not (Path(folder) / name).is_file()]
        raise ValueError("the files differ from those it was registered with"
                         + (f" ({', '.join(missing)} not there)" if missing else "")
                         + ": put its own files back (from a backup), or register these as a new version")
    try:
        classifier = load(folder)
        probs = classifier.predict_pixels(np.zeros((1, classifier.image_size, classifier.image_size, 3),
                                                   dtype=np.uint8))
    except Exception as exc:  # whatever a broken file makes the loaders raise
        raise ValueError(f"{type(exc).__name__}: {exc}") from exc
    if probs.shape != (1, len(classifier.labels)) or not np.isfinite(probs).all():
        raise ValueError(f"the network gives {probs.shape[-1]} outputs for {len(classifier.labels)} labels")
    return classifier


def write_tflite(model: keras.Model, folder: Path) -> Path:
    """Convert the Keras network up to its feature map for LiteRT, and write the head beside it.

    The worker runs this file, then pools the feature map and applies the head (head.npz) in
    NumPy: the same pass gives the heat map, and a head refit keeps the file as it is.
    """
    import keras
    import tensorflow as tf

    from training.model import FEATURES

    serving = keras.Model(model.input, model.get_layer(FEATURES).input)  # the backbone's feature map
    path = Path(folder) / TFLITE_FILE
    # A new file under the name, never the old one written over: the file may also be another
    # folder's (a head refit links its base's), and a worker may have it mapped in memory.
    partial = path.with_name(f".{TFLITE_FILE}.partial-{os.getpid()}")
    try:
        partial.write_bytes(tf.lite.TFLiteConverter.from_keras_model(serving).convert())
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)  # (a write cut short: a full disk)
    write_head(model, folder)
    return path


def write_head(model: keras.Model, folder: Path) -> None:
    from training.model import HEAD

    kernel, bias = model.get_layer(HEAD).get_weights()
    np.savez(Path(folder) / HEAD_FILE, kernel=kernel, bias=bias)
