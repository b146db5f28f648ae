"""The networks. Input: (N, S, S, 1) float32 in 0..1; output: (N, 1) pneumonia probability.

* `seed`: the published network, reproduced for comparison (3x3 convs 32 -> 64 -> 128 with max
  pooling, Flatten, Dense 512, Dense 1 sigmoid). About 80M weights at 300x300: big and slow.
* `gapnet` (default): our design. Differences, each for a reason:
  - 2x average pooling first: a third of the training images exist only as 224 px copies,
    upscaled to 300; the official test images are sharp originals. At 150 px every image
    carries full detail, so the model cannot learn "blurry = one class", and it costs 4x less.
  - per-image standardisation: exposure and contrast vary between machines and hospitals.
  - batch-normalised 3x3 conv blocks (VGG-style, as the seed) with max pooling, 16 -> 256 filters.
  - global average pooling and a single linear unit before the sigmoid, so class activation
    maps (CAM) can be read off the last conv layer later; ~0.6M weights instead of ~80M.
"""

from __future__ import annotations

import keras
from keras import layers

ARCHITECTURES = ("gapnet", "seed", "tiny")


@keras.saving.register_keras_serializable(package="cxr")
class PerImageStandardization(layers.Layer):
    """(x - mean) / std per image, so the model sees the same range whatever the exposure."""

    def call(self, images):
        mean = keras.ops.mean(images, axis=(1, 2, 3), keepdims=True)
        std = keras.ops.std(images, axis=(1, 2, 3), keepdims=True)
        return (images - mean) / keras.ops.maximum(std, 1e-3)


def _conv_block(x, filters: int, convs: int, name: str):
    for i in range(convs):
        x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv{i + 1}")(x)
        x = layers.BatchNormalization(name=f"{name}_bn{i + 1}")(x)
        x = layers.ReLU(name=f"{name}_relu{i + 1}")(x)
    return x


# A narrow first stage: it runs at the largest resolution (150x150) on a single channel, where
# int8 kernels are least efficient; 16 filters there halve its cost (see the model card for
# what it does to validation metrics).
GAPNET_WIDTHS = (16, 32, 64, 128, 256)


def gapnet(size: int, widths=GAPNET_WIDTHS, convs=(1, 1, 2, 2, 1), dropout=0.3):
    inputs = keras.Input((size, size, 1), name="image")
    x = layers.AveragePooling2D(2, name="to_half_resolution")(inputs)
    x = PerImageStandardization(name="standardize")(x)
    for stage, (filters, count) in enumerate(zip(widths, convs), start=1):
        x = _conv_block(x, filters, count, name=f"stage{stage}")
        if stage < len(widths):  # the last stage feeds the CAM at its own resolution
            x = layers.MaxPooling2D(2, name=f"stage{stage}_pool")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    x = layers.Dropout(dropout, name="dropout")(x)
    outputs = layers.Dense(1, activation="sigmoid", name="pneumonia")(x)
    return keras.Model(inputs, outputs, name="gapnet")


def tiny(size: int):
    """A few thousand weights: for tests and smoke runs only."""
    return gapnet(size, widths=(8, 16), convs=(1, 1), dropout=0.0)


def seed(size: int):
    inputs = keras.Input((size, size, 1), name="image")
    x = inputs
    for filters in (32, 64, 128):
        x = layers.Conv2D(filters, 3, activation="relu")(x)
        x = layers.MaxPooling2D(2)(x)
    x = layers.Flatten()(x)
    x = layers.Dense(512, activation="relu")(x)
    outputs = layers.Dense(1, activation="sigmoid", name="pneumonia")(x)
    return keras.Model(inputs, outputs, name="seed")


def build(name: str, size: int) -> keras.Model:
    builders = {"gapnet": gapnet, "seed": seed, "tiny": tiny}
    if name not in builders:
        raise ValueError(f"architecture '{name}' is unknown; choose one of {', '.join(ARCHITECTURES)}")
    return builders[name](size)


def count_flops(model: keras.Model) -> int:
    """Multiply-adds x 2 of the conv and dense layers for one image (what dominates cost)."""
    flops = 0
    for layer in model.layers:
        if isinstance(layer, layers.Conv2D):
            _, height, width, out_channels = layer.output.shape
            in_channels = layer.input.shape[-1]
            kh, kw = layer.kernel_size
            flops += 2 * height * width * out_channels * in_channels * kh * kw
        elif isinstance(layer, layers.Dense):
            flops += 2 * layer.input.shape[-1] * layer.units
    return int(flops)
