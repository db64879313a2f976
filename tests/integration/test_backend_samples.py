"""The back-end samples (examples/README.md) do what they print: tag the
device and set its desired properties with the etag they read, then wait until
the device reports the desired value. The C sample (twin-backend-sample) runs
in open and in sas mode; the Node.js one (examples/node-backend) runs when node
and npm are on PATH.

Environment: TWIN_BACKEND_SAMPLE, the C sample (set by ctest; its tests skip
without it). The Node sample's pinned dependencies are installed once per run
with `npm ci` into a temporary directory (from npm's cache, or the registry).
"""

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from iothub_auth import device_username, new_key, sas_token
from twin_clients import Backend, Device

REPO = Path(__file__).resolve().parents[2]
C_SAMPLE = os.environ.get("TWIN_BACKEND_SAMPLE")
NODE_SAMPLE = REPO / "examples" / "node-backend"
HOST = "hub.example.test"
OWNER_KEY, SERVICE_KEY = new_key(), new_key()

TAGS = {"location": {"region": "US", "plant": "Redmond43"}}
# npm's messages for a registry it cannot reach (then the Node tests skip).
NPM_OFFLINE = re.compile(r"ENOTFOUND|EAI_AGAIN|ECONNREFUSED|ECONNRESET|ETIMEDOUT|ENETUNREACH")


@pytest.fixture
def c_sample():
    if not C_SAMPLE:
        pytest.skip("TWIN_BACKEND_SAMPLE not set (ctest sets it)")
    return [C_SAMPLE]


@pytest.fixture(scope="module")
def node_sample(tmp_path_factory):
    """`node backend.js` with the sample's package-lock.json installed by npm ci."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        pytest.skip("node or npm not on PATH")
    deps = tmp_path_factory.mktemp("node-backend")
    for name in ("package.json", "package-lock.json"):
        shutil.copy(NODE_SAMPLE / name, deps)
    r = subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund", "--prefer-offline", "--loglevel=error"],
        cwd=deps,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if r.returncode != 0 and NPM_OFFLINE.search(r.stdout + r.stderr):
        pytest.skip(f"npm ci cannot reach the registry:\n{r.stderr}")
    assert r.returncode == 0, f"npm ci failed:\n{r.stdout}{r.stderr}"
    return [node, str(NODE_SAMPLE / "backend.js")], {"NODE_PATH": str(deps / "node_modules")}


@pytest.fixture(params=["c", "node"])
def sample(request):
    """Either sample, as (command, extra environment)."""
    if request.param == "c":
        return request.getfixturevalue("c_sample"), {}
    return request.getfixturevalue("node_sample")


def run(cmd, env, *args, timeout=30):
    """Runs a sample to its end without a device; (exit status, output)."""
    env = {**os.environ, "TWIN_CONNECTION_STRING": "", **env}
    r = subprocess.run(
        [*cmd, *args],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return r.returncode, r.stdout + r.stderr


def run_with_device(cmd, env, device, *args):
    """Runs a sample while `device` plays the tutorial's device: on the desired
    patch it reports the new telemetryInterval as applied. Returns (exit
    status, output, the desired patch the device received)."""
    env = {**os.environ, "TWIN_CONNECTION_STRING": "", **env}
    p = subprocess.Popen(
        [*cmd, *args],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        _, patch = device.notification(timeout=15)
        topic, _ = device.patch({"telemetryInterval": patch["telemetryInterval"], "fw": "1.0"})
        assert topic.startswith("$iothub/twin/res/204/"), topic
        out, _ = p.communicate(timeout=30)
    except BaseException:
        p.kill()
        print(p.communicate()[0])  # shown by pytest with the failure
        raise
    return p.returncode, out, patch


def assert_tutorial_done(out, patch, twin, interval=5):
    """The tags and desired property are set, the device got the patch, and the
    sample printed the reported state it waited for."""
    assert {k: v for k, v in patch.items() if k != "$version"} == {"telemetryInterval": interval}
    assert twin["tags"] == TAGS
    assert twin["properties"]["desired"]["telemetryInterval"] == interval
    reported = json_line(out, "<- reported ")
    assert reported == {"telemetryInterval": interval, "fw": "1.0", "$version": 2}
    assert "desired state reached" in out


def assert_writes_carry_the_etag_just_read(out):
    """Every "-> updateTwin … with etag E" names the etag of the twin printed last."""
    last, writes = None, 0
    for line in out.splitlines():
        if m := re.search(r"<- 200 etag (\S+),", line):
            last = m.group(1)
        elif m := re.search(r"-> updateTwin .* with etag (\S+)$", line):
            assert m.group(1) == last, out
            writes += 1
    assert writes == 2, out


def json_line(out, marker):
    """The JSON after marker on the last output line holding it."""
    lines = [ln for ln in out.splitlines() if marker in ln]
    assert lines, f"no {marker!r} line in:\n{out}"
    return json.loads(lines[-1].split(marker, 1)[1])


def test_sample_tags_sets_desired_and_waits_for_reported(sample, start_broker):
    cmd, env = sample
    broker = start_broker()
    device = Device(broker.port, "thermostat-1")
    rc, out, patch = run_with_device(cmd, env, device, "-p", str(broker.port), "-i", "thermostat-1")
    assert rc == 0, out
    backend = Backend(broker.port)
    assert_tutorial_done(out, patch, backend.twin("thermostat-1"))
    assert_writes_carry_the_etag_just_read(out)
    assert "open mode" in out
    device.close()
    backend.close()


def test_sample_creates_an_unregistered_device_and_exits_3_without_a_report(sample, start_broker):
    cmd, env = sample
    broker = start_broker()
    rc, out = run(
        cmd, env, "-p", str(broker.port), "-i", "plant-7", "--timeout", "0", "--interval", "60"
    )
    assert rc == 3, out
    assert "createDevice plant-7" in out
    twin = Backend(broker.port).twin("plant-7")
    assert twin["tags"] == TAGS
    assert twin["properties"]["desired"]["telemetryInterval"] == 60
    assert json_line(out, "<- reported ") == {"$version": 1}


def test_sample_fails_when_no_broker_listens(sample, start_broker):
    cmd, env = sample
    broker = start_broker()
    broker.stop()
    rc, out = run(cmd, env, "-p", str(broker.port), "-i", "dev1")
    assert rc == 1, out
    assert "cannot connect" in out


def test_sample_usage_without_a_device_id(sample):
    cmd, env = sample
    rc, out = run(cmd, env, "-p", "1883")
    assert rc == 2, out
    assert "usage:" in out


@pytest.fixture
def hub(start_broker):
    """A sas-mode broker with iothubowner and the tutorial's `service` policy,
    and device dev1 created and connected with its own key."""
    broker = start_broker(
        options={
            "auth": "sas",
            "hostname": HOST,
            "policy_iothubowner": f"all:{OWNER_KEY}",
            "policy_service": f"serviceConnect:{SERVICE_KEY}",
        }
    )
    admin = Backend(
        broker.port,
        "admin",
        username="iothubowner",
        password=sas_token(HOST, OWNER_KEY, policy="iothubowner"),
    )
    r = admin.command(command="createDevice", deviceId="dev1")
    assert r["status"] == 200, r
    key = r["data"]["authentication"]["symmetricKey"]["primaryKey"]
    device = Device(
        broker.port,
        "dev1",
        username=device_username(HOST, "dev1"),
        password=sas_token(f"{HOST}/devices/dev1", key),
    )
    yield broker, admin, device
    device.close()
    admin.close()


def test_sample_in_sas_mode_with_the_service_connection_string(sample, hub):
    cmd, env = sample
    broker, admin, device = hub
    connstr = f"HostName={HOST};SharedAccessKeyName=service;SharedAccessKey={SERVICE_KEY}"
    rc, out, patch = run_with_device(
        cmd, env, device, "-p", str(broker.port), "-i", "dev1", "-c", connstr, "--interval", "0.5"
    )
    assert rc == 0, out
    assert_tutorial_done(out, patch, admin.twin("dev1"), 0.5)
    assert "sas mode: policy service" in out
    assert SERVICE_KEY not in out and "SharedAccessSignature" not in out


def test_sample_takes_the_connection_string_from_the_environment(sample, hub):
    cmd, env = sample
    broker, admin, _ = hub
    connstr = f"HostName={HOST};SharedAccessKeyName=iothubowner;SharedAccessKey={OWNER_KEY}"
    rc, out = run(
        cmd,
        {**env, "TWIN_CONNECTION_STRING": connstr},
        "-p",
        str(broker.port),
        "-i",
        "dev2",
        "--timeout",
        "0",
    )
    assert rc == 3, out  # created and configured; no device reports for dev2
    assert "sas mode: policy iothubowner" in out
    assert admin.twin("dev2")["tags"] == TAGS


def test_sample_is_refused_with_a_wrong_key(sample, hub):
    cmd, env = sample
    broker, _, _ = hub
    connstr = f"HostName={HOST};SharedAccessKeyName=service;SharedAccessKey={new_key()}"
    rc, out = run(cmd, env, "-p", str(broker.port), "-i", "dev1", "-c", connstr)
    assert rc == 1, out
    assert re.search(r"ERROR .*[Nn]ot authori[sz]ed", out), out


def test_sample_refuses_a_device_connection_string(sample, hub):
    cmd, env = sample
    broker, _, _ = hub
    connstr = f"HostName={HOST};DeviceId=dev1;SharedAccessKey={new_key()}"
    rc, out = run(cmd, env, "-p", str(broker.port), "-i", "dev1", "-c", connstr)
    assert rc == 1, out
    assert "device connection string" in out


def test_sample_and_the_device_simulator_run_against_each_other(sample, start_broker):
    """examples/README.md's walk-through: twin-device-sim applies the desired
    telemetryInterval and reports it, which is what the sample waits for."""
    cmd, env = sample
    sim = os.environ.get("TWIN_DEVICE_SIM")
    if not sim:
        pytest.skip("TWIN_DEVICE_SIM not set (ctest sets it)")
    broker = start_broker()
    p = subprocess.Popen(
        [sim, "-p", str(broker.port), "-i", "thermostat-1", "--duration", "30"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        backend = Backend(broker.port)
        deadline = time.monotonic() + 10
        while backend.command(command="getTwin", deviceId="thermostat-1")["status"] != 200:
            assert time.monotonic() < deadline, "the simulator did not register thermostat-1"
            time.sleep(0.05)
        rc, out = run(cmd, env, "-p", str(broker.port), "-i", "thermostat-1", "--interval", "2")
    finally:
        p.terminate()
        sim_out = p.communicate(timeout=10)[0]
    assert rc == 0, out + sim_out
    assert "telemetryInterval 10 s -> 2 s" in sim_out, sim_out
    assert json_line(out, "<- reported ")["telemetryInterval"] == 2
    backend.close()
