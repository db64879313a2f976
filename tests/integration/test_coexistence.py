"""The plugin alongside the broker's own password_file and acl_file
(issue 4, PROTOCOL.md §11): in sas mode ordinary clients and topics are the
broker's business; in external mode the broker authenticates devices too and
the plugin only maps client id to device and isolates twins."""

import json
import subprocess

import pytest

from iothub_auth import device_username, new_key, sas_token
from twin_clients import DESIRED, RES, Backend, Client, Device

HOST = "hub.example.test"
OWNER_KEY = new_key()

ACL = """\
user alice
topic readwrite plant/#

user admin
topic readwrite $CONTROL/twin/#
"""


@pytest.fixture
def files(tmp_path):
    passwd = tmp_path / "passwd"
    passwd.write_text("")
    for user, password in (("alice", "alice-secret"), ("admin", "admin-secret"),
                           ("dev1", "dev1-secret"), ("dev2", "dev2-secret"),
                           ("dev9", "dev9-secret")):
        subprocess.run(["mosquitto_passwd", "-b", str(passwd), user, password], check=True)
    acl = tmp_path / "acl"
    acl.write_text(ACL)
    return [f"password_file {passwd}", f"acl_file {acl}", "allow_anonymous false"]


def sas_broker_with_device(start_broker, config):
    """A sas-mode broker with config added, its iothubowner back end, and
    device dev1 connected with a SAS token."""
    broker = start_broker(
        options={"auth": "sas", "hostname": HOST, "policy_iothubowner": f"all:{OWNER_KEY}"},
        config=config,
    )
    admin = Backend(broker.port, "admin-be", username="iothubowner",
                    password=sas_token(HOST, OWNER_KEY, policy="iothubowner"))
    r = admin.command(command="createDevice", deviceId="dev1")
    key = r["data"]["authentication"]["symmetricKey"]["primaryKey"]
    dev = Device(broker.port, "dev1", username=device_username(HOST, "dev1"),
                 password=sas_token(f"{HOST}/devices/dev1", key))
    return broker, admin, dev


def test_sas_mode_with_password_and_acl_files(start_broker, files):
    broker, admin, dev = sas_broker_with_device(start_broker, files)
    alice = Client(broker.port, "alice-1", username="alice", password="alice-secret")
    bob = Client(broker.port, "bob-1", username="alice", password="wrong", refused_ok=True)
    assert bob.connack[0] == 5
    # Ordinary topics: the acl_file decides.
    assert alice.subscribe("plant/#", "office/#") == (1, 1)
    alice.publish("plant/1/temp", "21")
    assert alice.next("plant/1/temp")[1] == "21"
    alice.publish("office/1/temp", "19")  # not granted by the acl_file
    alice.nothing("office/", within=0.5)
    # Owned trees: a password_file user is nobody there.
    assert alice.subscribe(RES, DESIRED) == (128, 128)
    assert alice.subscribe("devices/dev1/messages/devicebound/#") == (128,)
    # Meanwhile the device uses its twin.
    assert dev.patch({"temp": 21})[0].startswith("$iothub/twin/res/204/")
    admin.update_desired("dev1", {"fan": "on"})
    assert dev.notification()[1] == {"fan": "on", "$version": 2}
    for c in (admin, dev, alice):
        c.close()


@pytest.fixture
def external(start_broker, files):
    broker = start_broker(options={"auth": "external"}, config=files)
    admin = Backend(broker.port, "admin-be", username="admin", password="admin-secret")
    for d in ("dev1", "dev2"):
        assert admin.command(command="createDevice", deviceId=d)["status"] == 200
    yield broker, admin
    admin.close()


@pytest.mark.valgrind_ci
def test_external_mode_devices_authenticated_by_the_broker(external):
    broker, admin = external
    dev1 = Device(broker.port, "dev1", username="dev1", password="dev1-secret")
    assert dev1.get()["reported"]["$version"] == 1
    assert dev1.patch({"temp": 21})[0].startswith("$iothub/twin/res/204/")
    admin.update_desired("dev1", {"fan": "on"})
    assert dev1.notification()[1]["fan"] == "on"
    assert admin.twin("dev1")["properties"]["reported"]["temp"] == 21
    dev1.close()


def test_external_mode_refused_client_does_not_disturb_the_device(external):
    broker, admin = external
    dev1 = Device(broker.port, "dev1", username="dev1", password="dev1-secret")
    intruder = Device(broker.port, "dev1", username="dev1", password="wrong",
                      refused_ok=True)
    assert intruder.connack[0] == 5
    assert dev1.get()["reported"]["$version"] == 1  # still the live connection
    assert admin.twin("dev1")["connectionState"] == "Connected"
    dev1.close()


def test_external_mode_unregistered_client_is_no_device(external):
    broker, _ = external
    c = Client(broker.port, "dev9", username="dev9", password="dev9-secret")
    assert c.subscribe(RES) == (128,)
    c.close()


def test_external_mode_devices_are_isolated(external):
    broker, admin = external
    dev1 = Device(broker.port, "dev1", username="dev1", password="dev1-secret")
    dev2 = Device(broker.port, "dev2", username="dev2", password="dev2-secret")
    assert dev1.subscribe("devices/dev2/messages/devicebound/#") == (128,)
    assert dev1.subscribe("$CONTROL/twin/v1/response") == (128,)
    dev1.patch({"mine": 1})
    assert "mine" not in dev2.get()["reported"]
    dev1.publish("$CONTROL/twin/v1", json.dumps({"commands": [{"command": "getTwin",
                                                              "deviceId": "dev2"}]}))
    dev1.nothing("$CONTROL/", within=0.5)
    for c in (dev1, dev2):
        c.close()


DYNSEC = "/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so"


@pytest.fixture
def dynsec_config(tmp_path):
    """A dynamic-security file with one client, alice, whose role allows
    plant/# only (made by mosquitto_ctrl, then given that role)."""
    path = tmp_path / "dynsec.json"
    subprocess.run(["mosquitto_ctrl", "dynsec", "init", str(path), "alice", "alice-secret"],
                   check=True, capture_output=True)
    data = json.loads(path.read_text())
    data["roles"][0]["acls"] = [
        {"acltype": t, "topic": "plant/#", "allow": True}
        for t in ("publishClientSend", "publishClientReceive", "subscribePattern")
    ]
    path.write_text(json.dumps(data))
    return path


@pytest.mark.valgrind_ci
def test_sas_mode_with_dynamic_security_loaded_second(start_broker, dynsec_config):
    import os

    if not os.path.exists(DYNSEC):
        pytest.skip("the dynamic-security plugin is not installed")
    broker, admin, dev = sas_broker_with_device(
        start_broker,
        ["allow_anonymous false", f"plugin {DYNSEC}", f"plugin_opt_config_file {dynsec_config}"],
    )
    alice = Client(broker.port, "alice-1", username="alice", password="alice-secret")
    wrong = Client(broker.port, "alice-2", username="alice", password="nope", refused_ok=True)
    assert wrong.connack[0] == 5
    # dynamic-security governs ordinary topics, for its clients and devices alike.
    assert alice.subscribe("plant/#") == (1,)
    assert alice.subscribe("office/#") == (128,)
    alice.publish("plant/1/temp", "21")
    assert alice.next("plant/1/temp")[1] == "21"
    assert dev.subscribe("plant/#") == (128,)
    # mosquitto-twin keeps its trees: alice is nobody there.
    assert alice.subscribe(RES, "devices/dev1/messages/devicebound/#") == (128, 128)
    assert alice.subscribe("$CONTROL/twin/v1/response") == (128,)
    # The device uses its twin meanwhile.
    assert dev.patch({"temp": 21})[0].startswith("$iothub/twin/res/204/")
    admin.update_desired("dev1", {"fan": "on"})
    assert dev.notification()[1] == {"fan": "on", "$version": 2}
    for c in (admin, dev, alice):
        c.close()
