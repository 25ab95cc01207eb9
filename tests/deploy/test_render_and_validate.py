"""Every overlay renders, passes strict Kubernetes schema validation, and its custom resources match deploy/schemas."""

from __future__ import annotations

import copy
import json
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.deploy.conftest import DEPLOY, OVERLAYS, Rendered, venv_tool

KUBERNETES_VERSION = "1.37.0"
BUILT_IN_GROUPS = ("v1", "apps/v1", "batch/v1", "policy/v1", "networking.k8s.io/v1")
CUSTOM_KINDS = {
    "KafkaTopic": "kafkatopic",
    "KafkaUser": "kafkauser",
    "ScaledObject": "scaledobject",
    "TriggerAuthentication": "triggerauthentication",
    "ServiceMonitor": "servicemonitor",
    "PrometheusRule": "prometheusrule",
}


def kubernetes_validate(*paths: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [venv_tool("kubernetes-validate"), "--strict", "-k", KUBERNETES_VERSION, *map(str, paths)],
        capture_output=True, text=True, timeout=120,
    )


def crd_validator(kind: str) -> jsonschema.Draft202012Validator:
    schema = json.loads((DEPLOY / "schemas" / f"{CUSTOM_KINDS[kind]}.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def crd_errors(document: dict[str, Any]) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in crd_validator(document["kind"]).iter_errors(
        document)]


def test_every_overlay_passes_strict_kubernetes_validation(rendered: dict[str, Rendered]) -> None:
    result = kubernetes_validate(*(r.path for r in rendered.values()))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ERROR" not in result.stdout + result.stderr
    built_in = sum(1 for r in rendered.values() for d in r.documents if d["apiVersion"] in BUILT_IN_GROUPS)
    assert result.stdout.count(" passed for resource ") + result.stderr.count(" passed for resource ") == built_in


def test_strict_validation_rejects_a_misspelt_field(rendered: dict[str, Rendered], tmp_path: Path) -> None:
    """The validator is really strict here: an unknown field in a Deployment fails the check."""
    deployment = copy.deepcopy(rendered["prod"].named("Deployment", "convoscope-store"))
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGett"] = {"path": "/readyz"}
    broken = tmp_path / "broken.yaml"
    broken.write_text(yaml.safe_dump(deployment))
    assert kubernetes_validate(broken).returncode != 0


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_custom_resources_match_the_schemas_kept_in_the_repo(rendered: dict[str, Rendered], overlay: str) -> None:
    documents = rendered[overlay].documents
    unknown = {d["kind"] for d in documents if d["apiVersion"] not in BUILT_IN_GROUPS} - set(CUSTOM_KINDS)
    assert not unknown, f"custom kinds without a schema in deploy/schemas: {unknown}"
    for document in documents:
        if document["kind"] in CUSTOM_KINDS:
            assert crd_errors(document) == [], f"{document['kind']} {document['metadata']['name']}"


def test_prod_and_ci_use_every_custom_resource_kind(rendered: dict[str, Rendered]) -> None:
    for overlay in ("prod", "ci"):
        assert set(CUSTOM_KINDS) <= {d["kind"] for d in rendered[overlay].documents}


@pytest.mark.parametrize(
    ("kind", "break_it"),
    [
        ("KafkaTopic", lambda d: d["spec"].update(partitions="twelve")),
        ("KafkaTopic", lambda d: d["spec"].update(retention="7d")),  # belongs in config
        ("KafkaTopic", lambda d: d["metadata"]["labels"].pop("strimzi.io/cluster")),
        ("KafkaUser", lambda d: d["spec"]["authorization"]["acls"][0].update(operations=["Reed"])),
        ("ScaledObject", lambda d: d["spec"]["triggers"][0]["metadata"].update(lagThreshold=200)),
        ("ScaledObject", lambda d: d["spec"].update(maxReplicas=12)),
        ("ServiceMonitor", lambda d: d["spec"]["endpoints"][0].update(interval="30 seconds")),
        ("PrometheusRule", lambda d: d["spec"]["groups"][1]["rules"][0].update(record="x")),
        ("TriggerAuthentication", lambda d: d["spec"]["env"][0].pop("parameter")),
    ],
)
def test_the_crd_schemas_reject_broken_resources(rendered: dict[str, Rendered], kind: str, break_it: Any) -> None:
    document = copy.deepcopy(rendered["ci"].of_kind(kind)[0])
    assert crd_errors(document) == []
    break_it(document)
    assert crd_errors(document) != []
