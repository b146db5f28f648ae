"""Training-time augmentation, applied to batches in the tf.data pipeline (never exported).

The published recipe used zoom, rotation and horizontal flip. The official test split differs
from the training images (full-resolution originals, other exposures), so we add what makes
the model robust to acquisition rather than to geometry alone: small shifts (crop-like),
contrast, brightness, gamma and blur. Each knob is an option of the training command.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

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
    # What scanners and exports add around the chest, which must not decide the label (a 5 %
    # black frame flipped 7 of 17 pneumonias to normal in v2): a uniform black or white frame,
    # a black letterbox from an image fitted into another aspect ratio, burned-in text blocks.
    border_probability: float = 0.25  # frame of up to 8 % per side, black or white
    letterbox_probability: float = 0.15  # squeezed to 55-90 % along one axis, padded black
    text_probability: float = 0.25  # 1-3 bright blocks of glyph-like noise near the edges

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


def random_border(images: tf.Tensor, probability: float, max_fraction: float = 0.08) -> tf.Tensor:
    """A uniform frame (each side 0..max_fraction of the size; black or white) on a random
    `probability` of the images. images (N, S, S, 1) in 0..1."""
    if not probability:
        return images
    batch, size = tf.shape(images)[0], tf.cast(tf.shape(images)[1], tf.float32)
    sides = tf.random.uniform([batch, 4, 1, 1], 0.0, max_fraction) * size  # top, bottom, left, right
    position = tf.range(size)
    rows, cols = position[tf.newaxis, :, tf.newaxis], position[tf.newaxis, tf.newaxis, :]
    frame = ((rows < sides[:, 0]) | (rows >= size - sides[:, 1])
             | (cols < sides[:, 2]) | (cols >= size - sides[:, 3]))[..., tf.newaxis]
    value = tf.round(tf.random.uniform([batch, 1, 1, 1]))  # 0 black or 1 white
    chosen = tf.random.uniform([batch, 1, 1, 1]) < probability
    return tf.where(frame & chosen, value, images)


def random_letterbox(images: tf.Tensor, probability: float, smallest: float = 0.55) -> tf.Tensor:
    """The whole image squeezed to smallest..0.9 of its height or width (one draw per batch)
    and centred on black, on a random `probability` of the images."""
    if not probability:
        return images
    batch, size = tf.shape(images)[0], tf.shape(images)[1]
    kept = tf.cast(tf.cast(size, tf.float32) * tf.random.uniform([], smallest, 0.9), tf.int32)
    tall = tf.random.uniform([]) < 0.5
    height, width = tf.where(tall, size, kept), tf.where(tall, kept, size)
    squeezed = tf.image.resize(images, tf.stack([height, width]))
    boxed = tf.image.resize_with_crop_or_pad(squeezed, size, size)
    chosen = tf.random.uniform([batch, 1, 1, 1]) < probability
    return tf.where(chosen, boxed, images)


def random_text(images: tf.Tensor, probability: float) -> tf.Tensor:
    """Up to three bright blocks of coarse random 'glyphs' (a label, a date, an L marker) at
    random places, on a random `probability` of the images."""
    if not probability:
        return images
    batch, size = tf.shape(images)[0], tf.shape(images)[1]
    side = tf.cast(size, tf.float32)
    out = images
    for _ in range(3):  # blocks 2-6 % of the side high, 7-30 % wide (6-18 by 20-90 px at 300 px)
        height = tf.cast(side * tf.random.uniform([], 0.02, 0.06), tf.int32) + 1
        width = tf.cast(side * tf.random.uniform([], 0.07, 0.30), tf.int32) + 1
        glyphs = tf.cast(tf.random.uniform([batch, 3, 12, 1]) < 0.45, tf.float32)
        block = tf.image.resize(glyphs, tf.stack([height, width]), method="nearest")
        top = tf.random.uniform([], 0, size - height, dtype=tf.int32)
        left = tf.random.uniform([], 0, size - width, dtype=tf.int32)
        placed = tf.image.pad_to_bounding_box(block, top, left, size, size)
        mask = tf.image.pad_to_bounding_box(tf.ones_like(block), top, left, size, size) > 0
        chosen = tf.random.uniform([batch, 1, 1, 1]) < probability
        out = tf.where(mask & (placed > 0) & chosen, 1.0, out)
    return out


def make_augment_fn(config: AugmentConfig, seed: int) -> Callable[[Any, Any, Any], tuple[Any, Any, Any]]:
    """(images, labels, weights) -> augmented batch; images float32 (N, H, W, 1) in 0..1."""
    augmenter = build_augmenter(config, seed)

    def augment(images: Any, labels: Any, weights: Any) -> tuple[Any, Any, Any]:
        images = augmenter(images, training=True)
        images = random_gamma(images, config.gamma)
        images = random_blur(images, config.blur_probability)
        images = random_letterbox(images, config.letterbox_probability)
        images = random_border(images, config.border_probability)
        images = random_text(images, config.text_probability)
        return tf.clip_by_value(images, 0.0, 1.0), labels, weights

    return augment
