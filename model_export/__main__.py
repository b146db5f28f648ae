"""Command line: python -m model_export COMMAND ... (train, cv, ensemble, combine, evaluate, ablation, publish,
faithfulness, borders, members; --help on each)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported where used: TensorFlow loads only for the commands that train
    from model_export.train import TrainConfig

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's C++ start-up chatter out


def _config(args: argparse.Namespace) -> TrainConfig:
    from model_export.augment import AugmentConfig
    from model_export.train import TrainConfig

    # each option's dest is its field's name, and an option not given is absent from `args`
    # (default SUPPRESS): the dataclasses' own defaults apply, written once, in train.py and augment.py
    given = vars(args)
    augment = AugmentConfig(**{f.name: given[f.name] for f in fields(AugmentConfig) if f.name in given})
    return TrainConfig(**{f.name: given[f.name] for f in fields(TrainConfig) if f.name in given}, augment=augment)


def _train(args: argparse.Namespace) -> int:
    from model_export.train import run

    run(_config(args))
    return 0


def _cv(args: argparse.Namespace) -> int:
    from model_export.cv import run_cv

    run_cv(_config(args), args.folds)
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from model_export.evaluate import evaluate

    evaluate(args.model, args.data, args.out, labels_csv=args.labels, split=args.split)
    return 0


def _publish(args: argparse.Namespace) -> int:
    from cxr_common.model_metadata import INT8_MODEL_FILE
    from model_export.card import build_card

    build_card(args.run, args.out, int8_file=None if args.no_int8 else INT8_MODEL_FILE, cv_dir=args.cv)
    return 0


def _training_options(train: argparse.ArgumentParser) -> None:
    """The options `train` and `cv` share: each sets the TrainConfig or AugmentConfig field named
    by its dest; left out, the field keeps its default (see model_export/train.py and augment.py)."""
    train.argument_default = argparse.SUPPRESS
    train.add_argument("--data", type=Path, required=True,
                       help="ROOT with train/{NORMAL,PNEUMONIA} (val/ scored separately), "
                            "or a folder of images with --labels CSV")
    train.add_argument("--labels", dest="labels_csv", type=Path, help="metadata CSV (X_ray_image_name, Label)")
    train.add_argument("--out", type=Path, required=True, help="run folder (resumes if it exists)")
    train.add_argument("--arch", dest="architecture", choices=("gapnet", "effnet", "seed", "tiny"))
    train.add_argument("--image-size", type=int)
    train.add_argument("--batch-size", type=int)
    train.add_argument("--epochs", type=int)
    train.add_argument("--lr", dest="learning_rate", type=float)
    train.add_argument("--patience", type=int)
    train.add_argument("--max-minutes", type=float, help="stop after the epoch past this time")
    train.add_argument("--val-fraction", dest="validation_fraction", type=float,
                       help="random patient split: share of the patients left after the shift blocks")
    train.add_argument("--shift-block", type=float,
                       help="share of each id series' images held out at each end (0: none)")
    train.add_argument("--label-smoothing", type=float)
    train.add_argument("--seed", type=int)
    train.add_argument("--no-class-weights", dest="class_weights", action="store_false")
    train.add_argument("--zoom", type=float)
    train.add_argument("--keep-aspect", dest="independent_zoom", action="store_false",
                       help="zoom height and width together")
    train.add_argument("--rotation", dest="rotation_degrees", type=float, help="degrees")
    train.add_argument("--shift", type=float)
    train.add_argument("--no-flip", dest="flip", action="store_false")
    train.add_argument("--contrast", type=float)
    train.add_argument("--brightness", type=float, help="+- added, in 0..1 units")
    train.add_argument("--gamma", type=float)
    train.add_argument("--blur", dest="blur_probability", type=float, help="probability of a Gaussian blur")
    train.add_argument("--border", dest="border_probability", type=float, help="probability of a uniform frame")
    train.add_argument("--letterbox", dest="letterbox_probability", type=float, help="probability of a letterbox")
    train.add_argument("--text", dest="text_probability", type=float, help="probability of burned-in text blocks")
    train.add_argument("--cache-dir", type=Path)
    train.add_argument("--model-name")
    train.add_argument("--model-version")


def _ensemble(args: argparse.Namespace) -> int:
    from model_export.ensemble import build_ensemble

    build_ensemble(args.runs, args.out, args.model_version)
    return 0


def _combine(args: argparse.Namespace) -> int:
    from model_export.combine import build

    build(args.gapnet, args.effnet, args.out, args.model_version, args.gapnet_card)
    return 0


def _borders(args: argparse.Namespace) -> int:
    from model_export.borders import measure

    measure(args.model, args.data, args.card, args.out)
    return 0


def _members(args: argparse.Namespace) -> int:
    from model_export.member_ablation import run_members

    run_members(args.run)
    return 0


def _ablation(args: argparse.Namespace) -> int:
    from model_export.ablation import run_ablation

    run_ablation(args.run, args.baseline, args.compare)
    return 0


def _faithfulness(args: argparse.Namespace) -> int:
    from model_export.faithfulness import run_faithfulness

    result = run_faithfulness(args.model, args.data, args.card, args.images, args.out)
    return 0 if result.passed else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m model_export", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train, pick the threshold, export ONNX")
    cv = commands.add_parser("cv", help="k-fold cross-validation grouped by patient (resumable)")
    cv.add_argument("--folds", type=int, default=5)
    for parser_ in (train, cv):
        _training_options(parser_)
    train.set_defaults(handler=_train)
    cv.set_defaults(handler=_cv)

    evaluate = commands.add_parser("evaluate", help="score an exported ONNX model on labelled data")
    evaluate.add_argument("--model", type=Path, required=True, help="exported .onnx file")
    evaluate.add_argument("--data", type=Path, required=True, help="labelled folder, either layout")
    evaluate.add_argument("--labels", type=Path, help="metadata CSV for the CSV layout")
    evaluate.add_argument("--split", help="sub-folder of --data to score (e.g. val)")
    evaluate.add_argument("--out", type=Path, required=True, help="folder for JSON and PNGs")
    evaluate.set_defaults(handler=_evaluate)

    faithful = commands.add_parser("faithfulness", help="do the heatmaps show what the model used? (deletion check)")
    faithful.add_argument("--model", type=Path, required=True, help="exported .onnx file with a CAM output")
    faithful.add_argument("--data", type=Path, required=True, help="ROOT with train/PNEUMONIA")
    faithful.add_argument("--card", type=Path, default=Path("models/model_card.json"),
                          help="the model card whose held-out split lists give the images")
    faithful.add_argument("--images", type=int, default=200)
    faithful.add_argument("--out", type=Path, help="JSON report")
    faithful.set_defaults(handler=_faithfulness)

    borders = commands.add_parser("borders", help="do frames, letterboxes and burned-in text change the label?")
    borders.add_argument("--model", type=Path, required=True, help="exported .onnx file")
    borders.add_argument("--data", type=Path, required=True, help="ROOT with train/{NORMAL,PNEUMONIA}")
    borders.add_argument("--card", type=Path, default=Path("models/model_card.json"),
                         help="the model card whose held-out split lists give the images")
    borders.add_argument("--out", type=Path, help="JSON report")
    borders.set_defaults(handler=_borders)

    ensemble = commands.add_parser("ensemble", help="several finished runs on the same splits as one model")
    ensemble.add_argument("--runs", type=Path, nargs="+", required=True)
    ensemble.add_argument("--out", type=Path, required=True)
    ensemble.add_argument("--model-version")
    ensemble.set_defaults(handler=_ensemble)

    combine = commands.add_parser("combine", help="a gapnet ONNX file and an effnet run as one model (mean logit map)")
    combine.add_argument("--gapnet", type=Path, required=True, help="the from-scratch member's .onnx file")
    combine.add_argument("--effnet", type=Path, required=True, help="the pretrained member's finished run folder")
    combine.add_argument("--out", type=Path, required=True, help="run folder for the combined model (publishable)")
    combine.add_argument("--gapnet-card", type=Path, help="the gapnet member's model_card.json (its type cut)")
    combine.add_argument("--model-version", default="3.0.0")
    combine.set_defaults(handler=_combine)

    members = commands.add_parser("members", help="model v3's ablation: members, frozen vs fine-tuned, resolution")
    members.add_argument("--run", type=Path, required=True, help="the folder `combine` wrote")
    members.set_defaults(handler=_members)

    ablation = commands.add_parser("ablation", help="inference-only comparisons on a run, for the card")
    ablation.add_argument("--run", type=Path, required=True)
    ablation.add_argument("--baseline", type=Path, help="an earlier model to compare on the images it never saw")
    ablation.add_argument("--compare", type=Path, nargs="*", default=[], help="other runs on the same splits")
    ablation.set_defaults(handler=_ablation)

    publish = commands.add_parser("publish", help="ship a run's model with its model card")
    publish.add_argument("--run", type=Path, required=True, help="a finished training run folder")
    publish.add_argument("--out", type=Path, default=Path("models"), help="where the shipped model lives")
    publish.add_argument("--no-int8", action="store_true", help="skip the int8 model for CPU hosts")
    publish.add_argument("--cv", type=Path, help="a cross-validation folder (python -m model_export cv) for the card")
    publish.set_defaults(handler=_publish)

    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    status: int = args.handler(args)
    return status


if __name__ == "__main__":
    sys.exit(main())
