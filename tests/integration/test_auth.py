"""Authentication and isolation in sas mode (PROTOCOL.md §1, §7, §11):
device SAS tokens, shared access policies for back ends and gateways, token
expiry, SIGHUP, disabling and deleting devices, and the topic ACL."""

import json
import os
import signal
import subprocess
import time

import pytest

from iothub_auth import device_username, new_key, sas_token
from twin_clients import DESIRED, RES, Backend, Client, Device

HOST = "hub.example.test"
OWNER_KEY, SERVICE_KEY, REGISTRY_KEY, GATEWAY_KEY = (new_key() for _ in range(4))


class Hub:
    """A broker in sas mode with four policies, and helpers to use it."""

    def __init__(self, broker):
        self.broker = broker
        self.port = broker.port
        self._admin = None

    def backend(self, policy="iothubowner", key=OWNER_KEY, client_id=None, **kw):
        return Backend(
            self.port,
            client_id or f"be-{policy}-{time.monotonic_ns()}",
            username=policy,
            password=sas_token(HOST, key, policy=policy),
            **kw,
        )

    @property
    def admin(self):
        if self._admin is None:
            self._admin = self.backend(client_id="admin")
        return self._admin

    def create(self, device_id, **device):
        r = self.admin.command(command="createDevice", deviceId=device_id, device=device)
        assert r["status"] == 200, r
        return r["data"]

    def update(self, device_id, **device):
        r = self.admin.command(command="updateDevice", deviceId=device_id, device=device)
        assert r["status"] == 200, r
        return r["data"]

    def keys(self, device_id):
        r = self.admin.command(command="getDevice", deviceId=device_id)
        sym = r["data"]["authentication"]["symmetricKey"]
        return sym["primaryKey"], sym["secondaryKey"]

    def token(self, device_id, key=None, **kw):
        return sas_token(f"{HOST}/devices/{device_id}", key or self.keys(device_id)[0], **kw)

    def device(self, device_id, password=None, username=None, **kw):
        return Device(
            self.port,
            device_id,
            username=username or device_username(HOST, device_id),
            password=password if password is not None else self.token(device_id),
            **kw,
        )

    def twin(self, device_id):
        return self.admin.twin(device_id)


@pytest.fixture
def hub(start_broker):
    broker = start_broker(
        options={
            "auth": "sas",
            "hostname": HOST,
            "policy_iothubowner": f"all:{OWNER_KEY}",
            "policy_service": f"serviceConnect:{SERVICE_KEY}",
            "policy_registryReadWrite": f"registryRead,registryWrite:{REGISTRY_KEY}",
            "policy_device": f"deviceConnect:{GATEWAY_KEY}",
        }
    )
    h = Hub(broker)
    yield h
    if h._admin is not None:
        h._admin.close()


@pytest.mark.valgrind_ci
def test_sas_device_connects_and_uses_its_twin(hub):
    hub.create("dev1")
    d = hub.device("dev1")
    assert d.get()["reported"]["$version"] == 1
    topic, _ = d.patch({"temp": 21})
    assert topic.startswith("$iothub/twin/res/204/"), topic
    hub.admin.update_desired("dev1", {"fan": "on"})
    assert d.notification()[1]["fan"] == "on"
    d.close()


def test_sas_secondary_key_is_accepted(hub):
    hub.create("dev1")
    d = hub.device("dev1", password=hub.token("dev1", key=hub.keys("dev1")[1]))
    assert d.get()["reported"]["$version"] == 1
    d.close()


def test_sas_resource_match_is_case_insensitive_and_accepts_lowercase_escapes(hub):
    hub.create("dev1")
    token = hub.token("dev1", key=None)
    # The SDKs agree on %2F; old samples send %2f and lower-cased resources.
    key = hub.keys("dev1")[0]
    lower = sas_token(f"{HOST}/devices/dev1".upper(), key)
    for password in (token, lower):
        d = hub.device("dev1", password=password)
        d.close()


@pytest.mark.parametrize(
    "username",
    [
        f"{HOST}/dev1/api-version=2016-11-14&DeviceClientType=x",  # legacy, no '?'
        f"{HOST}/dev1/?api-version=2021-04-12&unknown=1&DeviceClientType=x",  # unknown ignored
        f"{HOST}/dev1",  # no query at all (project decision)
        "another.host/dev1/?api-version=2021-04-12",  # the host is not compared
    ],
)
def test_sas_username_forms_are_accepted(hub, username):
    hub.create("dev1")
    hub.device("dev1", username=username).close()


def _tamper_sig(token):
    """Flip one base64 digit of the signature (still valid base64)."""
    at = token.index("sig=") + 4
    return token[:at] + ("B" if token[at] == "A" else "A") + token[at + 1 :]


def _bad_credentials(hub):
    """(name, client_id, username, password) for every bad-credential case of
    issue 4; dev1/dev10 exist, dev1's keys were regenerated."""
    old_primary, old_secondary = hub.keys("dev1")
    hub.update(
        "dev1",
        authentication={"type": "sas", "symmetricKey": {"primaryKey": "", "secondaryKey": ""}},
    )
    key = hub.keys("dev1")[0]
    key10 = hub.keys("dev10")[0]
    user = device_username(HOST, "dev1")
    target = f"{HOST}/devices/dev1"
    good = sas_token(target, key)
    expired = sas_token(target, key, expiry=int(time.time()) - 1)
    return [
        ("wrong_key", "dev1", user, sas_token(target, new_key())),
        ("old_primary_after_regeneration", "dev1", user, sas_token(target, old_primary)),
        ("old_secondary_after_regeneration", "dev1", user, sas_token(target, old_secondary)),
        ("wrong_sr_host", "dev1", user, sas_token(f"other.example.test/devices/dev1", key)),
        ("another_devices_sr", "dev1", user, sas_token(f"{HOST}/devices/dev10", key10)),
        # Signed by dev10's own key, but for devices/dev1: not a segment prefix.
        ("prefix_trick", "dev10", device_username(HOST, "dev10"), sas_token(target, key10)),
        ("expired_se", "dev1", user, expired),
        ("non_numeric_se", "dev1", user, good.replace("&se=", "&se=x")),
        ("missing_sig", "dev1", user, "&".join(p for p in good.split("&") if "sig=" not in p)),
        ("tampered_sig", "dev1", user, _tamper_sig(good)),
        ("bad_url_encoding", "dev1", user, good.replace("sr=", "sr=%zz", 1)),
        ("username_client_id_mismatch", "dev1", device_username(HOST, "dev10"), good),
        ("unknown_device", "ghost", device_username(HOST, "ghost"), sas_token(f"{HOST}/devices/ghost", key)),
        ("empty_password", "dev1", user, ""),
        ("policy_without_device_connect", "dev1", user, sas_token(HOST, SERVICE_KEY, policy="service")),
        ("not_a_sas_token", "dev1", user, "secret"),
    ]


def test_bad_credentials_get_connack_5_a_log_line_and_change_nothing(hub):
    hub.create("dev1")
    hub.create("dev10")
    hub.create("dev-off", status="disabled")
    cases = _bad_credentials(hub)
    cases.append(("disabled_device", "dev-off", device_username(HOST, "dev-off"),
                  hub.token("dev-off")))
    before = {d: hub.twin(d) for d in ("dev1", "dev10")}
    for name, client_id, username, password in cases:
        mark = len(hub.broker.log())
        d = Device(hub.port, client_id, username=username, password=password, refused_ok=True)
        assert d.connack[0] == 5, (name, d.connack)
        log = hub.broker.log()[mark:]
        assert f"refused client {client_id}" in log, (name, log)
    after = {d: hub.twin(d) for d in ("dev1", "dev10")}
    assert after == before
    # The new keys work: the refusals were about the credentials.
    hub.device("dev1").close()


@pytest.mark.valgrind_ci
def test_expired_token_closes_a_live_connection(hub):
    hub.create("dev1")
    d = hub.device("dev1", password=hub.token("dev1", ttl=2))
    assert d.get()["reported"]["$version"] == 1
    assert d.closed.wait(6), "the connection outlived its token"
    assert "closing client dev1: its SAS token expired" in hub.broker.log()


@pytest.mark.valgrind_ci
def test_sighup_keeps_valid_connections_and_rechecks_them(hub):
    hub.create("dev1")
    d = hub.device("dev1")
    admin = hub.admin
    hub.broker.process.send_signal(signal.SIGHUP)
    hub.broker.wait_log("Reloading config")
    time.sleep(0.5)
    assert not d.closed.is_set()
    assert d.get()["reported"]["$version"] == 1
    assert admin.twin("dev1")["deviceId"] == "dev1"
    d.close()


def test_disabling_a_device_disconnects_it(hub):
    hub.create("dev1")
    d = hub.device("dev1")
    hub.update("dev1", status="disabled")
    assert d.closed.wait(5)
    again = hub.device("dev1", refused_ok=True)
    assert again.connack[0] == 5


@pytest.mark.valgrind_ci
def test_regenerating_keys_disconnects_the_device(hub):
    hub.create("dev1")
    d = hub.device("dev1")
    hub.update("dev1", authentication={"type": "sas", "symmetricKey": {"primaryKey": "", "secondaryKey": ""}})
    assert d.closed.wait(5)


@pytest.mark.valgrind_ci
def test_deleting_a_device_disconnects_it(hub):
    hub.create("dev1")
    token = hub.token("dev1")
    d = hub.device("dev1", password=token)
    r = hub.admin.command(command="deleteDevice", deviceId="dev1")
    assert r["status"] == 204, r
    assert d.closed.wait(5)
    assert hub.device("dev1", password=token, refused_ok=True).connack[0] == 5


@pytest.mark.valgrind_ci
def test_policy_rights_are_enforced_per_command(hub):
    hub.create("dev1")
    service = hub.backend("service", SERVICE_KEY)
    registry = hub.backend("registryReadWrite", REGISTRY_KEY)
    assert service.command(command="getTwin", deviceId="dev1")["status"] == 200
    r = service.command(command="createDevice", deviceId="dev2")
    assert (r["status"], r["error"]["code"]) == (401, 401002), r
    assert registry.command(command="createDevice", deviceId="dev2")["status"] == 200
    assert registry.command(command="getTwin", deviceId="dev2")["status"] == 401
    service.close()
    registry.close()


@pytest.mark.parametrize(
    "username,password",
    [
        ("service", sas_token(HOST, new_key(), policy="service")),  # wrong key
        ("iothubowner", sas_token(HOST, SERVICE_KEY, policy="service")),  # name mismatch
        ("device", sas_token(HOST, GATEWAY_KEY, policy="device")),  # no service right
        ("service", sas_token(f"{HOST}/devices", SERVICE_KEY, policy="service")),  # sr
        ("nobody", sas_token(HOST, SERVICE_KEY, policy="nobody")),  # unknown policy
        ("service", sas_token(HOST, SERVICE_KEY, policy="service", expiry=1)),  # expired
    ],
)
def test_backend_with_bad_policy_token_gets_connack_5(hub, username, password):
    c = Client(hub.port, "be-bad", username=username, password=password, refused_ok=True)
    assert c.connack[0] == 5
    assert "refused client be-bad" in hub.broker.log()


@pytest.mark.parametrize("resource", [HOST, f"{HOST}/devices", f"{HOST}/devices/dev1"])
def test_gateway_policy_token_connects_a_device(hub, resource):
    hub.create("dev1")
    d = hub.device("dev1", password=sas_token(resource, GATEWAY_KEY, policy="device"))
    assert d.get()["reported"]["$version"] == 1
    d.close()


@pytest.mark.valgrind_ci
def test_device_isolation_between_two_sas_devices(hub):
    """Device A tries to reach B's C2D, telemetry, twin replies, the control
    API and the event stream; every attempt is denied and B sees nothing."""
    hub.create("devA")
    hub.create("devB")
    watcher = hub.backend("service", SERVICE_KEY)
    assert watcher.subscribe("devices/+/messages/events/#") == (1,)
    b = hub.device("devB")
    assert b.subscribe("devices/devB/messages/devicebound/#") == (1,)
    a = hub.device("devA")
    assert a.subscribe("devices/devB/messages/devicebound/#") == (128,)
    assert a.subscribe("$twin/events/#") == (128,)
    assert a.subscribe("$CONTROL/twin/v1/response") == (128,)
    assert a.subscribe("$iothub/twin/res/200/#") == (128,)
    a.publish("$CONTROL/twin/v1", json.dumps({"commands": [{"command": "getTwin", "deviceId": "devB"}]}))
    a.nothing("$CONTROL/", within=0.5)
    a.client.publish("$iothub/twin/res/200/?$rid=1", "{}", qos=0)
    # A's own telemetry passes; B's telemetry topic closes A's connection.
    a.publish("devices/devA/messages/events/", "mine")
    assert watcher.next("devices/devA/messages/events/")[1] == "mine"
    a.client.publish("devices/devB/messages/events/", "forged", qos=0)
    assert a.closed.wait(5)
    watcher.nothing("devices/devB/", within=0.5)
    b.nothing("", within=0.3)
    log = hub.broker.log()
    assert "closing device devA: it published on devices/devB/messages/events/" in log
    # The back end reaches B's C2D topic.
    watcher.publish("devices/devB/messages/devicebound/%24.mid=1", "hello")
    assert b.next("devices/devB/messages/devicebound/")[1] == "hello"
    for c in (watcher, b):
        c.close()


def test_device_will_only_on_its_own_telemetry_topic(hub):
    hub.create("devA")
    hub.create("devB")
    watcher = hub.backend("service", SERVICE_KEY)
    watcher.subscribe("devices/#")
    own = hub.device("devA", will=("devices/devA/messages/events/", "bye", 1), subscribe=False)
    forged = hub.device("devB", will=("devices/devA/messages/events/", "forged", 1), subscribe=False)
    own.drop()
    assert watcher.next("devices/devA/messages/events/")[1] == "bye"
    forged.drop()
    watcher.nothing("devices/", within=1.0)
    watcher.close()


def test_null_username_is_never_admitted_by_the_plugin(start_broker):
    broker = start_broker(
        options={"auth": "sas", "hostname": HOST, "policy_iothubowner": f"all:{OWNER_KEY}"},
        config=["allow_anonymous false"],
    )
    c = Client(broker.port, "dev1", refused_ok=True)
    assert c.connack[0] == 5


def test_anonymous_clients_are_no_devices_in_sas_mode(hub):
    """allow_anonymous true admits a client without a username, but it is
    nobody to the plugin: no twin, no devices/ topics, no control API."""
    hub.create("dev1")
    c = Client(hub.port, "dev1")
    assert c.subscribe(RES, DESIRED) == (128, 128)
    assert c.subscribe("devices/dev1/messages/devicebound/#") == (128,)
    assert c.subscribe("$CONTROL/twin/v1/response") == (128,)
    c.close()


@pytest.mark.valgrind_ci
def test_iothubowner_is_created_on_first_start_and_logged(start_broker):
    broker = start_broker(options={"auth": "sas", "hostname": HOST})
    log = broker.log()
    marker = f"HostName={HOST};SharedAccessKeyName=iothubowner;SharedAccessKey="
    assert marker in log
    key = log.split(marker)[1].split()[0]
    be = Backend(broker.port, "admin", username="iothubowner",
                 password=sas_token(HOST, key, policy="iothubowner"))
    assert be.command(command="createDevice", deviceId="dev1")["status"] == 200
    be.close()
    broker.stop()
    broker.start()
    assert marker not in broker.log(since_start=True)  # shown once only
    be = Backend(broker.port, "admin", username="iothubowner",
                 password=sas_token(HOST, key, policy="iothubowner"))
    assert be.command(command="getDevice", deviceId="dev1")["status"] == 200
    be.close()


def test_sas_mode_needs_a_hostname(start_broker):
    broker = start_broker(options={"auth": "sas"}, wait=False)
    assert broker.wait_exit() != 0
    assert "plugin_opt_auth sas needs plugin_opt_hostname" in broker.log()


def test_twin_token_credentials_work_with_mosquitto_clients(hub):
    """The README's way in for shell users: twin-token turns connection
    strings into MQTT credentials for mosquitto_rr and mosquitto_sub."""
    tool = os.environ.get("TWIN_TOKEN")
    if not tool:
        pytest.skip("TWIN_TOKEN (the twin-token binary) not given")

    def creds(cs):
        run = lambda *a: subprocess.run([tool, *a, cs], check=True, capture_output=True,
                                        text=True).stdout.strip()
        return ["-u", run("--username"), "-P", run("--ttl", "60")]

    port = ["-h", "127.0.0.1", "-p", str(hub.port)]
    rr = ["mosquitto_rr", *port, "-t", "$CONTROL/twin/v1", "-e", "$CONTROL/twin/v1/response",
          "-W", "5"]
    owner = f"HostName={HOST};SharedAccessKeyName=iothubowner;SharedAccessKey={OWNER_KEY}"
    out = subprocess.run([*rr, *creds(owner), "-m", json.dumps(
        {"commands": [{"command": "createDevice", "deviceId": "dev1"}]})],
        check=True, capture_output=True, text=True).stdout
    key = json.loads(out)["responses"][0]["data"]["authentication"]["symmetricKey"]["primaryKey"]
    device = f"HostName={HOST};DeviceId=dev1;SharedAccessKey={key}"
    sub = subprocess.Popen(["mosquitto_sub", *port, "-i", "dev1", *creds(device), "-q", "1",
                            "-t", "$iothub/twin/PATCH/properties/desired/#", "-C", "1",
                            "-W", "10"], stdout=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 5
    while hub.admin.twin("dev1")["connectionState"] != "Connected":
        assert time.monotonic() < deadline, "mosquitto_sub did not connect as dev1"
        time.sleep(0.05)
    subprocess.run([*rr, *creds(owner), "-m", json.dumps({"commands": [{
        "command": "updateTwin", "deviceId": "dev1",
        "twin": {"properties": {"desired": {"fan": "on"}}}}]})], check=True,
        capture_output=True)
    out, _ = sub.communicate(timeout=10)
    assert json.loads(out) == {"fan": "on", "$version": 2}


@pytest.mark.valgrind_ci
def test_mqtt5_client_with_bad_token_gets_reason_code_0x87(hub):
    import threading

    import paho.mqtt.client as mqtt

    hub.create("dev1")
    got, done = {}, threading.Event()
    c = mqtt.Client(client_id="dev1", protocol=mqtt.MQTTv5)
    c.username_pw_set(device_username(HOST, "dev1"), sas_token(f"{HOST}/devices/dev1", new_key()))

    def on_connect(_c, _u, _f, rc, _p=None):
        got["rc"] = rc.value if hasattr(rc, "value") else rc
        done.set()

    c.on_connect = on_connect
    c.connect("127.0.0.1", hub.port)
    c.loop_start()
    assert done.wait(5)
    c.loop_stop()
    assert got["rc"] == 0x87


@pytest.mark.parametrize("anonymous,admitted", [("false", False), ("true", True)])
def test_open_mode_null_username_follows_allow_anonymous(start_broker, anonymous, admitted):
    """Even open mode admits a client without a username only when the
    broker would: the plugin defers, and allow_anonymous decides."""
    broker = start_broker(config=[f"allow_anonymous {anonymous}"])
    d = Device(broker.port, "dev1", refused_ok=True)
    assert (d.connack[0] == 0) == admitted
    if admitted:
        assert d.get()["reported"]["$version"] == 1
        d.close()


@pytest.mark.valgrind_ci
@pytest.mark.parametrize(
    "options,line",
    [
        ({"auth": "anonymous"}, "plugin_opt_auth must be sas, open or external, got 'anonymous'"),
        ({"auth": "sas", "hostname": "a/b"}, "plugin_opt_hostname must be a host name"),
        ({"policy_svc": f"serviceConnect:{'A' * 8}"}, "plugin_opt_policy_svc:"),
        ({"policy_svc": f"fly:{new_key()}"}, "plugin_opt_policy_svc:"),
        ({"policy_bad!name": f"all:{new_key()}"}, "plugin_opt_policy_bad!name:"),
    ],
)
def test_bad_auth_options_stop_the_broker_with_a_log_line(start_broker, options, line):
    broker = start_broker(options=options, wait=False)
    assert broker.wait_exit() != 0
    log = broker.log()
    assert line in log, log
    # A policy error never repeats the key.
    for value in options.values():
        if ":" in value:
            assert value.split(":", 1)[1] not in log
