"""Hostile and careless clients: request floods (the optional per-device rate
limit, PROTOCOL.md §2.4 429), oversize payloads and $rid values, topics at
MQTT's length limit, readers that never read, connect/disconnect loops."""

import json
import socket
import struct
import time

import pytest

from test_events import changes
from twin_clients import Backend, Client, Device

GET = "$iothub/twin/GET/?$rid="


def flood(dev, n, topic=GET, body=""):
    """Publish n requests without waiting, then collect n replies."""
    for i in range(n):
        dev.client.publish(f"{topic}{i}", body, qos=0)
    return [dev.next("$iothub/twin/res/", 10) for _ in range(n)]


def status_of(topic):
    return int(topic.split("/")[3])


@pytest.mark.valgrind_ci
def test_rate_limit_answers_429_beyond_the_configured_rate(start_broker):
    broker = start_broker(options={"device_rate_limit": 5, "device_rate_burst": 5})
    dev = Device(broker.port, "flood")
    replies = flood(dev, 20)
    ok = [r for r in replies if status_of(r[0]) == 200]
    limited = [r for r in replies if status_of(r[0]) == 429]
    # The burst of 5, plus what refilled while the 20 arrived.
    assert 5 <= len(ok) <= 7 and len(ok) + len(limited) == 20, [r[0] for r in replies]
    body = json.loads(limited[0][1])
    assert body["errorCode"] == 429001 and "Rate limit of 5" in body["message"]
    # A refused PATCH is not executed.
    time.sleep(1.1)
    before = dev.get()["reported"]["$version"]
    replies = flood(dev, 10, "$iothub/twin/PATCH/properties/reported/?$rid=", '{"n":1}')
    applied = sum(1 for r in replies if status_of(r[0]) == 204)
    assert 0 < applied < 10
    time.sleep(1.1)
    assert dev.get()["reported"]["$version"] == before + applied
    dev.close()


def test_rate_limit_is_off_by_default(broker):
    dev = Device(broker.port, "flood")
    assert all(status_of(r[0]) == 200 for r in flood(dev, 200))
    dev.close()


@pytest.mark.valgrind_ci
@pytest.mark.parametrize("value", ["0", "-1", "fast", "1000001"])
def test_bad_rate_limit_option_stops_the_broker(start_broker, value):
    broker = start_broker(options={"device_rate_limit": value}, wait=False)
    assert broker.wait_exit(10) is not None
    assert "plugin_opt_device_rate_limit" in broker.log()


@pytest.mark.valgrind_ci
def test_payload_of_256_kb_is_refused_and_changes_nothing(broker):
    dev = Device(broker.port, "big")
    before = dev.get()
    patch = {f"k{i}": "x" * 4000 for i in range(64)}  # 256 KB of valid JSON
    topic, body = dev.patch(patch)
    assert topic.startswith("$iothub/twin/res/403/"), topic
    assert json.loads(body)["errorCode"] == 403100
    topic, body = dev.patch({"s": "x" * 300000})  # one string over its limit
    assert topic.startswith("$iothub/twin/res/400/"), topic
    assert dev.get() == before
    dev.close()


@pytest.mark.valgrind_ci
def test_rid_of_64_kb_gets_400_with_an_empty_rid_and_is_not_executed(broker):
    dev = Device(broker.port, "rid")
    before = dev.get()
    rid = "7" * 65000
    dev.client.publish(f"$iothub/twin/PATCH/properties/reported/?$rid={rid}", '{"a":1}', qos=1)
    topic, body, _, _ = dev.next("$iothub/twin/res/")
    assert topic == "$iothub/twin/res/400/?$rid=", topic[:80]
    assert "at most 1024" in json.loads(body)["message"]
    assert dev.get() == before
    ok = "9" * 1024
    dev.client.publish(f"{GET}{ok}", "", qos=1)
    topic, _, _, _ = dev.next("$iothub/twin/res/")
    assert topic == f"$iothub/twin/res/200/?$rid={ok}"
    dev.close()


@pytest.mark.valgrind_ci
def test_topics_at_the_mqtt_length_limit_are_handled(broker):
    dev = Device(broker.port, "long")
    # The longest topic name MQTT allows: a $rid far over the limit.
    topic = GET + "1" * (65535 - len(GET))
    assert len(topic.encode()) == 65535
    dev.client.publish(topic, "", qos=1)
    t, body, _, _ = dev.next("$iothub/twin/res/")
    assert t == "$iothub/twin/res/400/?$rid="
    # Telemetry on the device's own topic at the limit passes through.
    events = f"devices/long/messages/events/{'a' * (65535 - len('devices/long/messages/events/'))}"
    be = Client(broker.port, "tele/reader")  # not a device id: a back end
    be.subscribe("devices/long/messages/events/#")
    dev.client.publish(events, "hi", qos=1).wait_for_publish()
    assert be.next("devices/long/")[1] == "hi"
    assert dev.get()["reported"]["$version"] == 1
    be.close()
    dev.close()


def broker_rss_kb(broker):
    with open(f"/proc/{broker.process.pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def mqtt_packet(kind, body):
    n, length = len(body), b""
    while True:
        b, n = n % 128, n // 128
        length += bytes([b | (0x80 if n else 0)])
        if not n:
            return bytes([kind]) + length + body


def mqtt_str(s):
    b = s.encode()
    return struct.pack("!H", len(b)) + b


@pytest.mark.xfail(
    strict=True,
    reason="Mosquitto 2.0.11 keeps every targeted plugin publish it drops for a full "
    "queue: single_publish (src/loop.c) stores the message and never frees it when "
    "db__message_insert drops it (valgrind: reachable blocks from mosquitto_main_loop; "
    "malloc_stats: ~20 KB in use per dropped 21 KB reply until shutdown)",
)
def test_a_reader_that_never_reads_is_bounded_by_the_broker_queue(start_broker):
    """A device asks for its 24 KB twin 5,000 times and never reads a reply:
    with Mosquitto's max_queued_messages the broker keeps at most that many,
    instead of 120 MB of replies."""
    broker = start_broker(config=["max_queued_messages 100"])
    be = Backend(broker.port, "hostile/admin")
    be.command(command="createDevice", deviceId="deaf", twin={"tags": {f"t{i}": "x" * 2000 for i in range(3)},
               "properties": {"desired": {f"d{i}": "y" * 3000 for i in range(7)}}})
    start_rss = broker_rss_kb(broker)
    s = socket.create_connection(("127.0.0.1", broker.port))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.sendall(mqtt_packet(0x10, mqtt_str("MQTT") + bytes([4, 2]) + struct.pack("!H", 60) + mqtt_str("deaf")))
    s.sendall(mqtt_packet(0x82, struct.pack("!H", 1) + mqtt_str("$iothub/twin/res/#") + bytes([1])))
    req = b"".join(mqtt_packet(0x30, mqtt_str(f"{GET}{i}")) for i in range(5000))
    s.settimeout(30)
    s.sendall(req)
    time.sleep(2)
    grown_mb = (broker_rss_kb(broker) - start_rss) / 1024
    # Other clients are still served.
    dev = Device(broker.port, "other")
    assert dev.get()["reported"]["$version"] == 1
    dev.close()
    s.close()
    assert grown_mb < 40, f"broker grew {grown_mb:.0f} MB"
    be.close()


@pytest.mark.valgrind_ci
def test_connect_disconnect_loop_leaves_the_broker_serving_and_the_log_exact(broker):
    be = Backend(broker.port, "hostile/admin")
    be.command(command="createDevice", deviceId="loop")
    first = changes(be)[-1]["sequenceNumber"] + 1
    for _ in range(200):
        c = Client(broker.port, "loop")
        c.close()
    dev = Device(broker.port, "other")
    assert dev.get()["desired"]["$version"] == 1
    dev.close()
    ops = [i["opType"] for i in changes(be, first, deviceId="loop")]
    assert ops == ["deviceConnected", "deviceDisconnected"] * 200
    be.close()


@pytest.mark.valgrind_ci
def test_device_id_with_wildcards_cannot_subscribe_to_c2d_of_others(broker):
    """An id of '+' is a valid deviceId, but in a filter it matches every
    device: such ids cannot use devices/{id}/ topics (PROTOCOL.md §7)."""
    plus = Device(broker.port, "+")
    assert plus.subscribe("devices/+/messages/devicebound/#") == (128,)
    other = Device(broker.port, "victim")
    assert other.subscribe("devices/victim/messages/devicebound/#") == (1,)
    sender = Client(broker.port, "c2d/sender")
    sender.publish("devices/victim/messages/devicebound/x", "for victim")
    assert other.next("devices/victim/")[1] == "for victim"
    plus.nothing("devices/", 0.3)
    assert plus.get()["desired"]["$version"] == 1  # its twin still works
    for c in (plus, other, sender):
        c.close()


@pytest.mark.valgrind_ci
@pytest.mark.parametrize("command", ["updateTwin", "replaceTwin", "getTwin", "updateDevice", "deleteDevice", "createDevice"])
@pytest.mark.parametrize("length", [129, 300, 5000])
def test_device_ids_over_128_bytes_get_400_from_every_command(broker, command, length):
    """Found by tests/fuzz/fuzz_request: updateTwin and replaceTwin copied the
    id into a 130-byte key on the stack before checking it."""
    be = Backend(broker.port, "hostile/admin")
    r = be.command(command=command, deviceId="a" * length, twin={"tags": {"a": 1}}, device={"status": "enabled"})
    assert (r["status"], r["error"]["code"]) == (400, 400004), r
    assert be.command(command="listDevices")["data"]["devices"] == []
    be.close()


@pytest.mark.valgrind_ci
@pytest.mark.parametrize(
    "cmd",
    [
        {"command": "query", "query": "SELECT * FROM devices", "pageSize": 2e49},
        {"command": "listDevices", "maxCount": 1e300},
        {"command": "getChanges", "limit": -1e300},
        {"command": "getChanges", "fromSequence": 1e300},
        {"command": "createJob", "jobId": "j", "type": "scheduleUpdateTwin", "queryCondition": "tags.a = 1",
         "updateTwin": {"tags": {"a": 2}}, "maxExecutionTimeInSeconds": 1e300},
    ],
)
def test_numbers_beyond_any_integer_get_400(broker, cmd):
    """Found by tests/fuzz/fuzz_request: "pageSize":2E49 was cast to long long
    before its range was checked (undefined behaviour)."""
    be = Backend(broker.port, "hostile/admin")
    r = be.command(**cmd)
    assert (r["status"], r["error"]["code"]) == (400, 400004), r
    be.close()
