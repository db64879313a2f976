'use strict';
/*
 * sdk_twin.test.js - the official Azure IoT device SDK for Node.js
 * (azure-iot-device + azure-iot-device-mqtt, versions pinned in
 * package-lock.json) using device twins on mosquitto + mosquitto-twin.
 *
 * SAS mode with real keys (PROTOCOL.md §1): each test starts its own broker
 * (lib/harness.js) with an iothubowner policy, creates a fresh device through
 * the control API and hands its primary key to the SDK in the connection
 * string; the SDK signs its own tokens, the broker verifies them. Every twin
 * starts at desired and reported $version 1 (PROTOCOL.md §2.3).
 * Authentication itself (token renewal, wrong keys, open mode) is in
 * sdk_auth.test.js.
 *
 * What the SDK does on the wire and why it matters is in PROTOCOL.md §1.5;
 * the tests below are the executable form of that table. Every SDK call is
 * time-boxed: the SDK itself never times out a twin request.
 *
 * Run: tests/compat/run.sh (npm ci + node --test), with TWIN_PLUGIN set.
 */
const assert = require('node:assert/strict');
const { test } = require('node:test');

const h = require('../lib/harness');

const { OP_MS, DESIRED_FILTER, collectDesired, connackRe, connectedRe, openTwin,
  subscribedRe } = h;

/**
 * Limit for the SDK to reconnect by itself after the broker restarts. Its
 * retry policy (azure-iot-common ExponentialBackOffWithJitter) retries at once,
 * then after ~0.1, 0.15, 0.3, 0.5, 1, 2, 4, 8, 10, 10 … s (cap 10 s, give up
 * after 240 s), so a broker down ~1 s is back within ~3 s; 30 s is generous.
 */
const RECONNECT_MS = 30000;

const files = h.useWorkdir();

test('test_sdk_get_twin', { timeout: 60000 }, async (t) => {
  await h.withBroker(t, files.workdir, files.certs, {}, async (ctx) => {
    const client = await ctx.client('compat-dev-1');
    const twin = await openTwin(client);

    assert.deepEqual(twin.properties.desired, { $version: 1 });
    assert.deepEqual(h.sectionData(twin.properties.reported), { $version: 1 });
  });
});

test('test_sdk_update_reported', { timeout: 60000 }, async (t) => {
  await h.withBroker(t, files.workdir, files.certs, {}, async (ctx) => {
    const client = await ctx.client('compat-dev-2');
    const twin = await openTwin(client);

    await h.within(OP_MS, h.updateReported(twin, { fw: '1.2', nested: { a: 1 } }),
      'properties.reported.update()');
    const again = await h.within(OP_MS, client.getTwin(), 'second client.getTwin()');

    assert.deepEqual(h.sectionData(again.properties.reported),
      { fw: '1.2', nested: { a: 1 }, $version: 2 });
    assert.deepEqual(again.properties.desired, { $version: 1 });
  });
});


test('test_sdk_receives_desired_patch', { timeout: 60000 }, async (t) => {
  await h.withBroker(t, files.workdir, files.certs, {}, async (ctx) => {
    const deviceId = 'compat-dev-3';
    const client = await ctx.client(deviceId);
    const twin = await openTwin(client);
    const desired = collectDesired(twin);
    await ctx.broker.waitForLog(subscribedRe(deviceId, DESIRED_FILTER), OP_MS,
      'SDK SUBSCRIBE to the desired topic');

    await h.setDesired(ctx.broker, deviceId, { interval: 30, mode: { led: 'on' } });
    const delta = await desired.next(2, 'after setDesired');

    assert.deepEqual(delta, { interval: 30, mode: { led: 'on' }, $version: 2 });
    assert.deepEqual(twin.properties.desired,
      { interval: 30, mode: { led: 'on' }, $version: 2 });
    assert.deepEqual(twin.errors, []);
  });
});

/**
 * Bring a device to the state the restart tests start from: connected,
 * reported {boot: 1} at $version 2, subscribed to desired changes (the SDK
 * subscribes when a 'properties.desired' listener is added). Then restart the
 * broker (SIGTERM, same port and directories) and wait for the SDK to
 * reconnect by itself. Returns { client, twin, desired }.
 */
async function connectThenRestart(t, ctx, deviceId) {
  const { broker } = ctx;
  const client = await ctx.client(deviceId);
  const twin = await openTwin(client);
  await h.within(OP_MS, h.updateReported(twin, { boot: 1 }), 'reported update before the restart');
  const desired = collectDesired(twin);
  await broker.waitForLog(subscribedRe(deviceId, DESIRED_FILTER), OP_MS,
    'SDK SUBSCRIBE to the desired topic');
  const before = broker.log(true).match(connectedRe(deviceId));
  assert.equal(before[1], '0', 'the SDK connects with clean session 0');

  const stopAt = Date.now();
  await broker.restart();
  const readyAt = Date.now();
  // No call of ours triggers this connect: the SDK's disconnect handler
  // re-enables desired updates (a listener is registered) through its retry
  // policy, which reconnects; its topic state still says "subscribed", so it
  // sends no SUBSCRIBE. The broker must have kept the session.
  await broker.waitForLog(connectedRe(deviceId), RECONNECT_MS, 'SDK reconnect after the restart');
  const reconnectAt = Date.now();
  t.diagnostic(`broker down ${readyAt - stopAt} ms; SDK reconnected ` +
    `${reconnectAt - readyAt} ms after the broker was ready`);
  const connack = await broker.waitForLog(connackRe(deviceId), OP_MS,
    'CONNACK to the reconnected SDK');
  assert.deepEqual(connack.slice(1), ['1', '0'],
    'the restarted broker accepts the token and resumes the SDK session (session present)');
  const resubscribed = new RegExp(`Received SUBSCRIBE from ${h.escapeRe(deviceId)}`)
    .test(broker.log(true));
  t.diagnostic(`SDK re-subscribed after reconnecting: ${resubscribed}`);
  return { client, twin, desired };
}

test('test_sdk_survives_broker_restart', { timeout: 120000 }, async (t) => {
  await h.withBroker(t, files.workdir, files.certs, { persistence: true }, async (ctx) => {
    const { client, twin } = await connectThenRestart(t, ctx, 'compat-dev-4');

    const again = await h.within(OP_MS, client.getTwin(), 'client.getTwin() after the restart');

    assert.deepEqual(h.sectionData(again.properties.reported), { boot: 1, $version: 2 });
    assert.deepEqual(again.properties.desired, { $version: 1 });
    await h.within(OP_MS, h.updateReported(twin, { boot: 2 }), 'reported update after the restart');
    const third = await h.within(OP_MS, client.getTwin(), 'third client.getTwin()');
    assert.deepEqual(h.sectionData(third.properties.reported), { boot: 2, $version: 3 });
    assert.deepEqual(twin.errors, []);
  });
});

test('test_sdk_receives_desired_patch_after_broker_restart',
  { timeout: 120000 }, async (t) => {
    await h.withBroker(t, files.workdir, files.certs, { persistence: true }, async (ctx) => {
      const deviceId = 'compat-dev-5';
      const { twin, desired } = await connectThenRestart(t, ctx, deviceId);

      await h.setDesired(ctx.broker, deviceId, { interval: 45 });
      const delta = await desired.next(2, 'after the restart and setDesired');

      assert.deepEqual(delta, { interval: 45, $version: 2 });
      assert.deepEqual(twin.properties.desired, { interval: 45, $version: 2 });
      assert.deepEqual(twin.errors, []);
    });
  });
