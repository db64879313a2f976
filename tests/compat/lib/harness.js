'use strict';
/*
 * harness.js - a real mosquitto with the plugin behind a TLS listener, and
 * official Azure IoT device SDK clients pointed at it.
 *
 * The Node.js counterpart of tests/integration/conftest.py: every test gets
 * its own broker process, config, log, database and persistence directory in
 * a private temporary directory, on free ports of the loopback interface
 * (never 1883 or 8883). What differs is TLS: the SDK only speaks mqtts and
 * verifies the server's chain and host name, so makeCerts() makes a throwaway
 * CA and a server certificate for localhost (SAN DNS:localhost, IP:127.0.0.1)
 * with the openssl CLI once per test file. Each broker also has a plain
 * listener (plainPort) for back-end helpers such as setDesired().
 *
 * Authentication (plugin_opt_auth): brokers run in sas mode unless a test asks
 * for another, as a production hub would: hub host name "localhost", one
 * shared access policy `iothubowner` (all rights) with a random key made per
 * broker. Back-end helpers (control(), createDevice(), setDesired()) connect
 * as that policy with a service SAS token, like an IoT Hub service client;
 * ctx.client(deviceId) creates the device through the control API and puts
 * its primary key into the SDK's connection string, so the SDK signs its own
 * tokens with a real key. In open mode any key works (the token is not
 * checked) and unknown devices are registered on first connect.
 *
 * Environment (set by ctest through run.sh):
 *   TWIN_PLUGIN    mosquitto_twin.so (default <repo>/build/plugin/mosquitto_twin.so)
 *   MOSQUITTO      the broker (default /usr/sbin/mosquitto)
 *   TWIN_SANITIZE  "ON" when the plugin has ASan/UBSan: the broker runs with both
 *                  runtimes preloaded, and a sanitizer report in its log fails the test
 *   TWIN_COMPAT_KEEP=1  keep the temporary directory (it is always kept on failure)
 *
 * How the SDK is pointed at the test broker (read in node_modules, SDK 1.18.4,
 * azure-iot-device-mqtt 1.16.4):
 *   - Port: the MQTT transport dials `mqtts://` + (GatewayHostName || HostName)
 *     (azure-iot-device-mqtt/dist/mqtt.js, _getBaseTransportConfig) and mqtt.js
 *     takes the port from that URL (default 8883). So the connection string
 *     carries `GatewayHostName=localhost:PORT` and keeps `HostName=localhost`
 *     clean: HostName alone forms the MQTT username host segment and the SAS
 *     token's `sr` (localhost%2Fdevices%2F{id}), exactly as with a real hub,
 *     and it matches plugin_opt_hostname. (`HostName=localhost:PORT` would
 *     put ":PORT" into both, and sas mode would refuse the token's `sr`.)
 *   - Trust: client.setOptions({ ca: PEM }) reaches mqtt.js as the TLS `ca`
 *     option (azure-iot-mqtt-base/dist/mqtt_base.js, _connectClient); it
 *     replaces the system roots for that client. setOptions also accepts a file
 *     name (it tries fs.readFile first). rejectUnauthorized stays true and
 *     mqtt.js sets servername = "localhost", so chain and host name are checked.
 *     (NODE_EXTRA_CA_CERTS=ca.crt would also work, but only process-wide and
 *     read at start-up; setOptions is what a device application does.)
 *   - setOptions replaces, not merges: the transport keeps only the options
 *     object of the last call (azure-iot-mqtt-base MqttBase.setOptions), so a
 *     second setOptions({ tokenRenewal }) would drop `ca` and the next
 *     connect would fail verification. createClient() makes one call.
 *   - Token renewal: the SDK signs tokens valid tokenValidTimeInSeconds
 *     (3600) and renews every (valid - tokenRenewalMarginInSeconds) seconds
 *     (45 min) by DISCONNECT + CONNECT of the same client id, clean session 0
 *     (azure-iot-device sak_authentication_provider.js, mqtt_base.js
 *     'reconnecting'). setOptions({ tokenRenewal }) changes both; the
 *     device Client emits no event for a renewal.
 *   - Address: "localhost" must reach the listener on 127.0.0.1. Node 17+
 *     returns getaddrinfo's order (::1 may come first) and Node 18 has no
 *     happy-eyeballs fallback, so dns.setDefaultResultOrder('ipv4first').
 */
const assert = require('node:assert/strict');
const { execFileSync, spawn } = require('node:child_process');
const crypto = require('node:crypto');
const dns = require('node:dns');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const tls = require('node:tls');

const { Client } = require('azure-iot-device');
const { Mqtt } = require('azure-iot-device-mqtt');
// Installed with the SDK (its dependencies); the SDK signs with these too.
const { SharedAccessSignature, encodeUriComponentStrict } = require('azure-iot-common');
const mqtt = require('mqtt');

dns.setDefaultResultOrder('ipv4first');

const REPO = path.resolve(__dirname, '..', '..', '..');
const PLUGIN = path.resolve(
  process.env.TWIN_PLUGIN || path.join(REPO, 'build', 'plugin', 'mosquitto_twin.so'));
const MOSQUITTO = process.env.MOSQUITTO || '/usr/sbin/mosquitto';
const SANITIZE = ['ON', '1', 'TRUE', 'YES'].includes(
  (process.env.TWIN_SANITIZE || 'OFF').toUpperCase());

const DB_OPEN_LINE = 'mosquitto-twin: database open at ';
// Logged after the broker installs its signal handlers, just before its main
// loop: a SIGTERM sent earlier is lost (2.0.11 sets run = 1 after this line).
const RUNNING_LINE = /mosquitto version \S+ running/;
const SANITIZER_REPORTS = /ERROR: (Address|Leak)Sanitizer|: runtime error: /;

/** sas mode: the hub host name tokens must name (plugin_opt_hostname). */
const HUB_HOST = 'localhost';
/** sas mode: the back ends' shared access policy (plugin_opt_policy_iothubowner). */
const OWNER_POLICY = 'iothubowner';
const CONTROL_TOPIC = '$CONTROL/twin/v1';
const CONTROL_RESPONSE_TOPIC = '$CONTROL/twin/v1/response';

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Await `promise` for at most `ms` milliseconds; reject naming `what` otherwise.
 * Every SDK call goes through this: the SDK has no timeout on twin requests
 * and retries connects for up to 240 s, so an unanswered request would hang.
 */
function within(ms, promise, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no result within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Poll `predicate` every 50 ms until it returns a truthy value or `ms` pass. */
async function waitFor(ms, predicate, what) {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await predicate();
    if (value) return value;
    if (Date.now() >= deadline) throw new Error(`${what}: not within ${ms} ms`);
    await sleep(50);
  }
}

/** A random 32-byte key, base64, as IoT Hub generates them. */
function randomKey() {
  return crypto.randomBytes(32).toString('base64');
}

/** A free TCP port of 127.0.0.1 right now (bind 0, read it, close). */
function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

function portAccepts(port) {
  return new Promise((resolve) => {
    const sock = net.connect({ host: '127.0.0.1', port });
    sock.setTimeout(500);
    sock.once('connect', () => { sock.destroy(); resolve(true); });
    sock.once('error', () => resolve(false));
    sock.once('timeout', () => { sock.destroy(); resolve(false); });
  });
}

/**
 * Whether the TLS listener on `port` completes a handshake that the SDK would
 * accept (chain to `caPem`, name "localhost"). Resolves true, false (not
 * listening yet), or rejects on a certificate error, which waiting won't fix.
 */
function tlsAccepts(port, caPem) {
  return new Promise((resolve, reject) => {
    const sock = tls.connect({ host: '127.0.0.1', port, servername: 'localhost', ca: caPem });
    sock.setTimeout(1000);
    sock.once('secureConnect', () => { sock.end(); resolve(true); });
    sock.once('timeout', () => { sock.destroy(); resolve(false); });
    sock.once('error', (err) => {
      sock.destroy();
      if (err.code === 'ECONNREFUSED' || err.code === 'ECONNRESET') resolve(false);
      else reject(new Error(`TLS handshake with the test broker failed: ${err.code} ${err.message}`));
    });
  });
}

/** A private directory for one test file's brokers and certificates. */
function makeWorkdir() {
  if (!fs.existsSync(PLUGIN)) {
    throw new Error(`plugin not built: ${PLUGIN} (set TWIN_PLUGIN or build into build/)`);
  }
  return fs.mkdtempSync(path.join(os.tmpdir(), 'twin-compat-'));
}

/**
 * A CA and a server certificate for localhost, made with the openssl CLI in
 * `dir`. Returns { ca, cert, key, caPem } (paths, and the CA as PEM text).
 * P-256 keys: fast to make, accepted by mosquitto's and Node's defaults.
 */
function makeCerts(dir) {
  const p = (name) => path.join(dir, name);
  const openssl = (...args) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
  fs.mkdirSync(dir, { recursive: true });
  openssl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1',
    '-nodes', '-keyout', p('ca.key'), '-out', p('ca.crt'), '-days', '2',
    '-subj', '/CN=mosquitto-twin compat test CA',
    '-addext', 'basicConstraints=critical,CA:TRUE',
    '-addext', 'keyUsage=critical,keyCertSign,cRLSign');
  openssl('req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-keyout', p('server.key'), '-out', p('server.csr'), '-subj', '/CN=localhost');
  fs.writeFileSync(p('server.ext'), [
    'basicConstraints=critical,CA:FALSE',
    'keyUsage=critical,digitalSignature,keyEncipherment',
    'extendedKeyUsage=serverAuth',
    'subjectAltName=DNS:localhost,IP:127.0.0.1',
    '',
  ].join('\n'));
  openssl('x509', '-req', '-in', p('server.csr'), '-CA', p('ca.crt'), '-CAkey', p('ca.key'),
    '-CAcreateserial', '-days', '2', '-sha256', '-extfile', p('server.ext'),
    '-out', p('server.crt'));
  return { ca: p('ca.crt'), cert: p('server.crt'), key: p('server.key'),
    caPem: fs.readFileSync(p('ca.crt'), 'utf8') };
}

let sanitizerEnvCache;
/**
 * LD_PRELOAD of the ASan and UBSan runtimes the plugin links (ldd), gcc's as
 * the fallback; ASan first. Leak checking off: the broker is not ours.
 */
function sanitizerEnv() {
  if (sanitizerEnvCache) return sanitizerEnvCache;
  const linked = execFileSync('ldd', [PLUGIN], { encoding: 'utf8' });
  const preload = ['libasan', 'libubsan'].map((lib) => {
    const m = linked.match(new RegExp(`^\\s*${lib}\\.so\\S* => (\\S+)`, 'm'));
    if (m) return m[1];
    const out = execFileSync('gcc', [`-print-file-name=${lib}.so`], { encoding: 'utf8' }).trim();
    if (!path.isAbsolute(out)) throw new Error(`TWIN_SANITIZE is ON but ${lib}.so was not found`);
    return out;
  });
  sanitizerEnvCache = {
    LD_PRELOAD: preload.join(' '),
    ASAN_OPTIONS: 'detect_leaks=0:halt_on_error=1',
    UBSAN_OPTIONS: 'print_stacktrace=1:halt_on_error=1',
  };
  return sanitizerEnvCache;
}

/**
 * One mosquitto with the plugin: a TLS listener for the SDK (port) and a plain
 * one (plainPort) for back-end helpers, both on 127.0.0.1. With persistence,
 * MQTT sessions are saved in <workdir>/persist/ at SIGTERM and loaded at the
 * next start(). start() after stop() reuses ports, config, keys and
 * directories; the log keeps growing (log(true) is the current run).
 *
 * auth: 'sas' (default) writes plugin_opt_auth sas, plugin_opt_hostname
 * localhost and plugin_opt_policy_iothubowner all:<ownerKey>, with a fresh
 * random ownerKey; 'open' or 'external' only plugin_opt_auth. pluginOptions
 * (plugin_opt_* without the prefix) are added last and override those.
 */
class Broker {
  constructor(
    workdir,
    certs,
    { auth = 'sas', persistence = false, readyTimeoutMs = 10000, pluginOptions = {} } = {},
  ) {
    this.workdir = workdir;
    this.auth = auth;
    this.ownerKey = auth === 'sas' ? randomKey() : null;
    const authOptions = auth === 'sas'
      ? { auth, hostname: HUB_HOST, [`policy_${OWNER_POLICY}`]: `all:${this.ownerKey}` }
      : { auth };
    this.pluginOptions = Object.entries({ ...authOptions, ...pluginOptions });
    this.certs = certs;
    this.persistence = persistence;
    this.readyTimeoutMs = readyTimeoutMs;
    this.confPath = path.join(workdir, 'mosquitto.conf');
    this.logPath = path.join(workdir, 'broker.log');
    this.dbPath = path.join(workdir, 'db');
    this.persistPath = path.join(workdir, 'persist');
    this.port = null;
    this.plainPort = null;
    this.process = null;
    this.exited = null;
    this.logOffset = 0;
    fs.mkdirSync(workdir, { recursive: true });
  }

  configText() {
    const user = os.userInfo().username;
    const lines = [
      '# generated by tests/compat/lib/harness.js',
      // Mosquitto started as root drops to this user before plugin init.
      `user ${user}`,
      'allow_anonymous true',
      'set_tcp_nodelay true',
      'log_dest stderr',
      'log_type all',
      'connection_messages true',
      `persistence ${this.persistence}`,
    ];
    if (this.persistence) lines.push(`persistence_location ${this.persistPath}`);
    lines.push(
      `plugin ${PLUGIN}`,
      `plugin_opt_db_path ${this.dbPath}`,
      ...this.pluginOptions.map(([k, v]) => `plugin_opt_${k} ${v}`),
      '',
      `listener ${this.port} 127.0.0.1`,
      `cafile ${this.certs.ca}`,
      `certfile ${this.certs.cert}`,
      `keyfile ${this.certs.key}`,
      'require_certificate false',
      '',
      `listener ${this.plainPort} 127.0.0.1`,
    );
    return lines.join('\n') + '\n';
  }

  get running() {
    return this.process !== null && this.exited === null;
  }

  /** Start and wait until ready; throws with the log when it is not. */
  async start() {
    assert.ok(!this.running, 'broker already running');
    for (let attempt = 0; attempt < 3; attempt++) {
      if (this.port === null || attempt > 0) {
        this.port = await freePort();
        this.plainPort = await freePort();
      }
      this.spawn();
      let ready;
      try {
        ready = await this.waitReady();
      } catch (err) {
        await this.kill();
        throw new Error(`${err.message}\n${this.log(true)}`);
      }
      if (ready) return this;
      // Lost the race for a port to another process: take new ones.
      if (!(this.log(true).includes('Address already in use') && attempt < 2)) break;
      await this.kill();
    }
    const log = this.log(true);
    await this.kill();
    throw new Error(`broker did not become ready on port ${this.port}:\n${log}`);
  }

  spawn() {
    fs.mkdirSync(this.persistPath, { recursive: true });
    fs.writeFileSync(this.confPath, this.configText());
    const env = { ...process.env, ...(SANITIZE ? sanitizerEnv() : {}) };
    this.logOffset = fs.existsSync(this.logPath) ? fs.statSync(this.logPath).size : 0;
    const fd = fs.openSync(this.logPath, 'a');
    this.exited = null;
    this.process = spawn(MOSQUITTO, ['-c', this.confPath],
      { cwd: this.workdir, env, stdio: ['ignore', fd, fd] });
    fs.closeSync(fd);
    const child = this.process;
    this.exitPromise = new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        this.exited = { code, signal };
        resolve(this.exited);
      });
    });
  }

  async waitReady() {
    const deadline = Date.now() + this.readyTimeoutMs;
    while (Date.now() < deadline) {
      if (!this.running) return false;
      const log = this.log(true);
      if (log.includes(DB_OPEN_LINE) && RUNNING_LINE.test(log) &&
          await portAccepts(this.plainPort) &&
          await tlsAccepts(this.port, this.certs.caPem)) return true;
      await sleep(50);
    }
    return false;
  }

  /** The broker's log (stdout and stderr), whole or of the current run. */
  log(sinceStart = false) {
    if (!fs.existsSync(this.logPath)) return '';
    const data = fs.readFileSync(this.logPath);
    return data.subarray(sinceStart ? this.logOffset : 0).toString('utf8');
  }

  /** Wait until the current run's log matches `re`; returns the match. */
  waitForLog(re, ms, what) {
    return waitFor(ms, () => this.log(true).match(re), what || `broker log ${re}`);
  }

  /**
   * SIGTERM, repeated every second (one sent in the instant between the
   * "running" line and the main loop is lost); SIGKILL and throw after
   * `timeoutMs`. Returns the exit status.
   */
  async stop(timeoutMs = 10000) {
    if (this.process === null) return null;
    const deadline = Date.now() + timeoutMs;
    while (this.running && Date.now() < deadline) {
      this.process.kill('SIGTERM');
      await Promise.race([this.exitPromise, sleep(1000)]);
    }
    if (this.running) {
      await this.kill();
      throw new Error(`broker ignored SIGTERM for ${timeoutMs} ms:\n${this.log(true)}`);
    }
    return this.exited;
  }

  async restart() {
    await this.stop();
    return this.start();
  }

  async kill() {
    if (this.running) {
      this.process.kill('SIGKILL');
      await this.exitPromise;
    }
  }

  /**
   * A service SAS token of the iothubowner policy (sas mode), valid
   * `ttlSeconds`: sr = the hub host name, skn = the policy, signed by
   * azure-iot-common as the SDKs do (PROTOCOL.md §1.2, §7).
   */
  serviceToken(ttlSeconds = 3600) {
    assert.equal(this.auth, 'sas', 'service tokens are for sas mode');
    const expiry = Math.floor(Date.now() / 1000) + ttlSeconds;
    return SharedAccessSignature.create(encodeUriComponentStrict(HUB_HOST), OWNER_POLICY,
      this.ownerKey, expiry).toString();
  }

  /** Log lines where ASan or UBSan reported an error. */
  sanitizerReports() {
    return this.log().split('\n').filter((ln) => SANITIZER_REPORTS.test(ln));
  }
}

/**
 * A device connection string for `deviceId` on `broker` with the device key
 * `key` (base64). See the header for why GatewayHostName carries the port.
 */
function connectionString(broker, deviceId, key) {
  return `HostName=${HUB_HOST};DeviceId=${deviceId};SharedAccessKey=${key};` +
    `GatewayHostName=localhost:${broker.port}`;
}

/**
 * An SDK device client (MQTT over TLS) for `deviceId` on `broker` with the
 * device key `key`, trusting the test CA. Not opened. `tokenRenewal`
 * ({ tokenValidTimeInSeconds, tokenRenewalMarginInSeconds }) goes into the
 * same setOptions call as the CA (see the header). Its 'connect',
 * 'disconnect' and 'error' events are recorded in client.events (with times)
 * so a test can show what the SDK went through.
 */
async function createClient(broker, deviceId, key, { tokenRenewal } = {}) {
  const client = Client.fromConnectionString(connectionString(broker, deviceId, key), Mqtt);
  client.events = [];
  client.on('disconnect', (r) => client.events.push({ at: Date.now(), event: 'disconnect',
    detail: String(r && r.reason ? r.reason : r) }));
  client.on('error', (e) => client.events.push({ at: Date.now(), event: 'error',
    detail: String(e) }));
  client.on('connect', () => client.events.push({ at: Date.now(), event: 'connect' }));
  const options = { ca: broker.certs.caPem };
  if (tokenRenewal) options.tokenRenewal = tokenRenewal;
  await within(5000, client.setOptions(options), 'client.setOptions');
  return client;
}

/** Close a client, giving up silently after `ms` (the broker may be gone). */
async function closeQuietly(client, ms = 5000) {
  try {
    await within(ms, client.close(), 'client.close()');
  } catch (_) {
    // Best effort: a test's own assertion already says what went wrong.
  }
}

/** twin.properties.reported.update(patch) as a promise (the SDK only has a callback). */
function updateReported(twin, patch) {
  return new Promise((resolve, reject) => {
    twin.properties.reported.update(patch, (err) => (err ? reject(err) : resolve()));
  });
}

/** A section of the twin without the SDK's own `update` function. */
function sectionData(section) {
  const out = {};
  for (const [k, v] of Object.entries(section)) if (typeof v !== 'function') out[k] = v;
  return out;
}

let backendCount = 0;

/**
 * Run control API commands ($CONTROL/twin/v1) as a back end, over the plain
 * listener: in sas mode connected as the iothubowner policy (username = the
 * policy name, password = a service SAS token), otherwise anonymously. The
 * broker answers only the requesting client, on $CONTROL/twin/v1/response,
 * after the commit. Resolves with the `responses` array, one per command in
 * order; statuses are the caller's to check.
 */
async function control(broker, commands) {
  const credentials = broker.auth === 'sas'
    ? { username: OWNER_POLICY, password: broker.serviceToken() }
    : {};
  backendCount += 1;
  const client = mqtt.connect(`mqtt://127.0.0.1:${broker.plainPort}`, {
    clientId: `backend-${process.pid}-${backendCount}`, clean: true, reconnectPeriod: 0,
    ...credentials,
  });
  const what = commands.map((c) => c.command).join(', ');
  try {
    await within(10000, new Promise((resolve, reject) => {
      client.once('connect', resolve);
      client.once('error', reject);
    }), 'back-end connect');
    const granted = await within(10000, new Promise((resolve, reject) => {
      client.subscribe(CONTROL_RESPONSE_TOPIC, { qos: 1 },
        (err, g) => (err ? reject(err) : resolve(g)));
    }), `back-end SUBSCRIBE ${CONTROL_RESPONSE_TOPIC}`);
    if (granted[0].qos === 128) {
      throw new Error(`${CONTROL_RESPONSE_TOPIC} refused to the back end`);
    }
    const response = new Promise((resolve) => {
      client.on('message', (topic, payload) => {
        if (topic === CONTROL_RESPONSE_TOPIC) resolve(JSON.parse(payload.toString()));
      });
    });
    client.publish(CONTROL_TOPIC, JSON.stringify({ commands }), { qos: 1 });
    return (await within(10000, response, `control API response to ${what}`)).responses;
  } finally {
    client.end(true);
  }
}

/** One control API command; throws unless it answered `status` (200). */
async function command(broker, cmd, status = 200) {
  const [r] = await control(broker, [cmd]);
  if (!r || r.status !== status) {
    throw new Error(`${cmd.command} ${cmd.deviceId}: expected ${status}, got ${JSON.stringify(r)}`);
  }
  return r;
}

/**
 * Create the device identity `deviceId` (sas authentication, keys generated
 * by the broker). Resolves with the identity; its keys are in
 * identity.authentication.symmetricKey.{primaryKey,secondaryKey}.
 */
async function createDevice(broker, deviceId) {
  return (await command(broker, { command: 'createDevice', deviceId })).data;
}

/** The back end's view of the twin of `deviceId` (getTwin). */
async function getTwin(broker, deviceId) {
  return (await command(broker, { command: 'getTwin', deviceId })).data;
}

/**
 * Change the desired properties of `deviceId` from the back end, the way a
 * service would: an `updateTwin` command; the device is notified in the same
 * step as the commit. Resolves with the command's response.
 */
function setDesired(broker, deviceId, patch) {
  return command(broker,
    { command: 'updateTwin', deviceId, twin: { properties: { desired: patch } } });
}

/**
 * Run `body(ctx)` against a fresh broker (options: see Broker); stop it
 * afterwards, fail on sanitizer reports, and attach the broker log to any
 * failure. ctx = { broker, clients: [], client(deviceId, opts) }.
 * ctx.client(deviceId, { key, tokenRenewal }) makes an SDK client (not
 * opened) that is closed at the end. Without `key`, in sas mode the device is
 * created first and its primary key used; in open mode any key will do.
 */
async function withBroker(t, workdir, certs, options, body) {
  const name = t.name.replace(/[^A-Za-z0-9_.-]/g, '_');
  const broker = new Broker(path.join(workdir, name), certs, options);
  const clients = [];
  const ctx = {
    broker,
    clients,
    async client(deviceId, { key, tokenRenewal } = {}) {
      let deviceKey = key;
      if (deviceKey === undefined) {
        deviceKey = broker.auth === 'sas'
          ? (await createDevice(broker, deviceId)).authentication.symmetricKey.primaryKey
          : randomKey();
      }
      const c = await createClient(broker, deviceId, deviceKey, { tokenRenewal });
      clients.push(c);
      return c;
    },
  };
  let failure = null;
  try {
    await broker.start();
    await body(ctx);
  } catch (err) {
    failure = err;
  }
  await Promise.all(clients.map((c) => closeQuietly(c)));
  try {
    await broker.stop();
  } catch (err) {
    failure = failure || err;
  } finally {
    await broker.kill();
  }
  const reports = broker.sanitizerReports();
  if (!failure && reports.length) {
    failure = new Error('sanitizer reports in the broker log:\n' + reports.join('\n'));
  }
  if (failure) {
    state.failed += 1;
    const events = clients.flatMap((c) => c.events.map((e) => JSON.stringify(e)));
    failure.message += `\n--- SDK client events:\n${events.join('\n') || '(none)'}` +
      `\n--- broker log (${broker.logPath}):\n${tail(broker.log(), 120)}`;
    throw failure;
  }
}

/** Failures seen by withBroker in this process (the work directory is kept if any). */
const state = { failed: 0 };

function tail(text, lines) {
  const all = text.split('\n');
  return all.slice(Math.max(0, all.length - lines)).join('\n');
}

/**
 * Register the before/after hooks of a test file (node:test): a private work
 * directory and test certificates, shared by the file's brokers, removed
 * after the last test unless a test failed or TWIN_COMPAT_KEEP=1. Returns an
 * object whose `workdir` and `certs` are set once the before hook has run.
 */
function useWorkdir() {
  const { after, before } = require('node:test');
  const files = { workdir: null, certs: null };
  before(() => {
    files.workdir = makeWorkdir();
    files.certs = makeCerts(path.join(files.workdir, 'certs'));
  });
  after(() => {
    if (state.failed > 0 || process.env.TWIN_COMPAT_KEEP === '1') {
      console.log(`compat: broker logs and configs kept in ${files.workdir}`);
    } else {
      fs.rmSync(files.workdir, { recursive: true, force: true });
    }
    // A test that failed mid-operation may leave an SDK timer or socket
    // behind; do not let it hold the process (and ctest) open once results
    // are out.
    setTimeout(() => process.exit(process.exitCode || 0), 5000).unref();
  });
  return files;
}

/** Limit for one SDK operation (open, getTwin, reported update) on loopback. */
const OP_MS = 10000;
const DESIRED_FILTER = '$iothub/twin/PATCH/properties/desired/#';

const escapeRe = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/**
 * The broker's line for a CONNECT of `clientId` (mosquitto 2.0.11 format);
 * groups: clean session, keep-alive, username. `flags` 'g' to count them.
 */
const connectedRe = (clientId, flags = '') => new RegExp(
  `New client connected from \\S+ as ${escapeRe(clientId)} \\(p2, c(\\d), k(\\d+), u'([^']*)'\\)`,
  flags);

/** The broker's CONNACK line for `clientId`; groups: session present, return code. */
const connackRe = (clientId, flags = '') => new RegExp(
  `Sending CONNACK to ${escapeRe(clientId)} \\((\\d), (\\d+)\\)`, flags);

/** The broker's log_type subscribe line: "<client id> <qos> <filter>". */
const subscribedRe = (clientId, filter) => new RegExp(
  `^\\d+: ${escapeRe(clientId)} (\\d) ${escapeRe(filter)}$`, 'm');

/** Open `client` and get its twin; returns the Twin, its 'error' events in twin.errors. */
async function openTwin(client) {
  await within(OP_MS, client.open(), 'client.open()');
  const twin = await within(OP_MS, client.getTwin(), 'client.getTwin()');
  twin.errors = [];
  twin.on('error', (err) => twin.errors.push(err));
  return twin;
}

/**
 * Collect desired notifications (adding the listener makes the SDK
 * subscribe); next(v) resolves with the first one of $version v.
 */
function collectDesired(twin) {
  const seen = [];
  const waiters = [];
  twin.on('properties.desired', (delta) => {
    seen.push(JSON.parse(JSON.stringify(delta)));
    for (const w of waiters.splice(0)) w();
  });
  return {
    seen,
    async next(version, what) {
      const found = () => seen.find((d) => d.$version === version);
      while (!found()) {
        await within(OP_MS, new Promise((resolve) => waiters.push(resolve)),
          `${what}: desired notification with $version ${version} (seen: ${JSON.stringify(seen)})`);
      }
      return found();
    },
  };
}

module.exports = {
  Broker,
  HUB_HOST,
  PLUGIN,
  MOSQUITTO,
  SANITIZE,
  closeQuietly,
  command,
  connectionString,
  control,
  createClient,
  createDevice,
  getTwin,
  makeCerts,
  makeWorkdir,
  randomKey,
  OP_MS,
  DESIRED_FILTER,
  collectDesired,
  connackRe,
  connectedRe,
  escapeRe,
  openTwin,
  subscribedRe,
  useWorkdir,
  sectionData,
  setDesired,
  sleep,
  state,
  updateReported,
  waitFor,
  within,
  withBroker,
};
