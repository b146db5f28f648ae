"""The Helm chart, checked without a cluster: `helm lint`, `helm template` with the value sets an
operator would use, every rendered object validated strictly (unknown fields are errors) against
the two newest Kubernetes minor versions kubernetes-validate knows, and what the objects say
checked against the service and the gateway themselves: the probes name routes the app serves,
the autoscaler a metric it exports, the gateway's variables options it reads."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO_ROOT
from tests.deploy import k8s_tools

CHART = REPO_ROOT / "deploy" / "helm" / "cxr-pneumonia"
KEYS = ["--set", "apiKeys.keys={key-one,key-two}"]
GATEWAY = ["--set", "gateway.enabled=true", "--set", "gateway.apiKey=gateway-key",
           "--set", "gateway.dicomweb=http://pacs.example/dicom-web"]
# what operators install: the defaults with keys; an existing Secret; anonymous on a closed
# network with fixed replicas; GPU pods with the gateway; everything optional switched off
VALUE_SETS = {
    "keys": KEYS,
    "existing-secret": ["--set", "apiKeys.existingSecret=hospital-keys"],
    "anonymous-fixed": ["--set", "allowAnonymous=true", "--set", "autoscaling.enabled=false"],
    "gpu-gateway": [*KEYS, *GATEWAY, "--set", "gpu.enabled=true"],
    "minimal": [*KEYS, "--set", "networkPolicy.enabled=false", "--set", "podDisruptionBudget.enabled=false",
                "--set", "autoscaling.inFlight.enabled=false", "--set", "serviceAccount.create=false",
                "--set", "topologySpread.enabled=false"],
}

pytestmark = pytest.mark.skipif(k8s_tools.unavailable() is not None, reason=str(k8s_tools.unavailable()))


def helm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(k8s_tools.tool("helm")), *args], capture_output=True, text=True, timeout=120)


def render(*values: str) -> list[dict]:
    result = helm("template", "screening", str(CHART), "--namespace", "radiology", *values)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def by_kind(objects: list[dict], kind: str) -> dict:
    (found,) = [o for o in objects if o["kind"] == kind]
    return found


def newest_minor_versions(count: int = 2) -> list[str]:
    from kubernetes_validate.utils import all_versions, major_minor

    minors = sorted({major_minor(v) for v in all_versions()}, key=lambda v: tuple(map(int, v.split("."))))
    return minors[-count:]


def env_of(container: dict) -> dict[str, str]:
    return {e["name"]: e.get("value") for e in container["env"]}


def test_lint_passes_strictly():
    result = helm("lint", "--strict", str(CHART), *KEYS, *GATEWAY)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("name", VALUE_SETS)
def test_every_object_validates_strictly_for_the_newest_kubernetes(name):
    from kubernetes_validate.utils import validate

    objects = render(*VALUE_SETS[name])
    versions = newest_minor_versions()
    assert len(versions) == 2
    for version in versions:
        for obj in objects:
            validate(obj, version, strict=True)  # raises on an unknown or mistyped field


def test_the_validator_rejects_a_typo():
    # the check above can fail: a misspelt probe field is an error, not silently dropped
    from kubernetes_validate.utils import ValidationError, validate

    deployment = by_kind(render(*KEYS), "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    container["readinesProbe"] = container.pop("readinessProbe")
    with pytest.raises(ValidationError, match="readinesProbe"):
        validate(deployment, newest_minor_versions()[-1], strict=True)


@pytest.mark.parametrize(("values", "message"), [
    ([], "give API keys"),
    ([*KEYS, "--set", "gateway.enabled=true", "--set", "gateway.apiKey=k"], "gateway.dicomweb"),
    ([*KEYS, "--set", "gateway.enabled=true", "--set", "gateway.dicomweb=http://pacs/dicom-web"], "gateway.apiKey"),
    # values.schema.json: a misspelt key, a setting the chart itself sets, a wrong type
    ([*KEYS, "--set", "replicaCont=3"], "additional properties 'replicaCont' not allowed"),
    ([*KEYS, "--set", "config.CXR_WORKERS=4"], "invalid propertyName 'CXR_WORKERS'"),
    ([*KEYS, "--set", "threads=two"], "threads"),
])
def test_unsafe_or_incomplete_values_are_refused(values, message):
    result = helm("template", "screening", str(CHART), *values)
    assert result.returncode != 0 and message in result.stderr


def test_one_worker_per_pod_locked_down_with_a_drain():
    deployment = by_kind(render(*KEYS), "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = env_of(container)
    assert env["CXR_WORKERS"] == "1" and env["CXR_INTRA_OP_THREADS"] == "1" and env["CXR_DEVICE"] == "cpu"
    assert env["CXR_API_KEYS_FILE"] == "/etc/cxr/api-keys/api-keys"
    assert container["resources"]["requests"]["cpu"] == "1"
    assert container["resources"]["limits"]["memory"] == "2Gi" and "cpu" not in container["resources"]["limits"]
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True and security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"] and pod["securityContext"]["runAsNonRoot"] is True
    assert pod["automountServiceAccountToken"] is False
    # kubelet waits for the preStop sleep, the service's drain and its graceful shutdown
    sleep = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert pod["terminationGracePeriodSeconds"] > sleep + float(env["CXR_DRAIN_S"]) + float(env["CXR_GRACEFUL_SHUTDOWN_S"])
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


def test_every_variable_the_pods_get_is_a_setting_of_the_service(tmp_path):
    from service.config import ENV_PREFIX, Settings

    container = by_kind(render(*KEYS), "Deployment")["spec"]["template"]["spec"]["containers"][0]
    names = [e["name"] for e in container["env"]]
    assert len(names) == len(set(names))  # none set twice (config cannot repeat the chart's own)
    unknown = [n for n in names if n.removeprefix(ENV_PREFIX).lower() not in Settings.model_fields]
    assert not unknown, unknown
    (tmp_path / "api-keys").write_text("key-one\n")  # the Secret's file, which exists only in the pod
    settings = Settings.from_env({**env_of(container), "CXR_API_KEYS_FILE": str(tmp_path / "api-keys")})
    assert settings.workers == 1 and settings.drain_s == 2 and settings.max_queued_images == 16


def test_probes_name_routes_the_service_serves():
    from service.config import Settings
    from service.http.app import create_app

    routes = set(create_app(Settings()).openapi()["paths"])
    container = by_kind(render(*KEYS), "Deployment")["spec"]["template"]["spec"]["containers"][0]
    probes = {kind: container[kind]["httpGet"]["path"] for kind in ("startupProbe", "readinessProbe", "livenessProbe")}
    assert probes == {"startupProbe": "/health/ready", "readinessProbe": "/health/ready", "livenessProbe": "/health/live"}
    assert set(probes.values()) <= routes


def test_the_autoscaler_scales_on_a_metric_the_service_exports():
    from prometheus_client import generate_latest

    from service.metrics import ServiceMetrics

    hpa = by_kind(render(*KEYS), "HorizontalPodAutoscaler")
    pods, cpu = hpa["spec"]["metrics"]
    assert pods["type"] == "Pods" and cpu["resource"]["name"] == "cpu"
    name = pods["pods"]["metric"]["name"]
    exported = generate_latest(ServiceMetrics().registry).decode()
    assert f"# TYPE {name} gauge" in exported
    assert hpa["spec"]["scaleTargetRef"]["name"] == by_kind(render(*KEYS), "Deployment")["metadata"]["name"]


def test_gpu_values_ask_for_a_gpu_and_cuda():
    objects = render(*KEYS, *GATEWAY, "--set", "gpu.enabled=true")
    pod = by_kind(objects, "Deployment")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"].endswith(":gpu") and env_of(container)["CXR_DEVICE"] == "cuda"
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert any(t["key"] == "nvidia.com/gpu" for t in pod["tolerations"])


def test_the_secret_holds_the_keys_file_with_the_gateways_key():
    import base64

    secret = by_kind(render(*KEYS, *GATEWAY), "Secret")
    keys_file = base64.b64decode(secret["data"]["api-keys"]).decode()
    assert keys_file.split() == ["key-one", "key-two", "gateway-key"]
    assert base64.b64decode(secret["data"]["gateway-api-key"]).decode() == "gateway-key"
    assert not [o for o in render("--set", "apiKeys.existingSecret=hospital-keys") if o["kind"] == "Secret"]


def test_network_policy_lets_nothing_out_of_the_service():
    policies = {o["metadata"]["name"]: o for o in render(*KEYS, *GATEWAY) if o["kind"] == "NetworkPolicy"}
    service = policies["screening-cxr-pneumonia"]["spec"]
    assert service["policyTypes"] == ["Ingress", "Egress"] and service["egress"] == []
    gateway_labels = policies["screening-cxr-pneumonia-gateway"]["spec"]["podSelector"]["matchLabels"]
    assert gateway_labels in [peer.get("podSelector", {}).get("matchLabels") for peer in service["ingress"][0]["from"]]


def test_the_gateway_statefulset_is_configured_with_options_the_gateway_reads(tmp_path):
    gateway_config = pytest.importorskip("gateway.config", reason="the DICOM gateway package is not in this tree")
    import argparse

    objects = render(*KEYS, *GATEWAY)
    statefulset = by_kind(objects, "StatefulSet")
    pod = statefulset["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["command"] == ["cxr-gateway"]
    env = {e["name"]: e.get("value") for e in container["env"] if "value" in e}
    # the key file comes from the Secret's gateway-api-key, mounted where the variable says
    key_file = Path(env["CXR_GATEWAY_API_KEY_FILE"])
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == str(key_file.parent)]
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    assert volume["secret"]["items"] == [{"key": "gateway-api-key", "path": key_file.name}]
    env["CXR_GATEWAY_API_KEY_FILE"] = str(tmp_path / "key")
    (tmp_path / "key").write_text("from-the-secret\n")
    unknown = [name for name in env if name.startswith("CXR_GATEWAY_")]
    parser = argparse.ArgumentParser()
    gateway_config.add_serve_options(parser, env)
    read = {f"CXR_GATEWAY_{action.dest.upper()}" for action in parser._actions}
    assert set(unknown) <= read, set(unknown) - read
    config = gateway_config.from_args(parser.parse_args([]))
    assert config.listen == ("0.0.0.0", 11112) and config.state.as_posix() == "/state"
    assert config.service == "http://screening-cxr-pneumonia:8000" and config.api_key == "from-the-secret"
    assert config.metrics == ("0.0.0.0", 9110)
    claim = statefulset["spec"]["volumeClaimTemplates"][0]
    assert claim["metadata"]["name"] == "state" and {"name": "state", "mountPath": "/state"} in container["volumeMounts"]
