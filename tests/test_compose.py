"""docker-compose.yml: no Docker engine runs here, so it is checked statically, against the
Compose Specification's own JSON schema (vendored: no network at test time) and against the app:
the settings and telemetry code read the environment compose gives the gateway and worker, and the
gateway's healthcheck command runs against a real gRPC health service."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import grpc
import jsonschema
import pytest
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer  # health.aio, which the stubs lack
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider

from services.runtime.config import Settings
from services.runtime.telemetry import setup_telemetry

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "docker-compose.yml"
SCHEMA_FILE = Path(__file__).resolve().parent / "fixtures" / "compose" / "compose-spec.json"

# What the production shape is made of (ARCHITECTURE.md, "Real parts").
REQUIRED_SERVICES = {
    "postgres",
    "temporal",
    "temporal-ui",
    "otel-collector",
    "jaeger",
    "migrate",
    "gateway",
    "worker",
}
APP_SERVICES = ("gateway", "worker")


def load_compose() -> dict[str, Any]:
    with COMPOSE_FILE.open() as f:
        doc = yaml.safe_load(f)
    assert isinstance(doc, dict)
    return doc


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_compose()


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    loaded = json.loads(SCHEMA_FILE.read_text())
    assert isinstance(loaded, dict)
    return loaded


@pytest.fixture(scope="module")
def validator(schema: dict[str, Any]) -> jsonschema.Draft7Validator:
    return jsonschema.Draft7Validator(schema)


# --- interpolation, as compose does it (${VAR}, ${VAR:-default}, ${VAR-default}, $$) ----------

_VARIABLE = re.compile(
    r"\$(?:(?P<escaped>\$)"
    r"|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}"
    r"|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))"
)


def interpolate(value: Any, env: Mapping[str, str]) -> Any:
    """The document with every string interpolated; a `$` compose would reject fails here."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def replace(m: re.Match[str]) -> str:
        if m["escaped"]:
            return "$"
        name = m["braced"] or m["bare"]
        op, arg = m["op"], m["arg"] or ""
        current = env.get(name)
        missing = current is None or (op is not None and op.startswith(":") and current == "")
        if op in ("-", ":-"):
            return arg if missing else str(current)
        if op in ("?", ":?"):
            if missing:
                raise KeyError(f"{name}: {arg}")
            return str(current)
        if op in ("+", ":+"):
            return "" if missing else arg
        return current or ""

    assert "$" not in _VARIABLE.sub("", value), f"malformed interpolation in {value!r}"
    return _VARIABLE.sub(replace, value)


def environment(service: Mapping[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def depends_on(service: Mapping[str, Any]) -> dict[str, str]:
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return dict.fromkeys(deps, "service_started")
    return {name: spec["condition"] for name, spec in deps.items()}


# --- the specification ---------------------------------------------------------------------------


def test_vendored_schema_is_the_compose_specification(schema: dict[str, Any]) -> None:
    jsonschema.Draft7Validator.check_schema(schema)
    assert schema["title"] == "Compose Specification"
    assert "draft-07" in schema["$schema"]
    assert {"service", "healthcheck", "volume"} <= set(schema["definitions"])


def test_compose_file_follows_the_specification(
    compose: dict[str, Any], validator: jsonschema.Draft7Validator
) -> None:
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(compose)]
    assert errors == []
    # Compose validates after interpolation too: with no variables set, and with all of them.
    for env in ({}, {"OPENAI_API_KEY": "sk-test", "POSTGRES_PASSWORD": "pw"}):
        assert list(validator.iter_errors(interpolate(compose, env))) == []


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d["services"]["gateway"].update(bogus=True),
        lambda d: d["services"]["gateway"]["depends_on"]["migrate"].update(condition="done"),
        lambda d: d["services"]["postgres"]["healthcheck"].update(interval=5),
        lambda d: d.update(servics={}),
    ],
)
def test_the_schema_catches_mistakes(mutate: Any, validator: jsonschema.Draft7Validator) -> None:
    """The vendored schema is strict where compose is, so a passing file means something."""
    doc = load_compose()
    mutate(doc)
    assert list(validator.iter_errors(doc)) != []


def test_every_interpolation_is_well_formed(compose: dict[str, Any]) -> None:
    interpolate(compose, {})
    with pytest.raises(AssertionError, match="malformed"):
        interpolate({"x": "${BROKEN"}, {})


# --- the services and how they depend on each other ----------------------------------------------


def test_the_services_the_app_needs_are_there(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) >= REQUIRED_SERVICES


def test_depends_on_targets_exist_and_can_be_met(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name, service in services.items():
        for target, condition in depends_on(service).items():
            assert target in services, f"{name} depends on missing {target}"
            if condition == "service_healthy":
                assert "healthcheck" in services[target], f"{target} never becomes healthy"
            if condition == "service_completed_successfully":
                assert services[target].get("restart") == "no", f"{target} is not a one-shot"

    # No cycle: compose could not start a service that waits on itself.
    order: list[str] = []
    visiting: set[str] = set()

    def visit(name: str) -> None:
        if name in order:
            return
        assert name not in visiting, f"depends_on cycle through {name}"
        visiting.add(name)
        for target in depends_on(services[name]):
            visit(target)
        order.append(name)

    for name in services:
        visit(name)
    assert order.index("postgres") < order.index("temporal") < order.index("gateway")
    assert order.index("migrate") < order.index("gateway")
    assert order.index("migrate") < order.index("worker")


def test_postgres_keeps_its_data_and_reports_health(compose: dict[str, Any]) -> None:
    postgres = compose["services"]["postgres"]
    assert postgres["image"].startswith("postgres:18")
    volume, _, target = postgres["volumes"][0].partition(":")
    # Postgres 18 images refuse a volume at /var/lib/postgresql/data.
    assert target == "/var/lib/postgresql"
    assert volume in compose["volumes"]
    assert "pg_isready" in postgres["healthcheck"]["test"]


def test_temporal_runs_on_that_postgres(compose: dict[str, Any]) -> None:
    services = compose["services"]
    temporal = services["temporal"]
    env = environment(temporal)
    assert env["DB"] == "postgres12"
    assert env["POSTGRES_SEEDS"] in services
    assert depends_on(temporal)["postgres"] == "service_healthy"
    assert depends_on(temporal)["temporal-schema"] == "service_completed_successfully"
    # The role the init script creates is the one the schema job and the server log in as.
    postgres_env = environment(services["postgres"])
    schema_env = environment(services["temporal-schema"])
    assert env["POSTGRES_USER"] == schema_env["POSTGRES_USER"] == "temporal"
    assert env["POSTGRES_PWD"] == schema_env["SQL_PASSWORD"] == postgres_env["TEMPORAL_DB_PASSWORD"]
    assert "CREATE ROLE temporal" in (ROOT / "deploy/postgres/10-temporal-role.sh").read_text()
    for ui_or_job in ("temporal-ui", "temporal-namespace"):
        address = environment(services[ui_or_job])["TEMPORAL_ADDRESS"]
        assert address.partition(":")[0] == "temporal"


@pytest.mark.parametrize("name", APP_SERVICES)
def test_app_services_get_the_variables_the_app_reads(compose: dict[str, Any], name: str) -> None:
    service = compose["services"][name]
    assert service["command"] == [name]
    assert service["build"]["dockerfile"] == "Dockerfile"
    assert depends_on(service)["migrate"] == "service_completed_successfully"
    raw = environment(service)
    assert raw["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel-collector:4317"
    assert raw["OPENAI_API_KEY"] == "${OPENAI_API_KEY:-}"
    assert raw["OTEL_SERVICE_NAME"] == f"earpiece-{name}"

    # Read by the app's own settings code, as compose would hand it over.
    env = interpolate(raw, {"OPENAI_API_KEY": "sk-from-host"})
    settings = Settings.from_env(env)
    assert settings.database_url is not None
    assert urlparse(settings.database_url).hostname == "postgres"
    assert settings.temporal_address == "temporal:7233"
    assert settings.temporal_namespace == "default"
    assert settings.openai_api_key == "sk-from-host"
    assert settings.realtime_model == "gpt-realtime"
    assert Settings.from_env(interpolate(raw, {})).openai_api_key is None

    migrate_env = environment(compose["services"]["migrate"])
    assert migrate_env["DATABASE_URL"] == raw["DATABASE_URL"]


def test_gateway_listens_on_all_interfaces_and_is_published(compose: dict[str, Any]) -> None:
    gateway = compose["services"]["gateway"]
    settings = Settings.from_env(interpolate(environment(gateway), {}))
    assert settings.grpc_address == "0.0.0.0:50051"
    assert "50051:50051" in gateway["ports"]


@pytest.mark.parametrize("name", APP_SERVICES)
def test_app_telemetry_is_on_and_aimed_at_the_collector(compose: dict[str, Any], name: str) -> None:
    env = interpolate(environment(compose["services"][name]), {})
    handle = setup_telemetry(service_name="unused", env=env, install_global=False)
    try:
        assert handle.exporters == ("otlp",)
        (exporter,) = handle.span_exporters
        assert isinstance(exporter, OTLPSpanExporter)
        assert exporter._endpoint == "otel-collector:4317"
        assert exporter._insecure is True
        provider = handle.tracer_provider
        assert isinstance(provider, TracerProvider)
        assert provider.resource.attributes["service.name"] == f"earpiece-{name}"
    finally:
        handle.shutdown()


def test_addresses_name_services_of_this_file(compose: dict[str, Any]) -> None:
    services = compose["services"]
    env = interpolate(environment(services["gateway"]), {})
    hosts = {
        urlparse(env["DATABASE_URL"]).hostname,
        env["TEMPORAL_ADDRESS"].partition(":")[0],
        urlparse(env["OTEL_EXPORTER_OTLP_ENDPOINT"]).hostname,
    }
    assert hosts <= set(services)


# --- files the compose file mounts or builds from ------------------------------------------------


def test_mounted_files_exist(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), f"{name} mounts missing {source}"
                if source.endswith(".sh"):
                    assert os.access(ROOT / source, os.X_OK), f"{source} is not executable"


def test_collector_config_parses_and_forwards_to_the_viewer(compose: dict[str, Any]) -> None:
    collector = compose["services"]["otel-collector"]
    (mount,) = collector["volumes"]
    source, target = mount.split(":")[:2]
    assert f"--config={target}" in collector["command"]
    config = yaml.safe_load((ROOT / source).read_text())

    pipeline = config["service"]["pipelines"]["traces"]
    for kind in ("receivers", "processors", "exporters"):
        assert set(pipeline.get(kind, [])) <= set(config.get(kind) or {}), kind
    # The app's OTLP endpoint port is the one the collector receives gRPC on.
    grpc_receiver = config["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"]
    assert grpc_receiver.rpartition(":")[2] == "4317"
    (exporter,) = pipeline["exporters"]
    host, _, port = config["exporters"][exporter]["endpoint"].partition(":")
    assert host == "jaeger" and host in compose["services"] and port == "4317"


def test_dockerfile_builds_a_non_root_earpiece_image() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim\b", dockerfile, re.M)
    assert "pip install ." in dockerfile
    users = re.findall(r"^USER\s+(\S+)", dockerfile, re.M)
    assert users and users[-1] not in ("root", "0")
    assert re.search(r'^ENTRYPOINT \["earpiece"\]', dockerfile, re.M)
    assert "COPY migrations" in dockerfile

    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".venv", ".earpiece", ".mypy_cache", "**/__pycache__"} <= set(ignored)


# --- the gateway healthcheck, run for real -------------------------------------------------------


async def run_healthcheck(script: str, *, address: str) -> int:
    env = {**os.environ, "EARPIECE_GRPC_ADDRESS": address}
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", script, env=env)
    return await asyncio.wait_for(proc.wait(), timeout=30)


async def test_gateway_healthcheck_asks_the_grpc_health_service(compose: dict[str, Any]) -> None:
    test = compose["services"]["gateway"]["healthcheck"]["test"]
    assert test[:3] == ["CMD", "python", "-c"]
    script = test[3]

    server = grpc.aio.server()
    servicer = HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        assert await run_healthcheck(script, address=f"0.0.0.0:{port}") == 0
        await servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
        assert await run_healthcheck(script, address=f"0.0.0.0:{port}") != 0
    finally:
        await server.stop(grace=None)
    # Nothing listening: unhealthy, not hung.
    assert await run_healthcheck(script, address=f"0.0.0.0:{port}") != 0


# --- security shape: the app's own login, TLS to Postgres and on the API -------------------------


def test_the_app_logs_in_as_its_own_role_over_verified_tls(compose: dict[str, Any]) -> None:
    services = compose["services"]
    owner = environment(services["postgres"])["POSTGRES_USER"]
    for name in APP_SERVICES:
        url = urlparse(Settings.from_env(interpolate(environment(services[name]), {})).database_url)
        assert url.username == "earpiece_app", name
        assert "sslmode=verify-full" in url.query and "sslrootcert=/certs/ca.crt" in url.query
        assert "DATABASE_OWNER_URL" not in environment(services[name])  # no owner powers
    migrate = Settings.from_env(interpolate(environment(services["migrate"]), {}))
    assert urlparse(migrate.database_owner_url).username == owner
    script = (ROOT / "deploy/postgres/20-earpiece-app.sh").read_text()
    assert "CREATE ROLE earpiece_app LOGIN" in script and "NOSUPERUSER" in script
    assert "hostssl $POSTGRES_DB $POSTGRES_USER,earpiece_app" in script
    postgres = services["postgres"]
    assert "ssl=on" in postgres["command"]
    assert depends_on(postgres)["certs"] == "service_completed_successfully"


def test_the_gateway_serves_tls_with_the_certs_made_for_it(compose: dict[str, Any]) -> None:
    services = compose["services"]
    gateway = Settings.from_env(interpolate(environment(services["gateway"]), {}))
    assert gateway.tls_cert == Path("/certs/gateway.crt")
    assert gateway.tls_key == Path("/certs/gateway.key")
    script = (ROOT / "deploy/tls/make-certs.sh").read_text()
    assert 'issue gateway "DNS:gateway' in script and 'issue postgres "DNS:postgres"' in script
    for name in (*APP_SERVICES, "postgres", "migrate"):
        assert "certs:/certs:ro" in services[name]["volumes"], name
    assert "certs" in compose["volumes"]
