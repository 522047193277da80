// The driver's I/O against small in-process WebSocket peers (no emulator
// needed): it dials what the component's `dial` says, configures the socket from
// `settings()`, pings when told and reports pongs, closes with the component's
// code, and abandons a dial when the link stops. It imports the package by name
// (the source tree here, the installed copy next to a tarball).
import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';

import { WebSocketServer } from 'ws';

import { load } from 'relay-wasm';
import { connectWith } from 'relay-wasm/driver';

const DESCRIPTOR = {
  contract_version: 1,
  platform: 'discord',
  label: 'Peer',
  max_message_length: 2000,
  supports_draft_streaming: false,
  supports_edit: true,
  supports_threads: false,
  markdown_dialect: 'markdown',
  len_unit: 'chars',
};

/** A peer that answers each hello with a descriptor and records what it saw. */
async function startPeer(options = {}) {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, ...options });
  const seen = { connections: [], pings: 0, closes: [] };
  wss.on('connection', (socket, request) => {
    seen.connections.push({ url: request.url, authorization: request.headers.authorization });
    socket.on('ping', () => seen.pings++);
    socket.on('close', (code, reason) => seen.closes.push({ code, reason: reason.toString() }));
    socket.on('message', (data) => {
      for (const line of data.toString().split('\n').filter(Boolean)) {
        if (JSON.parse(line).type === 'hello') socket.send(`${JSON.stringify({ type: 'descriptor', descriptor: DESCRIPTOR })}\n`);
      }
    });
  });
  await new Promise((resolve) => wss.once('listening', resolve));
  const close = () => {
    for (const client of wss.clients) client.terminate();
    return new Promise((done) => wss.close(done));
  };
  return { wss, seen, base: `http://127.0.0.1:${wss.address().port}`, close };
}

/** connectWith, its events parsed and kept; `until(pred)` waits for one. */
async function drive(t, base, config, options = {}) {
  const events = [];
  const waiters = [];
  let endedWith = null;
  const driver = connectWith({
    relay: await load(),
    base,
    config: { identities: [{ platform: 'discord', botId: 'app1' }], ...config },
    onEvent: (json, effect) => {
      const event = JSON.parse(json);
      assert.equal(event.event, effect.kind, 'the typed kind is the line\'s event');
      events.push(event);
      for (const w of waiters.splice(0)) w();
    },
    onEnd: (reason) => {
      endedWith = reason;
    },
    ...options,
  });
  t.after(() => driver.stop());
  async function until(pred, ms = 5000, what = 'an event') {
    const deadline = Date.now() + ms;
    for (;;) {
      const hit = events.find(pred);
      if (hit) return hit;
      if (Date.now() > deadline) throw new Error(`${what}: not within ${ms} ms; saw ${JSON.stringify(events)}`);
      await Promise.race([new Promise((wake) => waiters.push(wake)), sleep(50)]);
    }
  }
  return { driver, events, until, ended: () => endedWith };
}

const isState = (state) => (e) => e.event === 'state' && e.state === state;

test('it dials the component\'s URL with its Authorization, and the component says every state', { timeout: 20000 }, async (t) => {
  const peer = await startPeer();
  t.after(() => peer.close());
  const { driver, events, until, ended } = await drive(t, peer.base, { gatewayId: 'gw-js', secret: 's3cret' });
  await until(isState('ready'));
  assert.deepEqual(events.filter((e) => e.event === 'state').map((e) => e.state), ['connecting', 'handshaking', 'ready']);
  const [{ url, authorization }] = peer.seen.connections;
  assert.equal(url, '/relay');
  assert.match(authorization, /^Bearer [A-Za-z0-9_-]+$/);
  const [gateway, exp, sig] = Buffer.from(authorization.slice(7), 'base64url').toString().split(':');
  assert.equal(gateway, 'gw-js');
  assert.ok(Math.abs(Number(exp) - (Date.now() / 1000 + 300)) < 30, `expiry ${exp} is about 300 s from now`);
  assert.match(sig, /^[0-9a-f]{64}$/);
  assert.equal(driver.settings().dialUrl, `ws${peer.base.slice(4)}/relay`);
  assert.equal(driver.stats().connected, true);

  // shutdown(0): no going_idle; the component closes with 1000 and says stopped.
  await driver.shutdown(0);
  assert.deepEqual(events.at(-1), { event: 'state', state: 'stopped', reason: 'shutdown' });
  assert.equal(ended(), 'shutdown');
  assert.equal(driver.ended, true);
  for (let waited = 0; !peer.seen.closes.length && waited < 2000; waited += 20) await sleep(20);
  assert.deepEqual(peer.seen.closes.map((c) => c.code), [1000]);
});

test('keepalive is the component\'s: a ping per interval, and no pong means a dead link (1011)', { timeout: 20000 }, async (t) => {
  const peer = await startPeer({ autoPong: false });
  t.after(() => peer.close());
  const { until } = await drive(t, peer.base, { pingIntervalMs: 100, pongTimeoutMs: 350, backoffBaseMs: 60000, backoffMaxMs: 60000, reconnectJitterPercent: 0 });
  await until(isState('ready'));
  const backoff = await until(isState('backoff'), 5000, 'backoff after the dead link');
  assert.equal(backoff.retry_in_ms, 60000);
  assert.ok(peer.seen.pings >= 2, `${peer.seen.pings} pings`);
  for (let waited = 0; !peer.seen.closes.length && waited < 2000; waited += 20) await sleep(20);
  assert.deepEqual(peer.seen.closes, [{ code: 1011, reason: 'keepalive ping timeout' }]);
});

test('answered pings keep the link up', { timeout: 20000 }, async (t) => {
  const peer = await startPeer();
  t.after(() => peer.close());
  const { driver, events, until } = await drive(t, peer.base, { pingIntervalMs: 100, pongTimeoutMs: 2000 });
  await until(isState('ready'));
  await sleep(800);
  assert.ok(peer.seen.pings >= 4, `${peer.seen.pings} pings`);
  assert.deepEqual(peer.seen.closes, []);
  assert.equal(driver.stats().connected, true);
  assert.ok(!events.some(isState('backoff')), JSON.stringify(events));
});

test('the socket takes its message limit from settings()', { timeout: 20000 }, async (t) => {
  const peer = await startPeer();
  t.after(() => peer.close());
  peer.wss.on('connection', (socket) => setTimeout(() => socket.send('x'.repeat(4096)), 100));
  const { driver, until } = await drive(t, peer.base, { maxMessageBytes: 1024, backoffBaseMs: 60000, backoffMaxMs: 60000 });
  assert.equal(driver.settings().maxMessageBytes, 1024);
  await until(isState('backoff'), 5000, 'backoff after the oversize message');
  for (let waited = 0; !peer.seen.closes.length && waited < 2000; waited += 20) await sleep(20);
  assert.equal(peer.seen.closes[0]?.code, 1009);
});

test('a dial in progress is abandoned when the link stops', { timeout: 20000 }, async (t) => {
  // A TCP peer that reads the upgrade request and never answers it.
  const sockets = [];
  const server = createServer((s) => sockets.push(s.resume()));
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => {
    for (const s of sockets) s.destroy();
    return new Promise((done) => server.close(done));
  });
  const { driver, events, ended } = await drive(t, `http://127.0.0.1:${server.address().port}`, {});
  for (let waited = 0; !sockets.length && waited < 2000; waited += 20) await sleep(20);
  assert.equal(sockets.length, 1);
  const closedByPeer = new Promise((resolve) => sockets[0].once('close', resolve));
  await driver.shutdown(5000);
  assert.deepEqual(events.map((e) => e.state), ['connecting', 'stopped']);
  assert.equal(ended(), 'shutdown');
  await closedByPeer; // the half-made socket was dropped
});
