#!/usr/bin/env python3
"""rtt-probe - a first look at twin round-trip times, one client, one at a time.

Measures sequential QoS 1 round trips on one connection against a broker
with the plugin: echo (publish to a topic the client subscribes to: the
broker's own relay cost), twin GET, and reported PATCH. It is a probe, not
the benchmark: twin-bench measures throughput with many clients.

    /usr/bin/python3 tools/rtt-probe.py [--port 1883] [--count 2000]
"""

import argparse
import json
import socket
import statistics
import threading
import time

import paho.mqtt.client as mqtt


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=1883)
    ap.add_argument("--count", type=int, default=2000)
    ap.add_argument("--device", default="rtt-probe")
    args = ap.parse_args()

    got = threading.Event()
    client = mqtt.Client(client_id=args.device, clean_session=True)
    client.on_message = lambda _c, _u, _m: got.set()
    client.connect("127.0.0.1", args.port)
    # paho leaves Nagle on: without this every round trip waits ~40 ms for
    # the delayed ACK of the previous small packet.
    client.socket().setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    client.loop_start()
    client.subscribe([("$iothub/twin/res/#", 1), (f"echo/{args.device}", 1)])
    time.sleep(0.3)

    def run(name, topic_of, body_of):
        times = []
        for i in range(args.count):
            got.clear()
            t0 = time.perf_counter()
            client.publish(topic_of(i), body_of(i), qos=1)
            if not got.wait(5):
                raise SystemExit(f"{name}: no answer to request {i}")
            times.append((time.perf_counter() - t0) * 1e6)
        times.sort()
        print(f"{name:6} n={len(times)} mean={statistics.mean(times):7.0f} us "
              f"p50={times[len(times) // 2]:7.0f} us p99={times[int(len(times) * 0.99)]:7.0f} us "
              f"-> {len(times) / (sum(times) / 1e6):6.0f} round trips/s")

    run("echo", lambda i: f"echo/{args.device}", lambda i: b"x" * 64)
    run("get", lambda i: f"$iothub/twin/GET/?$rid={i}", lambda i: b" ")
    run("patch", lambda i: f"$iothub/twin/PATCH/properties/reported/?$rid={i}",
        lambda i: json.dumps({"counter": i, "fw": "1.2.3", "temp": 21.5}))
    client.disconnect()


if __name__ == "__main__":
    main()
