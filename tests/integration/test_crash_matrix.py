"""tools/crash-matrix in its short form (a few kill -9 cycles under mixed
load, every invariant checked after each restart), and proof that its checks
can fail: the same verification run against doctored expectations and
doctored observations must report each broken invariant.

The long form (50 cycles) is run by hand: tools/crash-matrix --cycles 50.
Environment: CRASH_MATRIX_SEED replays a seed (a random one is printed).
"""

import copy
import importlib.machinery
import importlib.util
import os
import random
import re
import subprocess
import sys

import pytest

from conftest import MOSQUITTO, PLUGIN, REPO, SANITIZE, sanitizer_env

SCRIPT = REPO / "tools" / "crash-matrix"
# Kills timed in milliseconds, and the short form runs its own broker.
pytestmark = pytest.mark.no_valgrind(reason="kill -9 at moments timed for a broker at full speed")


def load_script():
    """The script as a module (it has no .py suffix), leaving no bytecode in tools/."""
    loader = importlib.machinery.SourceFileLoader("crash_matrix", str(SCRIPT))
    spec = importlib.util.spec_from_loader("crash_matrix", loader)
    module = importlib.util.module_from_spec(spec)
    was, sys.dont_write_bytecode = sys.dont_write_bytecode, True
    try:
        loader.exec_module(module)
    finally:
        sys.dont_write_bytecode = was
    return module


cm = load_script()


def test_short_crash_matrix_holds_every_invariant(tmp_path):
    seed = int(os.environ.get("CRASH_MATRIX_SEED", random.randrange(1 << 32)))
    print(f"crash-matrix seed {seed}")
    cmd = [sys.executable, str(SCRIPT), "--cycles", "6", "--seed", str(seed), "--plugin", str(PLUGIN),
           "--mosquitto", MOSQUITTO, "--dir", str(tmp_path / "cm"), "--fleet", "200"]
    if SANITIZE:
        cmd += [f"--broker-env={k}={v}" for k, v in sanitizer_env().items()]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600 if SANITIZE else 240)
    out = r.stdout + r.stderr
    print(out)
    assert r.returncode == 0, f"seed {seed}:\n{out}"
    assert len(re.findall(r"^cycle \d+/6 .*: ok$", r.stdout, re.M)) == 6, out
    m = re.search(r"^crash-matrix: PASS cycles 6 seed (\d+) acked-writes-checked (\d+) log-entries-checked (\d+)", r.stdout, re.M)
    assert m and int(m.group(1)) == seed, out
    # The crashes hit a busy broker: there was something to check.
    assert int(m.group(2)) > 50 and int(m.group(3)) > 1000, out


def test_checks_fail_when_an_invariant_is_broken(start_broker):
    """One real cycle (load, kill -9, restart) whose checks pass; then each
    doctoring of what was acknowledged or observed must be reported."""
    broker = start_broker(options={"changes_max_count": 1000000})
    ex = cm.Expect(["cmt-dev-0", "cmt-dev-1"], [f"cmt-fleet-{i}" for i in range(20)], ["cmt-churn-0"])
    cm.setup(broker, ex)
    rng = random.Random(7)
    cm.run_load(broker, ex, 1, rng, 1.0, True)  # killed just after a job was acknowledged
    broker.start()
    obs = cm.observe(broker.port, ex)
    failures, checks = cm.verify(ex, obs)
    assert failures == [] and ex.anomalies == [], failures + ex.anomalies
    assert checks["writes"] > 10 and ex.jobs_acked, (checks, ex.jobs_acked)

    def broken(doctor):
        """verify() over a copy of the expectation and observation, doctored."""
        bad, o = cm.Expect([], [], []), copy.deepcopy(obs)
        bad.__dict__.update(copy.deepcopy({k: v for k, v in ex.__dict__.items() if k not in ("lock", "job_started")}))
        doctor(bad, o)
        return cm.verify(bad, o)[0]

    dev = "cmt-dev-0"

    # An acknowledged write the database does not have.
    def lost_write(x, o):
        c = x.rep[dev]["sent"] + 1
        x.rep[dev]["sent"] = x.rep[dev]["acked"] = c
        x.acked_rep.append((dev, c, x.rep[dev]["ver"] + 1))

    assert any("acked reported c=" in f for f in broken(lost_write))
    assert any("reported c=" in f and "acked" in f for f in broken(lost_write))

    # A change log with a gap.
    assert any("not consecutive" in f for f in broken(lambda x, o: o["log"].pop(len(o["log"]) // 2)))

    # A job that applied its update twice to one device.
    def twice(x, o):
        e = next(e for e in o["log"] if e["actor"].get("jobId"))
        o["log"].append({**e, "sequenceNumber": len(o["log"]) + 1})

    assert any("twice: ['" in f for f in broken(twice))

    # Versions lower than after the previous restart.
    def went_back(x, o):
        t = o["twins"][dev]
        x.floor[dev] = (t["version"] + 1, t["properties"]["reported"]["$version"], 1)

    assert any("went back" in f for f in broken(went_back))

    # An acknowledged job that is gone.
    assert any("acknowledged but" in f for f in broken(lambda x, o: o["jobs"].clear()))

    # A twin out of step with the log.
    def stale_twin(x, o):
        o["twins"][dev]["properties"]["desired"]["$version"] -= 1

    assert any("the log ends at" in f for f in broken(stale_twin))

    # An entry seen after an earlier restart that changed since.
    def rewritten(x, o):
        x.log_digests = [cm.digest(e) for e in o["log"]]
        o["log"][3] = {**o["log"][3], "deviceId": "someone-else"}

    assert any("changed or vanished" in f for f in broken(rewritten))
