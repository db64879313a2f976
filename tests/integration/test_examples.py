"""The shipped configurations work as documented: the production example
(TLS listener, sas mode, persistence) starts with only its CHANGE-ME values
filled in, and serves a SAS device over TLS and a back end."""

import pwd
import os
import re
from pathlib import Path

from conftest import PLUGIN, free_port
from iothub_auth import Certs, device_username, new_key, sas_token
from twin_clients import Backend, Device

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "mosquitto-production.conf"


def production_config(broker, certs, tls_port, owner_key):
    text = EXAMPLE.read_text()
    subs = [
        (r"^listener 8883$", f"listener {tls_port} 127.0.0.1"),
        (r"^listener 8884 127\.0\.0\.1$", f"listener {broker.port} 127.0.0.1"),
        (r"^persistence_location .*$", f"persistence_location {broker.workdir}/"),
        (r"^log_dest syslog$", "log_dest stderr\nlog_type all"),
        (r"^certfile .*CHANGE-ME.*$", f"certfile {certs.server_cert}"),
        (r"^keyfile .*CHANGE-ME.*$", f"keyfile {certs.server_key}"),
        (r"^cafile .*CHANGE-ME.*$", f"cafile {certs.ca}"),
        (r"^plugin /usr/local/lib/mosquitto_twin\.so$", f"plugin {PLUGIN}"),
        (r"^plugin_opt_db_path .*$", f"plugin_opt_db_path {broker.workdir}/db"),
        (r"^plugin_opt_hostname .*$", "plugin_opt_hostname localhost"),
        (r"^#plugin_opt_policy_iothubowner .*$", f"plugin_opt_policy_iothubowner all:{owner_key}"),
    ]
    for pattern, repl in subs:
        text, n = re.subn(pattern, repl, text, flags=re.M)
        assert n == 1, f"the example no longer has {pattern!r}"
    assert "CHANGE-ME" not in re.sub(r"^#.*$", "", text, flags=re.M)
    # Mosquitto started as root drops to this user before plugin init.
    return f"user {pwd.getpwuid(os.geteuid()).pw_name}\n" + text


def test_production_example_serves_sas_devices_over_tls(start_broker, tmp_path):
    certs = Certs(tmp_path / "pki")
    device_cert = certs.issue("dev1", "dev1")
    tls_port, owner_key = free_port(), new_key()
    broker = start_broker(
        template=lambda b: production_config(b, certs, tls_port, owner_key)
    )
    admin = Backend(broker.port, "admin", username="iothubowner",
                    password=sas_token("localhost", owner_key, policy="iothubowner"))
    r = admin.command(command="createDevice", deviceId="dev1")
    key = r["data"]["authentication"]["symmetricKey"]["primaryKey"]
    # require_certificate true: the SAS device shows a certificate as well.
    dev = Device(tls_port, "dev1", username=device_username("localhost", "dev1"),
                 password=sas_token("localhost/devices/dev1", key),
                 tls=(str(certs.ca), str(device_cert[0]), str(device_cert[1])))
    assert dev.patch({"fw": "1.0"})[0].startswith("$iothub/twin/res/204/")
    assert admin.twin("dev1")["properties"]["reported"]["fw"] == "1.0"
    # Anonymous clients are refused by the example's allow_anonymous false.
    anon = Device(broker.port, "dev1", refused_ok=True)
    assert anon.connack[0] == 5
    dev.close()
    admin.close()
