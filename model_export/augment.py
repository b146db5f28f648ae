"""Training-time augmentation, applied to batches in the tf.data pipeline (never exported).

The published recipe used zoom, rotation and horizontal flip. The official test split differs
from the training images (full-resolution originals, other exposures), so we add what makes
the model robust to acquisition rather than to geometry alone: small shifts (crop-like),
contrast, brightness, gamma and blur. Each knob is an option of the training command.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import tensorflow as tf


@dataclass(frozen=True)
class AugmentConfig:
    zoom: float = 0.15  # +-15 % zoom
    # Zoom height and width independently: X-rays of every aspect ratio are squashed into a
    # square, so the same chest arrives wider or taller depending on how it was framed.
    independent_zoom: bool = True
    rotation_degrees: float = 10.0  # patients are rarely more tilted than this
    shift: float = 0.05  # +-5 % translation: a mild random crop / pad
    # Horizontal flip, as published: pneumonia is no more left than right; the mirrored heart
    # is a cue the model should not need. Switch off with --no-flip.
    flip: bool = True
    contrast: float = 0.3  # contrast factor in 1 +- 0.3
    brightness: float = 0.1  # +- 0.1 added in 0..1 units
    gamma: float = 0.3  # gamma in exp(+-0.3): different film/detector response curves
    blur_probability: float = 0.3  # fraction of images blurred (sigma up to 1.5 px)

    def describe(self) -> dict[str, float | bool]:
        return dict(self.__dict__)


def build_augmenter(config: AugmentConfig, seed: int) -> keras.Sequential:
    """A stack of Keras preprocessing layers for float images (N, H, W, 1) in 0..1."""
    geometric: list[keras.layers.Layer] = []
    if config.flip:
        geometric.append(keras.layers.RandomFlip("horizontal", seed=seed))
    if config.rotation_degrees:
        geometric.append(
            keras.layers.RandomRotation(config.rotation_degrees / 360.0, fill_mode="nearest", seed=seed + 1)
        )
    if config.zoom:
        width = config.zoom if config.independent_zoom else None  # None: keep the aspect ratio
        geometric.append(keras.layers.RandomZoom(config.zoom, width, fill_mode="nearest", seed=seed + 2))
    if config.shift:
        geometric.append(
            keras.layers.RandomTranslation(config.shift, config.shift, fill_mode="nearest", seed=seed + 3)
        )
    photometric: list[keras.layers.Layer] = []
    if config.contrast:
        photometric.append(keras.layers.RandomContrast(config.contrast, value_range=(0, 1), seed=seed + 4))
    if config.brightness:
        photometric.append(
            keras.layers.RandomBrightness(config.brightness, value_range=(0, 1), seed=seed + 5)
        )
    return keras.Sequential(geometric + photometric, name="augment")


def random_gamma(images: tf.Tensor, strength: float) -> tf.Tensor:
    """Per-image gamma in exp(+-strength), on images in 0..1."""
    if not strength:
        return images
    batch = tf.shape(images)[0]
    gamma = tf.exp(tf.random.uniform([batch, 1, 1, 1], -strength, strength))
    return tf.pow(tf.clip_by_value(images, 1e-6, 1.0), gamma)


def random_blur(images: tf.Tensor, probability: float, max_sigma: float = 1.5) -> tf.Tensor:
    """Blur a random `probability` of the images with a Gaussian of random sigma (0.5..max)."""
    if not probability:
        return images
    batch = tf.shape(images)[0]
    sigma = tf.random.uniform([], 0.5, max_sigma)
    radius = 3
    x = tf.range(-radius, radius + 1, dtype=tf.float32)
    kernel_1d = tf.exp(-0.5 * tf.square(x / sigma))
    kernel_1d /= tf.reduce_sum(kernel_1d)
    blurred = tf.nn.conv2d(images, tf.reshape(kernel_1d, [-1, 1, 1, 1]), 1, "SAME")
    blurred = tf.nn.conv2d(blurred, tf.reshape(kernel_1d, [1, -1, 1, 1]), 1, "SAME")
    chosen = tf.cast(tf.random.uniform([batch, 1, 1, 1]) < probability, tf.float32)
    return chosen * blurred + (1.0 - chosen) * images


def make_augment_fn(config: AugmentConfig, seed: int):
    """(images, labels, weights) -> augmented batch; images float32 (N, H, W, 1) in 0..1."""
    augmenter = build_augmenter(config, seed)

    def augment(images, labels, weights):
        images = augmenter(images, training=True)
        images = random_gamma(images, config.gamma)
        images = random_blur(images, config.blur_probability)
        return tf.clip_by_value(images, 0.0, 1.0), labels, weights

    return augment
