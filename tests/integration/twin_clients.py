"""Device and back-end clients for the twin integration tests (paho-mqtt).

A Device is one MQTT connection speaking IoT Hub's twin dialect; a Backend
uses the control API on $CONTROL/twin/v1. Both queue what they receive and
wait with bounded timeouts, so no test relies on sleeps to see a message.
"""

import itertools
import json
import queue
import socket
import ssl
import threading
import time

import paho.mqtt.client as mqtt

RES = "$iothub/twin/res/#"
DESIRED = "$iothub/twin/PATCH/properties/desired/#"
DESIRED_PREFIX = "$iothub/twin/PATCH/properties/desired/?$version="


class Client:
    """A paho client whose received messages land in a queue."""

    def __init__(
        self,
        port,
        client_id,
        *,
        clean_session=True,
        will=None,
        username=None,
        password=None,
        tls=None,
        refused_ok=False,
    ):
        """tls: (cafile, certfile or None, keyfile or None). refused_ok: a
        refused CONNECT is returned in self.connack instead of raising."""
        self.client_id = client_id
        self.messages = queue.Queue()
        self.client = mqtt.Client(client_id=client_id, clean_session=clean_session)
        if will is not None:
            self.client.will_set(*will)
        if username is not None:
            self.client.username_pw_set(username, password)
        if tls is not None:
            self.client.tls_set(
                ca_certs=tls[0], certfile=tls[1], keyfile=tls[2], tls_version=ssl.PROTOCOL_TLS_CLIENT
            )
        connected = threading.Event()
        self.connack = None
        self.suback = queue.Queue()
        self.closed = threading.Event()

        def on_connect(_c, _u, flags, rc):
            self.connack = (rc, flags.get("session present", 0))
            connected.set()

        self.client.on_connect = on_connect
        self.client.on_message = lambda _c, _u, m: self.messages.put(
            (m.topic, m.payload.decode("utf-8", "replace"), m.qos, m.retain)
        )
        self.client.on_subscribe = lambda _c, _u, _mid, granted: self.suback.put(granted)
        self.client.on_disconnect = lambda _c, _u, _rc: self.closed.set()
        self.client.connect("127.0.0.1", port, keepalive=30)
        # Without TCP_NODELAY a request sent right after a PUBACK waits for
        # the broker's delayed ACK (40 ms), as DESIGN.md §2 measured.
        self.client.socket().setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.client.loop_start()
        if not connected.wait(5):
            self.client.loop_stop()
            raise AssertionError(f"{client_id}: no CONNACK")
        if self.connack[0] != 0:
            self.client.loop_stop()
            if not refused_ok:
                raise AssertionError(f"{client_id}: CONNACK {self.connack[0]}")

    def subscribe(self, *filters, qos=1):
        self.client.subscribe([(f, qos) for f in filters])
        return self.suback.get(timeout=5)

    def publish(self, topic, payload, qos=1, retain=False):
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        if qos:
            info.wait_for_publish()

    def next(self, prefix, timeout=5.0):
        """The next message whose topic starts with prefix (others are dropped)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{self.client_id}: nothing on {prefix!r} in {timeout} s")
            try:
                msg = self.messages.get(timeout=left)
            except queue.Empty:
                continue
            if msg[0].startswith(prefix):
                return msg

    def nothing(self, prefix, within=0.5):
        """Assert that no message on prefix arrives within `within` seconds."""
        try:
            msg = self.next(prefix, within)
        except AssertionError:
            return
        raise AssertionError(f"{self.client_id}: unexpected {msg}")

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()

    def drop(self):
        """Close the socket without DISCONNECT (the will is sent)."""
        self.client.loop_stop()
        self.client.socket().close()


class Device(Client):
    _rid = itertools.count(1)

    def __init__(self, port, device_id, *, subscribe=True, **kw):
        super().__init__(port, device_id, **kw)
        if subscribe and self.connack[0] == 0:
            self.subscribe(RES, DESIRED)

    def request(self, topic, body=""):
        rid = str(next(self._rid))
        self.publish(f"{topic}?$rid={rid}", body)
        msg = self.next("$iothub/twin/res/")
        assert f"$rid={rid}" in msg[0], msg
        return msg

    def get(self):
        topic, body, _, _ = self.request("$iothub/twin/GET/")
        assert topic.startswith("$iothub/twin/res/200/"), (topic, body)
        return json.loads(body)

    def patch(self, patch):
        topic, body, _, _ = self.request(
            "$iothub/twin/PATCH/properties/reported/",
            patch if isinstance(patch, str) else json.dumps(patch),
        )
        return topic, body

    def notification(self, timeout=5.0):
        topic, body, _, _ = self.next(DESIRED_PREFIX, timeout)
        return int(topic[len(DESIRED_PREFIX):]), json.loads(body)


class Backend(Client):
    def __init__(self, port, client_id="backend-1", **kw):
        super().__init__(port, client_id, **kw)

    def commands(self, *cmds):
        self.publish("$CONTROL/twin/v1", json.dumps({"commands": list(cmds)}))
        _, body, _, _ = self.next("$CONTROL/twin/v1/response")
        return json.loads(body)["responses"]

    def command(self, **cmd):
        return self.commands(cmd)[0]

    def update_desired(self, device_id, desired, **kw):
        r = self.command(
            command="updateTwin",
            deviceId=device_id,
            twin={"properties": {"desired": desired}},
            **kw,
        )
        assert r["status"] == 200, r
        return r["data"]

    def twin(self, device_id):
        r = self.command(command="getTwin", deviceId=device_id)
        assert r["status"] == 200, r
        return r["data"]
