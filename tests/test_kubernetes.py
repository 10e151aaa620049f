"""The Kubernetes manifests in deploy/kubernetes/.

Built-in kinds are validated with ``kubernetes-validate`` (strict: unknown fields fail) against the
oldest and newest Kubernetes versions it ships that we support; the Prometheus Operator kinds
against the vendored CRD schemas (``tests/schemas/README.md``). The rest checks that the parts
agree with each other and with the image and the exporter: ports, paths, labels, the config file.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
from functools import cache
from pathlib import Path, PurePosixPath
from types import ModuleType
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from exporter import __version__
from exporter.cli import build_parser
from exporter.config.accounts import parse_config
from exporter.config.model import ClientSecret, Secret
from tests.support.image import IMAGE_CONFIG_FILE, IMAGE_UID, Dockerfile, documented_commands

ROOT = Path(__file__).resolve().parent.parent
MANIFESTS = ROOT / "deploy" / "kubernetes"
SCHEMAS = Path(__file__).resolve().parent / "schemas"
KUBERNETES_VERSIONS = ["1.30.0", "1.37.0"]
CRD_SCHEMAS = {
    "ServiceMonitor": "monitoring.coreos.com_v1_servicemonitor.json",
    "PrometheusRule": "monitoring.coreos.com_v1_prometheusrule.json",
}
REGENERATE = "python deploy/kubernetes/generate.py"


def kustomization() -> dict[str, Any]:
    return yaml.safe_load((MANIFESTS / "kustomization.yaml").read_text(encoding="utf-8"))


def resources() -> dict[str, dict[str, Any]]:
    """Every manifest kustomization.yaml applies, by kind (one of each)."""
    found: dict[str, dict[str, Any]] = {}
    for name in kustomization()["resources"]:
        for document in yaml.safe_load_all((MANIFESTS / name).read_text(encoding="utf-8")):
            assert document["kind"] not in found, f"two {document['kind']} manifests"
            found[document["kind"]] = document
    return found


def container() -> dict[str, Any]:
    (only,) = resources()["Deployment"]["spec"]["template"]["spec"]["containers"]
    return only


@cache
def crd_validator(kind: str) -> jsonschema.Draft202012Validator:
    schema = json.loads((SCHEMAS / CRD_SCHEMAS[kind]).read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("generate", MANIFESTS / "generate.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_kustomization_applies_every_manifest_in_the_folder() -> None:
    listed = set(kustomization()["resources"])
    present = {p.name for p in MANIFESTS.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == present
    assert set(resources()) == {
        "ConfigMap",
        "Deployment",
        "Service",
        "ServiceMonitor",
        "PrometheusRule",
    }


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("kind", ["ConfigMap", "Deployment", "Service"])
def test_builtin_kinds_match_the_kubernetes_schema(kind: str, version: str) -> None:
    kubernetes_validate.validate(resources()[kind], version, strict=True)


def test_kubernetes_validation_is_strict() -> None:
    deployment = json.loads(json.dumps(resources()["Deployment"]))
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[-1], strict=True)


@pytest.mark.parametrize("kind", sorted(CRD_SCHEMAS))
def test_operator_kinds_match_the_crd_schema(kind: str) -> None:
    crd_validator(kind).validate(resources()[kind])


def test_crd_validation_rejects_unknown_fields_and_bad_durations() -> None:
    monitor = json.loads(json.dumps(resources()["ServiceMonitor"]))
    monitor["spec"]["endpoints"][0]["interval"] = "1 minute"
    assert not crd_validator("ServiceMonitor").is_valid(monitor)
    rule = json.loads(json.dumps(resources()["PrometheusRule"]))
    rule["spec"]["groups"][0]["rules"][0]["expresion"] = "up"
    assert not crd_validator("PrometheusRule").is_valid(rule)


def test_prometheusrule_is_generated_from_the_prometheus_rule_files() -> None:
    committed = (MANIFESTS / "prometheusrule.yaml").read_text(encoding="utf-8")
    assert committed == load_generator().render(), (
        f"deploy/kubernetes/prometheusrule.yaml is stale; regenerate it with: {REGENERATE}"
    )


def test_prometheusrule_holds_exactly_the_groups_of_the_rule_files() -> None:
    expected = [
        group
        for name in ("rules.yml", "alerts.yml")
        for group in yaml.safe_load((ROOT / "prometheus" / name).read_text(encoding="utf-8"))[
            "groups"
        ]
    ]
    assert resources()["PrometheusRule"]["spec"]["groups"] == expected


def test_prometheusrule_groups_pass_promtool(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: ./scripts/test installs it (Debian package prometheus)"
    rules = tmp_path / "rules.yml"
    rules.write_text(yaml.safe_dump(resources()["PrometheusRule"]["spec"]), encoding="utf-8")
    result = subprocess.run(
        [promtool, "check", "rules", str(rules)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_generator_check_mode_fails_on_a_stale_manifest(tmp_path: Path) -> None:
    generator = load_generator()
    stale = tmp_path / "prometheusrule.yaml"
    stale.write_text("# stale\n", encoding="utf-8")
    generator.TARGET = stale
    generator.ROOT = tmp_path
    assert generator.main(["--check"]) == 1
    assert generator.main([]) == 0
    assert generator.main(["--check"]) == 0
    assert stale.read_text(encoding="utf-8") == generator.render()


def test_pod_and_container_security_context() -> None:
    pod = resources()["Deployment"]["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == IMAGE_UID
    assert pod["securityContext"]["runAsGroup"] == IMAGE_UID
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    security = container()["securityContext"]
    assert security["runAsNonRoot"] is True
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["privileged"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}


def test_temp_dir_is_a_writable_volume_at_the_image_tmpdir() -> None:
    pod = resources()["Deployment"]["spec"]["template"]["spec"]
    tmpdir = Dockerfile().env(Dockerfile().last_stage)["TMPDIR"]
    (mount,) = [m for m in container()["volumeMounts"] if m["mountPath"] == tmpdir]
    assert not mount.get("readOnly", False)
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    assert "emptyDir" in volume


def test_resources_are_bounded() -> None:
    limits = container()["resources"]
    assert {"cpu", "memory"} <= set(limits["requests"])
    assert "memory" in limits["limits"]


def test_probes_hit_healthz_and_readyz_on_the_metrics_port() -> None:
    spec = container()
    (port,) = spec["ports"]
    args = build_parser().parse_args(spec["args"])
    (address,) = args.listen_addresses
    assert port["containerPort"] == int(address.rpartition(":")[2])
    assert port["containerPort"] == int(Dockerfile().one("EXPOSE").args)
    assert spec["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": port["name"]}
    assert spec["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": port["name"]}


def test_image_is_the_one_built_from_the_dockerfile() -> None:
    assert container()["image"] == f"ams-exporter:{__version__}"
    images = kustomization()["images"]
    assert images == [{"name": "ams-exporter", "newTag": __version__}]


def test_config_file_comes_from_the_configmap_where_the_image_reads_it() -> None:
    spec = container()
    args = build_parser().parse_args(spec["args"])
    assert str(args.config_file) == IMAGE_CONFIG_FILE
    config_path = PurePosixPath(IMAGE_CONFIG_FILE)
    (mount,) = [m for m in spec["volumeMounts"] if m["mountPath"] == str(config_path.parent)]
    assert mount["readOnly"] is True
    pod = resources()["Deployment"]["spec"]["template"]["spec"]
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    configmap = resources()["ConfigMap"]
    assert volume["configMap"]["name"] == configmap["metadata"]["name"]
    assert config_path.name in configmap["data"]


def test_configmap_config_is_valid_with_the_secret_from_the_deployment() -> None:
    """The exporter's own parser accepts the shipped config once the Secret's variable is set."""
    (env,) = container()["env"]
    assert set(env["valueFrom"]) == {"secretKeyRef"}
    text = resources()["ConfigMap"]["data"][PurePosixPath(IMAGE_CONFIG_FILE).name]
    config = parse_config(text, {env["name"]: "from-the-secret"}, source="configmap.yaml")
    assert [account.credential for account in config.accounts] == [
        ClientSecret(Secret("from-the-secret"))
    ]


def test_service_selects_the_pods_and_targets_the_named_port() -> None:
    service = resources()["Service"]
    template_labels = resources()["Deployment"]["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= template_labels.items()
    assert (
        resources()["Deployment"]["spec"]["selector"]["matchLabels"] == service["spec"]["selector"]
    )
    (port,) = service["spec"]["ports"]
    assert port["targetPort"] == container()["ports"][0]["name"]
    assert port["name"] == container()["ports"][0]["name"]
    assert service["spec"]["publishNotReadyAddresses"] is True


def test_servicemonitor_scrapes_the_service_port_and_metrics_path() -> None:
    monitor = resources()["ServiceMonitor"]["spec"]
    service = resources()["Service"]
    assert monitor["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    (endpoint,) = monitor["endpoints"]
    assert endpoint["port"] == service["spec"]["ports"][0]["name"]
    args = build_parser().parse_args(container()["args"])
    assert endpoint["path"] == args.telemetry_path


def test_servicemonitor_sets_the_job_label_the_alerts_select() -> None:
    alerts = yaml.safe_load((ROOT / "prometheus" / "alerts.yml").read_text(encoding="utf-8"))
    selected = {
        match
        for group in alerts["groups"]
        for rule in group["rules"]
        for match in re.findall(r'\bup\{job="([^"]+)"\}', rule["expr"])
    }
    (endpoint,) = resources()["ServiceMonitor"]["spec"]["endpoints"]
    replaced = {
        r["replacement"] for r in endpoint.get("relabelings", []) if r.get("targetLabel") == "job"
    }
    assert selected, "some alert should watch the exporter's own up series"
    assert selected == replaced


def test_documented_kubectl_commands_match_the_manifests() -> None:
    commands = documented_commands("Deploy on Kubernetes")
    namespace = kustomization()["namespace"]
    deployment = resources()["Deployment"]
    service = resources()["Service"]
    secret_ref = container()["env"][0]["valueFrom"]["secretKeyRef"]
    image = f"registry.example.com/ams-exporter:{__version__}"
    assert ["docker", "build", "-t", image, "."] in commands
    assert ["docker", "push", image] in commands
    assert ["kubectl", "create", "namespace", namespace] in commands
    (secret,) = [c for c in commands if c[3:6] == ["create", "secret", "generic"]]
    assert secret[1:3] == ["-n", namespace] and secret[6] == secret_ref["name"]
    assert secret[7].startswith(f"--from-literal={secret_ref['key']}=")
    (apply,) = [c for c in commands if c[:3] == ["kubectl", "apply", "-k"]]
    assert (ROOT / apply[3] / "kustomization.yaml") == MANIFESTS / "kustomization.yaml"
    name = deployment["metadata"]["name"]
    assert ["kubectl", "-n", namespace, "rollout", "status", f"deployment/{name}"] in commands
    port = service["spec"]["ports"][0]["port"]
    forward = ["port-forward", f"service/{service['metadata']['name']}", f"{port}:{port}"]
    assert ["kubectl", "-n", namespace, *forward] in commands
    assert REGENERATE == load_generator().COMMAND
    assert f"`{REGENERATE}`" in (ROOT / "docs" / "deployment.md").read_text(encoding="utf-8")
