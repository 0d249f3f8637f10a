"""OpenTelemetry, set up in one place, from the standard `OTEL_*` variables; off by default.

Off means no SDK provider at all: the API's spans (the store's flush spans, for instance) stay
no-ops and no interceptor is put on the gRPC server or the Temporal client, so a process that
does not ask for traces pays close to nothing. Traces are on when

- `OTEL_TRACES_EXPORTER` names `otlp` and/or `console` (`none` keeps them off), or
- it is unset and `OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is set;

and `OTEL_SDK_DISABLED=true` turns everything off whatever else says. The OTLP exporter speaks
gRPC (the one installed); `OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES` name the resource.

OpenTelemetry lets a process set the global tracer provider once, so the provider is also handed
explicitly to the gRPC and Temporal interceptors: tests build private providers
(`install_global=False`) and still see every span those interceptors make.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from urllib.parse import unquote, urlparse

import grpc
from opentelemetry import trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SpanExporter,
)
from temporalio.contrib.opentelemetry import TracingInterceptor

from services.runtime.config import ConfigError

log = logging.getLogger(__name__)

EXPORTER_NAMES = ("otlp", "console", "none")
# The instrumentation's own variable for RPCs that should not make spans (e.g. health checks).
GRPC_EXCLUDED_SERVICES = "OTEL_PYTHON_GRPC_EXCLUDED_SERVICES"
DEFAULT_OTLP_ENDPOINT = "http://localhost:4317"


class TelemetryHandle:
    """What `setup_telemetry` built: the provider (or none), and the interceptors that use it.

    `shutdown()` flushes pending spans and stops the exporters; call it once on the way out (a
    provider also shuts down at interpreter exit, but an explicit flush loses nothing).
    """

    def __init__(
        self,
        *,
        provider: TracerProvider | None,
        exporters: tuple[str, ...],
        span_exporters: tuple[SpanExporter, ...],
        grpc_excluded_services: tuple[str, ...] = (),
    ) -> None:
        self._provider = provider
        self.exporters = exporters
        self.span_exporters = span_exporters
        self.grpc_excluded_services = grpc_excluded_services
        self._grpc_interceptors: list[grpc.aio.ServerInterceptor] | None = None
        self._temporal_interceptors: list[TracingInterceptor] | None = None
        self._shut = False

    @property
    def enabled(self) -> bool:
        """True while spans are recorded and exported."""
        return self._provider is not None and not self._shut

    @property
    def tracer_provider(self) -> trace.TracerProvider:
        """The SDK provider when on, else a no-op one: safe to pass anywhere either way."""
        if self._provider is None or self._shut:
            return trace.NoOpTracerProvider()
        return self._provider

    def tracer(self, name: str) -> trace.Tracer:
        """A tracer bound to this handle's provider (no-op when off)."""
        return self.tracer_provider.get_tracer(name)

    def grpc_server_interceptors(self) -> list[grpc.aio.ServerInterceptor]:
        """A span per RPC on a `grpc.aio` server; empty when off, so nothing wraps the calls."""
        if not self.enabled:
            return []
        if self._grpc_interceptors is None:
            from opentelemetry.instrumentation.grpc import aio_server_interceptor

            interceptor = aio_server_interceptor(
                tracer_provider=self._provider,
                filter_=_excluding_services(self.grpc_excluded_services),
            )
            self._grpc_interceptors = [interceptor]
        return list(self._grpc_interceptors)

    def temporal_interceptors(self) -> list[TracingInterceptor]:
        """Spans for workflow and activity runs and client calls; empty when off.

        One `TracingInterceptor` is both a client and a worker interceptor: put it on
        `Client.connect(interceptors=...)` and the workers made from that client inherit it.
        """
        if not self.enabled:
            return []
        if self._temporal_interceptors is None:
            assert self._provider is not None
            tracer = self._provider.get_tracer("temporalio.contrib.opentelemetry")
            self._temporal_interceptors = [TracingInterceptor(tracer)]
        return list(self._temporal_interceptors)

    def force_flush(self, *, timeout_millis: int = 30_000) -> bool:
        """Export every span ended so far; True when all made it (or there was nothing to do)."""
        if not self.enabled:
            return True
        assert self._provider is not None
        return self._provider.force_flush(timeout_millis)

    def shutdown(self) -> None:
        """Flush and stop the exporters. Safe to call twice, and on a handle that is off."""
        global _active
        if self._provider is not None and not self._shut:
            self._shut = True
            self._provider.shutdown()
        if _active is self:
            _active = None


# The handle the module-level helpers use: the last one installed as the global provider.
_active: TelemetryHandle | None = None


def setup_telemetry(
    *,
    service_name: str,
    env: Mapping[str, str] | None = None,
    span_exporter: SpanExporter | None = None,
    install_global: bool = True,
) -> TelemetryHandle:
    """Build tracing from `env` (default: `os.environ`); see the module docstring for the rules.

    `span_exporter` replaces the exporters the variables name and turns tracing on (tests pass an
    in-memory one); `OTEL_SDK_DISABLED=true` still wins. With `install_global` the provider also
    becomes OpenTelemetry's global one, so code that only uses the API (`trace.get_tracer`)
    exports through it, and the module-level `grpc_server_interceptors()` and
    `temporal_interceptors()` use this handle. A second global set-up in the same process gets
    the first handle back, because the global provider cannot be replaced.

    Raises ConfigError (one line, naming the variable) for an exporter or protocol we lack.
    """
    global _active
    e: Mapping[str, str] = os.environ if env is None else env
    if install_global and _active is not None and _active.enabled:
        log.debug("telemetry already set up; reusing it for %s", service_name)
        return _active

    if _truthy(e.get("OTEL_SDK_DISABLED")):
        names: tuple[str, ...] = ()
        span_exporter = None
    else:
        names = _exporter_names(e)
    if span_exporter is not None:
        names = ("custom",)
    if not names:
        handle = TelemetryHandle(provider=None, exporters=(), span_exporters=())
        if install_global:
            _active = handle
        return handle

    exporters = (
        (span_exporter,)
        if span_exporter is not None
        else tuple(_build_exporter(name, e, service_name=service_name) for name in names)
    )
    provider = TracerProvider(resource=_resource(e, service_name=service_name))
    for exporter in exporters:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    handle = TelemetryHandle(
        provider=provider,
        exporters=names,
        span_exporters=exporters,
        grpc_excluded_services=_split(e.get(GRPC_EXCLUDED_SERVICES, "")),
    )
    if install_global:
        if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
            trace.set_tracer_provider(provider)
        else:
            log.warning(
                "a global OpenTelemetry tracer provider was already set elsewhere; spans made "
                "through the global API will not reach the %s exporter",
                ",".join(names),
            )
        _active = handle
    log.info("telemetry: %s traces for %s", "+".join(names), _service(e, service_name))
    return handle


def grpc_server_interceptors(
    *, handle: TelemetryHandle | None = None
) -> list[grpc.aio.ServerInterceptor]:
    """Interceptors for `grpc.aio.server(interceptors=...)`: a span per RPC, or [] when off.

    Without `handle`, uses the one `setup_telemetry` installed globally (none yet: off).
    """
    h = handle if handle is not None else _active
    return h.grpc_server_interceptors() if h is not None else []


def temporal_interceptors(*, handle: TelemetryHandle | None = None) -> list[TracingInterceptor]:
    """`[TracingInterceptor]` for the Temporal client (and so its workers), or [] when off."""
    h = handle if handle is not None else _active
    return h.temporal_interceptors() if h is not None else []


def _exporter_names(env: Mapping[str, str]) -> tuple[str, ...]:
    raw = env.get("OTEL_TRACES_EXPORTER", "").strip()
    if raw:
        names = tuple(dict.fromkeys(n.strip().lower() for n in raw.split(",") if n.strip()))
        unknown = [n for n in names if n not in EXPORTER_NAMES]
        if unknown:
            raise ConfigError(
                f"OTEL_TRACES_EXPORTER={raw!r}: unsupported {', '.join(unknown)}; "
                f"use {', '.join(EXPORTER_NAMES)} (comma-separated)"
            )
        return tuple(n for n in names if n != "none")
    if env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        return ("otlp",)
    return ()


def _build_exporter(name: str, env: Mapping[str, str], *, service_name: str) -> SpanExporter:
    if name == "console":
        return ConsoleSpanExporter(service_name=_service(env, service_name))
    # The variables are read from `env` here, rather than left to the exporter (which reads
    # os.environ), so that what was passed in is what is used. TLS files, timeout and
    # compression are still the exporter's own reading of os.environ.
    for var in ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"):
        protocol = env.get(var, "").strip().lower()
        if protocol:
            if protocol != "grpc":
                raise ConfigError(
                    f"{var}={protocol!r}: only the OTLP gRPC exporter is installed; "
                    "use grpc (the collector's port 4317)"
                )
            break
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

    endpoint = (
        env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        or env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or DEFAULT_OTLP_ENDPOINT
    )
    insecure_var = env.get("OTEL_EXPORTER_OTLP_TRACES_INSECURE") or env.get(
        "OTEL_EXPORTER_OTLP_INSECURE"
    )
    # As the exporter does it: an explicit variable, else plaintext only for an http:// URL.
    insecure = _truthy(insecure_var) if insecure_var else urlparse(endpoint).scheme == "http"
    headers = env.get("OTEL_EXPORTER_OTLP_TRACES_HEADERS") or env.get("OTEL_EXPORTER_OTLP_HEADERS")
    return OTLPSpanExporter(endpoint=endpoint, insecure=insecure, headers=headers or None)


def _resource(env: Mapping[str, str], *, service_name: str) -> Resource:
    """`service_name` is the default; OTEL_RESOURCE_ATTRIBUTES and then OTEL_SERVICE_NAME win."""
    attributes: dict[str, str] = {SERVICE_NAME: service_name}
    for item in env.get("OTEL_RESOURCE_ATTRIBUTES", "").split(","):
        key, sep, value = item.partition("=")
        if sep and key.strip():
            attributes[key.strip()] = unquote(value.strip())
    attributes[SERVICE_NAME] = _service(env, attributes[SERVICE_NAME])
    return Resource.create(attributes)


def _service(env: Mapping[str, str], default: str) -> str:
    return env.get("OTEL_SERVICE_NAME", "").strip() or default


def _excluding_services(
    services: tuple[str, ...],
) -> Callable[[grpc.HandlerCallDetails], bool] | None:
    if not services:
        return None
    from opentelemetry.instrumentation.grpc.filters import any_of, negate, service_name

    return negate(any_of(*(service_name(s) for s in services)))


def _split(value: str) -> tuple[str, ...]:
    return tuple(s.strip() for s in value.split(",") if s.strip())


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() == "true"
