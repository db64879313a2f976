"""X.509 device authentication in sas mode (PROTOCOL.md §1.3): selfSigned
identities by SHA-1 or SHA-256 thumbprint, certificateAuthority identities
by a CA-issued certificate whose CN is the deviceId. The listener verifies
the chain (require_certificate true); the plugin checks the rest inside
BASIC_AUTH. Certificates are made with openssl at test time."""

import pytest

from conftest import free_port
from iothub_auth import Certs, device_username, new_key, sas_token
from twin_clients import Backend, Device

HOST = "hub.example.test"
OWNER_KEY = new_key()


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    c = Certs(tmp_path_factory.mktemp("pki"))
    c.dev_self = c.self_signed("dev-self", "dev-self")
    c.dev_self2 = c.self_signed("dev-self2", "dev-self")
    c.dev_ca = c.issue("dev-ca", "dev-ca")
    c.dev_ca_other = c.issue("dev-ca-other", "someone-else")
    c.dev_ca_forged = c.self_signed("dev-ca-forged", "dev-ca")
    c.trusted = c.bundle(c.dev_self[0], c.dev_self2[0], c.dev_ca_forged[0])
    return c


class X509Hub:
    def __init__(self, broker, tls_port, certs):
        self.broker, self.tls_port, self.certs = broker, tls_port, certs
        self.admin = Backend(
            broker.port,
            "admin",
            username="iothubowner",
            password=sas_token(HOST, OWNER_KEY, policy="iothubowner"),
        )

    def create(self, device_id, auth):
        r = self.admin.command(
            command="createDevice", deviceId=device_id, device={"authentication": auth}
        )
        assert r["status"] == 200, r
        return r["data"]

    def device(self, device_id, cert, password=None, **kw):
        return Device(
            self.tls_port,
            device_id,
            username=device_username(HOST, device_id),
            password=password,
            tls=(str(self.certs.ca), str(cert[0]), str(cert[1])),
            **kw,
        )


@pytest.fixture
def hub(start_broker, certs):
    tls_port = free_port()
    broker = start_broker(
        options={"auth": "sas", "hostname": HOST, "policy_iothubowner": f"all:{OWNER_KEY}"},
        config=[
            f"listener {tls_port} 127.0.0.1",
            f"cafile {certs.trusted}",
            f"certfile {certs.server_cert}",
            f"keyfile {certs.server_key}",
            "require_certificate true",
        ],
    )
    h = X509Hub(broker, tls_port, certs)
    yield h
    h.admin.close()


def self_signed(primary, secondary=None):
    return {
        "type": "selfSigned",
        "x509Thumbprint": {"primaryThumbprint": primary, "secondaryThumbprint": secondary},
    }


@pytest.mark.valgrind_ci
@pytest.mark.parametrize("digest", ["sha1", "sha256"])
def test_x509_self_signed_device_by_thumbprint(hub, certs, digest):
    hub.create("dev-self", self_signed(Certs.thumbprint(certs.dev_self[0], digest)))
    d = hub.device("dev-self", certs.dev_self)
    assert d.get()["reported"]["$version"] == 1
    d.close()


def test_x509_self_signed_secondary_thumbprint_and_lower_case(hub, certs):
    primary = Certs.thumbprint(certs.dev_self2[0])
    hub.create("dev-self", self_signed(primary, Certs.thumbprint(certs.dev_self[0]).lower()))
    hub.device("dev-self", certs.dev_self).close()
    hub.device("dev-self", certs.dev_self2).close()


def test_x509_self_signed_wrong_thumbprint_is_refused(hub, certs):
    hub.create("dev-self", self_signed(Certs.thumbprint(certs.dev_self2[0])))
    d = hub.device("dev-self", certs.dev_self, refused_ok=True)
    assert d.connack[0] == 5
    assert "refused client dev-self: the certificate matches neither thumbprint" in (
        hub.broker.log()
    )


def test_x509_identity_ignores_a_password(hub, certs):
    hub.create("dev-self", self_signed(Certs.thumbprint(certs.dev_self[0])))
    hub.device("dev-self", certs.dev_self, password="anything").close()


def test_x509_ca_device_with_cn_equal_to_device_id(hub, certs):
    hub.create("dev-ca", {"type": "certificateAuthority"})
    d = hub.device("dev-ca", certs.dev_ca)
    assert d.get()["reported"]["$version"] == 1
    d.close()


@pytest.mark.valgrind_ci
@pytest.mark.parametrize("which", ["dev_ca_other", "dev_ca_forged"])
def test_x509_ca_device_needs_a_ca_issued_cn_match(hub, certs, which):
    """Another device's certificate, and a self-signed one that claims the
    right CN (trusted by the listener only because it is in the bundle)."""
    hub.create("dev-ca", {"type": "certificateAuthority"})
    d = hub.device("dev-ca", getattr(certs, which), refused_ok=True)
    assert d.connack[0] == 5
    assert "refused client dev-ca: the certificate is not CA-issued" in hub.broker.log()


def test_x509_identity_without_a_certificate_is_refused(hub, certs):
    hub.create("dev-ca", {"type": "certificateAuthority"})
    d = Device(hub.broker.port, "dev-ca", username=device_username(HOST, "dev-ca"),
               refused_ok=True)
    assert d.connack[0] == 5
    assert "refused client dev-ca: no client certificate" in hub.broker.log()


def test_sas_identity_with_only_a_certificate_is_refused(hub, certs):
    hub.create("dev-ca", {"type": "sas"})
    d = hub.device("dev-ca", certs.dev_ca, refused_ok=True)
    assert d.connack[0] == 5
