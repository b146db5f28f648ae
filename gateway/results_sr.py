"""The result as a Comprehensive 3D SR following TID 1500 (IHE AI Results): the finding
pneumonia present or absent, its probability and the threshold, the bacterial and viral
probabilities, the algorithm (name, version, sha256), the scored image referenced, unverified."""

from __future__ import annotations

import highdicom as hd
import pydicom
from pydicom.sr.codedict import codes

from gateway import MANUFACTURER
from gateway.identity import SERIES_NUMBERS, SR, instance_uid, series_uid
from gateway.scoring import Score

PNEUMONIA = hd.sr.CodedConcept("233604007", "SCT", "Pneumonia")
PRESENT = hd.sr.CodedConcept("52101004", "SCT", "Present")
ABSENT = hd.sr.CodedConcept("2667000", "SCT", "Absent")
CHEST_XRAY = hd.sr.CodedConcept("399208008", "SCT", "Plain X-ray of chest")
LUNG = hd.sr.CodedConcept("39607008", "SCT", "Lung structure")
# No standard code names a model's output probability; a private scheme (99...) is DICOM's way.
SCHEME = "99CXRAI"
P_PNEUMONIA = hd.sr.CodedConcept("P-PNEU", SCHEME, "Probability of pneumonia")
THRESHOLD = hd.sr.CodedConcept("T-PNEU", SCHEME, "Decision threshold for pneumonia")
P_BACTERIAL = hd.sr.CodedConcept("P-BACT", SCHEME, "Probability of bacterial pneumonia given pneumonia")
P_VIRAL = hd.sr.CodedConcept("P-VIRA", SCHEME, "Probability of viral pneumonia given pneumonia")
SERIES_DESCRIPTION = "AI result: pneumonia (SR, unverified)"


def build_sr(source: pydicom.Dataset, score: Score) -> hd.sr.Comprehensive3DSR:
    """`source`: the scored image (its header is enough); same study, patient and study modules."""
    prediction = score.prediction
    algorithm = hd.sr.AlgorithmIdentification(
        name=score.model_name, version=prediction.model_version, parameters=[f"sha256={score.model_sha256}"])
    unit = codes.UCUM.NoUnits

    def measurement(name: hd.sr.CodedConcept, value: float) -> hd.sr.Measurement:
        return hd.sr.Measurement(name=name, value=round(value, 6), unit=unit, algorithm_id=algorithm)

    measurements = [measurement(P_PNEUMONIA, prediction.p_pneumonia), measurement(THRESHOLD, prediction.threshold)]
    if score.p_bacterial is not None and score.p_viral is not None:
        measurements += [measurement(P_BACTERIAL, score.p_bacterial), measurement(P_VIRAL, score.p_viral)]
    group = hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=instance_uid(source.SOPInstanceUID, score.model_sha256, "tracking"), identifier="pneumonia"),
        finding_type=PNEUMONIA,
        algorithm_id=algorithm,
        finding_sites=[hd.sr.FindingSite(anatomic_location=LUNG)],
        measurements=measurements,
        qualitative_evaluations=[hd.sr.QualitativeEvaluation(
            name=PNEUMONIA, value=PRESENT if prediction.label == "pneumonia" else ABSENT)],
        source_images=[hd.sr.SourceImageForMeasurementGroup.from_source_image(source)],
    )
    device = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=instance_uid("device", score.model_sha256, "observer"), name=score.model_name,
            manufacturer_name=MANUFACTURER, model_name=f"{score.model_name} {prediction.model_version}"))
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=device),
        procedure_reported=CHEST_XRAY,
        imaging_measurements=[group],
    )
    sr = hd.sr.Comprehensive3DSR(
        evidence=[source], content=report,
        series_instance_uid=series_uid(source.StudyInstanceUID, score.model_sha256, SR),
        series_number=SERIES_NUMBERS[SR],
        sop_instance_uid=instance_uid(source.SOPInstanceUID, score.model_sha256, SR),
        instance_number=int(source.get("InstanceNumber") or 1),
        manufacturer=MANUFACTURER,
        is_complete=True, is_final=False, is_verified=False,  # an aid until a radiologist signs it
    )
    sr.SeriesDescription = SERIES_DESCRIPTION
    sr.SoftwareVersions = f"{score.model_name} {prediction.model_version}"
    return sr
