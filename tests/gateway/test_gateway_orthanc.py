"""The gateway between a real Orthanc and the real service: a study routed from Orthanc by
C-STORE gets one SR and one SC for its frontal image only, readable by WADO-RS, clean under
dciodvfy, never doubled by replays, and never lost to a service outage or a killed gateway."""

from __future__ import annotations

import io
import signal
import subprocess
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pydicom
import pytest

from gateway import MANUFACTURER
from gateway.identity import SR, instance_uid
from gateway.results_sr import P_PNEUMONIA
from tests.conftest import REPO_ROOT
from tests.gateway.conftest import GATEWAY_AE, GatewayProcess
from tests.gateway.orthanc import Orthanc, running_orthanc
from tests.gateway.study import Study, chest_study
from tests.servers import free_port, running_service

pytestmark = pytest.mark.slow

SR_STORAGE = "1.2.840.10008.5.1.4.1.1.88.34"  # Comprehensive 3D SR
SC_STORAGE = "1.2.840.10008.5.1.4.1.1.7"
WITHIN_S = 30  # the target: results within 30 s of the study arriving


def wait_for(condition: Callable[[], Any], timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    pytest.fail(f"timed out after {timeout_s} s waiting for {what}")


def put_study(pacs: Orthanc, study: Study) -> str:
    """The study into Orthanc (as the modality sent it); Orthanc's id for it."""
    return str([pacs.upload(data) for data in study.instances][0]["ParentStudy"])


def results(pacs: Orthanc, study_id: str) -> dict[str, list[str]]:
    """The gateway's series in the study: {SeriesInstanceUID: [SOP Instance UIDs]}."""
    found = {}
    for series in pacs.series_of(study_id):
        tags = series["MainDicomTags"]
        if tags.get("Manufacturer") == MANUFACTURER or tags.get("SeriesNumber") in ("9901", "9902"):
            instances = [pacs.http.get(f"/instances/{i}").json()["MainDicomTags"]["SOPInstanceUID"]
                         for i in series["Instances"]]
            found[tags["SeriesInstanceUID"]] = instances
    return found


def result_count(pacs: Orthanc, study_id: str) -> int:
    return sum(len(sops) for sops in results(pacs, study_id).values())


def start_gateway(gateways: list[GatewayProcess], pacs: Orthanc, tmp_path: Path, service: str, *extra: str,
                  dicomweb: str | None = None, store_to: str | None = None) -> GatewayProcess:
    destination = ["--store-to", store_to] if store_to else ["--dicomweb", dicomweb or pacs.dicomweb]
    gateway = GatewayProcess(tmp_path / "state", service, *destination, *extra)
    gateways.append(gateway)
    gateway.start()
    pacs.add_modality("gateway", GATEWAY_AE, gateway.port)
    return gateway


def measured(sr: pydicom.Dataset, concept: str) -> float:
    """The numeric value of the SR content item named `concept`, anywhere in the tree."""
    for item in sr.get("ContentSequence", []):
        name = item.get("ConceptNameCodeSequence")
        if name and name[0].CodeValue == concept and "MeasuredValueSequence" in item:
            return float(item.MeasuredValueSequence[0].NumericValue)
        try:
            return measured(item, concept)
        except KeyError:
            pass
    raise KeyError(concept)


def seconds(log_time: str) -> float:
    return datetime.fromisoformat(log_time.replace("Z", "+00:00")).timestamp()


def dciodvfy_errors(path: Path) -> list[str]:
    done = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True)
    return [line for line in (done.stdout + done.stderr).splitlines() if line.startswith("Error")]


def states(gateway: GatewayProcess) -> list[str]:
    return sorted(job["state"] for job in gateway.command("jobs"))


def test_frontal_image_gets_one_sr_and_one_sc_and_replays_write_nothing(pacs, service, gateways, tmp_path, val_images):
    study = chest_study([val_images[-1]], lateral_image=val_images[0])
    metrics_port = free_port()
    gateway = start_gateway(gateways, pacs, tmp_path, service, "--metrics", f"127.0.0.1:{metrics_port}")
    study_id = put_study(pacs, study)

    started = time.monotonic()
    pacs.send_study("gateway", study_id)
    wait_for(lambda: result_count(pacs, study_id) == 2, WITHIN_S, "one SR and one SC in Orthanc")
    print(f"study routed -> SR and SC in Orthanc: {time.monotonic() - started:.1f} s")

    written = results(pacs, study_id)
    assert len(written) == 2 and all(len(sops) == 1 for sops in written.values())  # a new series per kind
    objects = {}
    for series_uid, (sop_uid,) in written.items():
        data = pacs.wado_instance(study.study_uid, series_uid, sop_uid)
        dataset = pydicom.dcmread(io.BytesIO(data))
        objects[str(dataset.SOPClassUID)] = dataset
        path = tmp_path / f"{dataset.SOPClassUID}.dcm"
        path.write_bytes(data)
        assert dciodvfy_errors(path) == [], f"dciodvfy errors in {dataset.SOPClassUID.name}"
    sr, sc = objects[SR_STORAGE], objects[SC_STORAGE]
    source = pydicom.dcmread(io.BytesIO(study.frontal[0]))
    for result in (sr, sc):
        assert result.StudyInstanceUID == study.study_uid
        assert (result.PatientID, result.PatientName, result.AccessionNumber) == (
            source.PatientID, source.PatientName, source.AccessionNumber)
        assert result.SeriesInstanceUID != source.SeriesInstanceUID and result.Manufacturer == MANUFACTURER

    answer = httpx.post(f"{service}/predict", content=study.frontal[0], headers={"Content-Type": "application/dicom"}).json()
    assert measured(sr, P_PNEUMONIA.value) == pytest.approx(answer["probabilities"]["pneumonia"], abs=1e-4)
    assert sr.VerificationFlag == "UNVERIFIED" and sr.CompletionFlag == "COMPLETE"
    assert sr.SOPInstanceUID == instance_uid(source.SOPInstanceUID, answer["model"]["sha256"], SR)
    evidence = sr.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0].ReferencedSOPSequence[0]
    assert evidence.ReferencedSOPInstanceUID == source.SOPInstanceUID
    assert sc.BurnedInAnnotation == "YES" and sc.SamplesPerPixel == 3
    assert sc.SourceImageSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID
    assert states(gateway) == ["skipped", "skipped", "written"]  # the lateral and the CT passed over
    arrivals = [line["time"] for line in gateway.events("received") + gateway.events("skipped")]
    assert seconds(gateway.events("written")[0]["time"]) - seconds(max(arrivals)) >= 1.0  # --quiet-s 1: study complete first
    metrics = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics").text
    for line in ("cxr_gateway_written_total 1.0", "cxr_gateway_scored_total 1.0", "cxr_gateway_received_total 3.0",
                 'cxr_gateway_skipped_total{attribute="ViewPosition"} 1.0', "cxr_gateway_receipt_to_written_seconds_count 1.0"):
        assert line in metrics
    log = gateway.log.read_text()  # no patient data, no identifying UIDs in the logs
    for value in (str(source.PatientName), source.PatientID, source.AccessionNumber, study.study_uid, source.SOPInstanceUID):
        assert value not in log

    # Replays: the whole study again, now with the SR and SC in it (Orthanc routes all of it)
    for _ in range(3):
        pacs.send_study("gateway", study_id)
    time.sleep(3)  # longer than --quiet-s: anything new would be under way
    assert result_count(pacs, study_id) == 2
    assert len(pacs.instances(study_id)) == 5
    assert len(gateway.events("own_output_ignored")) == 6 and len(gateway.events("replayed")) == 9
    assert len(gateway.events("written")) == 1 and states(gateway) == ["skipped", "skipped", "written"]


def test_study_arriving_while_the_service_is_down_completes_when_it_is_back(
        pacs, gateways, tmp_path, val_images, bundled_model):
    port = free_port()  # nothing listens there for the first 20 s
    gateway = start_gateway(gateways, pacs, tmp_path, f"http://127.0.0.1:{port}", "--retry-base-s", "1",
                            "--retry-max-s", "4", "--max-attempts", "30")
    study = chest_study([val_images[1]], lateral_image=val_images[2])
    study_id = put_study(pacs, study)
    pacs.send_study("gateway", study_id)
    arrived = time.monotonic()
    wait_for(lambda: len(gateway.events("attempt_failed")) >= 2, 20, "failed attempts while the service is down")
    time.sleep(max(0.0, 20 - (time.monotonic() - arrived)))
    assert result_count(pacs, study_id) == 0

    with running_service(tmp_path / "service.log", bundled_model, port=port):
        back = time.monotonic()
        wait_for(lambda: result_count(pacs, study_id) == 2, 60, "the results once the service is back")
        print(f"service back -> results in Orthanc: {time.monotonic() - back:.1f} s "
              f"({len(gateway.events('attempt_failed'))} failed attempts before)")
    assert states(gateway) == ["skipped", "skipped", "written"]


def test_persistent_failure_is_dead_lettered_and_retry_completes_it(pacs, service, gateways, tmp_path, val_images):
    broken = start_gateway(gateways, pacs, tmp_path, service, "--max-attempts", "2", "--retry-base-s", "0.2",
                           dicomweb=f"{pacs.url}/no-dicom-web-here")
    study = chest_study([val_images[3]], lateral_image=val_images[4])
    study_id = put_study(pacs, study)
    pacs.send_study("gateway", study_id)
    dead = wait_for(lambda: broken.command("jobs", "--dead"), 30, "the job dead-lettered")
    assert len(dead) == 1 and dead[0]["attempts"] == 2 and "STOW-RS answered HTTP 404" in dead[0]["detail"]
    assert len(broken.events("scored")) == 1  # the second attempt only sent again what the first had made
    broken.stop()

    fixed = start_gateway(gateways, pacs, tmp_path, service)  # the same state, the right DICOMweb URL
    time.sleep(2)
    assert result_count(pacs, study_id) == 0  # dead-lettered stays dead until an operator says otherwise
    assert fixed.command("retry") == [{"requeued": 1}]
    wait_for(lambda: result_count(pacs, study_id) == 2, WITHIN_S, "the results after `cxr-gateway retry`")
    assert states(fixed) == ["skipped", "skipped", "written"]
    assert not fixed.events("scored") and fixed.events("written")[0]["scored_earlier"] is True
    assert not list((fixed.state / "results").glob("*"))  # kept until written, then removed


def test_gateway_killed_mid_study_loses_nothing_and_doubles_nothing(pacs, service, gateways, tmp_path, val_images):
    study = chest_study(val_images[9:12], lateral_image=val_images[5])
    study_id = put_study(pacs, study)
    first = start_gateway(gateways, pacs, tmp_path, service)
    job = pacs.http.post("/modalities/gateway/store", json={"Resources": [study_id], "Asynchronous": True}).json()
    wait_for(lambda: first.events("received"), 30, "the first instance received")
    first.stop(signal.SIGKILL)  # while Orthanc is still sending
    received_before_kill = len(first.events("received"))
    wait_for(lambda: pacs.http.get(f"/jobs/{job['ID']}").json()["State"] in ("Success", "Failure"), 30,
             "Orthanc's send job to end")

    second = start_gateway(gateways, pacs, tmp_path, service)  # the same state
    pacs.send_study("gateway", study_id)  # Orthanc never retries by itself: the site routes it again
    wait_for(lambda: second.events("written"), 30, "a first result after the restart")
    second.stop(signal.SIGKILL)  # with jobs still to do

    third = start_gateway(gateways, pacs, tmp_path, service)
    wait_for(lambda: result_count(pacs, study_id) == 6, WITHIN_S, "three SRs and three SCs")
    pacs.send_study("gateway", study_id)
    time.sleep(3)
    print(f"received before the first kill: {received_before_kill} of 5")
    found = results(pacs, study_id)
    assert sorted(len(sops) for sops in found.values()) == [3, 3]
    assert states(third) == ["skipped", "skipped", "written", "written", "written"]
    assert not list((tmp_path / "state" / "incoming").iterdir())  # finished jobs' files and crash leftovers gone


def test_results_go_back_by_c_store_with_store_to(pacs, service, gateways, tmp_path, val_images):
    gateway = start_gateway(gateways, pacs, tmp_path, service, dicomweb="",
                            store_to=f"{pacs.ae_title}@127.0.0.1:{pacs.dicom_port}")
    study = chest_study([val_images[6]], lateral_image=val_images[7])
    study_id = put_study(pacs, study)
    pacs.send_study("gateway", study_id)
    wait_for(lambda: result_count(pacs, study_id) == 2, WITHIN_S, "one SR and one SC stored by C-STORE")
    assert gateway.events("started")[0]["sends_by"] == "C-STORE"
    assert states(gateway) == ["skipped", "skipped", "written"]


def test_calling_ae_titles_off_the_allow_list_are_rejected(pacs, gateways, tmp_path):
    from pynetdicom import AE
    from pynetdicom.sop_class import Verification

    gateway = start_gateway(gateways, pacs, tmp_path, "http://127.0.0.1:9", "--allow-aet", f"{pacs.ae_title},OTHER_PACS")
    assert pacs.http.post("/modalities/gateway/echo", json={}).status_code == 200  # Orthanc is on the list
    intruder = AE(ae_title="INTRUDER")
    intruder.add_requested_context(Verification)
    association = intruder.associate("127.0.0.1", gateway.port, ae_title=GATEWAY_AE)
    assert association.is_rejected


def test_demo_routing_script_sends_new_studies_and_never_the_results(network, service, gateways, tmp_path, val_images):
    """docker/pacs-demo's Lua script in a real Orthanc: a study stored there reaches the gateway by
    itself, and the results stored back do not travel again."""
    script = REPO_ROOT / "docker" / "pacs-demo" / "route-to-gateway.lua"
    with running_orthanc(tmp_path / "orthanc", LuaScripts=[str(script)]) as pacs:
        gateway = start_gateway(gateways, pacs, tmp_path, service)
        pacs.add_modality("cxr-gateway", GATEWAY_AE, gateway.port)  # the name the script sends to
        study = chest_study([val_images[8]], lateral_image=val_images[10])
        study_id = put_study(pacs, study)  # nothing else: the script routes each stored instance
        wait_for(lambda: result_count(pacs, study_id) == 2, WITHIN_S, "the SR and SC via the routing script")
        time.sleep(3)
        assert len(gateway.events("received")) + len(gateway.events("skipped")) == 3
        assert not gateway.events("own_output_ignored") and not gateway.events("replayed")
        assert states(gateway) == ["skipped", "skipped", "written"]


def test_a_refusal_by_the_service_is_recorded_and_nothing_is_written(pacs, service, gateways, tmp_path, val_images):
    """Attributes of a frontal chest CR over a photograph: the service's image check refuses it."""
    from PIL import Image
    from skimage import data

    photograph = tmp_path / "astronaut.png"
    Image.fromarray(data.astronaut()).save(photograph)
    study = chest_study([photograph], lateral_image=val_images[0])
    gateway = start_gateway(gateways, pacs, tmp_path, service)
    study_id = put_study(pacs, study)
    pacs.send_study("gateway", study_id)
    refused = wait_for(lambda: [job for job in gateway.command("jobs") if job["state"] == "refused"], WITHIN_S, "the refusal")
    assert refused[0]["detail"].startswith("not_chest_xray") and refused[0]["attempts"] == 1
    time.sleep(1)
    assert result_count(pacs, study_id) == 0 and not gateway.events("written")
