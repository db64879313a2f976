"""The change log, the event stream and replay (PROTOCOL.md §9, DESIGN.md §6):
one entry per committed change with a strictly increasing sequence number,
published to $twin/events/{opType}/{deviceId} and replayed by getChanges,
across restarts and kill -9, with retention."""

import json
import os
import queue
import signal
import subprocess
import threading
import time

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from test_auth import Hub, hub  # noqa: F401 (the sas-mode fixture)
from twin_clients import Backend, Client, Device

EVENTS = "$twin/events/"


def changes(be, start=1, **filters):
    """Every entry from start on, following nextSequence until caught up."""
    out, nxt = [], start
    while True:
        r = be.command(command="getChanges", fromSequence=nxt, limit=1000, **filters)
        assert r["status"] == 200, r
        out += r["data"]["items"]
        if r["data"]["nextSequence"] > r["data"]["lastSequence"]:
            return out
        nxt = r["data"]["nextSequence"]


def seq_of(body):
    s = body["sequenceNumber"]
    return int(s, 16) if isinstance(s, str) else s


def start_writer(broker, ids, stop):
    """A thread of back-end updates over ids, as fast as they are answered,
    until stop is set."""

    def write():
        w = Backend(broker.port, "events/writer")
        n = 0
        while not stop.is_set():
            w.command(command="updateTwin", deviceId=ids[n % len(ids)], twin={"tags": {"n": n}})
            n += 1
        w.close()

    t = threading.Thread(target=write)
    t.start()
    return t


class Subscriber(Client):
    """A back end on the event stream; events() gives (topic, body) pairs."""

    def __init__(self, port, client_id="events-1", filt=EVENTS + "#", **kw):
        super().__init__(port, client_id, **kw)
        assert self.subscribe(filt)[0] < 0x80

    def events(self, n, timeout=10.0):
        got = []
        for _ in range(n):
            topic, body, _, _ = self.next(EVENTS, timeout)
            got.append((topic, json.loads(body)))
        return got


@pytest.mark.valgrind_ci
def test_change_log_numbers_every_change_once_in_order(broker):
    sub = Subscriber(broker.port)
    be = Backend(broker.port, "events/admin")
    assert be.command(command="createDevice", deviceId="e1")["status"] == 200
    dev = Device(broker.port, "e1")
    dev.patch({"temp": 21, "gone": None})
    be.update_desired("e1", {"mode": "eco"})
    assert be.command(command="updateTwin", deviceId="e1", twin={"tags": {"site": "north"}})["status"] == 200
    assert be.command(command="replaceTwin", deviceId="e1", twin={"tags": {"a": 1}})["status"] == 200
    assert be.command(command="updateDevice", deviceId="e1", device={"statusReason": "why"})["status"] == 200
    dev.close()
    assert be.command(command="deleteDevice", deviceId="e1")["status"] == 204
    ops = [
        "createDeviceIdentity",
        "deviceConnected",
        "updateTwin",
        "updateTwin",
        "updateTwin",
        "replaceTwin",
        "updateDeviceIdentity",
        "deviceDisconnected",
        "deleteDeviceIdentity",
    ]
    live = sub.events(len(ops))
    assert [t for t, _ in live] == [f"{EVENTS}{op}/e1" for op in ops]
    seqs = [seq_of(b) for _, b in live]
    assert seqs == list(range(seqs[0], seqs[0] + len(ops)))
    replay = changes(be, seqs[0], deviceId="e1")
    assert [i["opType"] for i in replay] == ops
    assert [i["sequenceNumber"] for i in replay] == seqs
    assert [i["body"] for i in replay] == [b for _, b in live]
    sub.nothing(EVENTS)
    be.close()
    sub.close()


def test_event_bodies_follow_protocol_section_9(broker):
    sub = Subscriber(broker.port)
    be = Backend(broker.port, "events/admin")
    be.command(command="createDevice", deviceId="b1")
    _, created = sub.events(1)[0]
    assert list(created) == ["sequenceNumber", "deviceId", "etag", "version", "tags", "properties"]
    assert created["version"] == 2 and created["properties"]["desired"]["$version"] == 1
    dev = Device(broker.port, "b1")
    topic, conn = sub.events(1)[0]
    assert topic == f"{EVENTS}deviceConnected/b1"
    assert list(conn) == ["sequenceNumber"] and len(conn["sequenceNumber"]) == 64
    assert conn["sequenceNumber"] == conn["sequenceNumber"].upper()
    assert int(conn["sequenceNumber"], 16) == created["sequenceNumber"] + 1
    dev.patch({"a": {"b": 1, "c": None}, "x": 2})
    _, rep = sub.events(1)[0]
    reported = rep["properties"]["reported"]
    assert rep["version"] == 3 and "tags" not in rep and "desired" not in rep["properties"]
    assert reported["a"] == {"b": 1, "c": None} and reported["x"] == 2  # as accepted, nulls kept
    meta = reported["$metadata"]
    assert set(meta) == {"$lastUpdated", "a", "x"} and set(meta["a"]) == {"$lastUpdated", "b"}
    assert reported["$version"] == 2
    be.update_desired("b1", {"mode": "eco"})
    _, des = sub.events(1)[0]
    desired = des["properties"]["desired"]
    assert desired["mode"] == "eco" and desired["$version"] == 2
    assert desired["$metadata"]["mode"]["$lastUpdatedVersion"] == 2
    be.close()
    dev.close()
    sub.close()


@pytest.mark.valgrind_ci
def test_event_v5_subscribers_get_user_properties(broker):
    got = queue.Queue()
    c = mqtt.Client(client_id="events-v5", protocol=mqtt.MQTTv5)
    c.on_message = lambda _c, _u, m: got.put(m)
    c.connect("127.0.0.1", broker.port)
    c.loop_start()
    try:
        c.subscribe(EVENTS + "#", qos=1)
        time.sleep(0.3)
        be = Backend(broker.port, "events/admin")
        be.command(command="createDevice", deviceId="p1")
        m = got.get(timeout=5)
        props = dict(m.properties.UserProperty)
        assert props["opType"] == "createDeviceIdentity" and props["deviceId"] == "p1"
        assert props["iothub-message-schema"] == "deviceLifecycleNotification"
        assert props["iothub-message-source"] == "deviceLifecycleEvents"
        assert int(props["sequenceNumber"]) == json.loads(m.payload)["sequenceNumber"]
        assert json.loads(props["actor"]) == {"type": "client", "name": "events/admin"}
        assert props["operationTimestamp"].endswith("Z")
        be.close()
    finally:
        c.loop_stop()
        c.disconnect()


def test_event_topic_escapes_wildcards_in_device_ids(broker):
    sub = Subscriber(broker.port)
    be = Backend(broker.port, "events/admin")
    assert be.command(command="createDevice", deviceId="a+b#c%d")["status"] == 200
    topic, body = sub.events(1)[0]
    assert topic == f"{EVENTS}createDeviceIdentity/a%2Bb%23c%25d"
    assert body["deviceId"] == "a+b#c%d"
    be.close()
    sub.close()


def test_rejected_changes_leave_no_entry(broker):
    be = Backend(broker.port, "events/admin")
    be.command(command="createDevice", deviceId="r1")
    last = changes(be)[-1]["sequenceNumber"]
    dev = Device(broker.port, "r1")
    first = changes(be)[-1]["sequenceNumber"]  # the connect
    assert first == last + 1
    assert dev.patch("{not json")[0].startswith("$iothub/twin/res/400/")
    assert be.command(command="updateTwin", deviceId="r1", etag='"AAAAAAAAAAk="', twin={"tags": {"a": 1}})["status"] == 412
    r = be.command(command="createDevice", deviceId="r2", twin={"tags": {"bad key.x": 1}})
    assert r["status"] == 400
    assert changes(be, first + 1) == []
    dev.close()
    be.close()


@pytest.mark.valgrind_ci
def test_stream_and_replay_together_see_every_change_exactly_once(broker):
    """A subscriber that joins mid-stream plus getChanges from an old number
    see every change once: the follow pattern of `twinctl events --follow`."""
    be = Backend(broker.port, "events/admin")
    for i in range(20):
        be.command(command="createDevice", deviceId=f"s{i}")
    stop = threading.Event()
    t = start_writer(broker, [f"s{i}" for i in range(20)], stop)
    time.sleep(0.3)
    sub = Subscriber(broker.port)  # subscribed (SUBACK) before the replay
    seen = {i["sequenceNumber"] for i in changes(be)}
    time.sleep(0.3)
    stop.set()
    t.join()
    last = changes(be)[-1]["sequenceNumber"]
    while True:
        try:
            _, body = sub.events(1, timeout=1.0)[0]
        except AssertionError:
            break
        seen.add(seq_of(body))
    assert seen == set(range(1, last + 1))
    sub.close()
    be.close()


@pytest.mark.valgrind_ci
def test_change_log_continues_across_restart(broker):
    be = Backend(broker.port, "events/admin")
    for i in range(5):
        be.command(command="createDevice", deviceId=f"k{i}")
    before = changes(be)
    be.close()
    broker.stop()
    broker.start()
    be = Backend(broker.port, "events/admin")
    be.command(command="createDevice", deviceId="k5")
    after = changes(be)
    assert after[: len(before)] == before
    assert [i["sequenceNumber"] for i in after] == list(range(1, len(before) + 2))
    be.close()


@pytest.mark.valgrind_ci
def test_change_log_after_kill_9_has_every_acknowledged_change_and_no_other(broker):
    be = Backend(broker.port, "events/admin")
    ids = [f"c{i}" for i in range(8)]
    for d in ids:
        be.command(command="createDevice", deviceId=d)
    acked = {d: [] for d in ids}
    stop = threading.Event()

    def run(d):
        dev = Device(broker.port, d)
        n = 0
        try:
            while not stop.is_set():
                # Not Device.patch: waiting for a PUBACK would never end
                # once the broker is gone; the reply has a timeout.
                dev.client.publish(f"$iothub/twin/PATCH/properties/reported/?$rid={n}", json.dumps({"n": n}), qos=1)
                topic = dev.next("$iothub/twin/res/", 2.0)[0]
                if topic.startswith("$iothub/twin/res/204/") and f"$rid={n}&" in topic:
                    acked[d].append(n)
                n += 1
        except (AssertionError, OSError):
            pass  # the broker died under us
        dev.client.loop_stop()

    threads = [threading.Thread(target=run, args=(d,)) for d in ids]
    for t in threads:
        t.start()
    time.sleep(1.5)
    broker.kill()
    stop.set()
    for t in threads:
        t.join()
    broker.start()
    assert sum(len(a) for a in acked.values()) > 50  # the crash hit a busy stream
    be = Backend(broker.port, "events/admin2")
    log = changes(be)
    assert [i["sequenceNumber"] for i in log] == list(range(1, len(log) + 1))
    for d in ids:
        patches = [i["body"] for i in log if i["deviceId"] == d and i["opType"] == "updateTwin"]
        values = [b["properties"]["reported"]["n"] for b in patches]
        # Every acknowledged patch has its entry, in order ...
        assert values[: len(acked[d])] == acked[d]
        # ... and every entry's change is in the twin: versions run without
        # a gap up to the twin's version, the last value is the stored one.
        twin = be.twin(d)
        assert [b["version"] for b in patches] == list(range(3, twin["version"] + 1))
        if values:
            assert twin["properties"]["reported"]["n"] == values[-1]
    # The crash left the devices marked connected: each got a disconnect.
    for d in ids:
        ops = [i["opType"] for i in log if i["deviceId"] == d]
        assert ops[-1] == "deviceDisconnected"
    be.close()


@pytest.mark.valgrind_ci
def test_change_log_retention_trims_oldest_by_count(start_broker):
    broker = start_broker(options={"changes_max_count": 50})
    be = Backend(broker.port, "events/admin")
    for i in range(120):
        be.command(command="createDevice", deviceId=f"t{i:03d}")
    deadline = time.monotonic() + 5
    while True:
        log = changes(be)
        if len(log) <= 50 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert [i["sequenceNumber"] for i in log] == list(range(71, 121))
    # Numbering goes on after trimming, also across a restart.
    be.close()
    broker.stop()
    broker.start()
    be = Backend(broker.port, "events/admin")
    be.command(command="createDevice", deviceId="t999")
    assert changes(be)[-1]["sequenceNumber"] == 121
    be.close()


@pytest.mark.valgrind_ci
def test_get_changes_rejects_bad_arguments(broker):
    be = Backend(broker.port, "events/admin")
    for bad in ({"fromSequence": 0}, {"fromSequence": "1"}, {"limit": 1001}, {"limit": 0}, {"opType": "nope"}, {"deviceId": 5}):
        r = be.command(command="getChanges", **bad)
        assert (r["status"], r["error"]["code"]) == (400, 400004), (bad, r)
    be.close()


@pytest.mark.valgrind_ci
def test_device_cannot_subscribe_to_events_or_read_changes(hub):  # noqa: F811
    hub.create("dx")
    dev = hub.device("dx")
    assert dev.subscribe(EVENTS + "#")[0] == 128
    assert dev.subscribe(EVENTS + "updateTwin/dx")[0] == 128
    dev.close()
    reg = hub.backend("registryReadWrite", key=__import__("test_auth").REGISTRY_KEY)
    assert reg.subscribe(EVENTS + "#")[0] == 128
    r = reg.command(command="getChanges")
    assert r["status"] == 401
    svc = hub.backend("service", key=__import__("test_auth").SERVICE_KEY)
    assert svc.subscribe(EVENTS + "#")[0] == 1
    r = svc.command(command="getChanges")
    assert r["status"] == 200 and r["data"]["items"][0]["opType"] == "createDeviceIdentity"
    assert r["data"]["items"][0]["actor"] == {"type": "policy", "name": "iothubowner"}
    reg.close()
    svc.close()


TWINCTL = os.environ.get("TWINCTL")


@pytest.mark.skipif(not TWINCTL, reason="TWINCTL not set (ctest sets it)")
def test_twinctl_events_prints_the_log_as_json_lines(broker):
    be = Backend(broker.port, "events/admin")
    for i in range(3):
        be.command(command="createDevice", deviceId=f"j{i}")
    out = subprocess.run([TWINCTL, "-p", str(broker.port), "events"], capture_output=True, text=True, timeout=20)
    assert out.returncode == 0, out.stderr
    lines = [json.loads(ln) for ln in out.stdout.splitlines()]
    assert lines == changes(be)
    out = subprocess.run(
        [TWINCTL, "-p", str(broker.port), "events", "--from", "2", "--device", "j2"], capture_output=True, text=True, timeout=20
    )
    assert [json.loads(ln)["deviceId"] for ln in out.stdout.splitlines()] == ["j2"]
    be.close()


@pytest.mark.skipif(not TWINCTL, reason="TWINCTL not set (ctest sets it)")
def test_twinctl_events_follow_switches_from_replay_to_live_without_gap_or_duplicate(broker, tmp_path):
    be = Backend(broker.port, "events/admin")
    for i in range(10):
        be.command(command="createDevice", deviceId=f"f{i}")
    stop = threading.Event()
    t = start_writer(broker, [f"f{i}" for i in range(10)], stop)
    time.sleep(0.5)
    # A file, not a pipe: a pipe nobody reads would stall twinctl, and a
    # stalled subscriber loses messages to the broker's queue limit.
    out_path = tmp_path / "events.jsonl"
    with open(out_path, "w") as out:
        follow = subprocess.Popen([TWINCTL, "-p", str(broker.port), "events", "--follow", "--from", "1"], stdout=out)
    time.sleep(1.5)
    stop.set()
    t.join()
    last = changes(be)[-1]["sequenceNumber"]
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        lines = out_path.read_text().splitlines()
        if lines and json.loads(lines[-1])["sequenceNumber"] >= last:
            break
        time.sleep(0.1)
    follow.send_signal(signal.SIGINT)
    assert follow.wait(10) == 0
    seqs = [json.loads(ln)["sequenceNumber"] for ln in out_path.read_text().splitlines()]
    assert seqs == list(range(1, last + 1))
    be.close()
