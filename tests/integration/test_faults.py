"""A real full disk under the broker: the database on a small tmpfs.

Devices and back ends get 500 replies while the disk is full, a failed write
leaves no trace, reads go on, and when space returns the plugin writes again
without a restart; the database is then whole (mdb_stat) and holds exactly
what was acknowledged. tests/unit/test_faults.c covers every single
allocation and LMDB failure of the store; this is the same promise end to
end, with the kernel saying ENOSPC.
"""

import errno
import json
import os
import shutil
import subprocess

import pytest

from twin_clients import Backend, Device

BLOB = "z" * 4000  # 7 of these per patch: several new LMDB pages per commit


@pytest.fixture
def small_disk(tmp_path):
    """A 4 MB tmpfs mounted at tmp_path/disk (needs root, as in CI)."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", str(mnt)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs (needs root): {r.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill(path):
    """Write zeros into path until the file system is full."""
    chunk = b"\0" * 65536
    with open(path, "wb", buffering=0) as f:
        while True:
            try:
                f.write(chunk)
            except OSError as e:
                assert e.errno == errno.ENOSPC, e
                break
        while True:  # the last partial chunk's worth
            try:
                f.write(b"\0" * 512)
            except OSError:
                return


def mdb_stat_clean(db):
    if shutil.which("mdb_stat") is None:
        pytest.skip("mdb_stat not installed (lmdb-utils)")
    r = subprocess.run(["mdb_stat", "-a", "-e", str(db)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return r.stdout


def big_patch(i):
    return {f"k{j}": f"{i}:{BLOB}" for j in range(7)}


@pytest.mark.valgrind_ci
def test_disk_full_answers_500_and_recovers_without_restart(start_broker, small_disk):
    db = small_disk / "twins"
    broker = start_broker(options={"db_path": str(db), "map_size_mb": 64})
    dev = Device(broker.port, "disk1")
    be = Backend(broker.port, "disk/admin")
    topic, body = dev.patch({"before": 1})
    assert topic.startswith("$iothub/twin/res/204/"), body
    acked = dev.get()

    filler = small_disk / "filler"
    fill(filler)

    # LMDB first reuses pages freed by earlier commits; big patches soon need
    # new ones, which the full disk refuses.
    refused = 0
    for i in range(40):
        topic, body = dev.patch(big_patch(i))
        if topic.startswith("$iothub/twin/res/204/"):
            acked = dev.get()
            continue
        assert topic.startswith("$iothub/twin/res/500/"), (topic, body)
        assert json.loads(body)["errorCode"] == 500001
        refused += 1
        # A refused write leaves no trace, and reads go on.
        assert dev.get() == acked
        if refused == 3:
            break
    assert refused == 3, "the full disk never refused a write"

    # The back end is told too, and its write is not applied either.
    r = be.command(command="updateTwin", deviceId="disk1",
                   twin={"properties": {"desired": {f"d{j}": BLOB for j in range(7)}}})
    assert r["status"] == 500 and r["error"]["code"] == 500001, r
    assert "d0" not in be.twin("disk1")["properties"]["desired"]
    assert "commit failed" in broker.log() or "No space left" in broker.log(), broker.log()

    # Space returns: the same broker process writes again.
    os.unlink(filler)
    topic, body = dev.patch(big_patch(99))
    assert topic.startswith("$iothub/twin/res/204/"), body
    version = int(topic.rsplit("$version=", 1)[1])
    assert version == acked["reported"]["$version"] + 1  # refused writes took no version
    r = be.command(command="updateTwin", deviceId="disk1",
                   twin={"properties": {"desired": {"d": 1}}})
    assert r["status"] == 200, r
    assert broker.running

    # What was acknowledged is what is stored, also after a restart.
    dev.close()
    be.close()
    broker.stop()
    mdb_stat_clean(db)
    broker.start()
    dev = Device(broker.port, "disk1")
    twin = dev.get()
    assert twin["reported"]["k0"] == f"99:{BLOB}"
    assert twin["reported"]["$version"] == version
    assert twin["desired"]["d"] == 1
