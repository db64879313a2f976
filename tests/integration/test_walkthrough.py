"""The README's walkthrough, end to end, in sas mode: create a device with
twinctl, connect the libmosquitto device (twin-device-sim) with a SAS token
made from its connection string, change its desired properties with
twinctl, and watch it apply and report them."""

import json
import os
import subprocess
import time

import pytest

from iothub_auth import new_key

TOOLS = {k: os.environ.get(k) for k in ("TWINCTL", "TWIN_TOKEN", "TWIN_DEVICE_SIM")}
pytestmark = pytest.mark.skipif(not all(TOOLS.values()), reason="run through ctest")
HOST = "hub.example.test"


def test_twinctl_desired_update_reaches_the_libmosquitto_device(start_broker):
    key = new_key()
    broker = start_broker(options={"auth": "sas", "hostname": HOST,
                                   "policy_iothubowner": f"all:{key}"})
    owner = f"HostName={HOST};SharedAccessKeyName=iothubowner;SharedAccessKey={key}"

    def twinctl(*args):
        r = subprocess.run([TOOLS["TWINCTL"], "-h", "127.0.0.1", "-p", str(broker.port),
                            "--connection-string", owner, "-c", *args],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout) if r.stdout else None

    device = twinctl("device", "create", "sim1", "--show-connection-string")
    cs = device["connectionString"]

    def token(*a):
        return subprocess.run([TOOLS["TWIN_TOKEN"], *a, cs], check=True, capture_output=True,
                              text=True).stdout.strip()

    sim = subprocess.Popen([TOOLS["TWIN_DEVICE_SIM"], "-i", "sim1", "-p", str(broker.port),
                            "-u", token("--username"), "-P", token(), "--quiet",
                            "--download-seconds", "0", "--duration", "30"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 10
        while twinctl("device", "show", "sim1")["connectionState"] != "Connected":
            assert time.monotonic() < deadline, "the simulator did not connect"
            time.sleep(0.1)
        twinctl("twin", "update", "sim1", "--desired", '{"telemetryInterval":7,"threshold":25}')
        deadline = time.monotonic() + 10
        while True:
            reported = twinctl("twin", "show", "sim1")["properties"]["reported"]
            if reported.get("telemetryInterval") == 7 and reported.get("threshold") == 25:
                break
            assert time.monotonic() < deadline, reported
            time.sleep(0.1)
    finally:
        sim.terminate()
        out, _ = sim.communicate(timeout=10)
    assert "error" not in out.lower(), out
