"""Bulk twin jobs (IoT Hub's scheduleUpdateTwin) against a real broker:
every matching twin updated once through the normal path (commit, then
notification, then event), scheduling, cancel, kill -9 and resume, rights,
and twinctl."""

import datetime
import json
import os
import subprocess
import threading
import time

import pytest

from test_auth import REGISTRY_KEY, SERVICE_KEY, hub  # noqa: F401 (the sas-mode fixture)
from test_events import changes
from twin_clients import Backend, Device

TWINCTL = os.environ.get("TWINCTL")


def create_fleet(be, n, tags, prefix="j"):
    """n devices with tags(i), 100 per request."""
    ids = [f"{prefix}{i:05d}" for i in range(n)]
    for at in range(0, n, 100):
        rs = be.commands(*[dict(command="createDevice", deviceId=d, twin={"tags": tags(at + k)}) for k, d in enumerate(ids[at : at + 100])])
        assert all(r["status"] == 200 for r in rs), rs[0]
    return ids


def job_cmd(be, **cmd):
    r = be.command(**cmd)
    assert r["status"] == 200, r
    return r["data"]


def wait_job(be, job_id, statuses=("completed", "failed", "cancelled"), timeout=60):
    deadline = time.monotonic() + timeout
    while True:
        job = job_cmd(be, command="getJob", jobId=job_id)
        if job["status"] in statuses:
            return job
        assert time.monotonic() < deadline, job
        time.sleep(0.05)


def count(be, where):
    r = be.command(command="query", query=f"SELECT COUNT() AS n FROM devices WHERE {where}")
    assert r["status"] == 200, r
    return r["data"]["items"][0]["n"]


def spec(job_id, cond, desired, **kw):
    return dict(command="createJob", jobId=job_id, type="scheduleUpdateTwin", queryCondition=cond, updateTwin={"properties": {"desired": desired}}, **kw)


def test_job_updates_every_matching_twin_once_and_notifies_connected_devices(broker):
    be = Backend(broker.port, "jobs/admin")
    create_fleet(be, 10000, lambda i: {"site": "north" if i % 2 else "south"})
    north = [Device(broker.port, f"j{i:05d}") for i in range(1, 41, 2)]
    south = [Device(broker.port, f"j{i:05d}") for i in range(0, 40, 2)]
    # Devices keep doing round trips while the job runs.
    stop, done = threading.Event(), []

    def traffic(dev):
        n = 0
        while not stop.is_set():
            dev.get() if n % 2 else dev.patch({"n": n})
            n += 1
        done.append(n)

    threads = [threading.Thread(target=traffic, args=(d,)) for d in south[:10]]
    for t in threads:
        t.start()
    job = job_cmd(be, **spec("fw", "tags.site = 'north'", {"fw": "2.0"}))
    assert job["status"] in ("queued", "running")
    job = wait_job(be, "fw")
    stop.set()
    for t in threads:
        t.join()
    stats = job["deviceJobStatistics"]
    assert job["status"] == "completed" and "endTime" in job
    assert stats["deviceCount"] == stats["succeededCount"] == 5000 and stats["failedCount"] == 0
    assert job["progress"] == {"scanned": 10000, "total": 10000}
    assert count(be, "properties.desired.fw = '2.0'") == 5000
    assert count(be, "tags.site = 'north' AND properties.desired.$version = 2") == 5000
    assert count(be, "tags.site = 'south' AND IS_DEFINED(properties.desired.fw)") == 0
    for dev in north:
        version, body = dev.notification()
        assert (version, body) == (2, {"fw": "2.0", "$version": 2})
        dev.nothing("$iothub/twin/PATCH/properties/desired/", 0.05)
    assert min(done) > 5  # the devices were served throughout
    for dev in north + south:
        dev.close()
    # Each update is an ordinary updateTwin event, made by the job.
    log = changes(be, 1, opType="updateTwin")
    by_job = [i for i in log if i["actor"].get("jobId") == "fw"]
    assert len(by_job) == 5000 and len({i["deviceId"] for i in by_job}) == 5000
    be.close()


@pytest.mark.valgrind_ci
def test_job_scheduled_in_the_future_waits_for_its_start_time(broker):
    be = Backend(broker.port, "jobs/admin")
    create_fleet(be, 20, lambda i: {"k": 1})
    at = (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    job = job_cmd(be, **spec("later", "tags.k = 1", {"x": 1}, startTime=at))
    assert job["status"] == "scheduled" and job["startTime"].startswith(at[:-1])
    time.sleep(0.5)
    assert job_cmd(be, command="getJob", jobId="later")["status"] == "scheduled"
    assert count(be, "properties.desired.x = 1") == 0
    job = wait_job(be, "later", timeout=10)
    assert job["status"] == "completed" and job["deviceJobStatistics"]["succeededCount"] == 20
    assert datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ") >= at
    be.close()


@pytest.mark.valgrind_ci
def test_job_cancelled_mid_run_stops_and_its_counts_add_up(broker):
    be = Backend(broker.port, "jobs/admin")
    create_fleet(be, 10000, lambda i: {"k": 1})
    job_cmd(be, **spec("stopme", "tags.k = 1", {"y": 7}))
    wait_job(be, "stopme", statuses=("running",))
    while job_cmd(be, command="getJob", jobId="stopme")["progress"]["scanned"] == 0:
        pass
    job = job_cmd(be, command="cancelJob", jobId="stopme")
    assert job["status"] == "cancelled" and "endTime" in job
    stats = job["deviceJobStatistics"]
    assert 0 < stats["succeededCount"] < 10000
    assert stats["deviceCount"] == stats["succeededCount"] + stats["failedCount"]
    time.sleep(0.3)
    assert count(be, "properties.desired.y = 7") == stats["succeededCount"]
    assert job_cmd(be, command="getJob", jobId="stopme") == job
    # Cancelling a finished job changes nothing.
    assert job_cmd(be, command="cancelJob", jobId="stopme") == job
    be.close()


def test_job_resumes_after_kill_9_without_applying_any_device_twice(broker):
    be = Backend(broker.port, "jobs/admin")
    create_fleet(be, 10000, lambda i: {"k": 1})
    job_cmd(be, **spec("crash", "tags.k = 1", {"z": 1}))
    wait_job(be, "crash", statuses=("running",))
    while job_cmd(be, command="getJob", jobId="crash")["progress"]["scanned"] < 1000:
        pass
    broker.kill()
    broker.start()
    be = Backend(broker.port, "jobs/admin2")
    before = job_cmd(be, command="getJob", jobId="crash")
    job = wait_job(be, "crash")
    assert before["progress"]["scanned"] < 10000 or before["status"] == "completed"
    assert job["status"] == "completed"
    assert job["deviceJobStatistics"]["succeededCount"] == 10000
    # Once each: desired $version moved from 1 to exactly 2 everywhere, and
    # the change log holds one job update per device.
    assert count(be, "properties.desired.z = 1 AND properties.desired.$version = 2") == 10000
    by_job = [i["deviceId"] for i in changes(be, 1, opType="updateTwin") if i["actor"].get("jobId") == "crash"]
    assert len(by_job) == len(set(by_job)) == 10000
    be.close()


@pytest.mark.valgrind_ci
def test_job_etag_mismatch_fails_that_device_only(broker):
    be = Backend(broker.port, "jobs/admin")
    create_fleet(be, 3, lambda i: {"k": 1})
    be.command(command="updateTwin", deviceId="j00001", twin={"tags": {"moved": True}})
    etag = be.twin("j00000")["etag"]
    job_cmd(be, command="createJob", jobId="e", type="scheduleUpdateTwin", queryCondition="tags.k = 1", updateTwin={"etag": etag, "tags": {"t": 1}})
    stats = wait_job(be, "e")["deviceJobStatistics"]
    assert (stats["deviceCount"], stats["succeededCount"], stats["failedCount"]) == (3, 2, 1)
    assert be.twin("j00001")["tags"] == {"k": 1, "moved": True}
    be.close()


@pytest.mark.valgrind_ci
@pytest.mark.parametrize(
    "bad",
    [
        dict(jobId="", queryCondition="tags.k = 1"),
        dict(jobId="x/y", queryCondition="tags.k = 1"),
        dict(jobId="ok", type="exportDevices", queryCondition="tags.k = 1"),
        dict(jobId="ok"),
        dict(jobId="ok", queryCondition="tags.k ="),
        dict(jobId="ok", queryCondition="SELECT COUNT() FROM devices"),
        dict(jobId="ok", queryCondition="tags.k = 1", startTime="tomorrow"),
        dict(jobId="ok", queryCondition="tags.k = 1", maxExecutionTimeInSeconds=0),
        dict(jobId="ok", queryCondition="tags.k = 1", updateTwin={"properties": {"reported": {"a": 1}}}),
        dict(jobId="ok", queryCondition="tags.k = 1", updateTwin={}),
        dict(jobId="ok", queryCondition="tags.k = 1", updateTwin={"tags": {"bad.key": 1}}),
    ],
)
def test_job_create_rejects_bad_specs_and_creates_nothing(broker, bad):
    be = Backend(broker.port, "jobs/admin")
    cmd = {"command": "createJob", "type": "scheduleUpdateTwin", "updateTwin": {"tags": {"a": 1}}, **bad}
    r = be.command(**cmd)
    assert (r["status"], r["error"]["code"]) == (400, 400004), r
    assert job_cmd(be, command="listJobs") == {"jobs": []}
    be.close()


@pytest.mark.valgrind_ci
def test_job_errors_name_missing_and_duplicate_jobs(broker):
    be = Backend(broker.port, "jobs/admin")
    assert be.command(command="getJob", jobId="none")["status"] == 404
    assert be.command(command="cancelJob", jobId="none")["status"] == 404
    job_cmd(be, **spec("dup", "tags.k = 1", {"a": 1}))
    r = be.command(**spec("dup", "tags.k = 1", {"a": 2}))
    assert (r["status"], r["error"]["code"]) == (409, 409001)
    assert [j["jobId"] for j in job_cmd(be, command="listJobs")["jobs"]] == ["dup"]
    be.close()


@pytest.mark.valgrind_ci
def test_job_syntax_error_gives_the_position_in_the_condition(broker):
    be = Backend(broker.port, "jobs/admin")
    r = be.command(**spec("s", "tags.site = ", {"a": 1}))
    assert r["status"] == 400 and "position 12" in r["error"]["message"], r
    be.close()


@pytest.mark.valgrind_ci
def test_device_and_registry_policy_cannot_create_jobs(hub):  # noqa: F811
    hub.create("jd")
    dev = hub.device("jd")
    dev.publish("$CONTROL/twin/v1", json.dumps({"commands": [spec("evil", "tags.k = 1", {"a": 1})]}))
    reg = hub.backend("registryReadWrite", key=REGISTRY_KEY)
    r = reg.command(**spec("evil", "tags.k = 1", {"a": 1}))
    assert r["status"] == 401
    svc = hub.backend("service", key=SERVICE_KEY)
    assert svc.command(command="listJobs")["data"] == {"jobs": []}
    job = svc.command(**spec("fine", "deviceId = 'jd'", {"a": 1}))["data"]
    assert job["status"] in ("queued", "running", "completed")
    assert wait_job(svc, "fine")["deviceJobStatistics"]["succeededCount"] == 1
    log = [i for i in changes(svc, 1, opType="updateTwin") if i["deviceId"] == "jd"]
    assert log[-1]["actor"] == {"type": "policy", "name": "service", "jobId": "fine"}
    reg.close()
    svc.close()


@pytest.mark.skipif(not TWINCTL, reason="TWINCTL not set (ctest sets it)")
def test_twinctl_twin_update_with_query_runs_a_job_and_waits(broker):
    be = Backend(broker.port, "jobs/admin")
    create_fleet(be, 300, lambda i: {"site": ["north", "south", "east"][i % 3]})
    out = subprocess.run(
        [TWINCTL, "-p", str(broker.port), "-c", "twin", "update", "--query", "tags.site = 'east'", "--desired", '{"fw":"3.1"}'],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    job = json.loads(out.stdout)
    assert job["status"] == "completed" and job["deviceJobStatistics"]["succeededCount"] == 100
    assert count(be, "properties.desired.fw = '3.1'") == 100
    out = subprocess.run([TWINCTL, "-p", str(broker.port), "-c", "job", "list"], capture_output=True, text=True, timeout=20)
    assert [j["jobId"] for j in json.loads(out.stdout)["jobs"]] == [job["jobId"]]
    out = subprocess.run(
        [TWINCTL, "-p", str(broker.port), "job", "create", "j2", "--query", "tags.site = 'north'", "--tags", '{"wave":2}', "--wait"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["deviceJobStatistics"]["succeededCount"] == 100
    out = subprocess.run([TWINCTL, "-p", str(broker.port), "job", "show", "nope"], capture_output=True, text=True, timeout=20)
    assert out.returncode == 5 and "404" in out.stderr
    be.close()


TWIN_BENCH = os.environ.get("TWIN_BENCH")


@pytest.mark.no_valgrind(reason="load test: 10,000 twins and 200 devices through twin-bench")
@pytest.mark.skipif(not TWIN_BENCH, reason="TWIN_BENCH not set (ctest sets it)")
def test_job_over_10000_twins_while_200_devices_run_get_and_patch(broker, tmp_path):
    """twin-bench's job scenario: 200 devices do GET/PATCH round trips while a
    job updates 10,000 twins; every twin is updated and every connected
    device gets exactly one notification. (Latency figures: BENCHMARKS.md.)"""
    out = tmp_path / "job.json"
    r = subprocess.run(
        [TWIN_BENCH, "-p", str(broker.port), "--scenario", "job", "-n", "10000", "-k", "200", "--duration", "1", "--json", str(out)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    row = [x for x in json.loads(out.read_text())["runs"] if x["scenario"] == "job"][0]
    job = row["job"]
    assert row["errors"] == 0 and job["status"] == "completed", row
    assert (job["succeeded"], job["failed"], job["scanned"]) == (10000, 0, 10000)
    assert job["notifications"] == {"received": 200, "expected": 200, "devices_wrong": 0}
    assert all(w["ops"] > 0 for w in job["windows"].values()), job
