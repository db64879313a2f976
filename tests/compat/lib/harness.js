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
 *     token's `sr` (localhost%2Fdevices%2F{id}), exactly as with a real hub.
 *     (`HostName=localhost:PORT` works too, but puts ":PORT" into both.)
 *   - Trust: client.setOptions({ ca: PEM }) reaches mqtt.js as the TLS `ca`
 *     option (azure-iot-mqtt-base/dist/mqtt_base.js, _connectClient); it
 *     replaces the system roots for that client. setOptions also accepts a file
 *     name (it tries fs.readFile first). rejectUnauthorized stays true and
 *     mqtt.js sets servername = "localhost", so chain and host name are checked.
 *     (NODE_EXTRA_CA_CERTS=ca.crt would also work, but only process-wide and
 *     read at start-up; setOptions is what a device application does.)
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
 * next start(). start() after stop() reuses ports, config and directories;
 * the log keeps growing (log(true) is the current run).
 */
class Broker {
  constructor(workdir, certs, { persistence = false, readyTimeoutMs = 10000 } = {}) {
    this.workdir = workdir;
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

  /** Log lines where ASan or UBSan reported an error. */
  sanitizerReports() {
    return this.log().split('\n').filter((ln) => SANITIZER_REPORTS.test(ln));
  }
}

/**
 * A device connection string for the open mode of this issue: any base64 key
 * works because the SAS token is not verified yet. See the header for why
 * GatewayHostName carries the port.
 */
function connectionString(broker, deviceId) {
  const key = crypto.randomBytes(32).toString('base64');
  return `HostName=localhost;DeviceId=${deviceId};SharedAccessKey=${key};` +
    `GatewayHostName=localhost:${broker.port}`;
}

/**
 * An SDK device client (MQTT over TLS) for `deviceId` on `broker`, trusting
 * the test CA. Not opened. Its 'disconnect' and 'error' events are recorded in
 * client.events (with times) so a test can show what the SDK went through.
 */
async function createClient(broker, deviceId) {
  const client = Client.fromConnectionString(connectionString(broker, deviceId), Mqtt);
  client.events = [];
  client.on('disconnect', (r) => client.events.push({ at: Date.now(), event: 'disconnect',
    detail: String(r && r.reason ? r.reason : r) }));
  client.on('error', (e) => client.events.push({ at: Date.now(), event: 'error',
    detail: String(e) }));
  client.on('connect', () => client.events.push({ at: Date.now(), event: 'connect' }));
  await within(5000, client.setOptions({ ca: broker.certs.caPem }), 'client.setOptions');
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

/**
 * Change the desired properties of `deviceId` from the back end, the way a
 * service would: an `updateTwin` command on the control API
 * ($CONTROL/twin/v1) over the plain listener. The broker answers only the
 * requesting client, on $CONTROL/twin/v1/response, after the commit; the
 * device is notified in the same step. Resolves with the command's response.
 */
async function setDesired(broker, deviceId, patch) {
  const mqtt = require('mqtt'); // installed with the SDK
  const client = mqtt.connect(`mqtt://127.0.0.1:${broker.plainPort}`, {
    clientId: `backend-${process.pid}-${Date.now()}`, clean: true, reconnectPeriod: 0,
  });
  try {
    await within(10000, new Promise((resolve, reject) => {
      client.once('connect', resolve);
      client.once('error', reject);
    }), 'back-end connect');
    const response = within(10000, new Promise((resolve) => {
      client.on('message', (topic, payload) => {
        if (topic === '$CONTROL/twin/v1/response') resolve(JSON.parse(payload.toString()));
      });
    }), 'updateTwin response');
    client.publish('$CONTROL/twin/v1', JSON.stringify({
      commands: [{ command: 'updateTwin', deviceId, twin: { properties: { desired: patch } } }],
    }), { qos: 1 });
    const r = (await response).responses[0];
    if (r.status !== 200) throw new Error(`updateTwin failed: ${JSON.stringify(r)}`);
    return r;
  } finally {
    client.end(true);
  }
}

/**
 * Run `body(ctx)` against a fresh broker; stop it afterwards, fail on
 * sanitizer reports, and attach the broker log to any failure.
 * ctx = { broker, clients: [], client(deviceId) } - clients made through
 * ctx.client() are closed at the end.
 */
async function withBroker(t, workdir, certs, options, body) {
  const name = t.name.replace(/[^A-Za-z0-9_.-]/g, '_');
  const broker = new Broker(path.join(workdir, name), certs, options);
  const clients = [];
  const ctx = {
    broker,
    clients,
    async client(deviceId) {
      const c = await createClient(broker, deviceId);
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

module.exports = {
  Broker,
  PLUGIN,
  MOSQUITTO,
  SANITIZE,
  closeQuietly,
  connectionString,
  createClient,
  makeCerts,
  makeWorkdir,
  sectionData,
  setDesired,
  sleep,
  state,
  updateReported,
  waitFor,
  within,
  withBroker,
};
