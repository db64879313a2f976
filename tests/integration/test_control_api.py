"""The control API on $CONTROL/twin/v1 (DESIGN.md §6, PROTOCOL.md §4, §5,
§7): every command, every error status, the etag rules, many commands per
request, oversize and malformed requests, MQTT v5 response topics, and who
sees responses."""

import json
import threading

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.properties import Properties
from paho.mqtt.packettypes import PacketTypes

from iothub_auth import new_key, sas_token
from twin_clients import Backend, Client, Device

HOST = "hub.example.test"


@pytest.fixture
def be(broker):
    b = Backend(broker.port, "ctl-admin")
    yield b
    b.close()


def ok(r, status=200):
    assert r["status"] == status, r
    return r.get("data")


def error(r, status, code):
    assert (r["status"], r["error"]["code"]) == (status, code), r
    assert r["error"]["message"]
    return r["error"]["message"]


# --- devices ---------------------------------------------------------------


@pytest.mark.valgrind_ci
def test_create_device_generates_keys_and_an_empty_twin(be):
    dev = ok(be.command(command="createDevice", deviceId="d1"))
    assert dev["deviceId"] == "d1" and dev["status"] == "enabled"
    keys = dev["authentication"]["symmetricKey"]
    assert keys["primaryKey"] and keys["secondaryKey"] and keys["primaryKey"] != keys["secondaryKey"]
    twin = be.twin("d1")
    assert twin["version"] == 2
    assert twin["properties"]["desired"]["$version"] == 1


def test_create_device_with_given_keys(be):
    k1, k2 = new_key(), new_key()
    dev = ok(be.command(command="createDevice", deviceId="d1", device={
        "authentication": {"type": "sas", "symmetricKey": {"primaryKey": k1, "secondaryKey": k2}}}))
    assert dev["authentication"]["symmetricKey"] == {"primaryKey": k1, "secondaryKey": k2}


def test_create_device_with_thumbprints(be):
    tp = "AB" * 20
    dev = ok(be.command(command="createDevice", deviceId="d1", device={
        "authentication": {"type": "selfSigned", "x509Thumbprint": {"primaryThumbprint": tp}}}))
    assert dev["authentication"]["type"] == "selfSigned"
    assert dev["authentication"]["x509Thumbprint"]["primaryThumbprint"] == tp


def test_create_device_with_initial_tags_and_desired(be):
    ok(be.command(command="createDevice", deviceId="d1",
                  twin={"tags": {"site": "north"}, "properties": {"desired": {"fan": "on"}}}))
    twin = be.twin("d1")
    assert twin["tags"] == {"site": "north"}
    assert twin["properties"]["desired"]["fan"] == "on"


def test_create_device_with_a_bad_initial_twin_creates_nothing(be):
    error(be.command(command="createDevice", deviceId="d1",
                     twin={"properties": {"desired": {"bad key": 1}}}), 400, 400004)
    error(be.command(command="getDevice", deviceId="d1"), 404, 404001)


def test_create_existing_device_is_409(be):
    ok(be.command(command="createDevice", deviceId="d1"))
    error(be.command(command="createDevice", deviceId="d1"), 409, 409001)


def test_create_device_with_invalid_id_is_400(be):
    assert "deviceId" in error(be.command(command="createDevice", deviceId="a/b"), 400, 400004)


def test_get_device_and_unknown_device_is_404(be):
    ok(be.command(command="createDevice", deviceId="d1"))
    assert ok(be.command(command="getDevice", deviceId="d1"))["deviceId"] == "d1"
    error(be.command(command="getDevice", deviceId="nobody"), 404, 404001)


def test_update_device_status_and_reason(be):
    ok(be.command(command="createDevice", deviceId="d1"))
    dev = ok(be.command(command="updateDevice", deviceId="d1",
                        device={"status": "disabled", "statusReason": "stolen"}))
    assert (dev["status"], dev["statusReason"]) == ("disabled", "stolen")


@pytest.mark.valgrind_ci
def test_update_device_regenerates_keys(be):
    old = ok(be.command(command="createDevice", deviceId="d1"))["authentication"]
    new = ok(be.command(command="updateDevice", deviceId="d1", device={"authentication": {
        "type": "sas", "symmetricKey": {"primaryKey": "", "secondaryKey": ""}}}))["authentication"]
    assert new["symmetricKey"]["primaryKey"] != old["symmetricKey"]["primaryKey"]
    assert new["symmetricKey"]["secondaryKey"] != old["symmetricKey"]["secondaryKey"]


def test_update_device_changes_auth_type(be):
    ok(be.command(command="createDevice", deviceId="d1"))
    dev = ok(be.command(command="updateDevice", deviceId="d1",
                        device={"authentication": {"type": "certificateAuthority"}}))
    assert dev["authentication"]["type"] == "certificateAuthority"


@pytest.mark.valgrind_ci
@pytest.mark.parametrize("command", ["updateDevice", "deleteDevice"])
def test_device_etag_rules(be, command):
    """An absent etag and "*" match anything; a stale one gets 412."""
    etag = ok(be.command(command="createDevice", deviceId="d1"))["etag"]
    ok(be.command(command="updateDevice", deviceId="d1", device={"statusReason": "x"}))
    args = {"device": {"statusReason": "y"}} if command == "updateDevice" else {}
    error(be.command(command=command, deviceId="d1", etag=etag, **args), 412, 412001)
    current = ok(be.command(command="getDevice", deviceId="d1"))["etag"]
    want = 200 if command == "updateDevice" else 204
    ok(be.command(command=command, deviceId="d1", etag=current, **args), want)
    if command == "updateDevice":
        ok(be.command(command=command, deviceId="d1", etag="*", **args))
        ok(be.command(command=command, deviceId="d1", **args))


@pytest.mark.valgrind_ci
def test_delete_device_deletes_its_twin(be):
    ok(be.command(command="createDevice", deviceId="d1"))
    r = be.command(command="deleteDevice", deviceId="d1")
    assert r["status"] == 204 and "data" not in r, r
    error(be.command(command="getTwin", deviceId="d1"), 404, 404001)
    error(be.command(command="deleteDevice", deviceId="d1"), 404, 404001)


@pytest.mark.valgrind_ci
def test_list_devices_pages_with_a_continuation_token(be):
    ids = [f"d{i:02}" for i in range(7)]
    be.commands(*[{"command": "createDevice", "deviceId": i} for i in reversed(ids)])
    seen, token = [], None
    while True:
        args = {"maxCount": 3, **({"continuationToken": token} if token else {})}
        page = ok(be.command(command="listDevices", **args))
        assert len(page["devices"]) <= 3
        # Open mode registers the back end itself as a device too.
        seen += [d["deviceId"] for d in page["devices"] if d["deviceId"] in ids]
        token = page["continuationToken"]
        if token is None:
            break
    assert seen == ids  # each once, in deviceId order
    default = ok(be.command(command="listDevices"))
    assert [d["deviceId"] for d in default["devices"] if d["deviceId"] in ids] == ids
    assert default["continuationToken"] is None


@pytest.mark.parametrize("args", [{"maxCount": 0}, {"maxCount": 1001}, {"maxCount": "5"},
                                  {"maxCount": 1.5}, {"continuationToken": "%%%"},
                                  {"continuationToken": 7}])
def test_list_devices_bad_arguments_are_400(be, args):
    error(be.command(command="listDevices", **args), 400, 400004)


# --- twins -----------------------------------------------------------------


def test_get_twin_has_metadata(be):
    ok(be.command(command="createDevice", deviceId="d1"))
    be.update_desired("d1", {"fan": "on"})
    twin = be.twin("d1")
    assert twin["properties"]["desired"]["$metadata"]["fan"]["$lastUpdatedVersion"] == 2
    assert "$lastUpdated" in twin["properties"]["reported"]["$metadata"]


@pytest.mark.valgrind_ci
@pytest.mark.parametrize("command", ["updateTwin", "replaceTwin"])
def test_twin_etag_rules(be, command):
    ok(be.command(command="createDevice", deviceId="d1"))
    stale = be.twin("d1")["etag"]
    be.update_desired("d1", {"a": 1})
    body = {"properties": {"desired": {"b": 2}}}
    error(be.command(command=command, deviceId="d1", twin=body, etag=stale), 412, 412001)
    fresh = be.twin("d1")["etag"]
    ok(be.command(command=command, deviceId="d1", twin=body, etag=fresh))
    ok(be.command(command=command, deviceId="d1", twin=body, etag="*"))
    ok(be.command(command=command, deviceId="d1", twin=body))


@pytest.mark.valgrind_ci
def test_update_twin_merges_tags_and_desired_and_notifies_the_patch(broker, be):
    ok(be.command(command="createDevice", deviceId="d1"))
    dev = Device(broker.port, "d1")
    twin = ok(be.command(command="updateTwin", deviceId="d1", twin={
        "tags": {"site": "north"}, "properties": {"desired": {"fan": "on", "mode": None}}}))
    assert twin["tags"] == {"site": "north"}
    assert dev.notification() == (2, {"fan": "on", "mode": None, "$version": 2})
    dev.close()


@pytest.mark.valgrind_ci
def test_replace_twin_puts_tags_and_desired_and_notifies_nulls(broker, be):
    ok(be.command(command="createDevice", deviceId="d1", twin={
        "tags": {"old": 1}, "properties": {"desired": {"a": 1, "b": 2}}}))
    dev = Device(broker.port, "d1")
    assert dev.notification()[0] == 2  # the §3.1 catch-up of the initial desired
    twin = ok(be.command(command="replaceTwin", deviceId="d1",
                         twin={"tags": {"new": 1}, "properties": {"desired": {"b": 3}}}))
    assert twin["tags"] == {"new": 1}
    assert {k: v for k, v in twin["properties"]["desired"].items() if not k.startswith("$")} == {"b": 3}
    assert dev.notification()[1] == {"a": None, "b": 3, "$version": 3}
    dev.close()


@pytest.mark.valgrind_ci
def test_twin_section_over_its_limit_is_403100(be):
    ok(be.command(command="createDevice", deviceId="d1"))
    big = {f"k{i}": "x" * 1000 for i in range(40)}
    error(be.command(command="updateTwin", deviceId="d1",
                     twin={"properties": {"desired": big}}), 403, 403100)


# --- requests --------------------------------------------------------------


@pytest.mark.valgrind_ci
def test_many_commands_in_one_request_each_get_a_response(be):
    cmds = [{"command": "createDevice", "deviceId": f"m{i}", "correlationData": i}
            for i in range(50)]
    cmds.append({"command": "getDevice", "deviceId": "nobody", "correlationData": "x"})
    rs = be.commands(*cmds)
    assert [r["correlationData"] for r in rs] == list(range(50)) + ["x"]
    assert [r["status"] for r in rs] == [200] * 50 + [404]


@pytest.mark.valgrind_ci
@pytest.mark.parametrize(
    "payload,status,code,names",
    [
        ('{"commands":[', 400, 400004, None),  # truncated JSON
        ("[]", 400, 400004, "commands"),
        ('{"commands":{}}', 400, 400004, "commands"),
        ('{"commands":[' + ",".join(['{"command":"getDevice","deviceId":"x"}'] * 101) + "]}",
         400, 400004, "commands"),
    ],
)
def test_malformed_requests_get_one_clear_error(be, payload, status, code, names):
    be.publish("$CONTROL/twin/v1", payload)
    _, body, _, _ = be.next("$CONTROL/twin/v1/response")
    (r,) = json.loads(body)["responses"]
    msg = error(r, status, code)
    if names:
        assert names in msg
    ok(be.command(command="listDevices"))  # the connection is still up


@pytest.mark.parametrize(
    "cmd,field",
    [
        ({"command": "getTwin"}, "deviceId"),
        ({"command": "getTwin", "deviceId": 5}, "deviceId"),
        ({"command": "updateTwin", "deviceId": "d1"}, "twin"),
        ({"command": "updateTwin", "deviceId": "d1", "twin": {}, "etag": 3}, "etag"),
        ({"command": "updateDevice", "deviceId": "d1"}, "device"),
        ({"command": "createDevice", "deviceId": "d2", "device": []}, "device"),
        ({"command": "nosuch"}, "nosuch"),
        ({"deviceId": "d1"}, "command"),
        ("not an object", "command"),
    ],
)
def test_bad_commands_name_the_field(be, cmd, field):
    ok(be.command(command="createDevice", deviceId="d1"))
    (r,) = be.commands(cmd)
    assert field in error(r, 400, 400004)


@pytest.mark.valgrind_ci
def test_megabyte_request_is_413_and_the_connection_stays(be):
    payload = json.dumps({"commands": [{"command": "getTwin", "deviceId": "d", "pad": "x" * (1 << 20)}]})
    be.publish("$CONTROL/twin/v1", payload)
    _, body, _, _ = be.next("$CONTROL/twin/v1/response")
    (r,) = json.loads(body)["responses"]
    error(r, 413, 413002)
    assert not be.closed.is_set()
    ok(be.command(command="listDevices"))


def test_spy_on_control_topics_sees_no_responses(broker, be):
    spy = Client(broker.port, "spy")
    spy.subscribe("$CONTROL/#", "#")
    ok(be.command(command="createDevice", deviceId="d1"))
    spy.nothing("", within=0.5)
    spy.close()


def v5_request(port, command, response_topic, corr, subscribe=None, linger=0.0):
    """One control command from an MQTT v5 client with a response topic and
    correlation data; the messages it got (waiting for the first, then
    linger seconds for more)."""
    got, subscribed = [], threading.Event()
    c = mqtt.Client(client_id="v5-backend", protocol=mqtt.MQTTv5)
    c.on_message = lambda _c, _u, m: got.append(m)
    c.on_subscribe = lambda *a: subscribed.set()
    c.connect("127.0.0.1", port)
    c.loop_start()
    if subscribe:
        c.subscribe(subscribe, qos=1)
        assert subscribed.wait(5)
    props = Properties(PacketTypes.PUBLISH)
    props.ResponseTopic = response_topic
    props.CorrelationData = corr
    c.publish("$CONTROL/twin/v1", json.dumps({"commands": [command]}), qos=1,
              properties=props).wait_for_publish(5)
    for _ in range(100):
        if got:
            break
        threading.Event().wait(0.05)
    threading.Event().wait(linger)
    c.loop_stop()
    c.disconnect()
    return got


@pytest.mark.valgrind_ci
def test_mqtt5_response_topic_and_correlation_data_are_used(broker):
    got = v5_request(broker.port, {"command": "createDevice", "deviceId": "d1"},
                     "replies/me", b"\x00\x01corr", subscribe="replies/me")
    assert got, "no response on the v5 response topic"
    m = got[0]
    assert m.topic == "replies/me"
    assert m.properties.CorrelationData == b"\x00\x01corr"
    assert json.loads(m.payload)["responses"][0]["status"] == 200


@pytest.mark.parametrize("reserved", ["$twin/events/updateTwin/d1", "$iothub/twin/res/200/?$rid=1"])
def test_mqtt5_response_topic_in_the_plugins_namespaces_is_not_used(broker, reserved):
    # A control response there would pass for an event or a device reply:
    # the default topic is used instead, correlation data still echoed.
    got = v5_request(broker.port, {"command": "getTwin", "deviceId": "nobody"}, reserved,
                     b"c1", linger=0.2)
    assert [m.topic for m in got] == ["$CONTROL/twin/v1/response"]
    assert got[0].properties.CorrelationData == b"c1"
    assert json.loads(got[0].payload)["responses"][0]["status"] == 404


def test_mqtt311_client_uses_the_default_response_topic(be):
    # Backend is a v3.1.1 client: its responses arrive on the default topic.
    ok(be.command(command="createDevice", deviceId="d1"))


# --- rights (sas mode) -----------------------------------------------------


@pytest.mark.valgrind_ci
def test_registry_read_principal_cannot_write(start_broker):
    key = new_key()
    broker = start_broker(options={"auth": "sas", "hostname": HOST,
                                   "policy_iothubowner": f"all:{key}",
                                   "policy_reader": f"registryRead:{key}"})
    reader = Backend(broker.port, "reader", username="reader",
                     password=sas_token(HOST, key, policy="reader"))
    ok(reader.command(command="listDevices"))
    for cmd in ({"command": "createDevice", "deviceId": "d1"},
                {"command": "updateDevice", "deviceId": "d1", "device": {"status": "disabled"}},
                {"command": "deleteDevice", "deviceId": "d1"},
                {"command": "getTwin", "deviceId": "d1"},
                {"command": "updateTwin", "deviceId": "d1", "twin": {}}):
        (r,) = reader.commands(cmd)
        error(r, 401, 401002)
    reader.close()
