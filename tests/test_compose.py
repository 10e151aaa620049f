"""The demo stack (compose.yaml), checked without a Docker engine.

The file is validated against the Compose Specification's JSON schema (vendored in
``tests/schemas/compose-spec.json``, see ``tests/schemas/README.md``); each container's mounts are
laid out in a temporary directory as the container would see them, and Prometheus's and
Alertmanager's own checkers (``promtool``, ``amtool``) read them from there, so a wrong mount path
fails here as it would fail in the container.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path, PurePosixPath
from typing import Any

import jsonschema
import pytest
import requests
import yaml

from exporter import __version__
from exporter.cli import build_parser
from tests.support.image import IMAGE_UID, Dockerfile
from tests.support.process import Child, free_port

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "compose.yaml"
SCHEMA = Path(__file__).resolve().parent / "schemas" / "compose-spec.json"

PROMETHEUS_PORT = 9090
ALERTMANAGER_PORT = 9093
GRAFANA_PORT = 3000


def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def service(name: str) -> dict[str, Any]:
    services: dict[str, Any] = compose()["services"]
    return services[name]


def mounts(name: str) -> dict[PurePosixPath, Path]:
    """Container path -> host path of a service's bind mounts (short syntax, relative hosts)."""
    result: dict[PurePosixPath, Path] = {}
    for volume in service(name).get("volumes", []):
        host, target, *options = volume.split(":")
        assert options in ([], ["ro"]), volume
        assert host.startswith("./"), f"bind mounts are relative to the project: {volume}"
        result[PurePosixPath(target)] = ROOT / host
    return result


def lay_out(name: str, root: Path) -> Path:
    """Copy a service's bind mounts under ``root`` at their container paths; returns ``root``."""
    for target, host in mounts(name).items():
        destination = root / target.relative_to("/")
        destination.parent.mkdir(parents=True, exist_ok=True)
        if host.is_dir():
            shutil.copytree(host, destination)
        else:
            shutil.copyfile(host, destination)
    return root


def published(name: str) -> dict[int, int]:
    """Container port -> host port, each published on the loopback interface only."""
    result: dict[int, int] = {}
    for mapping in service(name).get("ports", []):
        address, host_port, container_port = mapping.split(":")
        assert address == "127.0.0.1", f"the demo publishes on loopback only: {mapping}"
        result[int(container_port)] = int(host_port)
    return result


def tool(name: str) -> str:
    found = shutil.which(name)
    assert found, f"{name} is missing: ./scripts/test installs it (Debian package)"
    return found


def test_matches_the_compose_specification_schema() -> None:
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    jsonschema.Draft201909Validator.check_schema(schema)
    jsonschema.Draft201909Validator(schema).validate(compose())


def test_the_schema_rejects_what_compose_rejects() -> None:
    """The validation above is not vacuous: typos and wrong types fail."""
    validator = jsonschema.Draft201909Validator(json.loads(SCHEMA.read_text(encoding="utf-8")))
    assert not validator.is_valid({"services": {"a": {"image": "x:1", "port": ["80:80"]}}})
    assert not validator.is_valid({"services": {"a": {"image": "x:1", "read_only": "yes"}}})
    assert not validator.is_valid({"servics": {}})


def test_brings_up_the_exporter_prometheus_alertmanager_and_grafana() -> None:
    assert set(compose()["services"]) == {"exporter", "prometheus", "alertmanager", "grafana"}


def test_every_referenced_file_exists() -> None:
    build = service("exporter")["build"]
    assert (ROOT / build / "Dockerfile").is_file()
    for name in compose()["services"]:
        for target, host in mounts(name).items():
            assert host.exists(), f"{name} mounts {host} at {target}, which does not exist"


def test_every_image_is_pinned() -> None:
    for name, spec in compose()["services"].items():
        image = spec["image"]
        repository, _, tag = image.rpartition(":")
        assert repository and "/" not in tag, f"{name}: image without a tag: {image}"
        assert tag != "latest" and re.fullmatch(r"v?\d+\.\d+\.\d+", tag), f"{name}: {image}"


def test_exporter_image_is_built_here_and_tagged_with_the_version() -> None:
    exporter = service("exporter")
    assert exporter["build"] == "."
    assert exporter["image"] == f"ams-exporter:{__version__}"


def test_exporter_runs_the_demo_on_the_published_port_hardened_like_the_image() -> None:
    exporter = service("exporter")
    args = build_parser().parse_args(exporter["command"])
    assert args.demo
    (address,) = args.listen_addresses
    port = int(address.rpartition(":")[2])
    assert address == f":{port}", "inside the container, listen on all interfaces"
    assert published("exporter") == {port: port}
    assert exporter["read_only"] is True
    assert exporter["tmpfs"] == [Dockerfile().env(Dockerfile().last_stage)["TMPDIR"]]
    assert exporter["user"] == f"{IMAGE_UID}:{IMAGE_UID}"
    assert exporter["cap_drop"] == ["ALL"]
    assert "no-new-privileges:true" in exporter["security_opt"]


def test_prometheus_config_and_rules_pass_promtool_at_their_container_paths(
    tmp_path: Path,
) -> None:
    root = lay_out("prometheus", tmp_path)
    result = subprocess.run(
        [tool("promtool"), "check", "config", str(root / "etc/prometheus/prometheus.yml")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # promtool read the rule files through the config's relative paths: both were found.
    assert "SUCCESS: 2 rule files found" in result.stdout + result.stderr


def test_prometheus_scrapes_the_exporter_where_it_listens_and_alerts_alertmanager() -> None:
    config = yaml.safe_load((ROOT / "deploy/compose/prometheus.yml").read_text(encoding="utf-8"))
    args = build_parser().parse_args(service("exporter")["command"])
    (ams,) = [job for job in config["scrape_configs"] if job["job_name"] == "ams"]
    assert ams["metrics_path"] == args.telemetry_path
    (targets,) = [c["targets"] for c in ams["static_configs"]]
    assert targets == [f"exporter{address}" for address in args.listen_addresses]
    # The exporter bounds a collection by Prometheus's scrape timeout; keep it below the interval.
    assert config["global"]["scrape_timeout"] < config["global"]["scrape_interval"]
    (alertmanagers,) = config["alerting"]["alertmanagers"]
    assert alertmanagers["static_configs"] == [{"targets": [f"alertmanager:{ALERTMANAGER_PORT}"]}]
    assert published("alertmanager") == {ALERTMANAGER_PORT: ALERTMANAGER_PORT}
    assert published("prometheus") == {PROMETHEUS_PORT: PROMETHEUS_PORT}


def test_alertmanager_config_passes_amtool_at_its_container_path(tmp_path: Path) -> None:
    root = lay_out("alertmanager", tmp_path)
    config = root / "etc/alertmanager/alertmanager.yml"
    result = subprocess.run(
        [tool("amtool"), "check-config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_alertmanager_inhibit_rules_are_scoped_with_equal() -> None:
    """Without `equal`, the source alert of one exporter silences the targets of all of them."""
    config = yaml.safe_load((ROOT / "deploy/compose/alertmanager.yml").read_text(encoding="utf-8"))
    rules = config["inhibit_rules"]
    assert rules
    for rule in rules:
        assert rule.get("equal"), rule
        assert "instance" in rule["equal"], rule


EXPORTER_A, EXPORTER_B = "exporter-a:10267", "exporter-b:10267"

# Alerts as Prometheus sends them: the label sets that prometheus/alerts.yml gives (its
# aggregations keep account and job_id, not instance), and alerts of one's own on the exporter's
# process metrics, which keep the scrape target's labels.
ALERTS = {
    "source": {"alertname": "AMSExporterDown", "job": "ams", "instance": EXPORTER_A},
    "same exporter": {"alertname": "AMSExporterMemoryHigh", "job": "ams", "instance": EXPORTER_A},
    "other exporter": {"alertname": "AMSExporterMemoryHigh", "job": "ams", "instance": EXPORTER_B},
    "account": {"alertname": "AMSAccountDown", "account": "media-prod", "severity": "warning"},
    "job": {
        "alertname": "AMSJobFailed",
        "account": "media-prod",
        "job_id": "nb:jid:UUID:1",
        "job_name": "encode",
        "severity": "warning",
    },
}


def test_one_exporter_down_inhibits_only_the_alerts_of_its_own_instance(tmp_path: Path) -> None:
    """A real Alertmanager with the demo's configuration, sent the alerts above: only the alert
    with the down exporter's instance is inhibited."""
    root = lay_out("alertmanager", tmp_path / "root")
    port = free_port()
    argv = [
        tool("prometheus-alertmanager"),
        f"--config.file={root / 'etc/alertmanager/alertmanager.yml'}",
        f"--storage.path={tmp_path / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--cluster.listen-address=",
    ]
    api = f"http://127.0.0.1:{port}/api/v2/alerts"
    with Child(argv, tmp_path, "alertmanager") as alertmanager:
        alertmanager.wait_until(
            lambda: _answers(f"http://127.0.0.1:{port}/-/ready"), what="Alertmanager is ready"
        )
        now = datetime.now(timezone.utc)
        posted = requests.post(
            api,
            json=[
                {
                    "labels": labels,
                    "startsAt": now.isoformat(),
                    "endsAt": (now + timedelta(hours=1)).isoformat(),
                }
                for labels in ALERTS.values()
            ],
            timeout=10,
        )
        assert posted.status_code == 200, posted.text

        def states() -> dict[str, list[str]] | None:
            alerts = requests.get(api, timeout=10).json()
            by_labels = {json.dumps(a["labels"], sort_keys=True): a["status"] for a in alerts}
            found = {
                name: by_labels.get(json.dumps(labels, sort_keys=True))
                for name, labels in ALERTS.items()
            }
            if any(status is None for status in found.values()):
                return None
            if not found["same exporter"]["inhibitedBy"]:
                return None  # the inhibitor has not seen the source yet
            return {name: status["inhibitedBy"] for name, status in found.items()}

        inhibited = alertmanager.wait_until(states, what="the inhibition takes effect")
    assert {name for name, by in inhibited.items() if by} == {"same exporter"}


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.ConnectionError:
        return False


def grafana_provisioning(kind: str) -> list[dict[str, Any]]:
    """The provisioning files of ``kind`` as Grafana reads them from its mounts."""
    target = PurePosixPath("/etc/grafana/provisioning") / kind
    host = mounts("grafana")[target]
    documents = []
    for path in sorted(host.iterdir()):
        if path.suffix in (".yml", ".yaml"):
            documents.append(yaml.safe_load(path.read_text(encoding="utf-8")))
    assert documents, f"no provisioning file in {host}"
    return documents


def test_grafana_datasource_points_at_the_prometheus_service() -> None:
    datasources = [d for doc in grafana_provisioning("datasources") for d in doc["datasources"]]
    prometheus = [d for d in datasources if d["type"] == "prometheus"]
    assert len(prometheus) == 1, datasources
    assert prometheus[0]["url"] == f"http://prometheus:{PROMETHEUS_PORT}"
    assert prometheus[0].get("isDefault") is True


def test_grafana_loads_the_dashboard_from_where_compose_mounts_it() -> None:
    providers = [p for doc in grafana_provisioning("dashboards") for p in doc["providers"]]
    dashboard_mounts = {
        t: h for t, h in mounts("grafana").items() if h == ROOT / "grafana/dashboards"
    }
    (target,) = dashboard_mounts
    assert [p["options"]["path"] for p in providers] == [str(target)]
    home = PurePosixPath(
        service("grafana")["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    )
    assert home.parent == target
    assert (ROOT / "grafana/dashboards" / home.name).is_file()
    assert published("grafana") == {GRAFANA_PORT: GRAFANA_PORT}


@pytest.mark.parametrize("rules", ["rules.yml", "alerts.yml"])
def test_prometheus_mounts_the_project_rule_files(rules: str) -> None:
    assert mounts("prometheus")[PurePosixPath("/etc/prometheus/rules") / rules] == (
        ROOT / "prometheus" / rules
    )


def test_grafana_image_is_at_least_the_version_the_dashboard_requires() -> None:
    dashboard = json.loads((ROOT / "grafana/dashboards/ams-jobs.json").read_text(encoding="utf-8"))
    (required,) = [r["version"] for r in dashboard["__requires"] if r["id"] == "grafana"]
    image_version = service("grafana")["image"].rpartition(":")[2]

    def numbers(version: str) -> tuple[int, ...]:
        return tuple(int(part) for part in version.split("."))

    assert numbers(image_version) >= numbers(required)


def test_prometheus_keeps_exemplars_for_the_history_heatmaps() -> None:
    # tests/test_history_prometheus.py runs the real Prometheus with this same flag.
    command = service("prometheus")["command"]
    assert "--enable-feature=exemplar-storage" in command
    # Setting the command replaces the image's: its config and data paths must still be given.
    assert "--config.file=/etc/prometheus/prometheus.yml" in command
    assert "--storage.tsdb.path=/prometheus" in command
