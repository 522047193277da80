// The client (`connect()`) against the real connector emulator. It imports the
// package by name: in embed/js that is the source tree; copied next to an
// installed tarball (as .ci/run does) it is the installed package.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';

import { ClientError, OUTBOUND_ID_PREFIX, RelayError, connect, load } from 'relay-wasm';

import { connectorBinary, startEmulator } from './emulator.mjs';

const skip = connectorBinary()
  ? false
  : 'no relay-connector: `cargo build --release -p relay-connector`, or set RELAY_CONNECTOR';

const IDENTITY = { platform: 'discord', botId: 'app1' };

function within(ms, promise, what) {
  let timer;
  const late = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: nothing within ${ms} ms`)), ms);
  });
  return Promise.race([promise, late]).finally(() => clearTimeout(timer));
}

/** Reads events until one named `name` (and matching `pred`); returns [it, the ones before]. */
async function until(link, name, pred = () => true, ms = 5000) {
  const before = [];
  return within(ms, (async () => {
    for await (const event of link) {
      if (event.event === name && pred(event)) return [event, before];
      before.push(event);
    }
    throw new Error(`the stream ended before a ${name} event; saw ${JSON.stringify(before)}`);
  })(), `waiting for ${name}`);
}

/** Everything left on the stream of a closed link. */
async function drain(link) {
  const rest = [];
  for await (const event of link) rest.push(event);
  return rest;
}

async function readyLink(t, options = {}) {
  const emu = await startEmulator();
  let link = null;
  t.after(async () => {
    await link?.close({ graceMs: 0 });
    await emu.stop();
  });
  link = await connect(emu.base, { identities: [IDENTITY], ...emu.credentials }, options);
  const [ready, before] = await until(link, 'ready');
  return { emu, link, ready, before };
}

const inbound = (text, messageId, extra = {}) => ({
  cmd: 'inbound',
  event: {
    text,
    message_id: messageId,
    source: { platform: 'discord', chat_id: 'c1', chat_type: 'dm', user_id: 'u1', user_name: 'amy' },
  },
  ...extra,
});

test('ready, a message through for await, two concurrent outbounds, close', { skip, timeout: 30000 }, async (t) => {
  const { emu, link, ready, before } = await readyLink(t);

  // The handshake: the component's states around its `ready`.
  assert.deepEqual(before.map((e) => e.state), ['connecting', 'handshaking']);
  assert.equal(ready.descriptor.platform, 'discord');
  assert.equal(ready.descriptor.label, 'Discord');
  assert.deepEqual(await link.nextEvent(), { event: 'state', state: 'ready' });
  // The upgrade token was accepted.
  await emu.waitFor((r) => r.connected === 1 && r.gateway_id === 'js-test');
  assert.equal(link.descriptors().discord.label, 'Discord');

  // One buffered inbound message, read with `for await`, then acknowledged.
  emu.script(inbound('hello from the emulator', 'm1', { buffered: true }));
  const [message] = await until(link, 'message');
  assert.equal(message.message.text, 'hello from the emulator');
  assert.equal(message.message.source.user_name, 'amy');
  assert.match(message.buffer_id, /^buf-\d+$/);
  assert.equal(link.ack(message.buffer_id), true);
  await emu.waitFor((r) => r.seen === 'inbound_ack' && r.bufferId === message.buffer_id && r.known === true);

  // Two outbounds at once; the first is answered 300 ms late, so they are
  // answered out of order, and each call gets its own result.
  emu.script({ cmd: 'outbound_rule', op: 'typing', reply: 'result', result: { success: true, tag: 'slow' }, delay_ms: 300 });
  await emu.waitFor((r) => r.ok === 'outbound_rule');
  const settled = [];
  const slow = link.outbound({ op: 'typing', chat_id: 'c1' }).then((r) => (settled.push('typing'), r));
  const fast = link.outbound({ op: 'send', chat_id: 'c1', content: 'echo: hello' }).then((r) => (settled.push('send'), r));
  const [typing, send] = await within(5000, Promise.all([slow, fast]), 'two outbound results');
  assert.deepEqual(settled, ['send', 'typing']);
  assert.notEqual(typing.id, send.id);
  for (const r of [typing, send]) {
    assert.equal(r.event, 'outbound_result');
    assert.ok(r.id.startsWith(OUTBOUND_ID_PREFIX), r.id);
  }
  assert.deepEqual(typing.result, { success: true, tag: 'slow' });
  assert.equal(send.result.success, true);
  assert.match(send.result.message_id, /^m\d+$/);
  // Written as given, plus the component's egress enrichment (PROTOCOL.md §5.2).
  const written = emu.seen.filter((r) => r.seen === 'outbound').map((r) => r.action);
  assert.deepEqual(written, [
    { op: 'typing', chat_id: 'c1', metadata: { user_id: 'u1' } },
    { op: 'send', chat_id: 'c1', content: 'echo: hello', metadata: { user_id: 'u1' } },
  ]);

  // A graceful close: going_idle (acked), then the socket closes with 1000 and
  // `stopped` is the last event; the stream ends.
  await within(10000, link.close(), 'close()');
  await emu.waitFor((r) => r.seen === 'going_idle');
  await emu.waitFor((r) => r.disconnected === 1 && r.code === 1000 && r.initiator === 'gateway');
  const rest = await drain(link);
  assert.deepEqual(rest.at(-1), { event: 'state', state: 'stopped', reason: 'shutdown' });
  assert.ok(rest.some((e) => e.event === 'idle' && e.acked === true), JSON.stringify(rest));
  assert.ok(!rest.some((e) => e.event === 'outbound_result'), 'results went to their calls, not to the stream');
  assert.equal(link.stopped, true);
  assert.equal(link.stopReason, 'shutdown');

  // After close: calls fail as `stopped`, commands are not sent, the stream stays ended.
  await assert.rejects(link.outbound({ op: 'send', chat_id: 'c1' }), (e) => e instanceof ClientError && e.kind === 'stopped');
  assert.equal(link.send({ op: 'going_idle' }), false);
  assert.equal(await link.nextEvent(), undefined);
  await link.close(); // idempotent
});

test('an outbound call can be aborted; its late result goes to the stream', { skip, timeout: 30000 }, async (t) => {
  const { emu, link } = await readyLink(t);
  emu.script({ cmd: 'outbound_rule', op: 'edit', reply: 'result', result: { success: true, tag: 'late' }, delay_ms: 200 });
  await emu.waitFor((r) => r.ok === 'outbound_rule');

  // Aborted before it is sent: nothing is written.
  await assert.rejects(link.outbound({ op: 'send', chat_id: 'c1' }, { signal: AbortSignal.abort() }), { name: 'AbortError' });

  const ac = new AbortController();
  const call = link.outbound({ op: 'edit', chat_id: 'c1', message_id: 'm1', content: 'x' }, { signal: ac.signal });
  await emu.waitFor((r) => r.seen === 'outbound' && r.op === 'edit');
  const reason = new Error('gave up');
  ac.abort(reason);
  await assert.rejects(call, (e) => e === reason);

  const [late] = await until(link, 'outbound_result');
  assert.ok(late.id.startsWith(OUTBOUND_ID_PREFIX));
  assert.deepEqual(late.result, { success: true, tag: 'late' });
  assert.equal(emu.seen.filter((r) => r.seen === 'outbound').length, 1, 'the pre-aborted call wrote nothing');
});

test('refused commands and configs are typed errors and change nothing', { skip, timeout: 30000 }, async (t) => {
  const { emu, link } = await readyLink(t);
  // A JSON command is validated by the component: refused, nothing is sent.
  assert.throws(() => link.send({ op: 'outbound', id: 'x1', action: 'not an object' }), (e) => {
    assert.ok(e instanceof ClientError);
    assert.equal(e.kind, 'invalid_field');
    assert.ok(e.cause instanceof RelayError);
    assert.equal(e.cause.kind, 'invalid-field');
    return true;
  });
  assert.throws(() => link.send({ op: 'bogus' }), (e) => e instanceof ClientError && e.kind === 'unknown_type');
  assert.throws(() => link.send({ op: 'ack', buffer_id: '' }), (e) => e instanceof ClientError && e.kind === 'invalid_field');
  // A typed call is always answered by the component: an action that is no
  // object gets a failed result, not an exception.
  const refused = await within(5000, link.outbound('not an object'), 'outbound of a string');
  assert.equal(refused.result.success, false);
  assert.match(refused.result.error, /^relay send failed: .*not a JSON object/);
  // Arguments of the wrong type are TypeErrors (the guest never sees them).
  assert.throws(() => link.interrupt(42), TypeError);
  assert.throws(() => link.ack({}), TypeError);
  // Still working, and none of the above reached the connector.
  const r = await within(5000, link.outbound({ op: 'send', chat_id: 'c1', content: 'still here' }), 'outbound');
  assert.equal(r.result.success, true);
  await emu.waitFor((x) => x.seen === 'outbound' && x.action?.content === 'still here');
  assert.deepEqual(emu.seen.filter((x) => x.seen === 'outbound').map((x) => x.action.content), ['still here']);

  await assert.rejects(connect(emu.base, { identities: [] }), (e) => e instanceof RelayError && e.kind === 'invalid-field');
  await assert.rejects(connect('ftp://nowhere.example', { identities: [IDENTITY] }), /not ws:\/\/ or wss:\/\//);
  // Settings the component owns are config, not connect() options.
  await assert.rejects(connect(emu.base, { identities: [IDENTITY] }, { pingIntervalMs: 1000 }), TypeError);
});

test('a full buffer pauses the socket until the application reads', { skip, timeout: 30000 }, async (t) => {
  const { emu, link } = await readyLink(t, { maxEvents: 2 });
  const N = 6;
  for (let i = 1; i <= N; i++) emu.script(inbound(`message ${i}`, `bp${i}`));
  const sent = () => emu.seen.filter((r) => r.sent === 'inbound').length;
  for (let waited = 0; sent() < N && waited < 5000; waited += 20) await sleep(20);
  assert.equal(sent(), N, 'the emulator wrote every message');
  // Nobody reads: the buffer fills (state ready + messages) and reading stops.
  for (let waited = 0; !link.paused && waited < 3000; waited += 20) await sleep(20);
  assert.equal(link.paused, true);
  assert.ok(link.bufferedEvents >= 2, `${link.bufferedEvents} buffered`);
  // Reading drains it and resumes the socket: every message arrives, in order.
  const texts = [];
  while (texts.length < N) {
    const [m] = await until(link, 'message');
    texts.push(m.message.text);
  }
  assert.deepEqual(texts, Array.from({ length: N }, (_, i) => `message ${i + 1}`));
  assert.equal(link.paused, false);
});

/** A real instance (and each replacement) whose Connection traps (throws
 *  something other than a RelayError) when `trap(method, count)` says so. */
function trapping(real, trap) {
  const counts = new Map();
  return {
    ...real,
    instantiate: () => trapping(real.instantiate(), trap),
    Connection: {
      create(config) {
        const conn = real.Connection.create(config);
        return new Proxy(conn, {
          get(target, key) {
            const v = target[key];
            if (typeof v !== 'function') return v;
            return (...args) => {
              const n = (counts.get(key) ?? 0) + 1;
              counts.set(key, n);
              if (trap(key, n)) throw new Error('boom');
              return v.apply(target, args);
            };
          },
        });
      },
    },
  };
}

test('a failing guest instance is replaced: what it owed is answered, the link dials again', { skip, timeout: 30000 }, async (t) => {
  // The first instance traps on its second received text: the inbound message
  // after the descriptor. Its replacements do not.
  let first = true;
  const relay = trapping(await load(), (method, n) => {
    if (method !== 'receiveText' || n !== 2 || !first) return false;
    first = false;
    return true;
  });
  const logs = [];
  const { emu, link } = await readyLink(t, { relay, onLog: (level, message) => logs.push([level, message]) });
  emu.script({ cmd: 'outbound_rule', op: 'typing', reply: 'silent' });
  await emu.waitFor((r) => r.ok === 'outbound_rule');
  const waiting = link.outbound({ op: 'typing', chat_id: 'c1' });
  await emu.waitFor((r) => r.seen === 'outbound');
  emu.script(inbound('this one traps', 'm9', { buffered: true }));

  // The replacement answers the waiting call (it may have been written: ambiguous).
  const lost = await within(5000, waiting, 'the owed outbound result');
  assert.deepEqual(lost.result, { success: false, error: 'relay transport connection lost', ambiguous: true });
  // The old socket was closed from the gateway's side.
  await emu.waitFor((r) => r.disconnected === 1 && r.initiator === 'gateway' && r.code === 1011);
  // Then backoff (the host's restart delay), a new dial and a new handshake:
  // every state from the component.
  const [backoff] = await until(link, 'state', (e) => e.state === 'backoff');
  assert.equal(backoff.retry_in_ms, 500);
  assert.match(backoff.reason, /^guest instance failed \(boom\); rebuilt it, dialing again$/);
  const [, between] = await until(link, 'state', (e) => e.state === 'ready');
  assert.deepEqual(between.map((e) => e.state ?? e.event), ['connecting', 'handshaking', 'ready']);
  assert.equal(link.stopped, false);
  assert.ok(logs.some(([level, m]) => level === 'error' && /boom/.test(m)));
  await emu.waitFor((r) => r.connected === 2);

  // It works on: an outbound, and stats from the new instance.
  const r = await within(5000, link.outbound({ op: 'send', chat_id: 'c1', content: 'after' }), 'outbound');
  assert.equal(r.result.success, true);
  assert.equal(link.stats().state, 'ready');
  await within(10000, link.close(), 'close()');
  const rest = await drain(link);
  assert.deepEqual(rest.at(-1), { event: 'state', state: 'stopped', reason: 'shutdown' });
});

test('a guest that keeps failing spends the restart budget and the link stops', { skip, timeout: 30000 }, async (t) => {
  // Every instance traps as its socket opens.
  const relay = trapping(await load(), (method) => method === 'open');
  const emu = await startEmulator();
  t.after(() => emu.stop());
  const link = await connect(emu.base, { identities: [IDENTITY], ...emu.credentials }, {
    relay,
    restartBudget: { maxRestarts: 1, windowMs: 60000 },
  });
  const events = await within(10000, drain(link), 'the end of the stream');
  const states = events.filter((e) => e.event === 'state');
  assert.deepEqual(states.map((e) => e.state), ['connecting', 'backoff', 'connecting', 'backoff', 'stopped']);
  const why = 'guest instance failed 2 times within 60 s (last: boom); restart budget exhausted';
  assert.equal(states.at(-1).reason, why);
  assert.equal(link.stopped, true);
  assert.equal(link.stopReason, why);
  await assert.rejects(link.outbound({ op: 'send', chat_id: 'c1' }), (e) => e instanceof ClientError && e.kind === 'stopped');
  await emu.waitFor((r) => r.connected === 2);
  await link.close(); // nothing left to do
});
