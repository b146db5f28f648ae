#!/usr/bin/env bash
# Build the CPU image, run it with docker compose, send a real X-ray, check the answer; then the
# DICOM gateway (profile gateway): a chest study C-STOREd to it is scored by that service.
# Starts a Docker engine if none runs (as root, installing docker.io and docker-compose with apt
# where missing; skipped with the reason where that cannot be done), and builds a local stand-in
# for the base image when it cannot be pulled. Traffic goes to 127.0.0.1 only.
set -euo pipefail
cd "$(dirname "$0")/.."

PORT=${CXR_SMOKE_PORT:-18080}
BASE_IMAGE=python:3.11-slim
XRAY=${CXR_SMOKE_XRAY:-../shared/data/chest_xray/val/PNEUMONIA/person1946_bacteria_4874.jpeg}
export CXR_PUBLISH_PORT=$PORT CXR_GATEWAY_PORT=${CXR_SMOKE_GATEWAY_PORT:-18112}
# a compose project of its own: never the containers or volumes of a deployment from this checkout
export COMPOSE_PROJECT_NAME=cxr-smoke
# the gateway sends its results back to itself by C-STORE (it ignores its own SR and SC): the
# round trip needs no PACS
export CXR_GATEWAY_STORE_TO=CXR_AI@127.0.0.1:11112 CXR_GATEWAY_DICOMWEB=
# a key made for this run only: compose passes it to the service as a secret file
KEY=$(python3 -c 'import secrets; print(secrets.token_hex(24))')
export CXR_API_KEYS_SECRET=$(mktemp)
echo "$KEY" > "$CXR_API_KEYS_SECRET"
chmod 644 "$CXR_API_KEYS_SECRET"  # read by the container's unprivileged user

log() { echo "[docker-smoke] $*" >&2; }

skip() { log "SKIPPED: $*"; rm -f "$CXR_API_KEYS_SECRET"; exit 0; }

ensure_engine() {
    docker info >/dev/null 2>&1 && return
    # like the tests that need an apt package: skipped with the reason where it cannot be had
    [ "$(id -u)" = 0 ] || skip "no Docker engine reachable, and starting one needs root"
    if ! command -v dockerd >/dev/null; then
        command -v apt-get >/dev/null || skip "no Docker engine, and no apt-get to install docker.io"
        log "installing docker.io"
        (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io >/dev/null) \
            || skip "no Docker engine, and installing docker.io failed"
    fi
    log "starting dockerd"
    (dockerd >/tmp/cxr-dockerd.log 2>&1 &)
    for _ in $(seq 60); do docker info >/dev/null 2>&1 && return; sleep 1; done
    log "dockerd did not start:"; tail -20 /tmp/cxr-dockerd.log >&2; exit 1
}

compose() {
    if docker compose version >/dev/null 2>&1; then docker compose "$@"
    else
        command -v docker-compose >/dev/null || {
            log "installing docker-compose"
            (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-compose >/dev/null) \
                || skip "no docker compose, and installing docker-compose failed"; }
        docker-compose "$@"
    fi
}

ensure_engine
compose version >/dev/null  # installs docker-compose where missing, here rather than into the build log
if ! docker image inspect "$BASE_IMAGE" >/dev/null 2>&1 && ! docker pull -q "$BASE_IMAGE" >/dev/null 2>&1; then
    log "cannot pull $BASE_IMAGE; building a local stand-in"
    bash docker/build_base_standin.sh "$BASE_IMAGE"
fi
# trust this machine's extra CAs inside the build (TLS-intercepting proxy)
CXR_EXTRA_CA_CERTS="$(cat /usr/local/share/ca-certificates/*.crt 2>/dev/null || true)"
export CXR_EXTRA_CA_CERTS

cleanup() {
    compose --profile cpu --profile gateway down -v --timeout 40 >/dev/null 2>&1 || true
    rm -f "$CXR_API_KEYS_SECRET"
}
trap cleanup EXIT
log "building the CPU and gateway images"
compose --profile cpu --profile gateway build cxr-cpu gateway >/tmp/cxr-docker-build.log 2>&1 \
    || { tail -30 /tmp/cxr-docker-build.log >&2; exit 1; }
log "images built ($SECONDS s since the start)"
compose --profile cpu up -d cxr-cpu
started=$SECONDS
container=$(compose --profile cpu ps -q cxr-cpu)

log "waiting for the container's healthcheck"
for _ in $(seq 90); do
    status=$(docker inspect -f '{{.State.Health.Status}}' "$container")
    [ "$status" = healthy ] && break
    [ "$(docker inspect -f '{{.State.Running}}' "$container")" = true ] || { docker logs "$container" >&2; exit 1; }
    sleep 1
done
[ "$status" = healthy ] || { log "not healthy: $status"; docker logs "$container" >&2; exit 1; }
log "healthy $((SECONDS - started)) s after start"
[ "$(docker exec "$container" id -u)" != 0 ] || { log "container runs as root"; exit 1; }
[ "$(docker inspect -f '{{.HostConfig.Memory}}' "$container")" -gt 0 ] || { log "no memory limit"; exit 1; }

unauthorized=$(curl -sS -o /dev/null -w '%{http_code}' -F "file=@$XRAY" "http://127.0.0.1:$PORT/predict")
[ "$unauthorized" = 401 ] || { log "expected 401 without the key, got $unauthorized"; exit 1; }
log "sending a real X-ray to 127.0.0.1:$PORT"
answer=$(curl -sS --fail-with-body -H "X-API-Key: $KEY" -F "file=@$XRAY" "http://127.0.0.1:$PORT/predict")
python3 - "$answer" <<'PY'
import json, sys
body = json.loads(sys.argv[1])
p = body["probabilities"]
assert body["label"] in ("normal", "pneumonia"), body
assert abs(p["normal"] + p["pneumonia"] - 1) < 1e-6, body
assert body["input"]["format"] == "jpeg" and body["model"]["sha256"], body
print(f"[docker-smoke] answer: {body['label']} (p_pneumonia={p['pneumonia']:.3f}, model {body['model']['version']})",
      file=sys.stderr)
PY
bad=$(curl -sS -o /dev/null -w '%{http_code}' -H "X-API-Key: $KEY" -H 'Content-Type: image/jpeg' --data-binary 'not an image' "http://127.0.0.1:$PORT/predict")
[ "$bad" = 415 ] || { log "expected 415 for a non-image, got $bad"; exit 1; }
provider=$(curl -sS "http://127.0.0.1:$PORT/model" | python3 -c 'import json,sys; print(json.load(sys.stdin)["execution_provider"])')
log "execution provider in the container: $provider"

log "starting the gateway"
compose --profile gateway up -d gateway
gateway=$(compose --profile gateway ps -q gateway)
for _ in $(seq 30); do docker logs "$gateway" 2>&1 | grep -q '"event": "started"' && break; sleep 1; done
docker logs "$gateway" 2>&1 | grep -q '"event": "started"' || { log "gateway did not start"; docker logs "$gateway" >&2; exit 1; }
[ "$(docker exec "$gateway" id -u)" != 0 ] || { log "gateway runs as root"; exit 1; }
# a CR chest study made from the same X-ray inside the gateway's image (pydicom, pynetdicom)
docker cp "$XRAY" "$gateway:/tmp/smoke-xray.jpeg"
docker exec -i "$gateway" python - <<'PY' || { log "C-ECHO/C-STORE to the gateway failed"; docker logs "$gateway" >&2; exit 1; }
import sys

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from pynetdicom import AE

CR, VERIFICATION = "1.2.840.10008.5.1.4.1.1.1", "1.2.840.10008.1.1"
pixels = np.asarray(Image.open("/tmp/smoke-xray.jpeg").convert("L"), dtype=np.uint8)
ds = Dataset()
ds.file_meta = FileMetaDataset()
ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
ds.SOPClassUID, ds.SOPInstanceUID = CR, generate_uid()
ds.file_meta.MediaStorageSOPClassUID, ds.file_meta.MediaStorageSOPInstanceUID = CR, ds.SOPInstanceUID
ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
ds.PatientID, ds.Modality, ds.BodyPartExamined, ds.ViewPosition = "SMOKE", "CR", "CHEST", "PA"
ds.Rows, ds.Columns = pixels.shape
ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PixelRepresentation = 1, "MONOCHROME2", 0
ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
ds.PixelData = pixels.tobytes()
ae = AE(ae_title="SMOKE")
ae.add_requested_context(CR, ExplicitVRLittleEndian)
ae.add_requested_context(VERIFICATION)
assoc = ae.associate("127.0.0.1", 11112, ae_title="CXR_AI")
if not assoc.is_established:
    sys.exit("no association with the gateway")
echo, store = assoc.send_c_echo(), assoc.send_c_store(ds)
assoc.release()
if echo.Status != 0 or store.Status != 0:
    sys.exit(f"C-ECHO status {echo.Status:#06x}, C-STORE status {store.Status:#06x}")
PY
log "study sent to the gateway; waiting for its results"
for _ in $(seq 90); do
    jobs=$(docker exec "$gateway" cxr-gateway jobs || true)
    grep -q '"state": "\(written\|dead\)"' <<<"$jobs" && break
    sleep 1
done
grep -q '"state": "written"' <<<"$jobs" || { log "gateway job not written: $jobs"; docker logs "$gateway" >&2; exit 1; }
docker logs "$gateway" 2>&1 | grep '"event": "written"' | tail -1 | sed 's/^/[docker-smoke] gateway: /' >&2 || true

# SIGTERM reaches each service as PID 1: it drains and exits 0 within its grace period (not killed, 137)
stopping=$SECONDS
compose --profile cpu --profile gateway stop --timeout 40 cxr-cpu gateway >/dev/null 2>&1
for c in "$container" "$gateway"; do
    code=$(docker inspect -f '{{.State.ExitCode}}' "$c")
    [ "$code" = 0 ] || { log "exit code $code after SIGTERM"; docker logs --tail 20 "$c" >&2; exit 1; }
done
log "both stopped cleanly $((SECONDS - stopping)) s after SIGTERM"
log "OK ($SECONDS s)"
