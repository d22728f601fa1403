"""The networks: MobileNetV2 transfer learning, and a small from-scratch CNN for comparison."""

from __future__ import annotations

from pathlib import Path

import keras

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
MOBILENET_V2_NO_TOP = WEIGHTS_DIR / "mobilenet_v2_1.0_224_imagenet_no_top.h5"
BACKBONE = "backbone"
FEATURES = "features"
HEAD = "head"
ARCHITECTURES = ("mobilenet_v2", "simple-cnn")


def build(arch: str, num_classes: int, image_size: int, dropout: float = 0.3,
          weights: str | Path | None = MOBILENET_V2_NO_TOP) -> keras.Model:
    """Build `arch` for uint8-range RGB input of `image_size` pixels.

    Both share one outer shape so that serving, head refits and heat maps see the same layers:
    input (0..255) -> `backbone` (a convolutional feature map) -> `features` (global average
    pooling) -> dropout -> `head` (softmax). Pixel scaling is inside the model.
    """
    inputs = keras.Input((image_size, image_size, 3), name="pixels")
    if arch == "mobilenet_v2":
        backbone = keras.applications.MobileNetV2(
            include_top=False, alpha=1.0, input_shape=(image_size, image_size, 3),
            weights=str(weights) if weights else None, name=BACKBONE,
        )
        x = keras.layers.Rescaling(1 / 127.5, offset=-1.0, name="scale")(inputs)
        # training=False keeps BatchNorm in inference mode even while the top blocks fine-tune,
        # as the Keras transfer-learning guide advises for small data sets.
        x = backbone(x, training=False)
    elif arch == "simple-cnn":
        x = keras.layers.Rescaling(1 / 255.0, name="scale")(inputs)
        x = simple_cnn_backbone(image_size)(x)
    else:
        raise ValueError(f"unknown architecture {arch!r}; choose from {ARCHITECTURES}")
    x = keras.layers.GlobalAveragePooling2D(name=FEATURES)(x)
    x = keras.layers.Dropout(dropout, name="dropout")(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax", name=HEAD)(x)
    return keras.Model(inputs, outputs, name=arch.replace("-", "_"))


# The smallest input each takes: MobileNetV2's, and four halvings of the simple CNN's.
SMALLEST_IMAGE_SIZE = {"mobilenet_v2": 32, "simple-cnn": 16}


def simple_cnn_backbone(image_size: int) -> keras.Model:
    """Four conv / batch-norm / pooling blocks with dropout: the usual from-scratch baseline."""
    inputs = keras.Input((image_size, image_size, 3))
    x = inputs
    for filters in (16, 32, 64, 128):
        x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
        x = keras.layers.BatchNormalization()(x)
        x = keras.layers.ReLU()(x)
        x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
        x = keras.layers.BatchNormalization()(x)
        x = keras.layers.ReLU()(x)
        x = keras.layers.MaxPooling2D()(x)
        x = keras.layers.Dropout(0.1)(x)
    return keras.Model(inputs, x, name=BACKBONE)


def freeze_backbone(model: keras.Model) -> None:
    """Train only the head: the pretrained features stay as they are."""
    model.get_layer(BACKBONE).trainable = False


def unfreeze_top(model: keras.Model, from_layer: str) -> int:
    """Make the backbone trainable from `from_layer` on, BatchNorm excepted; returns how many layers.

    BatchNorm statistics estimated on ImageNet are better than any a few hundred photos give.
    """
    names = backbone_layers(model)
    if from_layer not in names:
        raise ValueError(f"no layer {from_layer!r} in the backbone")
    backbone = model.get_layer(BACKBONE)
    backbone.trainable = True
    start = names.index(from_layer)
    count = 0
    for i, layer in enumerate(backbone.layers):
        trainable = i >= start and not isinstance(layer, keras.layers.BatchNormalization)
        layer.trainable = trainable
        count += trainable
    return count


def backbone_layers(model: keras.Model) -> list[str]:
    """The names of the backbone's layers, in order: what `unfreeze_top` can start from."""
    return [layer.name for layer in model.get_layer(BACKBONE).layers]


def embedder(model: keras.Model) -> keras.Model:
    """The model up to the pooled features: what the head sees (cached for head-only refits)."""
    return keras.Model(model.input, model.get_layer(FEATURES).output, name="embedder")
