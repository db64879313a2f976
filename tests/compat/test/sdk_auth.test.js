'use strict';
/*
 * sdk_auth.test.js - how the official Azure IoT device SDK for Node.js
 * authenticates to mosquitto + mosquitto-twin (PROTOCOL.md §1): with a real
 * device key in sas mode, through its periodic token renewal, with a wrong
 * key, and in the open quick-start mode.
 *
 * The SDK builds every credential itself from the connection string
 * (HostName, DeviceId, SharedAccessKey): username
 * "localhost/{deviceId}/?api-version=…", password a SAS token for
 * sr = localhost%2Fdevices%2F{deviceId}, signed with the key, valid 3600 s
 * unless setOptions({ tokenRenewal }) says otherwise. The broker (sas mode,
 * plugin_opt_hostname localhost) verifies it against the key the control
 * API's createDevice generated, and closes a connection when its token's
 * `se` passes.
 *
 * Run: tests/compat/run.sh (npm ci + node --test), with TWIN_PLUGIN set.
 */
const assert = require('node:assert/strict');
const { test } = require('node:test');

const h = require('../lib/harness');

const { OP_MS, DESIRED_FILTER, collectDesired, connackRe, connectedRe, escapeRe, openTwin,
  subscribedRe } = h;

/**
 * Short-lived tokens: valid 8 s, renewed when 4 s are left, so the SDK
 * reconnects every 4 s (sak_authentication_provider.js renews every
 * valid - margin seconds) and each token still has ~4 s to go when it is
 * replaced. A renewal that failed would leave the old connection to be closed
 * by the broker at `se` and the twin would stop answering.
 */
const RENEWAL = { tokenValidTimeInSeconds: 8, tokenRenewalMarginInSeconds: 4 };
const RENEWAL_PERIOD_MS =
  (RENEWAL.tokenValidTimeInSeconds - RENEWAL.tokenRenewalMarginInSeconds) * 1000;

const files = h.useWorkdir();

/** All matches of a global regexp in the broker's current run, as arrays. */
const allInLog = (broker, re) => [...broker.log(true).matchAll(re)];

test('test_sdk_connects_with_its_device_key_and_uses_its_twin', { timeout: 60000 }, async (t) => {
  await h.withBroker(t, files.workdir, files.certs, {}, async (ctx) => {
    const { broker } = ctx;
    const deviceId = 'compat-auth-1';
    const identity = await h.createDevice(broker, deviceId);
    assert.equal(identity.authentication.type, 'sas');
    const { primaryKey, secondaryKey } = identity.authentication.symmetricKey;
    assert.equal(Buffer.from(primaryKey, 'base64').length, 32);
    assert.notEqual(primaryKey, secondaryKey);

    const client = await ctx.client(deviceId, { key: primaryKey });
    const twin = await openTwin(client);

    const connect = broker.log(true).match(connectedRe(deviceId));
    assert.match(connect[3], new RegExp(`^${escapeRe(h.HUB_HOST)}/${deviceId}/\\?api-version=`),
      'IoT Hub username');
    assert.doesNotMatch(broker.log(true), /registered device/,
      'sas mode never registers a device on connect');
    assert.deepEqual(twin.properties.desired, { $version: 1 });
    assert.deepEqual(h.sectionData(twin.properties.reported), { $version: 1 });

    await h.within(OP_MS, h.updateReported(twin, { fw: '2.0' }), 'properties.reported.update()');
    const desired = collectDesired(twin);
    await broker.waitForLog(subscribedRe(deviceId, DESIRED_FILTER), OP_MS,
      'SDK SUBSCRIBE to the desired topic');
    await h.setDesired(broker, deviceId, { interval: 15 });
    const delta = await desired.next(2, 'after setDesired');

    assert.deepEqual(delta, { interval: 15, $version: 2 });
    const service = await h.getTwin(broker, deviceId);
    assert.equal(service.properties.reported.fw, '2.0', 'the back end sees the SDK\'s patch');
    assert.equal(service.properties.reported.$version, 2);
    assert.deepEqual(twin.errors, []);
  });
});

test('test_sdk_renews_its_token_and_keeps_the_twin', { timeout: 90000 }, async (t) => {
  await h.withBroker(t, files.workdir, files.certs, {}, async (ctx) => {
    const { broker } = ctx;
    const deviceId = 'compat-auth-2';
    const client = await ctx.client(deviceId, { tokenRenewal: RENEWAL });
    const twin = await openTwin(client);
    const desired = collectDesired(twin);
    await broker.waitForLog(subscribedRe(deviceId, DESIRED_FILTER), OP_MS,
      'SDK SUBSCRIBE to the desired topic');
    const openedAt = Date.now();

    // Each renewal is a DISCONNECT + CONNECT of the same client id; wait for
    // the broker to have accepted two of them (three CONNACKs in all).
    const seenAt = [];
    await h.waitFor(2 * RENEWAL_PERIOD_MS + 2 * OP_MS, () => {
      const n = allInLog(broker, connackRe(deviceId, 'g')).length;
      while (seenAt.length < n) seenAt.push(Date.now() - openedAt);
      return n >= 3;
    }, 'two token renewals (reconnects) of the SDK');
    t.diagnostic(`CONNACKs seen ${seenAt.join(', ')} ms after the twin subscription ` +
      `(renewal every ${RENEWAL_PERIOD_MS} ms)`);

    const connects = allInLog(broker, connectedRe(deviceId, 'g'));
    const connacks = allInLog(broker, connackRe(deviceId, 'g'));
    assert.ok(connects.length >= 3, `${connects.length} CONNECTs`);
    assert.deepEqual(connects.map((m) => m[1]), connects.map(() => '0'),
      'every renewal reconnects with clean session 0');
    assert.deepEqual(connacks.map((m) => m[2]), connacks.map(() => '0'),
      'the broker accepts every renewed token');
    assert.deepEqual(connacks.slice(1).map((m) => m[1]), connacks.slice(1).map(() => '1'),
      'each renewal resumes the MQTT session');
    const disconnects = allInLog(broker,
      new RegExp(`Received DISCONNECT from ${escapeRe(deviceId)}$`, 'gm'));
    assert.ok(disconnects.length >= 2, 'renewals end the old connection with a DISCONNECT');

    // The second renewal proves the SDK sent a new token: the first one's
    // `se` (open + 8 s, rounded down) had passed by then, so the broker
    // would have refused it. Right after a renewal there are ~4 s before the
    // next one, plenty for these.
    const again = await h.within(OP_MS, client.getTwin(), 'client.getTwin() after two renewals');
    assert.deepEqual(h.sectionData(again.properties.reported), { $version: 1 });
    await h.within(OP_MS, h.updateReported(twin, { renewed: true }),
      'reported update after two renewals');
    // The SDK never re-subscribes: this arrives through the resumed session.
    await h.setDesired(broker, deviceId, { after: 'renewal' });
    const delta = await desired.next(2, 'after two renewals and setDesired');
    assert.deepEqual(delta, { after: 'renewal', $version: 2 });
    const service = await h.getTwin(broker, deviceId);
    assert.equal(service.properties.reported.renewed, true);

    assert.doesNotMatch(broker.log(true),
      new RegExp(`closing client ${escapeRe(deviceId)}: its SAS token expired`),
      'no token outlived its renewal');
    assert.deepEqual(client.events.filter((e) => e.event !== 'connect'), [],
      'renewals are invisible to the application');
    assert.deepEqual(twin.errors, []);
  });
});

test('test_sdk_wrong_key_is_refused_as_not_authorized', { timeout: 60000 }, async (t) => {
  await h.withBroker(t, files.workdir, files.certs, {}, async (ctx) => {
    const { broker } = ctx;
    const deviceId = 'compat-auth-3';
    const identity = await h.createDevice(broker, deviceId);

    // Well-formed token for the right device, signed with another key; then
    // a device that does not exist. Both: CONNACK 5.
    for (const [id, what] of [[deviceId, 'a wrong key'], ['compat-ghost', 'an unknown device']]) {
      const client = await ctx.client(id, { key: h.randomKey() });
      const err = await h.within(OP_MS, client.open().then(() => null, (e) => e),
        `client.open() with ${what}`);

      assert.ok(err instanceof Error, `client.open() with ${what} succeeded`);
      // The SDK turns any failed first connect, even a TLS error, into
      // Error("Failure on first connection (Not authorized): <mqtt.js
      // message>"), which its translateError then makes an UnauthorizedError
      // (azure-iot-device-mqtt mqtt.js 'connecting', azure-iot-mqtt-base
      // mqtt_translate_error.js). So the class and the first "Not authorized"
      // prove nothing; "Connection refused: Not authorized" is mqtt.js's text
      // for CONNACK return code 5.
      assert.equal(err.name, 'UnauthorizedError', `with ${what}: ${err.message}`);
      assert.match(err.message, /Connection refused: Not authorized/, `with ${what}`);
      // The broker names a refused client by address in its CONNACK line.
      const refused = broker.log(true).match(new RegExp(
        `refused client ${escapeRe(id)}: (.*)\n.*Sending CONNACK to \\S+ \\(0, 5\\)`));
      assert.ok(refused, `a "refused client ${id}" line and CONNACK 5 with ${what}`);
      t.diagnostic(`${what}: ${err.message} / broker: ${refused[1]}`);
      assert.doesNotMatch(broker.log(true), connectedRe(id));
    }

    // The refusal was about the key: the device's own key still works.
    const { primaryKey } = identity.authentication.symmetricKey;
    const client = await ctx.client(deviceId, { key: primaryKey });
    const twin = await openTwin(client);
    assert.deepEqual(twin.properties.desired, { $version: 1 });
  });
});

test('test_sdk_open_mode_registers_an_unknown_device', { timeout: 60000 }, async (t) => {
  await h.withBroker(t, files.workdir, files.certs, { auth: 'open' }, async (ctx) => {
    const { broker } = ctx;
    const deviceId = 'compat-open-1';
    // Never created, and a key the broker has never seen: the quick-start
    // mode (mosquitto.conf.sample) takes the SDK as it comes.
    const client = await ctx.client(deviceId, { key: h.randomKey() });
    const twin = await openTwin(client);

    assert.match(broker.log(true), new RegExp(`registered device ${escapeRe(deviceId)}\\.`));
    assert.deepEqual(twin.properties.desired, { $version: 1 });
    assert.deepEqual(h.sectionData(twin.properties.reported), { $version: 1 });
    const desired = collectDesired(twin);
    await broker.waitForLog(subscribedRe(deviceId, DESIRED_FILTER), OP_MS,
      'SDK SUBSCRIBE to the desired topic');
    await h.setDesired(broker, deviceId, { interval: 5 }); // anonymous back end
    assert.deepEqual(await desired.next(2, 'after setDesired'), { interval: 5, $version: 2 });
  });
});
