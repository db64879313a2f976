"""Integration test harness: a real mosquitto with the plugin, on a private port.

Every test gets its own broker process, config, log and database directory under
pytest's tmp_path, listening on a free port of 127.0.0.1 (never 1883). Fixtures:

  start_broker(**kw) -> Broker   factory; every broker it made is stopped at teardown
  broker -> Broker               one running broker with the default options
  mqtt_client(target, ...)       factory of connected paho clients, disconnected at teardown

Environment (set by ctest, see tests/CMakeLists.txt):

  TWIN_PLUGIN    path of mosquitto_twin.so (default: <repo>/build/plugin/mosquitto_twin.so)
  MOSQUITTO      the broker (default: /usr/sbin/mosquitto)
  TWIN_SANITIZE  "ON" when the plugin was built with ASan/UBSan: the broker, which is not
                 instrumented, then runs with both runtimes preloaded (LD_PRELOAD), and a
                 sanitizer report in a broker's log fails the test that started it. Leak
                 checking is off there (the broker is not ours); valgrind covers leaks.
  TWIN_VALGRIND  "1" runs every broker a test starts (unless the test passes its own
                 wrapper) under valgrind's memcheck, one log per broker run
                 (<tmp_path>/brokerN/valgrind.R.log), with longer timeouts. When the
                 test's brokers have stopped, a leak (definitely, indirectly or possibly
                 lost) or an invalid access (read, write, free, uninitialised use) with
                 a frame in the plugin or the store fails the test (valgrind_check.py
                 says what counts). A run killed with SIGKILL has no leak check; its
                 invalid accesses still count. Tests marked no_valgrind are skipped in
                 this mode; valgrind_ci marks the subset ctest runs as
                 integration.valgrind (tests/CMakeLists.txt). Not with TWIN_SANITIZE.
  TWIN_VALGRIND_ARGS  more valgrind options for TWIN_VALGRIND, split at spaces (e.g.
                 "--show-leak-kinds=all" to read the still-reachable blocks, which
                 never fail a test, or "--track-origins=yes").

Markers (registered below): no_valgrind(reason) and valgrind_ci.

Running by hand, from the repository root:

  TWIN_PLUGIN=build/plugin/mosquitto_twin.so /usr/bin/python3 -m pytest -q tests/integration
  TWIN_VALGRIND=1 TWIN_PLUGIN=... /usr/bin/python3 -m pytest -q -m valgrind_ci tests/integration
"""

import functools
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from valgrind_check import check_log, summary, valgrind_command

REPO = Path(__file__).resolve().parents[2]
PLUGIN = Path(
    os.environ.get("TWIN_PLUGIN", REPO / "build" / "plugin" / "mosquitto_twin.so")
).resolve()
MOSQUITTO = os.environ.get("MOSQUITTO", "/usr/sbin/mosquitto")
SANITIZE = os.environ.get("TWIN_SANITIZE", "OFF").upper() in ("ON", "1", "TRUE", "YES")
VALGRIND = os.environ.get("TWIN_VALGRIND", "0").upper() in ("ON", "1", "TRUE", "YES")
# Timeouts of brokers under valgrind (start, log lines, exit) are this much longer.
VALGRIND_SLOWDOWN = 6
VALGRIND_EXTRA_ARGS = os.environ.get("TWIN_VALGRIND_ARGS", "").split()

DB_OPEN_LINE = "mosquitto-twin: database open at "
# Logged after the broker installs its signal handlers, just before its main
# loop: a SIGTERM sent earlier is lost (2.0.11 sets run = 1 after this line).
RUNNING_LINE = re.compile(r"mosquitto version \S+ running")
CLOSED_LINE = "mosquitto-twin: database closed cleanly"
SANITIZER_REPORTS = re.compile(r"ERROR: (Address|Leak)Sanitizer|: runtime error: ")


def free_port():
    """A TCP port of 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# Totals over the session, printed at the end of a TWIN_VALGRIND run.
VALGRIND_STATS = {"runs": 0, "killed": 0, "no_cleanup": 0, "with_errors": 0, "findings": 0}


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "no_valgrind(reason): cannot work with the broker under valgrind "
        "(timing, throughput, huge loads); skipped when TWIN_VALGRIND=1",
    )
    config.addinivalue_line(
        "markers",
        "valgrind_ci: the subset ctest runs under valgrind (integration.valgrind)",
    )
    if VALGRIND and SANITIZE:
        raise pytest.UsageError("TWIN_VALGRIND and TWIN_SANITIZE do not mix")
    if VALGRIND and shutil.which("valgrind") is None:
        raise pytest.UsageError("TWIN_VALGRIND=1 but valgrind is not installed")


def pytest_collection_modifyitems(config, items):
    if not VALGRIND:
        return
    for item in items:
        mark = item.get_closest_marker("no_valgrind")
        if mark is not None:
            reason = mark.kwargs.get("reason") or (mark.args[0] if mark.args else "")
            item.add_marker(pytest.mark.skip(reason=f"not under valgrind: {reason}"))


def pytest_terminal_summary(terminalreporter):
    if VALGRIND:
        s = VALGRIND_STATS
        terminalreporter.write_line(
            f"valgrind: {s['runs']} broker runs checked; leak check skipped for "
            f"{s['killed']} killed with SIGKILL and {s['no_cleanup']} exited without the "
            f"plugin's cleanup; {s['with_errors']} with a nonzero ERROR SUMMARY (any code, "
            f"leaks included); {s['findings']} findings in our code"
        )


def port_accepts(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


@functools.lru_cache(maxsize=None)
def sanitizer_env():
    """Environment that loads the ASan and UBSan runtimes into the broker.

    The runtimes are the ones the plugin itself links (ldd), so a plugin built
    by another compiler still gets matching ones; gcc's are the fallback.
    ASan must come first in LD_PRELOAD.
    """
    linked = subprocess.run(["ldd", str(PLUGIN)], capture_output=True, text=True).stdout
    preload = []
    for lib in ("libasan", "libubsan"):
        m = re.search(rf"^\s*{lib}\.so\S* => (\S+)", linked, re.MULTILINE)
        if m:
            preload.append(m.group(1))
        else:
            out = subprocess.run(
                ["gcc", f"-print-file-name={lib}.so"], capture_output=True, text=True
            ).stdout.strip()
            if not os.path.isabs(out):
                pytest.fail(f"TWIN_SANITIZE is ON but {lib}.so was not found")
            preload.append(out)
    return {
        "LD_PRELOAD": " ".join(preload),
        "ASAN_OPTIONS": "detect_leaks=0:halt_on_error=1",
        "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1",
    }


class Broker:
    """One mosquitto process with the plugin, its config, log and database.

    options: plugin_opt_* values without the prefix; db_path defaults to
        <workdir>/db and auth to open (most tests are about the protocol, not
        credentials). A value of None leaves that option out of the config.
    head: config lines placed first (e.g. "per_listener_settings true").
    config: config lines placed last (e.g. a second "plugin" line).
    wrapper: command prefix, e.g. ["valgrind", ...].
    valgrind: run under memcheck with one log per run (valgrind_runs, checked
        by valgrind_problems()); default: TWIN_VALGRIND and no wrapper.
    preexec_fn: run in the child before exec (e.g. to set resource limits).
    template: a function of the Broker returning the whole config text
        instead of the generated one (it must listen on broker.port).
    ready_timeout: seconds start() waits for the database line, the broker's
        "running" line and the port to accept connections. Under valgrind or
        another wrapper, this and the timeouts of wait_log(), wait_exit() and
        stop() are VALGRIND_SLOWDOWN times longer.

    start() may be called again after stop(): same port, config and database,
    and the log keeps growing (log(since_start=True) gives the current run).
    """

    def __init__(
        self,
        workdir,
        *,
        options=None,
        head=(),
        config=(),
        wrapper=(),
        env=None,
        preexec_fn=None,
        ready_timeout=10.0,
        template=None,
        valgrind=None,
    ):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.options = {"db_path": self.workdir / "db", "auth": "open", **(options or {})}
        db = self.options["db_path"]
        self.db_path = Path(db) if db is not None else None
        self.head = list(head)
        self.config = list(config)
        self.wrapper = list(wrapper)
        self.env = dict(env or {})
        self.preexec_fn = preexec_fn
        self.template = template
        self.valgrind = (VALGRIND and not wrapper) if valgrind is None else valgrind
        # Under any wrapper (valgrind) everything takes longer.
        self.slowdown = VALGRIND_SLOWDOWN if (self.valgrind or self.wrapper) else 1
        self.ready_timeout = ready_timeout * self.slowdown
        # Under valgrind: one {"log": Path, "process": Popen, "killed": bool} per run.
        self.valgrind_runs = []
        self.conf_path = self.workdir / "mosquitto.conf"
        self.log_path = self.workdir / "broker.log"
        self.port = free_port()
        self.process = None
        self._log_offset = 0

    def config_text(self):
        if self.template is not None:
            return self.template(self)
        lines = [
            "# generated by tests/integration/conftest.py",
            *self.head,
            # Mosquitto started as root drops to this user before plugin init.
            f"user {pwd.getpwuid(os.geteuid()).pw_name}",
            f"listener {self.port} 127.0.0.1",
            # IoT Hub's dialect stops at QoS 1: SUBSCRIBE QoS 2 is granted 1,
            # PUBLISH QoS 2 closes the connection (PROTOCOL.md §2.2).
            "max_qos 1",
            "allow_anonymous true",
            "set_tcp_nodelay true",
            "log_dest stderr",
            "log_type all",
            f"plugin {PLUGIN}",
        ]
        lines += [f"plugin_opt_{k} {v}" for k, v in self.options.items() if v is not None]
        return "\n".join(lines + self.config) + "\n"

    def start(self, wait=True):
        """Start the broker; with wait, return once it is ready or fail with its log."""
        assert not self.running, "broker already running"
        for attempt in range(3):
            self._spawn()
            if not wait:
                return self
            if self._wait_ready(self.ready_timeout):
                return self
            # Lost the race for the port to another process: take a new one.
            if attempt < 2 and "Address already in use" in self.log(since_start=True):
                self.port = free_port()
                continue
            break
        log = self.log(since_start=True)
        self.kill()
        pytest.fail(f"broker did not become ready on port {self.port}:\n{log}")

    def _spawn(self):
        self.conf_path.write_text(self.config_text())
        env = dict(os.environ)
        if SANITIZE:
            env.update(sanitizer_env())
        env.update(self.env)
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        wrapper = self.wrapper
        if self.valgrind:
            vg_log = self.workdir / f"valgrind.{len(self.valgrind_runs)}.log"
            wrapper = [*valgrind_command(vg_log, VALGRIND_EXTRA_ARGS), *wrapper]
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [*wrapper, MOSQUITTO, "-c", str(self.conf_path)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                env=env,
                preexec_fn=self.preexec_fn,
            )
        if self.valgrind:
            self.valgrind_runs.append(
                {"log": vg_log, "process": self.process, "killed": False,
                 "broker_log_offset": self._log_offset}
            )

    def _wait_ready(self, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            log = self.log(since_start=True)
            if DB_OPEN_LINE in log and RUNNING_LINE.search(log) and port_accepts(self.port):
                return True
            time.sleep(0.05)
        return False

    @property
    def running(self):
        return self.process is not None and self.process.poll() is None

    def wait_log(self, text, timeout=5.0):
        """Wait until text appears in the log of the current run."""
        timeout *= self.slowdown
        deadline = time.monotonic() + timeout
        while text not in self.log(since_start=True):
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} not in the broker log within {timeout} s")
            time.sleep(0.05)

    def log(self, since_start=False):
        """The broker's log (stdout and stderr), whole or of the current run."""
        if not self.log_path.exists():
            return ""
        data = self.log_path.read_bytes()
        if since_start:
            data = data[self._log_offset :]
        return data.decode(errors="replace")

    def wait_exit(self, timeout=10.0):
        """Wait for the broker to exit on its own; its exit code, or fail with the log."""
        timeout *= self.slowdown
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"broker still running after {timeout} s:\n{self.log(since_start=True)}")

    def stop(self, timeout=10.0):
        """SIGTERM, wait, return the exit code (also when it had already exited).

        SIGTERM is repeated every second: one sent in the instant between the
        broker's "running" line and its main loop is lost.
        """
        if self.process is None:
            return None
        timeout *= self.slowdown
        deadline = time.monotonic() + timeout
        while self.process.poll() is None and time.monotonic() < deadline:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(min(1.0, max(0.0, deadline - time.monotonic())))
            except subprocess.TimeoutExpired:
                pass
        if self.process.poll() is None:
            self.kill()
            pytest.fail(f"broker ignored SIGTERM for {timeout} s:\n{self.log(since_start=True)}")
        return self.process.returncode

    def restart(self):
        self.stop()
        return self.start()

    def kill(self):
        if self.running:
            if self.valgrind_runs and self.valgrind_runs[-1]["process"] is self.process:
                self.valgrind_runs[-1]["killed"] = True
            self.process.kill()
            self.process.wait()

    def valgrind_problems(self):
        """Findings of ours in the valgrind logs of the runs that have ended.

        Only invalid accesses count for a run that died of SIGKILL (kill(),
        or from outside: valgrind had no leak check) and for a run that opened
        the database and never closed it without being killed: mosquitto
        2.0.11 exits without calling any plugin's cleanup when a later plugin
        or listener fails to start (test_refuses_second_plugin_instance), so
        the first instance's memory is abandoned by the broker, not leaked by
        the plugin. A plugin that refuses to start before opening the
        database must have freed what it allocated: its leaks count.
        """
        whole = self.log_path.read_bytes() if self.log_path.exists() else b""
        problems = []
        for i, run in enumerate(self.valgrind_runs):
            rc = run["process"].poll()
            if rc is None:
                continue
            killed = run["killed"] or rc == -signal.SIGKILL
            later = [r["broker_log_offset"] for r in self.valgrind_runs[i + 1 :]]
            broker_log = whole[run["broker_log_offset"] : later[0] if later else None].decode(
                errors="replace"
            )
            no_cleanup = DB_OPEN_LINE in broker_log and CLOSED_LINE not in broker_log
            VALGRIND_STATS["runs"] += 1
            VALGRIND_STATS["killed"] += killed
            VALGRIND_STATS["no_cleanup"] += no_cleanup and not killed
            text = run["log"].read_text(errors="replace") if run["log"].exists() else ""
            errors = summary(text)
            if errors and errors[0]:
                VALGRIND_STATS["with_errors"] += 1
            found = check_log(run["log"], leaks=not (killed or no_cleanup))
            VALGRIND_STATS["findings"] += len(found)
            problems += [f"{self.workdir.name} run {i} ({run['log']}):\n{p}" for p in found]
        return problems

    def sanitizer_reports(self):
        """Log lines where ASan or UBSan reported an error in this broker."""
        return [ln for ln in self.log().splitlines() if SANITIZER_REPORTS.search(ln)]


@pytest.fixture(scope="session")
def plugin_path():
    if not PLUGIN.is_file():
        pytest.fail(f"plugin not built: {PLUGIN} (set TWIN_PLUGIN or build into build/)")
    return PLUGIN


@pytest.fixture
def start_broker(tmp_path, plugin_path):
    """Factory: start_broker(**Broker kwargs, wait=True) -> started Broker."""
    brokers = []

    def start(wait=True, **kwargs):
        b = Broker(tmp_path / f"broker{len(brokers)}", **kwargs)
        brokers.append(b)
        return b.start(wait=wait)

    yield start
    failures = []
    for b in brokers:
        try:
            b.stop()
        except pytest.fail.Exception as e:
            failures.append(str(e))
        finally:
            b.kill()
    reports = [f"{b.workdir.name}: {ln}" for b in brokers for ln in b.sanitizer_reports()]
    if reports:
        failures.append("sanitizer reports in broker logs:\n" + "\n".join(reports))
    # Also after a failed stop: what valgrind saw until then counts.
    vg = [p for b in brokers for p in b.valgrind_problems()]
    if vg:
        failures.append("valgrind findings in our code:\n\n" + "\n\n".join(vg))
    if failures:
        pytest.fail("\n\n".join(failures), pytrace=False)


@pytest.fixture
def broker(start_broker):
    return start_broker()


@pytest.fixture
def mqtt_client():
    """Factory: mqtt_client(broker_or_port, client_id="", **kw) -> connected paho Client.

    The client's network loop runs in its own thread (loop_start). kw: protocol
    (mqtt.MQTTv311 or mqtt.MQTTv5), clean_session (v3.1.1 only), username,
    password, keepalive, timeout (seconds to wait for CONNACK).
    """
    clients = []

    def connect(
        target,
        client_id="",
        *,
        protocol=mqtt.MQTTv311,
        clean_session=True,
        username=None,
        password=None,
        keepalive=30,
        timeout=5.0,
    ):
        port = getattr(target, "port", target)
        if protocol == mqtt.MQTTv5:
            client = mqtt.Client(client_id=client_id, protocol=protocol)
        else:
            client = mqtt.Client(
                client_id=client_id, clean_session=clean_session, protocol=protocol
            )
        if username is not None:
            client.username_pw_set(username, password)
        connack = {}
        connected = threading.Event()

        def on_connect(_client, _userdata, _flags, rc, _properties=None):
            connack["rc"] = rc
            connected.set()

        client.on_connect = on_connect
        clients.append(client)
        client.connect("127.0.0.1", port, keepalive=keepalive)
        client.loop_start()
        if not connected.wait(timeout):
            pytest.fail(f"no CONNACK from 127.0.0.1:{port} within {timeout} s")
        rc = connack["rc"]
        if rc != 0:
            why = mqtt.connack_string(rc) if isinstance(rc, int) else str(rc)
            pytest.fail(f"connection refused by 127.0.0.1:{port}: {why}")
        return client

    yield connect
    for client in clients:
        client.disconnect()
        client.loop_stop()
