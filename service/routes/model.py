"""GET /model: what is being served and how well it did on validation."""

from __future__ import annotations

from fastapi import APIRouter

from service.deps import ClassifierDep
from service.schemas import ModelInfo

router = APIRouter(tags=["model"])


@router.get("/model", response_model=ModelInfo)
async def model_info(classifier: ClassifierDep):
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
    )
