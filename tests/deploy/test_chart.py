"""The Helm chart (helm/qulab): `helm lint --strict`; `helm template` with the default values
and with every optional feature on, validated against the Kubernetes schemas (strict:
unknown fields fail) and, for the ServiceMonitor, against the Prometheus Operator's CRD;
the settings it renders accepted by the server's own settings parser; values.schema.json in
step with the server's settings; the helm-unittest cases in helm/qulab/tests."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import referencing
import yaml

from qulab.server._version import __version__
from qulab.server.config import ENV_PREFIX, Settings, SettingsError
from tests.deploy import _schema, _tools
from tests.deploy.conftest import ALL_FEATURES, CHART, Helm, Manifest, find

pytestmark = pytest.mark.timeout(_tools.SETUP_TIMEOUT_S + 120)

KUBE_FLOOR = "1.30.0"
"""The oldest Kubernetes the chart supports (Chart.yaml's kubeVersion)."""
VALIDATED = (KUBE_FLOOR, _tools.KUBE_VERSION)


def _kubernetes_schemas(version: str) -> Path:
    package = Path(kubernetes_validate.__file__).parent
    return package / "kubernetes-json-schema" / f"v{version}-local-strict"


def test_lint_is_clean(helm: Helm) -> None:
    for values in ([], ["--values", str(ALL_FEATURES)]):
        done = helm("lint", "--strict", str(CHART), "--kube-version", _tools.KUBE_VERSION, *values)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "[WARNING]" not in done.stdout
        assert "[ERROR]" not in done.stdout


def test_every_optional_feature_renders(
    default_render: list[Manifest], all_features_render: list[Manifest]
) -> None:
    kinds = sorted(m["kind"] for m in all_features_render)
    assert kinds == [
        "ConfigMap",
        "ConfigMap",
        "Deployment",
        "HorizontalPodAutoscaler",
        "NetworkPolicy",
        "PodDisruptionBudget",
        "Service",
        "Service",
        "ServiceAccount",
        "ServiceMonitor",
    ]
    assert sorted(m["kind"] for m in default_render) == [
        "ConfigMap",
        "Deployment",
        "HorizontalPodAutoscaler",
        "NetworkPolicy",
        "PodDisruptionBudget",
        "Secret",
        "Service",
        "Service",
        "ServiceAccount",
    ]


@pytest.mark.parametrize("version", VALIDATED)
def test_manifests_pass_the_kubernetes_schemas(render: list[Manifest], version: str) -> None:
    for manifest in render:
        if manifest["kind"] == "ServiceMonitor":
            continue  # a CRD: see the test below
        kubernetes_validate.validate(manifest, version, strict=True)


def test_strict_validation_catches_a_misspelt_field(default_render: list[Manifest]) -> None:
    """The validation above can fail: a field Kubernetes does not know, or a wrong type."""
    deployment = copy.deepcopy(find(default_render, "Deployment"))
    deployment["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["grpc"]["prot"] = 1
    with pytest.raises(kubernetes_validate.ValidationError, match="prot"):
        kubernetes_validate.validate(deployment, _tools.KUBE_VERSION, strict=True)
    hpa = copy.deepcopy(find(default_render, "HorizontalPodAutoscaler"))
    hpa["spec"]["minReplicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(hpa, _tools.KUBE_VERSION, strict=True)


def _strict(schema: Any) -> Any:
    """A CRD's OpenAPI schema made strict as the API server's field validation is: an
    object with declared properties takes no others, unless it preserves unknown fields."""
    if isinstance(schema, dict):
        strict = {key: _strict(value) for key, value in schema.items()}
        if (
            "properties" in schema
            and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")
        ):
            strict["additionalProperties"] = False
        return strict
    if isinstance(schema, list):
        return [_strict(item) for item in schema]
    return schema


def _service_monitor_validator(crd_path: Path) -> jsonschema.Draft7Validator:
    crd = yaml.safe_load(crd_path.read_text())
    assert crd["spec"]["names"]["kind"] == "ServiceMonitor"
    (served,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    schema = _strict(served["schema"]["openAPIV3Schema"])
    return jsonschema.Draft7Validator(schema)


def _validate_object_meta(metadata: dict[str, Any]) -> None:
    """A CRD's schema says only that metadata is an object; Kubernetes' ObjectMeta says
    the rest."""
    schemas = _kubernetes_schemas(_tools.KUBE_VERSION)
    definitions = json.loads((schemas / "_definitions.json").read_text())
    meta = json.loads((schemas / "objectmeta-meta-v1.json").read_text())
    registry = referencing.Registry().with_resources(
        [
            (definitions["$id"], referencing.Resource.from_contents(definitions)),
            ("", referencing.Resource.from_contents(meta)),
        ]
    )
    jsonschema.Draft202012Validator(meta, registry=registry).validate(metadata)


def test_service_monitor_passes_the_prometheus_operator_crd(
    all_features_render: list[Manifest], service_monitor_crd: Path
) -> None:
    monitor = find(all_features_render, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    validator = _service_monitor_validator(service_monitor_crd)
    errors = [e.message for e in validator.iter_errors(monitor)]
    assert errors == []
    _validate_object_meta(monitor["metadata"])

    # And the validation can fail: a misspelt field, a wrong type.
    broken = copy.deepcopy(monitor)
    broken["spec"]["endpoints"][0]["intervall"] = "30s"
    assert any("intervall" in e.message for e in validator.iter_errors(broken))
    broken = copy.deepcopy(monitor)
    broken["spec"]["endpoints"][0]["relabelings"] = "node"
    assert list(validator.iter_errors(broken))
    with pytest.raises(jsonschema.ValidationError):
        _validate_object_meta({**monitor["metadata"], "labels": {"release": 7}})


def _settings_env(manifests: list[Manifest]) -> dict[str, str]:
    config = next(m for m in manifests if m["kind"] == "ConfigMap" and "QULAB_PORT" in m["data"])
    env: dict[str, str] = config["data"]
    return {k: v for k, v in env.items() if k.startswith(ENV_PREFIX)}


def test_rendered_settings_start_the_server(render: list[Manifest]) -> None:
    """The server's own parser takes every setting the chart writes: no unknown name, no
    number it cannot read (a value Go prints as 3.3554432e+07 would fail here)."""
    env = _settings_env(render)
    settings = Settings.from_env(env)
    deployment = find(render, "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert (settings.port, settings.metrics_port) == (ports["grpc"], ports["metrics"])
    assert settings.max_connection_age_s > 0  # long-lived connections rebalance
    assert settings.credentials_configured or settings.auth == "none"
    mounts = [m["mountPath"] for m in container["volumeMounts"]]
    for path in filter(
        None,
        (
            settings.api_keys_file,
            settings.jwt_secret_file,
            settings.jwt_public_keys,
            settings.roles_file,
            settings.tls_cert_file,
            settings.tls_key_file,
            settings.tls_client_ca_file,
        ),
    ):
        assert str(Path(path).parent) in mounts, f"{path} is not mounted"


def test_the_settings_parser_can_fail(render: list[Manifest]) -> None:
    """The parser above can fail: it refuses a setting with a float Go would print."""
    env = {**_settings_env(render), "QULAB_MAX_MESSAGE_BYTES": "3.3554432e+07"}
    with pytest.raises(SettingsError, match="QULAB_MAX_MESSAGE_BYTES"):
        Settings.from_env(env)


def test_the_drain_fits_in_the_termination_grace_period(render: list[Manifest]) -> None:
    settings = Settings.from_env(_settings_env(render))
    pod = find(render, "Deployment")["spec"]["template"]["spec"]
    pre_stop = pod["containers"][0]["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert pod["terminationGracePeriodSeconds"] > pre_stop + settings.drain_grace_s
    assert pod["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True
    assert {"name": "tmp", "mountPath": "/tmp"} in pod["containers"][0]["volumeMounts"]


def test_config_changes_roll_the_pods(helm: Helm) -> None:
    def checksum(*args: str) -> str:
        deployment = find(helm.render(*args), "Deployment")
        value: str = deployment["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
        return value

    default = checksum()
    assert re.fullmatch(r"[0-9a-f]{64}", default)
    assert checksum() == default
    assert checksum("--set", "server.config.QULAB_CACHE_MB=128") != default
    assert checksum("--set", "server.workers=3") != default
    assert checksum("--set", "podAnnotations.team=chemistry") == default


def test_the_kubernetes_floor_is_enforced(helm: Helm) -> None:
    assert helm.template(kube_version="1.30.0").returncode == 0
    too_old = helm.template(kube_version="1.29.0")
    assert too_old.returncode != 0
    assert "kubeVersion" in too_old.stderr


@pytest.mark.parametrize(
    ("values", "named"),
    [
        (["--set", "server.wrokers=2"], "wrokers"),
        (["--set", "server.config.QULAB_QUEUE_SIZE=0"], "QULAB_QUEUE_SIZE"),
        (["--set", "server.config.QULAB_HOST=0.0.0.0"], "QULAB_HOST"),
        (["--set", "server.config.QULAB_EVENT_LOOP=trio"], "QULAB_EVENT_LOOP"),
        (["--set", "server.grpcPort=70000"], "grpcPort"),
        (["--set", "image.digest=latest"], "digest"),
        (["--set", "otel.protocol=thrift"], "protocol"),
        (["--set", "auth.mode=off"], "mode"),
        (["--set", "extraEnv[0].name=QULAB_PORT"], "extraEnv"),
        (["--set", "tls.clientAuth=true"], "tls.clientAuth needs tls.enabled"),
        (["--set", "auth.apiKeys.generate=false"], "no credentials"),
    ],
)
def test_bad_values_fail_at_install_time(helm: Helm, values: list[str], named: str) -> None:
    done = helm.template(*values)
    assert done.returncode != 0
    assert named in done.stderr


def test_values_schema_follows_the_server_settings() -> None:
    """server.config accepts exactly the settings the chart does not set itself, each
    typed and bounded as the server's settings are (`python -m tests.deploy._schema`)."""
    schema = json.loads(_schema.SCHEMA.read_text())
    assert schema["properties"]["server"]["properties"]["config"] == _schema.config_schema()
    names = {f"{ENV_PREFIX}{name.upper()}" for name in Settings.__dataclass_fields__}
    assert names >= _schema.CHART_MANAGED
    config = schema["properties"]["server"]["properties"]["config"]["properties"]
    assert set(config) | _schema.CHART_MANAGED == names
    # And the chart does set every one it claims to.
    template = (CHART / "templates" / "_helpers.tpl").read_text()
    for name in _schema.CHART_MANAGED:
        assert f"{name}:" in template, f"{name} is not set by the chart"


def test_chart_defaults_agree_with_the_server() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["appVersion"] == __version__  # the image tag the chart defaults to
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    defaults = Settings()
    assert values["server"]["grpcPort"] == defaults.port
    assert values["server"]["metricsPort"] == defaults.metrics_port
    assert values["server"]["drainGraceSeconds"] == defaults.drain_grace_s
    # No admitted call is cut when its connection is recycled.
    assert values["server"]["maxConnectionAgeGraceSeconds"] >= defaults.max_timeout_s


def test_unit_tests_pass(helm: Helm) -> None:
    done = helm("unittest", "--color=false", str(CHART))
    assert done.returncode == 0, done.stdout + done.stderr
    counts = re.search(r"Tests:\s+(\d+) passed, (\d+) total", done.stdout)
    assert counts is not None, done.stdout
    assert counts.group(1) == counts.group(2)
    assert int(counts.group(2)) >= 40


def test_the_pinned_tools_are_the_ones_run(helm: Helm) -> None:
    plugins = helm("plugin", "list")
    assert plugins.returncode == 0, plugins.stderr
    pinned = _tools.pinned_version("github.com/helm-unittest/helm-unittest").lstrip("v")
    assert re.search(rf"^unittest\s+{re.escape(pinned)}\s", plugins.stdout, re.MULTILINE)
    version = helm("version", "--template", "{{.Version}}")
    helm_pin = _tools.pinned_version("helm.sh/helm/v3")
    # Built without helm's release link flags, helm names its minor version only.
    assert helm_pin.startswith(version.stdout.strip()), (version.stdout, helm_pin)
