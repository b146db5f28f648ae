"""Plot the training loss and every AUC per epoch (training and each validation set) from the CSV."""

from __future__ import annotations

import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402


def plot_history(history_csv: Path, out_png: Path) -> None:
    if not history_csv.exists():
        return
    with open(history_csv, newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows:
        return
    epochs = [int(row["epoch"]) + 1 for row in rows]
    figure, axes = plt.subplots(1, 2, figsize=(11, 4))
    panels = (
        ("loss", [k for k in rows[0] if k.endswith("loss")]),
        ("ROC AUC", [k for k in rows[0] if k.endswith("auc")]),
    )
    for axis, (title, columns) in zip(axes, panels):
        for column in columns:
            axis.plot(epochs, [float(row[column] or "nan") for row in rows], label=column)
        axis.set_xlabel("epoch")
        axis.set_title(title)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(out_png, dpi=100)
    plt.close(figure)
