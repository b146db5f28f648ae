"""What one Kubernetes pod of the chart (one worker process, one core's threads) costs per image.

    python -m benchmarks.pod_budget [--seconds 10] [--concurrency 1 4 16]

Starts the service as the Helm chart runs it (CXR_WORKERS=1, CXR_INTRA_OP_THREADS=1,
CXR_DECODE_THREADS=2), sends the benchmark mix (the 16 val JPEGs at full resolution and a chest
DICOM) at each concurrency, and reports the pod's CPU time per image (user + system, every thread
of the supervisor and its worker, from /proc) and its peak resident memory; then its peak memory under the largest
uploads the limits let through (a val X-ray enlarged to CXR_MAX_PIXELS as a PNG, and as a 16-bit
DICOM just under CXR_MAX_UPLOAD_MB), which is what the pod's memory limit must hold.

CPU time per image is what sizes a pod on a shared machine: wall-clock throughput moves with
whatever else runs (this project's machine trains models beside it), CPU seconds per image much
less. One core then serves at most 1 / (CPU s per image) images/s; docs/scaling.md derives the
pod count, the autoscaler's target and the memory limit from these numbers.
"""

from __future__ import annotations

import io
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.cpu_cost import tree_cpu_s, tree_memory_mb
from benchmarks.loadgen import build_requests, run_load
from benchmarks.serve import HOST, Server, benchmark_parser, load_bodies
from service.config import Settings

# the environment the chart gives a pod with a CPU request of 1 (deploy/helm/cxr-pneumonia/values.yaml)
POD_ENV = {"CXR_WORKERS": "1", "CXR_INTRA_OP_THREADS": "1", "CXR_DECODE_THREADS": "2"}
CR_SIZE = (2500, 3000)  # width, height of a computed radiography plate (35 x 43 cm at 0.14 mm)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time so far of the pod's processes: the supervisor and its worker."""
    return sum(tree_cpu_s(pid).values())


def chest_dicoms(data: Path, tmp: Path, size: tuple[int, int] = CR_SIZE) -> list[tuple[bytes, str]]:
    """The val X-rays as uncompressed 12-bit CR DICOMs at a detector's size (3000 x 2500 px,
    15 MB each): what a PACS sends, heavier to receive and decode than the val JPEGs."""
    from PIL import Image

    from tests.dicoms import chest_dataset, to_bytes

    bodies = []
    for i, path in enumerate(sorted((data / "val").rglob("*.jpeg"))[::4]):
        with Image.open(path) as image:
            image.convert("L").resize(size).save(tmp / f"{i}.png")
        bodies.append((to_bytes(chest_dataset(tmp / f"{i}.png")), "application/dicom"))
    return bodies


def largest_uploads(data: Path, tmp: Path) -> list[tuple[bytes, str]]:
    """A real X-ray enlarged to the most pixels the service decodes, as a PNG (a JPEG would be
    decoded at a reduced size, in draft mode); and as an uncompressed 16-bit DICOM just under
    the upload limit."""
    from PIL import Image

    from tests.dicoms import chest_dataset, to_bytes

    defaults = Settings.model_fields
    side = int(defaults["max_pixels"].default ** 0.5)
    dicom_side = int((defaults["max_upload_mb"].default * 1024 * 1024 * 0.95 / 2) ** 0.5)
    with Image.open(sorted((data / "val" / "PNEUMONIA").iterdir())[0]) as image:
        gray = image.convert("L")
    buffer = io.BytesIO()
    gray.resize((side, side)).save(buffer, "PNG", compress_level=1)
    gray.resize((dicom_side, dicom_side)).save(tmp / "large.png")
    return [(buffer.getvalue(), "image/png"), (to_bytes(chest_dataset(tmp / "large.png")), "application/dicom")]


def main(argv: list[str] | None = None) -> int:
    parser = benchmark_parser(__doc__, prog="python -m benchmarks.pod_budget")
    parser.add_argument("--seconds", type=float, default=10.0, help="per concurrency")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--large-seconds", type=float, default=5.0, help="per kind of largest upload")
    parser.add_argument("--large-concurrency", type=int, default=4)
    parser.add_argument("--mix", choices=("benchmark", "cr-dicom"), default="benchmark",
                        help="the val JPEGs and a DICOM (benchmarks.serve's mix), or detector-size CR DICOMs")
    parser.add_argument("--pin", type=int, metavar="CORE",
                        help="run the service on this one core (taskset), as a pod with a CPU limit of 1 would")
    args = parser.parse_args(argv)

    if args.mix == "cr-dicom":
        with tempfile.TemporaryDirectory() as tmp:
            bodies = chest_dicoms(args.data, Path(tmp))
    else:
        bodies = load_bodies(args.data)
    pinned = None if args.pin is None else (
        lambda port: ["taskset", "-c", str(args.pin), sys.executable, "-m", "service", "--port", str(port),
                      "--model", str(args.model)])
    server = Server("service", args.model, extra_env=POD_ENV, command=pinned)
    try:
        pid = server.process.pid
        print(f"ready: rss {tree_memory_mb(pid, 'VmRSS'):.0f} MB", flush=True)
        requests = build_requests(HOST, server.port, bodies)
        run_load(HOST, server.port, requests, 1, 1.0)  # warm-up, discarded
        for concurrency in args.concurrency:
            cpu_before, started = cpu_seconds(pid), time.perf_counter()
            result = run_load(HOST, server.port, requests, concurrency, args.seconds)
            cpu, wall = cpu_seconds(pid) - cpu_before, time.perf_counter() - started
            images = len(result.latencies_s)
            print(f"c={concurrency:<3} {images:5d} images in {wall:5.1f} s ({result.throughput:6.1f} img/s wall)  "
                  f"CPU {cpu:6.2f} s = {cpu / max(images, 1) * 1000:5.2f} ms/image "
                  f"(-> {images / cpu if cpu else float('nan'):6.1f} img/s per core)  "
                  f"p50 {result.percentile_ms(50):6.1f} ms  p95 {result.percentile_ms(95):6.1f} ms  "
                  f"errors {result.errors}  rss {tree_memory_mb(pid, 'VmRSS'):.0f} MB", flush=True)
        print(f"peak rss (VmHWM) {tree_memory_mb(pid, 'VmHWM'):.0f} MB", flush=True)
        with tempfile.TemporaryDirectory() as tmp:
            large = largest_uploads(args.data, Path(tmp))
        for body in large if args.large_seconds > 0 else []:
            result = run_load(HOST, server.port, build_requests(HOST, server.port, [body]), args.large_concurrency,
                              args.large_seconds)
            print(f"largest {body[1]} ({len(body[0]) / 1e6:.1f} MB) at c={args.large_concurrency}: "
                  f"{len(result.latencies_s)} answered, "
                  f"p50 {result.percentile_ms(50):.0f} ms, errors {result.errors} {result.statuses}; "
                  f"peak rss (VmHWM) {tree_memory_mb(pid, 'VmHWM'):.0f} MB", flush=True)
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
