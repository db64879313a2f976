"""The plugin inside a real broker: start, database lifecycle, refusals, hygiene.

DESIGN.md §2: the plugin refuses configurations it cannot serve (per-listener
settings, a second instance), stops the broker on an unknown option, and
exports only the three plugin entry points.
"""

import json
import shutil
import subprocess
import time

import pytest

from twin_clients import Backend, Client, Device

from conftest import CLOSED_LINE, DB_OPEN_LINE, PLUGIN, REPO, SANITIZE, free_port
from iothub_auth import Certs, device_username, new_key, sas_token
from valgrind_check import check_log, valgrind_records

PLUGIN_LINE = f"plugin {PLUGIN}"


def assert_refused(broker, line):
    """The broker exits non-zero on its own, and its log has the given line."""
    rc = broker.wait_exit(timeout=10)
    log = broker.log()
    assert rc != 0, log
    assert line in log, log
    return log


def test_broker_starts_with_plugin_and_opens_database(broker, mqtt_client):
    client = mqtt_client(broker, "starts-test")
    assert client.is_connected()
    assert (broker.db_path / "data.mdb").is_file()
    assert (broker.db_path / "lock.mdb").is_file()
    assert f"{DB_OPEN_LINE}{broker.db_path} (map 64 MiB)." in broker.log()


def test_broker_shutdown_closes_database_cleanly(broker):
    assert broker.stop() == 0
    assert f"{CLOSED_LINE} ({broker.db_path})." in broker.log()
    stat = subprocess.run(
        ["mdb_stat", "-e", str(broker.db_path)], capture_output=True, text=True, timeout=10
    )
    assert stat.returncode == 0, stat.stdout + stat.stderr
    assert "Environment Info" in stat.stdout


@pytest.mark.valgrind_ci
def test_database_survives_restart(start_broker, tmp_path):
    db = tmp_path / "shared-db"
    first = start_broker(options={"db_path": db, "map_size_mb": 8})
    assert first.stop() == 0
    second = start_broker(options={"db_path": db, "map_size_mb": 8})
    assert f"{DB_OPEN_LINE}{db} (map 8 MiB)." in second.log()
    assert second.stop() == 0
    assert f"{CLOSED_LINE} ({db})." in second.log()


def test_restart_reopens_database_on_same_port(broker, mqtt_client):
    port = broker.port
    broker.restart()
    assert broker.port == port
    assert DB_OPEN_LINE in broker.log(since_start=True)
    mqtt_client(broker, "after-restart")


def test_refuses_per_listener_settings(start_broker):
    b = start_broker(wait=False, head=["per_listener_settings true"])
    assert_refused(b, "mosquitto-twin: refusing to start: per_listener_settings true")
    assert not (b.db_path / "data.mdb").exists()


@pytest.mark.valgrind_ci
def test_refuses_second_plugin_instance(start_broker, tmp_path):
    second_db = tmp_path / "second-db"
    b = start_broker(wait=False, config=[PLUGIN_LINE, f"plugin_opt_db_path {second_db}"])
    assert_refused(b, "mosquitto-twin: refusing to start: the plugin is loaded more than once")
    assert not second_db.exists()


@pytest.mark.valgrind_ci
def test_refuses_unknown_option(start_broker):
    b = start_broker(wait=False, options={"no_such_option": "1"})
    assert_refused(b, "mosquitto-twin: unknown option plugin_opt_no_such_option.")


def test_refuses_malformed_option_value(start_broker):
    b = start_broker(wait=False, options={"max_depth": "deep"})
    assert_refused(b, "mosquitto-twin: plugin_opt_max_depth must be an integer")


@pytest.mark.valgrind_ci
def test_unwritable_db_path_fails_with_clear_log(start_broker, tmp_path):
    # A path below a regular file cannot be created, even by root.
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    db = blocker / "db"
    b = start_broker(wait=False, options={"db_path": db})
    log = assert_refused(b, "mosquitto-twin: ")
    lines = [ln for ln in log.splitlines() if "mosquitto-twin: " in ln and f"'{db}'" in ln]
    assert lines and "Not a directory" in lines[0], log


def test_plugin_exports_only_entry_points():
    out = subprocess.run(
        ["nm", "-D", "--defined-only", str(PLUGIN)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    symbols = {line.split()[-1] for line in out.splitlines() if line.strip()}
    assert symbols == {
        "mosquitto_plugin_version",
        "mosquitto_plugin_init",
        "mosquitto_plugin_cleanup",
    }


def exercise_every_plugin_path(port):
    """Requests, errors, notifications, catch-up, takeover and disconnects, so
    the leak check covers what the plugin allocates per message and per
    connection, not just init and cleanup."""
    dev = Device(port, "vg-dev", clean_session=False)
    dev.get()
    dev.patch({"fw": "1.0", "nested": {"a": [1, 2]}})
    dev.patch('{"bad key": 1}')
    dev.publish("$iothub/twin/GET/", "")  # no $rid: 400
    dev.next("$iothub/twin/res/400/")
    be = Backend(port, "vg-backend")
    be.update_desired("vg-dev", {"interval": 5})
    dev.notification()
    be.commands({"command": "replaceTwin", "deviceId": "vg-dev", "twin": {"tags": {"t": 1}}},
                {"command": "nope"})
    dev.notification()
    dev.close()
    be.update_desired("vg-dev", {"interval": 6})  # missed while offline
    dev = Device(port, "vg-dev", clean_session=False, subscribe=False)
    dev.notification()  # catch-up
    Device(port, "vg-dev", clean_session=False, subscribe=False).close()  # takeover
    exercise_events_and_jobs(port, be)
    be.close()


def exercise_events_and_jobs(port, be):
    """The event stream (MQTT v5 user properties), replay and a job."""
    sub = Client(port, "vg-events")
    sub.subscribe("$twin/events/#")
    for i in range(30):
        be.command(command="createDevice", deviceId=f"vg-job{i}", twin={"tags": {"j": 1}})
    sub.next("$twin/events/createDeviceIdentity/")
    assert be.command(command="getChanges", fromSequence=1, limit=5)["status"] == 200
    assert be.command(command="getChanges", opType="nope")["status"] == 400
    job = {"command": "createJob", "jobId": "vg", "type": "scheduleUpdateTwin",
           "queryCondition": "tags.j = 1", "updateTwin": {"properties": {"desired": {"a": 1}}}}
    assert be.command(**job)["status"] == 200
    assert be.command(**job)["status"] == 409
    deadline = time.monotonic() + 30
    while be.command(command="getJob", jobId="vg")["data"]["status"] != "completed":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    be.command(**{**job, "jobId": "vg2", "startTime": "2099-01-01T00:00:00Z"})
    assert be.command(command="cancelJob", jobId="vg2")["data"]["status"] == "cancelled"
    assert len(be.command(command="listJobs")["data"]["jobs"]) == 2
    sub.close()


def valgrind_broker(start_broker, tmp_path, **kwargs):
    """A broker with the plugin under valgrind's leak check (also without
    TWIN_VALGRIND), and the log of its run."""
    if shutil.which("valgrind") is None:
        pytest.skip("valgrind not installed (tools/install-deps installs it)")
    b = start_broker(valgrind=True, **kwargs)
    return b, b.valgrind_runs[-1]["log"]


def assert_no_leaks_of_ours(b, vg_log):
    """Stop the broker; no leak or invalid access of ours in its valgrind log
    (valgrind_check.py says what counts; the fixture checks it again)."""
    rc = b.stop()
    assert CLOSED_LINE in b.log()
    problems = check_log(vg_log)
    assert not problems, "\n\n".join(problems)
    assert rc == 0, b.log()
    assert any("ERROR SUMMARY" in r for r in valgrind_records(vg_log.read_text()))


@pytest.mark.valgrind_ci
@pytest.mark.skipif(SANITIZE, reason="ASan build: valgrind and ASan do not mix")
def test_plugin_has_no_leaks_under_valgrind(start_broker, mqtt_client, tmp_path):
    b, vg_log = valgrind_broker(start_broker, tmp_path)
    client = mqtt_client(b, "valgrind-client")
    client.publish("plain/topic", b"hello", qos=1).wait_for_publish(timeout=10)
    client.disconnect()
    exercise_every_plugin_path(b.port)
    assert_no_leaks_of_ours(b, vg_log)


@pytest.mark.valgrind_ci
@pytest.mark.skipif(SANITIZE, reason="ASan build: valgrind and ASan do not mix")
def test_plugin_has_no_leaks_under_valgrind_in_sas_mode(start_broker, tmp_path):
    """Authentication paths: SAS and X.509 devices, policy back ends, bad
    credentials, token expiry, rights, disabling and deleting devices."""
    certs = Certs(tmp_path / "pki")
    cert = certs.self_signed("vg-x509", "vg-x509")
    tls_port, key = free_port(), new_key()
    b, vg_log = valgrind_broker(
        start_broker,
        tmp_path,
        options={"auth": "sas", "hostname": "vg.test", "policy_iothubowner": f"all:{key}",
                 "policy_service": f"serviceConnect:{key}"},
        config=[f"listener {tls_port} 127.0.0.1", f"cafile {certs.bundle(cert[0])}",
                f"certfile {certs.server_cert}", f"keyfile {certs.server_key}",
                "require_certificate true"],
    )
    admin = Backend(b.port, "vg-admin", username="iothubowner",
                    password=sas_token("vg.test", key, policy="iothubowner"))
    r = admin.command(command="createDevice", deviceId="vg-sas")
    dev_key = r["data"]["authentication"]["symmetricKey"]["primaryKey"]
    admin.command(command="createDevice", deviceId="vg-x509", device={"authentication": {
        "type": "selfSigned", "x509Thumbprint": {"primaryThumbprint": Certs.thumbprint(cert[0])}}})
    user = device_username("vg.test", "vg-sas")
    dev = Device(b.port, "vg-sas", username=user,
                 password=sas_token("vg.test/devices/vg-sas", dev_key, ttl=3))
    dev.get()
    dev.patch({"fw": "1.0"})
    dev.publish("devices/vg-sas/messages/events/", "t")
    bad = Device(b.port, "vg-sas", username=user,
                 password=sas_token("vg.test/devices/vg-sas", new_key()), refused_ok=True)
    assert bad.connack[0] == 5
    x509 = Device(tls_port, "vg-x509", username=device_username("vg.test", "vg-x509"),
                  tls=(str(certs.ca), str(cert[0]), str(cert[1])))
    x509.get()
    service = Backend(b.port, "vg-service", username="service",
                      password=sas_token("vg.test", key, policy="service"))
    assert service.command(command="createDevice", deviceId="x")["status"] == 401
    assert dev.closed.wait(30), "token expiry did not close the connection"
    admin.command(command="updateDevice", deviceId="vg-x509", device={"status": "disabled"})
    assert x509.closed.wait(30)
    assert admin.command(command="deleteDevice", deviceId="vg-sas")["status"] == 204
    for c in (admin, service):
        c.close()
    assert_no_leaks_of_ours(b, vg_log)

@pytest.mark.valgrind_ci
@pytest.mark.skipif(SANITIZE, reason="ASan build: valgrind and ASan do not mix")
def test_plugin_has_no_leaks_under_valgrind_with_queries(start_broker, tmp_path):
    """Queries answered on the broker thread and on the worker (under
    valgrind even a few hundred twins outlast the 2 ms slice), pages,
    aggregates, errors, and a query still running when the broker stops."""
    b, vg_log = valgrind_broker(start_broker, tmp_path)
    be = Backend(b.port, "vg/queries")
    for i in range(0, 400, 100):
        be.commands(*[dict(command="createDevice", deviceId=f"q{n:03d}",
                           twin={"tags": {"k": n % 3, "s": f"v{n}"}}) for n in range(i, i + 100)])
    r = be.command(command="query", query="SELECT * FROM devices WHERE tags.k = 1", pageSize=50)
    assert r["status"] == 200 and len(r["data"]["items"]) == 50
    r = be.command(command="query", query="SELECT * FROM devices WHERE tags.k = 1", pageSize=50,
                   continuationToken=r["data"]["continuationToken"])
    assert r["status"] == 200 and r["data"]["items"]
    group, count, bad, token = be.commands(
        dict(command="query", query="SELECT tags.k, COUNT() AS n, AVG(tags.k) FROM devices GROUP BY tags.k"),
        dict(command="query", query="SELECT COUNT() AS n FROM devices WHERE STARTSWITH(tags.s, 'v1')"),
        dict(command="query", query="SELECT * FROM devices WHERE"),
        dict(command="query", query="SELECT * FROM devices", continuationToken="bm8="),
    )
    assert len(group["data"]["items"]) == 3 and count["data"]["items"] == [{"n": 111}]
    assert bad["status"] == 400 and token["status"] == 400
    # Left running at shutdown: the worker is stopped and its snapshot ended.
    be.publish("$CONTROL/twin/v1", json.dumps({"commands": [
        {"command": "query", "query": "SELECT * FROM devices"}] * 20}))
    be.close()
    assert_no_leaks_of_ours(b, vg_log)
