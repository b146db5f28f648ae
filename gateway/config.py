"""Gateway settings: every option from the command line or a CXR_GATEWAY_* variable (the
command line wins), validated once at start-up so a bad value fails before any study arrives."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

ENV_PREFIX = "CXR_GATEWAY_"


@dataclass(frozen=True)
class Peer:
    """A DICOM node to C-STORE to: AE title, host, port."""

    ae_title: str
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> Peer:
        """'AE@HOST:PORT' -> Peer; ValueError naming the value otherwise."""
        try:
            ae_title, address = text.split("@", 1)
            host, port = address.rsplit(":", 1)
            peer = cls(ae_title.strip(), host.strip("[]"), int(port))
        except ValueError:
            raise ValueError(f"--store-to has value '{text}'; expected AE@HOST:PORT") from None
        if not peer.ae_title or len(peer.ae_title) > 16 or not peer.host or not 0 < peer.port < 65536:
            raise ValueError(f"--store-to has value '{text}'; expected AE@HOST:PORT (AE title 1-16 characters)")
        return peer


def host_port(text: str, option: str) -> tuple[str, int]:
    try:
        host, port = text.rsplit(":", 1)
        number = int(port)
    except ValueError:
        raise ValueError(f"{option} has value '{text}'; expected HOST:PORT") from None
    if not 0 <= number < 65536:
        raise ValueError(f"{option} has value '{text}'; the port must be 0..65535")
    return host.strip("[]") or "0.0.0.0", number


@dataclass(frozen=True)
class GatewayConfig:
    listen: tuple[str, int]
    ae_title: str
    service: str
    state: Path
    dicomweb: str | None = None  # STOW-RS base URL (…/dicom-web); or store_to
    store_to: Peer | None = None
    allow_aets: frozenset[str] = frozenset()  # calling AE titles accepted; empty: any
    max_associations: int = 8
    quiet_s: float = 5.0
    max_attempts: int = 40
    retry_base_s: float = 1.0  # first retry after ~this; doubles each attempt, with jitter
    # a short cap: once the service or the PACS is back, waiting jobs go within ~15 s (40 attempts
    # at the cap span about 8 minutes of outage before a job is dead-lettered)
    retry_max_s: float = 15.0
    workers: int = 1
    metrics: tuple[str, int] | None = ("127.0.0.1", 9110)
    api_key: str | None = None  # for the service; default $CXR_API_KEY (cxr_client's rule)
    client_attempts: int = 3  # cxr_client's own retries inside one gateway attempt


def add_serve_options(parser: argparse.ArgumentParser, env: Mapping[str, str]) -> None:
    """The serve options, each defaulting to its CXR_GATEWAY_<NAME> variable."""

    def option(name: str, help: str, default: str | None = None) -> None:
        variable = ENV_PREFIX + name.upper().replace("-", "_")
        parser.add_argument(f"--{name}", default=env.get(variable, default), help=f"{help} ({variable})")

    option("listen", "HOST:PORT of the C-STORE listener", "127.0.0.1:11112")
    option("ae-title", "this node's AE title", "CXR_AI")
    option("service", "base URL of the scoring service", "http://127.0.0.1:8000")
    option("dicomweb", "DICOMweb base URL of the PACS; results go back by STOW-RS")
    option("store-to", "AE@HOST:PORT: results go back by C-STORE instead of STOW-RS")
    option("state", "directory for received instances and the job table", "./gateway-state")
    option("allow-aet", "comma-separated calling AE titles accepted (default: any)", "")
    option("max-associations", "simultaneous associations accepted", "8")
    option("quiet-s", "a study is complete after this many seconds without a new instance", "5")
    option("max-attempts", "attempts before a job is dead-lettered", "40")
    option("retry-base-s", "delay before the first retry (doubles each time, with jitter)", "1")
    option("retry-max-s", "longest delay between retries", "15")
    option("workers", "jobs processed at once", "1")
    option("metrics", "HOST:PORT of the Prometheus /metrics endpoint, or 'off'", "127.0.0.1:9110")
    option("api-key", "API key for the service (default $CXR_API_KEY)")
    option("api-key-file", "file whose first line is the API key (a compose or Kubernetes secret)")


def key_from_file(path: str | None) -> str | None:
    if not path:
        return None
    try:
        lines = [line.strip() for line in Path(path).read_text().splitlines() if line.strip()]
    except OSError as exc:
        raise ValueError(f"--api-key-file has value '{path}'; cannot read it ({type(exc).__name__})") from None
    return lines[0] if lines else None


def from_args(args: argparse.Namespace) -> GatewayConfig:
    """Validated settings; ValueError naming the bad option and value."""

    def number(name: str, value: str, low: float, integer: bool = False) -> float:
        try:
            parsed = int(value) if integer else float(value)
        except ValueError:
            raise ValueError(f"--{name} has value '{value}'. Not a valid number.") from None
        if parsed < low:
            raise ValueError(f"--{name} has value '{value}'; it must be at least {low:g}")
        return parsed

    if bool(args.dicomweb) == bool(args.store_to):
        raise ValueError("give exactly one of --dicomweb (STOW-RS) or --store-to (C-STORE) for the results")
    ae_title = args.ae_title.strip()
    if not 0 < len(ae_title) <= 16:
        raise ValueError(f"--ae-title has value '{args.ae_title}'; an AE title has 1-16 characters")
    metrics = None if args.metrics.lower() in ("off", "", "none") else host_port(args.metrics, "--metrics")
    return GatewayConfig(
        listen=host_port(args.listen, "--listen"),
        ae_title=ae_title,
        service=args.service.rstrip("/"),
        state=Path(args.state),
        dicomweb=args.dicomweb.rstrip("/") if args.dicomweb else None,
        store_to=Peer.parse(args.store_to) if args.store_to else None,
        allow_aets=frozenset(t.strip() for t in args.allow_aet.split(",") if t.strip()),
        max_associations=int(number("max-associations", args.max_associations, 1, integer=True)),
        quiet_s=number("quiet-s", args.quiet_s, 0),
        max_attempts=int(number("max-attempts", args.max_attempts, 1, integer=True)),
        retry_base_s=number("retry-base-s", args.retry_base_s, 0),
        retry_max_s=number("retry-max-s", args.retry_max_s, 0),
        workers=int(number("workers", args.workers, 1, integer=True)),
        metrics=metrics,
        api_key=args.api_key or key_from_file(args.api_key_file),
    )
