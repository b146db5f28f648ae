"""Two different exported networks as one served model: `python -m model_export combine`.

Why two: a network trained from scratch (gapnet) and an ImageNet-pretrained one fine-tuned on our
data (effnet) have different inductive biases and fail differently when the cohort shifts; the
average of their logits ranks a new cohort better than either (the maintainers' map of the ground
in issue 26). The rules were fixed before training, not tuned on validation:
- pneumonia: the mean of the two members' logit maps, so the CAM's mean is still the logit;
  effnet's map (7x7 at 224 px) is area-resampled onto gapnet's 9x9 grid (nearest-neighbour
  upsampling to 63x63, then 7x7 average pooling: every cell keeps its share, the mean is exact);
- pneumonia type: gapnet's head alone (its bacterial/viral accuracy on the held-out test split,
  0.905, is what v2 promised; the card's ablation shows the alternatives);
- features for the image check: gapnet's, refitted under preprocessing 2 (the card lists what it
  refuses next to v2's; close, not the same images).

The members are ONNX files (gapnet 2.0.0 is shipped as ONNX only), merged at the graph level with
their tensors prefixed; the combined file gets its threshold (the same rule as training), metrics
and a run record like any training run, so `publish` ships it unchanged.
"""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper

from cxr_common.model_metadata import (
    CAM_OUTPUT,
    EXPORT_OUTPUTS,
    FEATURES_OUTPUT,
    INPUT_NAME,
    OUTPUT_NAME,
    RUN_MODEL_FILE,
    VIRAL_OUTPUT,
    ModelMetadata,
)
from model_export import dataset, metrics
from model_export.cache import load_or_preprocess
from model_export.export import describe_outputs
from model_export.train import Arrays, set_metrics

log = logging.getLogger(__name__)

GAPNET_2_GFLOPS = 0.40  # from gapnet 2.0.0's card (its Keras model is not shipped, only the ONNX file)
GRID = 9  # gapnet's CAM grid, kept for the served model (heatmaps, faithfulness)


def _prefixed(model: onnx.ModelProto, prefix: str) -> onnx.GraphProto:
    """The member's graph with every name prefixed but the shared input."""
    renamed = onnx.compose.add_prefix(model, prefix)
    graph = renamed.graph
    for node in graph.node:
        node.input[:] = [INPUT_NAME if name == prefix + INPUT_NAME else name for name in node.input]
    return graph


def _resample_cam(source: str, side: int, out: str) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    """(N, side, side) -> (N, GRID, GRID), each output cell the area-weighted mean of the input."""
    scale = GRID  # side -> side * GRID, then pooled by side: GRID cells
    return [
        helper.make_node("Unsqueeze", [source, "combine/axis1"], ["combine/cam4d"]),
        helper.make_node("Resize", ["combine/cam4d", "", "combine/scales"], ["combine/cam_fine"], mode="nearest"),
        helper.make_node("AveragePool", ["combine/cam_fine"], ["combine/cam_pooled"], kernel_shape=[side, side],
                         strides=[side, side]),
        helper.make_node("Squeeze", ["combine/cam_pooled", "combine/axis1"], [out]),
    ], [
        helper.make_tensor("combine/axis1", TensorProto.INT64, [1], [1]),
        helper.make_tensor("combine/scales", TensorProto.FLOAT, [4], [1.0, 1.0, float(scale), float(scale)]),
    ]


def combine_graphs(gapnet: onnx.ModelProto, effnet: onnx.ModelProto) -> onnx.ModelProto:
    """One model with EXPORT_OUTPUTS from the two members (see the module docstring)."""
    g, e = _prefixed(gapnet, "gapnet/"), _prefixed(effnet, "effnet/")
    effnet_side = next(o for o in effnet.graph.output if o.name == CAM_OUTPUT).type.tensor_type.shape.dim[1].dim_value
    resample, constants = _resample_cam(f"effnet/{CAM_OUTPUT}", effnet_side, "combine/effnet_cam9")
    nodes = [
        *g.node, *e.node, *resample,
        helper.make_node("Add", [f"gapnet/{CAM_OUTPUT}", "combine/effnet_cam9"], ["combine/cam_sum"]),
        helper.make_node("Mul", ["combine/cam_sum", "combine/half"], [CAM_OUTPUT]),
        helper.make_node("ReduceMean", [CAM_OUTPUT], ["combine/logit"], axes=[1, 2], keepdims=0),  # opset 17
        helper.make_node("Unsqueeze", ["combine/logit", "combine/axis1"], ["combine/logit2d"]),
        helper.make_node("Sigmoid", ["combine/logit2d"], [OUTPUT_NAME]),
        helper.make_node("Identity", [f"gapnet/{VIRAL_OUTPUT}"], [VIRAL_OUTPUT]),
        helper.make_node("Identity", [f"gapnet/{FEATURES_OUTPUT}"], [FEATURES_OUTPUT]),
    ]
    constants.append(helper.make_tensor("combine/half", TensorProto.FLOAT, [], [0.5]))
    outputs = {o.name.removeprefix("gapnet/"): o for o in g.output}
    graph = helper.make_graph(
        nodes, "gapnet_effnet_ensemble", [gapnet.graph.input[0]],
        [outputs[name] for name in EXPORT_OUTPUTS],
        initializer=[*g.initializer, *e.initializer, *constants],
    )
    for output in graph.output:
        output.name = output.name.removeprefix("gapnet/")
    model = helper.make_model(graph, opset_imports=list(gapnet.opset_import), ir_version=gapnet.ir_version)
    onnx.checker.check_model(model)
    return model


def _outputs(session: ort.InferenceSession, pixels: np.ndarray) -> dict[str, np.ndarray]:
    from cxr_common.preprocessing import to_model_input

    names = [o.name for o in session.get_outputs()]
    batches = [session.run(names, {INPUT_NAME: to_model_input(pixels[i:i + 32])}) for i in range(0, len(pixels), 32)]
    return {name: np.concatenate([b[k] for b in batches]) for k, name in enumerate(names)}


def logit(p: np.ndarray) -> np.ndarray:
    """Probabilities -> logits, clipped away from 0 and 1."""
    p = np.clip(p, 1e-7, 1 - 1e-7)
    logits: np.ndarray = np.log(p / (1 - p))
    return logits


def check_combination(combined: ort.InferenceSession, members: dict[str, ort.InferenceSession],
                      pixels: np.ndarray) -> float:
    """Largest |p - sigmoid(mean of the members' logits)| on real images: the graph does what it says."""
    ours = _outputs(combined, pixels)[OUTPUT_NAME][:, 0]
    mean_logit = np.mean([logit(_outputs(s, pixels)[OUTPUT_NAME][:, 0]) for s in members.values()], axis=0)
    difference = float(np.max(np.abs(ours - 1 / (1 + np.exp(-mean_logit)))))
    if not difference < 1e-4:
        raise RuntimeError(f"the combined graph differs from the members' mean logit by {difference:.2e}")
    return difference


ENSEMBLE_RULE = (
    "gapnet 2.0.0 (trained from scratch in round 2) and effnet (ImageNet EfficientNet-Lite0, fine-tuned here) "
    "as one graph: the pneumonia logit maps averaged with equal weights (effnet's 7x7 map area-resampled onto "
    "gapnet's 9x9 grid, so the CAM's mean is the logit); the type answer and the image check's features are "
    "gapnet 2.0.0's, unchanged (`model_export/combine.py`)."
)


def build(gapnet_path: Path, effnet_run: Path, out: Path, model_version: str,
          gapnet_card: Path | None = None) -> dict[str, Any]:
    """Writes out/model.onnx and out/run.json (publishable); returns the run record. `gapnet_card`:
    the member's published model card, whose type cut is carried over (the type head is its own)."""
    run: dict[str, Any] = json.loads((effnet_run / "run.json").read_text())
    members = {"gapnet": ort.InferenceSession(str(gapnet_path), providers=["CPUExecutionProvider"]),
               "effnet": ort.InferenceSession(str(effnet_run / RUN_MODEL_FILE), providers=["CPUExecutionProvider"])}
    gapnet_meta = ModelMetadata.from_props(members["gapnet"].get_modelmeta().custom_metadata_map)
    effnet_meta = ModelMetadata.from_props(members["effnet"].get_modelmeta().custom_metadata_map)
    if gapnet_meta.training_data_sha256 != effnet_meta.training_data_sha256:
        raise ValueError("the members were trained on different data; their validation sets would overlap training")
    config = run["config"]
    found = dataset.discover(Path(config["data"]), Path(config["labels_csv"]) if config.get("labels_csv") else None,
                             split="train")
    splits = dataset.from_file_lists(found.examples, run["splits"])
    held = {name: Arrays.of(examples, load_or_preprocess(examples, effnet_meta.input_size))
            for name, examples in splits.validation_sets().items()}

    model = combine_graphs(onnx.load(str(gapnet_path)), onnx.load(str(effnet_run / RUN_MODEL_FILE)))
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    difference = check_combination(session, members, held["validation"].pixels[:64])
    outputs = {name: _outputs(session, arrays.pixels) for name, arrays in held.items()}
    threshold = metrics.choose_threshold_across(
        [(held[name].labels, o[OUTPUT_NAME][:, 0]) for name, o in outputs.items()])
    per_set = {name: set_metrics(held[name], o[OUTPUT_NAME][:, 0], o[VIRAL_OUTPUT][:, 0], threshold)
               for name, o in outputs.items()}
    per_set_thresholds = {name: metrics.choose_threshold(held[name].labels, o[OUTPUT_NAME][:, 0])
                          for name, o in outputs.items()}
    metadata = ModelMetadata(
        model_name="cxr-pneumonia-gapnet-effnet", model_version=model_version,
        input_size=effnet_meta.input_size, labels=effnet_meta.labels, threshold=threshold,
        preprocessing_version=effnet_meta.preprocessing_version,
        training_data_sha256=effnet_meta.training_data_sha256,
        validation_metrics={k: v for k, v in per_set["validation"].items() if k != "pneumonia_type"},
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        extra={"architecture": "ensemble: gapnet 2.0.0 + effnet (EfficientNet-Lite0, ImageNet, fine-tuned)",
               "threshold_rule": metrics.THRESHOLD_RULE_ACROSS,
               "members": json.dumps({"gapnet": _sha256(gapnet_path), "effnet": _sha256(effnet_run / RUN_MODEL_FILE)}),
               "outputs": json.dumps(describe_outputs(session.get_outputs()))},
    )
    onnx.helper.set_model_props(model, metadata.to_props())
    model.producer_name = "model_export.combine"
    out.mkdir(parents=True, exist_ok=True)
    onnx.save(model, out / RUN_MODEL_FILE)

    official = run.get("official_val_metrics")
    official_folder = Path(config["data"]) / "val"
    if official_folder.is_dir() and not config.get("labels_csv"):
        examples = dataset.discover(official_folder).examples
        arrays = Arrays.of(examples, load_or_preprocess(examples, effnet_meta.input_size))
        o = _outputs(session, arrays.pixels)
        official = set_metrics(arrays, o[OUTPUT_NAME][:, 0], o[VIRAL_OUTPUT][:, 0], threshold)
    record = run | {
        "model": {"architecture": metadata.extra["architecture"],
                  "parameters": _parameters(model),
                  "gflops_per_image": run["model"]["gflops_per_image"] + GAPNET_2_GFLOPS},
        "threshold": threshold, "threshold_rule": metrics.THRESHOLD_RULE_ACROSS,
        "per_set_thresholds": per_set_thresholds,
        "type_recalibration": _gapnet_type_cut(gapnet_card),
        "ensemble_rule": ENSEMBLE_RULE,
        "validation_metrics": metadata.validation_metrics, "onnx_metrics": per_set,
        "official_val_metrics": official, "combination_max_abs_diff": difference,
        "members": [{"run": str(gapnet_path), "config": {"label_smoothing": 0.0, "augment": "gapnet 2.0.0's"},
                     "best_epoch": None, "onnx_metrics": None},
                    {"run": str(effnet_run), "config": run["config"], "best_epoch": run["best_epoch"],
                     "onnx_metrics": run["onnx_metrics"]}],
        "created_at": metadata.created_at,
    }
    (out / "run.json").write_text(json.dumps(record, indent=2))
    log.info("combined model written to %s: threshold %.4f; %s", out, threshold,
             ", ".join(f"{k} AUC {v['roc_auc']:.4f}" for k, v in per_set.items()))
    return record


def _gapnet_type_cut(card: Path | None) -> dict[str, Any] | None:
    if card is None:
        return None
    cut: dict[str, Any] | None = json.loads(card.read_text())["threshold"].get("type")
    if cut is not None:
        cut = cut | {"rule": "gapnet 2.0.0's own type head, unchanged; its cut: " + cut["rule"]}
    return cut


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _parameters(model: onnx.ModelProto) -> int:
    return int(sum(np.prod(t.dims) for t in model.graph.initializer))

