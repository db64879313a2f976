"""Fleet queries through the control API's query command and twinctl
(PROTOCOL.md §8): the documented example queries and their result shapes,
paging with writes between pages, read-your-writes, errors, and that a
long query leaves devices served."""

import json
import os
import subprocess
import threading
import time

import pytest

from twin_clients import Backend, Device

TWINCTL = os.environ.get("TWINCTL")


@pytest.fixture
def be(broker):
    b = Backend(broker.port, "query/admin")  # no deviceId: open mode registers none
    yield b
    b.close()


def create(be, device_id, tags=None, desired=None):
    twin = {}
    if tags is not None:
        twin["tags"] = tags
    if desired is not None:
        twin["properties"] = {"desired": desired}
    r = be.command(command="createDevice", deviceId=device_id, twin=twin)
    assert r["status"] == 200, r


def create_many(be, ids, make_twin):
    """Create devices 100 per request (the request limit)."""
    for i in range(0, len(ids), 100):
        cmds = [dict(command="createDevice", deviceId=d, twin=make_twin(d)) for d in ids[i:i + 100]]
        for r in be.commands(*cmds):
            assert r["status"] == 200, r


def query(be, text, **kw):
    r = be.command(command="query", query=text, **kw)
    assert r["status"] == 200, r
    return r["data"]


def query_all(be, text, page_size=None):
    items, token, pages = [], None, 0
    while True:
        kw = {"pageSize": page_size} if page_size else {}
        if token:
            kw["continuationToken"] = token
        data = query(be, text, **kw)
        items += data["items"]
        pages += 1
        token = data["continuationToken"]
        if token is None:
            return items, pages


def query_error(be, text, **kw):
    r = be.command(command="query", query=text, **kw)
    assert (r["status"], r["error"]["code"]) == (400, 400004), r
    return r["error"]["message"]


@pytest.fixture
def fleet(be, broker):
    """Five devices with tags and desired; three of them report."""
    regions = ["US", "US", "EU", "US", "EU"]
    for i, region in enumerate(regions):
        create(be, f"dev{i}", tags={"location": {"region": region}, "group": {"name": "A\"B" if i == 2 else "C"}},
               desired={"interval": 10 * i})
    reports = {
        "dev0": {"telemetryConfig": {"sendFrequencyInSecs": 30, "status": "Success"}, "connectivity": "wired",
                 "fw": "1.2", "temp": 13},
        "dev1": {"telemetryConfig": {"sendFrequencyInSecs": 60, "status": "Pending"}, "connectivity": "wifi",
                 "fw": "2.1", "temp": 30},
        "dev3": {"telemetryConfig": {"sendFrequencyInSecs": 90, "status": "Success"}, "connectivity": "cellular",
                 "temp": 21.5},
    }
    for device_id, reported in reports.items():
        d = Device(broker.port, device_id)
        topic, _ = d.patch(reported)
        assert topic.startswith("$iothub/twin/res/204/"), topic
        d.close()
    # DISCONNECT reaches the plugin a loop iteration later: wait, so that
    # twins read now and later agree on connectionState.
    deadline = time.monotonic() + 30
    for device_id in reports:
        while be.twin(device_id)["connectionState"] != "Disconnected":
            assert time.monotonic() < deadline, device_id
            time.sleep(0.02)
    return reports


def ids(items):
    return [i["deviceId"] for i in items]


def test_query_select_star_gives_the_service_view_of_each_twin(be, fleet):
    items = query(be, "SELECT * FROM devices")["items"]
    assert ids(items) == [f"dev{i}" for i in range(5)]
    for item in items:
        assert item == be.twin(item["deviceId"])


def test_query_where_tag_equals(be, fleet):
    assert ids(query(be, "SELECT * FROM devices WHERE tags.location.region = 'US'")["items"]) == ["dev0", "dev1", "dev3"]


def test_query_and_with_a_reported_number(be, fleet):
    q = ("SELECT * FROM devices WHERE tags.location.region = 'US' AND "
         "properties.reported.telemetryConfig.sendFrequencyInSecs >= 60")
    assert ids(query(be, q)["items"]) == ["dev1", "dev3"]


@pytest.mark.valgrind_ci
def test_query_in_list(be, fleet):
    q = "SELECT * FROM devices WHERE properties.reported.connectivity IN ['wired', 'wifi']"
    assert ids(query(be, q)["items"]) == ["dev0", "dev1"]
    q = "SELECT deviceId FROM devices WHERE properties.reported.connectivity NIN ['wired', 'wifi']"
    assert query(be, q)["items"] == [{"deviceId": "dev3"}]  # undefined is neither


@pytest.mark.valgrind_ci
def test_query_projection_with_alias_omits_undefined(be, fleet):
    q = "SELECT deviceId, properties.reported.fw AS fw FROM devices WHERE IS_DEFINED(properties.reported.fw)"
    assert query(be, q)["items"] == [{"deviceId": "dev0", "fw": "1.2"}, {"deviceId": "dev1", "fw": "2.1"}]
    q = "SELECT deviceId, properties.reported.fw FROM devices WHERE deviceId IN ['dev0', 'dev2']"
    assert query(be, q)["items"] == [{"deviceId": "dev0", "fw": "1.2"}, {"deviceId": "dev2"}]


def test_query_count_without_group_by_is_one_row(be, fleet):
    assert query(be, "SELECT COUNT() AS total FROM devices")["items"] == [{"total": 5}]
    assert query(be, "SELECT COUNT() AS total FROM devices WHERE status = 'nope'")["items"] == [{"total": 0}]


@pytest.mark.valgrind_ci
def test_query_group_by_counts_each_value(be, fleet):
    q = ("SELECT properties.reported.telemetryConfig.status AS status, COUNT() AS numberOfDevices "
         "FROM devices GROUP BY properties.reported.telemetryConfig.status")
    items = query(be, q)["items"]
    assert sorted(items, key=lambda i: i.get("status", "")) == [
        {"numberOfDevices": 2},  # the twins without a status
        {"numberOfDevices": 1, "status": "Pending"},
        {"numberOfDevices": 2, "status": "Success"},
    ]


def test_query_top_with_canonical_system_names(be, fleet):
    q = "SELECT TOP 2 DeviceId, LastActivityTime FROM devices WHERE STARTSWITH(deviceId, 'dev')"
    items = query(be, q)["items"]
    assert [sorted(i) for i in items] == [["deviceId", "lastActivityTime"]] * 2
    assert ids(items) == ["dev0", "dev1"]


def test_query_bracketed_name_and_escaped_string(be, fleet):
    q = 'SELECT deviceId FROM devices WHERE tags.[[group]].name = "A\\"B"'
    assert query(be, q)["items"] == [{"deviceId": "dev2"}]


@pytest.mark.valgrind_ci
def test_query_aggregates_use_numbers_only(be, fleet):
    q = ("SELECT AVG(properties.reported.temp) AS avgT, MAX(properties.reported.temp) AS maxT, "
         "MIN(properties.reported.temp) AS minT, SUM(properties.reported.temp) AS sumT, "
         "AVG(properties.reported.fw) AS avgFw FROM devices WHERE status = 'enabled'")
    (row,) = query(be, q)["items"]
    assert row == {"avgT": (13 + 30 + 21.5) / 3, "maxT": 30, "minT": 13, "sumT": 64.5}


def test_query_not_is_defined_or_less_than(be, fleet):
    q = "SELECT deviceId FROM devices WHERE NOT IS_DEFINED(properties.reported.fw) OR properties.reported.fw < '2.0'"
    assert ids(query(be, q)["items"]) == ["dev0", "dev2", "dev3", "dev4"]


@pytest.mark.valgrind_ci
def test_query_metadata_and_version_paths(be, fleet):
    q = ("SELECT deviceId, properties.desired.$version AS v, properties.reported.$metadata.fw AS m "
         "FROM devices WHERE deviceId = 'dev0'")
    (row,) = query(be, q)["items"]
    twin = be.twin("dev0")
    assert row["v"] == twin["properties"]["desired"]["$version"]
    assert row["m"] == twin["properties"]["reported"]["$metadata"]["fw"]


def test_query_devices_modules_has_no_rows(be, fleet):
    assert query(be, "SELECT * FROM devices.modules")["items"] == []


@pytest.mark.valgrind_ci
def test_query_syntax_error_names_the_position(be):
    message = query_error(be, "SELECT * FROM devices WHERE")
    assert "27" in message
    query_error(be, "SELECT * FROM devices.jobs")
    query_error(be, "SELECT * FROM devices ORDER BY deviceId")


@pytest.mark.valgrind_ci
def test_query_bad_arguments_are_400(be):
    for cmd in ({"command": "query"}, {"command": "query", "query": 5},
                {"command": "query", "query": "SELECT * FROM devices", "pageSize": 0},
                {"command": "query", "query": "SELECT * FROM devices", "pageSize": "x"},
                {"command": "query", "query": "SELECT * FROM devices", "continuationToken": 7}):
        (r,) = be.commands(cmd)
        assert (r["status"], r["error"]["code"]) == (400, 400004), r


@pytest.mark.valgrind_ci
def test_query_continuation_token_of_another_query_is_400(be, fleet):
    token = query(be, "SELECT * FROM devices", pageSize=2)["continuationToken"]
    assert token
    query_error(be, "SELECT deviceId FROM devices", continuationToken=token)
    query_error(be, "SELECT * FROM devices", continuationToken="bm90IGEgdG9rZW4=")


def test_query_page_size_is_clamped_to_1000(be):
    create_many(be, [f"p{i:04d}" for i in range(1100)], lambda d: {})
    data = query(be, "SELECT deviceId FROM devices", pageSize=5000)
    assert len(data["items"]) == 1000 and data["continuationToken"]
    data = query(be, "SELECT deviceId FROM devices", continuationToken=data["continuationToken"], pageSize=5000)
    assert len(data["items"]) == 100 and data["continuationToken"] is None


def test_query_default_page_size_is_100(be):
    create_many(be, [f"p{i:03d}" for i in range(150)], lambda d: {})
    data = query(be, "SELECT deviceId FROM devices")
    assert len(data["items"]) == 100 and data["continuationToken"]


@pytest.mark.valgrind_ci
def test_query_paging_with_writes_between_pages_has_no_duplicates_or_gaps(be):
    ids_all = [f"pg{i:05d}" for i in range(2500)]
    create_many(be, ids_all, lambda d: {"tags": {"n": int(d[2:])}})
    seen, token, page = [], None, 0
    while True:
        kw = {"pageSize": 300}
        if token:
            kw["continuationToken"] = token
        data = query(be, "SELECT deviceId, tags.n FROM devices WHERE tags.n >= 0", **kw)
        seen += ids(data["items"])
        token = data["continuationToken"]
        if token is None:
            break
        page += 1
        # Between pages: change twins before and after the cursor, add
        # twins on both sides, delete one not yet seen and one already seen.
        be.commands(
            dict(command="updateTwin", deviceId=ids_all[page * 100], twin={"tags": {"x": page}}),
            dict(command="updateTwin", deviceId=ids_all[-1 - page], twin={"tags": {"x": page}}),
            dict(command="createDevice", deviceId=f"pg{page:05d}a", twin={"tags": {"n": -1}}),
        )
    assert len(seen) == len(set(seen)), "duplicates"
    assert set(ids_all) <= set(seen), "gaps"
    assert seen == sorted(seen)


def test_query_reads_its_own_writes_at_once(be, fleet):
    for n in range(20):
        r = be.command(command="updateTwin", deviceId="dev4", twin={"tags": {"counter": n}})
        assert r["status"] == 200
        assert query(be, "SELECT tags.counter FROM devices WHERE deviceId = 'dev4'")["items"] == [{"counter": n}]
    # A write and a query in one request: the query runs after the write commits.
    update, result = be.commands(
        dict(command="updateTwin", deviceId="dev4", twin={"tags": {"counter": "same request"}}),
        dict(command="query", query="SELECT tags.counter FROM devices WHERE deviceId = 'dev4'"),
    )
    assert update["status"] == 200
    assert result["data"]["items"] == [{"counter": "same request"}]


def test_query_needs_no_more_than_a_syntax_check_for_errors_in_one_request(be, fleet):
    good, bad = be.commands(
        dict(command="query", query="SELECT COUNT() AS n FROM devices"),
        dict(command="query", query="SELECT COUNT( FROM devices"),
    )
    assert good["data"]["items"] == [{"n": 5}]
    assert (bad["status"], bad["error"]["code"]) == (400, 400004)


@pytest.mark.no_valgrind(reason="20,000 twins and a GET latency bound (median < 50 ms)")
def test_query_over_many_twins_leaves_devices_served(be, broker):
    """A GROUP BY over 20,000 twins runs while a device keeps doing GETs:
    every GET is answered, none waits anywhere near the query's length."""
    create_many(be, [f"big{i:05d}" for i in range(20000)], lambda d: {"tags": {"k": int(d[3:]) % 7}})
    dev = Device(broker.port, "big00000")
    waits, stop = [], threading.Event()

    def get_loop():
        while not stop.is_set():
            t = time.monotonic()
            dev.get()
            waits.append(time.monotonic() - t)

    t = threading.Thread(target=get_loop)
    t.start()
    try:
        # Keep the fleet busy with queries until the device has made enough
        # GETs to judge: how many fit into one query depends on the machine.
        runs = 0
        while runs < 3 or (len(waits) < 30 and runs < 500):
            items = query(be, "SELECT tags.k AS k, COUNT() AS n FROM devices GROUP BY tags.k")["items"]
            assert sum(i["n"] for i in items) == 20000 and len(items) == 7
            runs += 1
    finally:
        stop.set()
        t.join()
        dev.close()
    assert len(waits) >= 30, (runs, len(waits))
    waits.sort()
    # Not a timing assertion on the query: a GET that waited behind a whole
    # query on the broker thread would take as long as the query.
    assert waits[len(waits) // 2] < 0.05, waits[-5:]


@pytest.mark.valgrind_ci
@pytest.mark.skipif(not TWINCTL, reason="TWINCTL not set (ctest sets it)")
def test_twinctl_query_follows_pages_and_prints_one_array(be, broker):
    create_many(be, [f"t{i:03d}" for i in range(300)], lambda d: {"tags": {"site": ["north", "south", "east"][int(d[1:]) % 3]}})

    def twinctl(*args):
        r = subprocess.run([TWINCTL, "-h", "127.0.0.1", "-p", str(broker.port), *args],
                           env={**os.environ, "TWIN_CONNECTION_STRING": ""}, stdin=subprocess.DEVNULL,
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)

    items = twinctl("query", "--page-size", "50", "SELECT deviceId FROM devices WHERE tags.site = 'north'")
    assert ids(items) == [f"t{i:03d}" for i in range(0, 300, 3)]
    groups = twinctl("query", "SELECT tags.site AS site, COUNT() AS n FROM devices GROUP BY tags.site")
    assert groups == [{"site": "east", "n": 100}, {"site": "north", "n": 100}, {"site": "south", "n": 100}]
    assert len(twinctl("query", "--top", "7", "--page-size", "5", "SELECT * FROM devices")) == 7
    r = subprocess.run([TWINCTL, "-h", "127.0.0.1", "-p", str(broker.port), "query", "SELECT * FROM"],
                       env={**os.environ, "TWIN_CONNECTION_STRING": ""}, stdin=subprocess.DEVNULL,
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 5 and "400" in r.stderr
