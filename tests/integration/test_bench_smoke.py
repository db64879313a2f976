"""twin-bench, the load generator (tools/twin_bench*.c), end to end at a tiny
scale: every scenario runs against a real broker with the plugin, in open and
sas mode, and its report is complete and consistent. The numbers themselves
are not asserted; failures must be counted and fail the run.

Environment: TWIN_BENCH, the twin-bench binary (set by ctest; the module
skips without it).
"""

import json
import os
import subprocess

import pytest

from conftest import free_port
from iothub_auth import new_key

TWIN_BENCH = os.environ.get("TWIN_BENCH")
pytestmark = pytest.mark.skipif(not TWIN_BENCH, reason="TWIN_BENCH not set (ctest sets it)")

HOST = "hub.example.test"
CLOSED_LOOP = ("echo", "get", "patch")
FLEET = ("desired-fanout", "connect-storm", "job")
TINY = ("--warmup", "0", "--duration", "1")


def bench(port, tmp_path, *args, ok=True, timeout=50):
    """Run twin-bench against 127.0.0.1:port; (JSON report, stdout, stderr)."""
    out = tmp_path / "bench.json"
    r = subprocess.run(
        [TWIN_BENCH, "-h", "127.0.0.1", "-p", str(port), *args, "--json", str(out)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if ok:
        assert r.returncode == 0, f"exit {r.returncode}\n{r.stdout}\n{r.stderr}"
    else:
        assert r.returncode == 1, f"exit {r.returncode}\n{r.stdout}\n{r.stderr}"
    return json.loads(out.read_text()), r.stdout, r.stderr


def assert_sane(row):
    """A row of a successful run: operations, no errors, ordered percentiles."""
    assert row["ops"] > 0, row
    assert row["errors"] == 0, row
    assert row["seconds"] > 0 and row["ops_per_s"] > 0, row
    assert 0 <= row["p50_us"] <= row["p99_us"] <= row["max_us"], row


def by_key(runs):
    keyed = {}
    for r in runs:
        key = (r["scenario"], r["k"], r["qos"])
        assert key not in keyed, f"{key} reported twice"
        keyed[key] = r
    return keyed


def test_every_scenario_reports_a_row_per_k_and_qos_in_open_mode(start_broker, tmp_path):
    broker = start_broker()
    doc, table, _ = bench(
        broker.port, tmp_path, "--scenario", "all", "-k", "1,4", "--qos", "0,1", *TINY,
        "-n", "50",
    )
    assert doc["host"] == "127.0.0.1" and doc["port"] == broker.port
    assert doc["started"] and doc["mode"] == "open" and doc["echo_bytes"] == 200
    runs = by_key(doc["runs"])
    for k in (1, 4):
        for qos in (0, 1):
            for scenario in CLOSED_LOOP:
                row = runs.pop((scenario, k, qos))
                assert_sane(row)
                if scenario == "echo":
                    assert row["ratio_to_echo"] is None
                else:
                    assert row["ratio_to_echo"] > 0, row
    # The fleet scenarios and job run once, batched by the largest k.
    assert sorted(runs) == [("connect-storm", 4, 1), ("desired-fanout", 4, 1), ("job", 4, 1)]
    job = runs.pop(("job", 4, 1))
    assert_sane(job)
    assert job["n"] == 50 and job["job"]["succeeded"] == 50, job
    assert job["job"]["notifications"] == {"received": 4, "expected": 4, "devices_wrong": 0}
    assert all(w["ops"] > 0 for w in job["job"]["windows"].values()), job
    for row in runs.values():
        assert_sane(row)
        assert row["n"] == 50 and row["ops"] == 50 and row["total_s"] > 0, row
        assert row["ratio_to_echo"] > 0, row
    for scenario in CLOSED_LOOP + FLEET:
        assert any(line.startswith(scenario + " ") for line in table.splitlines()), table


def test_echo_bytes_sets_the_echo_payload(start_broker, tmp_path):
    broker = start_broker()
    doc, _, _ = bench(
        broker.port, tmp_path, "--scenario", "echo", "-k", "2", "--qos", "1", *TINY,
        "--echo-bytes", "915",
    )
    assert doc["echo_bytes"] == 915
    assert_sane(by_key(doc["runs"])[("echo", 2, 1)])
    for wrong in ("15", "4097", "x"):
        r = subprocess.run([TWIN_BENCH, "--echo-bytes", wrong], capture_output=True, text=True)
        assert r.returncode == 2 and "--echo-bytes" in r.stderr, r.stderr


def test_sas_mode_creates_the_devices_and_connects_them_with_tokens(start_broker, tmp_path):
    key = new_key()
    broker = start_broker(
        options={"auth": "sas", "hostname": HOST, "policy_iothubowner": f"all:{key}"}
    )
    owner = f"HostName={HOST};SharedAccessKeyName=iothubowner;SharedAccessKey={key}"
    doc, _, _ = bench(
        broker.port, tmp_path, "--connection-string", owner, "--scenario",
        "get,connect-storm", "-k", "2", "--qos", "1", *TINY, "-n", "20",
    )
    assert doc["mode"] == "sas"
    runs = by_key(doc["runs"])
    assert sorted(runs) == [("connect-storm", 2, 1), ("get", 2, 1)]
    for row in runs.values():
        assert_sane(row)
        assert row["ratio_to_echo"] is None  # no echo in this run
    assert runs[("connect-storm", 2, 1)]["n"] == 20
    assert "refused client" not in broker.log()
    # A second run finds the devices (409) and reads their keys instead.
    doc, _, _ = bench(
        broker.port, tmp_path, "--connection-string", owner, "--scenario", "get", "-k", "2",
        "--qos", "0", *TINY,
    )
    assert_sane(doc["runs"][0])


def test_failures_are_counted_and_fail_the_run(start_broker, tmp_path):
    # Nothing listens: every connection is refused.
    doc, _, err = bench(
        free_port(), tmp_path, "--scenario", "get,connect-storm", "-k", "2", *TINY,
        "-n", "5", "--timeout", "2", ok=False,
    )
    assert doc["runs"] and all(row["errors"] > 0 for row in doc["runs"]), doc
    assert "Connection refused" in err
    # sas mode without an ACL for bench/echo: the echo subscription is refused.
    key = new_key()
    broker = start_broker(
        options={"auth": "sas", "hostname": HOST, "policy_iothubowner": f"all:{key}"}
    )
    owner = f"HostName={HOST};SharedAccessKeyName=iothubowner;SharedAccessKey={key}"
    doc, _, err = bench(
        broker.port, tmp_path, "--connection-string", owner, "--scenario", "echo", "-k", "1",
        "--qos", "1", *TINY, "--timeout", "5", ok=False,
    )
    assert doc["runs"][0]["errors"] == 1 and doc["runs"][0]["ops"] == 0, doc
    assert "SUBACK 0x80" in err
