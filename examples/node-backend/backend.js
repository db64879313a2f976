#!/usr/bin/env node
'use strict';
/*
 * backend.js - the back-end service of IoT Hub's "Get started with device
 * twins" tutorial (AddTagsAndQuery, desired properties, reading reported
 * state) over mosquitto-twin's control API, in Node.js with the plain `mqtt`
 * package. The same program as examples/backend_sample.c (twin-backend-sample),
 * step for step and option for option:
 *
 *   1. tag the device: getTwin, then updateTwin with the etag just read;
 *   2. set a desired property, updateTwin with the etag of step 1's result;
 *   3. poll getTwin until the device reports the desired value, or time out.
 *
 * The desired property is telemetryInterval, which twin-device-sim
 * (examples/device_sim.c) applies and reports back, so the samples run
 * against each other; the tutorial's telemetryConfig.sendFrequency would work alike.
 *
 * A write carries the etag of the twin it was computed from, so a change made
 * by someone else in between is refused with 412 instead of being overwritten;
 * the sample then reads the twin again and retries once.
 *
 * Credentials: without a connection string it connects anonymously (open
 * mode, the quick start). With a service connection string
 * (HostName=…;SharedAccessKeyName=…;SharedAccessKey=…) it connects as that
 * shared access policy: username the policy name, password a SAS token made
 * here with node:crypto exactly as the Azure SDKs make it (sas mode).
 *
 * Requests: each command gets a fresh correlationData; the response carrying
 * it arrives on $CONTROL/twin/v1/response, which only the requesting client
 * receives. One request is in flight at a time, as in the C sample.
 *
 *   npm ci && node backend.js -i thermostat-1 [-h HOST] [-p PORT] [-c CONNECTION_STRING]
 */
const crypto = require('node:crypto');
const { parseArgs } = require('node:util');
const mqtt = require('mqtt');

const CONTROL_TOPIC = '$CONTROL/twin/v1';
const RESPONSE_TOPIC = '$CONTROL/twin/v1/response';
const REPLY_MS = 10000; // the plugin answers at once; silence means it is not there
const POLL_MS = 1000;
const TOKEN_TTL_S = 3600;
const EXIT = { done: 0, failed: 1, usage: 2, notReported: 3 };

const USAGE = `usage: node backend.js -i DEVICE_ID [-h HOST] [-p PORT] [-c CONNECTION_STRING]
         [--interval S] [--timeout S]
The back end of IoT Hub's device twin tutorial over the mosquitto-twin control
API: tag the device, set its desired telemetryInterval, and wait until
the device reports it.
  -h HOST               broker host (127.0.0.1)
  -p PORT               broker port (1883)
  -i DEVICE_ID          the device (created if not registered yet)
  -c CONNECTION_STRING  service connection string for sas mode
                        (HostName=…;SharedAccessKeyName=…;SharedAccessKey=…);
                        default $TWIN_CONNECTION_STRING; none: anonymous
  --interval S          desired telemetryInterval, seconds, 0 < S <= 86400 (5)
  --timeout S           seconds to wait for the reported value, at most 86400
                        (30; 0: read it once)
Exit status: 0 the device reported the desired value; 1 a connection or request
failed; 2 bad usage; 3 the device did not report it within --timeout.
`;

/* A failure already shown on its own ERROR line: main() only stops. */
class Shown extends Error {}

function say(text, error = false) {
  const now = new Date();
  const ms = String(now.getMilliseconds()).padStart(3, '0');
  console.log(`${now.toTimeString().slice(0, 8)}.${ms} ${error ? 'ERROR ' : ''}${text}`);
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/* ---- Options and credentials ---------------------------------------------- */

function parseOptions(argv) {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      host: { type: 'string', short: 'h', default: '127.0.0.1' },
      port: { type: 'string', short: 'p', default: '1883' },
      device: { type: 'string', short: 'i' },
      'connection-string': { type: 'string', short: 'c' },
      interval: { type: 'string', default: '5' },
      timeout: { type: 'string', default: '30' },
      help: { type: 'boolean' },
    },
  });
  const opt = {
    host: values.host,
    port: Number(values.port),
    deviceId: values.device,
    connectionString: values['connection-string'] ?? process.env.TWIN_CONNECTION_STRING,
    intervalS: Number(values.interval),
    timeoutS: Number(values.timeout),
    help: values.help,
  };
  const valid = positionals.length === 0 && opt.deviceId &&
    Number.isInteger(opt.port) && opt.port >= 1 && opt.port <= 65535 &&
    values.interval.trim() !== '' && opt.intervalS > 0 && opt.intervalS <= 86400 &&
    values.timeout.trim() !== '' && opt.timeoutS >= 0 && opt.timeoutS <= 86400;
  return valid || opt.help ? opt : null;
}

/* HostName, SharedAccessKeyName and SharedAccessKey of a service connection string. */
function parseConnectionString(text) {
  const fields = {};
  for (const part of text.split(';')) {
    const eq = part.indexOf('='); // a base64 key keeps its '=' padding
    if (part !== '' && eq > 0) {
      fields[part.slice(0, eq)] = part.slice(eq + 1);
    } else if (part !== '') {
      throw new Error(`bad connection string: "Name=Value" pairs expected`);
    }
  }
  if (fields.DeviceId) {
    throw new Error('that is a device connection string; a back end needs a service one ' +
      '(HostName=…;SharedAccessKeyName=…;SharedAccessKey=…)');
  }
  for (const name of ['HostName', 'SharedAccessKeyName', 'SharedAccessKey']) {
    if (!fields[name]) throw new Error(`bad connection string: no ${name}`);
  }
  return fields;
}

/* encodeURIComponent that also escapes !'()*, as the Azure SDKs' encodeUriComponentStrict. */
function encodeStrict(text) {
  return encodeURIComponent(text).replace(/[!'()*]/g, (c) => '%' + c.charCodeAt(0).toString(16));
}

/*
 * SharedAccessSignature sr={E(resource)}&sig={E(base64 HMAC-SHA256)}&skn={E(policy)}&se={expiry}:
 * the HMAC, keyed with the base64-decoded key, covers the ENCODED sr + "\n" + se.
 */
function sasToken(resource, keyBase64, policy, expiry) {
  const sr = encodeStrict(resource);
  const sig = crypto.createHmac('sha256', Buffer.from(keyBase64, 'base64'))
    .update(`${sr}\n${expiry}`)
    .digest('base64');
  return `SharedAccessSignature sr=${sr}&sig=${encodeStrict(sig)}` +
    `&skn=${encodeStrict(policy)}&se=${expiry}`;
}

/* ---- Connection and requests ----------------------------------------------- */

class ControlClient {
  constructor(opt) {
    this.opt = opt;
    this.lastId = 0;
    this.pending = null; // {id, resolve, reject} of the request in flight
  }

  /* Connects and subscribes to the responses; throws (shown) on failure. */
  async connect() {
    const { opt } = this;
    const clientId = `twin-backend-sample-${process.pid}`;
    const options = {
      host: opt.host, port: opt.port, clientId, protocolVersion: 4, clean: true,
      keepalive: 60, reconnectPeriod: 0, connectTimeout: REPLY_MS,
    };
    if (opt.connectionString) {
      let cs;
      try {
        cs = parseConnectionString(opt.connectionString);
      } catch (err) {
        say(err.message, true);
        throw new Shown();
      }
      const expiry = Math.floor(Date.now() / 1000) + TOKEN_TTL_S;
      options.username = cs.SharedAccessKeyName;
      options.password = sasToken(cs.HostName, cs.SharedAccessKey, cs.SharedAccessKeyName, expiry);
      say(`sas mode: policy ${cs.SharedAccessKeyName} of hub ${cs.HostName}, ` +
        `token valid ${TOKEN_TTL_S} s`);
    } else {
      say('open mode: connecting anonymously (no connection string given)');
    }
    this.client = await new Promise((resolve, reject) => {
      const client = mqtt.connect(options);
      const fail = (why) => {
        client.removeListener('error', onError).removeListener('close', onClose);
        client.on('error', () => {}); // said once; an unheard 'error' would throw
        client.end(true);
        say(why, true);
        reject(new Shown());
      };
      const onError = (err) => fail(err.code > 0 && err.code < 6 // a CONNACK refusal
        ? err.message : `cannot connect to ${opt.host}:${opt.port}: ${err.message}`);
      const onClose = () => fail(`cannot connect to ${opt.host}:${opt.port}`);
      client.on('error', onError).on('close', onClose).once('connect', () => {
        client.removeListener('error', onError).removeListener('close', onClose);
        resolve(client);
      });
    });
    this.client.on('error', (err) => this.lost(err.message));
    this.client.on('close', () => this.lost('connection closed'));
    this.client.on('message', (topic, payload) => this.onMessage(topic, payload));
    say(`connected to ${opt.host}:${opt.port} as ${clientId}`);
    const granted = await new Promise((resolve, reject) => this.client.subscribe(
      RESPONSE_TOPIC, { qos: 1 }, (err, g) => (err ? reject(err) : resolve(g))));
    if (granted[0].qos > 1) { // 0x80: refused, responses would never arrive
      say(`subscription to ${RESPONSE_TOPIC} refused`, true);
      throw new Shown();
    }
    say(`subscribed to ${RESPONSE_TOPIC}`);
  }

  lost(why) {
    if (this.closing) return;
    this.closing = true;
    say(`connection lost: ${why}`, true);
    this.pending?.reject(new Shown());
  }

  /* Keeps the response whose correlationData is that of the request in flight. */
  onMessage(topic, payload) {
    let body;
    try {
      body = JSON.parse(payload);
    } catch {
      return;
    }
    for (const r of (topic === RESPONSE_TOPIC && body.responses) || []) {
      if (this.pending && r.correlationData === this.pending.id) {
        this.pending.resolve(r);
      }
    }
  }

  /*
   * Sends one command and waits for its response. Returns its data on a 2xx
   * status ({} for 204), null when the status is `expected` (one the caller
   * handles); any other status is shown as an ERROR line and thrown.
   */
  async request(command, expected = 0) {
    if (this.closing) throw new Shown();
    const id = String(++this.lastId);
    const body = JSON.stringify({ commands: [{ ...command, correlationData: id }] });
    const response = await new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        say(`no response within ${REPLY_MS / 1000} s: is the mosquitto-twin plugin loaded?`, true);
        reject(new Shown());
      }, REPLY_MS);
      const settle = (fn) => (value) => {
        clearTimeout(timer);
        this.pending = null;
        fn(value);
      };
      this.pending = { id, resolve: settle(resolve), reject: settle(reject) };
      this.client.publish(CONTROL_TOPIC, body, { qos: 1 });
    });
    if (response.status >= 200 && response.status < 300) {
      return response.data ?? {};
    }
    const error = response.error || {};
    say(`<- ${response.status} (${error.code}) ${error.message}`, response.status !== expected);
    if (response.status !== expected) throw new Shown();
    return null;
  }

  async close() {
    this.closing = true;
    if (this.client) await new Promise((resolve) => this.client.end(false, resolve));
  }
}

/* ---- The three steps -------------------------------------------------------- */

function showTwin(twin) {
  const props = twin.properties ?? {};
  say(`<- 200 etag ${twin.etag}, tags ${JSON.stringify(twin.tags ?? null)}, ` +
    `desired $version ${props.desired?.$version}, reported $version ${props.reported?.$version}`);
}

/* getTwin; null only when the status is `expected`. show: print the request and a summary. */
async function getTwin(api, deviceId, { show = true, expected = 0 } = {}) {
  if (show) say(`-> getTwin ${deviceId}`);
  const twin = await api.request({ command: 'getTwin', deviceId }, expected);
  if (twin && show) showTwin(twin);
  return twin;
}

/* getTwin, registering the device first if it does not exist yet (404). */
async function readOrCreateTwin(api, deviceId) {
  const twin = await getTwin(api, deviceId, { expected: 404 });
  if (twin) return twin;
  say(`-> createDevice ${deviceId} (not registered yet)`);
  // null: 409, registered meanwhile (open mode: by its first connect).
  if (await api.request({ command: 'createDevice', deviceId }, 409)) {
    say(`<- 200 device ${deviceId} created`);
  }
  return getTwin(api, deviceId);
}

/*
 * updateTwin with patch and the etag of twin; returns the updated twin. On 412
 * (someone changed the twin since it was read) reads it again and retries once.
 */
async function updateTwin(api, deviceId, twin, patch) {
  for (let attempt = 1; ; attempt++) {
    say(`-> updateTwin ${deviceId} ${JSON.stringify(patch)} with etag ${twin.etag}`);
    const updated = await api.request(
      { command: 'updateTwin', deviceId, twin: patch, etag: twin.etag }, attempt === 1 ? 412 : 0);
    if (updated) {
      showTwin(updated);
      return updated;
    }
    say('the twin changed since it was read: read it again and retry');
    twin = await getTwin(api, deviceId);
  }
}

/*
 * Step 3: read the reported properties until the device has applied the
 * desired value, printing them (without $metadata) whenever their $version
 * changes. Returns EXIT.done or EXIT.notReported.
 */
async function awaitReported(api, opt) {
  const deadline = Date.now() + opt.timeoutS * 1000;
  let shown;
  say(`-> getTwin ${opt.deviceId} every ${POLL_MS / 1000} s for up to ${opt.timeoutS} s, ` +
    `until reported telemetryInterval is ${opt.intervalS}`);
  for (;;) {
    const twin = await getTwin(api, opt.deviceId, { show: false });
    const { $metadata, ...reported } = twin.properties?.reported ?? {};
    if (reported.$version !== shown) {
      say(`<- reported ${JSON.stringify(reported)}`);
      shown = reported.$version;
    }
    if (reported.telemetryInterval === opt.intervalS) {
      say(`the device reports telemetryInterval ${opt.intervalS}: desired state reached`);
      return EXIT.done;
    }
    if (Date.now() >= deadline) {
      say(`the device has not reported telemetryInterval ${opt.intervalS} within ${opt.timeoutS} s`,
        true);
      return EXIT.notReported;
    }
    await sleep(Math.min(POLL_MS, deadline - Date.now()));
  }
}

async function run(api, opt) {
  await api.connect();
  say(`step 1: tag device ${opt.deviceId}`);
  let twin = await readOrCreateTwin(api, opt.deviceId);
  twin = await updateTwin(api, opt.deviceId, twin,
    { tags: { location: { region: 'US', plant: 'Redmond43' } } });
  say(`step 2: set desired telemetryInterval ${opt.intervalS}`);
  await updateTwin(api, opt.deviceId, twin,
    { properties: { desired: { telemetryInterval: opt.intervalS } } });
  say('step 3: read the reported state');
  return awaitReported(api, opt);
}

async function main() {
  let opt;
  try {
    opt = parseOptions(process.argv.slice(2));
  } catch {
    opt = null; // unknown option or missing value
  }
  if (!opt || opt.help) {
    (opt ? process.stdout : process.stderr).write(USAGE);
    return opt ? EXIT.done : EXIT.usage;
  }
  const api = new ControlClient(opt);
  let status = EXIT.failed;
  try {
    status = await run(api, opt);
  } catch (err) {
    if (!(err instanceof Shown)) say(err.stack || String(err), true);
  }
  await api.close();
  say(`${status === EXIT.done ? 'done' : 'stopped'} (exit status ${status})`);
  return status;
}

main().then((status) => {
  process.exitCode = status;
});
