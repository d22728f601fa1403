"""How far can the fast mode's head refit go? Cross-validation inside the photos users labelled.

    python -m bench.head_ceiling [--data ../shared/data/kue-indonesia/test] [--train DIR]

The fast retraining mode refits the softmax head on fixed backbone embeddings. This asks what any
head of that kind can learn from the photos `bench.adaptation` lets users label, without looking
at the half it evaluates on: only the teach half A of its fold 1 is read (the same stratified split,
seed 0); half B is never opened. Inside A, 5-fold stratified cross-validation: each variant trains
on the shipped model's base embeddings (its validation photos left out) plus four fifths of A, about
the 65 photos a fast run in that bench trains on, and is scored on the fifth it did not see. The
base validation photos are scored too, so that a variant cannot win by forgetting the base classes.

Variants: the fast mode as shipped (Keras softmax, warm start, `retrain.sample_weights`); logistic
regression with the user photos weighted 1 to 64 times a base photo; the same with eight flipped and
cropped views of every user photo; frozen ImageNet MobileNetV2 features (from `--train`'s photos);
and both feature sets side by side. Ends with `RESULT shipped_on_a=.. fast_mode_cv=.. best_cv=..`.

Two limits, read the figures with them: the views are cut from one 256-px decode, so even the
whole-photo view is resized twice (the worker decodes straight to 224 px) and `shipped_on_a` can
differ from what the worker gives on those photos by a photo or so; and `best_cv` is the best of
the eight variants on the same folds, so it is an optimistic ceiling, not an unbiased estimate.
"""

from __future__ import annotations

import argparse
import json
import os
import warnings
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from bench.adaptation import DEFAULT_DATA, halves  # noqa: E402
from training import data as datasets  # noqa: E402
from training.preprocess import load_image  # noqa: E402
from training.runtime import CONFIG_FILE, EMBEDDINGS_FILE, load  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "models" / "kue-mobilenetv2"
DEFAULT_TRAIN = ROOT.parent / "shared" / "data" / "kue-indonesia" / "train"


def views(pixels: np.ndarray) -> np.ndarray:
    """Eight views of one 256-px photo at 224 px: whole and three crops, each also mirrored."""
    from PIL import Image

    image = Image.fromarray(pixels)
    whole = np.asarray(image.resize((224, 224), Image.BILINEAR))
    out = [whole, whole[:, ::-1]]
    for box in [(0, 0, 224, 224), (32, 32, 256, 256), (16, 16, 240, 240)]:
        crop = np.asarray(image.crop(box).resize((224, 224), Image.BILINEAR))
        out += [crop, crop[:, ::-1]]
    return np.stack(out)


def imagenet_features(pixels: np.ndarray) -> np.ndarray:
    import keras

    from training.model import MOBILENET_V2_NO_TOP

    net = keras.applications.MobileNetV2(include_top=False, weights=str(MOBILENET_V2_NO_TOP),
                                         input_shape=(224, 224, 3), pooling="avg")
    scale = keras.applications.mobilenet_v2.preprocess_input
    return np.concatenate([np.asarray(net(scale(pixels[i:i + 32].astype(np.float32)), training=False))
                           for i in range(0, len(pixels), 32)])


def main(argv: list[str] | None = None) -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold

    from training.retrain import fit_head, sample_weights
    from training.train import embed

    p = argparse.ArgumentParser(prog="python -m bench.head_ceiling", description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(DEFAULT_DATA), help="the benchmark folder bench.adaptation uses")
    p.add_argument("--train", default=str(DEFAULT_TRAIN), help="the base training photos (ImageNet variant)")
    args = p.parse_args(argv)
    warnings.filterwarnings("ignore", category=UserWarning)

    classifier = load(SHIPPED)
    k = len(classifier.slugs)
    cache = np.load(SHIPPED / EMBEDDINGS_FILE)
    base_x, base_y = cache["embeddings"].astype(np.float32), cache["labels"].astype(np.int64)
    held_files = set(json.loads((SHIPPED / CONFIG_FILE).read_text())["val_files"])
    is_val = np.array([f in held_files for f in cache["files"]])

    teach, _ = halves(Path(args.data).resolve())  # half B is not even listed past this line
    a_y = np.array([classifier.slugs.index(path.parent.name) for path in teach])
    a_views = np.stack([views(load_image(path, 256)) for path in teach])  # (n, 8, 224, 224, 3)
    a_x8 = embed(classifier.model, a_views.reshape(-1, 224, 224, 3), 32).astype(np.float32)
    a_x8 = a_x8.reshape(len(teach), a_views.shape[1], -1)
    a_x = a_x8[:, 0]
    shipped_on_a = float((classifier.predict_pixels(a_views[:, 0]).argmax(1) == a_y).mean())

    base_pixels = datasets.load_pixels(datasets.discover(args.train, classes=classifier.slugs), 224)
    base_imagenet = imagenet_features(base_pixels)
    a_imagenet = imagenet_features(a_views[:, 0])
    init = classifier.model.get_layer("head").get_weights()

    def cross_validate(fit, bx, ax, ax_train=None, weight=None):
        """User-photo CV accuracy, per-class recall and mean base-validation accuracy of `fit`.

        `weight` None weighs photos as the fast mode does; a number balances the classes and makes
        each user photo (its views together) count `weight` times a base photo of its class.
        """
        right, base_acc = np.zeros(k), []
        nb = int((~is_val).sum())
        for tr, te in StratifiedKFold(5, shuffle=True, random_state=0).split(ax, a_y):
            extra = (ax_train if ax_train is not None else ax[:, None])[tr]
            n_views = extra.shape[1]
            ex, ey = extra.reshape(-1, extra.shape[-1]), np.repeat(a_y[tr], n_views)
            y = np.concatenate([base_y[~is_val], ey])
            if weight is None:
                w = sample_weights(base_y[~is_val], ey, k)
            else:
                w = len(y) / (k * np.bincount(y, minlength=k)[y])
                w[nb:] *= weight / n_views
            predict = fit(np.concatenate([bx[~is_val], ex]), y, w)
            np.add.at(right, a_y[te], predict(ax[te]) == a_y[te])
            base_acc.append(float((predict(bx[is_val]) == base_y[is_val]).mean()))
        return right.sum() / len(a_y), right / np.bincount(a_y, minlength=k), float(np.mean(base_acc))

    def keras_head(x, y, w):
        kernel, bias = fit_head(x, y, w, k, init)
        return lambda z: (z @ kernel + bias).argmax(1)

    def logistic(x, y, w):
        model = LogisticRegression(C=0.1, max_iter=500).fit(x, y, sample_weight=w)
        return model.predict

    both_base, both_a = np.hstack([base_x, base_imagenet]), np.hstack([a_x, a_imagenet])
    variants = [("fast mode as shipped (Keras softmax)", lambda: cross_validate(keras_head, base_x, a_x))]
    variants += [(f"logistic, user photo x{w}", lambda w=w: cross_validate(logistic, base_x, a_x, weight=w))
                 for w in (1, 4, 16, 64)]
    variants += [
        ("logistic x16, 8 flipped/cropped views",
         lambda: cross_validate(logistic, base_x, a_x, ax_train=a_x8, weight=16)),
        ("logistic x4, ImageNet features",
         lambda: cross_validate(logistic, base_imagenet, a_imagenet, weight=4)),
        ("logistic x16, both feature sets", lambda: cross_validate(logistic, both_base, both_a, weight=16)),
    ]
    print(f"{len(teach)} labelled photos (half A), 5-fold CV; the shipped model gets {shipped_on_a:.3f} "
          "of them right without retraining\n")
    short = ", ".join(slug.removeprefix("kue_")[:6] for slug in classifier.slugs)
    print(f"{'variant':<40} {'user CV':>8} {'base val':>9}  per-class recall ({short})")
    scores = {}
    for name, run in variants:
        acc, recall, base_acc = run()
        scores[name] = acc
        print(f"{name:<40} {acc:>8.3f} {base_acc:>9.3f}  {' '.join(f'{r:.2f}' for r in recall)}", flush=True)
    print(f"\nRESULT shipped_on_a={shipped_on_a:.4f} fast_mode_cv={scores[variants[0][0]]:.4f} "
          f"best_cv={max(scores.values()):.4f}")


if __name__ == "__main__":
    main()
