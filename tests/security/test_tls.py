"""TLS on the gRPC API, from EARPIECE_TLS_* files: TLS works, plaintext is refused, and with a
client CA (mTLS) only clients holding a certificate it signed get in. The certificates are
made here, with the `cryptography` package, for this test only."""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.api.earpiece.v1 import session_pb2
from services.client import EarpieceClient, TlsConfig
from services.gateway.server import RunningGateway, running_gateway
from services.runtime.config import ConfigError, Settings
from services.runtime.tls import server_credentials


@dataclass(frozen=True)
class Pair:
    cert: Path
    key: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write(
    folder: Path, stem: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey
) -> Pair:
    pair = Pair(folder / f"{stem}.crt", folder / f"{stem}.key")
    pair.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pair.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return pair


class Authority:
    """A throwaway CA that signs server and client certificates."""

    def __init__(self, folder: Path, name: str) -> None:
        self.folder = folder
        self.key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(_name(name))
            .issuer_name(_name(name))
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        self.pair = _write(folder, name, self.cert, self.key)

    def issue(self, stem: str, *, server: bool) -> Pair:
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name("localhost" if server else stem))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
        )
        if server:
            builder = builder.add_extension(
                x509.SubjectAlternativeName(
                    [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
                ),
                critical=False,
            )
        return _write(self.folder, stem, builder.sign(self.key, hashes.SHA256()), key)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> tuple[Authority, Pair, Pair, Pair]:
    """(the CA, a server cert, a client cert it signed, a client cert another CA signed)."""
    folder = tmp_path_factory.mktemp("pki")
    ca = Authority(folder, "earpiece-test-ca")
    stranger = Authority(folder, "stranger-ca")
    return (
        ca,
        ca.issue("server", server=True),
        ca.issue("client", server=False),
        stranger.issue("stranger", server=False),
    )


def tls_settings(server: Pair, client_ca: Path | None = None) -> Settings:
    env = {"EARPIECE_TLS_CERT": str(server.cert), "EARPIECE_TLS_KEY": str(server.key)}
    if client_ca is not None:
        env["EARPIECE_TLS_CLIENT_CA"] = str(client_ca)
    return Settings.from_env(env)


@asynccontextmanager
async def tls_gateway(gateway: RunningGateway, settings: Settings) -> AsyncIterator[str]:
    async with running_gateway(
        store=gateway.gateway.store,
        client=gateway.gateway.client,
        address="127.0.0.1:0",
        credentials=server_credentials(settings),
    ) as running:
        yield running.address


async def reaches(address: str, *, tls: TlsConfig | bool) -> bool:
    """Whether an authenticated call gets an answer from the API (NOT_FOUND for a made-up id)."""
    async with EarpieceClient.connect(address, tls=tls) as client:
        try:
            await client.sessions.GetSession(
                session_pb2.GetSessionRequest(session_id="no-such-session"), timeout=5
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                return True
            assert exc.code() == grpc.StatusCode.UNAVAILABLE, exc
            return False
    raise AssertionError("a made-up session was found")


async def test_tls_works_and_plaintext_is_refused(gateway: RunningGateway, pki) -> None:
    ca, server, _, _ = pki
    async with tls_gateway(gateway, tls_settings(server)) as address:
        assert await reaches(address, tls=TlsConfig(ca_file=ca.pair.cert))
        assert not await reaches(address, tls=False)
        # Not trusting the CA: refused too.
        assert not await reaches(address, tls=True)
        # Health checking needs no key, but TLS all the same.
        credentials = TlsConfig(ca_file=ca.pair.cert).credentials()
        async with grpc.aio.secure_channel(address, credentials) as channel:
            reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
        assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def test_mtls_admits_only_clients_with_a_certificate_from_the_ca(
    gateway: RunningGateway, pki
) -> None:
    ca, server, client, stranger = pki
    async with tls_gateway(gateway, tls_settings(server, client_ca=ca.pair.cert)) as address:
        with_cert = TlsConfig(ca_file=ca.pair.cert, cert_file=client.cert, key_file=client.key)
        assert await reaches(address, tls=with_cert)
        assert not await reaches(address, tls=TlsConfig(ca_file=ca.pair.cert))
        wrong = TlsConfig(ca_file=ca.pair.cert, cert_file=stranger.cert, key_file=stranger.key)
        assert not await reaches(address, tls=wrong)
        assert not await reaches(address, tls=False)


async def test_the_client_takes_tls_from_the_environment(
    gateway: RunningGateway, pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    ca, server, client, _ = pki
    monkeypatch.setenv("EARPIECE_TLS_CA", str(ca.pair.cert))
    monkeypatch.setenv("EARPIECE_TLS_CLIENT_CERT", str(client.cert))
    monkeypatch.setenv("EARPIECE_TLS_CLIENT_KEY", str(client.key))
    async with (
        tls_gateway(gateway, tls_settings(server, client_ca=ca.pair.cert)) as address,
        EarpieceClient.connect(address) as api,
    ):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await api.get_session("no-such-session")
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


def test_half_a_tls_setting_names_the_variable_to_fix(pki, tmp_path: Path) -> None:
    _, server, _, _ = pki
    with pytest.raises(ConfigError, match="EARPIECE_TLS_KEY"):
        server_credentials(Settings.from_env({"EARPIECE_TLS_CERT": str(server.cert)}))
    with pytest.raises(ConfigError, match="EARPIECE_TLS_CERT"):
        server_credentials(
            Settings.from_env(
                {"EARPIECE_TLS_CERT": str(tmp_path / "absent.crt"), "EARPIECE_TLS_KEY": "x"}
            )
        )
    with pytest.raises(ConfigError, match="EARPIECE_TLS_CLIENT_CA needs TLS"):
        server_credentials(Settings.from_env({"EARPIECE_TLS_CLIENT_CA": str(server.cert)}))
    assert server_credentials(Settings.from_env({})) is None
