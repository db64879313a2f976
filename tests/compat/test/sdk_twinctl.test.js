'use strict';
/*
 * sdk_twinctl.test.js - the README's walkthrough with the official Azure IoT
 * device SDK for Node.js: twinctl creates a device and prints its
 * connection string, the SDK connects with it (sas mode, a real key), and
 * the desired patch twinctl makes reaches the SDK's twin; a replace
 * delivers null for a removed key.
 *
 * Needs TWINCTL (the twinctl binary; ctest sets it).
 */
const assert = require('node:assert/strict');
const { execFileSync } = require('node:child_process');
const { test } = require('node:test');

const h = require('../lib/harness');

const { DESIRED_FILTER, collectDesired, openTwin, subscribedRe, OP_MS } = h;
const files = h.useWorkdir();

/** Run twinctl as iothubowner against the broker's plain listener. */
function twinctl(broker, ...args) {
  const cs = `HostName=${h.HUB_HOST};SharedAccessKeyName=iothubowner;` +
    `SharedAccessKey=${broker.ownerKey}`;
  const out = execFileSync(process.env.TWINCTL,
    ['-h', '127.0.0.1', '-p', String(broker.plainPort), '--connection-string', cs, '-c', ...args],
    { encoding: 'utf8', timeout: 30000 });
  return out ? JSON.parse(out) : null;
}

test('test_sdk_receives_the_desired_patch_twinctl_made', { timeout: 60000,
  skip: process.env.TWINCTL ? false : 'TWINCTL not set' }, async (t) => {
  await h.withBroker(t, files.workdir, files.certs, {}, async (ctx) => {
    const { broker } = ctx;
    const device = twinctl(broker, 'device', 'create', 'compat-ctl-1',
      '--show-connection-string');
    const key = /SharedAccessKey=([^;]+)/.exec(device.connectionString)[1];
    assert.equal(key, device.authentication.symmetricKey.primaryKey);

    const client = await ctx.client('compat-ctl-1', { key });
    const twin = await openTwin(client);
    const desired = collectDesired(twin);
    await broker.waitForLog(subscribedRe('compat-ctl-1', DESIRED_FILTER), OP_MS,
      'SDK SUBSCRIBE to the desired topic');

    twinctl(broker, 'twin', 'update', 'compat-ctl-1', '--desired', '{"fan":"on","speed":3}');
    assert.deepEqual(await desired.next(2, 'after twin update'),
      { fan: 'on', speed: 3, $version: 2 });

    twinctl(broker, 'twin', 'replace', 'compat-ctl-1', '--desired', '{"fan":"off"}');
    assert.deepEqual(await desired.next(3, 'after twin replace'),
      { fan: 'off', speed: null, $version: 3 });
    assert.deepEqual(twin.errors, []);
  });
});
