"""GET /model: what is being served and how well it did on validation."""

from __future__ import annotations

from fastapi import APIRouter, Request

from service.http.deps import ClassifierDep, SettingsDep
from service.http.schemas import ModelInfo
from service.inputs.chest_check import describe

router = APIRouter(tags=["model"])


@router.get("/model", response_model=ModelInfo)
async def model_info(request: Request, classifier: ClassifierDep, settings: SettingsDep) -> ModelInfo:
    """Name, version, hash, input size, labels, threshold, execution provider and metrics."""
    metadata = classifier.metadata
    return ModelInfo(
        name=metadata.model_name,
        version=metadata.model_version,
        sha256=classifier.sha256,
        input_size=metadata.input_size,
        labels=list(metadata.labels),
        threshold=metadata.threshold,
        threshold_rule=metadata.extra.get("threshold_rule"),
        preprocessing_version=metadata.preprocessing_version,
        execution_provider=classifier.provider,
        created_at=metadata.created_at,
        training_data_sha256=metadata.training_data_sha256,
        metrics=metadata.validation_metrics,
        outputs=classifier.outputs,
        input_check=describe(classifier.image_check, settings.input_check),
        reference_check={
            "images": classifier.reference.images,
            "largest_difference": classifier.reference.largest_difference,
            "tolerance": classifier.reference.tolerance,
            "passed": classifier.reference.passed,
        },
        api_key_required=bool(request.app.state.api_keys),
    )

