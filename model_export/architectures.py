"""The networks. Input: (N, S, S, 1) float32 in 0..1; outputs: 'pneumonia' (N, 1) probability
and, for gapnet, 'viral' (N, 1): the probability that a pneumonia is viral rather than bacterial.

* `seed`: the published network, reproduced for comparison (3x3 convs 32 -> 64 -> 128 with max
  pooling, Flatten, Dense 512, Dense 1 sigmoid). About 80M weights at 300x300: big and slow.
* `gapnet` (default): our design. Differences, each for a reason:
  - 2x average pooling first: a third of the training images exist only as 224 px copies,
    upscaled to 300; the official test images are sharp originals. At 150 px every image
    carries full detail, so the model cannot learn "blurry = one class", and it costs 4x less.
  - per-image standardisation: exposure and contrast vary between machines and hospitals.
  - batch-normalised 3x3 conv blocks (VGG-style, as the seed) with max pooling, 16 -> 256 filters.
  - the classifier is a linear 1x1 convolution on the last feature map, averaged over space
    (the same function as global average pooling then a dense unit, since both are linear):
    its per-position output *is* the class activation map (CAM), a tensor of the graph whose
    spatial mean is the pneumonia logit; ~0.6M weights instead of ~80M.
  - a second 1x1 head for the pneumonia type (viral vs bacterial), trained only on pneumonia
    cases whose type is known.
`export_model` adds the CAM and the pooled features (what the head sees) as outputs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras
from keras import layers

ARCHITECTURES = ("gapnet", "effnet", "seed", "tiny")


@keras.saving.register_keras_serializable(package="cxr")
class PerImageStandardization(layers.Layer):  # type: ignore[misc]  # Keras is untyped
    """(x - mean) / std per image, so the model sees the same range whatever the exposure."""

    def call(self, images: Any) -> Any:
        mean = keras.ops.mean(images, axis=(1, 2, 3), keepdims=True)
        std = keras.ops.std(images, axis=(1, 2, 3), keepdims=True)
        return (images - mean) / keras.ops.maximum(std, 1e-3)


def _conv_block(x: Any, filters: int, convs: int, name: str) -> Any:
    for i in range(convs):
        x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv{i + 1}")(x)
        x = layers.BatchNormalization(name=f"{name}_bn{i + 1}")(x)
        x = layers.ReLU(name=f"{name}_relu{i + 1}")(x)
    return x


# A narrow first stage: it runs at the largest resolution (150x150) on a single channel, where
# int8 kernels are least efficient; 16 filters there halve its cost (see the model card for
# what it does to validation metrics).
GAPNET_WIDTHS = (16, 32, 64, 128, 256)


def gapnet(size: int, widths: tuple[int, ...] = GAPNET_WIDTHS, convs: tuple[int, ...] = (1, 1, 2, 2, 1),
           dropout: float = 0.3) -> keras.Model:
    inputs = keras.Input((size, size, 1), name="image")
    x = layers.AveragePooling2D(2, name="to_half_resolution")(inputs)
    x = PerImageStandardization(name="standardize")(x)
    for stage, (filters, count) in enumerate(zip(widths, convs), start=1):
        x = _conv_block(x, filters, count, name=f"stage{stage}")
        if stage < len(widths):  # the last stage feeds the CAM at its own resolution
            x = layers.MaxPooling2D(2, name=f"stage{stage}_pool")(x)
    x = layers.Dropout(dropout, name="dropout")(x)
    outputs = {}
    for head in HEADS:
        logit_map = layers.Conv2D(1, 1, name=f"{head}_map")(x)  # (N, h, w, 1): the CAM
        logit = layers.GlobalAveragePooling2D(name=f"{head}_logit")(logit_map)
        outputs[head] = layers.Activation("sigmoid", name=head)(logit)
    return keras.Model(inputs, outputs, name="gapnet")


HEADS = ("pneumonia", "viral")
LAST_FEATURES = "dropout"  # the layer whose input is the last feature map


def export_model(model: keras.Model) -> keras.Model:
    """The trained model with every output the service reads, in EXPORT_OUTPUTS order:
    pneumonia (N, 1), viral (N, 1), pneumonia CAM logits (N, h, w), pooled features (N, D)."""
    names = [layer.name for layer in model.layers]
    if "pneumonia_map" not in names:  # the seed network
        return keras.Model(model.inputs, [model.get_layer("pneumonia").output], name=f"{model.name}_export")
    feature_map = model.get_layer(ENSEMBLE_FEATURES if ENSEMBLE_FEATURES in names else LAST_FEATURES)
    feature_map = feature_map.output if ENSEMBLE_FEATURES in names else feature_map.input
    cam = layers.Reshape(tuple(feature_map.shape[1:3]), name="cam")(model.get_layer("pneumonia_map").output)
    features = layers.GlobalAveragePooling2D(name="features")(feature_map)
    return keras.Model(
        model.inputs,
        [model.get_layer("pneumonia").output, model.get_layer("viral").output, cam, features],
        name=f"{model.name}_export",
    )


ENSEMBLE_FEATURES = "member_features"


def ensemble(members: list[keras.Model]) -> keras.Model:
    """Several trained gapnets as one model with the same heads: per head, the members' logit maps
    averaged (so the CAM's mean is still the logit, and the probability is the sigmoid of the mean
    logit); the features are the members' feature maps side by side."""
    size = members[0].input_shape[1] if hasattr(members[0], "input_shape") else members[0].inputs[0].shape[1]
    inputs = keras.Input((size, size, 1), name="image")
    maps: dict[str, list[Any]] = {head: [] for head in HEADS}
    features = []
    for i, member in enumerate(members, start=1):
        parts = keras.Model(member.inputs, [member.get_layer(f"{head}_map").output for head in HEADS]
                            + [member.get_layer(LAST_FEATURES).input], name=f"member{i}")
        *head_maps, feature_map = parts(inputs)
        for head, logit_map in zip(HEADS, head_maps):
            maps[head].append(logit_map)
        features.append(feature_map)
    outputs = {}
    for head in HEADS:
        logit_map = layers.Average(name=f"{head}_map")(maps[head])
        logit = layers.GlobalAveragePooling2D(name=f"{head}_logit")(logit_map)
        outputs[head] = layers.Activation("sigmoid", name=head)(logit)
    # the features' layer is an output too, so that export_model finds it in the graph
    outputs["features"] = layers.GlobalAveragePooling2D(name="pooled_member_features")(
        layers.Concatenate(name=ENSEMBLE_FEATURES)(features))
    return keras.Model(inputs, outputs, name=f"ensemble_of_{len(members)}")


# EfficientNet-Lite0 sees the X-ray at this size: its cost grows with the square, and 224 px is
# the resolution its ImageNet weights were trained at (and the size of a third of our images).
EFFNET_INPUT_SIZE = 224
# Stem and the first two stages keep their ImageNet filters: edges and textures carry across
# cohorts, and not back-propagating through the largest maps halves the cost of a step.
EFFNET_FROZEN_BLOCKS = 3


def effnet(size: int, input_size: int = EFFNET_INPUT_SIZE, frozen_blocks: int = EFFNET_FROZEN_BLOCKS,
           dropout: float = 0.3, pretrained: bool = True) -> keras.Model:
    """ImageNet-pretrained EfficientNet-Lite0 with gapnet's heads: the same input (N, S, S, 1)
    in 0..1, resized to `input_size`, standardised per image (exposure differs between
    hospitals; standardised grey is in the range the ImageNet weights expect) and repeated
    into three channels; 1x1 logit maps over its last feature map (N, 7, 7, 1280 at 224 px)."""
    from model_export.backbone import FEATURES_LAYER, lite0_features, load_imagenet_weights

    inputs = keras.Input((size, size, 1), name="image")
    x = layers.Resizing(input_size, input_size, interpolation="bilinear", name="to_backbone_size")(inputs)
    x = PerImageStandardization(name="standardize")(x)
    x = layers.Concatenate(name="to_rgb")([x, x, x])
    x = lite0_features(x)
    x = layers.Dropout(dropout, name="dropout")(x)
    outputs = {}
    for head in HEADS:
        logit_map = layers.Conv2D(1, 1, name=f"{head}_map")(x)
        logit = layers.GlobalAveragePooling2D(name=f"{head}_logit")(logit_map)
        outputs[head] = layers.Activation("sigmoid", name=head)(logit)
    model = keras.Model(inputs, outputs, name="effnet")
    if pretrained:
        load_imagenet_weights(model)
    frozen = ("backbone_stem",) + tuple(f"backbone_block{i}_" for i in range(frozen_blocks))
    for layer in model.layers:
        if layer.name.startswith(frozen):
            layer.trainable = False
    assert model.get_layer(FEATURES_LAYER).output.shape[-1] == 1280
    return model


def tiny(size: int) -> keras.Model:
    """A few thousand weights: for tests and smoke runs only."""
    return gapnet(size, widths=(8, 16), convs=(1, 1), dropout=0.0)


def seed(size: int) -> keras.Model:
    inputs = keras.Input((size, size, 1), name="image")
    x = inputs
    for filters in (32, 64, 128):
        x = layers.Conv2D(filters, 3, activation="relu")(x)
        x = layers.MaxPooling2D(2)(x)
    x = layers.Flatten()(x)
    x = layers.Dense(512, activation="relu")(x)
    outputs = layers.Dense(1, activation="sigmoid", name="pneumonia")(x)
    return keras.Model(inputs, {"pneumonia": outputs}, name="seed")


def build(name: str, size: int) -> keras.Model:
    builders: dict[str, Callable[[int], keras.Model]] = {"gapnet": gapnet, "effnet": effnet, "seed": seed, "tiny": tiny}
    if name not in builders:
        raise ValueError(f"architecture '{name}' is unknown; choose one of {', '.join(ARCHITECTURES)}")
    return builders[name](size)


def count_flops(model: keras.Model) -> int:
    """Multiply-adds x 2 of the conv and dense layers for one image (what dominates cost)."""
    flops = 0
    for layer in model.layers:
        if isinstance(layer, keras.Model):  # an ensemble's members count whole
            flops += count_flops(layer)
        elif isinstance(layer, layers.DepthwiseConv2D):
            _, height, width, channels = layer.output.shape
            kh, kw = layer.kernel_size
            flops += 2 * height * width * channels * kh * kw
        elif isinstance(layer, layers.Conv2D):
            _, height, width, out_channels = layer.output.shape
            in_channels = layer.input.shape[-1]
            kh, kw = layer.kernel_size
            flops += 2 * height * width * out_channels * in_channels * kh * kw
        elif isinstance(layer, layers.Dense):
            flops += 2 * layer.input.shape[-1] * layer.units
    return int(flops)
