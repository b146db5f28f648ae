"""Preprocess a list of images once and keep the uint8 pixels on disk.

Decoding 5216 JPEGs takes minutes on two cores; the cache file is keyed by the file list
(names, labels, sizes, and their order), the preprocessing version and the input size, so a
second run, or a resumed one, loads one array instead.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Mapping
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from tqdm import tqdm

from cxr_common.preprocessing import PREPROCESSING_VERSION, load_pixels
from model_export.dataset import Example, fingerprint

log = logging.getLogger(__name__)

CACHE_DIR_VARIABLE = "CXR_CACHE_DIR"


def default_cache_dir(environ: Mapping[str, str] = os.environ) -> Path:
    """$CXR_CACHE_DIR, else ~/.cache/cxr-pneumonia; read when a run is configured, not at import."""
    return Path(environ.get(CACHE_DIR_VARIABLE, Path.home() / ".cache" / "cxr-pneumonia"))


def cache_key(examples: list[Example], size: int) -> str:
    # the order counts: the array comes back in the order it was stored, and the same images in
    # another order (a CV fold list against a train + validation list) must not share a file
    order = hashlib.sha256("\n".join(e.path.name for e in examples).encode()).hexdigest()
    text = f"{fingerprint(examples)}|order={order}|preprocessing={PREPROCESSING_VERSION}|size={size}"
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def _load(args: tuple[str, int]) -> np.ndarray:
    path, size = args
    return load_pixels(path, size)


def preprocess_all(examples: list[Example], size: int, workers: int | None = None) -> np.ndarray:
    """(N, size, size) uint8, in the order of `examples`, decoded on all cores."""
    jobs = [(str(e.path), size) for e in examples]
    workers = workers or os.cpu_count() or 1
    pixels = np.empty((len(jobs), size, size), dtype=np.uint8)
    with ProcessPoolExecutor(workers) as pool:
        results = pool.map(_load, jobs, chunksize=32)
        for i, image in enumerate(tqdm(results, total=len(jobs), desc="preprocess", unit="img")):
            pixels[i] = image
    return pixels


def cache_path(examples: list[Example], size: int, cache_dir: Path | None = None) -> Path:
    return Path(cache_dir or default_cache_dir()) / f"pixels-{cache_key(examples, size)}.npy"


def load_or_preprocess(examples: list[Example], size: int, cache_dir: Path | None = None) -> np.ndarray:
    """Cached pixels for `examples` (same order); preprocess and store them on a miss."""
    path = cache_path(examples, size, cache_dir)
    cache_dir = path.parent
    if path.exists():
        log.info("using cached pixels %s", path)
        cached: np.ndarray = np.load(path)
        return cached
    pixels = preprocess_all(examples, size)
    cache_dir.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial.npy")
    np.save(partial, pixels)
    partial.replace(path)  # atomic: an interrupted run never leaves a truncated cache
    log.info("cached %d preprocessed images in %s", len(pixels), path)
    return pixels
