"""Does the heatmap show what the model used? A deletion check on real pneumonia X-rays.

For each image: hide the map's hottest tenth of cells (each cell's patch of the model input
set to the image's mean grey) and rerun the model; then hide the same number of cells chosen
by the same map shuffled (`shuffles` times, averaged). A faithful map's hottest cells hold the
evidence, so hiding them lowers the pneumonia logit more than hiding cells at random. Reported:
the share of images where it does, and the mean drops. The images are the published model's
own held-out validation pneumonia images (the card's split lists), never training images.

    python -m model_export faithfulness --model models/cxr-pneumonia.onnx --data ../shared/data/chest_xray
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from cxr_common.model_metadata import CAM_OUTPUT, INPUT_NAME
from cxr_common.preprocessing import load_pixels, to_model_input

HIDDEN_SHARE = 0.10  # of the map's cells
HELD_OUT_SETS = ("validation", "shift_low", "shift_high")
PASS_SHARE = 0.65  # a map that wins on fewer images than this is not shipped


@dataclass(frozen=True)
class Faithfulness:
    images: int
    cells_hidden: int
    shuffles: int
    share_hot_beats_random: float  # images where hiding the hot cells lowered the logit more
    share_per_shuffle: float  # the same against each shuffle on its own (image x shuffle pairs)
    mean_drop_hot: float  # pneumonia logit before minus after, hot cells hidden
    mean_drop_random: float  # the same with shuffled cells (mean over the shuffles)
    passed: bool

    def summary(self) -> str:
        return (f"hiding the hottest {self.cells_hidden} cells lowered the pneumonia logit more than "
                f"hiding shuffled cells on {self.share_hot_beats_random:.0%} of {self.images} pneumonia "
                f"X-rays ({self.share_per_shuffle:.0%} of single shuffles; mean drop {self.mean_drop_hot:.2f} "
                f"against {self.mean_drop_random:.2f}): "
                f"{'passed' if self.passed else 'FAILED'}")


def held_out_pneumonia(data: Path, card: dict[str, Any], count: int) -> list[Path]:
    """`count` of the card's held-out pneumonia images, spread evenly over its sets."""
    names = sorted(n for key in HELD_OUT_SETS for n in card["data"]["splits"].get(key, []) if n.startswith("person"))
    step = max(1, len(names) // count)
    chosen = names[::step][:count]
    folder = data / "train" / "PNEUMONIA"
    return [folder / name for name in chosen]


def _cell_bounds(cells: int, size: int) -> list[tuple[int, int]]:
    edges = [round(i * size / cells) for i in range(cells + 1)]
    return list(zip(edges[:-1], edges[1:]))


def hide_cells(pixels: np.ndarray, cells: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """`pixels` (S, S) with the patches of the flat cell indices `cells` set to its mean grey."""
    hidden = pixels.copy()
    rows, columns = _cell_bounds(grid[0], pixels.shape[0]), _cell_bounds(grid[1], pixels.shape[1])
    fill = np.uint8(round(float(pixels.mean())))
    for cell in cells:
        (top, bottom), (left, right) = rows[cell // grid[1]], columns[cell % grid[1]]
        hidden[top:bottom, left:right] = fill
    return hidden


def _logits(session: ort.InferenceSession, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pneumonia logits (N,) and CAMs (N, h, w): the logit is the CAM's mean."""
    (cams,) = session.run([CAM_OUTPUT], {INPUT_NAME: to_model_input(pixels)})
    return cams.mean(axis=(1, 2)), cams


def measure(model: Path, images: list[Path], shuffles: int = 10, seed: int = 0) -> Faithfulness:
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(seed)
    pixels = np.stack([load_pixels(path) for path in images])
    before, cams = _logits(session, pixels)
    grid = cams.shape[1:]
    hidden_count = max(1, math.ceil(HIDDEN_SHARE * grid[0] * grid[1]))
    drops_hot, drops_random, wins = [], [], []
    for image, logit, cam in zip(pixels, before, cams):
        flat = cam.ravel()
        hottest = np.argsort(-flat, kind="stable")[:hidden_count]
        # the same map shuffled: its hottest cells are cells at random
        shuffled = [np.argsort(-rng.permutation(flat), kind="stable")[:hidden_count] for _ in range(shuffles)]
        variants = np.stack([hide_cells(image, cells, grid) for cells in [hottest, *shuffled]])
        after, _ = _logits(session, variants)
        drops_hot.append(float(logit - after[0]))
        drops_random.append(float(np.mean(logit - after[1:])))
        wins.append(float(np.mean(after[0] < after[1:])))
    hot, rand = np.array(drops_hot), np.array(drops_random)
    share = float(np.mean(hot > rand))
    return Faithfulness(
        images=len(images), cells_hidden=hidden_count, shuffles=shuffles,
        share_hot_beats_random=round(share, 4), share_per_shuffle=round(float(np.mean(wins)), 4),
        mean_drop_hot=round(float(hot.mean()), 4),
        mean_drop_random=round(float(rand.mean()), 4),
        passed=share >= PASS_SHARE and float(hot.mean()) > float(rand.mean()),
    )


def run_faithfulness(model: Path, data: Path, card_path: Path, count: int, out: Path | None) -> Faithfulness:
    card = json.loads(card_path.read_text())
    result = measure(model, held_out_pneumonia(data, card, count))
    print(result.summary())
    if out is not None:
        out.write_text(json.dumps({"model": model.name, **asdict(result)}, indent=2) + "\n")
    return result
