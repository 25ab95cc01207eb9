"""The manifests agree with the code: topics, CLI commands, settings, health endpoints, Kafka identities, scaling."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
from pydantic import ValidationError

from convoscope.cli import build_parser
from convoscope.settings import Settings
from convoscope.strimzi import TOPIC_PREFIX, process_access
from schemas.topics import ALL_TOPICS
from tests.deploy.conftest import DEPLOY, OVERLAYS, Rendered

PARTITIONS = {topic.partitions for topic in ALL_TOPICS}


def pod_specs(rendered: Rendered) -> list[tuple[str, dict[str, Any]]]:
    return [(d["metadata"]["name"], d["spec"]["template"]["spec"]) for d in rendered.documents
            if d["kind"] in ("Deployment", "Job")]


def container(spec: dict[str, Any]) -> dict[str, Any]:
    (only,) = spec["containers"]
    return only


def env_value(spec: dict[str, Any], name: str) -> dict[str, Any]:
    matches = [e for e in container(spec).get("env", []) if e["name"] == name]
    assert len(matches) == 1, name
    return matches[0]


def config_maps(rendered: Rendered, spec: dict[str, Any]) -> dict[str, str]:
    data: dict[str, str] = {}
    for source in container(spec).get("envFrom", []):
        data.update(rendered.named("ConfigMap", source["configMapRef"]["name"])["data"])
    return data


def commands(rendered: Rendered) -> dict[str, list[str]]:
    return {name: container(spec)["args"] for name, spec in pod_specs(rendered)}


# --- topics ------------------------------------------------------------------------------------------------------


def test_generated_files_are_up_to_date() -> None:
    result = subprocess.run([sys.executable, str(DEPLOY / "generate.py"), "--check"], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("overlay", ["prod", "ci"])
def test_kafka_topics_are_exactly_the_declared_topics(rendered: dict[str, Rendered], overlay: str) -> None:
    topics = {d["spec"]["topicName"]: d["spec"] for d in rendered[overlay].of_kind("KafkaTopic")}
    assert set(topics) == {t.name for t in ALL_TOPICS}
    for topic in ALL_TOPICS:
        spec = topics[topic.name]
        assert spec["partitions"] == topic.partitions
        assert {k: spec["config"][k] for k in topic.config()} == topic.config()
        assert int(spec["config"]["min.insync.replicas"]) < spec["replicas"]  # one broker may be down


def test_every_topic_has_a_writer_and_a_reader() -> None:
    access = process_access()
    written = {t.name for a in access for t in a.writes}
    read = {t.name for a in access for t in a.reads}
    declared = {t.name for t in ALL_TOPICS}
    assert declared - written == set(), "topics no process is allowed to write: add them in convoscope/strimzi.py"
    assert declared - read == set(), "topics no process is allowed to read: add them in convoscope/strimzi.py"
    assert all(name.startswith(TOPIC_PREFIX) for name in declared)


# --- commands, settings and health endpoints ---------------------------------------------------------------------


def _parses(args: list[str]) -> bool:
    try:
        build_parser().parse_args(args)
    except SystemExit:
        return False
    return True


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_runs_a_real_convoscope_command(rendered: dict[str, Rendered], overlay: str) -> None:
    for name, args in commands(rendered[overlay]).items():
        assert _parses(args), f"{name}: `convoscope {' '.join(args)}` is not a command of the CLI"


def test_each_insights_processor_has_its_own_deployment_in_prod(rendered: dict[str, Rendered]) -> None:
    from processors.insights.worker import TEXT_PROCESSORS

    deployed = {args[-1] for args in commands(rendered["prod"]).values() if args[:2] == ["worker", "insights"]}
    assert deployed == set(TEXT_PROCESSORS)
    dev = [args for args in commands(rendered["dev"]).values() if args[:2] == ["worker", "insights"]]
    assert dev == [["worker", "insights"]]  # dev: one process runs them all


def _known_settings() -> set[str]:
    names = set()
    for field_name, field in Settings.model_fields.items():
        names.add(f"CONVOSCOPE_{field_name.upper()}")
        aliases = getattr(field.validation_alias, "choices", None) or []
        names.update(str(alias) for alias in aliases)
    return names


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_environment_names_are_settings_the_code_reads(rendered: dict[str, Rendered], overlay: str) -> None:
    known = _known_settings()
    used: set[str] = set()
    for _, spec in pod_specs(rendered[overlay]):
        used |= set(config_maps(rendered[overlay], spec)) | {e["name"] for e in container(spec).get("env", [])}
    assert used - known == set(), "not settings of convoscope/settings.py (misspelt or removed?)"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_configured_values_are_valid_settings(
    rendered: dict[str, Rendered], overlay: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, spec in pod_specs(rendered[overlay]):
        with monkeypatch.context() as env:
            for key, value in config_maps(rendered[overlay], spec).items():
                env.setenv(key, value)
            try:
                settings = Settings()
            except ValidationError as exc:
                pytest.fail(f"{overlay} {name}: {exc}")
        assert settings.kafka_bootstrap
        if name != "convoscope-migrate":
            assert settings.health_host == "0.0.0.0" and settings.host == "0.0.0.0"  # reachable by the kubelet


def _probe_paths(spec: dict[str, Any]) -> dict[str, str]:
    c = container(spec)
    return {kind: probe.get("httpGet", {}).get("path", "tcp") for kind in ("startupProbe", "readinessProbe",
                                                                          "livenessProbe") if (probe := c.get(kind))}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_probes_use_endpoints_the_processes_serve(rendered: dict[str, Rendered], overlay: str) -> None:
    from starlette.routing import Route

    from convoscope.health import Health, _app
    from convoscope.server import create_app

    gateway_paths = {r.path for r in create_app(Settings(), run_migrations=False).routes if isinstance(r, Route)}
    worker_paths = {r.path for r in _app(Health("probe")).routes if isinstance(r, Route)}
    for name, spec in pod_specs(rendered[overlay]):
        if spec.get("restartPolicy") == "OnFailure":
            continue  # the migration Job
        args = container(spec)["args"]
        probes = _probe_paths(spec)
        assert set(probes) == {"startupProbe", "readinessProbe", "livenessProbe"}, name
        served = gateway_paths if args == ["gateway"] else worker_paths
        assert set(probes.values()) - {"tcp"} <= served, f"{name}: {probes}"
        if args[0] == "worker":
            assert probes["readinessProbe"] == "/readyz" and probes["livenessProbe"] == "/healthz", name
        resources = container(spec)["resources"]
        assert resources["requests"]["cpu"] and resources["requests"]["memory"] and resources["limits"]["memory"]


def test_the_ingress_sends_every_websocket_route_to_the_gateway(rendered: dict[str, Rendered]) -> None:
    from starlette.routing import WebSocketRoute

    from convoscope.server import create_app

    (ingress,) = rendered["prod"].of_kind("Ingress")
    paths = {p["path"]: p["backend"]["service"]["name"] for p in ingress["spec"]["rules"][0]["http"]["paths"]}
    assert paths["/"] == "convoscope-api"
    websocket_paths = [r.path for r in create_app(Settings(), run_migrations=False).routes
                       if isinstance(r, WebSocketRoute)]
    assert websocket_paths
    for path in websocket_paths:
        # Kubernetes Prefix matching is by whole path segments; the longest matching prefix wins.
        matching = [p for p in paths if p == "/" or path == p or path.startswith(p.rstrip("/") + "/")]
        assert paths[max(matching, key=len)] == "convoscope-gateway", path


# --- Kafka identities and autoscaling ----------------------------------------------------------------------------


def _groups_of(args: list[str]) -> set[str]:
    from processors.analytics.worker import ANALYTICS_GROUP
    from processors.insights.worker import TEXT_PROCESSORS, group_id
    from processors.transcription.worker import GROUP_ID
    from sinks.email.worker import EMAIL_GROUP
    from sinks.store.worker import STORE_GROUP
    from sinks.webhooks.worker import WEBHOOKS_GROUP

    if args[:2] == ["worker", "insights"]:
        chosen = args[3::2] if "--processor" in args else list(TEXT_PROCESSORS)
        return {group_id(TEXT_PROCESSORS[name]) for name in chosen}
    return {
        ("worker", "transcribe"): {GROUP_ID},
        ("worker", "store"): {STORE_GROUP},
        ("worker", "email"): {EMAIL_GROUP},
        ("worker", "webhooks"): {WEBHOOKS_GROUP},
        ("worker", "analytics"): {ANALYTICS_GROUP},
    }.get(tuple(args[:2]), set())  # type: ignore[arg-type]


@pytest.mark.parametrize("overlay", ["prod", "ci"])
def test_each_process_logs_in_as_a_kafka_user_allowed_its_groups(rendered: dict[str, Rendered], overlay: str) -> None:
    users = {d["metadata"]["name"]: d for d in rendered[overlay].of_kind("KafkaUser")}
    for name, spec in pod_specs(rendered[overlay]):
        if spec.get("restartPolicy") == "OnFailure":
            continue  # the migration Job does not use Kafka
        user = env_value(spec, "CONVOSCOPE_KAFKA_SASL_USERNAME")["value"]
        assert user in users, f"{name} logs in as {user}, which has no KafkaUser"
        assert env_value(spec, "CONVOSCOPE_KAFKA_SASL_PASSWORD")["valueFrom"]["secretKeyRef"]["name"] == user
        acl_groups = {acl["resource"]["name"] for acl in users[user]["spec"]["authorization"]["acls"]
                      if acl["resource"]["type"] == "group" and "Read" in acl["operations"]}
        assert _groups_of(container(spec)["args"]) <= acl_groups, name


@pytest.mark.parametrize("overlay", ["prod", "ci"])
def test_scaled_objects_target_deployments_within_the_partition_count(
    rendered: dict[str, Rendered], overlay: str
) -> None:
    deployments = {d["metadata"]["name"]: d for d in rendered[overlay].of_kind("Deployment")}
    scaled = rendered[overlay].of_kind("ScaledObject")
    consumers = {name for name, d in deployments.items()
                 if _groups_of(container(d["spec"]["template"]["spec"])["args"])}
    assert consumers <= {s["spec"]["scaleTargetRef"]["name"] for s in scaled}, "a consumer Deployment has no scaler"
    (partitions,) = PARTITIONS
    for s in scaled:
        target = deployments[s["spec"]["scaleTargetRef"]["name"]]
        args = container(target["spec"]["template"]["spec"])["args"]
        for trigger in s["spec"]["triggers"]:
            if trigger["type"] == "kafka":
                assert trigger["metadata"]["consumerGroup"] in _groups_of(args), s["metadata"]["name"]
        if _groups_of(args):
            assert s["spec"]["maxReplicaCount"] <= partitions, s["metadata"]["name"]
    transcribe = rendered[overlay].named("ScaledObject", "convoscope-transcribe")["spec"]
    assert transcribe["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleDown"][
        "stabilizationWindowSeconds"] >= 900


def test_prod_protects_every_deployment_with_a_disruption_budget(rendered: dict[str, Rendered]) -> None:
    prod = rendered["prod"]
    budgets = {tuple(sorted(p["spec"]["selector"]["matchLabels"].items())) for p in prod.of_kind("PodDisruptionBudget")}
    for deployment in prod.of_kind("Deployment"):
        labels = tuple(sorted(deployment["spec"]["selector"]["matchLabels"].items()))
        assert labels in budgets, deployment["metadata"]["name"]
        assert deployment["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]
