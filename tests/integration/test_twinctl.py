"""twinctl, the control API's command line client (DESIGN.md §6): every
command end to end against a real broker in open mode, the service
connection string in sas mode, TLS, and the exit codes (0 ok, 2 usage,
3 connection or timeout, 4 not authorised, 5 other API error).

Environment: TWINCTL, the twinctl binary (set by ctest; the module skips
without it).
"""

import json
import os
import pwd
import subprocess
import time

import pytest

from conftest import free_port, port_accepts
from iothub_auth import Certs, device_username, new_key, sas_token
from twin_clients import Device

TWINCTL = os.environ.get("TWINCTL")
pytestmark = pytest.mark.skipif(not TWINCTL, reason="TWINCTL not set (ctest sets it)")

HOST = "hub.example.test"
OWNER_KEY, READER_KEY = new_key(), new_key()
OWNER = f"HostName={HOST};SharedAccessKeyName=iothubowner;SharedAccessKey={OWNER_KEY}"
READER = f"HostName={HOST};SharedAccessKeyName=reader;SharedAccessKey={READER_KEY}"

SUBCOMMANDS = [
    [],
    ["device"],
    ["twin"],
    *(["device", s] for s in ("create", "show", "update", "delete", "list")),
    *(["twin", s] for s in ("show", "update", "replace")),
]


def twinctl(*args, port=None, env=None, timeout=30, **kw):
    """Run twinctl (against 127.0.0.1:port when given); the CompletedProcess.
    TWIN_CONNECTION_STRING is cleared unless env sets it."""
    target = ["-h", "127.0.0.1", "-p", str(port)] if port is not None else []
    return subprocess.run(
        [TWINCTL, *target, *args],
        env={**os.environ, "TWIN_CONNECTION_STRING": "", **(env or {})},
        stdin=subprocess.DEVNULL,
        text=True,
        timeout=timeout,
        **(kw or {"capture_output": True}),
    )


def ok(r):
    """The JSON twinctl printed, after checking it succeeded quietly."""
    assert r.returncode == 0, (r.returncode, r.stderr)
    assert r.stderr == ""
    assert r.stdout.count("\n") == 1, r.stdout  # compact: stdout is a pipe
    return json.loads(r.stdout)


def failed(r, code, *words):
    """Check exit code and ONE stderr line containing words; returns the line."""
    assert r.returncode == code, (r.returncode, r.stdout, r.stderr)
    assert r.stdout == ""
    line = r.stderr
    assert line.startswith("twinctl: ") and line.count("\n") == 1, line
    for w in words:
        assert w in line, line
    return line


def notification_for(dev, version):
    """The desired notification of that $version; earlier ones (the catch-up
    a device gets when it subscribes) are skipped."""
    while True:
        got, patch = dev.notification()
        if got >= version:
            assert got == version, (got, patch)
            return patch


# ---- open mode ----


def test_device_create_prints_the_identity_with_generated_keys(broker):
    ident = ok(twinctl("-c", "device", "create", "dev1", port=broker.port))
    assert ident["deviceId"] == "dev1"
    assert ident["status"] == "enabled"
    keys = ident["authentication"]["symmetricKey"]
    assert keys["primaryKey"] and keys["secondaryKey"]


def test_device_create_with_tags_and_desired_sets_the_initial_twin(broker):
    ok(twinctl("device", "create", "dev1", "--tags", '{"site":"north"}',
               "--desired", '{"interval":30}', port=broker.port))
    twin = ok(twinctl("twin", "show", "dev1", port=broker.port))
    assert twin["tags"] == {"site": "north"}
    assert twin["properties"]["desired"]["interval"] == 30


def test_device_create_with_status_and_thumbprint(broker):
    thumb = "AB" * 20
    ident = ok(twinctl("device", "create", "dev1", "--status", "disabled",
                       "--primary-thumbprint", thumb, port=broker.port))
    assert ident["status"] == "disabled"
    assert ident["authentication"]["type"] == "selfSigned"
    assert ident["authentication"]["x509Thumbprint"]["primaryThumbprint"] == thumb


def test_device_connection_string_of_an_x509_device_names_the_broker_host(broker):
    # Without a service connection string the hub host is the -h host.
    ident = ok(twinctl("device", "create", "dev1", "--auth-type", "certificateAuthority",
                       "--show-connection-string", port=broker.port))
    assert ident["authentication"]["type"] == "certificateAuthority"
    assert ident["connectionString"] == "HostName=127.0.0.1;DeviceId=dev1;x509=true"


def test_device_create_of_an_existing_device_exits_5_with_409(broker):
    ok(twinctl("device", "create", "dev1", port=broker.port))
    failed(twinctl("device", "create", "dev1", port=broker.port), 5, "409 409001")


def test_device_show_prints_the_identity(broker):
    created = ok(twinctl("device", "create", "dev1", port=broker.port))
    shown = ok(twinctl("device", "show", "dev1", port=broker.port))
    assert shown["authentication"] == created["authentication"]
    assert shown["etag"] == created["etag"]


def test_device_list_pages_and_follows_continuation_tokens(broker):
    for d in ("dev1", "dev2"):
        ok(twinctl("device", "create", d, port=broker.port))
    # twinctl's own client id (twinctl/<pid>) is no deviceId: it never
    # registers itself in open mode, so the registry holds exactly these two.
    page = ok(twinctl("device", "list", port=broker.port))
    assert [d["deviceId"] for d in page["devices"]] == ["dev1", "dev2"]
    assert page["continuationToken"] is None

    first = ok(twinctl("device", "list", "--max-count", "1", port=broker.port))
    assert [d["deviceId"] for d in first["devices"]] == ["dev1"]
    assert isinstance(first["continuationToken"], str)
    second = ok(twinctl("device", "list", "--max-count", "1", "--continuation-token",
                        first["continuationToken"], port=broker.port))
    assert [d["deviceId"] for d in second["devices"]] == ["dev2"]


def test_device_list_all_prints_every_page_as_one_array(broker):
    for d in ("dev1", "dev2", "dev3"):
        ok(twinctl("device", "create", d, port=broker.port))
    every = ok(twinctl("device", "list", "--all", "--max-count", "2", port=broker.port))
    assert [d["deviceId"] for d in every] == ["dev1", "dev2", "dev3"]


def test_twin_update_desired_notifies_the_connected_device(broker):
    ok(twinctl("device", "create", "dev1", port=broker.port))
    dev = Device(broker.port, "dev1")
    try:
        twin = ok(twinctl("twin", "update", "dev1", "--desired", '{"fan":"on"}',
                          port=broker.port))
        assert twin["properties"]["desired"]["fan"] == "on"
        patch = notification_for(dev, twin["properties"]["desired"]["$version"])
        assert patch["fan"] == "on"
    finally:
        dev.close()


def test_twin_update_tags_merges_them(broker):
    ok(twinctl("device", "create", "dev1", "--tags", '{"a":1,"b":2}', port=broker.port))
    twin = ok(twinctl("twin", "update", "dev1", "--tags", '{"b":null,"c":3}',
                      port=broker.port))
    assert twin["tags"] == {"a": 1, "c": 3}


def test_twin_replace_removes_a_desired_key_and_the_device_receives_null(broker):
    ok(twinctl("device", "create", "dev1", "--desired", '{"keep":1,"drop":2}',
               "--tags", '{"t":1}', port=broker.port))
    dev = Device(broker.port, "dev1")
    try:
        twin = ok(twinctl("twin", "replace", "dev1", "--desired", '{"keep":1}',
                          port=broker.port))
        desired = twin["properties"]["desired"]
        assert desired["keep"] == 1 and "drop" not in desired
        assert twin.get("tags", {}) == {}  # replace: a section not given becomes {}
        patch = notification_for(dev, desired["$version"])
        assert patch["keep"] == 1 and patch["drop"] is None
    finally:
        dev.close()


def test_twin_update_with_a_stale_etag_exits_5_with_412(broker):
    ok(twinctl("device", "create", "dev1", port=broker.port))
    etag = ok(twinctl("twin", "show", "dev1", port=broker.port))["etag"]
    ok(twinctl("twin", "update", "dev1", "--desired", '{"a":1}', "--etag", etag,
               port=broker.port))
    failed(twinctl("twin", "update", "dev1", "--desired", '{"a":2}', "--etag", etag,
                   port=broker.port), 5, "412")
    ok(twinctl("twin", "update", "dev1", "--desired", '{"a":3}', "--etag", "*",
               port=broker.port))


def test_device_delete_exits_0_silently_and_show_then_exits_5_with_404(broker):
    ok(twinctl("device", "create", "dev1", port=broker.port))
    r = twinctl("device", "delete", "dev1", port=broker.port)
    assert (r.returncode, r.stdout, r.stderr) == (0, "", "")
    failed(twinctl("device", "show", "dev1", port=broker.port), 5, "404 404001")


def test_device_delete_with_a_stale_etag_exits_5_with_412(broker):
    ok(twinctl("device", "create", "dev1", port=broker.port))
    failed(twinctl("device", "delete", "dev1", "--etag", "bm9wZQ==", port=broker.port),
           5, "412")


def test_device_update_status_and_one_key_keeps_the_other_key(broker):
    old = ok(twinctl("device", "create", "dev1", port=broker.port))["authentication"]
    key = new_key()
    ident = ok(twinctl("device", "update", "dev1", "--status", "disabled",
                       "--status-reason", "maintenance", "--primary-key", key,
                       port=broker.port))
    assert ident["status"] == "disabled" and ident["statusReason"] == "maintenance"
    sym = ident["authentication"]["symmetricKey"]
    assert sym["primaryKey"] == key
    assert sym["secondaryKey"] == old["symmetricKey"]["secondaryKey"]


def test_device_update_regenerate_keys_replaces_both(broker):
    old = ok(twinctl("device", "create", "dev1", port=broker.port))
    new = ok(twinctl("device", "update", "dev1", "--regenerate-keys", "--etag", old["etag"],
                     port=broker.port))
    for k in ("primaryKey", "secondaryKey"):
        assert new["authentication"]["symmetricKey"][k] not in (
            "", old["authentication"]["symmetricKey"][k])


def test_output_is_indented_on_a_terminal_and_compact_with_c(broker):
    ok(twinctl("device", "create", "dev1", port=broker.port))

    def on_tty(*args):
        master, slave = os.openpty()
        try:
            r = twinctl(*args, port=broker.port, stdout=slave, stderr=subprocess.PIPE)
        finally:
            os.close(slave)
        out = b""
        try:
            while chunk := os.read(master, 65536):
                out += chunk
        except OSError:  # EIO once the terminal's last writer is gone
            pass
        os.close(master)
        assert r.returncode == 0, r.stderr
        return out.decode()

    pretty = on_tty("twin", "show", "dev1")
    assert len(pretty.splitlines()) > 5
    assert json.loads(pretty)["deviceId"] == "dev1"
    compact = on_tty("-c", "twin", "show", "dev1")
    assert len(compact.splitlines()) == 1


def test_connection_options_may_follow_the_command(broker):
    r = subprocess.run(
        [TWINCTL, "device", "create", "dev1", "-h", "127.0.0.1", "-p", str(broker.port), "-c"],
        env={**os.environ, "TWIN_CONNECTION_STRING": ""}, capture_output=True, text=True,
        timeout=30,
    )
    assert ok(r)["deviceId"] == "dev1"


# ---- sas mode ----


@pytest.fixture
def hub(start_broker):
    return start_broker(
        options={
            "auth": "sas",
            "hostname": HOST,
            "policy_iothubowner": f"all:{OWNER_KEY}",
            "policy_reader": f"registryRead:{READER_KEY}",
        }
    )


def test_sas_owner_connection_string_works(hub):
    ident = ok(twinctl("--connection-string", OWNER, "device", "create", "dev1", port=hub.port))
    assert ident["deviceId"] == "dev1"
    assert ok(twinctl("--connection-string", OWNER, "twin", "show", "dev1",
                      port=hub.port))["deviceId"] == "dev1"


def test_sas_connection_string_from_the_environment_works(hub):
    env = {"TWIN_CONNECTION_STRING": OWNER}
    ok(twinctl("device", "create", "dev1", port=hub.port, env=env))
    assert ok(twinctl("device", "show", "dev1", port=hub.port, env=env))["deviceId"] == "dev1"


def test_sas_policy_without_registry_write_exits_4_with_401(hub):
    ok(twinctl("--connection-string", OWNER, "device", "create", "dev1", port=hub.port))
    failed(twinctl("--connection-string", READER, "device", "create", "dev2", port=hub.port),
           4, "401 401002")
    assert ok(twinctl("--connection-string", READER, "device", "show", "dev1",
                      port=hub.port))["deviceId"] == "dev1"


def test_sas_wrong_key_is_refused_at_connack_with_exit_4(hub):
    wrong = f"HostName={HOST};SharedAccessKeyName=iothubowner;SharedAccessKey={new_key()}"
    failed(twinctl("--connection-string", wrong, "device", "show", "dev1", port=hub.port),
           4, "refused the connection")


def test_sas_anonymous_client_is_refused_the_response_topic_with_exit_4(hub):
    # allow_anonymous admits it, but in sas mode only policies may use
    # $CONTROL/twin/: the SUBACK says not authorised.
    failed(twinctl("device", "show", "dev1", port=hub.port), 4, "refused the subscription")


def test_sas_show_connection_string_lets_the_device_connect(hub):
    ident = ok(twinctl("--connection-string", OWNER, "device", "create", "dev1",
                       "--show-connection-string", port=hub.port))
    parts = dict(p.split("=", 1) for p in ident["connectionString"].split(";"))
    assert parts["HostName"] == HOST  # the service string's, not -h
    assert parts["DeviceId"] == "dev1"
    key = parts["SharedAccessKey"]
    assert key == ident["authentication"]["symmetricKey"]["primaryKey"]
    dev = Device(hub.port, "dev1", username=device_username(HOST, "dev1"),
                 password=sas_token(f"{HOST}/devices/dev1", key))
    try:
        assert dev.get()["desired"]["$version"] == 1
    finally:
        dev.close()


def test_sas_device_connection_string_is_a_usage_error(hub):
    device_cs = f"HostName={HOST};DeviceId=dev1;SharedAccessKey={new_key()}"
    failed(twinctl("--connection-string", device_cs, "device", "show", "dev1", port=hub.port),
           2, "service connection string")


# ---- TLS ----


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    c = Certs(tmp_path_factory.mktemp("pki"))
    c.client = c.issue("backend", "backend")
    c.stranger = c.self_signed("stranger", "stranger")
    return c


def tls_broker(start_broker, certs, require_certificate=False):
    tls_port = free_port()
    broker = start_broker(config=[
        f"listener {tls_port} 127.0.0.1",
        f"cafile {certs.ca}",
        f"certfile {certs.server_cert}",
        f"keyfile {certs.server_key}",
        f"require_certificate {'true' if require_certificate else 'false'}",
    ])
    return broker, tls_port


def test_tls_with_the_broker_ca_works(start_broker, certs):
    _, tls_port = tls_broker(start_broker, certs)
    ident = ok(twinctl("--cafile", str(certs.ca), "device", "create", "dev1", port=tls_port))
    assert ident["deviceId"] == "dev1"


def test_tls_with_an_untrusted_ca_exits_3(start_broker, certs):
    _, tls_port = tls_broker(start_broker, certs)
    failed(twinctl("--cafile", str(certs.stranger[0]), "device", "show", "dev1",
                   port=tls_port), 3, "certificate verify failed")


def test_tls_client_certificate_is_sent(start_broker, certs):
    _, tls_port = tls_broker(start_broker, certs, require_certificate=True)
    ca = ["--cafile", str(certs.ca)]
    cert = ["--cert", str(certs.client[0]), "--key", str(certs.client[1])]
    ok(twinctl(*ca, *cert, "device", "create", "dev1", port=tls_port))
    failed(twinctl(*ca, "device", "show", "dev1", port=tls_port), 3)


# ---- usage and connection errors ----


@pytest.mark.parametrize("args", [
    ["bogus"],
    ["device"],
    ["device", "frob", "dev1"],
    ["twin", "show"],
    ["device", "show", "dev1", "extra"],
    ["device", "show", "dev1", "--no-such-option"],
    ["twin", "update", "dev1"],
    ["device", "update", "dev1"],
    ["device", "list", "--max-count", "0"],
    ["--port", "http", "device", "list"],
    ["device", "create", "dev1", "--primary-key", "x", "--primary-thumbprint", "AB" * 20],
    ["--cert", "client.crt", "device", "list"],
    ["--connection-string", "HostName=h", "device", "list"],
    ["device", "create", "dev1", "--auth-type", "x509"],
    ["device", "update", "dev1", "--regenerate-keys", "--auth-type", "selfSigned"],
], ids=lambda a: " ".join(a))
def test_usage_errors_exit_2(args):
    failed(twinctl(*args), 2)


@pytest.mark.parametrize("args", [
    ["twin", "update", "dev1", "--desired", '{"a":'],
    ["twin", "update", "dev1", "--tags", "[1,2]"],
    ["twin", "replace", "dev1", "--desired", "null"],
    ["device", "create", "dev1", "--desired", "{'single':'quotes'}"],
], ids=lambda a: " ".join(a))
def test_malformed_json_arguments_exit_2_without_connecting(args):
    # Port 9 (discard) is never a broker: a 2 means nothing was sent.
    failed(twinctl(*args, port=9), 2, "JSON")


@pytest.mark.parametrize("words", SUBCOMMANDS, ids=lambda w: " ".join(w) or "twinctl")
def test_help_exits_0_on_stdout(words):
    r = twinctl(*words, "--help")
    assert (r.returncode, r.stderr) == (0, "")
    assert r.stdout.startswith("usage: twinctl")


def test_connection_refused_exits_3():
    failed(twinctl("device", "show", "dev1", port=free_port()), 3, "Connection refused")


@pytest.fixture
def plain_broker(tmp_path):
    """A mosquitto without the plugin: $CONTROL requests get a PUBACK and
    never a response."""
    port = free_port()
    conf = tmp_path / "plain.conf"
    conf.write_text(f"user {pwd.getpwuid(os.geteuid()).pw_name}\n"
                    f"listener {port} 127.0.0.1\nallow_anonymous true\n")
    proc = subprocess.Popen([os.environ.get("MOSQUITTO", "/usr/sbin/mosquitto"), "-c",
                             str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not port_accepts(port):
            assert proc.poll() is None and time.monotonic() < deadline, "plain broker down"
            time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


def test_no_response_within_timeout_exits_3(plain_broker):
    started = time.monotonic()
    failed(twinctl("--timeout", "1", "device", "show", "dev1", port=plain_broker), 3,
           "no response", "within 1 s")
    assert time.monotonic() - started < 5
