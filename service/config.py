"""All settings in one object, passed in: `Settings.from_env(os.environ)` reads the CXR_*
variables (python -m service does), a test or an embedding application passes values. Each
default is written here once; what a setting means is in its comment or description."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from cxr_common.dicom_rules import DEFAULT_RULES, ChestRules
from cxr_common.model_metadata import MODEL_FILE
from service.inputs.chest_check import DEFAULT_MODE, InputCheck
from service.inputs.cost import DEFAULT_MAX_JPEG_SCANS, CostLimits
from service.inputs.dicom_policy import DicomPolicy
from service.inputs.limits import Limits
from service.inputs.shape import DEFAULT_MAX_PIXELS

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODEL_PATH = REPO_ROOT / "models" / MODEL_FILE
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
ENV_PREFIX = "CXR_"
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")  # the Host names a loopback service answers to


class Device(str, Enum):
    auto = "auto"  # CUDA when it really works, else CPU with a warning
    cuda = "cuda"  # refuse to start without a working CUDA provider
    cpu = "cpu"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False


def _comma_list(value: object) -> object:
    # CXR_API_KEYS="key1,key2": a comma-separated list is what operators write
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


@dataclass(frozen=True)
class ConnectionLimits:
    """What one connection may cost (service/http/protocol.py); from the settings below."""

    header_timeout_s: float
    body_idle_timeout_s: float
    max_header_bytes: int
    max_connections: int


class Settings(BaseModel):
    # a misspelt setting passed in is an error, not a default silently kept
    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    model_path: Path = DEFAULT_MODEL_PATH
    device: Device = Device.auto
    # 0 for the two thread counts = chosen for the machine (see service/process/plan.py and the
    # README); workers 0, the old "one per core", is taken as 1 so that old settings still start
    workers: int = Field(1, ge=0, description="server processes, each with its own copy of the model (0 as 1)")
    intra_op_threads: int = Field(0, ge=0, description="ONNX Runtime threads per process")
    decode_threads: int = Field(0, ge=0, description="uploads decoded at once per process")
    # dynamic batching across concurrent requests; unset = on with CUDA, off on the CPU (see runners.py)
    batching: bool | None = None
    batch_max_size: int = Field(16, ge=1, description="images per onnxruntime run at most")
    batch_max_wait_ms: float = Field(5.0, ge=0, description="how long a request waits for companions")
    max_upload_mb: float = Field(50.0, gt=0)
    # uploads a worker holds at once, reserved from their Content-Length before their bodies are
    # read (service/http/upload_limits.py); small uploads have a reserve of their own beside it
    max_inflight_upload_mb: float = Field(256.0, gt=0, description="request bodies held per worker")
    upload_timeout_s: float = Field(120.0, gt=0, description="a whole upload must arrive within this")
    min_upload_rate_kbps: float = Field(32.0, ge=0, description="average upload rate after its first 10 s")
    max_pixels: int = Field(DEFAULT_MAX_PIXELS, gt=0, description="decompression-bomb guard")
    max_batch_files: int = Field(32, ge=1)
    max_jpeg_scans: int = Field(DEFAULT_MAX_JPEG_SCANS, ge=1, description="scans of a progressive JPEG (service/inputs/cost.py)")
    api_keys: list[SecretStr] = Field(default_factory=list)  # never shown in a repr or a log
    # Host names answered (service/http/host_origin.py); unset: the loopback names when listening
    # on loopback, any when listening beyond it; '*' for any
    allowed_hosts: list[str] | None = None
    allowed_origins: list[str] = Field(default_factory=list)  # browser origins besides the service's own
    # throttles (service/http/throttle.py): wrong keys per client address, requests per key; 0 = off
    auth_failures_per_minute: int = Field(20, ge=0, description="wrong API keys per address a minute before too_many_failed_keys")
    rate_limit_per_key: float = Field(0.0, ge=0, description="requests per API key a minute (0: no limit)")
    api_keys_file: Path | None = None
    # listening beyond loopback without keys is refused unless this says it is meant
    allow_anonymous: bool = False
    metrics_enabled: bool = True
    log_level: str = "INFO"
    graceful_shutdown_s: float = Field(30.0, ge=0)
    # after SIGTERM: /health/ready reports not ready this long while requests are still accepted and
    # answered, then the listener closes (service/process/drain.py)
    drain_s: float = Field(5.0, ge=0, description="seconds of drain after SIGTERM before the listener closes")
    # per connection (see service/http/protocol.py)
    header_timeout_s: float = Field(10.0, gt=0, description="request line and headers must arrive within this")
    body_idle_timeout_s: float = Field(30.0, gt=0, description="longest pause while an upload streams in")
    keep_alive_s: float = Field(5.0, gt=0, description="an idle kept-alive connection is closed after this")
    max_header_bytes: int = Field(64 * 1024, ge=1024, description="request line and headers; more is refused")
    max_connections: int = Field(1000, ge=1, description="open connections per worker; more are closed at once")
    request_deadline_s: float = Field(15.0, gt=0, description="decode + score time per request before deadline_exceeded")
    max_queued_images: int = Field(64, ge=1, description="images being scored at once per worker before overloaded")
    input_check: InputCheck = DEFAULT_MODE
    dicom_modalities: list[str] = Field(default_factory=lambda: sorted(DEFAULT_RULES.modalities))
    # SOP classes taken besides CR and DX image storage (e.g. secondary capture's 1.2.840.10008.5.1.4.1.1.7)
    dicom_extra_sop_classes: list[str] = Field(default_factory=list)

    @classmethod
    def from_env(cls, environ: Mapping[str, str], **overrides: Any) -> Settings:
        """The settings that CXR_<NAME> variables in `environ` give (names in any case; other
        variables are ignored), with `overrides` (command-line options) on top."""
        found = {key[len(ENV_PREFIX):].lower(): value for key, value in environ.items()
                 if key.upper().startswith(ENV_PREFIX)}
        return cls(**({name: value for name, value in found.items() if name in cls.model_fields} | overrides))

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        # the standard names only: libraries add their own to logging's (tf2onnx adds VERBOSE)
        if value.upper() not in LOG_LEVELS:
            raise ValueError(f"a logging level: {', '.join(LOG_LEVELS)}")
        return value.upper()

    @field_validator("api_keys", "dicom_modalities", "dicom_extra_sop_classes", "allowed_hosts",
                     "allowed_origins", mode="before")
    @classmethod
    def _split_lists(cls, value: object) -> object:
        return _comma_list(value)

    def connection_limits(self) -> ConnectionLimits:
        return ConnectionLimits(header_timeout_s=self.header_timeout_s, body_idle_timeout_s=self.body_idle_timeout_s,
                                max_header_bytes=self.max_header_bytes, max_connections=self.max_connections)

    def limits(self) -> Limits:
        policy = DicomPolicy(ChestRules(
            modalities=frozenset(m.upper() for m in self.dicom_modalities),
            sop_classes=DEFAULT_RULES.sop_classes | frozenset(self.dicom_extra_sop_classes),
        ))
        return Limits(max_pixels=self.max_pixels, dicom=policy, image_check=self.input_check,
                      cost=CostLimits(max_jpeg_scans=self.max_jpeg_scans))

    @model_validator(mode="after")
    def _check_files(self) -> Settings:
        if self.api_keys_file is not None:
            if not self.api_keys_file.is_file():
                raise ValueError(f"CXR_API_KEYS_FILE '{self.api_keys_file}' does not exist")
        return self

    @model_validator(mode="after")
    def _secure_by_default(self) -> Settings:
        if not _is_loopback(self.host) and not self.all_api_keys() and not self.allow_anonymous:
            raise ValueError(
                f"listening on {self.host} (beyond this machine) without API keys: set CXR_API_KEYS or "
                "CXR_API_KEYS_FILE, or CXR_ALLOW_ANONYMOUS=true if anyone on the network may use it")
        return self

    def hosts_allowed(self) -> list[str]:
        """CXR_ALLOWED_HOSTS, or by default the loopback names on loopback and any host beyond."""
        if self.allowed_hosts is not None:
            return self.allowed_hosts
        return list(LOOPBACK_HOSTS) if _is_loopback(self.host) else ["*"]

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    def all_api_keys(self) -> list[SecretStr]:
        """Keys from CXR_API_KEYS and the keys file (one per line; a line starting with # is a
        comment, while a # inside a key is part of it: 'Tr0ub4dor#3xYz' is one key)."""
        keys = list(self.api_keys)
        if self.api_keys_file is not None:
            for line in self.api_keys_file.read_text().splitlines():
                line = line.strip()
                if line and not line.startswith("#"):
                    keys.append(SecretStr(line))
        return keys
