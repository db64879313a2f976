"""twin-bench's soak scenario (tools/twin_bench_soak.c) at a tiny scale: a few
hundred devices, their twins seeded, then mixed traffic for a few seconds
against a real broker with the plugin. The run must end cleanly: every twin
seeded once (a reported PATCH and a desired update each, kept out of the
traffic's figures), every request answered with the status it expects, the
induced malformed PATCHes with 400 and nothing else, desired updates
delivered as notifications, and the broker's RSS sampled.
Memory growth itself is not asserted here; a few seconds say nothing about
it (BENCHMARKS.md has the 10-minute run).

Environment: TWIN_BENCH, the twin-bench binary (set by ctest; the module
skips without it). Under TWIN_SANITIZE the broker is slower, so the rate is
lower and the timeout longer.
"""

import json
import os
import subprocess

import pytest

from conftest import SANITIZE

TWIN_BENCH = os.environ.get("TWIN_BENCH")
pytestmark = pytest.mark.skipif(not TWIN_BENCH, reason="TWIN_BENCH not set (ctest sets it)")

DEVICES = 300
RATE = 100 if SANITIZE else 200


def soak(broker, tmp_path, *args):
    """Run the soak against broker; (exit status, JSON report or None, stdout, stderr)."""
    out = tmp_path / "soak.json"
    r = subprocess.run(
        [
            TWIN_BENCH, "-h", "127.0.0.1", "-p", str(broker.port), "--scenario", "soak",
            "--broker-pid", str(broker.process.pid), "--json", str(out), *args,
        ],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=180,
    )
    doc = json.loads(out.read_text()) if out.exists() else None
    return r.returncode, doc, r.stdout, r.stderr


@pytest.mark.valgrind_ci
def test_soak_runs_clean_and_reports_the_broker_rss(start_broker, tmp_path):
    broker = start_broker()
    rc, doc, table, err = soak(
        broker, tmp_path, "-n", str(DEVICES), "--warmup", "2", "--duration", "8",
        "--rate", str(RATE), "--timeout", "60" if SANITIZE else "20",
    )
    assert rc == 0, f"exit {rc}\n{table}\n{err}"
    assert doc["mode"] == "open" and doc["duration_s"] == 8
    (row,) = doc["runs"]
    assert row["scenario"] == "soak" and row["n"] == DEVICES
    assert row["errors"] == 0, row
    s = row["soak"]
    assert s["unexpected"] == {
        "total": 0, "wrong_status": 0, "missing_replies": 0, "control_errors": 0,
        "missing_control_responses": 0, "missing_notifications": 0,
    }
    # The seeding: one reported PATCH and one desired update per device, all
    # devices up, so one notification each.
    seed = s["seeding"]
    assert seed["seconds"] > 0, seed
    assert seed["patches"] == seed["patches_answered_204"] == DEVICES, seed
    assert seed["desired"] == {
        "updates": DEVICES, "updates_ok": DEVICES,
        "notifications": DEVICES, "notifications_expected": DEVICES,
    }, seed
    req = s["requests"]
    assert req["get_qos0"] > 0 and req["get_qos1"] > 0, req
    assert req["patch_qos0"] > 0 and req["patch_qos1"] > 0, req
    # The induced errors got their 400s, and nothing else did.
    assert req["induced"] > 0 and s["induced_answered_400"] == req["induced"], s
    assert s["replies"].get("400") == req["induced"], s
    assert set(s["replies"]) <= {"200", "204", "400"}, s
    # Every request of the traffic was answered (plus the GET after each
    # reconnect), and the seeding's replies are not among them.
    assert sum(s["replies"].values()) == req["total"], s
    assert s["reconnects"] > 0 and req["get_after_reconnect"] >= s["reconnects"], s
    # Desired updates went through the control API and reached the devices.
    d = s["desired"]
    assert d["updates"] > 0 and d["updates_ok"] == d["updates"], d
    assert d["notifications"] > 0 and d["notifications"] >= d["notifications_expected"] > 0, d
    # The RSS figures are there and consistent.
    rss = s["rss"]
    assert rss is not None and rss["pid"] == broker.process.pid, s
    for key in ("connected_kb", "seeded_kb", "after_warmup_kb", "end_kb", "min_kb", "max_kb"):
        assert rss[key] > 0, rss
    assert rss["min_kb"] <= rss["after_warmup_kb"] <= rss["max_kb"], rss
    assert rss["min_kb"] <= rss["end_kb"] <= rss["max_kb"], rss
    assert isinstance(rss["growth_pct"], (int, float)), rss
    assert len(rss["samples"]) >= 3, rss
    assert "broker RSS     after warm-up" in table and "growth" in table, table
    assert f"{DEVICES} reported PATCHes ({DEVICES} answered 204)" in table, table
    assert "unexpected     0:" in table, table


def test_soak_runs_alone():
    r = subprocess.run(
        [TWIN_BENCH, "--scenario", "soak,get"], capture_output=True, text=True, timeout=10
    )
    assert r.returncode == 2, r
    assert "soak alone" in r.stderr, r.stderr


def test_soak_refuses_a_broker_pid_without_memory_figures(tmp_path):
    # pid 1 exists but a pid this high does not: no /proc/PID/status.
    r = subprocess.run(
        [TWIN_BENCH, "-p", "1", "--scenario", "soak", "-n", "1", "--broker-pid", "2147483646"],
        capture_output=True,
        text=True,
        timeout=10,
    )
    assert r.returncode == 1, r
    assert "no memory figures" in r.stderr, r.stderr
