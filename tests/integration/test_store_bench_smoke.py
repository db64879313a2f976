"""twin-store-bench (tools/twin_store_bench.c) at toy scale: load, open,
get and query run to completion and their --json figures exist and are sane. The
numbers themselves are not asserted: this only keeps the benchmark working
(also under ASan) for the real run at a million twins.

Environment: TWIN_STORE_BENCH, the binary (set by ctest; the module skips
without it).
"""

import json
import os
import subprocess

import pytest

BENCH = os.environ.get("TWIN_STORE_BENCH")
pytestmark = pytest.mark.skipif(not BENCH, reason="TWIN_STORE_BENCH not set (ctest sets it)")

TWINS = 2000
SAMPLES = 200


def bench(tmp_path, command, *args):
    """Run one subcommand; the figures it wrote with --json."""
    out = tmp_path / f"{command}.json"
    r = subprocess.run(
        [BENCH, command, "--db", str(tmp_path / "db"), "--json", str(out), *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, (command, r.returncode, r.stderr)
    figures = json.loads(out.read_text())
    assert figures["command"] == command
    return figures


def test_store_bench_load_open_get(tmp_path):
    load = bench(tmp_path, "load", "-n", str(TWINS), "--batch", "500")
    assert load["twins"] == TWINS
    assert load["load_ms"] > 0 and load["twins_per_s"] > 0
    sections = ("tags", "desired", "reported")
    assert all(load[f"{s}_written_bytes"] > 0 for s in sections)
    assert load["json_written_bytes"] == sum(load[f"{s}_written_bytes"] for s in sections)
    assert load["service_view_bytes"] > load["device_body_bytes"] > 0
    assert 0 < load["db_used_bytes"] <= load["db_file_bytes"]
    for ratio in ("file_to_written", "used_to_written", "file_to_view", "used_to_view"):
        assert load[f"ratio_{ratio}"] > 0
    assert load["tables"]["devices"]["entries"] == TWINS
    assert load["records"]["identity"]["count"] == TWINS
    assert load["records"]["twin:R"]["count"] == TWINS

    opened = bench(tmp_path, "open")
    assert opened["caches_dropped"] == "none"
    assert opened["open_ms"] >= opened["store_open_ms"] > 0
    assert opened["stale_connections"] == 0

    get = bench(tmp_path, "get", "-n", str(SAMPLES))
    assert get["samples"] == SAMPLES and get["devices"] == TWINS
    for run in ("cold", "warm"):
        p = get[run]
        assert 0 <= p["p50_us"] <= p["p90_us"] <= p["p99_us"] <= p["max_us"]
        assert p["mean_us"] > 0


def test_store_bench_query_counts_and_groups(tmp_path):
    bench(tmp_path, "load", "-n", str(TWINS), "--batch", "500", "--no-view")
    count = bench(tmp_path, "query", "-q", "SELECT COUNT() AS n FROM devices", "-n", "3")
    assert count["runs"] == 3 and count["rows"] == 1 and count["scanned"] == TWINS
    assert 0 < count["fastest_ms"] <= count["median_ms"]
    assert count["longest_step_ms"] > 0
    groups = bench(tmp_path, "query", "-q",
                   "SELECT tags.location.site, COUNT() FROM devices GROUP BY tags.location.site")
    assert groups["rows"] == 4 and groups["scanned"] == TWINS  # four sites in the load
    rows = bench(tmp_path, "query", "-q", "SELECT deviceId FROM devices WHERE tags.location.floor >= 0")
    assert rows["rows"] == TWINS  # every page followed


def test_store_bench_load_refuses_existing_database(tmp_path):
    bench(tmp_path, "load", "-n", "10", "--no-view")
    r = subprocess.run(
        [BENCH, "load", "--db", str(tmp_path / "db"), "-n", "10"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 1 and "fresh directory" in r.stderr
