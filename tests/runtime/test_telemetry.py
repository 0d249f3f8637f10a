"""Telemetry set-up: off by default, exporters chosen by the standard variables, and real spans
from a gRPC call over loopback and from a workflow run on the Temporal dev server.

Every handle here is private (`install_global=False`, env passed in): OpenTelemetry's global
provider can be set once per process, and these tests must not take it from the rest of the run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import grpc
import pytest
from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.worker import Worker

with workflow.unsafe.imports_passed_through():
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from grpc_health.v1._async import HealthServicer  # health.aio, which the stubs lack
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SpanExporter
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import NoOpTracerProvider, SpanKind, StatusCode
    from temporalio.contrib.opentelemetry import TracingInterceptor

    from services.runtime import telemetry
    from services.runtime.config import ConfigError
    from services.runtime.telemetry import (
        TelemetryHandle,
        grpc_server_interceptors,
        setup_telemetry,
        temporal_interceptors,
    )

ENDPOINT = "OTEL_EXPORTER_OTLP_ENDPOINT"
RESOURCE = "OTEL_RESOURCE_ATTRIBUTES"


@pytest.fixture(autouse=True)
def keep_active_handle() -> Iterator[None]:
    """A test that sets up "globally" (off) must not leave its handle for the next test."""
    before = telemetry._active
    yield
    telemetry._active = before


def private(env: dict[str, str], *, span_exporter: SpanExporter | None = None) -> TelemetryHandle:
    return setup_telemetry(
        service_name="earpiece-test", env=env, span_exporter=span_exporter, install_global=False
    )


def recording() -> tuple[TelemetryHandle, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    return private({}, span_exporter=exporter), exporter


def test_off_by_default() -> None:
    handle = setup_telemetry(service_name="earpiece-test", env={})
    assert not handle.enabled
    assert handle.exporters == () and handle.span_exporters == ()
    assert isinstance(handle.tracer_provider, NoOpTracerProvider)
    assert handle.grpc_server_interceptors() == []
    assert handle.temporal_interceptors() == []
    # The module-level helpers follow the handle set up last: off, so nothing to install.
    assert grpc_server_interceptors() == []
    assert temporal_interceptors() == []
    handle.shutdown()


@pytest.mark.parametrize(
    "env",
    [
        {"OTEL_TRACES_EXPORTER": "none"},
        {"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317"},
        {"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "console"},
        {"OTEL_SDK_DISABLED": "TRUE", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317"},
        # Disabled means not even looked at: a bad exporter name does not matter then.
        {"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "zipkin"},
        {"OTEL_SERVICE_NAME": "only-a-name"},
    ],
)
def test_stays_off(env: dict[str, str]) -> None:
    handle = private(env)
    assert not handle.enabled
    assert handle.grpc_server_interceptors() == [] and handle.temporal_interceptors() == []


def test_sdk_disabled_wins_over_an_explicit_exporter() -> None:
    handle = private({"OTEL_SDK_DISABLED": "true"}, span_exporter=InMemorySpanExporter())
    assert not handle.enabled


def test_console_exporter_from_env() -> None:
    handle = private({"OTEL_TRACES_EXPORTER": "console"})
    try:
        assert handle.enabled
        assert handle.exporters == ("console",)
        assert [type(e) for e in handle.span_exporters] == [ConsoleSpanExporter]
    finally:
        handle.shutdown()
    assert not handle.enabled
    handle.shutdown()  # twice is fine


@pytest.mark.parametrize(
    ("env", "target", "insecure"),
    [
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://otel-collector:4317"},
            "otel-collector:4317",
            True,
        ),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, "localhost:4317", True),
        (
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": "http://general:4317",
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "https://traces.example:4317",
            },
            "traces.example:4317",
            False,
        ),
        (
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4317",
                "OTEL_EXPORTER_OTLP_INSECURE": "true",
            },
            "collector:4317",
            True,
        ),
    ],
)
def test_otlp_exporter_from_env(env: dict[str, str], target: str, insecure: bool) -> None:
    handle = private(env)
    try:
        assert handle.exporters == ("otlp",)
        (exporter,) = handle.span_exporters
        assert isinstance(exporter, OTLPSpanExporter)
        # The exporter keeps no public view of where it sends; these are its own fields.
        assert exporter._endpoint == target
        assert exporter._insecure is insecure
    finally:
        handle.shutdown()


def test_both_exporters_from_a_list() -> None:
    handle = private({"OTEL_TRACES_EXPORTER": "otlp, console"})
    try:
        assert handle.exporters == ("otlp", "console")
        assert [type(e) for e in handle.span_exporters] == [OTLPSpanExporter, ConsoleSpanExporter]
    finally:
        handle.shutdown()


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"OTEL_TRACES_EXPORTER": "zipkin"}, "OTEL_TRACES_EXPORTER"),
        (
            {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"},
            "OTEL_EXPORTER_OTLP_PROTOCOL",
        ),
        (
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318",
                "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/json",
            },
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        ),
    ],
)
def test_unsupported_settings_name_the_variable(env: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigError, match=variable):
        private(env)


@pytest.mark.parametrize(
    ("env", "name"),
    [
        ({}, "earpiece-test"),
        ({RESOURCE: "service.name=from-attributes"}, "from-attributes"),
        (
            {
                "OTEL_RESOURCE_ATTRIBUTES": "service.name=from-attributes",
                "OTEL_SERVICE_NAME": "svc",
            },
            "svc",
        ),
    ],
)
def test_service_name_precedence(env: dict[str, str], name: str) -> None:
    handle = private(env, span_exporter=InMemorySpanExporter())
    provider = handle.tracer_provider
    assert isinstance(provider, TracerProvider)
    assert provider.resource.attributes["service.name"] == name
    handle.shutdown()


def test_resource_attributes_are_parsed_and_decoded() -> None:
    env = {"OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=prod,team=voice%20tutors,broken"}
    handle = private(env, span_exporter=InMemorySpanExporter())
    provider = handle.tracer_provider
    assert isinstance(provider, TracerProvider)
    attributes = provider.resource.attributes
    assert attributes["deployment.environment"] == "prod"
    assert attributes["team"] == "voice tutors"
    assert "broken" not in attributes
    handle.shutdown()


async def health_check(*, interceptors: list[grpc.aio.ServerInterceptor], service: str) -> int:
    """One real Health/Check over a loopback port; returns the status code's number."""
    server = grpc.aio.server(interceptors=interceptors)
    servicer = HealthServicer()
    await servicer.set("earpiece.v1.SessionService", health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            try:
                await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
            except grpc.aio.AioRpcError as err:
                return int(err.code().value[0])
            return int(grpc.StatusCode.OK.value[0])
    finally:
        await server.stop(grace=None)


def only_span(spans: tuple[ReadableSpan, ...], name: str) -> ReadableSpan:
    matching = [s for s in spans if s.name == name]
    assert len(matching) == 1, [s.name for s in spans]
    return matching[0]


async def test_grpc_call_over_loopback_makes_a_server_span() -> None:
    handle, exporter = recording()
    code = await health_check(
        interceptors=handle.grpc_server_interceptors(), service="earpiece.v1.SessionService"
    )
    assert code == 0
    assert handle.force_flush()
    span = only_span(exporter.get_finished_spans(), "/grpc.health.v1.Health/Check")
    assert span.kind is SpanKind.SERVER
    assert span.attributes is not None
    assert span.attributes["rpc.service"] == "grpc.health.v1.Health"
    assert span.attributes["rpc.method"] == "Check"
    assert span.resource.attributes["service.name"] == "earpiece-test"
    handle.shutdown()


async def test_a_refused_rpc_records_its_status_code() -> None:
    handle, exporter = recording()
    code = await health_check(interceptors=handle.grpc_server_interceptors(), service="nope")
    assert code == grpc.StatusCode.NOT_FOUND.value[0]
    handle.force_flush()
    span = only_span(exporter.get_finished_spans(), "/grpc.health.v1.Health/Check")
    # OpenTelemetry's gRPC conventions: a client's mistake (NOT_FOUND) is not a server error.
    assert span.status.status_code is StatusCode.UNSET
    assert span.attributes is not None
    assert span.attributes["rpc.grpc.status_code"] == grpc.StatusCode.NOT_FOUND.value[0]
    handle.shutdown()


async def test_excluded_services_make_no_spans() -> None:
    """Compose's health probes call Health every few seconds; they can be kept out of traces."""
    exporter = InMemorySpanExporter()
    handle = private(
        {"OTEL_PYTHON_GRPC_EXCLUDED_SERVICES": "grpc.health.v1.Health"}, span_exporter=exporter
    )
    assert handle.grpc_excluded_services == ("grpc.health.v1.Health",)
    code = await health_check(
        interceptors=handle.grpc_server_interceptors(), service="earpiece.v1.SessionService"
    )
    assert code == 0
    handle.force_flush()
    assert exporter.get_finished_spans() == ()
    handle.shutdown()


def test_module_helpers_use_the_handle_given() -> None:
    handle, exporter = recording()
    assert grpc_server_interceptors(handle=handle) == handle.grpc_server_interceptors()
    (interceptor,) = temporal_interceptors(handle=handle)
    assert isinstance(interceptor, TracingInterceptor)
    # The interceptor traces through this handle's provider, not the global one.
    with interceptor.tracer.start_as_current_span("probe"):
        pass
    handle.force_flush()
    assert [s.name for s in exporter.get_finished_spans()] == ["probe"]
    handle.shutdown()
    assert temporal_interceptors(handle=handle) == []


@activity.defn(name="telemetry_test_shout")
async def shout(text: str) -> str:
    return text.upper()


@workflow.defn(name="TelemetryTestWorkflow")
class ShoutWorkflow:
    @workflow.run
    async def run(self, text: str) -> str:
        return await workflow.execute_activity(
            shout, text, start_to_close_timeout=timedelta(seconds=10)
        )


async def test_workflow_and_activity_runs_make_spans(temporal: Client) -> None:
    handle, exporter = recording()
    interceptors = handle.temporal_interceptors()
    assert [type(i) for i in interceptors] == [TracingInterceptor]
    client = Client(
        temporal.service_client, namespace=temporal.namespace, interceptors=interceptors
    )
    queue = f"telemetry-{uuid.uuid4()}"
    async with Worker(client, task_queue=queue, workflows=[ShoutWorkflow], activities=[shout]):
        result = await client.execute_workflow(
            ShoutWorkflow.run,
            "hello",
            id=f"telemetry-{uuid.uuid4()}",
            task_queue=queue,
            execution_timeout=timedelta(seconds=30),
        )
    assert result == "HELLO"
    handle.force_flush()
    names = {s.name for s in exporter.get_finished_spans()}
    assert "StartWorkflow:TelemetryTestWorkflow" in names
    assert "RunWorkflow:TelemetryTestWorkflow" in names
    assert "StartActivity:telemetry_test_shout" in names
    assert "RunActivity:telemetry_test_shout" in names
    handle.shutdown()


GLOBAL_SCRIPT = """
from opentelemetry import trace
from services.runtime.telemetry import grpc_server_interceptors, setup_telemetry

handle = setup_telemetry(service_name="earpiece-gateway")
assert setup_telemetry(service_name="again") is handle
assert len(grpc_server_interceptors()) == 1
with trace.get_tracer("earpiece.store").start_as_current_span("store.flush"):
    pass
handle.shutdown()
assert grpc_server_interceptors() == []
"""


def test_global_setup_exports_api_only_spans() -> None:
    """The store only uses the API; a global set-up (here in a fresh process, since the global
    provider is set once per process) must export its spans, from the real `os.environ`."""
    root = Path(__file__).resolve().parents[2]
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env |= {"OTEL_TRACES_EXPORTER": "console", "OTEL_SERVICE_NAME": "gw-from-env"}
    done = subprocess.run(
        [sys.executable, "-c", GLOBAL_SCRIPT],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    span = json.loads(done.stdout)
    assert span["name"] == "store.flush"
    assert span["resource"]["attributes"]["service.name"] == "gw-from-env"
