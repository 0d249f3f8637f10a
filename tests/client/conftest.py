"""The client library's tests run against a gateway whose sessions talk to a simulator."""

from tests.gateway.conftest import gateway_for  # noqa: F401  (the fixture, shared)
