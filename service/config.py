"""All settings in one object, read from CXR_* environment variables (or passed in tests)."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from typing_extensions import Annotated

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODEL_PATH = REPO_ROOT / "models" / "cxr-pneumonia.onnx"


class Device(str, Enum):
    auto = "auto"  # CUDA when it really works, else CPU with a warning
    cuda = "cuda"  # refuse to start without a working CUDA provider
    cpu = "cpu"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CXR_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    model_path: Path = DEFAULT_MODEL_PATH
    device: Device = Device.auto
    intra_op_threads: int = Field(0, ge=0, description="ONNX Runtime threads; 0 = one per core")
    batching: bool = True  # dynamic batching across concurrent requests
    batch_max_size: int = Field(16, ge=1, description="images per onnxruntime run at most")
    batch_max_wait_ms: float = Field(5.0, ge=0, description="how long a request waits for companions")
    max_upload_mb: float = Field(50.0, gt=0)
    max_pixels: int = Field(50_000_000, gt=0, description="decompression-bomb guard")
    max_batch_files: int = Field(32, ge=1)
    api_keys: Annotated[list[str], NoDecode] = Field(default_factory=list)
    api_keys_file: Path | None = None
    metrics_enabled: bool = True
    log_level: str = "INFO"
    graceful_shutdown_s: float = Field(30.0, ge=0)

    @field_validator("api_keys", mode="before")
    @classmethod
    def _split_keys(cls, value):
        # CXR_API_KEYS="key1,key2": a comma-separated list is what operators write
        if isinstance(value, str):
            return [key.strip() for key in value.split(",") if key.strip()]
        return value

    @model_validator(mode="after")
    def _check_files(self):
        if self.api_keys_file is not None:
            if not self.api_keys_file.is_file():
                raise ValueError(f"CXR_API_KEYS_FILE '{self.api_keys_file}' does not exist")
        return self

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    def all_api_keys(self) -> list[str]:
        """Keys from CXR_API_KEYS and the keys file (one per line, # comments)."""
        keys = list(self.api_keys)
        if self.api_keys_file is not None:
            for line in self.api_keys_file.read_text().splitlines():
                line = line.split("#", 1)[0].strip()
                if line:
                    keys.append(line)
        return keys
